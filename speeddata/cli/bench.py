"""``speeddata bench``: which channel mix this machine sustains.

It starts a real ``speeddata serve`` on a temporary store and loopback ports, drives each
channel with a sender process of its own, and ramps the rate: doubling while the loss
stays under 0.1%, then bisecting between the last rate that held and the first that did
not. Loss is counted from what the store holds, never assumed. For the highest rate that
held it reports, per channel and in total: records/s, datagrams/s and MB/s in, bytes on
disk per record, the CPU of each worker and of the server, live latency through the hub
(p50/p99, a gRPC subscriber), and the retention horizon a given disk buys.

    speeddata bench --channels 2 --doubles 8 --rate 5000 --per 1 --disk 500GB [--json out.json]
    speeddata bench --schema rig.avsc --rate 1000          # a schema of your own
    speeddata bench --quick                                # under a minute
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..config import parse_size
from ..decimation import Decimation
from ..errors import SpeedDataError
from ..schema import load as load_schema, load_avro

HZ = os.sysconf("SC_CLK_TCK")
MAX_LOSS = 0.001
BUCKET_NS = 1_000_000       # the latency subscriber's envelope buckets


@dataclass
class ChannelMix:
    name: str
    schema: dict
    rate: float                 # records/s at factor 1
    per: int = 1                # records per datagram


@dataclass
class Trial:
    factor: float
    seconds: float
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    server_cpu: float = 0.0     # cores
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0

    @property
    def sender_short(self) -> bool:
        """The senders could not send at the asked rate: the machine's limit, not ingest's."""
        asked = sum(c["asked"] for c in self.channels.values())
        return sum(c["sent"] for c in self.channels.values()) < 0.9 * asked

    @property
    def loss(self) -> float:
        sent = sum(c["sent"] for c in self.channels.values())
        stored = sum(c["stored"] for c in self.channels.values())
        return 1 - stored / sent if sent else 1.0


def doubles_schema(n: int, name: str = "bench") -> dict:
    return {"type": "record", "name": name, "fields": [
        {"name": "time", "type": {"type": "long", "logicalType": "timestamp-nanos"}}] + [
        {"name": f"s{k}", "type": "double"} for k in range(n)]}


def _columns(schema, first: int, n: int) -> dict[str, np.ndarray]:
    """Plausible values for every signal: smooth numbers, a few distinct strings."""
    k = np.arange(first, first + n)
    out: dict[str, np.ndarray] = {}
    for j, s in enumerate(schema.signals):
        if s.dtype == object:
            words = np.array(list(s.symbols) or ["ok", "warn", "fault"], dtype=object)
            values = words[(k // 100) % len(words)]
            out[s.name] = np.array([v.encode() for v in values], dtype=object) \
                if s.type in ("bytes", "fixed") and not s.size else values
            if s.type == "fixed":
                out[s.name] = np.array([b"\0" * s.size] * n, dtype=object)
        elif s.dtype.kind == "b":
            out[s.name] = (k % 2).astype(bool)
        elif s.dtype.kind in "iu":
            out[s.name] = (k % 1000).astype(s.dtype)
        else:
            out[s.name] = np.sin(k / (20.0 + j)).astype(s.dtype)
    return out


def _sender(name: str, port: int, schema: dict, rate: float, per: int, seconds: float,
            out: Any) -> None:
    """A sender process: ``rate`` records/s for ``seconds``; puts (name, records,
    datagrams) on ``out``."""
    import socket

    from .._ingest import send_datagrams
    from ..codec import Plan, encode_columns
    cs = load_schema(schema)
    plan = Plan(cs, wire=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect(("127.0.0.1", port))
    dgram_rate = rate / per
    chunk = max(per, int(rate / 20) // per * per)
    period = int(1e9 / rate)
    start, end = time.monotonic_ns(), time.monotonic_ns() + int(seconds * 1e9)
    records = datagrams = 0
    try:
        while time.monotonic_ns() < end:
            t = time.time_ns() + np.arange(chunk, dtype=np.int64) * period
            body, ends = encode_columns(plan, t, _columns(cs, records, chunk))
            ok, _ = send_datagrams(sock.fileno(), body, ends, per, dgram_rate,
                                   start + int(datagrams * 1e9 / dgram_rate))
            datagrams += ok
            records += min(chunk, ok * per)
    finally:
        sock.close()
    out.put((name, records, datagrams))


class _Server:
    """A ``speeddata serve`` process on a temporary store and loopback ports."""

    def __init__(self, data: str, mix: list[ChannelMix], ports: list[int]):
        import yaml
        self.data = data
        config = os.path.join(os.path.dirname(data), "bench.yaml")
        with open(config, "w") as f:
            yaml.safe_dump({"data": data, "channels": [
                {"name": c.name, "port": p, "schema": json.dumps(c.schema)}
                for c, p in zip(mix, ports)]}, f)
        grpc_port = _free_tcp_port()
        self.address = f"127.0.0.1:{grpc_port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "speeddata.cli", "-q", "serve", "--config", config,
             "--grpc", self.address, "--web", "127.0.0.1:0", "--interval", "3600"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_running([c.name for c in mix])

    def _wait_running(self, names: list[str], timeout: float = 30.0) -> None:
        """Until the server answers over gRPC and every channel's worker receives."""
        from ..client import Client
        deadline = time.monotonic() + timeout
        with Client(self.address, timeout=2) as c:
            while True:
                if self.proc.poll() is not None:
                    raise SpeedDataError("the bench server exited with "
                                         f"{self.proc.returncode}")
                try:
                    if sorted(i.name for i in c.list_channels("running")) == sorted(names):
                        return
                except SpeedDataError:
                    pass                         # not serving yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise SpeedDataError(f"the bench server did not start in {timeout} s")
                time.sleep(0.1)

    def workers(self) -> dict[str, int]:
        """Channel name -> worker pid (from the workers' command lines)."""
        out = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == self.proc.pid and b"speeddata.ingest.worker" in args:
                out[args[args.index(b"--channel") + 1].decode()] = int(pid)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except OSError:
        return 0.0


