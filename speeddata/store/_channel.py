"""A channel of the store: range reads (from any number of processes) over its segments,
and the handle on its one writer (`_writer.py`)."""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import zstandard

from .. import schema as S
from ..codec import Plan, allocate, decode, encode_column_slices, encoder, finish
from ..columns import Columns
from ..errors import DecodeError, FormatError, StoreError, StoreWarning, TimeRangeError
from ..stats import ChannelStats
from ..timeutil import TimeLike, now_ns, time_range, to_ns
from . import _format as F
from . import _overview as O
from ._overview import Overview
from ._lock import take_lock, writer_active
from ._segment import Repair, needs_repair, repair
from ._view import SegmentView
from ._writer import HEAD_FILE, Appended, Writer

if TYPE_CHECKING:
    from ._store import Store

SCHEMA_FILE = "schema.avsc"
CONFIG_FILE = "channel.json"
log = logging.getLogger("speeddata.store")


class Channel:
    """One channel of a store: signals sharing one schema and one time axis.

    Get one with ``store["name"]`` or ``store.create_channel(...)``. Appends go through a
    writer that takes the channel's lock on first use (one writing process per channel);
    reads work from any number of processes while it writes.
    """

    def __init__(self, store: "Store", name: str, path: str):
        self.store = store
        self.name = name
        self.path = path
        self.config, self.schema, self.rebuilt = _definition(path, name, store.readonly)
        self._plan = Plan(self.schema)
        self._wire: Plan | None = None
        self._summarised = False
        self._writer: Writer | None = None
        self._segments: list[SegmentView] = []
        self._seg_tmin = self._seg_tmax = np.empty(0, np.int64)
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None
        self._dir_mtime: int | None = None
        self._head_seen: tuple[tuple[int, int, int], str | None] | None = None
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} signals={self.schema.signal_names}>"

    @property
    def signals(self) -> list[str]:
        return self.schema.signal_names

    def option(self, key: str):
        """A channel setting, falling back to the store's."""
        value = self.config.get("options", {}).get(key)
        return self.store.options[key] if value is None else value

    @property
    def options(self) -> dict[str, Any]:
        """The settings this channel overrides (the rest follow the store's)."""
        return dict(self.config.get("options", {}))

    # ---- writing -------------------------------------------------------------------------

    def writer(self) -> Writer:
        with self.lock:
            if self._writer is None:
                self.store._check_writable()
                self._writer = Writer(self, retention=self.store.enforce_retention
                                      if self.store.owns_retention else None)
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
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            raise DecodeError(f"channel {self.name!r}: a record does not fit the schema: {e}",
                              reason="encode", offset=0) from e
        return self.append_datagrams(datagrams, receive_time=receive_time)

    def append_datagrams(self, datagrams: Iterable[bytes | memoryview], *,
                         receive_time: TimeLike | None = None) -> Appended:
        """Append raw datagrams (one or more Avro records each, as devices send them).

        Datagrams that do not decode exactly are rejected and counted by reason; the rest
        are stored.
        """
        return self.writer().add(datagrams, _receive_ns(receive_time))

    def flush(self) -> None:
        """Write the open block, and the summary rows held back, now (appends flush by
        size and age on their own)."""
        with self.lock:
            if self._writer is not None:
                self._writer.flush()
                self._writer.write_summaries()

    def close(self) -> None:
        """Flush, give up the writer lock and the segments' mappings."""
        with self.lock:
            for view in self._segments:
                view.release()
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    # ---- reading -------------------------------------------------------------------------

    def _refresh(self) -> list[SegmentView]:
        """The channel's segments, re-listing the directory only when it changed.

        The writer names its newest segment in HEAD as it rolls over: a new segment shows
        there at once, where the directory's mtime (coarse-grained) might not. A segment
        that retention deleted since the last listing is simply skipped by a read."""
        st = os.stat(self.path)
        head = self._head()
        newest = self._segments[-1].stem if self._segments else None
        if st.st_mtime_ns != self._dir_mtime or (head is not None and head != newest):
            stems = sorted(n[:-5] for n in os.listdir(self.path) if n.endswith(".avro"))
            known = {s.stem: s for s in self._segments}
            views = []
            for i, stem in enumerate(stems):
                closed = i < len(stems) - 1
                view = known.get(stem)
                if view is None:
                    view = SegmentView(self.path, stem, self._plan, closed=closed)
                else:
                    view.refresh(closed)
                views.append(view)
            kept = {id(v) for v in views}
            for gone in self._segments:
                if id(gone) not in kept:
                    gone.release()
            self._segments = views
            self._dir_mtime = st.st_mtime_ns
            self._seg_tmin = np.array([s.tmin for s in views], dtype=np.int64)
            self._seg_tmax = np.array([s.tmax for s in views], dtype=np.int64)
            self._bounds = None
        if self._segments and self._segments[-1].refresh(False):  # only the newest grows
            self._seg_tmin[-1] = self._segments[-1].tmin
            self._seg_tmax[-1] = self._segments[-1].tmax
            self._bounds = None
        if self._bounds is None:
            # running max of tmax and suffix min of tmin are monotonic even when segments
            # overlap in time, so binary search finds every candidate segment
            self._bounds = (np.maximum.accumulate(self._seg_tmax),
                            np.minimum.accumulate(self._seg_tmin[::-1])[::-1])
        return self._segments

    def _head(self) -> str | None:
        """The newest segment's stem, as HEAD names it; read again only when HEAD was
        replaced (the writer replaces it whole as it rolls over)."""
        path = os.path.join(self.path, HEAD_FILE)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._head_seen is None or self._head_seen[0] != key:
            self._head_seen = key, _read_head(path)
        return self._head_seen[1]

    def _segments_in(self, lo: int, last: int) -> list[SegmentView]:
        """Segments that may hold records with lo <= time <= last."""
        segs = self._refresh()
        if not segs:
            return []
        assert self._bounds is not None      # _refresh computes them
        runmax, sufmin = self._bounds
        a = int(np.searchsorted(runmax, lo, "left"))
        b = int(np.searchsorted(sufmin, last, "right"))
        return [seg for seg in segs[a:b] if seg.tmax >= lo and seg.tmin <= last]

    def _select(self, lo: int, last: int) -> list[tuple[SegmentView, np.ndarray]]:
        """Blocks that may hold records with lo <= time <= last, per segment."""
        out = []
        for seg in self._segments_in(lo, last):
            blocks = seg.blocks(lo, last)
            if len(blocks):
                out.append((seg, blocks))
        return out

    def _selected(self, start, end) -> tuple[list, int, int]:
        lo, hi = time_range(start, end)
        last = hi - 1      # inclusive, so that an open end reaches 2**63 - 1
        self.flush()
        with self.lock:
            return self._select(lo, last), lo, last

    def read(self, start: TimeLike | None = None, end: TimeLike | None = None,
             signals: Sequence[str] | None = None) -> Columns:
        """Records with start <= time < end, sorted by time, as columns.

        Parameters
        ----------
        start, end : time, optional
            Half-open range; None for open-ended. int ns, datetime, numpy.datetime64 or
            ISO 8601 text.
        signals : list of str, optional
            Signals to decode (all by default); ``time`` always comes (naming it is fine).
        """
        selected, lo, last = self._selected(start, end)
        return self._decode(selected, lo, last, _data_signals(signals))

    def count(self, start: TimeLike | None = None, end: TimeLike | None = None, *,
              estimate: bool = False) -> int:
        """Records in [start, end), exact: from the index for blocks inside the range,
        decoding only the times of blocks that straddle an edge. ``estimate=True`` answers
        from the index alone, an upper bound."""
        selected, lo, last = self._selected(start, end)
        inside, edges = 0, []
        for seg, blocks in selected:
            within = (blocks["tmin"] >= lo) & (blocks["tmax"] <= last)
            inside += int(blocks["count"][within].sum())
            if estimate:
                inside += int(blocks["count"][~within].sum())
            elif not within.all():
                edges.append((seg, blocks[~within]))
        return inside + (len(self._decode(edges, lo, last, [])) if edges else 0)

    def overview(self, start: TimeLike | None = None, end: TimeLike | None = None,
                 buckets: int = 1200, signals: Sequence[str] | None = None) -> Overview:
        """Per bucket of equal time width over [start, end): the record count and, for each
        numeric signal, count, min, max, mean, first and last, with the times of the min,
        max, first and last (what a chart needs to draw a line exact at pixel resolution).

        Computed from the summary each block carries, decoding only the blocks that
        straddle a bucket edge: a day costs about what a minute costs. An open end is
        bounded by the time held.
        """
        if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
            raise TimeRangeError(f"buckets must be a positive integer, not {buckets!r}")
        lo, hi = time_range(start, end)
        if not self._summarised and not self.store.readonly:
            self._summarised = True     # an older store's segments: summarised once, here
            self.build_summaries()
        held = self.holds()
        if held is None:
            lo, hi = (lo if start is not None else 0), (hi if end is not None else 1)
        else:
            lo = lo if start is not None else held[0]
            hi = hi if end is not None else held[1] + 1
        hi = max(hi, lo + 1)
        all_numeric = O.numeric_signals(self.schema)
        names = [s.name for s in all_numeric] if signals is None else \
            [s for s in _data_signals(signals) or []]
        for name in names:
            sig = self.schema.signal(name)          # SchemaError for an unknown name
            if sig.type not in O.NUMERIC:
                raise S.SchemaError(f"signal {name!r} is {sig.type}: an overview takes "
                                    "numeric signals", hint="read it instead")
        column = {s.name: k for k, s in enumerate(all_numeric)}
        dtype = O.summary_dtype(self.schema)
        edges = O.bucket_edges(lo, hi, buckets)
        last = hi - 1
        self.flush()
        with self.lock:
            segments = self._segments_in(lo, last)
        parts, counts, straddling, summarised = [], np.zeros(buckets, np.int64), [], 0
        for seg in segments:
            got = _summarised(seg, lo, last, edges, dtype)
            parts += got.parts
            counts += got.counts
            summarised += got.blocks
            if len(got.straddling):
                straddling.append((seg, got.straddling))
        # merged record by record, in any order: records outside [lo, hi) are left out
        counted, stats = self._fold(straddling, names, edges)
        counts += counted
        for rows, at, bucket in parts:
            O.merge_rows([stats[n] for n in names], [column[n] for n in names], rows, bucket,
                         at)
        return O.finish(self.name, edges, counts, stats,
                        sum(len(b) for _, b in straddling), summarised)

    def build_summaries(self, progress=None) -> int:
        """Summaries for the closed segments that lack them (written by an older version,
        or lost): each block decoded once. Returns the blocks summarised."""
        numeric = [s.name for s in O.numeric_signals(self.schema)]
        if not numeric or self.store.readonly:
            return 0
        dtype = O.summary_dtype(self.schema)
        views = self.views()
        if self._writer is not None or writer_active(self.path):
            views = views[:-1]             # its writer appends summaries as it goes
        done = 0
        for i, seg in enumerate(views):
            sums = seg.summaries(dtype)
            if len(sums) >= len(seg.index) and set(sums["offset"]) >= set(seg.index["offset"]):
                continue
            rows = []
            codec, sync = seg.head()
            with open(seg.path, "rb") as f:      # the segment read once, block by block
                data = f.read()
            for b in seg.index:
                try:
                    count, payload, _ = F.parse_block(data, int(b["offset"]), sync)
                    cols = decode(self._plan, _decompressor(codec)(payload), count, numeric)
                except (FormatError, DecodeError, zstandard.ZstdError, ValueError) as e:
                    log.warning("%s: block at byte %d left without a summary (overviews "
                                "decode it): %s", seg.path, int(b["offset"]), e)
                    continue
                rows.append(O.summarize(cols.time, cols.data, self.schema, int(b["offset"]),
                                        dtype))
            O.write_summaries(seg.sum_path, rows, dtype)
            done += len(rows)
            if progress:
                progress(i + 1, len(views))
            log.info("channel %s: summarised %d blocks of %s (%d/%d segments)", self.name,
                     len(rows), os.path.basename(seg.path), i + 1, len(views))
        return done

    def append_columns(self, time: Any, data: Mapping[str, Any] | None = None, *,
                       receive_time: TimeLike | None = None) -> Appended:
        """Append records given as columns: ``time`` (int64 ns or numpy.datetime64) and one
        array per signal (masked arrays for nulls; enum signals as symbols or indexes), or
        a `Columns`. The fast path for Python producers, imports and generators.

        A channel without a time field stamps ``receive_time`` (default: now); give
        ``time=None`` for it.

        Any number of records: they are encoded and stored 65,536 at a time, in bounded
        memory, and every value is checked before the first is stored, so a column that
        does not fit the schema stores nothing.
        """
        if isinstance(time, Columns):
            time, data = time.time, time.data
        if data is None:
            raise DecodeError(f"channel {self.name!r}: append_columns needs the signals' "
                              "columns", reason="encode", offset=0)
        if self.schema.stamped:
            if time is not None and len(time):
                raise DecodeError(f"channel {self.name!r} has no time field: its records "
                                  "are stamped with their receive time; pass time=None",
                                  reason="encode", offset=0)
            n = len(next(iter(data.values()))) if data else 0
            times = np.zeros(n, dtype=np.int64)
        else:
            times = _ns_array(time, self.name)
        try:
            slices = encode_column_slices(self._wire_plan(), times, data, APPEND_SLICE_RECORDS)
        except (ValueError, TypeError, KeyError, OverflowError) as e:
            raise DecodeError(f"channel {self.name!r}: columns do not fit the schema: {e}",
                              reason="encode", offset=0) from e
        block_bytes = int(self.option("block_bytes"))
        return self.writer().add_batches((_block_sized(body, ends, block_bytes)
                                          for body, ends in slices), _receive_ns(receive_time))

    def _wire_plan(self) -> Plan:
        if self._wire is None:
            self._wire = Plan(self.schema, wire=True)
        return self._wire

    def iter_blocks(self, start: TimeLike | None = None, end: TimeLike | None = None
                    ) -> Iterator[StoredBlock]:
        """The stored blocks that may hold records in [start, end), as they are on disk
        (compressed Avro, in segment order), with their index entries: for streaming Avro
        without decoding. Blocks straddling an edge hold records outside the range too."""
        selected, _, _ = self._selected(start, end)
        for seg, blocks in selected:
            try:
                codec, _ = seg.head()
                with open(seg.path, "rb") as f:
                    for b in blocks:
                        f.seek(int(b["offset"]))
                        raw = f.read(int(b["length"]))
                        count, payload, _ = F.parse_block(raw, 0, seg.head()[1])
                        yield StoredBlock(seg.path, int(b["offset"]), count, int(b["tmin"]),
                                          int(b["tmax"]), codec, bytes(payload))
            except FileNotFoundError:      # deleted by retention meanwhile
                continue
            except (OSError, FormatError) as e:
                warnings.warn(f"{seg.path}: skipping blocks from byte "
                              f"{int(blocks[0]['offset'])}: {e}", StoreWarning, stacklevel=2)

    def iter_read(self, start: TimeLike | None = None, end: TimeLike | None = None,
                  signals: Sequence[str] | None = None,
                  chunk_records: int = 1 << 20) -> Iterator[Columns]:
        """Like `read`, in time-ordered chunks of about ``chunk_records`` records, so that
        memory stays bounded.

        Blocks are decoded in order of their first time; a chunk goes out once no block
        still to decode can hold an earlier record. Out-of-order data costs memory only
        where records really overlap: a stray record from a wrong device clock, outside the
        range, is dropped on decoding and holds nothing back.
        """
        selected, lo, last = self._selected(start, end)
        if not selected:
            return
        segs = [seg for seg, _ in selected]
        seg_of = np.repeat(np.arange(len(segs)), [len(e) for _, e in selected])
        entries = np.concatenate([e for _, e in selected])
        first = np.maximum(entries["tmin"], lo)
        order = np.argsort(first, kind="stable")
        entries, seg_of, first = entries[order], seg_of[order], first[order]
        ends = np.cumsum(entries["count"])
        pending: list[Columns] = []
        a = 0
        while a < len(entries):
            # blocks until the chunk holds chunk_records (the block that crosses it too)
            done = int(ends[a - 1]) if a else 0
            b = min(len(entries), max(a + 1, int(np.searchsorted(
                ends, done + chunk_records, "left")) + 1))
            cols = self._decode(_runs(segs, seg_of[a:b], entries[a:b]), lo, last,
                                _data_signals(signals))
            if len(cols):
                pending.append(cols)
            watermark = int(first[b]) if b < len(entries) else None
            out, pending = _release(pending, watermark)
            if out is not None and len(out):
                yield out
            a = b

    def _decode(self, selected, lo: int, last: int, signals, *, trim: bool = True) -> Columns:
        """Decode the selected blocks into one set of columns: records with lo <= time <=
        last, sorted by time (with ``trim`` false: as stored, outside records and all);
        damaged blocks are skipped with a warning naming them."""
        total = sum(int(b["count"].sum()) for _, b in selected)
        time_col, columns, masks = allocate(self.schema, total, signals)
        tasks, lost = _tasks(selected)

        def into_columns(_run: int, bodies: list[bytes], batch: list[_Task]) -> list:
            return self._plan.decode_blocks(bodies, [t.records for t in batch],
                                            [t.row for t in batch], time_col, columns, masks)

        parallel = total >= _PARALLEL_RECORDS
        for task, problem in zip(tasks, _parse_runs(_runs_of(tasks, parallel), into_columns,
                                                    parallel)):
            if problem:
                warnings.warn(problem, StoreWarning, stacklevel=3)
                lost.append((task.row, task.records))
        cols = finish(self.schema, time_col, columns, masks, self.name)
        return _trim(cols, selected if trim else [], lost, lo, last)

    def _fold(self, selected, names: list[str], edges: np.ndarray
              ) -> tuple[np.ndarray, dict[str, O.Stats]]:
        """Records per bucket of ``edges``, and each named signal's statistics, of the
        selected blocks: decoded two megabytes at a time into small columns and folded in at
        once by the thread that decoded them (each run of blocks its own statistics, merged
        at the end), so no column of all their records is ever made. Damaged blocks are
        skipped with a warning naming them."""
        buckets = len(edges) - 1
        tasks, _ = _tasks(selected)
        parallel = sum(t.records for t in tasks) >= _PARALLEL_RECORDS
        parts = _runs_of(tasks, parallel)
        counts = [np.zeros(buckets, np.int64) for _ in parts]
        stats = [{name: O.Stats(buckets) for name in names} for _ in parts]

        def fold(k: int, bodies: list[bytes], batch: list[_Task]) -> list:
            n = sum(t.records for t in batch)
            time_col, columns, masks = allocate(self.schema, n, names)
            rows = np.cumsum([0] + [t.records for t in batch])
            failed = self._plan.decode_blocks(bodies, [t.records for t in batch],
                                              rows[:-1], time_col, columns, masks)
            cols = finish(self.schema, time_col, columns, masks, self.name)
            if any(f is not None for f in failed):      # a damaged block's rows are not data
                keep = np.ones(n, bool)
                for i, f in enumerate(failed):
                    if f is not None:
                        keep[rows[i]:rows[i + 1]] = False
                cols = cols.take(keep)
            O.count_records(counts[k], cols.time, edges)
            for name in names:
                O.add_records(stats[k][name], cols, name, edges)
            return failed

        for problem in _parse_runs(parts, fold, parallel):
            if problem:
                warnings.warn(problem, StoreWarning, stacklevel=3)
        if len(parts) == 1:
            return counts[0], stats[0]
        merged = {name: O.Stats(buckets) for name in names}
        every = np.arange(buckets, dtype=np.int64)
        rows_of = np.zeros(buckets, O.summary_dtype(self.schema))
        column = {s.name: k for k, s in enumerate(O.numeric_signals(self.schema))}
        for part_stats in stats:
            for name, st in part_stats.items():
                O.put(rows_of, column[name], st)
                merged[name].add_rows(rows_of, column[name], every)
        return sum(counts, np.zeros(buckets, np.int64)), merged

    # ---- what it holds -------------------------------------------------------------------

    def segments(self) -> list[str]:
        """Paths of the channel's segment files, oldest first."""
        return [s.path for s in self.views()]

    def views(self) -> list[SegmentView]:
        """The segments' checked index views, oldest first (for retention and tools)."""
        with self.lock:
            return list(self._refresh())

    def holds(self) -> tuple[int, int] | None:
        """(first, last) record time held, in ns; None when empty."""
        with self.lock:
            segs = [s for s in self._refresh() if len(s.index)]
        if not segs:
            return None
        return min(s.tmin for s in segs), max(s.tmax for s in segs)

    def received(self) -> tuple[int, int] | None:
        """(first, last) receive time of the records held, in ns; None when empty. Unlike
        `holds`, this never trusts a device's clock: it is what retention goes by."""
        with self.lock:
            spans = [s.received for s in self._refresh() if len(s.index)]
        if not spans:
            return None
        return min(a for a, _ in spans), max(b for _, b in spans)

    def stats(self) -> ChannelStats:
        """What the channel holds (records, bytes on disk, segments, time held by both
        clocks) and, when this process writes it, its ingest counters."""
        self.flush()
        with self.lock:
            segs = self._refresh()
            records = sum(s.records for s in segs)
        held, received = self.holds(), self.received()
        out = self._writer.counters(self.name) if self._writer is not None \
            else ChannelStats(self.name)
        out.stored_records = records
        out.bytes = sum(s.disk_bytes() for s in segs)
        out.segments = len(segs)
        out.first_time, out.last_time = held if held else (None, None)
        out.first_received, out.last_received = received if received else (None, None)
        return out

    def repair_if_idle(self) -> list[Repair]:
        """Repair unless another process is writing the channel (its writer repaired it)."""
        try:
            fd = take_lock(self.path, self.name)
        except StoreError:
            return []
        try:
            return self.repair()
        finally:
            os.close(fd)

    def repair(self) -> list[Repair]:
        """Repair segments a killed writer left torn or damage left unreadable (needs the
        writer lock). A cheap check of each segment's index against its size finds them."""
        stems = sorted(n[:-5] for n in os.listdir(self.path) if n.endswith(".avro"))
        done = []
        schema_json = self.schema.to_json()
        for stem in stems:
            path = os.path.join(self.path, stem + ".avro")
            if needs_repair(path) or not _index_sound(path):
                done.append(repair(path, self._plan, schema_json))
        self._segments = []
        self._dir_mtime = None
        self._bounds = None
        return done


