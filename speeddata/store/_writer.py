"""A channel's one writer: the open block, the current segment, rollover, and retention
calls when this process owns the store's retention."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._block import BlockBuilder
from ..codec import Plan
from ..errors import StoreError
from ..stats import ChannelStats
from ._lock import take_lock
from ._segment import SegmentWriter, parse_stem, segment_stem, store_error

if TYPE_CHECKING:
    from .._block import BlockInfo
    from ._channel import Channel

log = logging.getLogger("speeddata.store")
HEAD_FILE = "HEAD"
MIN_SEGMENT_BYTES = 4096
RETENTION_EVERY = 10.0     # s between retention passes of a writing library user


@dataclass
class Appended:
    """What an append stored and rejected."""
    records: int
    datagrams: int
    rejected: dict[str, int]


class Writer:
    """The one writer of a channel: open block, current segment, rollover and retention."""

    def __init__(self, channel: "Channel", retention: Callable[[], Any] | None = None):
        self.channel = channel
        self.retention = retention   # this process owns the store's retention: run it
        self.lock_fd = take_lock(channel.path, channel.name, wait=2.0)
        try:
            channel.repair()
        except BaseException:
            os.close(self.lock_fd)
            raise
        schema = channel.schema
        self.builder = BlockBuilder(Plan(schema, wire=True), stamp=schema.stamped)
        self.schema_json = schema.to_json()
        self.configure()
        self.segment: SegmentWriter | None = None
        stems = sorted(n[:-5] for n in os.listdir(channel.path) if n.endswith(".avro"))
        self.last_name_time, self.seq = parse_stem(stems[-1]) if stems else (0, 0)
        self.blocks_written = 0
        self.bytes_written = 0
        self.dropped_records = 0
        self.last_time = 0
        self.error = ""
        self.next_retention = time.monotonic() + RETENTION_EVERY

    def configure(self) -> None:
        """Take the channel's settings (again, after they changed)."""
        ch = self.channel
        self.segment_bytes = int(ch.option("segment_bytes"))
        self.block_bytes = int(ch.option("block_bytes"))
        quotas = [q for q in (ch.option("max_bytes"), ch.store.options.get("max_bytes")) if q]
        if quotas:
            # disk use stays within the quota plus one segment only when a segment, and the
            # block that closes it, are small beside the quota
            self.segment_bytes = max(MIN_SEGMENT_BYTES, min(self.segment_bytes,
                                                            int(min(quotas)) // 4))
            self.block_bytes = max(1024, min(self.block_bytes, self.segment_bytes // 4))
        self.flush_interval = float(ch.option("flush_interval"))
        self.segment_span = int(ch.option("segment_span"))
        self.level = int(ch.option("compression_level"))
        self.fsync = bool(ch.option("fsync"))

    def add(self, datagrams: Iterable[bytes | memoryview], recv_ns: int) -> Appended:
        b = self.builder
        before_dg, before_rej = b.datagrams, dict(b.rejects)
        if not isinstance(datagrams, list):
            datagrams = list(datagrams)
        added = i = 0
        with self.channel.lock:
            while True:  # a long list fills several blocks
                got, i = b.add_datagrams(datagrams, recv_ns, i, self.block_bytes)
                added += got
                self.maybe_flush()
                if i >= len(datagrams):
                    break
        rejected = {k: v - before_rej.get(k, 0) for k, v in b.rejects.items()
                    if v != before_rej.get(k, 0)}
        return Appended(added, b.datagrams - before_dg + sum(rejected.values()), rejected)

    def maybe_flush(self) -> None:
        """Flush when the open block is full or its oldest record is flush_interval old."""
        b = self.builder
        if b.nbytes >= self.block_bytes:
            self.flush()
        elif b.pending and b.age >= self.flush_interval:
            self.flush()               # a slow channel: its summaries go out as they come
            self.write_summaries()

    def flush(self) -> None:
        taken = self.builder.take()
        if taken is None:
            return
        body, info = taken
        try:
            if self.segment is None or self._should_roll(info):
                self._roll(info)
            assert self.segment is not None
            self.bytes_written += self.segment.write(body, info, info["summary"])
            self.blocks_written += 1
            self.last_time = max(self.last_time, info["tmax"])
            self.error = ""
        except StoreError as e:
            self.dropped_records += info["count"]
            self.error = str(e)
            raise
        if time.monotonic() >= self.next_retention:
            self._retention()

    def write_summaries(self) -> None:
        """Write the summary rows the segment holds back (it writes them in batches)."""
        if self.segment is not None:
            self.segment.write_summaries()

    def _should_roll(self, info: BlockInfo) -> bool:
        """By size, or by the span of receive times (a device's clock never decides)."""
        seg = self.segment
        assert seg is not None
        return seg.size >= self.segment_bytes or (
            seg.first_recv is not None and info["rmax"] - seg.first_recv >= self.segment_span)

    def _roll(self, info: BlockInfo) -> None:
        if self.segment is not None:
            self.segment.close()
        self.seq += 1
        # named by receive time; names sort in write order even when the host clock steps back
        self.last_name_time = max(info["rmin"], self.last_name_time)
        stem = segment_stem(self.last_name_time, self.seq)
        self.segment = SegmentWriter(os.path.join(self.channel.path, stem + ".avro"),
                                     self.schema_json, level=self.level, fsync=self.fsync)
        head = os.path.join(self.channel.path, HEAD_FILE)
        try:
            with open(head + ".tmp", "w") as f:
                f.write(stem)
            os.replace(head + ".tmp", head)
        except OSError as e:
            raise store_error(e, head) from e
        self._retention()

    def _retention(self) -> None:
        """Retention, when this process is the store's owner of it (a library user writing
        through speeddata.store.open; under speeddata serve the supervisor owns it)."""
        self.next_retention = time.monotonic() + RETENTION_EVERY
        if self.retention is not None:
            self.retention()

    def counters(self, channel: str) -> ChannelStats:
        b = self.builder
        return ChannelStats(channel, datagrams=b.datagrams, records=b.records,
                            rejects=b.rejects, clock_skew=b.clock_skew,
                            blocks_written=self.blocks_written,
                            bytes_written=self.bytes_written,
                            dropped_records=self.dropped_records, error=self.error)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.segment is not None:
                self.segment.close()
            os.close(self.lock_fd)
