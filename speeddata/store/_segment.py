"""One segment file: writing blocks with their index entries, walking its blocks, and
repairing it after a crash or damage."""

from __future__ import annotations

import errno
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import zstandard

from ..errors import DecodeError, FormatError, StoreError, StoreWarning
from . import _format as on_disk

DAMAGED_SUFFIX = ".damaged"
HEAD_FILE = "HEAD"            # beside a channel's segments: the newest one's stem
log = logging.getLogger("speeddata.store")


def segment_stem(recv_ns: int, seq: int) -> str:
    """File stem that sorts in write order: the zero-padded receive time of the segment's
    first block (never a device's clock), then a sequence number."""
    return f"{max(recv_ns, 0):020d}-{seq:06d}"


def parse_stem(stem: str) -> tuple[int, int]:
    t, _, seq = stem.partition("-")
    return int(t), int(seq)


def read_head(path: str) -> str | None:
    """The stem a channel's HEAD file names (its newest segment, written whole by the writer
    as it rolls over), or None when it is missing or not a stem (damage)."""
    try:
        with open(path, "rb") as f:
            text = f.read(64).decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    return text if len(text) == 27 and text[20] == "-" and \
        text.replace("-", "").isdigit() else None


def idx_path_of(path: str) -> str:
    return path[: -len(".avro")] + ".idx"


SUMMARY_BATCH = 64     # summary rows written together


def compressor(level: int) -> zstandard.ZstdCompressor:
    """How blocks are compressed. The frame checksum makes a damaged block fail to
    decompress instead of reading wrong."""
    return zstandard.ZstdCompressor(level=level, write_checksum=True)


class SegmentWriter:
    """Appends blocks to a new segment file and an entry per block to its index.

    The block is written before its index entry, so an index never points past what the
    segment holds; a crash between the two leaves a short index that repair rebuilds.
    """

    def __init__(self, path: str, schema_json: str, *, fsync: bool = False):
        self.path = path
        self.idx_path = idx_path_of(path)
        self.sync = os.urandom(on_disk.SYNC_SIZE)
        self.fsync = fsync
        head = on_disk.header(schema_json, self.sync)
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            self.idx_fd = os.open(self.idx_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                  | os.O_APPEND, 0o644)
            self.sum_fd = os.open(path[: -len(".avro")] + ".sum", os.O_WRONLY | os.O_CREAT
                                  | os.O_APPEND, 0o644)
        except OSError as e:
            raise store_error(e, path) from e
        self.size = 0
        self.blocks = 0
        self.first_recv: int | None = None     # receive time of the first block (roll by span)
        self._sums = bytearray()               # summary rows not yet written
        self._pending = 0
        self._write(self.fd, head, 0)
        self.size = len(head)

    def frame(self, payload: bytes, info: Mapping[str, Any]) -> bytes:
        """A block as the segment holds it: its records compressed by `compressor`, framed."""
        return on_disk.block(info["count"], payload, self.sync)

    def write(self, frames: Sequence[bytes], infos: Sequence[Mapping[str, Any]]) -> int:
        """Append blocks (as `frame` makes them), their index entries, and their summary
        rows (``info["summary"]``: bytes of `_overview.summary_dtype`, or None; the offset
        is set here): one write for the blocks, one for their entries. Returns the bytes
        they took on disk. A failed write leaves none of them behind."""
        offsets = np.cumsum([self.size] + [len(f) for f in frames[:-1]])
        entries = np.array([(at, len(f), i["count"], i["tmin"], i["tmax"], i["rmin"],
                             i["rmax"], on_disk.FLAG_IN_ORDER if i["in_order"] else 0)
                            for at, f, i in zip(offsets.tolist(), frames, infos)],
                           dtype=on_disk.INDEX_DTYPE)
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self._write(self.fd, data, self.size)
        if self.fsync:
            os.fsync(self.fd)
        try:
            self._write(self.idx_fd, entries.tobytes(), self.blocks * on_disk.INDEX_DTYPE.itemsize)
        except StoreError:
            os.ftruncate(self.fd, self.size)  # keep segment and index in step
            raise
        if self.first_recv is None:
            self.first_recv = infos[0]["rmin"]
        written = len(data) + len(entries) * on_disk.INDEX_DTYPE.itemsize
        for at, info in zip(offsets.tolist(), infos):
            summary = info.get("summary")
            if summary is not None:
                # matched to its block by offset, so a row lost (to a crash before the
                # batch is written, or a full disk) costs only a decode of that block
                # when an overview needs it
                self._sums += at.to_bytes(8, "little") + summary[8:]
                self._pending += 1
                written += len(summary)
        if self._pending >= SUMMARY_BATCH:
            self.write_summaries()
        self.size += len(data)
        self.blocks += len(frames)
        return written

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
            raise store_error(e, self.path) from e

    def write_summaries(self) -> None:
        """Append the summary rows held back (a write per batch, not per block)."""
        if self._sums:
            try:
                os.write(self.sum_fd, self._sums)
            except OSError:
                pass
            self._sums.clear()
            self._pending = 0

    def close(self) -> None:
        self.write_summaries()
        for fd in (self.fd, self.idx_fd, self.sum_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def store_error(e: OSError, path: str) -> StoreError:
    if e.errno == errno.ENOSPC:
        return StoreError(f"disk full writing {path}", hint="free space or lower retention",
                          reason="disk_full")
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"cannot write {path}: {e.strerror}", hint="the store is read-only",
                          reason="read_only")
    return StoreError(f"cannot write {path}: {e.strerror}")