def _stored(data: str) -> dict[str, tuple[int, int]]:
    """Per channel: records and bytes the store holds."""
    from .. import store
    with store.open(data, readonly=True) as st:
        return {n: (s.stored_records, s.bytes) for n, s in st.stats().items()}


def trial(server: _Server, mix: list[ChannelMix], ports: list[int], factor: float,
          seconds: float) -> Trial:
    """Every channel at ``factor`` x its rate for ``seconds``; what the store gained."""
    from ..client import Client
    ctx = multiprocessing.get_context("spawn")
    before = _stored(server.data)
    workers = server.workers()
    cpu0 = {n: _cpu(p) for n, p in workers.items()}
    server0 = _cpu(server.proc.pid)
    latencies: list[np.ndarray] = []
    stop = threading.Event()
    client = Client(server.address)
    # a chart's view: a min/max envelope of 1 ms buckets of the first signal
    sub = client.subscribe(mix[0].name, [load_schema(mix[0].schema).signals[0].name],
                           Decimation("minmax", 1, BUCKET_NS))

    def follow() -> None:
        for batch in sub:       # from the end of a bucket to the batch that carries it
            latencies.append(time.time_ns() - (batch.time + BUCKET_NS))
            if stop.is_set():
                break

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    out = ctx.Queue()
    procs = [ctx.Process(target=_sender, args=(c.name, port, c.schema, c.rate * factor,
                                               c.per, seconds, out))
             for c, port in zip(mix, ports)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    sent = {name: (records, datagrams) for name, records, datagrams in
            (out.get(timeout=seconds + 60) for _ in procs)}
    for p in procs:
        p.join()
    # the store has what was received once two looks a flush interval apart agree
    after, last = _stored(server.data), None
    deadline = time.monotonic() + 10
    while after != last and time.monotonic() < deadline:
        last = after
        time.sleep(0.5)
        after = _stored(server.data)
    wall = time.monotonic() - t0
    stop.set()
    sub.close()
    follower.join(5)
    client.close()
    result = Trial(factor, seconds)
    for c in mix:
        records, datagrams = sent[c.name]
        stored = after[c.name][0] - before.get(c.name, (0, 0))[0]
        grown = after[c.name][1] - before.get(c.name, (0, 0))[1]
        result.channels[c.name] = {
            "asked": c.rate * factor * seconds,
            "sent": records, "datagrams": datagrams, "stored": stored,
            "records_per_s": stored / seconds, "datagrams_per_s": datagrams / seconds,
            "bytes_per_record": grown / stored if stored else 0.0,
            "worker_cpu": (_cpu(workers[c.name]) - cpu0[c.name]) / wall
            if c.name in workers else 0.0}
    result.server_cpu = (_cpu(server.proc.pid) - server0) / wall
    lat = np.concatenate(latencies) / 1e6 if latencies else np.zeros(1)
    result.latency_p50_ms = float(np.percentile(lat, 50))
    result.latency_p99_ms = float(np.percentile(lat, 99))
    return result


def run(mix: list[ChannelMix], *, seconds: float = 3.0, steps: int = 4, bisect: int = 3,
        disk: int = 500 * 10**9, progress=print) -> dict:
    """Ramp the mix on a fresh server; the report of the highest factor that held."""
    tmp = tempfile.mkdtemp(prefix=f"speeddata-{os.getpid()}-bench-")
    ports = _free_ports(len(mix))
    server = _Server(os.path.join(tmp, "data"), mix, ports)
    trials: list[Trial] = []
    try:
        good: Trial | None = None
        bad: Trial | None = None
        factor = 1.0
        limit = "steps"
        for _ in range(steps):                   # coarse: double while it holds
            t = trial(server, mix, ports, factor, seconds)
            trials.append(t)
            progress(_line(t, mix))
            if t.loss >= MAX_LOSS:
                bad, limit = t, "loss"
                break
            good, factor = t, factor * 2
            if t.sender_short:                   # the senders are the bottleneck now
                limit = "sender"
                break
        for _ in range(bisect if bad is not None else 0):   # then bisect
            lo = good.factor if good else 0.0
            assert bad is not None
            mid = (lo + bad.factor) / 2 if lo else bad.factor / 2
            t = trial(server, mix, ports, mid, seconds)
            trials.append(t)
            progress(_line(t, mix))
            if t.loss < MAX_LOSS:
                good = t
            else:
                bad = t
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    best = good or min(trials, key=lambda t: t.loss)
    out = report(best, mix, disk, trials)
    out["limited_by"] = limit
    return out


def report(best: Trial, mix: list[ChannelMix], disk: int, trials: list[Trial]) -> dict:
    channels = {}
    for c in mix:
        r = dict(best.channels[c.name])
        r["mb_per_s_in"] = r["records_per_s"] * _wire_bytes(c.schema) / 1e6   # UDP payload
        r["loss"] = 1 - r["stored"] / r["sent"] if r["sent"] else 1.0
        channels[c.name] = r
    total_rate = sum(r["records_per_s"] for r in channels.values())
    disk_rate = sum(r["records_per_s"] * r["bytes_per_record"] for r in channels.values())
    return {
        "sustained": best.loss < MAX_LOSS, "sender_short": best.sender_short,
        "factor": best.factor, "loss": best.loss,
        "channels": channels,
        "total": {"records_per_s": total_rate,
                  "datagrams_per_s": sum(r["datagrams_per_s"] for r in channels.values()),
                  "mb_per_s_in": sum(r["mb_per_s_in"] for r in channels.values()),
                  "disk_bytes_per_s": disk_rate,
                  "worker_cpu": sum(r["worker_cpu"] for r in channels.values()),
                  "server_cpu": best.server_cpu},
        "latency_ms": {"p50": best.latency_p50_ms, "p99": best.latency_p99_ms},
        "horizon": {"disk_bytes": disk,
                    "hours": disk / disk_rate / 3600 if disk_rate else None},
        "trials": [{"factor": t.factor, "loss": t.loss,
                    "records_per_s": sum(c["records_per_s"] for c in t.channels.values())}
                   for t in trials],
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_model()},
        "mix": [asdict(c) | {"schema": c.schema["name"]} for c in mix],
    }


