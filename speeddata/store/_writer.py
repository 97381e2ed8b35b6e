"""A channel's one writer: the open block, the current segment, rollover, and retention
calls when this process owns the store's retention."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .._block import BlockBuilder
from ..codec import Plan
from ..errors import StoreError
from ..schema import ChannelSchema
from ..stats import ChannelStats
from ._lock import take_lock
from ._segment import (HEAD_FILE, SegmentWriter, compressor, parse_stem, segment_stem,
                       store_error)

if TYPE_CHECKING:
    from .._block import BlockInfo

log = logging.getLogger("speeddata.store")
MIN_SEGMENT_BYTES = 4096
RETENTION_EVERY = 10.0     # s between retention passes of a writing library user
PIPELINE_BYTES = 1 << 20   # records an append hands to a compressing thread at a time
PIPELINE_THREADS = 2
HOLD_BYTES = 256 << 10     # full blocks of a worker's stream held to be written together
PIPELINE_DEPTH = 8          # batches handed off and not yet written (megabytes in flight)
_LOCAL = threading.local()


@dataclass
class Appended:
    """What an append stored and rejected."""
    records: int
    datagrams: int
    rejected: dict[str, int]


@dataclass(frozen=True)
class Settings:
    """A channel's settings as its writer takes them."""
    segment_bytes: int
    block_bytes: int
    flush_interval: float
    segment_span: int
    fsync: bool
    compression_level: int
    quotas: tuple[int, ...]        # byte quotas: the channel's and its store's, where set

    @classmethod
    def of(cls, option: Callable[[str], Any], store_quota: int | None) -> Settings:
        """From ``option(key)`` (a channel's setting, else its store's) and the store's own
        byte quota."""
        return cls(int(option("segment_bytes")), int(option("block_bytes")),
                   float(option("flush_interval")), int(option("segment_span")),
                   bool(option("fsync")), int(option("compression_level")),
                   tuple(int(q) for q in (option("max_bytes"), store_quota) if q))


class Target(Protocol):
    """What a writer is given by the channel it writes: where and what, the lock its appends
    share with reads, the repair of what a killed writer left, and the settings in force.
    The writer never looks further up than this."""
    name: str
    path: str
    schema: ChannelSchema

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    def repair(self) -> object: ...

    def writer_settings(self) -> Settings: ...


