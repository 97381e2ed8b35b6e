"""One segment: writing blocks with their index entries, and repairing after a crash."""

from __future__ import annotations

import errno
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import zstandard

from ..errors import DecodeError, StoreError, StoreWarning
from . import _format as F


def segment_stem(start_ns: int, seq: int) -> str:
    """File stem that sorts in time order: zero-padded first time, then a sequence number."""
    return f"{max(start_ns, 0):020d}-{seq:06d}"


def parse_stem(stem: str) -> tuple[int, int]:
    t, _, seq = stem.partition("-")
    return int(t), int(seq)


class SegmentWriter:
    """Appends blocks to a new segment file and an entry per block to its index.

    The block is written before its index entry, so an index never points past what the
    segment holds; a crash between the two leaves a short index that repair rebuilds.
    """

    def __init__(self, path: str, schema_json: str, *, level: int = 3, fsync: bool = False):
        self.path = path
        self.idx_path = path[: -len(".avro")] + ".idx"
        self.sync = os.urandom(F.SYNC_SIZE)
        self.fsync = fsync
        # the frame checksum makes damaged blocks fail to decompress instead of reading wrong
        self._zstd = zstandard.ZstdCompressor(level=level, write_checksum=True)
        head = F.header(schema_json, self.sync)
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            self.idx_fd = os.open(self.idx_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                  | os.O_APPEND, 0o644)
        except OSError as e:
            raise _store_error(e, path) from e
        self.size = 0
        self.blocks = 0
        self.first_time: int | None = None
        self._write(self.fd, head, 0)
        self.size = len(head)

    def write(self, body: bytes, info: dict) -> int:
        """Compress and append one block; return the bytes it took on disk."""
        data = F.block(info["count"], self._zstd.compress(body), self.sync)
        self._write(self.fd, data, self.size)
        if self.fsync:
            os.fsync(self.fd)
        entry = np.array([(self.size, len(data), info["count"], info["tmin"], info["tmax"],
                           info["rmin"], info["rmax"],
                           F.FLAG_IN_ORDER if info["in_order"] else 0)], dtype=F.INDEX_DTYPE)
        try:
            self._write(self.idx_fd, entry.tobytes(), self.blocks * F.INDEX_DTYPE.itemsize)
        except StoreError:
            os.ftruncate(self.fd, self.size)  # keep segment and index in step
            raise
        if self.first_time is None:
            self.first_time = info["tmin"]
        self.size += len(data)
        self.blocks += 1
        return len(data) + F.INDEX_DTYPE.itemsize

    def _write(self, fd: int, data: bytes, undo_to: int) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            try:  # a partial write must not leave a torn block behind
                os.ftruncate(fd, undo_to)
            except OSError:
                pass
            raise _store_error(e, self.path) from e

    def close(self) -> None:
        for fd in (self.fd, self.idx_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _store_error(e: OSError, path: str) -> StoreError:
    if e.errno == errno.ENOSPC:
        return StoreError(f"disk full writing {path}", hint="free space or lower retention")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"cannot write {path}: {e.strerror}", hint="the store is read-only")
    return StoreError(f"cannot write {path}: {e.strerror}")


@dataclass
class Repair:
    """What repairing a segment did."""
    path: str
    cut_bytes: int = 0
    skipped: list[tuple[int, int]] = field(default_factory=list)   # (offset, length) of junk
    reindexed: bool = False
    removed: bool = False


def needs_repair(path: str) -> bool:
    """Cheap check: does the index end exactly where the segment does?"""
    idx_path = path[: -len(".avro")] + ".idx"
    try:
        size = os.path.getsize(path)
        idx_size = os.path.getsize(idx_path)
    except FileNotFoundError:
        return True
    if idx_size % F.INDEX_DTYPE.itemsize:
        return True
    entries = F.load_index(idx_path)
    if len(entries) == 0:
        try:
            return F.read_header(path)[3] != size
        except F.FormatError:
            return True
    last = entries[-1]
    return int(last["offset"] + last["length"]) != size


def repair(path: str, plan) -> Repair:
    """Make a segment and its index agree: keep every whole block, cut a torn tail, skip
    corrupt blocks in the middle (with a warning naming file and offset), rebuild the index.

    ``plan`` is the codec plan of the segment's schema, used to check blocks and read times.
    """
    result = Repair(path)
    idx_path = path[: -len(".avro")] + ".idx"
    with open(path, "rb") as f:
        data = f.read()
    try:
        _, codec, sync, pos = F.parse_header(data)
    except F.FormatError:
        # torn before the header was complete: it never held a block
        for p in (path, idx_path):
            if os.path.exists(p):
                os.remove(p)
        result.removed = True
        warnings.warn(f"{path}: removed a segment whose header was torn", StoreWarning,
                      stacklevel=3)
        return result
    decompress = F.Decompressor(codec)
    old = F.load_index(idx_path)
    entries = []
    for e in old:  # entries that still match the file are kept without decompressing
        end = int(e["offset"] + e["length"])
        if int(e["offset"]) != pos or end > len(data) or data[end - F.SYNC_SIZE:end] != sync:
            break
        entries.append(e)
        pos = end
    rescanned = pos < len(data) or len(entries) != len(old)
    while pos < len(data):
        try:
            count, payload, end = F.parse_block(data, pos, sync)
            times = plan.check(decompress(payload))
            if len(times) != count:
                raise F.FormatError(f"block at byte {pos} holds {len(times)} records, "
                                    f"its header says {count}")
        except (F.FormatError, DecodeError, zstandard.ZstdError, ValueError) as err:
            nxt = data.find(sync, pos + 1)
            if nxt < 0 or nxt + F.SYNC_SIZE >= len(data):
                result.cut_bytes = len(data) - pos
                with open(path, "r+b") as f:
                    f.truncate(pos)
                break
            result.skipped.append((pos, nxt + F.SYNC_SIZE - pos))
            warnings.warn(f"{path}: skipping corrupt bytes {pos}..{nxt + F.SYNC_SIZE} ({err})",
                          StoreWarning, stacklevel=3)
            pos = nxt + F.SYNC_SIZE
            continue
        in_order = bool(np.all(times[1:] >= times[:-1]))
        # the receive time of scanned blocks is unknown; the record times stand in
        entries.append(np.array((pos, end - pos, count, times.min(), times.max(), times.min(),
                                 times.max(), F.FLAG_IN_ORDER if in_order else 0),
                                dtype=F.INDEX_DTYPE))
        pos = end
    if rescanned or not os.path.exists(idx_path):
        F.write_index(idx_path, np.array(entries, dtype=F.INDEX_DTYPE))
        result.reindexed = True
    return result
