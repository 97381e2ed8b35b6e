"""The read side of one segment: its index, checked against the file, with the arrays that
range search needs."""

from __future__ import annotations

import mmap
import os
import threading
import warnings
from collections import OrderedDict

import numpy as np

from ..errors import FormatError, StoreWarning
from . import _format as on_disk
from ._overview import GROUPS, group_summaries
from ._segment import idx_path_of, mtime_ns, scan_index

I64_MAX = np.iinfo(np.int64).max
I64_MIN = np.iinfo(np.int64).min


class SegmentView:
    """Cached view of one segment's index.

    An index that does not agree with its segment (random bytes, a count of 2^40, entries
    missing from a closed segment) is not trusted: the segment is scanned instead, in
    memory, with a warning naming the file. Nothing here writes.
    """

    __slots__ = ("stem", "path", "idx_path", "plan", "index", "runmax", "sufmin", "idx_bytes",
                 "closed", "file_bytes", "_head", "_sums", "_aligned", "_groups", "_mem")

    def __init__(self, directory: str, stem: str, plan, *, closed: bool):
        self.stem = stem
        self.path = os.path.join(directory, stem + ".avro")
        self.idx_path = idx_path_of(self.path)
        self.plan = plan
        self.idx_bytes = -1
        self.file_bytes = -1
        self.closed = closed
        self._head: tuple[str, bytes] | None = None
        self._sums: tuple[int, np.ndarray] | None = None
        self._aligned: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None
        self._groups: tuple[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray]]] | None \
            = None
        self.load()

    def load(self) -> None:
        self._mem: memoryview | None = None    # mapped again at the size now indexed
        self.idx_bytes = _size(self.idx_path)
        self.file_bytes = _size(self.path)
        index = on_disk.load_index(self.idx_path)
        if self.file_bytes < 0:      # deleted by retention meanwhile
            index = index[:0]
        why = on_disk.check_index(index, self.file_bytes, closed=self.closed)
        if why is None and self.closed and not len(index) and self.file_bytes > 0:
            try:
                if on_disk.read_header(self.path)[3] != self.file_bytes:
                    why = "it is empty but the segment holds blocks"
            except (FormatError, OSError) as e:
                why = f"the segment's header is unreadable: {e}"
        if why is not None:
            index = self._scan(why)
        self.index = index
        self._aligned = self._groups = None
        # Out-of-order data makes block time ranges overlap; the running max of tmax and the
        # suffix min of tmin are monotonic, so binary search still finds every candidate.
        self.runmax = np.maximum.accumulate(index["tmax"]) if len(index) else \
            np.empty(0, np.int64)
        self.sufmin = np.minimum.accumulate(index["tmin"][::-1])[::-1] \
            if len(index) else np.empty(0, np.int64)

    def _scan(self, why: str) -> np.ndarray:
        try:
            index, damage = scan_index(self.path, self.plan)
        except (FormatError, OSError) as e:
            warnings.warn(f"{self.path}: unreadable, its records are skipped ({why}; {e})",
                          StoreWarning, stacklevel=5)
            return np.empty(0, dtype=on_disk.INDEX_DTYPE)
        lost = "".join(f"; bytes {d.offset}..{d.end if d.end is not None else 'end'} "
                       f"unreadable ({d.reason})" for d in damage)
        warnings.warn(f"{self.idx_path}: index not trusted ({why}); read by scanning the "
                      f"segment{lost}", StoreWarning, stacklevel=5)
        return index

    def refresh(self, closed: bool) -> bool:
        """Reload when the index grew or the segment was closed; True when it did. A
        segment already closed never changes: no system call for it."""
        if self.closed and closed:
            return False
        if closed != self.closed or _size(self.idx_path) != self.idx_bytes:
            self.closed = closed
            self.load()
            return True
        return False

    def disk_bytes(self) -> int:
        """Bytes of the segment, its index and summaries (0 once retention deleted them)."""
        return max(0, _size(self.path)) + max(0, _size(self.idx_path)) + \
            max(0, _size(self.sum_path))

    @property
    def sum_path(self) -> str:
        return self.path[: -len(".avro")] + ".sum"

    def summaries(self, dtype: np.dtype) -> np.ndarray:
        """Summary rows (see `_overview`), as far as the file holds them; reloaded when it
        grew."""
        size = _size(self.sum_path)
        if self._sums is None or self._sums[0] != size:
            self._sums = (size, on_disk.load_rows(self.sum_path, dtype))
        return self._sums[1]

    def aligned_summaries(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Summary rows in index order (row i is block i's; zeros where a block has none)
        and whether each block has one."""
        sums = self.summaries(dtype)
        key = (len(self.index), len(sums))
        if self._aligned is None or self._aligned[0] != key:
            offsets = self.index["offset"]
            if len(dtype.names or ()) == 1:       # nothing numeric: nothing to summarise
                rows, has = np.zeros(len(offsets), dtype), np.ones(len(offsets), bool)
            elif len(sums) == len(offsets) and np.array_equal(sums["offset"], offsets):
                rows, has = sums, np.ones(len(offsets), bool)     # as the writer leaves them
            elif len(sums):
                at = np.minimum(np.searchsorted(sums["offset"], offsets), len(sums) - 1)
                has = sums["offset"][at] == offsets
                rows = np.where(has, sums[at], np.zeros(1, dtype))
            else:
                rows, has = np.zeros(len(offsets), dtype), np.zeros(len(offsets), bool)
            self._aligned = key, rows, has
        return self._aligned[1], self._aligned[2]

    def groups(self, dtype: np.dtype) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Summaries of aligned runs of blocks, one level per size in `GROUPS` (so a long
        overview merges a row per run, not per block): ``(size, info, rows)``, info holding
        each run's tmin, tmax, count and whether every block in it has a summary. Made
        again when the index or the summaries grew."""
        rows, has = self.aligned_summaries(dtype)
        assert self._aligned is not None
        if self._groups is None or self._groups[0] != self._aligned[0]:
            parts, levels, finer = self.index, [], 1
            for size in GROUPS:
                info, merged = group_summaries(parts, rows, has, size // finer, dtype)
                levels.append((size, info, merged))
                parts, rows, has, finer = info, merged, info["complete"], size
            self._groups = self._aligned[0], levels
        return self._groups[1]

    def mapped(self) -> memoryview:
        """The segment file, memory-mapped. The mappings of the `MAX_MAPPED` closed
        segments read last are kept, so their page tables serve later reads (a fresh mapping
        faults on every page it touches); each holds a file descriptor, hence the bound.
        Raises OSError, or ValueError for an empty file."""
        if self._mem is not None and (self.closed or
                                      os.stat(self.path).st_size == len(self._mem)):
            _keep_mapped(self)          # (a stat: cheaper than opening the file to look)
            return self._mem
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if self._mem is None or len(self._mem) != size:
                self._mem = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        mem = self._mem
        _keep_mapped(self)
        return mem

    def release(self) -> None:
        """Drop the mapping (the segment left the listing: deleted by retention); the
        file's space comes back once no read holds it."""
        with _MAPPED_LOCK:
            _MAPPED.pop(id(self), None)
        self._mem = None

    def head(self) -> tuple[str, bytes]:
        """(codec, sync marker) from the segment's header, read once: headers never change."""
        if self._head is None:
            _, codec, sync, _ = on_disk.read_header(self.path)
            self._head = codec, sync
        return self._head

    @property
    def records(self) -> int:
        return int(self.index["count"].sum())

    @property
    def tmin(self) -> int:
        return int(self.sufmin[0]) if len(self.index) else I64_MAX

    @property
    def tmax(self) -> int:
        return int(self.runmax[-1]) if len(self.index) else I64_MIN

    @property
    def received(self) -> tuple[int, int]:
        """(first, last) receive time of its records: what retention judges age by. An
        empty segment counts as received when its file last changed."""
        if len(self.index):
            return int(self.index["rmin"].min()), int(self.index["rmax"].max())
        t = mtime_ns(self.path)
        return t, t

    def span(self, lo: int, last: int) -> tuple[int, int]:
        """The index positions [a, b) of the blocks that may hold records with
        lo <= time <= last (some in between may not)."""
        return (int(np.searchsorted(self.runmax, lo, "left")),
                int(np.searchsorted(self.sufmin, last, "right")))

    def blocks(self, lo: int, last: int) -> np.ndarray:
        """Index entries of blocks that may hold records with lo <= time <= last."""
        a, b = self.span(lo, last)
        cand = self.index[a:b]
        return cand[(cand["tmax"] >= lo) & (cand["tmin"] <= last)]


MAX_MAPPED = 64            # segment mappings kept between reads, process-wide
_MAPPED: OrderedDict[int, SegmentView] = OrderedDict()
_MAPPED_LOCK = threading.Lock()


def _keep_mapped(view: SegmentView) -> None:
    """Note that ``view`` was read; drop the mappings of the segments read longest ago."""
    with _MAPPED_LOCK:
        _MAPPED[id(view)] = view
        _MAPPED.move_to_end(id(view))
        while len(_MAPPED) > MAX_MAPPED:
            _, old = _MAPPED.popitem(last=False)
            old._mem = None          # a read still using it keeps its own reference


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return -1
