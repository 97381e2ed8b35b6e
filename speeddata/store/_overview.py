"""Overviews: per bucket of time, count, min, max, mean, first and last of each numeric
signal, with the times of the min, max, first and last (the M4 idea: a line drawn through
them is exact at pixel resolution).

Each block's numeric signals are summarised when it is written (``<segment>.sum``, one row
per block, beside the index). An overview combines the summaries of blocks that fall inside
one bucket and decodes only the blocks that straddle a bucket edge or the range's ends.

Values are float64; nulls and NaN are left out. Ties are broken so that any order of
combining gives the same answer: the min (max) takes the earliest time among equal values,
``first`` the smallest value among the records at the earliest time, ``last`` the largest
among those at the latest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..columns import Columns
from ..schema import ChannelSchema, Signal

NUMERIC = ("boolean", "int", "long", "float", "double")
_STATS = ("n", "sum", "min", "max", "first", "last", "tmin", "tmax", "tfirst", "tlast")
_I64_MIN, _I64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


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


def summarize(cols: Columns, schema: ChannelSchema, offset: int) -> np.ndarray:
    """The summary row of one block's records."""
    row = np.zeros(1, dtype=summary_dtype(schema))
    row["offset"] = offset
    t = cols.time
    in_order = bool(len(t)) and bool(np.all(t[1:] >= t[:-1]))
    one_bucket = np.zeros(len(cols), dtype=np.int64)
    for k, sig in enumerate(numeric_signals(schema)):
        keep, x, _ = _valid(cols, sig.name)
        if in_order and keep.all():
            part = _in_order_block(x, t)       # a few passes, no sort: the usual block
        else:
            part = reduce_sorted(keep, x, t, one_bucket, 1, presorted=in_order)
        for stat in _STATS:
            row[f"{stat}{k}"] = part[stat][0]
    return row


