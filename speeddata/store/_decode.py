"""Decoding a read's blocks: each run of blocks parsed straight from the mapped segments,
spread over a few threads for a large read, damaged blocks skipped with a warning that
names them, and the records sorted by time only where blocks overlap."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import zstandard

from ..codec import Plan, allocate, finish
from ..columns import Columns
from ..errors import FormatError, StoreWarning
from . import _format as on_disk
from ._view import SegmentView

PARALLEL_RECORDS = 200_000   # a read of this many records spreads over the threads
_BATCH_BYTES = 1 << 21       # decompressed bytes parsed in one call (still in cache)
_WORKERS = min(4, os.cpu_count() or 1)
_POOL: ThreadPoolExecutor | None = None
_LOCAL = threading.local()


def decode(plan: Plan, channel: str, selected, lo: int, last: int, signals, *,
           trim: bool = True, stacklevel: int = 3) -> Columns:
    """Decode the selected blocks (``(segment, index entries)`` pairs) into one set of
    columns: records with lo <= time <= last, sorted by time (with ``trim`` false: as
    stored, outside records and all); damaged blocks are skipped with a warning naming
    them, ``stacklevel`` frames up."""
    total = sum(int(b["count"].sum()) for _, b in selected)
    time_col, columns, masks = allocate(plan.schema, total, signals)
    tasks, lost = tasks_of(selected)

    def into_columns(_run: int, bodies: list[bytes], batch: list[Task]) -> list:
        return plan.decode_blocks(bodies, [t.records for t in batch], [t.row for t in batch],
                                  time_col, columns, masks)

    parallel = total >= PARALLEL_RECORDS
    for task, problem in zip(tasks, parse_runs(runs_of(tasks, parallel), into_columns,
                                               parallel)):
        if problem:
            warnings.warn(problem, StoreWarning, stacklevel=stacklevel)
            lost.append((task.row, task.records))
    cols = finish(plan.schema, time_col, columns, masks, channel)
    return _trim(cols, selected if trim else [], lost, lo, last)


def chunks(plan: Plan, channel: str, selected, lo: int, last: int, signals,
           chunk_records: int) -> Iterator[Columns]:
    """The selected blocks' records with lo <= time <= last, in time-ordered chunks of
    about ``chunk_records`` records (`Channel.iter_read`).

    Blocks are decoded in order of their first time; a chunk goes out once no block still
    to decode can hold an earlier record. Out-of-order data costs memory only where records
    really overlap: a stray record from a wrong device clock, outside the range, is dropped
    on decoding and holds nothing back.
    """
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
        cols = decode(plan, channel, _runs(segs, seg_of[a:b], entries[a:b]), lo, last,
                      signals, stacklevel=4)
        if len(cols):
            pending.append(cols)
        watermark = int(first[b]) if b < len(entries) else None
        out, pending = _release(pending, watermark)
        if out is not None and len(out):
            yield out
        a = b


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="speeddata-decode")
    return _POOL


def _skipping(t: Task, err: Exception) -> str:
    return f"{t.path}: skipping corrupt block at byte {t.offset} ({t.records} records): {err}"


def parse_runs(parts: list[list[Task]], parse, parallel: bool) -> list[str | None]:
    """Decompress each run of blocks about two megabytes at a time and hand each batch to
    ``parse(number of its run, bodies, their tasks)`` while it is still in cache (64 large
    blocks parsed from memory read 25% slower). ``parse`` returns, per body, None or the
    error that kept it from being parsed. Returns, per task in order, None or the warning
    that names it: a damaged block costs its own records only.

    Blocks decode independently, and both zstandard and the codec's parse run without the
    GIL, so a large read spreads over the cores (``parallel``): a few runs of blocks, each
    a thread's, not a hand-off between threads per block (which costs more than a small
    block's decode)."""

    def run(k: int, part: list[Task]) -> list[str | None]:
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
                _, payload, _ = on_disk.parse_block(t.mem[t.offset:t.offset + t.length], 0,
                                              t.head[1])
                bodies.append(decompressor(t.head[0])(payload))
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


def runs_of(tasks: list[Task], parallel: bool) -> list[list[Task]]:
    """The runs of blocks a read hands to its threads (a few per thread, for balance), or
    one run (a small read: each run costs a call of the codec)."""
    return _split(tasks, 4 * _WORKERS) if parallel and len(tasks) > 1 else [tasks]


def _split(tasks: list[Task], parts: int) -> list[list[Task]]:
    """Contiguous runs of tasks holding about equal numbers of records."""
    ends = np.cumsum([t.records for t in tasks])
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, parts) / parts, "right")
    bounds = [0, *sorted(set(cuts.tolist()) - {0, len(tasks)}), len(tasks)]
    return [tasks[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def decompressor(codec: str) -> on_disk.Decompressor:
    """One per thread and codec: zstandard decompressors are not thread-safe."""
    cache = _LOCAL.__dict__.setdefault("decompressors", {})
    if codec not in cache:
        cache[codec] = on_disk.Decompressor(codec)
    return cache[codec]


class Task(NamedTuple):
    """One block to decode into rows row..row+count of a read's columns."""
    path: str
    head: tuple[str, bytes]     # (codec, sync marker)
    mem: memoryview             # the mapped segment
    offset: int                 # the block's file offset and length
    length: int
    records: int
    row: int


def tasks_of(selected) -> tuple[list[Task], list[tuple[int, int]]]:
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
            tasks.append(Task(seg.path, head, mem, offset, length, records, row))
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
    in_order = (entries["flags"] & on_disk.FLAG_IN_ORDER).astype(bool)
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


def data_signals(signals: Sequence[str] | None) -> list[str] | None:
    """The signals to decode: ``time`` always comes, so naming it asks for nothing more."""
    return None if signals is None else [s for s in signals if s != "time"]