# ---- walking a segment's blocks ---------------------------------------------------------

class Block(NamedTuple):
    """A whole block found by `walk`: where it lies, its records' times."""
    offset: int
    end: int
    records: int
    times: np.ndarray


class Damage(NamedTuple):
    """Bytes `walk` could not read as blocks: junk up to the next sync marker (``end``), or,
    with ``end`` None, a torn or unreadable tail."""
    offset: int
    end: int | None
    reason: str


def walk(data, pos: int, sync: bytes, codec: str, plan) -> Iterator[Block | Damage]:
    """The one block walker: every block of ``data`` from ``pos`` on, checked by
    decompressing and parsing its records with ``plan``; damage is skipped to the next sync
    marker and reported."""
    decompress = on_disk.Decompressor(codec)
    while pos < len(data):
        try:
            count, payload, end = on_disk.parse_block(data, pos, sync)
            times = plan.check(decompress(payload))
            if len(times) != count:
                raise FormatError(f"block at byte {pos} holds {len(times)} records, "
                                  f"its header says {count}")
        except (FormatError, DecodeError, zstandard.ZstdError, ValueError) as err:
            nxt = data.find(sync, pos + 1)
            if nxt < 0 or nxt + on_disk.SYNC_SIZE >= len(data):
                yield Damage(pos, None, str(err))
                return
            yield Damage(pos, nxt + on_disk.SYNC_SIZE, str(err))
            pos = nxt + on_disk.SYNC_SIZE
            continue
        yield Block(pos, end, count, times)
        pos = end


def scanned_entries(blocks: list[Block], recv_ns: int) -> np.ndarray:
    """Index entries for blocks found by scanning. Their receive time is unknown; the
    segment file's modification time, which is no earlier, stands in."""
    out = np.zeros(len(blocks), dtype=on_disk.INDEX_DTYPE)
    for i, b in enumerate(blocks):
        t = b.times
        in_order = bool(np.all(t[1:] >= t[:-1]))
        out[i] = (b.offset, b.end - b.offset, b.records, t.min(), t.max(), recv_ns, recv_ns,
                  on_disk.FLAG_SCANNED | (on_disk.FLAG_IN_ORDER if in_order else 0))
    return out


def mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def scan_index(path: str, plan) -> tuple[np.ndarray, list[Damage]]:
    """Index entries rebuilt by reading the whole segment (for a reader that finds the index
    untrustworthy), and the damage met on the way."""
    with open(path, "rb") as f:
        data = f.read()
    _, codec, sync, pos = on_disk.parse_header(data)
    found = list(walk(data, pos, sync, codec, plan))
    return (scanned_entries([b for b in found if isinstance(b, Block)], mtime_ns(path)),
            [d for d in found if isinstance(d, Damage)])


# ---- repair -----------------------------------------------------------------------------