def _wire_bytes(schema: dict) -> int:
    """Bytes of one record on the wire (encoded once)."""
    from ..codec import Plan, encode_columns
    cs = load_schema(schema)
    body, _ = encode_columns(Plan(cs, wire=True), np.array([time.time_ns()], np.int64),
                             _columns(cs, 0, 1))
    return len(body)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _free_tcp_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n: int) -> list[int]:
    import socket
    from ..config import PORT_RANGE
    ports = []
    for port in range(PORT_RANGE.start + 500, PORT_RANGE.stop):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise SpeedDataError(f"no {n} free UDP ports in the channel range")


def _line(t: Trial, mix: list[ChannelMix]) -> str:
    rate = sum(c["records_per_s"] for c in t.channels.values())
    cpu = sum(c["worker_cpu"] for c in t.channels.values())
    return (f"x{t.factor:<7.3g} {rate:>12,.0f} rec/s stored  loss {t.loss:7.3%}  workers "
            f"{cpu:5.2f} cores  server {t.server_cpu:5.2f}  latency p50 "
            f"{t.latency_p50_ms:6.1f} ms p99 {t.latency_p99_ms:6.1f} ms")


def summary(r: dict) -> str:
    lines = [f"{'channel':<12} {'records/s':>12} {'datagrams/s':>12} {'MB/s in':>8} "
             f"{'B/record':>9} {'worker CPU':>10} {'loss':>8}"]
    for name, c in r["channels"].items():
        lines.append(f"{name:<12} {c['records_per_s']:>12,.0f} {c['datagrams_per_s']:>12,.0f}"
                     f" {c['mb_per_s_in']:>8.2f} {c['bytes_per_record']:>9.1f} "
                     f"{c['worker_cpu']:>9.2f}c {c['loss']:>8.3%}")
    t = r["total"]
    lines.append(f"{'total':<12} {t['records_per_s']:>12,.0f} {t['datagrams_per_s']:>12,.0f}"
                 f" {t['mb_per_s_in']:>8.2f} {'':>9} {t['worker_cpu']:>9.2f}c")
    lines.append(f"server CPU {t['server_cpu']:.2f} cores; live latency p50 "
                 f"{r['latency_ms']['p50']:.1f} ms, p99 {r['latency_ms']['p99']:.1f} ms")
    h = r["horizon"]
    if h["hours"]:
        label = h.get("disk") or f"{h['disk_bytes']:,} bytes"
        lines.append(f"{label} holds {h['hours']:,.1f} h of this mix")
    why = {"loss": "the next step lost more than 0.1%",
           "sender": "the senders on this machine could send no faster (ingest kept up)",
           "steps": "the ramp ended before any loss"}[r.get("limited_by", "steps")]
    lines.append(f"sustained without loss; limit: {why}" if r["sustained"] else
                 f"not sustained even at x{r['factor']:g} (loss {r['loss']:.2%})")
    return "\n".join(lines)


