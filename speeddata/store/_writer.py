"""A channel's one writer: the open block, the current segment, rollover, retention calls,
and the lock that makes it the only one."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._ingest import BlockBuilder
from ..codec import Plan
from ..errors import StoreError
from ._segment import SegmentWriter, _store_error, parse_stem, segment_stem

if TYPE_CHECKING:
    from ._channel import Channel

LOCK_FILE = "writer.lock"
HEAD_FILE = "HEAD"


@dataclass
class Appended:
    """What an append stored and rejected."""
    records: int
    datagrams: int
    rejected: dict[str, int]


class Writer:
    """The one writer of a channel: open block, current segment, rollover and retention."""

    def __init__(self, channel: "Channel"):
        self.channel = channel
        self.lock_fd = take_lock(channel, wait=2.0)
        try:
            channel.repair()
        except BaseException:
            os.close(self.lock_fd)
            raise
        schema = channel.schema
        self.builder = BlockBuilder(Plan(schema, wire=True), stamp=schema.stamped)
        self.schema_json = schema.to_json()
        self.block_bytes = int(channel.option("block_bytes"))
        self.flush_interval = float(channel.option("flush_interval"))
        self.segment_bytes = int(channel.option("segment_bytes"))
        quota = channel.option("max_bytes") or channel.store.options.get("max_bytes")
        if quota:  # small quotas want small segments, or one segment would exceed them
            self.segment_bytes = max(4096, min(self.segment_bytes, int(quota) // 4))
        self.segment_span = int(channel.option("segment_span"))
        self.level = int(channel.option("compression_level"))
        self.fsync = bool(channel.option("fsync"))
        self.segment: SegmentWriter | None = None
        stems = sorted(n[:-5] for n in os.listdir(channel.path) if n.endswith(".avro"))
        self.last_name_time, self.seq = parse_stem(stems[-1]) if stems else (0, 0)
        self.block_started: float | None = None
        self.blocks_written = 0
        self.bytes_written = 0
        self.dropped_records = 0
        self.last_time = 0
        self.last_error = ""
        self.next_retention = time.monotonic() + 10

    def add(self, datagrams: Iterable[bytes], recv_ns: int) -> Appended:
        b = self.builder
        before_dg, before_rej = b.datagrams, dict(b.rejects)
        if not isinstance(datagrams, list):
            datagrams = list(datagrams)
        added = i = 0
        with self.channel._lock:
            while True:  # a long list fills several blocks
                got, i = b.add_datagrams(datagrams, recv_ns, i, self.block_bytes)
                added += got
                if b.pending and self.block_started is None:
                    self.block_started = time.monotonic()
                self.maybe_flush()
                if i >= len(datagrams):
                    break
        rejected = {k: v - before_rej.get(k, 0) for k, v in b.rejects.items()
                    if v != before_rej.get(k, 0)}
        return Appended(added, b.datagrams - before_dg + sum(rejected.values()), rejected)

    def maybe_flush(self, now: float | None = None) -> None:
        """Flush when the open block is full or its oldest record is flush_interval old
        (records that a receiver added straight to the builder are dated when first seen
        here, which the receive loop does every few ms)."""
        now = now or time.monotonic()
        if self.builder.nbytes >= self.block_bytes:
            self.flush()
        elif self.block_started is not None:
            if now - self.block_started >= self.flush_interval:
                self.flush()
        elif self.builder.pending:
            self.block_started = now

    def flush(self) -> None:
        taken = self.builder.take()
        self.block_started = None
        if taken is None:
            return
        body, _times, info = taken
        try:
            if self.segment is None or self._should_roll(info):
                self._roll(info)
            self.bytes_written += self.segment.write(body, info)
            self.blocks_written += 1
            self.last_time = max(self.last_time, info["tmax"])
            self.last_error = ""
        except StoreError as e:
            self.dropped_records += info["count"]
            self.last_error = str(e)
            raise
        if time.monotonic() >= self.next_retention:
            self._retention()

    def _should_roll(self, info: dict) -> bool:
        seg = self.segment
        return seg.size >= self.segment_bytes or (
            seg.first_time is not None and info["tmax"] - seg.first_time >= self.segment_span)

    def _roll(self, info: dict) -> None:
        if self.segment is not None:
            self.segment.close()
        self.seq += 1
        # names sort in write order even when a device clock steps back
        self.last_name_time = max(info["tmin"], self.last_name_time)
        stem = segment_stem(self.last_name_time, self.seq)
        self.segment = SegmentWriter(os.path.join(self.channel.path, stem + ".avro"),
                                     self.schema_json, level=self.level, fsync=self.fsync)
        head = os.path.join(self.channel.path, HEAD_FILE)
        try:
            with open(head + ".tmp", "w") as f:
                f.write(stem)
            os.replace(head + ".tmp", head)
        except OSError as e:
            raise _store_error(e, head) from e
        self._retention()

    def _retention(self) -> None:
        self.next_retention = time.monotonic() + 10
        self.channel.store.enforce_retention()

    def counters(self) -> dict[str, Any]:
        return {"datagrams": self.builder.datagrams, "accepted_records": self.builder.records,
                "rejects": self.builder.rejects, "blocks_written": self.blocks_written,
                "bytes_written": self.bytes_written, "dropped_records": self.dropped_records,
                "last_error": self.last_error}

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.segment is not None:
                self.segment.close()
            os.close(self.lock_fd)


def take_lock(channel: "Channel", wait: float = 0.0) -> int:
    """The channel's writer lock; waits up to ``wait`` s, since another process opening the
    store holds it for a moment to repair the channel."""
    path = os.path.join(channel.path, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"cannot write channel {channel.name!r} in {channel.store.path}: "
                         f"{e.strerror}") from e
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.01)
                continue
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreError(f"channel {channel.name!r} is being written by another process "
                             f"(pid {holder})", hint="one process writes a channel at a time") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def writer_active(channel_path: str) -> bool:
    """True when some process holds the channel's writer lock."""
    try:
        fd = os.open(os.path.join(channel_path, LOCK_FILE), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
