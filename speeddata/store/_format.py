"""Avro object container files and their block index, byte for byte.

A segment is a standard Avro object container file: header (magic, metadata map with the
schema and codec, 16-byte sync marker), then blocks (record count, byte size, compressed
records, sync marker). Beside it, ``<segment>.idx`` holds one fixed-size entry per block so
that a range read finds its blocks by binary search instead of scanning the file.
"""

from __future__ import annotations

import json
import os
import zlib

import numpy as np
import zstandard

from .._codec import block_frame, read_varint, write_varint
from ..errors import DecodeError, FormatError

__all__ = ["FormatError"]   # raised by everything here; defined with the other errors

MAGIC = b"Obj\x01"
SYNC_SIZE = 16
CODEC = "zstandard"

INDEX_DTYPE = np.dtype([
    ("offset", "<u8"),   # file offset of the block (its record-count varint)
    ("length", "<u8"),   # bytes from offset to the end of the block's sync marker
    ("count", "<u8"),    # records in the block
    ("tmin", "<i8"), ("tmax", "<i8"),   # record time range, ns
    ("rmin", "<i8"), ("rmax", "<i8"),   # receive time range, ns
    ("flags", "<u8"),
])
FLAG_IN_ORDER = 1        # the block's record times never decrease
FLAG_SCANNED = 2         # rebuilt by scanning the segment: its receive times are the file's
                         # modification time, an upper bound (retention keeps it longer)
# Far beyond any block SpeedData writes (16 KiB of records by default): an index entry or a
# block header that claims more is damage, not data.
MAX_BLOCK_RECORDS = 1 << 28
MAX_BLOCK_BYTES = 1 << 30       # decompressed; the block_bytes setting stays 4x below it


def encode_long(value: int) -> bytes:
    return write_varint(value)


def decode_long(buf, pos: int) -> tuple[int, int]:
    """The Avro long at ``pos`` and the position after it, by the codec's strict reader
    (overlong and over-wide varints are refused as on the wire)."""
    try:
        return read_varint(buf, pos)
    except DecodeError as e:
        raise FormatError(f"bad varint at byte {pos}: {e}") from None


def header(schema_json: str, sync: bytes, codec: str = CODEC, meta: dict | None = None) -> bytes:
    items = {"avro.schema": schema_json.encode(), "avro.codec": codec.encode()}
    items.update({k: v.encode() for k, v in (meta or {}).items()})
    out = bytearray(MAGIC)
    out += encode_long(len(items))
    for k, v in items.items():
        out += encode_long(len(k.encode())) + k.encode() + encode_long(len(v)) + v
    out += encode_long(0) + sync
    return bytes(out)


def parse_header(buf) -> tuple[dict, str, bytes, int]:
    """(schema dict, codec, sync marker, header length) of a container file's first bytes."""
    try:
        return _parse_header(buf)
    except (UnicodeDecodeError, IndexError, OverflowError) as e:
        raise FormatError(f"damaged container file header: {e}") from e


def _parse_header(buf) -> tuple[dict, str, bytes, int]:
    if bytes(buf[:4]) != MAGIC:
        raise FormatError("not an Avro object container file (bad magic)")
    pos, meta = 4, {}
    while True:
        n, pos = decode_long(buf, pos)
        if n == 0:
            break
        if n < 0:
            _, pos = decode_long(buf, pos)  # block byte size, unused
            n = -n
        if n > len(buf):
            raise FormatError(f"damaged container file header: {n} metadata entries")
        for _ in range(n):
            klen, pos = decode_long(buf, pos)
            if not 0 <= klen <= len(buf) - pos:
                raise FormatError(f"damaged container file header at byte {pos}")
            key = bytes(buf[pos:pos + klen]).decode()
            pos += klen
            vlen, pos = decode_long(buf, pos)
            if not 0 <= vlen <= len(buf) - pos:
                raise FormatError(f"damaged container file header at byte {pos}")
            meta[key] = bytes(buf[pos:pos + vlen])
            pos += vlen
    if pos + SYNC_SIZE > len(buf):
        raise FormatError("header ends early")
    try:
        schema = json.loads(meta["avro.schema"])
    except (KeyError, ValueError) as e:
        raise FormatError("header has no readable avro.schema") from e
    codec = meta.get("avro.codec", b"null").decode()
    return schema, codec, bytes(buf[pos:pos + SYNC_SIZE]), pos + SYNC_SIZE


