"""A query's batches, as they arrive over the network, into one Columns (the client's
`speeddata.Client.query`)."""

from __future__ import annotations

import numpy as np

from .columns import Columns
from .decimation import concat


class Gather:
    """Batches into one Columns. When the server says how many rows at most will come,
    plain numeric columns are allocated once and each batch is copied in as it arrives
    (while the next one is on its way); anything else is joined at the end."""

    def __init__(self, channel: str):
        self.channel = channel
        self.parts: list[Columns] = []
        self.out: Columns | None = None
        self.rows = 0
        self.shape: Columns | None = None      # the first batch: its signals, if no row comes

    def add(self, batch: Columns, bound: int) -> None:
        if self.shape is None:
            self.shape = batch.take(slice(0, 0))
        if not len(batch):
            return
        if self.out is None and not self.parts and bound >= len(batch) and all(
                not np.ma.isMaskedArray(v) and v.dtype.kind in "biuf"
                for v in batch.data.values()):
            self.out = Columns(np.empty(bound, np.int64), {
                k: np.empty(bound, v.dtype) for k, v in batch.data.items()}, self.channel)
        out = self.out
        if out is not None and self.rows + len(batch) <= len(out) and \
                batch.data.keys() == out.data.keys() and \
                all(batch.data[k].dtype == out.data[k].dtype for k in out.data):
            end = self.rows + len(batch)
            out.time[self.rows:end] = batch.time
            for k, v in batch.data.items():
                out.data[k][self.rows:end] = v
            self.rows = end
            return
        if out is not None:                          # not what was announced: join instead
            self.parts, self.out = [out.take(slice(0, self.rows))], None
        self.parts.append(batch)

    def result(self) -> Columns:
        if self.out is not None:
            return self.out.take(slice(0, self.rows))
        shape = [self.shape] if self.shape is not None else []
        return concat_batches(self.parts or shape, self.channel)


def concat_batches(batches, channel: str = "") -> Columns:
    """Batches joined into one Columns; without rows, the first batch's signals (a range
    without records keeps them, as a local read does)."""
    batches = list(batches)
    parts = [b for b in batches if len(b)]
    if not parts:
        if batches:
            first = batches[0]
            return Columns(np.asarray(first.time[:0], np.int64),
                           {k: v[:0].copy() for k, v in first.data.items()}, channel)
        return Columns(np.empty(0, np.int64), {}, channel)
    return concat(parts)         # one copy: arrays of their own, not views of messages