def _index_sound(path: str) -> bool:
    """The index agrees with the segment, and the header reads and ends where the first
    block starts, with that block's sync marker (two small reads, not the whole file)."""
    try:
        index = F.load_index(path[:-5] + ".idx")
        if F.check_index(index, os.path.getsize(path), closed=True) is not None:
            return False
        if not len(index):
            return True
        first, end = int(index[0]["offset"]), int(index[0]["offset"] + index[0]["length"])
        with open(path, "rb") as f:
            head = f.read(first)
            f.seek(end - F.SYNC_SIZE)
            block_sync = f.read(F.SYNC_SIZE)
        _, _, sync, length = F.parse_header(head)
        return length == first and sync == block_sync
    except (OSError, FormatError):
        return False


TIME_FIELD_KEY = "speeddata.time_field"     # kept in the stored schema too, so that a
TIME_UNIT_KEY = "speeddata.time_unit"       # channel's definition survives a lost channel.json


def stored_avro(cs: S.ChannelSchema) -> dict:
    """The schema as a channel keeps it: with its time field and unit, so that the schema
    file (and every segment header, which holds it) alone defines the channel."""
    return dict(cs.avro, **{TIME_FIELD_KEY: cs.time_field, TIME_UNIT_KEY: cs.time_unit})


def _definition(path: str, name: str, readonly: bool):
    """(config, schema, what was rebuilt) of a channel directory. A damaged channel.json is
    rebuilt from the schema; a damaged schema.avsc from the newest segment's header. What
    is rebuilt is written back (unless read-only) and named, so the store can say so."""
    rebuilt = []
    schema_path, config_path = os.path.join(path, SCHEMA_FILE), os.path.join(path, CONFIG_FILE)
    try:
        avro = _read_json(schema_path, name, dict)
    except StoreError as e:
        avro = _schema_from_segments(path)
        if avro is None:
            raise
        rebuilt.append(f"{schema_path} ({e.args[0]}): rebuilt from a segment header")
    try:
        config = _read_json(config_path, name, dict)
    except StoreError as e:
        if TIME_FIELD_KEY not in avro:
            raise StoreError(f"{e.args[0]}; its schema does not name the time field either",
                             hint="restore channel.json from a backup") from None
        config = {"name": name, "time_field": avro[TIME_FIELD_KEY],
                  "time_unit": avro[TIME_UNIT_KEY], "options": {}}
        rebuilt.append(f"{config_path} ({e.args[0]}): rebuilt from the schema; the channel's "
                       "own settings are lost")
    if not isinstance(config.get("options"), dict):
        # channels of store format 1 kept their settings beside name and time
        config["options"] = {k: v for k, v in config.items()
                             if k not in ("name", "time_field", "time_unit", "created",
                                          "options")}
    try:
        schema = S.load(avro, time_field=config.get("time_field"),
                        time_unit=config.get("time_unit"))
    except S.SchemaError as e:
        raise StoreError(f"channel {name!r}: {schema_path} is damaged: {e}") from e
    if rebuilt and not readonly:
        _write_json(schema_path, avro)
        _write_json(config_path, config)
    return config, schema, rebuilt