def scaling(first: ChannelMix, seconds: float, steps: int, bisect: int, disk: int) -> dict:
    """Total sustained records/s with 1, 2 .. CPU-count channels, against one channel's."""
    out = {}
    for n in sorted({1, 2, os.cpu_count() or 1}):
        mix = [ChannelMix(f"bench{k}", first.schema, first.rate, first.per) for k in range(n)]
        r = run(mix, seconds=seconds, steps=steps, bisect=bisect, disk=disk,
                progress=lambda line: None)
        out[n] = {"records_per_s": r["total"]["records_per_s"], "limited_by": r["limited_by"]}
        base = out[1]["records_per_s"] or 1
        print(f"scaling: {n} channel(s) on {n} worker(s): {out[n]['records_per_s']:>12,.0f} "
              f"records/s, {out[n]['records_per_s'] / base:.2f}x one channel "
              f"(limit: {r['limited_by']})", flush=True)
    return out


def disk_write_speed(path: str, size: int = 256 << 20) -> float:
    """Bytes/s this disk takes for a large file written and synced."""
    chunk = os.urandom(1 << 20)
    target = os.path.join(path, "speeddata-disk-probe")
    t = time.perf_counter()
    with open(target, "wb") as f:
        for _ in range(size >> 20):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - t
    os.remove(target)
    return size / elapsed