@dataclass
class Repair:
    """What repairing a segment did."""
    path: str
    cut_bytes: int = 0
    skipped: list[tuple[int, int]] = field(default_factory=list)   # (offset, length) of junk
    reindexed: bool = False
    removed: bool = False
    header_rebuilt: bool = False
    set_aside: str | None = None


def needs_repair(path: str) -> bool:
    """Cheap check: does the index end exactly where the segment does? (Reads the index's
    last entry only.)"""
    idx_path = idx_path_of(path)
    try:
        size = os.path.getsize(path)
        idx_size = os.path.getsize(idx_path)
    except FileNotFoundError:
        return True
    if idx_size % on_disk.INDEX_DTYPE.itemsize:
        return True
    if idx_size == 0:
        try:
            return on_disk.read_header(path)[3] != size
        except (FormatError, OSError):
            return True
    with open(idx_path, "rb") as f:
        f.seek(idx_size - on_disk.INDEX_DTYPE.itemsize)
        last = np.frombuffer(f.read(on_disk.INDEX_DTYPE.itemsize), dtype=on_disk.INDEX_DTYPE)[0]
    return int(last["offset"]) + int(last["length"]) != size


def index_sound(path: str) -> bool:
    """The index agrees with the segment, and the header reads and ends where the first
    block starts, with that block's sync marker (two small reads, not the whole file)."""
    try:
        index = on_disk.load_index(path[:-5] + ".idx")
        if on_disk.check_index(index, os.path.getsize(path), closed=True) is not None:
            return False
        if not len(index):
            return True
        first, end = int(index[0]["offset"]), int(index[0]["offset"] + index[0]["length"])
        with open(path, "rb") as f:
            head = f.read(first)
            f.seek(end - on_disk.SYNC_SIZE)
            block_sync = f.read(on_disk.SYNC_SIZE)
        _, _, sync, length = on_disk.parse_header(head)
        return length == first and sync == block_sync
    except (OSError, FormatError):
        return False


def repair_channel(path: str, plan, schema_json: str) -> list[Repair]:
    """Repair the segments of the channel directory ``path`` that a killed writer left torn
    or damage left unreadable: a cheap check of each index against its segment finds them.
    The caller holds the channel's writer lock."""
    stems = sorted(n[:-5] for n in os.listdir(path) if n.endswith(".avro"))
    return [repair(seg, plan, schema_json) for seg in
            (os.path.join(path, stem + ".avro") for stem in stems)
            if needs_repair(seg) or not index_sound(seg)]


def salvage_header(data: bytes, schema_json: str,
                   old_index: np.ndarray) -> tuple[bytes, bytes] | None:
    """A new header for a segment whose header is damaged: the channel's schema, and the
    sync marker found at the end of its first block. Returns (header, sync) of exactly the
    old header's length, so every block keeps its offset; None when no block is found."""
    # as SegmentWriter wrote it
    length = len(on_disk.header(schema_json, bytes(on_disk.SYNC_SIZE)))
    starts = [length]
    if len(old_index):
        starts.insert(0, int(old_index[0]["offset"]))
    for start in starts:
        if not len(on_disk.MAGIC) < start < len(data):
            continue
        candidates = [data[start - on_disk.SYNC_SIZE:start]]
        try:     # the first block's own end holds the marker, even when the header's is hit
            count, p = on_disk.decode_long(data, start)
            size, p = on_disk.decode_long(data, p)
            end = p + size + on_disk.SYNC_SIZE
            if 0 < size and end <= len(data):
                candidates.append(data[end - on_disk.SYNC_SIZE:end])
        except FormatError:
            pass
        for sync in candidates:
            try:
                on_disk.parse_block(data, start, sync)
            except FormatError:
                continue
            head = _header_of_length(schema_json, sync, start)
            if head is not None:
                return head, sync
    return None


def _header_of_length(schema_json: str, sync: bytes, length: int) -> bytes | None:
    """A container header of exactly ``length`` bytes, padded with a metadata entry."""
    head = on_disk.header(schema_json, sync)
    if len(head) == length:
        return head
    for pad in range(0, max(0, length - len(head)) + 1):
        head = on_disk.header(schema_json, sync, meta={"speeddata.pad": " " * pad})
        if len(head) == length:
            return head
    return None


