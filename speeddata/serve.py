"""The supervisor: one ingest worker process per channel, started, watched and restarted.

`Supervisor` is what ``speeddata serve`` runs; the gRPC and web layers join the same
process and read its registry, counters and live rings.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from . import store as store_mod
from .config import ChannelConfig
from .errors import ChannelExists, ChannelNotFound, ConfigError
from .live import Decimation, Ring, Subscriber, create_ring
from .worker import status_path

log = logging.getLogger("speeddata.serve")
RESTART_DELAY = 0.2       # s before a dead worker is started again
SETUP_FAILURE_DELAY = 5   # s between tries when a worker cannot start (port taken...)


@dataclass
class _Worker:
    config: ChannelConfig
    ring_path: str
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started: float = 0.0
    next_start: float = 0.0
    last_exit: int | None = None
    ring: Ring | None = field(default=None, repr=False)


class Supervisor:
    """Runs the channels of a store, each in its own worker process.

    Parameters
    ----------
    data : str
        The store directory (created when missing).
    channels : list of ChannelConfig
        Channels to run; more can be added and removed while running.
    retention : dict
        Store-wide retention (``max_bytes``, ``max_age``).
    """

    def __init__(self, data: str, channels=(), retention: dict | None = None):
        self.data = os.path.abspath(data)
        self.store = store_mod.open(self.data, **(retention or {}))
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        _remove_stale_rings(shm)
        self._ring_dir = tempfile.mkdtemp(prefix=f"speeddata-{os.getpid()}-", dir=shm)
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        for cfg in channels:
            self.add_channel(cfg, start=False)

    # ---- channels ------------------------------------------------------------------------

    @property
    def channels(self) -> dict[str, ChannelConfig]:
        with self._lock:
            return {name: w.config for name, w in self._workers.items()}

    def add_channel(self, cfg: ChannelConfig, *, start: bool = True) -> None:
        """Register a channel (creating it in the store) and start its worker."""
        with self._lock:
            if cfg.name in self._workers:
                raise ChannelExists(f"channel {cfg.name!r} is already running on port "
                                    f"{self._workers[cfg.name].config.port}")
            for w in self._workers.values():
                if w.config.port == cfg.port and w.config.bind == cfg.bind:
                    raise ConfigError(f"port {cfg.port} is already used by channel "
                                      f"{w.config.name!r}")
            self.store.create_channel(cfg.name, cfg.schema, time_field=cfg.time_field,
                                      time_unit=cfg.time_unit, **cfg.options)
            ring_path = create_ring(os.path.join(self._ring_dir, f"{cfg.name}.ring"))
            w = _Worker(cfg, ring_path)
            w.ring = Ring(ring_path)
            self._workers[cfg.name] = w
            if start:
                self._spawn(w)

    def remove_channel(self, name: str, *, drop_data: bool = False) -> None:
        """Stop a channel's worker (its stored data stays unless ``drop_data``)."""
        with self._lock:
            w = self._workers.pop(name, None)
        if w is None:
            raise ChannelNotFound(f"no running channel {name!r}")
        self._terminate([w])
        if w.ring:
            w.ring.close()
        for path in (w.ring_path, status_path(w.ring_path)):
            if os.path.exists(path):
                os.remove(path)
        if drop_data:
            self.store.drop_channel(name)

    def ring(self, name: str) -> Ring:
        with self._lock:
            if name not in self._workers:
                raise ChannelNotFound(f"no running channel {name!r}")
            return self._workers[name].ring

    def subscribe(self, name: str, decimation: Decimation | str | None = None, signals=None,
                  **kw) -> Subscriber:
        """Follow a channel's live records (see `speeddata.live.Subscriber`)."""
        if not isinstance(decimation, Decimation):
            decimation = Decimation.parse(decimation if decimation is not None
                                          else self.channels[name].decimation)
        return Subscriber(self.ring(name), self.store[name].schema, decimation, signals, **kw)

    def counters(self, name: str) -> dict:
        """The worker's counters (datagrams, records, rejects, drops, rates...), restarts, the
        first bad datagrams per reason (sender, length, first bytes) and the current error."""
        with self._lock:
            w = self._workers[name]
            values = w.ring.counter_values()
            values.update(restarts=w.restarts, running=bool(w.proc and w.proc.poll() is None),
                          pid=w.proc.pid if w.proc else 0, port=w.config.port,
                          last_exit=w.last_exit)
        try:
            with open(status_path(w.ring_path)) as f:
                values.update(json.load(f))    # bad_datagrams (first few per reason), error
        except (OSError, ValueError):
            values.update(bad_datagrams={}, error="")
        return values

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {n: w.proc.pid for n, w in self._workers.items() if w.proc}

    # ---- process control -----------------------------------------------------------------

    def _spawn(self, w: _Worker) -> None:
        cfg = w.config
        cmd = [sys.executable, "-m", "speeddata.worker", "--channel", cfg.name,
               "--data", self.data, "--port", str(cfg.port), "--bind", cfg.bind,
               "--ring", w.ring_path, "--rcvbuf", str(cfg.receive_buffer),
               "--restarts", str(w.restarts)]
        mc = cfg.multicast
        if mc:
            cmd += ["--mc-group", mc.group, "--mc-port", str(mc.port),
                    "--mc-interface", mc.interface, "--mc-ttl", str(mc.ttl)]
            if mc.decimated_group:
                cmd += ["--mc-dec-group", mc.decimated_group, "--mc-dec-port",
                        str(mc.decimated_port), "--mc-dec", mc.decimation]
        # its own session: a terminal's Ctrl-C reaches the supervisor, which stops the
        # workers in order (and a worker whose supervisor dies stops by itself)
        w.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        w.started = time.monotonic()
        log.info("channel %s: worker pid %d on port %d", cfg.name, w.proc.pid, cfg.port)

    def start(self) -> "Supervisor":
        """Start every worker and the watcher thread."""
        with self._lock:
            for w in self._workers.values():
                if w.proc is None:
                    self._spawn(w)
        self._thread = threading.Thread(target=self._watch, name="speeddata-supervisor",
                                        daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(0.05):
            self.check()

    def check(self) -> None:
        """Restart workers that died (within a second), counting each restart."""
        now = time.monotonic()
        with self._lock:
            for w in self._workers.values():
                if w.proc is None or w.proc.poll() is None or self._stopping.is_set():
                    continue
                if w.next_start == 0.0:
                    w.last_exit = w.proc.returncode
                    quick_fail = w.proc.returncode in (3, 4) and now - w.started < 2
                    w.next_start = now + (SETUP_FAILURE_DELAY if quick_fail else RESTART_DELAY)
                    log.warning("channel %s: worker exited with %s; restarting", w.config.name,
                                w.proc.returncode)
                if now >= w.next_start:
                    w.restarts += 1
                    w.next_start = 0.0
                    self._spawn(w)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until every worker is receiving (it has published its pid)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                ready = all(w.proc and w.ring.counter_values()["pid"] == w.proc.pid
                            for w in self._workers.values())
            if ready:
                return
            time.sleep(0.02)
        raise TimeoutError("channel workers did not start in time")

    def _terminate(self, workers) -> None:
        for w in workers:
            if w.proc and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for w in workers:
            if w.proc:
                try:
                    w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait()

    def stop(self) -> None:
        """SIGTERM every worker (they flush and exit), then clean up the rings."""
        self._stopping.set()
        if self._thread:
            self._thread.join()
        with self._lock:
            workers = list(self._workers.values())
        self._terminate(workers)
        for w in workers:
            if w.ring:
                w.ring.close()
        for name in os.listdir(self._ring_dir):
            os.remove(os.path.join(self._ring_dir, name))
        os.rmdir(self._ring_dir)
        self.store.close()

    def __enter__(self) -> "Supervisor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _remove_stale_rings(shm: str) -> None:
    """Ring folders of supervisors that died without cleaning up (kill -9)."""
    for name in os.listdir(shm):
        parts = name.split("-")
        if len(parts) < 3 or parts[0] != "speeddata" or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue                     # its supervisor still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue                     # someone else's, alive
        path = os.path.join(shm, name)
        for ring in os.listdir(path):
            os.remove(os.path.join(path, ring))
        os.rmdir(path)
        log.info("removed the live rings of a supervisor that is gone: %s", path)
