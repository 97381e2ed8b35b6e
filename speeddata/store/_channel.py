"""A channel of the store: range reads (from any number of processes) over its segments,
and the handle on its one writer (`_writer.py`)."""

from __future__ import annotations

import json
import mmap
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import zstandard

from .. import schema as S
from ..codec import Columns, Plan, allocate, encoder, finish
from ..errors import DecodeError, StoreError, StoreWarning
from ..timeutil import TimeLike, now_ns, time_range, to_ns
from . import _format as F
from ._segment import needs_repair, repair
from ._writer import HEAD_FILE, Appended, Writer, take_lock

if TYPE_CHECKING:
    from ._store import Store

SCHEMA_FILE = "schema.avsc"
CONFIG_FILE = "channel.json"
_I64_MAX = np.iinfo(np.int64).max
_I64_MIN = np.iinfo(np.int64).min


class _Segment:
    """Cached view of one segment's index, with the arrays range search needs."""

    __slots__ = ("stem", "path", "idx_path", "index", "runmax", "sufmin", "idx_bytes", "_head")

    def __init__(self, directory: str, stem: str):
        self.stem = stem
        self.path = os.path.join(directory, stem + ".avro")
        self.idx_path = os.path.join(directory, stem + ".idx")
        self.idx_bytes = -1
        self._head = None
        self.load()

    def load(self) -> None:
        try:
            self.idx_bytes = os.path.getsize(self.idx_path)
        except FileNotFoundError:
            self.idx_bytes = 0
        self.index = F.load_index(self.idx_path)
        # Out-of-order data makes block time ranges overlap; the running max of tmax and the
        # suffix min of tmin are monotonic, so binary search still finds every candidate.
        self.runmax = np.maximum.accumulate(self.index["tmax"]) if len(self.index) else \
            np.empty(0, np.int64)
        self.sufmin = np.minimum.accumulate(self.index["tmin"][::-1])[::-1] \
            if len(self.index) else np.empty(0, np.int64)

    def reload_if_grown(self) -> bool:
        try:
            size = os.path.getsize(self.idx_path)
        except FileNotFoundError:
            size = 0
        if size != self.idx_bytes:
            self.load()
            return True
        return False

    def disk_bytes(self) -> int:
        """Bytes of the segment and its index (0 once retention deleted them)."""
        total = 0
        for p in (self.path, self.idx_path):
            try:
                total += os.path.getsize(p)
            except FileNotFoundError:
                pass
        return total

    def head(self) -> tuple[str, bytes]:
        """(codec, sync marker) from the segment's header, read once: headers never change."""
        if self._head is None:
            _, codec, sync, _ = F.read_header(self.path)
            self._head = codec, sync
        return self._head

    @property
    def tmin(self) -> int:
        return int(self.sufmin[0]) if len(self.index) else _I64_MAX

    @property
    def tmax(self) -> int:
        return int(self.runmax[-1]) if len(self.index) else _I64_MIN

    def blocks(self, lo: int, hi: int) -> np.ndarray:
        a = np.searchsorted(self.runmax, lo, "left")
        b = np.searchsorted(self.sufmin, hi, "left")
        cand = self.index[a:b]
        return cand[(cand["tmax"] >= lo) & (cand["tmin"] < hi)]


