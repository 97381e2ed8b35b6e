"""The supervisor: one ingest worker process per channel, started, watched and restarted.

`Supervisor` is what ``speeddata serve`` runs; the gRPC and web layers join the same
process and read its registry, counters and live rings.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import store as store_mod
from ..config import ChannelConfig
from ..errors import ChannelExists, ChannelNotFound, ConfigError, PortUnavailable, SpeedDataError
from ..decimation import Decimation
from ..live import Ring, Subscriber, create_ring
from .registry import Registry
from ..stats import ChannelStats
from .exits import EXIT_BAD_SETUP, EXIT_PORT_TAKEN, port_owner, status_path

log = logging.getLogger("speeddata.serve")
RESTART_DELAY = 0.2       # s before a dead worker is started again
FAILURE_DELAYS = (1, 2, 5, 10, 30)   # s between tries while a worker cannot start
RETENTION_EVERY = 2.0     # s between retention passes over the store


@dataclass
class WorkerProcess:
    """One channel's worker process as the supervisor keeps it: started, watched,
    restarted after a crash, retried with growing delays while it cannot start."""
    config: ChannelConfig
    ring_path: str
    ring: Ring = field(repr=False)
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started: float = 0.0
    next_start: float = 0.0
    last_exit: int | None = None
    failures: int = 0          # setup failures in a row (port taken, bad setting...)
    failure: str = ""          # why it cannot start, from its status file
    # the worker writes a byte here whenever it has published records to the ring: the
    # live hub waits on the read end instead of polling
    notify: tuple[int, int] = (-1, -1)

    def spawn(self, data: str) -> None:
        """Start the worker of the store at ``data``."""
        cfg = self.config
        cmd = [sys.executable, "-m", "speeddata.ingest.worker", "--channel", cfg.name,
               "--data", data, "--port", str(cfg.port), "--bind", cfg.bind,
               "--ring", self.ring_path, "--rcvbuf", str(cfg.receive_buffer),
               "--restarts", str(self.restarts), "--notify", str(self.notify[1]),
               "--supervisor", str(os.getpid())]
        mc = cfg.multicast
        if mc:
            cmd += ["--mc-group", mc.group, "--mc-port", str(mc.port),
                    "--mc-interface", mc.interface, "--mc-ttl", str(mc.ttl)]
            if mc.decimated_group:
                cmd += ["--mc-dec-group", mc.decimated_group, "--mc-dec-port",
                        str(mc.decimated_port), "--mc-dec", mc.decimation]
        # its own session: a terminal's Ctrl-C reaches the supervisor, which stops the
        # workers in order (and a worker whose supervisor dies stops by itself)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True,
                                     pass_fds=(self.notify[1],))
        self.started = time.monotonic()
        log.info("channel %s: worker pid %d on port %d", cfg.name, self.proc.pid, cfg.port)

    def check(self, now: float, data: str) -> None:
        """Restart the worker if it died, counting the restart: after RESTART_DELAY, or,
        when it could not start (its port taken, a setting the system refuses), marked
        failed with the reason and retried after FAILURE_DELAYS."""
        if self.proc is None or self.proc.poll() is None:
            if self.proc is not None and self.failures and \
                    self.ring.counter_values()["pid"] == self.proc.pid:
                log.info("channel %s: receiving again", self.config.name)
                self.failures, self.failure = 0, ""
            return
        if self.next_start == 0.0:
            self.last_exit = self.proc.returncode
            if self.proc.returncode in (EXIT_PORT_TAKEN, EXIT_BAD_SETUP):
                self.failure = self._failure_reason()
                delay: float = FAILURE_DELAYS[min(self.failures, len(FAILURE_DELAYS) - 1)]
                self.failures += 1
                log.error("channel %s: cannot start: %s; trying again in %d s",
                          self.config.name, self.failure, delay)
            else:
                delay = RESTART_DELAY
                log.warning("channel %s: worker exited with %s; restarting",
                            self.config.name, self.proc.returncode)
            self.next_start = now + delay
        if now >= self.next_start:
            self.restarts += 1
            self.next_start = 0.0
            self.spawn(data)

    def _failure_reason(self) -> str:
        try:
            with open(status_path(self.ring_path)) as f:
                reason = json.load(f).get("failure", "")
        except (OSError, ValueError):
            reason = ""
        return reason or f"worker exited with {self.last_exit}"

    def counters(self) -> dict[str, Any]:
        """The worker's counters (datagrams, records, rejects, drops, rates...), restarts, the
        first bad datagrams per reason (sender, length, first bytes), the current error and
        its status: running (receiving), starting, or failed (with why)."""
        values: dict[str, Any] = dict(self.ring.counter_values())
        pid = self.proc.pid if self.proc else 0
        running = bool(self.proc and self.proc.poll() is None)
        ready = running and values["pid"] == pid   # it published: it receives
        values.update(restarts=self.restarts, running=running, pid=pid,
                      port=self.config.port, last_exit=self.last_exit)
        values.update(bad_datagrams={}, error="", failure="")
        try:
            with open(status_path(self.ring_path)) as f:
                values.update(json.load(f))    # bad_datagrams (first few per reason), error
        except (OSError, ValueError):
            pass
        values["failure"] = self.failure if not ready else ""
        values["status"] = "running" if ready else ("failed" if self.failure else "starting")
        return values

    def close(self) -> None:
        """Give up its ring and notify pipe (the process has exited)."""
        self.ring.close()
        for fd in self.notify:
            os.close(fd)
        self.notify = (-1, -1)


def _terminate(workers: list[WorkerProcess]) -> None:
    """SIGTERM the workers (they flush and exit); SIGKILL any not gone within 10 s."""
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


class Supervisor:
    """Runs the channels of a store, each in its own worker process.

    Parameters
    ----------
    data : str
        The store directory (created when missing).
    channels : list of ChannelConfig
        The config file's channels. With them run the channels registered in the store
        over an API (`speeddata.ingest.registry`); more can be added and removed while running.
    retention : dict
        Store-wide settings: retention (``max_bytes``, ``max_age``) and block and segment
        sizes (see `speeddata.store.open`).
    """

    def __init__(self, data: str, channels=(), retention: dict | None = None):
        self.data = os.path.abspath(data)
        self.store = store_mod.open(self.data)
        # the settings given are the settings in force: a limit the config no longer
        # names returns to its default
        self.store.configure(replace=True, **(retention or {}))
        self._next_retention = 0.0
        # tags kept elsewhere (a cluster's): retention keeps them too, and pauses while they
        # cannot be read
        self.tag_source: Callable[[], list] | None = None
        self.retention_paused: str | None = None
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        for folder in {shm, tempfile.gettempdir()}:    # rings; export files
            remove_orphans(folder)
        self._ring_dir = tempfile.mkdtemp(prefix=f"speeddata-{os.getpid()}-", dir=shm)
        self._workers: dict[str, WorkerProcess] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.registry = Registry(self.data)
        self.registry.sync_config(channels)
        for registered in self.registry.entries():
            self._add(registered.config, start=False)

    # ---- channels ------------------------------------------------------------------------

    @property
    def channels(self) -> dict[str, ChannelConfig]:
        with self._lock:
            return {name: w.config for name, w in self._workers.items()}

    def add_channel(self, cfg: ChannelConfig, *, start: bool = True) -> None:
        """Register a channel (kept in the store's registry, so it comes back with the next
        ``speeddata serve``), create it in the store and start its worker."""
        with self._lock:
            if cfg.name not in self._workers and \
                    all(w.config.port != cfg.port for w in self._workers.values()):
                _check_port(cfg.bind, cfg.port)
            self.registry.register(cfg, source="api")     # unique name and port, or raises
            try:
                self._add(cfg, start=start)
            except BaseException:
                self.registry.deregister(cfg.name)
                raise

    def _add(self, cfg: ChannelConfig, *, start: bool) -> None:
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
            w = WorkerProcess(cfg, ring_path, Ring(ring_path),
                              notify=os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC))
            self._workers[cfg.name] = w
            if start:
                w.spawn(self.data)

    def remove_channel(self, name: str, *, drop_data: bool = False) -> None:
        """Stop a channel's worker and deregister it (its stored data stays unless
        ``drop_data``)."""
        with self._lock:
            w = self._workers.pop(name, None)
        if w is None:
            raise ChannelNotFound(f"no running channel {name!r}")
        try:
            self.registry.deregister(name)
        except ChannelNotFound:
            pass
        _terminate([w])
        w.close()
        for path in (w.ring_path, status_path(w.ring_path)):
            if os.path.exists(path):
                os.remove(path)
        if drop_data:
            self.store.drop_channel(name)

    def notify_fd(self, name: str) -> int:
        """The file descriptor that becomes readable when the channel's worker has published
        new records (read what it holds, then look at the ring)."""
        with self._lock:
            if name not in self._workers:
                raise ChannelNotFound(f"no running channel {name!r}")
            return self._workers[name].notify[0]

    def ring(self, name: str) -> Ring:
        with self._lock:
            if name not in self._workers:
                raise ChannelNotFound(f"no running channel {name!r}")
            return self._workers[name].ring

    def subscribe(self, name: str, decimation: Decimation | str | None = None, signals=None,
                  **kw) -> Subscriber:
        """Follow a channel's live records (see `speeddata.live.Subscriber`)."""
        ring = self.ring(name)          # ChannelNotFound for a channel not running
        if not isinstance(decimation, Decimation):
            decimation = Decimation.parse(decimation if decimation is not None
                                          else self.channels[name].decimation)
        return Subscriber(ring, self.store[name].schema, decimation, signals, **kw)

    def counters(self, name: str) -> dict[str, Any]:
        """The channel's worker's counters and status (`WorkerProcess.counters`)."""
        with self._lock:
            if name not in self._workers:
                raise ChannelNotFound(f"no running channel {name!r}")
            return self._workers[name].counters()

    def stats(self, name: str) -> ChannelStats:
        """The channel's counters from its worker and what the store holds of it."""
        return ChannelStats.from_counters(name, self.counters(name)).holding(
            self.store[name].stats())

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {n: w.proc.pid for n, w in self._workers.items() if w.proc}

    # ---- process control -----------------------------------------------------------------

    def start(self) -> "Supervisor":
        """Start every worker and the watcher thread."""
        with self._lock:
            for w in self._workers.values():
                if w.proc is None:
                    w.spawn(self.data)
        self._thread = threading.Thread(target=self._watch, name="speeddata-supervisor",
                                        daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(0.05):
            self.check()

    def check(self) -> None:
        """Restart workers that died (within a second), counting each restart. One that
        cannot start (its port taken, a setting the system refuses) is marked failed with
        the reason and retried with growing delays; the other channels run on."""
        now = time.monotonic()
        with self._lock:
            if not self._stopping.is_set():
                for w in self._workers.values():
                    w.check(now, self.data)
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_EVERY
            self.enforce_retention()

    def enforce_retention(self) -> list[str]:
        """One retention pass over the store (the supervisor is its one owner), keeping the
        tags of `tag_source` too; none while they cannot be read (when in doubt, keep)."""
        try:
            tags = self.tag_source() if self.tag_source is not None else []
        except SpeedDataError as e:
            if self.retention_paused is None:
                log.warning("retention paused: the cluster's tags cannot be read: %s", e)
            self.retention_paused = f"the cluster's tags cannot be read: {e}"
            return []
        if self.retention_paused is not None:
            log.info("retention resumes: the cluster's tags can be read again")
        self.retention_paused = self.store.retention_paused
        try:
            return self.store.enforce_retention(tags=tags)
        except Exception:   # never let a retention fault stop the watcher
            log.exception("retention pass failed")
            return []

    def wait_ready(self, timeout: float = 10.0) -> dict[str, str]:
        """Wait until every worker is receiving or has failed to start; returns the failed
        ones with their reasons (they are retried meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._thread is None:
                self.check()
            with self._lock:
                states = {n: self.counters(n) for n in self._workers}
            if all(c["status"] != "starting" for c in states.values()):
                return {n: c["failure"] for n, c in states.items() if c["status"] == "failed"}
            if time.monotonic() > deadline:
                late = [n for n, c in states.items() if c["status"] == "starting"]
                raise TimeoutError(f"channel workers did not start in {timeout} s: "
                                   f"{', '.join(late)}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM every worker (they flush and exit), then clean up the rings."""
        self._stopping.set()
        if self._thread:
            self._thread.join()
        with self._lock:
            workers = list(self._workers.values())
        _terminate(workers)
        for w in workers:
            w.close()
        for name in os.listdir(self._ring_dir):
            os.remove(os.path.join(self._ring_dir, name))
        os.rmdir(self._ring_dir)
        self.store.close()

    def __enter__(self) -> "Supervisor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _check_port(bind: str, port: int) -> None:
    """PortUnavailable when another program holds the UDP port; ConfigError for a bind
    address that is not one of this host's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((bind, port))
        except socket.gaierror as e:
            raise ConfigError(f"bind {bind!r} is not an address of this host: {e.strerror}",
                              hint="give an IP address of this host, 0.0.0.0 for all, or "
                                   "a name that resolves to one") from None
        except OSError as e:
            if e.errno in (errno.EADDRNOTAVAIL, errno.EINVAL, errno.EAFNOSUPPORT):
                raise ConfigError(f"bind {bind!r} is not an address of this host: "
                                  f"{e.strerror}", hint="give an IP address of this host, "
                                  "or 0.0.0.0 for all") from None
            owner = port_owner(port)
            raise PortUnavailable(f"UDP port {port} on {bind} is held by "
                                  f"{owner or 'another program'}: {e.strerror}",
                                  hint="pick one of the available ports") from None


def remove_orphans(folder: str) -> None:
    """Remove what ``speeddata serve`` processes that died without cleaning up (kill -9)
    left in a folder: entries named ``speeddata-<pid>-...`` (live rings, export files) whose
    process is gone."""
    for name in os.listdir(folder):
        parts = name.split("-")
        if len(parts) < 3 or parts[0] != "speeddata" or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
            continue                     # its process still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue                     # someone else's, alive
        path = os.path.join(folder, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            log.warning("cannot remove %s, left by a speeddata process that is gone: %s",
                        path, e)
            continue
        log.info("removed %s, left by a speeddata process that is gone", path)
