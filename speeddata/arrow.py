"""Columns as Apache Arrow tables: what pyarrow, polars, pandas and DuckDB read without a
copy, and frames of several channels aligned in time.

A channel's table has ``time`` as ``timestamp[ns, tz=UTC]`` and one column per signal:
- numbers keep their dtype and share numpy's buffer (no copy);
- a nullable signal's mask becomes the column's validity (its values are still shared);
- booleans are packed into bits, and strings, bytes and enum symbols are built once (Arrow
  has no layout these share with numpy);
- an empty column of strings or bytes, whose type numpy cannot tell, is ``string``.
The table's metadata names the channel (``speeddata.channel``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .errors import ChannelNotFound, RequestError, listing

TIME = "timestamp[ns, tz=UTC]"


class Columns(Protocol):
    """What a table is made of: `speeddata.columns.Columns` (which calls this module)."""
    time: np.ndarray
    data: dict[str, np.ndarray]
    channel: str
HOW = ("asof", "outer")


def pyarrow() -> Any:
    """The pyarrow module, or an ImportError that says how to install it."""
    try:
        import pyarrow as pa
    except ImportError as e:             # a dependency of speeddata: only a broken install
        raise ImportError("Arrow results need pyarrow: pip install pyarrow") from e
    return pa


def time_array(time: np.ndarray) -> Any:
    """int64 ns as an Arrow ``timestamp[ns, tz=UTC]`` array sharing its buffer."""
    pa = pyarrow()
    return pa.array(np.ascontiguousarray(time, dtype=np.int64)).view(
        pa.timestamp("ns", "UTC"))


def signal_array(values: np.ndarray) -> Any:
    """One signal's numpy column as an Arrow array (numbers without a copy)."""
    pa = pyarrow()
    mask = None
    if np.ma.isMaskedArray(values):
        mask = np.ma.getmaskarray(values)
        values = values.data
    if values.dtype.kind in "iuf":
        return pa.array(np.ascontiguousarray(values), mask=mask)
    if values.dtype.kind == "b":
        return pa.array(values, mask=mask, type=pa.bool_())
    items = values.tolist()
    kind = next((type(v) for v in items if v is not None), str)
    return pa.array(items, mask=mask, type=pa.binary() if kind is bytes else
                    pa.string() if kind is str else None)


def to_arrow(cols: Columns) -> Any:
    """A channel's Columns as one ``pyarrow.Table`` (see the module's notes)."""
    pa = pyarrow()
    names = ["time", *cols.data]
    arrays = [time_array(cols.time), *(signal_array(v) for v in cols.data.values())]
    return pa.Table.from_arrays(arrays, names=names,
                                metadata={"speeddata.channel": cols.channel})


def to_polars(cols: Columns) -> Any:
    """A channel's Columns as a polars DataFrame (through Arrow, numbers without a copy)."""
    try:
        import polars as pl
    except ImportError as e:
        raise ImportError("to_polars() needs polars: pip install polars") from e
    return pl.from_arrow(to_arrow(cols))


def frame(parts: Mapping[str, Columns], how: str = "asof") -> Any:
    """Several channels' Columns in one table aligned in time: ``time`` and a column
    ``channel.signal`` for each signal.

    ``how="asof"``: one row per record of the first channel; every other signal holds its
    channel's latest value at or before that time (null before its first record), as
    ``pandas.merge_asof`` gives. ``how="outer"``: one row per time of any channel (a full
    outer join on ``time``, sorted), null where a channel has no record at that time.
    """
    if how not in HOW:
        raise RequestError(f"how={how!r}: use one of {', '.join(map(repr, HOW))}")
    if not parts:
        raise RequestError("a frame needs at least one channel")
    pa = pyarrow()
    tables = []
    for channel, cols in parts.items():
        t = to_arrow(cols)
        tables.append(t.rename_columns(["time", *(f"{channel}.{s}" for s in cols.data)]))
    first = tables[0]
    if how == "asof":
        base = np.asarray(next(iter(parts.values())).time)
        out = first
        for cols, t in zip(list(parts.values())[1:], tables[1:]):
            at = np.searchsorted(np.asarray(cols.time), base, side="right") - 1
            index = pa.array(at, mask=at < 0)
            for name in t.column_names[1:]:
                out = out.append_column(name, t.column(name).take(index))
        return out.replace_schema_metadata(None)
    out = first
    for t in tables[1:]:
        out = out.join(t, "time", join_type="full outer")
    return out.sort_by("time").replace_schema_metadata(None).combine_chunks()


def split_names(items: Sequence[str], channels: Sequence[str]) -> dict[str, list[str] | None]:
    """``["rig.x", "rig.y", "example"]`` as {channel: signals (None: all)}; a channel's
    name may hold dots itself, so the longest channel name that fits is taken."""
    by_length = sorted(channels, key=len, reverse=True)
    wanted: dict[str, list[str] | None] = {}
    for item in items:
        channel = next((c for c in by_length if item == c or item.startswith(c + ".")), None)
        if channel is None:
            raise ChannelNotFound(f"no channel in {item!r}",
                                  hint=f"channels are: {listing(channels)}")
        signal = item[len(channel) + 1:]
        if not signal:
            wanted[channel] = None
        elif wanted.get(channel, []) is not None:
            wanted.setdefault(channel, []).append(signal)      # type: ignore[union-attr]
    return wanted