class Channel:
    """One channel of a store: signals sharing one schema and one time axis.

    Get one with ``store["name"]`` or ``store.create_channel(...)``. Appends go through a
    writer that takes the channel's lock on first use (one writing process per channel);
    reads work from any number of processes while it writes.
    """

    def __init__(self, store: "Store", name: str):
        self.store = store
        self.name = name
        self.path = os.path.join(store.path, name)
        try:
            with open(os.path.join(self.path, CONFIG_FILE)) as f:
                self.config: dict[str, Any] = json.load(f)
            with open(os.path.join(self.path, SCHEMA_FILE)) as f:
                avro = json.load(f)
        except (OSError, ValueError) as e:
            raise StoreError(f"channel {name!r} in {store.path} is damaged: {e}") from e
        self.schema = S.load(avro, time_field=self.config["time_field"],
                             time_unit=self.config["time_unit"])
        self._plan = Plan(self.schema)
        self._writer: Writer | None = None
        self._segments: list[_Segment] = []
        self._seg_tmin = self._seg_tmax = np.empty(0, np.int64)
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None
        self._dir_mtime = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} signals={self.schema.signal_names}>"

    @property
    def signals(self) -> list[str]:
        return self.schema.signal_names

    def option(self, key: str):
        """A channel setting, falling back to the store's."""
        value = self.config.get(key)
        return self.store.options[key] if value is None else value

    # ---- writing -------------------------------------------------------------------------

    def writer(self) -> Writer:
        with self._lock:
            if self._writer is None:
                self.store._check_writable()
                self._writer = Writer(self)
            return self._writer

    def append(self, records: Iterable[Mapping[str, Any]], *,
               receive_time: TimeLike | None = None) -> Appended:
        """Append records given as dicts (the slow path, for tests and tools).

        Nested records are nested dicts, as fastavro takes them. Times are in the channel's
        time unit; a channel without a time field stamps ``receive_time`` (default: now).
        """
        one = encoder(self.schema)
        try:
            datagrams = [one(r) for r in records]
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise DecodeError(f"channel {self.name!r}: a record does not fit the schema: {e}",
                              reason="encode", offset=0) from e
        return self.append_datagrams(datagrams, receive_time=receive_time)

    def append_datagrams(self, datagrams: Iterable[bytes], *,
                         receive_time: TimeLike | None = None) -> Appended:
        """Append raw datagrams (one or more Avro records each, as devices send them).

        Datagrams that do not decode exactly are rejected and counted by reason; the rest
        are stored.
        """
        recv = now_ns() if receive_time is None else to_ns(receive_time, what="receive_time")
        return self.writer().add(datagrams, recv)

    def flush(self) -> None:
        """Write the open block now (appends flush by size and age on their own)."""
        with self._lock:
            if self._writer is not None:
                self._writer.flush()

    def close(self) -> None:
        """Flush and give up the writer lock."""
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    # ---- reading -------------------------------------------------------------------------

    def _refresh(self) -> list[_Segment]:
        """The channel's segments, re-listing the directory only when it changed.

        The writer names its newest segment in HEAD as it rolls over: a new segment shows
        there at once, where the directory's mtime (coarse-grained) might not. A segment
        that retention deleted since the last listing is simply skipped by a read."""
        st = os.stat(self.path)
        try:
            with open(os.path.join(self.path, HEAD_FILE)) as f:
                head = f.read().strip()
        except FileNotFoundError:
            head = None
        newest = self._segments[-1].stem if self._segments else None
        if st.st_mtime_ns != self._dir_mtime or (head is not None and head != newest):
            stems = sorted(n[:-5] for n in os.listdir(self.path) if n.endswith(".avro"))
            known = {s.stem: s for s in self._segments}
            if self._segments:   # it may have grown before the writer moved on from it
                self._segments[-1].reload_if_grown()
            self._segments = [known.get(stem) or _Segment(self.path, stem) for stem in stems]
            self._dir_mtime = st.st_mtime_ns
            self._seg_tmin = np.array([s.tmin for s in self._segments], dtype=np.int64)
            self._seg_tmax = np.array([s.tmax for s in self._segments], dtype=np.int64)
            self._bounds = None
        if self._segments and self._segments[-1].reload_if_grown():  # only the newest grows
            self._seg_tmin[-1] = self._segments[-1].tmin
            self._seg_tmax[-1] = self._segments[-1].tmax
            self._bounds = None
        if self._bounds is None:
            # running max of tmax and suffix min of tmin are monotonic even when segments
            # overlap in time, so binary search finds every candidate segment
            self._bounds = (np.maximum.accumulate(self._seg_tmax),
                            np.minimum.accumulate(self._seg_tmin[::-1])[::-1])
        return self._segments

    def _select(self, lo: int, hi: int) -> list[tuple[_Segment, np.ndarray]]:
        segs = self._refresh()
        if not segs:
            return []
        runmax, sufmin = self._bounds
        a = int(np.searchsorted(runmax, lo, "left"))
        b = int(np.searchsorted(sufmin, hi, "left"))
        out = []
        for seg in segs[a:b]:
            if seg.tmax >= lo and seg.tmin < hi:
                blocks = seg.blocks(lo, hi)
                if len(blocks):
                    out.append((seg, blocks))
        return out

    def read(self, start: TimeLike | None = None, end: TimeLike | None = None,
             signals: Sequence[str] | None = None) -> Columns:
        """Records with start <= time < end, sorted by time, as columns.

        Parameters
        ----------
        start, end : time, optional
            Half-open range; None for open-ended. int ns, datetime, numpy.datetime64 or
            ISO 8601 text.
        signals : list of str, optional
            Signals to decode (all by default); ``time`` always comes.
        """
        lo, hi = time_range(start, end)
        self.flush()
        with self._lock:
            selected = self._select(lo, hi)
        return self._decode(selected, lo, hi, signals)

    def count(self, start: TimeLike | None = None, end: TimeLike | None = None
              ) -> tuple[int, bool]:
        """Records in [start, end) from the index alone: (count, exact). Not exact when a
        block straddles an edge (then count is an upper bound)."""
        lo, hi = time_range(start, end)
        self.flush()
        with self._lock:
            selected = self._select(lo, hi)
        total = sum(int(b["count"].sum()) for _, b in selected)
        exact = not any(((b["tmin"] < lo) | (b["tmax"] >= hi)).any() for _, b in selected)
        return total, exact

    def iter_read(self, start: TimeLike | None = None, end: TimeLike | None = None,
                  signals: Sequence[str] | None = None,
                  chunk_records: int = 1 << 20) -> Iterator[Columns]:
        """Like `read`, in time-ordered chunks of about ``chunk_records`` records, so that
        memory stays bounded. Data whose blocks overlap in time (out-of-order arrivals) comes
        in one chunk, since only a full sort puts it in order."""
        lo, hi = time_range(start, end)
        self.flush()
        with self._lock:
            selected = self._select(lo, hi)
        flat = [(seg, e) for seg, entries in selected for e in entries]
        if not _blocks_in_order([e for _, e in flat]):
            yield self._decode(selected, lo, hi, signals)
            return
        group, n = [], 0
        for seg, e in flat:
            group.append((seg, e))
            n += int(e["count"])
            if n >= chunk_records:
                yield self._decode(_regroup(group), lo, hi, signals)
                group, n = [], 0
        if group:
            yield self._decode(_regroup(group), lo, hi, signals)

    def _decode(self, selected, lo: int, hi: int, signals) -> Columns:
        total = sum(int(b["count"].sum()) for _, b in selected)
        time_col, columns, masks = allocate(self.schema, total, signals)
        tasks, lost, maps, row, mem = [], [], [], 0, None
        try:
            for seg, blocks in selected:
                count = int(blocks["count"].sum())
                try:
                    # mapped, not read: blocks decompress straight from the page cache.
                    # Only repair shrinks a segment, and only past its last indexed block.
                    with open(seg.path, "rb") as f:
                        maps.append(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
                    head = seg.head()
                except (FileNotFoundError, ValueError):   # deleted by retention meanwhile
                    lost.append((row, count))
                    row += count
                    continue
                mem = memoryview(maps[-1])
                for b in blocks:
                    tasks.append(_Task(seg.path, head, mem, int(b["offset"]),
                                       int(b["length"]), int(b["count"]), row))
                    row += int(b["count"])

            def run(t: _Task) -> str | None:
                try:
                    _, payload, _ = F.parse_block(t.mem[t.offset:t.offset + t.length], 0,
                                                  t.head[1])
                    body = _decompressor(t.head[0])(payload)
                    self._plan.decode_into(body, t.count, t.row, time_col, columns, masks)
                    return None
                except (F.FormatError, DecodeError, zstandard.ZstdError, ValueError) as err:
                    return f"{t.path}: skipping corrupt block at byte {t.offset}: {err}"

            # Blocks decode independently (zstd and the codec's parse run without the GIL),
            # so large reads spread over the cores.
            if total >= _PARALLEL_RECORDS and len(tasks) > 1:
                problems = list(_pool().map(run, tasks))
            else:
                problems = [run(t) for t in tasks]
            for task, problem in zip(tasks, problems):
                if problem:
                    warnings.warn(problem, StoreWarning, stacklevel=3)
                    lost.append((task.row, task.count))
        finally:
            # unmapped when the last view goes (a pool thread may still hold its task for a
            # moment, so no explicit close, which would fail while a view exists)
            tasks = mem = maps = None
        cols = finish(self.schema, time_col, columns, masks, self.name)
        keep = None
        if lost:
            keep = np.ones(total, dtype=bool)
            for at, count in lost:
                keep[at:at + count] = False
        if any(b["tmin"] < lo or b["tmax"] >= hi for _, bl in selected for b in bl):
            inside = (cols.time >= lo) & (cols.time < hi)
            keep = inside if keep is None else keep & inside
        if keep is not None:
            cols = cols.take(keep)
        if not _blocks_in_order([b for _, bl in selected for b in bl]):
            cols = cols.take(np.argsort(cols.time, kind="stable"))
        return cols

    # ---- what it holds -------------------------------------------------------------------

    def segments(self) -> list[str]:
        """Paths of the channel's segment files, oldest first."""
        with self._lock:
            return [s.path for s in self._refresh()]

    def holds(self) -> tuple[int, int] | None:
        """(first, last) record time held, in ns; None when empty."""
        with self._lock:
            segs = [s for s in self._refresh() if len(s.index)]
        if not segs:
            return None
        return min(s.tmin for s in segs), max(s.tmax for s in segs)

    def stats(self) -> dict[str, Any]:
        """Records, bytes on disk, time held and segments; writer counters when writing."""
        self.flush()
        with self._lock:
            segs = self._refresh()
            records = sum(int(s.index["count"].sum()) for s in segs)
        held = self.holds()
        out = {"channel": self.name, "records": records, "bytes": sum(s.disk_bytes() for s in segs),
               "segments": len(segs), "first_time": held[0] if held else None,
               "last_time": held[1] if held else None}
        if self._writer is not None:
            out.update(self._writer.counters())
        return out

    def repair_if_idle(self) -> list:
        """Repair unless another process is writing the channel (its writer repaired it)."""
        try:
            fd = take_lock(self)
        except StoreError:
            return []
        try:
            return self.repair()
        finally:
            os.close(fd)

    def repair(self) -> list:
        """Repair segments a killed writer left torn (needs the writer lock)."""
        names = set(os.listdir(self.path))
        stems = sorted(n[:-5] for n in names if n.endswith(".avro"))
        # A writer only ever appends to its newest segment, so that is the one a kill can
        # tear; older ones are checked only for a missing index (cheap for large stores).
        suspects = [s for s in stems[:-1] if s + ".idx" not in names] + stems[-1:]
        done = []
        for stem in suspects:
            path = os.path.join(self.path, stem + ".avro")
            if needs_repair(path):
                done.append(repair(path, self._plan))
        self._segments = []
        self._dir_mtime = None
        self._bounds = None
        return done


_PARALLEL_RECORDS = 200_000
_POOL: ThreadPoolExecutor | None = None
_LOCAL = threading.local()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                                   thread_name_prefix="speeddata-decode")
    return _POOL


def _decompressor(codec: str) -> F.Decompressor:
    """One per thread and codec: zstandard decompressors are not thread-safe."""
    cache = _LOCAL.__dict__.setdefault("decompressors", {})
    if codec not in cache:
        cache[codec] = F.Decompressor(codec)
    return cache[codec]


class _Task(NamedTuple):
    """One block to decode into rows row..row+count of a read's columns."""
    path: str
    head: tuple[str, bytes]     # (codec, sync marker)
    mem: memoryview             # the mapped segment
    offset: int                 # the block's file offset and length
    length: int
    count: int
    row: int


def _blocks_in_order(entries) -> bool:
    prev = _I64_MIN
    for e in entries:
        if not int(e["flags"]) & F.FLAG_IN_ORDER or int(e["tmin"]) < prev:
            return False
        prev = int(e["tmax"])
    return True


def _regroup(pairs):
    out = []
    for seg, e in pairs:
        if out and out[-1][0] is seg:
            out[-1][1].append(e)
        else:
            out.append((seg, [e]))
    return [(seg, np.array(es, dtype=F.INDEX_DTYPE)) for seg, es in out]
