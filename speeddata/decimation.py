"""Decimation: how a live view thins a channel's records (every Nth, mean, RMS, or a min/max
envelope per bucket of N records or of a duration), as the hub, gRPC and the web use it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .columns import Columns
from .errors import SpeedDataError, TimeRangeError
from .timeutil import duration_ns


@dataclass(frozen=True)
class Decimation:
    """How a subscriber thins a channel's records.

    kind : ``none`` (every record), ``every`` (every Nth: the prototype's downsample),
        ``mean``, ``rms`` or ``minmax`` (the envelope: no spike disappears) per bucket.
    factor : records per bucket (or N for ``every``).
    bucket_ns : time buckets instead of record counts (``mean``/``rms``/``minmax``).
    """

    kind: str = "none"
    factor: int = 1
    bucket_ns: int = 0

    KINDS = ("none", "every", "mean", "rms", "minmax")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise SpeedDataError(f"unknown decimation {self.kind!r}",
                                 hint=f"use one of {', '.join(self.KINDS)}")
        if self.factor < 1 or self.bucket_ns < 0:
            raise SpeedDataError(f"decimation factor must be >= 1, not {self.factor}")

    @classmethod
    def parse(cls, text: str | int | None) -> "Decimation":
        """``10`` (every 10th), ``mean:10``, ``minmax:100``, ``rms:0.01s`` or ``rms:PT0.01S``
        (time buckets)."""
        if text in (None, "", 1, "1", "none"):
            return cls()
        if isinstance(text, int) and not isinstance(text, bool):
            return cls("every", text)
        kind, _, arg = str(text).strip().partition(":")
        if kind.isascii() and kind.isdigit():
            return cls("every", int(kind))
        if arg.upper().startswith("P") or arg.endswith("s"):
            try:
                ns = duration_ns(arg[:-1] if arg.endswith("s") else arg, what=f"{kind} bucket")
            except TimeRangeError as e:
                raise SpeedDataError(f"decimation {text!r}: {e}") from None
            if ns <= 0:
                raise SpeedDataError(f"decimation {text!r}: the bucket must be longer than 0")
            return cls(kind, 1, ns)
        if not arg:
            return cls(kind, 1)
        if not (arg.isascii() and arg.isdigit()):
            raise SpeedDataError(f"decimation {str(text)[:40]!r}: {arg[:40]!r} is not a count "
                                 "or a duration", hint="e.g. minmax:10 or minmax:0.01s")
        return cls(kind, int(arg))


# The one wire form of thinned data, for the hub, gRPC and the web: ``time`` is each bucket's
# start (for time buckets a multiple of the bucket's duration, for buckets of N records the
# time of the first) and each signal comes as one column per aggregate,
# keyed "signal:aggregate" (an envelope is "x:min" and "x:max"). Records kept whole (no
# decimation, every Nth) keep their plain signal names. Avro names cannot hold ':'.
AGGREGATES = ("min", "max", "mean", "rms", "first", "last", "count", "min_time", "max_time",
              "first_time", "last_time")


def key(signal: str, aggregate: str | None) -> str:
    """The column key of a signal's aggregate ("x:min"), or the signal for plain values."""
    return f"{signal}:{aggregate}" if aggregate else signal


def split_key(k: str) -> tuple[str, str | None]:
    """(signal, aggregate or None) from a column key."""
    signal, sep, aggregate = k.rpartition(":")
    return (signal, aggregate) if sep and aggregate in AGGREGATES else (k, None)


def decimate(cols: Columns, d: Decimation, first_record: int = 0, *,
             final: bool = False) -> tuple[Columns, int]:
    """Thin ``cols`` (records numbered from ``first_record``). Returns the result in the
    wire form above and how many trailing records form an unfinished bucket (to be
    decimated with later records); ``final`` closes that bucket too."""
    n = len(cols)
    if d.kind == "none":
        return cols, 0
    if d.kind == "every":
        return cols.take((np.arange(first_record, first_record + n) % d.factor) == 0), 0
    if n == 0:
        return decimated_empty(cols, d), 0
    ids = cols.time // d.bucket_ns if d.bucket_ns else \
        np.arange(first_record, first_record + n) // d.factor
    starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
    complete = len(starts) if final else len(starts) - 1    # the last bucket may still grow
    if complete <= 0:
        return decimated_empty(cols, d), n
    bounds = np.append(starts[:complete], starts[complete] if complete < len(starts) else n)
    held = n - int(bounds[-1])
    edges, counts = bounds[:-1], np.diff(bounds)
    data = {}
    for name, v in cols.data.items():
        v = v[:bounds[-1]]
        if v.dtype.kind not in "biuf" or np.ma.isMaskedArray(v):
            data[key(name, "first")] = v[edges]      # no arithmetic on strings or nulls
            continue
        x = v.astype(np.float64)
        if d.kind == "mean":
            data[key(name, "mean")] = np.add.reduceat(x, edges) / counts
        elif d.kind == "rms":
            data[key(name, "rms")] = np.sqrt(np.add.reduceat(x * x, edges) / counts)
        else:
            data[key(name, "min")] = np.minimum.reduceat(x, edges)
            data[key(name, "max")] = np.maximum.reduceat(x, edges)
    # a bucket's time: its start (a multiple of bucket_ns), or its first record's time
    start = ids[edges] * d.bucket_ns if d.bucket_ns else cols.time[edges]
    return Columns(start, data, cols.channel), held


def decimated_empty(cols: Columns, d: Decimation) -> Columns:
    """No buckets, but the columns a decimation of ``cols`` has (numbers as float64)."""
    aggs = ("min", "max") if d.kind == "minmax" else (d.kind,)
    data = {}
    for name, v in cols.data.items():
        if v.dtype.kind not in "biuf" or np.ma.isMaskedArray(v):
            data[key(name, "first")] = v[:0]
        else:
            data.update({key(name, a): np.empty(0, np.float64) for a in aggs})
    return Columns(cols.time[:0], data, cols.channel)


class Decimator:
    """Decimation of a stream of consecutive batches: a bucket that is still open is held
    and finished with the next batch. After a gap (records missed) the held bucket is
    closed as it is, so no bucket spans a gap."""

    def __init__(self, d: Decimation):
        self.d = d
        self._held: Columns | None = None
        self._held_from = 0              # record number of the first held record
        self.covered_from = 0            # the first record the last push's output covers

    def push(self, cols: Columns, first_record: int, missed: int = 0) -> tuple[Columns, int]:
        """The decimated rows ready now, and the record number up to which the input is
        covered by them (records of a bucket still open are not)."""
        d = self.d
        self.covered_from = first_record
        if d.kind in ("none", "every"):
            return decimate(cols, d, first_record)[0], first_record + len(cols)
        if self._held is not None and not missed:
            self.covered_from = self._held_from
        out = []
        if self._held is not None and missed:
            out.append(decimate(self._held, d, self._held_from, final=True)[0])
            self._held = None
        if self._held is not None:
            cols, first_record = concat([self._held, cols]), self._held_from
        done, held = decimate(cols, d, first_record)
        out.append(done)
        end = len(cols) - held
        self._held = cols.take(slice(end, len(cols))) if held else None
        self._held_from = first_record + end
        return (out[0] if len(out) == 1 else concat(out)), first_record + end

    def finish(self) -> Columns:
        """The bucket still open, closed as it is (the end of a finite read)."""
        held, self._held = self._held, None
        if held is None:
            return Columns(np.empty(0, np.int64), {})
        return decimate(held, self.d, self._held_from, final=True)[0]


def concat(parts: list[Columns]) -> Columns:
    """Batches of one channel, one after the other, as one."""
    first = parts[0]
    return Columns(np.concatenate([p.time for p in parts]),
                   {k: np.ma.concatenate([p.data[k] for p in parts])
                    if any(np.ma.isMaskedArray(p.data[k]) for p in parts)
                    else np.concatenate([p.data[k] for p in parts]) for k in first.data},
                   first.channel)
