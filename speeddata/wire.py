"""Columns as bytes: the columnar layout of gRPC batches and WebSocket frames.

A column is its values as little-endian bytes (fixed-size types), or UTF-8/raw bytes with
(rows + 1) uint32 offsets (strings, bytes), plus a validity bitmap when some rows are null
(bit i of the LSB-first bitmap set when row i has a value, as in Apache Arrow). The layout
is documented for other languages in ``proto/speeddata/v1/speeddata.proto`` (Column).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .columns import Columns
from .decimation import key, split_key
from .errors import SpeedDataError

# type name -> little-endian numpy dtype (None: variable size, offsets + bytes)
DTYPES: dict[str, np.dtype | None] = {
    "bool": np.dtype("u1"), "int32": np.dtype("<i4"), "int64": np.dtype("<i8"),
    "float32": np.dtype("<f4"), "float64": np.dtype("<f8"), "string": None, "bytes": None,
}
_BY_KIND = {("b", 1): "bool", ("i", 4): "int32", ("i", 8): "int64", ("u", 4): "int64",
            ("u", 8): "int64", ("i", 2): "int32", ("i", 1): "int32", ("u", 2): "int32",
            ("u", 1): "int32", ("f", 4): "float32", ("f", 8): "float64", ("f", 2): "float32"}


class EncodedColumn(NamedTuple):
    name: str            # the signal
    aggregate: str       # "value" or one of decimation.AGGREGATES
    type: str            # a key of DTYPES
    values: bytes
    offsets: bytes       # strings and bytes only
    validity: bytes      # empty when every row has a value


def type_of(values: np.ndarray) -> str:
    """The wire type of a column of values."""
    kind = (values.dtype.kind, values.dtype.itemsize)
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    if values.dtype.kind in "OSU":
        data = np.ma.getdata(values)
        mask = np.ma.getmaskarray(values)
        present = [v for v, m in zip(data[:64], mask[:64]) if not m and v is not None]
        return "bytes" if present and isinstance(present[0], (bytes, bytearray)) or \
            values.dtype.kind == "S" else "string"
    raise SpeedDataError(f"no wire type for numpy dtype {values.dtype}")


def encode_column(column_key: str, values: np.ndarray) -> EncodedColumn:
    name, aggregate = split_key(column_key)
    kind = type_of(values)
    mask = np.ma.getmaskarray(values) if np.ma.isMaskedArray(values) else None
    data = np.ma.getdata(values)
    validity = b""
    if mask is not None and mask.any():
        validity = np.packbits(~mask, bitorder="little").tobytes()
    dtype = DTYPES[kind]
    if dtype is not None:
        if mask is not None and mask.any():
            data = np.where(mask, 0, data)
        return EncodedColumn(name, aggregate or "value", kind,
                             np.ascontiguousarray(data, dtype=dtype).tobytes(), b"", validity)
    items = [b"" if (mask is not None and mask[i]) or v is None else
             (v.encode() if isinstance(v, str) else bytes(v)) for i, v in enumerate(data)]
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    offsets = np.zeros(len(items) + 1, dtype="<u4")
    np.cumsum(lengths, out=offsets[1:])
    return EncodedColumn(name, aggregate or "value", kind, b"".join(items), offsets.tobytes(),
                         validity)


def decode_column(column: EncodedColumn, rows: int) -> np.ndarray:
    """The values of an encoded column (masked where null)."""
    dtype = DTYPES.get(column.type)
    if column.type not in DTYPES:
        raise SpeedDataError(f"column {column.name!r}: unknown type {column.type!r}")
    if dtype is not None:
        if len(column.values) != rows * dtype.itemsize:
            raise SpeedDataError(f"column {column.name!r}: {len(column.values)} bytes for "
                                 f"{rows} rows of {column.type}")
        values: np.ndarray = np.frombuffer(column.values, dtype=dtype)
        if column.type == "bool":
            values = values.astype(bool)
    else:
        offsets = np.frombuffer(column.offsets, dtype="<u4")
        if len(offsets) != rows + 1 or (rows and offsets[-1] != len(column.values)):
            raise SpeedDataError(f"column {column.name!r}: offsets do not match {rows} rows")
        raw = column.values
        bounds = offsets.tolist()
        items: list[Any]
        if column.type == "string":
            text = raw.decode()
            if len(text) == len(raw):                # ASCII: offsets are character offsets
                items = [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
            else:
                items = [raw[a:b].decode() for a, b in zip(bounds[:-1], bounds[1:])]
        else:
            items = [raw[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        values = np.empty(rows, dtype=object)
        values[:] = items
    if column.validity:
        valid = np.unpackbits(np.frombuffer(column.validity, np.uint8), count=rows,
                              bitorder="little").astype(bool)
        return np.ma.MaskedArray(values, mask=~valid)
    return values


def encode(cols: Columns) -> tuple[bytes, list[EncodedColumn]]:
    """A batch's time column (int64 little-endian) and its encoded columns."""
    return (np.ascontiguousarray(cols.time, dtype="<i8").tobytes(),
            [encode_column(k, v) for k, v in cols.data.items()])


def decode(time: bytes, columns: list[EncodedColumn], channel: str = "") -> Columns:
    rows = len(time) // 8
    data = {key(c.name, None if c.aggregate == "value" else c.aggregate): decode_column(c, rows)
            for c in columns}
    return Columns(np.frombuffer(time, dtype="<i8").astype(np.int64), data, channel)


def split(cols: Columns, max_rows: int, max_bytes: int = 4 << 20) -> list[Columns]:
    """A batch cut into pieces of at most ``max_rows`` rows and about ``max_bytes``."""
    n = len(cols)
    row_bytes = 8 + sum(v.dtype.itemsize if v.dtype.kind != "O" else 32
                        for v in cols.data.values())
    step = max(1, min(max_rows, max_bytes // row_bytes))
    if n <= step:
        return [cols]
    return [cols.take(slice(i, i + step)) for i in range(0, n, step)]
