"""The segments of one channel as its reads see them: listed again only when the
directory or HEAD changed, and those that may hold a time range found by binary search."""

from __future__ import annotations

import os

import numpy as np

from ..codec import Plan
from ._segment import HEAD_FILE, read_head
from ._view import SegmentView


class SegmentList:
    """A channel directory's segments, oldest first, each a `SegmentView`."""

    def __init__(self, path: str, plan: Plan):
        self.path = path
        self._plan = plan
        self._views: list[SegmentView] = []
        self._tmin = self._tmax = np.empty(0, np.int64)
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None
        self._dir_mtime: int | None = None
        self._head_seen: tuple[tuple[int, int, int], str | None] | None = None

    def refresh(self) -> list[SegmentView]:
        """The segments, re-listing the directory only when it changed.

        The writer names its newest segment in HEAD as it rolls over: a new segment shows
        there at once, where the directory's mtime (coarse-grained) might not. A segment
        that retention deleted since the last listing is simply skipped by a read."""
        st = os.stat(self.path)
        head = self._head()
        newest = self._views[-1].stem if self._views else None
        if st.st_mtime_ns != self._dir_mtime or (head is not None and head != newest):
            stems = sorted(n[:-5] for n in os.listdir(self.path) if n.endswith(".avro"))
            known = {s.stem: s for s in self._views}
            views = []
            for i, stem in enumerate(stems):
                closed = i < len(stems) - 1
                view = known.get(stem)
                if view is None:
                    view = SegmentView(self.path, stem, self._plan, closed=closed)
                else:
                    view.refresh(closed)
                views.append(view)
            kept = {id(v) for v in views}
            for gone in self._views:
                if id(gone) not in kept:
                    gone.release()
            self._views = views
            self._dir_mtime = st.st_mtime_ns
            self._tmin = np.array([s.tmin for s in views], dtype=np.int64)
            self._tmax = np.array([s.tmax for s in views], dtype=np.int64)
            self._bounds = None
        if self._views and self._views[-1].refresh(False):  # only the newest grows
            self._tmin[-1] = self._views[-1].tmin
            self._tmax[-1] = self._views[-1].tmax
            self._bounds = None
        if self._bounds is None:
            # running max of tmax and suffix min of tmin are monotonic even when segments
            # overlap in time, so binary search finds every candidate segment
            self._bounds = (np.maximum.accumulate(self._tmax),
                            np.minimum.accumulate(self._tmin[::-1])[::-1])
        return self._views

    def _head(self) -> str | None:
        """The newest segment's stem, as HEAD names it; read again only when HEAD was
        replaced (the writer replaces it whole as it rolls over)."""
        path = os.path.join(self.path, HEAD_FILE)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._head_seen is None or self._head_seen[0] != key:
            self._head_seen = key, read_head(path)
        return self._head_seen[1]

    def within(self, lo: int, last: int) -> list[SegmentView]:
        """Segments that may hold records with lo <= time <= last."""
        segs = self.refresh()
        if not segs:
            return []
        assert self._bounds is not None      # refresh computes them
        runmax, sufmin = self._bounds
        a = int(np.searchsorted(runmax, lo, "left"))
        b = int(np.searchsorted(sufmin, last, "right"))
        return [seg for seg in segs[a:b] if seg.tmax >= lo and seg.tmin <= last]

    def select(self, lo: int, last: int) -> list[tuple[SegmentView, np.ndarray]]:
        """Blocks that may hold records with lo <= time <= last, per segment."""
        out = []
        for seg in self.within(lo, last):
            blocks = seg.blocks(lo, last)
            if len(blocks):
                out.append((seg, blocks))
        return out

    def release(self) -> None:
        """Give up the segments' mappings (a later read maps them again)."""
        for view in self._views:
            view.release()

    def forget(self) -> None:
        """List the directory afresh at the next read (after a repair changed it)."""
        self._views = []
        self._dir_mtime = None
        self._bounds = None
