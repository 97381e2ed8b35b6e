"""An overview read from a channel's segments: the summary rows of runs of blocks (then of
single blocks) that lie inside one bucket, and the blocks that straddle a bucket edge
decoded and folded in; and the summaries built for segments that lack them. The
statistics themselves are `_overview.py`'s."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import zstandard

from .. import schema as channel_schema
from ..codec import Plan, allocate, decode, finish
from ..errors import DecodeError, FormatError, StoreWarning
from . import _format as on_disk
from . import _overview as summaries
from ._decode import PARALLEL_RECORDS, Task, decompressor, parse_runs, runs_of, tasks_of
from ._overview import Overview
from ._view import SegmentView

log = logging.getLogger("speeddata.store")


def checked_signals(schema: channel_schema.ChannelSchema,
                    signals: Sequence[str] | None) -> list[str]:
    """The signals an overview covers: those named (``time`` aside), or every numeric one;
    a SchemaError for an unknown or non-numeric name."""
    if signals is None:
        return [s.name for s in summaries.numeric_signals(schema)]
    names = [s for s in signals if s != "time"]
    for name in names:
        sig = schema.signal(name)          # SchemaError for an unknown name
        if sig.type not in summaries.NUMERIC:
            raise channel_schema.SchemaError(f"signal {name!r} is {sig.type}: an overview takes "
                                "numeric signals", hint="read it instead")
    return names


def overview(plan: Plan, channel: str, segments: list[SegmentView], lo: int, hi: int,
             buckets: int, names: list[str]) -> Overview:
    """The overview of the records in [lo, hi) of ``segments`` (those that may hold some),
    in ``buckets`` buckets of equal width, for the numeric signals ``names``."""
    schema = plan.schema
    column = {s.name: k for k, s in enumerate(summaries.numeric_signals(schema))}
    dtype = summaries.summary_dtype(schema)
    edges = summaries.bucket_edges(lo, hi, buckets)
    last = hi - 1
    parts, counts, straddling, summarised = [], np.zeros(buckets, np.int64), [], 0
    for seg in segments:
        got = _summarised(seg, lo, last, edges, dtype)
        parts += got.parts
        counts += got.counts
        summarised += got.blocks
        if len(got.straddling):
            straddling.append((seg, got.straddling))
    # merged record by record, in any order: records outside [lo, hi) are left out
    counted, stats = fold(plan, channel, straddling, names, edges)
    counts += counted
    for rows, at, bucket in parts:
        summaries.merge_rows([stats[n] for n in names], [column[n] for n in names], rows,
                             bucket, at)
    return summaries.finish(channel, edges, counts, stats, sum(len(b) for _, b in straddling),
                    summarised)


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
        b0, b1 = summaries.bucket_of(edges, g["tmin"]), summaries.bucket_of(edges, g["tmax"])
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
    b0, b1 = summaries.bucket_of(edges, tmin), summaries.bucket_of(edges, tmax)
    whole = (tmin >= lo) & (tmax <= last) & (b0 == b1) & has[at]
    if whole.any():
        parts.append((rows, at[whole], b0[whole]))
        counts += np.bincount(b0[whole], weights=seg.index["count"][at[whole]],
                              minlength=buckets).astype(np.int64)
        covered += int(whole.sum())
    return _Summarised(parts, counts, covered, seg.index[at[~whole]])


def fold(plan: Plan, channel: str, selected, names: list[str], edges: np.ndarray
         ) -> tuple[np.ndarray, dict[str, summaries.Stats]]:
    """Records per bucket of ``edges``, and each named signal's statistics, of the
    selected blocks: decoded two megabytes at a time into small columns and folded in at
    once by the thread that decoded them (each run of blocks its own statistics, merged
    at the end), so no column of all their records is ever made. Damaged blocks are
    skipped with a warning naming them."""
    buckets = len(edges) - 1
    tasks, _ = tasks_of(selected)
    parallel = sum(t.records for t in tasks) >= PARALLEL_RECORDS
    parts = runs_of(tasks, parallel)
    counts = [np.zeros(buckets, np.int64) for _ in parts]
    stats = [{name: summaries.Stats(buckets) for name in names} for _ in parts]

    def into_stats(k: int, bodies: list[bytes], batch: list[Task]) -> list:
        n = sum(t.records for t in batch)
        time_col, columns, masks = allocate(plan.schema, n, names)
        rows = np.cumsum([0] + [t.records for t in batch])
        failed = plan.decode_blocks(bodies, [t.records for t in batch], rows[:-1],
                                    time_col, columns, masks)
        cols = finish(plan.schema, time_col, columns, masks, channel)
        if any(f is not None for f in failed):      # a damaged block's rows are not data
            keep = np.ones(n, bool)
            for i, f in enumerate(failed):
                if f is not None:
                    keep[rows[i]:rows[i + 1]] = False
            cols = cols.take(keep)
        summaries.count_records(counts[k], cols.time, edges)
        for name in names:
            summaries.add_records(stats[k][name], cols, name, edges)
        return failed

    for problem in parse_runs(parts, into_stats, parallel):
        if problem:   # stacklevel: this, overview, Channel.overview, its caller
            warnings.warn(problem, StoreWarning, stacklevel=4)
    if len(parts) == 1:
        return counts[0], stats[0]
    merged = {name: summaries.Stats(buckets) for name in names}
    every = np.arange(buckets, dtype=np.int64)
    rows_of = np.zeros(buckets, summaries.summary_dtype(plan.schema))
    column = {s.name: k for k, s in enumerate(summaries.numeric_signals(plan.schema))}
    for part_stats in stats:
        for name, st in part_stats.items():
            summaries.put(rows_of, column[name], st)
            merged[name].add_rows(rows_of, column[name], every)
    return sum(counts, np.zeros(buckets, np.int64)), merged


def build_summaries(channel: str, plan: Plan, views: list[SegmentView],
                    progress: Callable[[int, int], object] | None = None) -> int:
    """Summaries for the segments ``views`` (closed ones) that lack them, written by an
    older version or lost: each block decoded once. Returns the blocks summarised."""
    schema = plan.schema
    numeric = [s.name for s in summaries.numeric_signals(schema)]
    dtype = summaries.summary_dtype(schema)
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
                count, payload, _ = on_disk.parse_block(data, int(b["offset"]), sync)
                cols = decode(plan, decompressor(codec)(payload), count, numeric)
            except (FormatError, DecodeError, zstandard.ZstdError, ValueError) as e:
                log.warning("%s: block at byte %d left without a summary (overviews "
                            "decode it): %s", seg.path, int(b["offset"]), e)
                continue
            rows.append(summaries.summarize(cols.time, cols.data, schema, int(b["offset"]), dtype))
        summaries.write_summaries(seg.sum_path, rows, dtype)
        done += len(rows)
        if progress:
            progress(i + 1, len(views))
        log.info("channel %s: summarised %d blocks of %s (%d/%d segments)", channel,
                 len(rows), os.path.basename(seg.path), i + 1, len(views))
    return done
