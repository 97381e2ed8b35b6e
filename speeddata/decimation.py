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
        if kind.isdigit():
            return cls("every", int(kind))
        if arg.upper().startswith("P") or arg.endswith("s"):
            try:
                ns = duration_ns(arg[:-1] if arg.endswith("s") else arg, what=f"{kind} bucket")
            except TimeRangeError as e:
                raise SpeedDataError(f"decimation {text!r}: {e}") from None
            if ns <= 0:
                raise SpeedDataError(f"decimation {text!r}: the bucket must be longer than 0")
            return cls(kind, 1, ns)
        try:
            return cls(kind, int(arg or 1))
        except ValueError:
            raise SpeedDataError(f"decimation {text!r}: {arg!r} is not a count or a duration",
                                 hint="e.g. minmax:10 or minmax:0.01s") from None


def decimate(cols: Columns, d: Decimation, first_record: int = 0) -> tuple[Columns, int]:
    """Thin ``cols`` (records numbered from ``first_record``). Returns the result and how
    many trailing records form an unfinished bucket (to be decimated with later records)."""
    n = len(cols)
    if d.kind == "none" or n == 0:
        return cols, 0
    index = np.arange(first_record, first_record + n)
    if d.kind == "every":
        return cols.take(index % d.factor == 0), 0
    ids = cols.time // d.bucket_ns if d.bucket_ns else index // d.factor
    starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
    complete = len(starts) - 1          # the last bucket may still grow
    if complete <= 0:
        return cols.take(slice(0, 0)), n
    starts, held = starts[:complete + 1], n - starts[complete]
    edges, counts = starts[:-1], np.diff(starts)
    data = {}
    for name, v in cols.data.items():
        v = v[:starts[-1]]
        if v.dtype.kind not in "biuf" or np.ma.isMaskedArray(v):
            data[name] = v[edges]        # no arithmetic on strings or nulls: first value
            continue
        x = v.astype(np.float64)
        if d.kind == "mean":
            data[name] = np.add.reduceat(x, edges) / counts
        elif d.kind == "rms":
            data[name] = np.sqrt(np.add.reduceat(x * x, edges) / counts)
        else:
            data[name] = np.stack([np.minimum.reduceat(x, edges),
                                   np.maximum.reduceat(x, edges)], axis=1)
    return Columns(cols.time[edges], data, cols.channel), held