def _schema_from_segments(path: str) -> dict | None:
    for stem in sorted((n[:-5] for n in os.listdir(path) if n.endswith(".avro")),
                       reverse=True):
        try:
            return F.read_header(os.path.join(path, stem + ".avro"))[0]
        except (FormatError, OSError):
            continue
    return None


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _read_json(path: str, channel: str, kind: type):
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise StoreError(f"channel {channel!r}: {path} is damaged or missing: {e}",
                         hint="restore the file from a backup, or drop the channel") from e
    if not isinstance(value, kind):
        raise StoreError(f"channel {channel!r}: {path} is damaged (not a JSON object)")
    return value


def _read_head(path: str) -> str | None:
    """The stem HEAD names, or None when it is missing or not a stem (damage)."""
    try:
        with open(path, "rb") as f:
            text = f.read(64).decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    return text if len(text) == 27 and text[20] == "-" and \
        text.replace("-", "").isdigit() else None


_PARALLEL_RECORDS = 200_000
_BATCH_BYTES = 1 << 21       # decompressed bytes parsed in one call (still in cache)
_WORKERS = min(4, os.cpu_count() or 1)
_POOL: ThreadPoolExecutor | None = None
_LOCAL = threading.local()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="speeddata-decode")
    return _POOL


class _Summarised(NamedTuple):
    """What one segment gives an overview: parts ``(summary rows, positions, buckets)``
    (row ``rows[positions[i]]`` goes to ``buckets[i]``), the records they count per bucket,
    how many blocks they cover, and the blocks left to decode."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    counts: np.ndarray
    blocks: int
    straddling: np.ndarray


def _summarised(seg: SegmentView, lo: int, last: int, edges: np.ndarray,
                dtype: np.dtype) -> _Summarised:
    """Split a segment's blocks in [lo, last] for an overview: runs of blocks (then single
    blocks) that lie inside one bucket and have summaries are merged from those; the rest,
    straddling a bucket edge or unsummarised, are left to decode."""
    buckets = len(edges) - 1
    a, b = seg.span(lo, last)
    rows, has = seg.aligned_summaries(dtype)
    use_block = np.ones(b - a, bool)
    parts, counts, covered = [], np.zeros(buckets, np.int64), 0
    for size, info, merged in reversed(seg.groups(dtype)):     # the longest runs first
        g0, g1 = -(-a // size), min(b // size, len(info))
        if g1 <= g0:
            continue
        g = info[g0:g1]
        free = use_block[g0 * size - a:g1 * size - a:size]  # not inside a longer run taken
        b0, b1 = O.bucket_of(edges, g["tmin"]), O.bucket_of(edges, g["tmax"])
        ok = free & g["complete"] & (g["tmin"] >= lo) & (g["tmax"] <= last) & (b0 == b1)
        if ok.any():
            parts.append((merged, g0 + np.flatnonzero(ok), b0[ok]))
            counts += np.bincount(b0[ok], weights=g["count"][ok], minlength=buckets
                                  ).astype(np.int64)
            covered += int(ok.sum()) * size
            use_block[g0 * size - a:g1 * size - a] &= ~np.repeat(ok, size)
    at = a + np.flatnonzero(use_block)
    tmin, tmax = seg.index["tmin"][at], seg.index["tmax"][at]
    near = (tmax >= lo) & (tmin <= last)
    at, tmin, tmax = at[near], tmin[near], tmax[near]
    b0, b1 = O.bucket_of(edges, tmin), O.bucket_of(edges, tmax)
    whole = (tmin >= lo) & (tmax <= last) & (b0 == b1) & has[at]
    if whole.any():
        parts.append((rows, at[whole], b0[whole]))
        counts += np.bincount(b0[whole], weights=seg.index["count"][at[whole]],
                              minlength=buckets).astype(np.int64)
        covered += int(whole.sum())
    return _Summarised(parts, counts, covered, seg.index[at[~whole]])


def _skipping(t: _Task, err: Exception) -> str:
    return f"{t.path}: skipping corrupt block at byte {t.offset} ({t.records} records): {err}"


def _parse_runs(parts: list[list[_Task]], parse, parallel: bool) -> list[str | None]:
    """Decompress each run of blocks about two megabytes at a time and hand each batch to
    ``parse(number of its run, bodies, their tasks)`` while it is still in cache (64 large
    blocks parsed from memory read 25% slower). ``parse`` returns, per body, None or the
    error that kept it from being parsed. Returns, per task in order, None or the warning
    that names it: a damaged block costs its own records only.

    Blocks decode independently, and both zstandard and the codec's parse run without the
    GIL, so a large read spreads over the cores (``parallel``): a few runs of blocks, each
    a thread's, not a hand-off between threads per block (which costs more than a small
    block's decode)."""

    def run(k: int, part: list[_Task]) -> list[str | None]:
        problems: list[str | None] = [None] * len(part)
        bodies: list[bytes] = []
        at: list[int] = []
        held = 0

        def flush() -> None:
            failed = parse(k, bodies, [part[i] for i in at])
            for i, error in zip(at, failed):
                if error is not None:
                    problems[i] = _skipping(part[i], error)
            bodies.clear()
            at.clear()

        for i, t in enumerate(part):
            try:
                if t.offset + t.length > len(t.mem):
                    raise FormatError(f"the file ends at byte {len(t.mem)}")
                _, payload, _ = F.parse_block(t.mem[t.offset:t.offset + t.length], 0,
                                              t.head[1])
                bodies.append(_decompressor(t.head[0])(payload))
                at.append(i)
                held += len(bodies[-1])
            except (FormatError, zstandard.ZstdError, ValueError) as err:
                problems[i] = _skipping(t, err)
            if held >= _BATCH_BYTES:
                flush()
                held = 0
        if bodies:
            flush()
        return problems

    if parallel and len(parts) > 1:
        return [p for problems in _pool().map(run, range(len(parts)), parts)
                for p in problems]
    return [p for k, part in enumerate(parts) for p in run(k, part)]


