"""Encode records to Avro binary and decode Avro binary to columns.

Decoding and validation run in Cython (`speeddata._codec`); encoding, needed only by
senders and tests, uses fastavro.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import fastavro
import numpy as np

from ._codec import REASONS, Plan, check_objects
from ._codec import encode_columns as _encode_columns
from .columns import Columns
from .schema import ChannelSchema, load

__all__ = ["Columns", "Plan", "REASONS", "allocate", "decode", "encode", "encode_columns",
           "encode_column_slices", "encoder"]


def allocate(schema: ChannelSchema, n: int, signals: Sequence[str] | None = None):
    """Empty output columns for ``n`` records: (time, columns, masks) as decode_into takes."""
    wanted = set(schema.signal_names if signals is None else signals)
    for name in wanted:
        schema.signal(name)  # raises SchemaError naming the unknown signal
    columns: list[np.ndarray | None] = []
    masks: list[np.ndarray | None] = []
    for s in schema.signals:
        if s.name not in wanted:
            columns.append(None)
            masks.append(None)
            continue
        columns.append(_prefaulted(n, np.int32 if s.type == "enum" else s.dtype))
        masks.append(_prefaulted(n, np.uint8) if s.nullable else None)
    return _prefaulted(n, np.int64), columns, masks


def _prefaulted(n: int, dtype) -> np.ndarray:
    """An array whose pages are already mapped: the decoder writes many columns a record at
    a time, and first-touch page faults scattered over all of them cost several times the
    decoding itself; one sequential pass maps them cheaply."""
    a = np.empty(n, dtype=dtype)
    if a.dtype != object and a.nbytes >= 1 << 20:
        a.fill(0)
    return a


def finish(schema: ChannelSchema, time: np.ndarray, columns: list, masks: list,
           channel: str = "") -> Columns:
    """Turn decode_into's outputs into Columns (enum indexes to symbols, masks applied)."""
    data = {}
    for s, col, mask in zip(schema.signals, columns, masks):
        if col is None:
            continue
        if s.type == "enum":
            col = np.asarray(s.symbols, dtype=object)[col]
        if mask is not None:
            col = np.ma.MaskedArray(col, mask=mask.view(bool))
        data[s.name] = col
    return Columns(time, data, channel)


def empty(schema: ChannelSchema, signals: Sequence[str] | None = None,
          channel: str = "") -> Columns:
    """No records, but the signals and their dtypes: what a range without records reads."""
    time, columns, masks = allocate(schema, 0, signals)
    return finish(schema, time, columns, masks, channel)


def decode(schema: ChannelSchema | Plan, data: bytes, count: int | None = None,
           signals: Sequence[str] | None = None) -> Columns:
    """Decode Avro binary records, back to back, into Columns.

    ``count`` may be given when known (an Avro block header says it); otherwise the records
    are counted first. Raises DecodeError when the bytes are not whole records.
    """
    plan = schema if isinstance(schema, Plan) else Plan(schema)
    if count is None:
        count = len(plan.check(data)) if len(data) else 0
    time, columns, masks = allocate(plan.schema, count, signals)
    if count:
        plan.decode_into(data, count, 0, time, columns, masks)
    return finish(plan.schema, time, columns, masks)


def encoder(schema: ChannelSchema | Mapping | str):
    """A function record -> Avro binary bytes, for the given schema (wire form)."""
    cs = schema if isinstance(schema, ChannelSchema) else load(schema)
    avro = dict(cs.avro)
    if cs.stamped:  # devices do not send the time SpeedData stamps on receipt
        avro["fields"] = avro["fields"][1:]
    parsed = fastavro.parse_schema(avro)
    write = fastavro.schemaless_writer

    def encode_one(record: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        write(buf, parsed, record)
        return buf.getvalue()

    return encode_one


def encode(schema: ChannelSchema | Mapping | str, records: Iterable[Mapping[str, Any]]) -> bytes:
    """Avro binary of the records, back to back (a multi-record datagram or block body)."""
    one = encoder(schema)
    return b"".join(one(r) for r in records)


def _enum_indexes(s, values, mask) -> np.ndarray:
    """Symbol strings to their indexes; an unknown symbol is an error naming it (a null
    value's placeholder, under the mask, takes index 0)."""
    index = {sym: i for i, sym in enumerate(s.symbols)}
    out = np.zeros(len(values), dtype=np.int32)
    for row, v in enumerate(values):
        if mask is not None and mask[row]:
            continue
        try:
            out[row] = index[v]
        except (KeyError, TypeError):
            raise ValueError(f"signal {s.name!r}: {v!r} is not one of its enum symbols "
                             f"{', '.join(s.symbols)}") from None
    return out


def encode_columns(plan: Plan, time: np.ndarray, data: Mapping[str, Any]) -> tuple[bytes, np.ndarray]:
    """Avro binary of records given as columns (fast: millions of records/s).

    ``data`` maps every signal to an array (masked arrays for nulls; enum signals as symbol
    strings or indexes). Returns the records back to back and the end offset of each, so
    ``body[ends[k-1]:ends[k]]`` is record k: one datagram each, or several per datagram.
    """
    columns, masks = _prepared(plan, data)
    return _encode_columns(plan, time, columns, masks)


def encode_column_slices(plan: Plan, time: np.ndarray, data: Mapping[str, Any],
                         records: int) -> Iterator[tuple[bytes, np.ndarray]]:
    """`encode_columns` of ``records`` records at a time, for appends of any size in
    bounded memory (a consumer stores one slice while the next is encoded). Every value is
    checked here, before the first slice is encoded, so no slice fails: an error leaves
    nothing half done."""
    columns, masks = _prepared(plan, data)
    n = len(time)
    for s, col in zip(plan.schema.signals, columns):
        if len(col) != n:
            raise ValueError(f"signal {s.name!r} has {len(col)} values for {n} times")
    columns = check_objects(plan, columns)

    def slices() -> Iterator[tuple[bytes, np.ndarray]]:
        for a in range(0, n, records):
            b = a + records
            yield _encode_columns(plan, time[a:b], [c[a:b] for c in columns],
                                  [None if m is None else m[a:b] for m in masks])
    return slices()


def _prepared(plan: Plan, data: Mapping[str, Any]) -> tuple[list, list]:
    """The columns and masks `_codec.encode_columns` takes, in the plan's signal order."""
    columns, masks = [], []
    for s in plan.schema.signals:
        if s.name not in data:
            raise KeyError(f"no column for signal {s.name!r}")
        col = data[s.name]
        masks.append(np.ma.getmaskarray(col) if np.ma.isMaskedArray(col) else None)
        col = np.ma.getdata(col)
        if s.type == "enum" and col.dtype.kind in "OUS":
            col = _enum_indexes(s, col, masks[-1])
        elif s.type in ("string", "bytes", "fixed") and masks[-1] is not None:
            fill = "" if s.type == "string" else b"\0" * s.size
            col = [fill if m else v for v, m in zip(col, masks[-1])]
        columns.append(col)
    return columns, masks
