"""The live feed: each channel's latest records in a shared-memory ring, and subscribers that
read it with decimation.

The ingest worker publishes every accepted datagram's records (in the store's form, so one
decoder serves both) to a ring in /dev/shm without touching disk; any process maps the ring
and follows it. A subscriber that falls behind by more than the ring holds is told how many
records it missed; it never slows the worker or other subscribers. The ring also carries the
channel's counters (see `COUNTERS`).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence

import numpy as np

from .._ring import ENTRY_FIELDS, RING_LAYOUT
from ..codec import REASONS, Plan, decode
from ..columns import Columns
from ..decimation import Decimation, Decimator
from ..errors import NOT_STORED, SpeedDataError
from ..schema import ChannelSchema

_HEADER = RING_LAYOUT["header_bytes"]
_NCOUNTERS = RING_LAYOUT["counter_slots"]
MAGIC = 0x5344_4C49_5645_0001            # "SDLIVE" v1
ENTRY = np.dtype({"names": [f[0] for f in ENTRY_FIELDS],
                  "formats": [f[1] for f in ENTRY_FIELDS],
                  "offsets": [f[2] for f in ENTRY_FIELDS],
                  "itemsize": RING_LAYOUT["entry_bytes"]})      # RingEntry in _ring.pxd
H_MAGIC = 0
H_ENTRIES, H_DATA, H_WRITE_ENTRY, H_WRITE_RECORDS, H_DATA_HEAD = (
    RING_LAYOUT[k] for k in ("entries", "data", "write_entry", "write_records", "data_head"))

COUNTERS = ["datagrams", "records", "bytes", "kernel_drops", "oversize", "blocks_written",
            "bytes_written", "dropped_records", "last_time", "restarts", "pid", "disk_error",
            "forwarded", "forward_errors", "rcvbuf", "updated_ns", "datagrams_per_s",
            "records_per_s", "clock_skew"] + \
           [f"reject_{r}" for r in REASONS[1:]] + [f"not_stored_{r}" for r in NOT_STORED]
assert len(COUNTERS) <= _NCOUNTERS


def ring_size(entries: int, data_bytes: int) -> int:
    return _HEADER + _NCOUNTERS * 8 + entries * ENTRY.itemsize + data_bytes


def create_ring(path: str, entries: int = 1 << 16, data_bytes: int = 16 << 20) -> str:
    """Create (or reset) a ring file, typically in /dev/shm."""
    size = ring_size(entries, data_bytes)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size) as m:
            header = np.frombuffer(m, dtype=np.uint64, count=8)
            header[H_ENTRIES] = entries
            header[H_DATA] = data_bytes
            header[H_MAGIC] = MAGIC
            del header
    finally:
        os.close(fd)
    return path


class Ring:
    """A mapped ring file: header, counters, entries and data as numpy views."""

    def __init__(self, path: str, *, writable: bool = False):
        self.path = path
        fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            self._mmap = mmap.mmap(fd, size, prot=mmap.PROT_READ | (mmap.PROT_WRITE if writable
                                                                       else 0))
        finally:
            os.close(fd)
        buf = memoryview(self._mmap)
        self.header = np.frombuffer(buf, dtype=np.uint64, count=8)
        if int(self.header[H_MAGIC]) != MAGIC:
            raise SpeedDataError(f"{path} is not a SpeedData live ring")
        self.nentries = int(self.header[H_ENTRIES])
        self.ndata = int(self.header[H_DATA])
        self.counters = np.frombuffer(buf, dtype=np.uint64, count=_NCOUNTERS, offset=_HEADER)
        start = _HEADER + _NCOUNTERS * 8
        self.entries = np.frombuffer(buf, dtype=ENTRY, count=self.nentries, offset=start)
        self.data = np.frombuffer(buf, dtype=np.uint8, count=self.ndata,
                                  offset=start + self.nentries * ENTRY.itemsize)

    @property
    def memory(self):
        """The writable mapping (for the Cython writer)."""
        return self._mmap

    def counter_values(self) -> dict[str, int]:
        values = self.counters.tolist()
        return {name: values[i] for i, name in enumerate(COUNTERS)}

    def set_counters(self, **values: float) -> None:
        for name, value in values.items():
            self.counters[COUNTERS.index(name)] = max(0, int(value))

    @property
    def written(self) -> tuple[int, int]:
        """(entries, records) published so far."""
        return int(self.header[H_WRITE_ENTRY]), int(self.header[H_WRITE_RECORDS])

    def close(self) -> None:
        for name in ("header", "counters", "entries", "data"):
            self.__dict__.pop(name, None)
        try:
            self._mmap.close()
        except BufferError:   # a caller still holds a view; the mapping goes with it
            pass


_MARGIN = 8     # entries next to the writer's that may be in the middle of being written


class Subscriber:
    """Follows one channel's ring from now on, from the oldest record it holds, or from a
    given record number (a resume point).

    ``poll()`` returns the new records since the last call, decimated, and how many records
    were missed because this subscriber fell behind the ring. ``record`` is the number of
    the next record it expects.
    """

    def __init__(self, ring: Ring, schema: ChannelSchema, decimation: Decimation | None = None,
                 signals: Sequence[str] | None = None, *, from_oldest: bool = False,
                 from_record: int | None = None):
        self.ring = ring
        self.plan = Plan(schema)
        self.schema = schema
        self.decimation = decimation or Decimation()
        self.signals = signals
        self.missed = 0
        self._decimator = Decimator(self.decimation)
        self.first_record = 0          # of the records the last poll returned
        entries, records = ring.written
        self.cursor, self.record = entries, records
        self.covered = records         # records before this are in what poll returned
        if from_oldest:
            self.cursor = max(0, entries - ring.nentries // 2)
            if entries:
                self.record = int(ring.entries[self.cursor % ring.nentries]["first_record"])
        elif from_record is not None and from_record < records:
            self._seek(from_record)

    def _seek(self, record: int) -> None:
        """Start at the entry that holds ``record`` (or the oldest one held)."""
        ring = self.ring
        written = int(ring.header[H_WRITE_ENTRY])
        seq = np.arange(max(0, written - ring.nentries + _MARGIN), written, dtype=np.int64)
        firsts = ring.entries[seq % ring.nentries]["first_record"].astype(np.int64)
        at = max(0, int(np.searchsorted(firsts, record, side="right")) - 1)
        self.cursor = int(seq[at]) if len(seq) else written
        self.record = record

    def poll(self, max_records: int = 1 << 18) -> tuple[Columns, int]:
        """The records published since the last call (decimated) and how many were missed.

        A span of entries is copied at once, then checked against the writer's position:
        entries (and bytes) the writer reused while they were being copied are dropped,
        and no record number below the next expected one is ever delivered, so a lapped
        reader gets each record once or counts it as missed.
        """
        ring = self.ring
        n = ring.nentries
        written = int(ring.header[H_WRITE_ENTRY])
        # entries the writer may be overwriting right now are skipped, not read torn
        cursor = max(self.cursor, written - n + _MARGIN)
        end = min(written, cursor + max_records)     # an entry holds at least one record
        seq = np.arange(cursor, max(cursor, end), dtype=np.int64)
        e = ring.entries[seq % n]                    # a copy
        lens = e["length"].astype(np.int64)
        starts = (e["offset"] % ring.ndata).astype(np.int64)
        raw = ring.data[np.repeat(starts - np.cumsum(lens) + lens, lens)
                        + np.arange(int(lens.sum()))] if len(e) else np.empty(0, np.uint8)
        # what the writer reused meanwhile: oldest first, so a prefix of the span
        written_after, head_after = int(ring.header[H_WRITE_ENTRY]), int(ring.header[H_DATA_HEAD])
        firsts = e["first_record"].astype(np.int64)
        lost = (seq < written_after - n + _MARGIN) | \
            (head_after - e["offset"].astype(np.int64) > ring.ndata) | \
            (firsts + e["count"].astype(np.int64) <= self.record)
        keep_from = int(np.flatnonzero(lost)[-1]) + 1 if lost.any() else 0
        self.cursor = int(end) if end > cursor else cursor
        kept = e[keep_from:]
        body = raw[int(lens[:keep_from].sum()):].tobytes()
        cols = decode(self.plan, body, int(kept["count"].sum()), self.signals)
        expected = first = self.record
        if len(kept):
            first = int(kept["first_record"][0])
            if first < expected:                     # a resume point inside a datagram
                cols, first = cols.take(slice(expected - first, None)), expected
            self.record = int(kept["first_record"][-1]) + int(kept["count"][-1])
        missed = first - expected
        self.missed += missed
        self.first_record = first
        out, self.covered = self._decimator.push(cols, first, missed)
        return out, missed
