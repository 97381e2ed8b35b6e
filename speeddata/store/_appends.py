"""Appends from Python: records given as dicts or as columns, encoded into the datagrams a
channel's writer takes (about a block's worth each), every value checked before the first
is stored."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..codec import Plan, encode_column_slices, encoder
from ..columns import Columns
from ..errors import DecodeError
from ..schema import ChannelSchema
from ..timeutil import TimeLike, now_ns, to_ns

MAX_RECORDS_PER_DATAGRAM = 65536     # the block stage's limit (a UDP payload's worth)
APPEND_SLICE_RECORDS = 1 << 16       # append_columns encodes this many at a time


def record_datagrams(schema: ChannelSchema, channel: str,
                     records: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """Records given as dicts (nested records as nested dicts), one datagram each."""
    one = encoder(schema)
    try:
        return [one(r) for r in records]
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
        raise DecodeError(f"channel {channel!r}: a record does not fit the schema: {e}",
                          reason="encode", offset=0) from e


def column_batches(wire: Plan, channel: str, time: Any, data: Mapping[str, Any] | None,
                   block_bytes: int) -> Iterator[list[memoryview]]:
    """Records given as columns (or a `Columns`), as batches of block-sized datagrams,
    APPEND_SLICE_RECORDS records encoded at a time; every value is checked before the
    first batch is made (a DecodeError names the problem)."""
    if isinstance(time, Columns):
        time, data = time.time, time.data
    if data is None:
        raise DecodeError(f"channel {channel!r}: append_columns needs the signals' "
                          "columns", reason="encode", offset=0)
    if wire.schema.stamped:
        if time is not None and len(time):
            raise DecodeError(f"channel {channel!r} has no time field: its records "
                              "are stamped with their receive time; pass time=None",
                              reason="encode", offset=0)
        n = len(next(iter(data.values()))) if data else 0
        times = np.zeros(n, dtype=np.int64)
    else:
        times = _ns_array(time, channel)
    try:
        slices = encode_column_slices(wire, times, data, APPEND_SLICE_RECORDS)
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise DecodeError(f"channel {channel!r}: columns do not fit the schema: {e}",
                          reason="encode", offset=0) from e
    return (_block_sized(body, ends, block_bytes) for body, ends in slices)


def receive_ns(receive_time: TimeLike | None) -> int:
    return now_ns() if receive_time is None else to_ns(receive_time, what="receive_time")


def _ns_array(time: Any, channel: str) -> np.ndarray:
    t = np.asarray(time)
    if t.dtype.kind == "M":
        t = t.astype("datetime64[ns]").view(np.int64)
    elif t.dtype.kind not in "iu":
        raise DecodeError(f"channel {channel!r}: times must be int64 ns or datetime64, "
                          f"not {t.dtype}", reason="encode", offset=0)
    return np.ascontiguousarray(t, dtype=np.int64)


def _block_sized(body: bytes, ends: np.ndarray, block_bytes: int) -> list[memoryview]:
    """Encoded records cut into datagrams of just over a block each (a block closes once it
    holds block_bytes): validated and copied once, whole."""
    n = len(ends)
    per = max(1, min(MAX_RECORDS_PER_DATAGRAM, -(-block_bytes * n // max(1, len(body)))))
    cuts = np.concatenate([[0], ends[per - 1::per], [] if n % per == 0 else ends[-1:]])
    view = memoryview(body)
    return [view[int(a):int(b)] for a, b in zip(cuts[:-1], cuts[1:])]
