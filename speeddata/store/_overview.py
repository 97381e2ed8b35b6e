"""Overviews: per bucket of time, count, min, max, mean, first and last of each numeric
signal, with the times of the min, max, first and last (the M4 idea: a line drawn through
them is exact at pixel resolution).

Each block's numeric signals are summarised by the block stage as it fills (``_block.pyx``;
``<segment>.sum``, one row per block beside the index, written 64 rows at a time). Runs of
16 and 256 blocks are merged from those rows when a segment is first read (`group_summaries`).
An overview takes the longest runs, then single blocks, that fall inside one bucket, and
decodes only the blocks that straddle a bucket edge or the range's ends. The merging itself
is `_summary.pyx`'s, record by record or row by row in one pass.

Values are float64; nulls and NaN are left out. Ties are broken so that any order of
combining gives the same answer: the min (max) takes the earliest time among equal values,
``first`` the smallest value among the records at the earliest time, ``last`` the largest
among those at the latest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .._summary import Stats, block_stats
from .._summary import count_records as count_records  # for overviews, with Stats
from .._summary import merge_rows as merge_rows
from ..columns import Columns
from ..schema import ChannelSchema, Signal

NUMERIC = ("boolean", "int", "long", "float", "double")
_STATS = ("n", "sum", "min", "max", "first", "last", "tmin", "tmax", "tfirst", "tlast")


def numeric_signals(schema: ChannelSchema) -> list[Signal]:
    return [s for s in schema.signals if s.type in NUMERIC]


def summary_dtype(schema: ChannelSchema) -> np.dtype:
    """One row per block: its offset (to match the index entry), then per numeric signal
    count, sum, min, max, first, last and the times of min, max, first, last."""
    fields = [("offset", "<u8")]
    for k in range(len(numeric_signals(schema))):
        fields += [(f"n{k}", "<i8"), (f"sum{k}", "<f8"), (f"min{k}", "<f8"),
                   (f"max{k}", "<f8"), (f"first{k}", "<f8"), (f"last{k}", "<f8"),
                   (f"tmin{k}", "<i8"), (f"tmax{k}", "<i8"), (f"tfirst{k}", "<i8"),
                   (f"tlast{k}", "<i8")]
    return np.dtype(fields)


def summarize(times: np.ndarray, values: Mapping[str, np.ndarray], schema: ChannelSchema,
              offset: int, dtype: np.dtype | None = None) -> np.ndarray:
    """The summary row of one block's records: their times and numeric signals' values
    (masked arrays where nullable), as `Columns` holds them or the block stage keeps them."""
    row: list = [offset]
    for sig in numeric_signals(schema):
        x, null = _values(values[sig.name])
        row += block_stats(x, times, null)
    return np.array([tuple(row)], dtype=dtype or summary_dtype(schema))


def _values(v: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Values as float64, and 1 where one is null (None: none is)."""
    x = np.ascontiguousarray(np.ma.getdata(v), dtype=np.float64)
    mask = np.ma.getmask(v)
    return x, None if mask is np.ma.nomask else np.ascontiguousarray(mask).view(np.uint8)


def add_records(stats: Stats, cols: Columns, name: str, edges: np.ndarray) -> None:
    """Merge one signal's records into per-bucket statistics (nulls and NaN left out)."""
    x, null = _values(cols[name])
    stats.add_records(x, cols.time, null, edges)


# Blocks per group summary, level by level: a day of 0.1 s blocks (864,000) merges about
# 3,400 rows of 256 blocks plus the runs of 16 and single blocks near bucket edges.
GROUPS = (16, 256)
GROUP_DTYPE = np.dtype([("tmin", "<i8"), ("tmax", "<i8"), ("count", "<i8"),
                        ("complete", "?")])