class Writer:
    """The one writer of a channel: open block, current segment, rollover and retention."""

    def __init__(self, channel: Target, retention: Callable[[], Any] | None = None):
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
        # blocks held to be compressed together, and those compressing (see flush)
        self._batch: list[tuple[bytes, BlockInfo]] = []
        self._batch_bytes = 0
        self._held_since: float | None = None     # when the oldest block held was taken
        self._compressing: deque[tuple[Future[list[bytes]], list[BlockInfo]]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self.configure()
        self.segment: SegmentWriter | None = None
        stems = sorted(n[:-5] for n in os.listdir(channel.path) if n.endswith(".avro"))
        self.last_name_time, self.seq = parse_stem(stems[-1]) if stems else (0, 0)
        self.blocks_written = 0
        self.bytes_written = 0
        self.dropped_records = 0
        self.not_stored: Counter[str] = Counter()    # dropped_records by StoreError.reason
        self.last_time = 0
        self.error = ""
        self.next_retention = time.monotonic() + RETENTION_EVERY

    def configure(self) -> None:
        """Take the channel's settings (again, after they changed)."""
        s = self.channel.writer_settings()
        self.segment_bytes, self.block_bytes = s.segment_bytes, s.block_bytes
        if s.quotas:
            # disk use stays within the quota plus one segment only when a segment, and the
            # block that closes it, are small beside the quota
            self.segment_bytes = max(MIN_SEGMENT_BYTES, min(self.segment_bytes,
                                                            min(s.quotas) // 4))
            self.block_bytes = max(1024, min(self.block_bytes, self.segment_bytes // 4))
        self.flush_interval = s.flush_interval
        self.segment_span = s.segment_span
        self.fsync = s.fsync
        self.drain()                   # what is compressing keeps the level it began with
        self.level = s.compression_level
        self._zstd = compressor(self.level)

    def add(self, datagrams: Iterable[bytes | memoryview], recv_ns: int) -> Appended:
        return self.add_batches([datagrams], recv_ns)

    def add_batches(self, batches: Iterable[Iterable[bytes | memoryview]], recv_ns: int
                    ) -> Appended:
        """Add batches of datagrams, made as they are taken (so that the blocks of one are
        compressed while the next is made); the last block is written before this returns."""
        b = self.builder
        before_dg, before_rej = b.datagrams, dict(b.rejects)
        added = 0
        with self.channel.lock:
            try:
                for datagrams in batches:
                    if not isinstance(datagrams, list):
                        datagrams = list(datagrams)
                    i = 0
                    while True:  # a long list fills several blocks
                        got, i = b.add_datagrams(datagrams, recv_ns, i, self.block_bytes)
                        added += got
                        self.maybe_flush(pipelined=True)
                        if i >= len(datagrams):
                            break
            finally:
                self.drain()
        rejected = {k: v - before_rej.get(k, 0) for k, v in b.rejects.items()
                    if v != before_rej.get(k, 0)}
        return Appended(added, b.datagrams - before_dg + sum(rejected.values()), rejected)

    def maybe_flush(self, *, pipelined: bool = False) -> None:
        """Flush when the open block is full or its oldest record is flush_interval old
        (or, for blocks held to be written together, the oldest of them)."""
        b = self.builder
        if b.nbytes >= self.block_bytes:
            self.flush(pipelined=pipelined, hold=not pipelined)
        elif (b.pending and b.age >= self.flush_interval) or (
                self._held_since is not None
                and time.monotonic() - self._held_since >= self.flush_interval):
            self.flush()               # a slow channel: its summaries go out as they come
            self.write_summaries()

    def flush(self, *, pipelined: bool = False, hold: bool = False) -> None:
        """Compress and write the open block, and the blocks held or being compressed.

        ``pipelined`` (an append that fills block after block): blocks are compressed a
        megabyte at a time in the writer's threads while the caller validates the next
        ones (zstandard and the block stage let go of the GIL), so an append uses more
        than one core. Blocks are written in order all the same, and `drain` writes the
        last before the append returns.

        ``hold`` (a full block of a worker's stream): blocks are held until `HOLD_BYTES`
        of them, or the oldest is flush_interval old, then written with one write (two
        writes a block were a sixth of ingest's cost)."""
        taken = self.builder.take()
        if taken is not None:
            self._batch.append(taken)
            self._batch_bytes += len(taken[0])
            if pipelined:
                if self._batch_bytes >= PIPELINE_BYTES:
                    self._hand_off()
                while len(self._compressing) > PIPELINE_DEPTH:
                    self._write_next()
                return
            if hold and self._batch_bytes < HOLD_BYTES:
                if self._held_since is None:
                    self._held_since = time.monotonic()
                return
        self.drain()

    def drain(self) -> None:
        """Write the blocks handed off or held for compression, in order."""
        while self._compressing:
            self._write_next()
        self._held_since = None
        if self._batch:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            self._write_all([self._zstd.compress(body) for body, _ in batch],
                            [info for _, info in batch])

    def _hand_off(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PIPELINE_THREADS,
                                            thread_name_prefix="speeddata-zstd")
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        self._compressing.append((
            self._pool.submit(_compress, [body for body, _ in batch], self.level),
            [info for _, info in batch]))

    def _write_next(self) -> None:
        future, infos = self._compressing.popleft()
        self._write_all(future.result(), infos)

    def _write_all(self, payloads: list[bytes], infos: list[BlockInfo]) -> None:
        """Write compressed blocks in order: each run of them that goes to one segment with
        one write (and one for their index entries), not two writes a block."""
        k = 0
        while k < len(payloads):
            try:
                if self.segment is None or self._should_roll(infos[k]):
                    self._roll(infos[k])
                assert self.segment is not None
                frames = self._run(self.segment, payloads, infos, k)
                self.bytes_written += self.segment.write(frames, infos[k:k + len(frames)])
            except StoreError as e:
                # as a failed block is, the blocks queued behind it are dropped (counted)
                self.error = str(e)
                lost = sum(i["count"] for i in infos[k:]) + \
                    sum(i["count"] for _, queued in self._compressing for i in queued) + \
                    sum(i["count"] for _, i in self._batch)
                self.dropped_records += lost
                self.not_stored[e.reason] += lost
                self._compressing.clear()
                self._batch, self._batch_bytes = [], 0
                raise
            self.blocks_written += len(frames)
            self.last_time = max(self.last_time, *(i["tmax"] for i in infos[k:k + len(frames)]))
            self.error = ""
            k += len(frames)
            if time.monotonic() >= self.next_retention:
                self._retention()

    def _run(self, seg: SegmentWriter, payloads: list[bytes], infos: list[BlockInfo],
             k: int) -> list[bytes]:
        """The framed blocks from k on that go to ``seg`` before it must roll over (at
        least block k's)."""
        frames = [seg.frame(payloads[k], infos[k])]
        size = seg.size + len(frames[0])
        first = infos[k]["rmin"] if seg.first_recv is None else seg.first_recv
        for payload, info in zip(payloads[k + 1:], infos[k + 1:]):
            if self._rolls(size, first, info):
                break
            frames.append(seg.frame(payload, info))
            size += len(frames[-1])
        return frames

    def write_summaries(self) -> None:
        """Write the summary rows the segment holds back (it writes them in batches)."""
        if self.segment is not None:
            self.segment.write_summaries()

    def _should_roll(self, info: BlockInfo) -> bool:
        seg = self.segment
        assert seg is not None
        return self._rolls(seg.size, seg.first_recv, info)

    def _rolls(self, size: int, first_recv: int | None, info: BlockInfo) -> bool:
        """Whether a block goes to a new segment, after one of ``size`` bytes whose first
        block came at ``first_recv``: by size, or by the span of receive times (a device's
        clock never decides)."""
        return size >= self.segment_bytes or (
            first_recv is not None and info["rmax"] - first_recv >= self.segment_span)

    def _roll(self, info: BlockInfo) -> None:
        if self.segment is not None:
            self.segment.close()
        self.seq += 1
        # named by receive time; names sort in write order even when the host clock steps back
        self.last_name_time = max(info["rmin"], self.last_name_time)
        stem = segment_stem(self.last_name_time, self.seq)
        self.segment = SegmentWriter(os.path.join(self.channel.path, stem + ".avro"),
                                     self.schema_json, fsync=self.fsync)
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
                            dropped_records=self.dropped_records,
                            not_stored=dict(self.not_stored), error=self.error)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            if self.segment is not None:
                self.segment.close()
            os.close(self.lock_fd)


def _compress(bodies: list[bytes], level: int) -> list[bytes]:
    """Blocks compressed in a pipeline thread (with a compressor of its own: they are not
    thread-safe)."""
    cache = _LOCAL.__dict__.setdefault("compressors", {})
    if level not in cache:
        cache[level] = compressor(level)
    return [cache[level].compress(b) for b in bodies]
