"""One channel's ingest worker: ``python -m speeddata.ingest.worker --channel NAME ...``.

Receives the channel's UDP port with the Cython receiver, writes blocks to the store,
publishes the live ring and its counters, optionally re-serves multicast. SIGTERM or SIGINT
flush the open block and exit 0. The supervisor (`speeddata.ingest.supervisor`) starts and watches it;
its command line names the channel, so ``ps`` shows which process serves which.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import numpy as np

from .. import store as store_mod
from .._ingest import Receiver
from .._ring import LiveRing
from ..errors import SpeedDataError, StoreError
from ..codec import Plan, encode_columns
from ..decimation import Decimation, key
from .exits import EXIT_BAD_SETUP, EXIT_PORT_TAKEN, port_owner, status_path
from ..live import COUNTERS, H_WRITE_ENTRY, Ring, Subscriber

log = logging.getLogger("speeddata.ingest.worker")
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def open_socket(bind: str, port: int, rcvbuf: int, *, group: str | None = None,
                interface: str = "0.0.0.0") -> tuple[socket.socket, int]:
    """A bound UDP socket with the largest receive buffer the kernel grants (up to rcvbuf),
    kernel drop counting on; returns it with the granted buffer size."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for opt in (SO_RCVBUFFORCE, socket.SO_RCVBUF):   # FORCE passes rmem_max as root
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
            except OSError:
                continue
        sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        sock.bind((group or bind, port))
        if group:
            mreq = socket.inet_aton(group) + socket.inet_aton(interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    except BaseException:
        sock.close()
        raise
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux doubles it
    return sock, granted


def multicast_sender(group: str, port: int, interface: str = "127.0.0.1",
                     ttl: int = 0) -> socket.socket:
    """A connected UDP socket that sends to a multicast group from the given interface."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    s.connect((group, port))
    return s


def _name_process(channel: str) -> None:
    """Name the thread 'sd:<channel>' for top and ps -L (the command line names it too)."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(15, f"sd:{channel}"[:15].encode(), 0, 0, 0)   # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def run(args: argparse.Namespace) -> int:
    """Receive one channel until SIGTERM/SIGINT (exit 0, flushed) or until its supervisor
    goes; a channel that cannot start exits with EXIT_PORT_TAKEN or EXIT_BAD_SETUP."""
    _name_process(args.channel)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sock, granted = open_socket(args.bind, args.port, args.rcvbuf)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            owner = port_owner(args.port)
            return _fail(args, EXIT_PORT_TAKEN, f"UDP port {args.port} is already taken"
                         + (f" by {owner}" if owner else ""))
        return _fail(args, EXIT_BAD_SETUP, f"cannot receive on {args.bind}:{args.port}: "
                     f"{e.strerror or e}")
    if granted < args.rcvbuf:
        log.warning("channel %s: receive buffer capped at %d bytes (asked %d); raise it with: "
                    "sysctl -w net.core.rmem_max=%d", args.channel, granted, args.rcvbuf,
                    args.rcvbuf)
    try:
        worker = _Worker(args, sock, granted)
    except (SpeedDataError, OSError, ValueError, OverflowError) as e:
        sock.close()
        return _fail(args, EXIT_BAD_SETUP, str(e))
    log.info("channel %s: receiving on %s:%d (pid %d)", args.channel, args.bind, args.port,
             os.getpid())
    # the pid given, not the parent found now: a supervisor killed while this worker was
    # still starting has already handed it to init
    parent = args.supervisor or os.getppid()
    try:
        while not stop.is_set():
            if os.getppid() != parent:   # the supervisor is gone: flush and go too
                log.warning("channel %s: supervisor gone; stopping", args.channel)
                break
            worker.step()
    finally:
        worker.close()
    log.info("channel %s: stopped", args.channel)
    return 0


class _Worker:
    """One channel's receive loop: socket, store writer, live ring, multicast re-serve."""

    def __init__(self, args: argparse.Namespace, sock: socket.socket, granted: int):
        self.args = args
        self.sock = sock
        self.forward: socket.socket | None = None
        self.store = store_mod.open(args.data, retention=False)   # the supervisor owns it
        try:
            channel = self.store[args.channel]
            self.writer = channel.writer()
            self.ring = Ring(args.ring, writable=True)
            if args.mc_group:
                self.forward = multicast_sender(args.mc_group, args.mc_port,
                                                args.mc_interface, args.mc_ttl)
            self.receiver = Receiver(sock.fileno(), self.writer.builder,
                                     LiveRing(self.ring.memory),
                                     self.forward.fileno() if self.forward else -1)
            self.decimated = _DecimatedSender(args, self.ring, channel) \
                if args.mc_dec_group else None
        except BaseException:
            self.store.close()
            if self.forward:
                self.forward.close()
            raise
        self.base = self.ring.counter_values()
        self.ring.set_counters(pid=os.getpid(), rcvbuf=granted, restarts=args.restarts)
        self.disk_error = ""
        self.blocks_at_error = 0
        self.next_counters = 0.0
        self.rate_from = (time.monotonic(), 0, 0)   # (when, datagrams, records): current rates
        self.status: dict = {}

    def step(self) -> None:
        """Receive for up to 20 ms, write what is due, publish counters now and then."""
        before = self.ring.header[H_WRITE_ENTRY]
        self.receiver.poll(0.02, self.writer.block_bytes)
        if self.args.notify >= 0 and self.ring.header[H_WRITE_ENTRY] != before:
            try:
                os.write(self.args.notify, b"\0")
            except (BlockingIOError, BrokenPipeError):
                pass      # the reader has plenty to wake up for, or is gone
        self._write()
        if self.decimated:
            self.decimated.pump()
        now = time.monotonic()
        if now - self.rate_from[0] >= 1.0:
            dt = now - self.rate_from[0]
            records = self.writer.builder.records
            self.ring.set_counters(
                datagrams_per_s=(self.receiver.datagrams - self.rate_from[1]) / dt,
                records_per_s=(records - self.rate_from[2]) / dt)
            self.rate_from = (now, self.receiver.datagrams, records)
        if now >= self.next_counters:
            self.next_counters = now + 0.05
            # the error text first: whoever sees the disk_error counter finds it there
            self.status = _publish_status(self.args, self.receiver, self.disk_error,
                                          self.status)
            self._publish()

    def _write(self) -> None:
        """Flush what is due; a full or failing disk stops writing, never receiving."""
        try:
            self.writer.maybe_flush()
            if self.disk_error and self.writer.blocks_written > self.blocks_at_error:
                log.warning("channel %s: writing again", self.args.channel)
                self.disk_error = ""
        except (StoreError, OSError) as e:
            if str(e) != self.disk_error:
                log.error("channel %s: %s; still receiving and counting", self.args.channel, e)
            self.disk_error = str(e)
            self.blocks_at_error = self.writer.blocks_written

    def _publish(self) -> None:
        _publish_counters(self.ring, self.receiver, self.writer, bool(self.disk_error),
                          self.base, self.decimated.errors if self.decimated else 0)

    def close(self) -> None:
        try:
            self.writer.flush()
        except StoreError as e:
            log.error("channel %s: last block lost: %s", self.args.channel, e)
        self._publish()
        try:
            self.store.close()
        except StoreError as e:
            log.error("channel %s: %s", self.args.channel, e)
        self.sock.close()
        if self.forward:
            self.forward.close()


def _fail(args, code: int, reason: str) -> int:
    """A worker that cannot start: the reason in the log and in its status file, where the
    supervisor shows it; the exit code says which kind."""
    log.error("channel %s: %s", args.channel, reason)
    try:
        _write_status(args.ring, {"bad_datagrams": {}, "error": "", "failure": reason})
    except OSError:
        pass
    return code


def _write_status(ring_path: str, status: dict) -> None:
    tmp = status_path(ring_path) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(status, f)
    os.replace(tmp, status_path(ring_path))


def _publish_status(args, rx: Receiver, error: str, known: dict) -> dict:
    """Log the first bad datagrams of each reason with their sender, and leave them with the
    current error (full disk...) in a file beside the ring for the supervisor to show."""
    status: dict[str, Any] = {
        "bad_datagrams": {k: [list(x) for x in v] for k, v in rx.samples.items()},
        "error": error}
    if status == known:
        return known
    for reason, items in status["bad_datagrams"].items():
        for sender, length, head in items[len(known.get("bad_datagrams", {}).get(reason, [])):]:
            log.warning("channel %s: rejected %d-byte datagram from %s: %s (starts %s)",
                        args.channel, length, sender, reason, head[:32])
    _write_status(args.ring, dict(status, failure=""))
    return status


# Counters that add up over the worker's restarts (a new worker starts from the ring's).
CUMULATIVE = ["datagrams", "records", "clock_skew", "bytes", "kernel_drops", "oversize",
              "blocks_written",
              "bytes_written", "dropped_records", "forwarded", "forward_errors"] + \
             [name for name in COUNTERS if name.startswith(("reject_", "not_stored_"))]


def _publish_counters(ring: Ring, rx: Receiver, writer, disk_error: bool, base: dict,
                      more_forward_errors: int = 0) -> None:
    b = writer.builder
    mine = dict(datagrams=rx.datagrams, records=b.records, clock_skew=b.clock_skew,
                bytes=rx.bytes,
                kernel_drops=rx.kernel_drops, oversize=rx.oversize,
                blocks_written=writer.blocks_written, bytes_written=writer.bytes_written,
                dropped_records=writer.dropped_records, forwarded=rx.forwarded,
                forward_errors=rx.forward_errors + more_forward_errors,
                **{f"reject_{k}": v for k, v in b.rejects.items()},
                **{f"not_stored_{k}": v for k, v in writer.not_stored.items()})
    ring.set_counters(**{k: base[k] + mine.get(k, 0) for k in CUMULATIVE},
                      disk_error=int(disk_error), updated_ns=time.time_ns(),
                      last_time=max(base["last_time"], writer.last_time,
                                    b.tmax if b.pending else 0, 0))


class _DecimatedSender:
    """The decimated multicast stream: follows the ring, thins, re-encodes, sends."""

    def __init__(self, args, ring: Ring, channel):
        self.sub = Subscriber(ring, channel.schema, Decimation.parse(args.mc_dec))
        self.plan = Plan(channel.schema, wire=True)
        self.sock = multicast_sender(args.mc_dec_group, args.mc_dec_port, args.mc_interface,
                                     args.mc_ttl)
        self.errors = 0

    def pump(self) -> None:
        cols, _ = self.sub.poll()
        if not len(cols):
            return
        time_, data = cols.time, {}
        envelope = self.sub.decimation.kind == "minmax"
        if envelope:                                  # a min and a max record per bucket
            time_ = _interleave(time_, time_)
        for s in self.plan.schema.signals:
            if s.name == self.plan.schema.time_field:
                continue
            if envelope and key(s.name, "min") in cols.data:
                v = _interleave(cols.data[key(s.name, "min")], cols.data[key(s.name, "max")])
            else:
                v = next(cols.data[k] for k in (s.name, key(s.name, self.sub.decimation.kind),
                                                key(s.name, "first")) if k in cols.data)
                v = _interleave(v, v) if envelope else v
            data[s.name] = v.astype(s.dtype) if s.dtype != object else v
        body, ends = encode_columns(self.plan, time_, data)
        start = 0
        for end in ends.tolist():
            try:
                self.sock.send(body[start:end])
            except OSError:
                self.errors += 1       # counted with the full-rate stream's forward_errors
            start = end


def _interleave(a, b):
    out = np.empty(len(a) * 2, dtype=a.dtype)
    out[0::2], out[1::2] = a, b
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="speeddata.ingest.worker", description=__doc__.splitlines()[0])
    p.add_argument("--channel", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--ring", required=True)
    p.add_argument("--rcvbuf", type=int, default=32 << 20)
    p.add_argument("--restarts", type=int, default=0)
    p.add_argument("--supervisor", type=int, default=0,
                   help="the supervisor's pid: the worker stops when it is gone (default: "
                        "the parent at start-up)")
    p.add_argument("--notify", type=int, default=-1,
                   help="a pipe to write a byte to whenever records were published")
    p.add_argument("--mc-group")
    p.add_argument("--mc-port", type=int)
    p.add_argument("--mc-interface", default="127.0.0.1")
    p.add_argument("--mc-ttl", type=int, default=0)
    p.add_argument("--mc-dec-group")
    p.add_argument("--mc-dec-port", type=int)
    p.add_argument("--mc-dec", default="every:10")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
