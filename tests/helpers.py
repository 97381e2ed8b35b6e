"""Helpers shared by the tests."""
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_AVSC = ROOT / "speeddata" / "schemas" / "example.avsc"
TEMPERATURE_AVSC = ROOT / "speeddata" / "schemas" / "temperature.avsc"
T0 = 1_700_000_000_000_000_000


def example_record(i: int, t: int | None = None) -> dict:
    return {"time": T0 + i * 1_000_000 if t is None else t, "message": f"m{i % 3}",
            "counter": i, "sine_wave": float(i) / 7, "ramp": float(i % 40), "square_wave": 1.0,
            "noise": -float(i)}



def python_child(code: str, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, **kw)


def free_udp_port(lo: int = 26000, hi: int = 27000, count: int = 1) -> int:
    """A port in the channel range that nothing on 127.0.0.1 holds right now (the first of
    ``count`` consecutive free ones)."""
    import contextlib
    import random
    import socket
    for port in random.sample(range(lo, hi - count + 2), hi - lo - count + 2):
        with contextlib.ExitStack() as stack:
            try:
                for p in range(port, port + count):
                    s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    s.bind(("127.0.0.1", p))
                return port
            except OSError:
                continue
    raise RuntimeError("no free UDP port in the channel range")


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail naming what we waited for."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class ServeProcess:
    """A real ``speeddata serve`` process on loopback: gRPC on a free port, its output
    collected, stopped with SIGTERM (killed if it will not stop)."""

    def __init__(self, data, *, config: dict | None = None, token: str | None = None,
                 extra_args=(), verbose: bool = False):
        import os
        import subprocess
        import sys
        import threading
        import time

        import yaml
        self.data = str(data)
        cfg = {"data": self.data, "channels": []}
        cfg.update(config or {})
        self.config_path = os.path.join(os.path.dirname(self.data),
                                        f"serve-{os.path.basename(self.data)}.yaml")
        with open(self.config_path, "w") as f:
            yaml.safe_dump(cfg, f)
        cmd = [sys.executable, "-m", "speeddata.cli", *(["-v"] if verbose else []), "serve",
               "--config", self.config_path,
               "--grpc", "127.0.0.1:0", "--web", "127.0.0.1:0", "--interval", "3600",
               *extra_args]
        if token:
            cmd += ["--token", token]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        self.address = self.url = ""
        while not self.address:
            for line in list(self.lines):
                if line.strip().startswith("web "):
                    self.url = line.split()[-1]
                if line.strip().startswith("gRPC "):
                    self.address = line.split()[-1]
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("speeddata serve did not start:\n" + "".join(self.lines))
            time.sleep(0.02)

    def _read(self) -> None:
        # the reader owns the pipe: it closes it at end of file, which comes when serve and
        # every process it started have exited
        with self.proc.stdout as out:
            for line in out:
                self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        import signal
        import subprocess
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode


def free_tcp_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServers:
    """Real ``nats-server`` processes with JetStream on loopback: one, or a cluster of
    several routed to each other. Each keeps its JetStream data in its own folder, so one
    killed and started again comes back with what it held."""

    def __init__(self, folder, count: int = 1):
        import os
        import shutil
        self.binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not os.access(self.binary, os.X_OK):
            raise AssertionError("the cluster tests need Debian's nats-server (make test "
                                 "installs it)")
        self.folder = str(folder)
        self.ports = [free_tcp_port() for _ in range(count)]
        self.routes = [free_tcp_port() for _ in range(count)]
        self.procs: list = [None] * count
        for i in range(count):
            self.start(i)

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    def start(self, i: int) -> None:
        import os
        import subprocess
        store = os.path.join(self.folder, f"nats-{i}")
        cmd = [self.binary, "-a", "127.0.0.1", "-p", str(self.ports[i]), "-js", "-sd", store,
               "-n", f"nats-{i}"]
        if len(self.ports) > 1:
            cmd += ["--cluster_name", "speeddata-test", "--cluster",
                    f"nats://127.0.0.1:{self.routes[i]}", "--routes",
                    ",".join(f"nats://127.0.0.1:{r}" for k, r in enumerate(self.routes)
                             if k != i)]
        log = open(os.path.join(self.folder, f"nats-{i}.log"), "ab")
        self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        self.procs[i] = None

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.kill(i)

    def wait_ready(self, replicas: int | None = None, timeout: float = 30.0) -> None:
        """Until JetStream takes a replicated bucket (the cluster has elected its leader)."""
        import asyncio
        import time

        async def probe() -> bool:
            import nats
            try:
                nc = await nats.connect(servers=self.urls, connect_timeout=1,
                                        max_reconnect_attempts=1)
            except Exception:
                return False
            try:
                js = nc.jetstream(timeout=2)
                await js.create_key_value(bucket="speeddata-probe",
                                          replicas=replicas or len(self.ports))
                await js.delete_key_value("speeddata-probe")
                return True
            except Exception:
                return False
            finally:
                await nc.close()

        deadline = time.monotonic() + timeout
        while not asyncio.run(probe()):
            if time.monotonic() > deadline:
                raise AssertionError(f"JetStream at {self.urls} did not become ready")
            time.sleep(0.3)


def live_websocket(url: str, query: str, rcvbuf: int | None = None):
    """A raw socket that has opened ``/ws/live?<query>`` on a server at ``url`` (101 seen);
    ``rcvbuf`` sets its receive buffer first (a small one for a client that never reads).
    Returns the socket and any bytes that came after the handshake."""
    import socket
    host, port = url.split("//")[1].rstrip("/").split(":")
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((host, int(port)))
    s.sendall((f"GET /ws/live?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
    if not got.startswith(b"HTTP/1.1 101"):
        s.close()
        raise AssertionError(got[:200].decode(errors="replace"))
    return s, got[got.index(b"\r\n\r\n") + 4:]


class feeding:
    """A context in which a thread keeps sending example records to ``port`` (1,000 at a
    time, counters from ``first`` on); ``.sent`` is the next counter once it has stopped."""

    def __init__(self, port: int, first: int = 0, rate: float = 20_000):
        import threading
        self.port, self.sent, self.rate = port, first, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)

    def _feed(self) -> None:
        from speeddata.send import send
        while not self._stop.is_set():
            send(port=self.port, rate=self.rate, count=1_000, first=self.sent)
            self.sent += 1_000

    def __enter__(self) -> "feeding":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ---- what a test leaves behind (the conftest checks) ----------------------------------

def children(pid: int) -> set[int]:
    """Processes whose parent is ``pid``, and theirs (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def ours(directory: str) -> set[str]:
    """SpeedData's entries in a directory. One named ``speeddata-<pid>-...`` (live rings,
    export, restore and bench files) is ours only where that process is this test run, one
    of its children, or gone: a ``make run`` in another terminal is not the suite's."""
    try:
        names = {n for n in os.listdir(directory) if n.startswith("speeddata-")}
    except OSError:
        return set()
    return {n for n in names if not someone_elses(n)}


def someone_elses(name: str) -> bool:
    pid = name.split("-")[1]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    return int(pid) not in children(os.getpid())