def read_header(path: str) -> tuple[dict, str, bytes, int]:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        while True:
            try:
                return parse_header(head)
            except FormatError:
                more = f.read(1 << 20) if len(head) < 16 << 20 else b""   # schemas are small
                if not more:
                    raise
                head += more


def block(count: int, payload: bytes, sync: bytes) -> bytes:
    return encode_long(count) + encode_long(len(payload)) + payload + sync


def parse_block(buf, pos: int, sync: bytes) -> tuple[int, memoryview, int]:
    """(record count, compressed payload, end offset) of the block at ``pos``."""
    try:
        count, p, size, end = block_frame(buf, pos, sync)
    except DecodeError as e:
        raise FormatError(f"bad varint at byte {pos}: {e}") from None
    except ValueError as e:
        raise FormatError(str(e)) from None
    if count <= 0 or count > MAX_BLOCK_RECORDS:
        raise FormatError(f"block at byte {pos} is torn or corrupt")
    return count, memoryview(buf)[p:p + size], end


class Decompressor:
    """Decompresses block payloads of one codec."""

    def __init__(self, codec: str):
        if codec not in ("null", "deflate", "zstandard"):
            raise FormatError(f"unsupported Avro codec {codec!r}",
                              hint="SpeedData reads null, deflate and zstandard")
        self.codec = codec
        self._zstd = zstandard.ZstdDecompressor()

    def __call__(self, payload) -> bytes:
        if self.codec == "zstandard":
            # a damaged frame header can claim terabytes, which would fail the whole read
            # with a MemoryError instead of costing this block
            size = zstandard.frame_content_size(payload)
            if size > MAX_BLOCK_BYTES:
                raise FormatError(f"its zstandard frame claims {size} bytes of records, "
                                  f"more than any block holds")
            try:
                return self._zstd.decompress(payload)
            except zstandard.ZstdError:
                # frames written without their content size need the streaming reader
                return self._zstd.decompressobj().decompress(payload)
        if self.codec == "deflate":
            return zlib.decompress(bytes(payload), -15)
        return bytes(payload)


def load_index(path: str) -> np.ndarray:
    """Index entries of a segment (only whole entries: a torn last entry is ignored)."""
    return load_rows(path, INDEX_DTYPE)


def load_rows(path: str, dtype: np.dtype) -> np.ndarray:
    """The whole fixed-size rows of a file beside a segment (index, summaries); a torn last
    row is ignored, a missing file is empty."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return np.empty(0, dtype=dtype)
    n = len(raw) // dtype.itemsize
    return np.frombuffer(raw[: n * dtype.itemsize], dtype=dtype)


def write_index(path: str, entries: np.ndarray) -> None:
    """Replace an index atomically (write aside, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(entries.astype(INDEX_DTYPE).tobytes())
    os.replace(tmp, path)


def check_index(entries: np.ndarray, file_size: int, *, closed: bool) -> str | None:
    """Why the index entries cannot be trusted for a segment of ``file_size`` bytes, or None.

    Blocks follow one another from the header on, each inside the file, each holding a
    plausible record count and time range. A closed segment's index must reach its end
    exactly (a shorter one misses blocks); the segment being written may run ahead of it.
    """
    if not len(entries):
        return None
    offset, length = entries["offset"].astype(np.int64), entries["length"].astype(np.int64)
    count = entries["count"]
    if int(offset[0]) < len(MAGIC) + SYNC_SIZE + 2 or (length < SYNC_SIZE + 2).any():
        return "an entry points into the header or holds a too short block"
    if (offset[1:] != offset[:-1] + length[:-1]).any():
        return "its entries do not follow one another"
    end = int(offset[-1] + length[-1])
    if end > file_size:
        return f"it points to byte {end}, past the end of the file ({file_size} bytes)"
    if closed and end != file_size:
        return f"it ends at byte {end} but the segment at byte {file_size} (blocks missing)"
    if (count == 0).any() or (count > MAX_BLOCK_RECORDS).any():
        return "an entry holds an impossible record count"
    if (entries["tmin"] > entries["tmax"]).any() or (entries["rmin"] > entries["rmax"]).any():
        return "an entry's time range is reversed"
    return None
