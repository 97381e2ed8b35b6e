"""Columns as bytes: the columnar layout of gRPC batches and WebSocket frames.

A column is its values as little-endian bytes (fixed-size types), or UTF-8/raw bytes with
(rows + 1) uint32 offsets (strings, bytes), plus a validity bitmap when some rows are null
(bit i of the LSB-first bitmap set when row i has a value, as in Apache Arrow). The layout
is documented for other languages in ``proto/speeddata/v1/speeddata.proto`` (Column).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    """One column as bytes (any buffer: bytes, or a byte view of a numpy array)."""
    name: str            # the signal
    aggregate: str       # "value" or one of decimation.AGGREGATES
    type: str            # a key of DTYPES
    values: Any
    offsets: Any         # strings and bytes only
    validity: Any        # empty when every row has a value


def _view(a: np.ndarray) -> memoryview:
    """The bytes of an array without copying them (contiguous arrays)."""
    return memoryview(np.ascontiguousarray(a)).cast("B")  # type: ignore[arg-type]


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
                             _view(np.asarray(data, dtype=dtype)), b"", validity)
    items = [b"" if (mask is not None and mask[i]) or v is None else
             (v.encode() if isinstance(v, str) else bytes(v)) for i, v in enumerate(data)]
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    offsets = np.zeros(len(items) + 1, dtype="<u4")
    np.cumsum(lengths, out=offsets[1:])
    return EncodedColumn(name, aggregate or "value", kind, b"".join(items), _view(offsets),
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
        raw = bytes(column.values)
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


def encode(cols: Columns) -> tuple[memoryview, list[EncodedColumn]]:
    """A batch's time column (int64 little-endian) and its encoded columns."""
    return (_view(np.asarray(cols.time, dtype="<i8")),
            [encode_column(k, v) for k, v in cols.data.items()])


def decode(time: Any, columns: list[EncodedColumn], channel: str = "") -> Columns:
    """Columns from a time buffer and encoded columns; numbers stay views of the buffers."""
    rows = len(time) // 8
    data = {key(c.name, None if c.aggregate == "value" else c.aggregate): decode_column(c, rows)
            for c in columns}
    return Columns(np.frombuffer(time, dtype="<i8").astype(np.int64, copy=False), data,
                   channel)


def split(cols: Columns, max_rows: int, max_bytes: int) -> list[Columns]:
    """A batch cut into pieces of at most ``max_rows`` rows and about ``max_bytes``."""
    n = len(cols)
    row_bytes = 8 + sum(v.dtype.itemsize if v.dtype.kind != "O" else 32
                        for v in cols.data.values())
    step = max(1, min(max_rows, max_bytes // row_bytes))
    if n <= step:
        return [cols]
    return [cols.take(slice(i, i + step)) for i in range(0, n, step)]


# ---- protobuf framing ----------------------------------------------------------------------
# Batch messages (proto/speeddata/v1/speeddata.proto) written and read by hand: the column
# bytes go from numpy into the message in one copy and come out as views, where the
# protobuf runtime would copy them three times. Field numbers are the .proto's; the tests
# check both ways against the protobuf runtime.

_LEN, _VARINT = 2, 0


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, size: int) -> bytes:
    return _tag(number, _LEN) + _varint(size)


def varint_fields(**fields: int) -> bytes:
    """Varint fields by number, e.g. varint_fields(f2=rows): zero values are left out."""
    return b"".join(_tag(int(k[1:]), _VARINT) + _varint(v) for k, v in fields.items() if v)


def batch_message(cols: Columns, channel: str, aggregates: Mapping[str, int],
                  types: Mapping[str, int]) -> list[Any]:
    """A Batch message as a list of buffers to join (the column data as numpy views).
    ``aggregates`` and ``types`` give the .proto's enum numbers."""
    time, columns = encode(cols)
    name = channel.encode()
    parts: list[Any] = [_bytes_field(1, len(name)), name, varint_fields(f2=len(cols)),
                        _bytes_field(3, len(time)), time]
    for c in columns:
        cname = c.name.encode()
        head = _bytes_field(1, len(cname)) + cname + varint_fields(
            f2=aggregates[c.aggregate], f3=types[c.type])
        body = [head]
        for number, data in ((4, c.values), (5, c.offsets), (6, c.validity)):
            if len(data):
                body += [_bytes_field(number, len(data)), data]
        size = sum(len(b) for b in body)
        parts += [_bytes_field(4, size)] + body
    return parts


def embed(number: int, parts: list[Any]) -> list[Any]:
    """``parts`` (a message) as field ``number`` of an enclosing message."""
    return [_bytes_field(number, sum(len(p) for p in parts))] + parts


def read_fields(buf: memoryview) -> list[tuple[int, int | memoryview]]:
    """The fields of one message: (number, value), value an int for varints and a view for
    length-delimited fields; other wire types are skipped."""
    out: list[tuple[int, int | memoryview]] = []
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
            out.append((number, value))
        elif wire_type == _LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > end:
                raise SpeedDataError("a truncated message")
            out.append((number, buf[pos:pos + size]))
            pos += size
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise SpeedDataError(f"unsupported protobuf wire type {wire_type}")
    return out


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise SpeedDataError("a truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def read_batch(buf: memoryview, aggregates: dict[int, str], types: dict[int, str]) -> Columns:
    """Columns from a Batch message (views into ``buf`` where no copy is needed)."""
    channel, columns = "", []
    time: Any = b""
    for number, value in read_fields(buf):
        if number == 1 and isinstance(value, memoryview):
            channel = bytes(value).decode()
        elif number == 3 and isinstance(value, memoryview):
            time = value
        elif number == 4 and isinstance(value, memoryview):
            f = dict(read_fields(value))
            name = f.get(1, b"")
            columns.append(EncodedColumn(
                bytes(name).decode() if isinstance(name, memoryview) else "",
                aggregates.get(int(f.get(2, 0)), "value"), types.get(int(f.get(3, 0)), ""),
                f.get(4, b""), f.get(5, b""), f.get(6, b"")))
    return decode(time, columns, channel)