def group_summaries(parts: np.ndarray, rows: np.ndarray, has: np.ndarray, size: int,
                    dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Runs of ``size`` consecutive parts (index entries, or groups of a finer level, with
    their tmin, tmax and count), merged: (info as GROUP_DTYPE, summary rows). A run is
    complete when every part in it has its summary row (or nothing is numeric)."""
    n = len(parts) // size
    info = np.zeros(n, GROUP_DTYPE)
    merged = np.zeros(n, dtype)
    if not n:
        return info, merged
    parts, rows, has = parts[:n * size], rows[:n * size], has[:n * size]
    info["tmin"] = parts["tmin"].reshape(n, size).min(axis=1)
    info["tmax"] = parts["tmax"].reshape(n, size).max(axis=1)
    info["count"] = parts["count"].reshape(n, size).sum(axis=1)
    signals = (len(dtype.names or ()) - 1) // len(_STATS)
    info["complete"] = has.reshape(n, size).all(axis=1) if signals else True
    ids = np.repeat(np.arange(n, dtype=np.int64), size)
    stats = [Stats(n) for _ in range(signals)]
    merge_rows(stats, list(range(signals)), rows, ids)
    for k, st in enumerate(stats):
        put(merged, k, st)
    return info, merged


def bucket_of(edges: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The bucket each time falls in (-1 before the first edge, len(edges) - 1 after)."""
    return np.searchsorted(edges, t, "right") - 1


def put(rows: np.ndarray, k: int, stats: Stats) -> None:
    """Write per-bucket statistics as signal ``k``'s fields of summary rows (one per bucket)."""
    for stat in _STATS:
        rows[f"{stat}{k}"] = getattr(stats, stat)


STATS = ("count", "min", "max", "mean", "first", "last", "min_time", "max_time", "first_time",
         "last_time")


@dataclass
class SignalOverview:
    """One signal's statistics per bucket (NaN where a bucket holds none of its values)."""
    count: np.ndarray
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    first: np.ndarray
    last: np.ndarray
    min_time: np.ndarray
    max_time: np.ndarray
    first_time: np.ndarray
    last_time: np.ndarray


@dataclass
class Overview:
    """An overview of a channel over [start, end): ``time`` holds each bucket's start (int64
    ns), ``count`` its records; ``ov["signal"]`` (or ``ov.signals[name]``) the rest."""
    channel: str
    time: np.ndarray
    end: int
    count: np.ndarray
    signals: dict[str, SignalOverview]
    decoded_blocks: int = 0      # blocks read whole (at bucket edges), the rest summarised
    summarised_blocks: int = 0

    def __getitem__(self, name: str) -> SignalOverview:
        return self.signals[name]

    def __len__(self) -> int:
        return len(self.time)

    def __repr__(self) -> str:
        return (f"<Overview {self.channel!r}: {len(self)} buckets, {int(self.count.sum())} "
                f"records, signals {list(self.signals)}>")

    def as_columns(self) -> Columns:
        """The overview as one Columns, the form gRPC, Flight and the web send: a column
        ``"signal:stat"`` for each signal and statistic, ``"time:count"`` the records of
        each bucket, ``time`` each bucket's start. `from_columns` is the way back."""
        data: dict[str, np.ndarray] = {"time:count": self.count}
        for name, s in self.signals.items():
            for stat in STATS:
                data[f"{name}:{stat}"] = getattr(s, stat)
        return Columns(self.time, data, self.channel)

    @classmethod
    def from_columns(cls, cols: Columns, end: int) -> "Overview":
        """The Overview that `as_columns` gave (a client's, from a server's answer)."""
        signals: dict[str, dict[str, np.ndarray]] = {}
        for k, v in cols.data.items():
            name, _, stat = k.rpartition(":")
            if name != "time" and stat in STATS:
                signals.setdefault(name, {})[stat] = np.asarray(v)
        count = np.asarray(cols.data.get("time:count", np.zeros(len(cols), np.int64)))
        return cls(cols.channel, np.asarray(cols.time), end, count,
                   {n: SignalOverview(**s) for n, s in signals.items()
                    if set(s) == set(STATS)})


def finish(channel: str, edges: np.ndarray, counts: np.ndarray, stats: dict[str, Stats],
           decoded: int, summarised: int) -> Overview:
    signals = {}
    for name, s in stats.items():
        empty = s.n == 0
        nan = np.where(empty, np.nan, 0.0)

        def times(t: np.ndarray, empty: np.ndarray = empty) -> np.ndarray:
            return np.where(empty, 0, t).astype(np.int64)

        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s.sum / s.n
        signals[name] = SignalOverview(
            count=s.n, min=s.min + nan, max=s.max + nan, mean=mean + nan,
            first=s.first + nan, last=s.last + nan, min_time=times(s.tmin),
            max_time=times(s.tmax), first_time=times(s.tfirst), last_time=times(s.tlast))
    return Overview(channel, edges[:-1].copy(), int(edges[-1]), counts, signals, decoded,
                    summarised)


def bucket_edges(lo: int, hi: int, buckets: int) -> np.ndarray:
    """buckets + 1 edges from lo to hi, as equal as integers allow (exact, in Python ints)."""
    span = hi - lo
    return np.array([lo + span * k // buckets for k in range(buckets + 1)], dtype=object
                    ).astype(np.int64)


def sum_path(segment_path: str) -> str:
    return segment_path[: -len(".avro")] + ".sum"


def write_summaries(path: str, rows: Sequence[np.ndarray], dtype: np.dtype) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(np.concatenate(list(rows)).astype(dtype).tobytes() if rows else b"")
    os.replace(tmp, path)