def _runs_of(tasks: list[_Task], parallel: bool) -> list[list[_Task]]:
    """The runs of blocks a read hands to its threads (a few per thread, for balance), or
    one run (a small read: each run costs a call of the codec)."""
    return _split(tasks, 4 * _WORKERS) if parallel and len(tasks) > 1 else [tasks]


def _split(tasks: list[_Task], parts: int) -> list[list[_Task]]:
    """Contiguous runs of tasks holding about equal numbers of records."""
    ends = np.cumsum([t.records for t in tasks])
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, parts) / parts, "right")
    bounds = [0, *sorted(set(cuts.tolist()) - {0, len(tasks)}), len(tasks)]
    return [tasks[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


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
    records: int
    row: int


MAX_RECORDS_PER_DATAGRAM = 65536     # the block stage's limit (a UDP payload's worth)
APPEND_SLICE_RECORDS = 1 << 16       # append_columns encodes this many at a time


class StoredBlock(NamedTuple):
    """One block as stored: its records' count and time range, and its compressed payload
    (Avro binary records, back to back, compressed with ``codec``)."""
    segment: str
    offset: int
    records: int
    tmin: int
    tmax: int
    codec: str
    payload: bytes


def _data_signals(signals: Sequence[str] | None) -> list[str] | None:
    """The signals to decode: ``time`` always comes, so naming it asks for nothing more."""
    return None if signals is None else [s for s in signals if s != "time"]


def _ns_array(time: Any, channel: str) -> np.ndarray:
    t = np.asarray(time)
    if t.dtype.kind == "M":
        t = t.astype("datetime64[ns]").view(np.int64)
    elif t.dtype.kind not in "iu":
        raise DecodeError(f"channel {channel!r}: times must be int64 ns or datetime64, "
                          f"not {t.dtype}", reason="encode", offset=0)
    return np.ascontiguousarray(t, dtype=np.int64)


def _receive_ns(receive_time: TimeLike | None) -> int:
    return now_ns() if receive_time is None else to_ns(receive_time, what="receive_time")


def _block_sized(body: bytes, ends: np.ndarray, block_bytes: int) -> list[memoryview]:
    """Encoded records cut into datagrams of just over a block each (a block closes once it
    holds block_bytes): validated and copied once, whole."""
    n = len(ends)
    per = max(1, min(MAX_RECORDS_PER_DATAGRAM, -(-block_bytes * n // max(1, len(body)))))
    cuts = np.concatenate([[0], ends[per - 1::per], [] if n % per == 0 else ends[-1:]])
    view = memoryview(body)
    return [view[int(a):int(b)] for a, b in zip(cuts[:-1], cuts[1:])]


def _tasks(selected) -> tuple[list[_Task], list[tuple[int, int]]]:
    """One task per block, over the mapped segments (blocks decompress straight from the
    page cache; only repair shrinks a segment, and only past its last indexed block; a
    segment that retention deletes stays readable while a read maps it), and
    the (row, count) of records lost to segments gone or damaged."""
    tasks, lost, row = [], [], 0
    for seg, blocks in selected:
        count = int(blocks["count"].sum())
        try:
            mem = seg.mapped()
            head = seg.head()
        except FileNotFoundError:   # deleted by retention meanwhile
            lost.append((row, count))
            row += count
            continue
        except (OSError, ValueError, FormatError) as e:   # damaged: say so
            warnings.warn(f"{seg.path}: skipping {count} records in {len(blocks)} blocks "
                          f"from byte {int(blocks[0]['offset'])}: {e}", StoreWarning,
                          stacklevel=4)
            lost.append((row, count))
            row += count
            continue
        for offset, length, records in zip(blocks["offset"].tolist(),
                                           blocks["length"].tolist(), blocks["count"].tolist()):
            tasks.append(_Task(seg.path, head, mem, offset, length, records, row))
            row += records
    return tasks, lost


def _trim(cols: Columns, selected, lost: list[tuple[int, int]], lo: int, last: int) -> Columns:
    """Sort by time where blocks overlap (only there), then drop lost rows and rows
    outside [lo, last]."""
    keep = None
    if lost:
        keep = np.ones(len(cols), dtype=bool)
        for at, count in lost:
            keep[at:at + count] = False
    entries = [bl for _, bl in selected]
    for r0, r1, perm in (_unsorted_runs(np.concatenate(entries), cols.time) if entries else []):
        # in place, run by run: the rest of the columns is not copied
        for arr in [cols.time, *cols.data.values()] + ([keep] if keep is not None else []):
            arr[r0:r1] = arr[r0:r1][perm]
    if any(((bl["tmin"] < lo) | (bl["tmax"] > last)).any() for bl in entries):
        if keep is None:       # sorted by time now: the records inside are one stretch
            return cols.take(slice(int(np.searchsorted(cols.time, lo, "left")),
                                   int(np.searchsorted(cols.time, last, "right"))))
        keep &= (cols.time >= lo) & (cols.time <= last)
    if keep is not None:
        cols = cols.take(keep)
    return cols


def _unsorted_runs(entries: np.ndarray, time: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """(first row, end row, stable sorting permutation) of each run of blocks whose time
    ranges overlap, or of a block out of order inside: only those need sorting, so one
    stray block costs the sort of its neighbourhood, not of the whole read."""
    in_order = (entries["flags"] & F.FLAG_IN_ORDER).astype(bool)
    tmin, tmax = entries["tmin"], entries["tmax"]
    if in_order.all() and bool(np.all(tmin[1:] >= tmax[:-1])):
        return []                         # the usual read: blocks in order, none overlaps
    runmax = np.maximum.accumulate(tmax)
    sufmin = np.minimum.accumulate(tmin[::-1])[::-1]
    cut = np.concatenate([[True], runmax[:-1] <= sufmin[1:], [True]])   # group boundaries
    bounds = np.flatnonzero(cut)
    rows = np.concatenate([[0], np.cumsum(entries["count"].astype(np.int64))])
    runs = []
    for g0, g1 in zip(bounds[:-1], bounds[1:]):
        if g1 - g0 == 1 and in_order[g0]:
            continue
        r0, r1 = int(rows[g0]), int(rows[g1])
        perm = np.argsort(time[r0:r1], kind="stable")
        if np.any(perm != np.arange(r1 - r0)):
            runs.append((r0, r1, perm))
    return runs


def _runs(segs: list[SegmentView], seg_of: np.ndarray, entries: np.ndarray) -> list:
    """Index entries (with the segment each is in) as (segment, entries) runs, in order."""
    cuts = (np.flatnonzero(np.diff(seg_of)) + 1).tolist()
    bounds = [0, *cuts, len(entries)]
    return [(segs[int(seg_of[x])], entries[x:y]) for x, y in zip(bounds[:-1], bounds[1:])]


def _release(pending: list[Columns], watermark: int | None):
    """Records of ``pending`` earlier than ``watermark`` (all when None), sorted, and the
    rest, still pending."""
    if not pending:
        return None, []
    if len(pending) == 1:
        cols = pending[0]
    else:
        cols = _concat(pending)
    if len(pending) > 1 or not np.all(cols.time[1:] >= cols.time[:-1]):
        cols = cols.take(np.argsort(cols.time, kind="stable"))
    if watermark is None:
        return cols, []
    cut = int(np.searchsorted(cols.time, watermark, "left"))
    if cut == len(cols):
        return cols, []
    return cols.take(slice(0, cut)), [cols.take(slice(cut, len(cols)))]


def _concat(parts: list[Columns]) -> Columns:
    first = parts[0]
    data = {}
    for k, v in first.data.items():
        join = np.ma.concatenate if np.ma.isMaskedArray(v) else np.concatenate
        data[k] = join([p.data[k] for p in parts])
    return Columns(np.concatenate([p.time for p in parts]), data, first.channel)
