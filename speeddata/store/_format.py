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

from ..errors import StoreError

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


class FormatError(StoreError, ValueError):
    """Bytes that are not a well-formed segment or block."""


def encode_long(value: int) -> bytes:
    z = (value << 1) ^ (value >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def decode_long(buf, pos: int) -> tuple[int, int]:
    acc = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise FormatError(f"bad varint at byte {pos}")
        b = buf[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            return (acc >> 1) ^ -(acc & 1), pos
        shift += 7


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
    except (UnicodeDecodeError, IndexError) as e:
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
        for _ in range(n):
            klen, pos = decode_long(buf, pos)
            key = bytes(buf[pos:pos + klen]).decode()
            pos += klen
            vlen, pos = decode_long(buf, pos)
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
                more = f.read(1 << 20)
                if not more:
                    raise
                head += more


def block(count: int, payload: bytes, sync: bytes) -> bytes:
    return encode_long(count) + encode_long(len(payload)) + payload + sync


def parse_block(buf, pos: int, sync: bytes) -> tuple[int, memoryview, int]:
    """(record count, compressed payload, end offset) of the block at ``pos``."""
    count, p = decode_long(buf, pos)
    size, p = decode_long(buf, p)
    end = p + size + SYNC_SIZE
    if count <= 0 or size < 0 or end > len(buf):
        raise FormatError(f"block at byte {pos} is torn or corrupt")
    if bytes(buf[end - SYNC_SIZE:end]) != sync:
        raise FormatError(f"block at byte {pos} does not end in the file's sync marker")
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
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return np.empty(0, dtype=INDEX_DTYPE)
    n = len(raw) // INDEX_DTYPE.itemsize
    return np.frombuffer(raw[: n * INDEX_DTYPE.itemsize], dtype=INDEX_DTYPE)


def write_index(path: str, entries: np.ndarray) -> None:
    """Replace an index atomically (write aside, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(entries.astype(INDEX_DTYPE).tobytes())
    os.replace(tmp, path)