def per_sweep(first: ChannelMix, seconds: float, steps: int, bisect: int, disk: int) -> dict:
    """Sustained rate with 1, 10 and 50 records per datagram; bytes/s written against the
    disk's own write speed (where the store lives: the temp dir)."""
    speed = disk_write_speed(tempfile.gettempdir())
    out: dict[Any, Any] = {"disk_write_bytes_per_s": speed}
    for per in (1, 10, 50):
        mix = [ChannelMix("bench0", first.schema, first.rate * per, per)]
        r = run(mix, seconds=seconds, steps=steps, bisect=bisect, disk=disk,
                progress=lambda line: None)
        written = r["total"]["disk_bytes_per_s"]
        out[per] = {"records_per_s": r["total"]["records_per_s"],
                    "disk_bytes_per_s": written, "of_disk_speed": written / speed,
                    "limited_by": r["limited_by"]}
        print(f"{per:>3} records per datagram: {r['total']['records_per_s']:>12,.0f} "
              f"records/s, {written / 1e6:7.1f} MB/s to disk = {written / speed:.1%} of its "
              f"{speed / 1e6:.0f} MB/s (limit: {r['limited_by']})", flush=True)
    return out


def mix_from_args(args) -> list[ChannelMix]:
    if args.config:
        from ..config import load
        cfg = load(args.config)
        return [ChannelMix(c.name, load_avro(c.schema), args.rate, args.per)
                for c in cfg.channels]
    schema = load_avro(args.schema) if args.schema else doubles_schema(args.doubles)
    load_schema(schema)                            # SchemaError names the problem
    return [ChannelMix(f"bench{k}", schema, args.rate, args.per)
            for k in range(args.channels)]


def add_command(sub) -> None:
    b = sub.add_parser("bench", help="which channel mix this machine sustains",
                       description=__doc__.split("\n\n")[1])
    b.add_argument("--channels", type=int, default=1, help="channels of the mix (default 1)")
    b.add_argument("--doubles", type=int, default=8, help="signals per record (default 8)")
    b.add_argument("--schema", help="an .avsc of your own instead of N doubles")
    b.add_argument("--config", help="the channels of a speeddata config instead")
    b.add_argument("--rate", type=float, default=10_000,
                   help="records/s per channel to start the ramp at (default 10000)")
    b.add_argument("--per", type=int, default=1, help="records per datagram (default 1)")
    b.add_argument("--seconds", type=float, default=5.0, help="each step's length (default 5)")
    b.add_argument("--disk", default="500GB", help="disk size for the horizon (default 500GB)")
    b.add_argument("--json", help="write the report here")
    b.add_argument("--quick", action="store_true", help="short steps: under a minute")
    b.add_argument("--scaling", action="store_true",
                   help="also run 1, 2 .. (CPUs) channels of the mix's first schema on as many "
                        "workers: total throughput against one channel's")
    b.add_argument("--per-sweep", action="store_true",
                   help="also try 1, 10 and 50 records per datagram against this disk's "
                        "write speed")
    b.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    if args.channels < 1 or args.doubles < 1 or args.per < 1 or args.rate <= 0:
        raise SpeedDataError("--channels, --doubles, --per and --rate must be positive")
    mix = mix_from_args(args)
    seconds, steps, bisect = (1.5, 8, 2) if args.quick else (args.seconds, 10, 4)
    disk = parse_size(args.disk, "--disk")
    print(f"bench: {len(mix)} channel(s) of {mix[0].schema['name']}, starting at "
          f"{mix[0].rate:,.0f} records/s each, {mix[0].per} per datagram", flush=True)
    r = run(mix, seconds=seconds, steps=steps, bisect=bisect, disk=disk,
            progress=lambda line: print(line, flush=True))
    r["horizon"]["disk"] = args.disk
    print(summary(r), flush=True)
    if args.scaling:
        r["scaling"] = scaling(mix[0], seconds, steps, bisect, disk)
    if args.per_sweep:
        r["per_sweep"] = per_sweep(mix[0], seconds, steps, bisect, disk)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0