def repair(path: str, plan, schema_json: str) -> Repair:
    """Make a segment and its index agree: keep every whole block, cut a torn tail, skip
    corrupt blocks in the middle, rebuild a damaged header from the channel's schema,
    rebuild the index. Each loss comes with a warning naming the file and offset.

    ``plan`` is the codec plan of the segment's schema, used to check blocks and read times.
    """
    result = Repair(path)
    idx_path = idx_path_of(path)
    with open(path, "rb") as f:
        data = f.read()
    old = on_disk.load_index(idx_path)
    try:
        _, codec, sync, pos = on_disk.parse_header(data)
    except FormatError as err:
        salvaged = salvage_header(data, schema_json, old)
        if salvaged is None:
            return _header_lost(result, data, err, len(on_disk.header(schema_json, sync=b"0" * 16)))
        head, sync = salvaged
        with open(path, "r+b") as f:
            f.write(head)
        data = head + data[len(head):]
        codec, pos = on_disk.CODEC, len(head)
        result.header_rebuilt = True
        _warn(f"{path}: rebuilt its damaged header from the channel's schema ({err})")
    # bytes the index vouched for: losing any of them is damage, not a write cut short
    indexed_end = int((old["offset"] + old["length"]).max()) if len(old) else 0
    if on_disk.check_index(old, len(data), closed=False) is not None or \
            (len(old) and int(old[0]["offset"]) != pos):
        old = old[:0]
    entries = []
    for e in old:  # entries that still match the file are kept without decompressing
        end = int(e["offset"] + e["length"])
        if int(e["offset"]) != pos or end > len(data) or data[end - on_disk.SYNC_SIZE:end] != sync:
            break
        entries.append(e)
        pos = end
    rescanned = pos < len(data) or len(entries) != len(old)
    found = _rescan(result, data, pos, sync, codec, plan, indexed_end)
    if rescanned or not os.path.exists(idx_path):
        new = scanned_entries(found, mtime_ns(path))
        on_disk.write_index(idx_path, np.concatenate(
            [np.array(entries, dtype=on_disk.INDEX_DTYPE), new]))
        result.reindexed = True
    return result


def _rescan(result: Repair, data: bytes, pos: int, sync: bytes, codec: str, plan,
            indexed_end: int) -> list[Block]:
    """The whole blocks from ``pos`` on; junk between them is skipped and a torn tail cut,
    each named (a warning where the index vouched for the bytes, a log line for the tail
    of a write that a crash cut short)."""
    path = result.path
    found: list[Block] = []
    for item in walk(data, pos, sync, codec, plan):
        if isinstance(item, Block):
            found.append(item)
        elif item.end is None:
            result.cut_bytes = len(data) - item.offset
            with open(path, "r+b") as f:
                f.truncate(item.offset)
            message = (f"{path}: cut {len(data) - item.offset} unreadable bytes at its end, "
                       f"from byte {item.offset} ({item.reason})")
            if item.offset < indexed_end:
                _warn(message)
            else:
                log.warning(message)
        else:
            result.skipped.append((item.offset, item.end - item.offset))
            _warn(f"{path}: skipping corrupt bytes {item.offset}..{item.end} ({item.reason})")
    return found


def _header_lost(result: Repair, data: bytes, err: Exception, header_bytes: int) -> Repair:
    path = result.path
    if len(data) <= header_bytes:
        # torn before the first block: it never held a record
        for p in (path, idx_path_of(path)):
            if os.path.exists(p):
                os.remove(p)
        result.removed = True
        _warn(f"{path}: removed a segment whose header was torn before any block")
        return result
    # no block found behind it: kept aside, for a person to look at, never deleted
    aside = path + DAMAGED_SUFFIX
    os.replace(path, aside)
    if os.path.exists(idx_path_of(path)):
        os.replace(idx_path_of(path), idx_path_of(path) + DAMAGED_SUFFIX)
    result.set_aside = aside
    _warn(f"{path}: its header is damaged ({err}) and no block could be found; moved to "
          f"{aside}")
    return result


def _warn(message: str) -> None:
    warnings.warn(message, StoreWarning, stacklevel=4)