def _in_order_block(x: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of records in time order, none left out (ties as `reduce_sorted`)."""
    imin, imax = int(np.argmin(x)), int(np.argmax(x))   # first of equals: the earliest
    first = x[0] if t[1:2].size == 0 or t[1] != t[0] else x[t == t[0]].min()
    last = x[-1] if t.size < 2 or t[-2] != t[-1] else x[t == t[-1]].max()
    return {"n": np.array([len(x)]), "sum": np.array([x.sum()]),
            "min": np.array([x[imin]]), "max": np.array([x[imax]]),
            "first": np.array([first]), "last": np.array([last]),
            "tmin": np.array([t[imin]]), "tmax": np.array([t[imax]]),
            "tfirst": np.array([t[0]]), "tlast": np.array([t[-1]])}


def _valid(cols: Columns, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep mask, values as float64, times) of one signal: nulls and NaN left out."""
    v = cols[name]
    keep = ~np.ma.getmaskarray(v)
    x = np.ma.getdata(v).astype(np.float64)
    keep &= ~np.isnan(x)
    return keep, x, cols.time


def _empty(buckets: int) -> dict[str, np.ndarray]:
    return {"n": np.zeros(buckets, np.int64), "sum": np.zeros(buckets),
            "min": np.full(buckets, np.inf), "max": np.full(buckets, -np.inf),
            "first": np.full(buckets, np.inf), "last": np.full(buckets, -np.inf),
            "tmin": np.full(buckets, _I64_MAX), "tmax": np.full(buckets, _I64_MAX),
            "tfirst": np.full(buckets, _I64_MAX), "tlast": np.full(buckets, _I64_MIN)}


def reduce_sorted(keep: np.ndarray, x: np.ndarray, t: np.ndarray, bucket: np.ndarray,
                  buckets: int, *, presorted: bool = True,
                  per_bucket: int = 4096) -> dict[str, np.ndarray]:
    """Per-bucket statistics of records (``bucket`` ids in 0..buckets-1). ``presorted``:
    the records are sorted by time (so by bucket), as reads return them. Buckets of more
    than ``per_bucket`` records on average are reduced slice by slice (a few passes over
    each), fewer by whole-array passes (no Python loop over many small buckets)."""
    out = _empty(buckets)
    x, t, b = x[keep], t[keep], bucket[keep]
    if not len(x):
        return out
    if not presorted:
        order = np.lexsort((t, b))
        x, t, b = x[order], t[order], b[order]
    starts = np.flatnonzero(np.concatenate([[True], b[1:] != b[:-1]]))
    ends = np.concatenate([starts[1:], [len(b)]])
    ids = b[starts]
    out["n"][ids] = ends - starts
    out["sum"][ids] = np.add.reduceat(x, starts)
    out["tfirst"][ids] = t[starts]
    out["tlast"][ids] = t[ends - 1]
    if len(x) > per_bucket * len(starts):
        _by_slices(out, x, t, starts, ends, ids)
        return out
    for stat, reduce_ in (("min", np.minimum), ("max", np.maximum)):
        best = reduce_.reduceat(x, starts)
        hit = np.flatnonzero(x == np.repeat(best, ends - starts))
        at = hit[np.searchsorted(hit, starts)]          # earliest record with that value
        out[stat][ids] = best
        out["t" + stat][ids] = t[at]
    # first: among the records at the earliest time, the smallest value; last: the largest
    # among those at the latest
    t0 = np.repeat(t[starts], ends - starts)
    t1 = np.repeat(t[ends - 1], ends - starts)
    out["first"][ids] = np.minimum.reduceat(np.where(t == t0, x, np.inf), starts)
    out["last"][ids] = np.maximum.reduceat(np.where(t == t1, x, -np.inf), starts)
    return out


def _by_slices(out: dict[str, np.ndarray], x: np.ndarray, t: np.ndarray, starts: np.ndarray,
               ends: np.ndarray, ids: np.ndarray) -> None:
    """min, max, first and last bucket by bucket, for time-sorted records in large buckets
    (argmin gives the first of equal values: the earliest)."""
    for a, e, k in zip(starts.tolist(), ends.tolist(), ids.tolist()):
        xs = x[a:e]
        i, j = a + int(xs.argmin()), a + int(xs.argmax())
        out["min"][k], out["tmin"][k] = x[i], t[i]
        out["max"][k], out["tmax"][k] = x[j], t[j]
        out["first"][k] = x[a] if e - a == 1 or t[a + 1] != t[a] else \
            xs[t[a:e] == t[a]].min()
        out["last"][k] = x[e - 1] if e - a == 1 or t[e - 2] != t[e - 1] else \
            xs[t[a:e] == t[e - 1]].max()


def combine(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Statistics of the union of two sets of records, bucket by bucket."""
    out = {"n": a["n"] + b["n"], "sum": a["sum"] + b["sum"]}
    take = (b["min"] < a["min"]) | ((b["min"] == a["min"]) & (b["tmin"] < a["tmin"]))
    out["min"], out["tmin"] = np.where(take, b["min"], a["min"]), np.where(take, b["tmin"], a["tmin"])
    take = (b["max"] > a["max"]) | ((b["max"] == a["max"]) & (b["tmax"] < a["tmax"]))
    out["max"], out["tmax"] = np.where(take, b["max"], a["max"]), np.where(take, b["tmax"], a["tmax"])
    take = (b["tfirst"] < a["tfirst"]) | ((b["tfirst"] == a["tfirst"]) & (b["first"] < a["first"]))
    out["first"] = np.where(take, b["first"], a["first"])
    out["tfirst"] = np.where(take, b["tfirst"], a["tfirst"])
    take = (b["tlast"] > a["tlast"]) | ((b["tlast"] == a["tlast"]) & (b["last"] > a["last"]))
    out["last"] = np.where(take, b["last"], a["last"])
    out["tlast"] = np.where(take, b["tlast"], a["tlast"])
    return out


def from_summaries(rows: np.ndarray, k: int, bucket: np.ndarray,
                   buckets: int) -> dict[str, np.ndarray]:
    """Per-bucket statistics of whole blocks from their summary rows (signal ``k``), each
    row's min, max, first and last a candidate for its bucket's."""
    out = _empty(buckets)
    has = rows[f"n{k}"] > 0
    rows, b = rows[has], bucket[has]
    if not len(rows):
        return out
    out["n"] = np.bincount(b, weights=rows[f"n{k}"], minlength=buckets).astype(np.int64)
    out["sum"] = np.bincount(b, weights=rows[f"sum{k}"], minlength=buckets)
    for stat, keys, take_last in (("min", ("tmin", "min"), False),
                                  ("max", ("tmax", "max"), False),
                                  ("first", ("first", "tfirst"), False),
                                  ("last", ("last", "tlast"), True)):
        a, c = rows[f"{keys[0]}{k}"], rows[f"{keys[1]}{k}"]
        order = np.lexsort((a, -c if stat == "max" else c, b))
        sb = b[order]
        edge = np.flatnonzero(np.concatenate([sb[1:] != sb[:-1], [True]])) if take_last \
            else np.flatnonzero(np.concatenate([[True], sb[1:] != sb[:-1]]))
        pick = order[edge]
        out[stat][b[pick]] = rows[f"{stat}{k}"][pick]
        out["t" + stat][b[pick]] = rows[f"t{stat}{k}"][pick]
    return out


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


def finish(channel: str, edges: np.ndarray, counts: np.ndarray,
           stats: dict[str, dict[str, np.ndarray]], decoded: int, summarised: int) -> Overview:
    signals = {}
    for name, s in stats.items():
        empty = s["n"] == 0
        nan = np.where(empty, np.nan, 0.0)

        def times(key, s=s, empty=empty):
            return np.where(empty, 0, s[key]).astype(np.int64)

        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s["sum"] / s["n"]
        signals[name] = SignalOverview(
            count=s["n"], min=s["min"] + nan, max=s["max"] + nan, mean=mean + nan,
            first=s["first"] + nan, last=s["last"] + nan, min_time=times("tmin"),
            max_time=times("tmax"), first_time=times("tfirst"), last_time=times("tlast"))
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
