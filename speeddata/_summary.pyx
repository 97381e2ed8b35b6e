"""Per-bucket statistics for overviews and block summaries, in one pass without numpy
temporaries: count, sum, min, max, first and last of a signal, with the times of the min,
max, first and last.

Records and summary rows merge by the same rules, so any order of merging gives the same
answer: the min (max) takes the earliest time among equal values, ``first`` the smallest
value among the records at the earliest time, ``last`` the largest among those at the latest.
"""

from libc.math cimport isnan
from libc.stdint cimport int64_t, uint8_t

from ._summary cimport SUMMARY_FIELDS, V_FLOAT64, Summary, merge, summarise_values, unpack

import numpy as np

cdef int64_t I64_MAX = 0x7fffffffffffffff
cdef int64_t I64_MIN = -I64_MAX - 1


def block_stats(const double[::1] x, const int64_t[::1] t, const uint8_t[::1] null):
    """(n, sum, min, max, first, last, tmin, tmax, tfirst, tlast) of one block's values of
    a signal, NaN and those with ``null`` 1 left out (``null`` may be None): what the block
    stage writes as it fills, for a block decoded instead."""
    cdef char out[8 * SUMMARY_FIELDS]
    if t.shape[0] != x.shape[0] or (null is not None and null.shape[0] != x.shape[0]):
        raise ValueError(f"{x.shape[0]} values, {t.shape[0]} times")
    cdef Py_ssize_t i
    cdef bint in_order = True
    with nogil:
        for i in range(1, t.shape[0]):
            if t[i] < t[i - 1]:
                in_order = False
                break
        # as the block stage does, so that a summary rebuilt from the block is the same
        summarise_values(<const char*>&x[0] if x.shape[0] else NULL, V_FLOAT64,
                         &null[0] if null is not None and null.shape[0] else NULL,
                         &t[0] if t.shape[0] else NULL, x.shape[0], in_order, out)
    cdef Summary s = unpack(out)
    return s.n, s.total, s.mn, s.mx, s.first, s.last, s.tmn, s.tmx, s.tfirst, s.tlast


cdef inline Py_ssize_t find(const int64_t[::1] edges, Py_ssize_t b, int64_t t) noexcept nogil:
    """The bucket b with edges[b] <= t < edges[b + 1], starting from a guess (the last
    record's: in time order it is right, or the next). t lies within the edges."""
    cdef Py_ssize_t lo = 0, hi = edges.shape[0] - 1, mid
    if edges[b] <= t < edges[b + 1]:
        return b
    if b + 2 < edges.shape[0] and edges[b + 1] <= t < edges[b + 2]:
        return b + 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if edges[mid] <= t:
            lo = mid
        else:
            hi = mid
    return lo


def count_records(int64_t[::1] counts, const int64_t[::1] t, const int64_t[::1] edges):
    """Add to ``counts[b]`` the records whose time lies in [edges[b], edges[b + 1])."""
    cdef Py_ssize_t i, b = 0, nb = edges.shape[0] - 1
    if counts.shape[0] != nb:
        raise ValueError(f"{nb + 1} edges for {counts.shape[0]} buckets")
    with nogil:
        for i in range(t.shape[0]):
            if edges[0] <= t[i] < edges[nb]:
                b = find(edges, b, t[i])
                counts[b] += 1


cdef class Stats:
    """Statistics of one signal in ``buckets`` buckets, as numpy arrays (``n``, ``sum``,
    ``min``, ``max``, ``first``, ``last``, ``tmin``, ``tmax``, ``tfirst``, ``tlast``). An
    empty bucket holds n = 0, min = +inf, max = -inf and times at the int64 limits."""

    cdef readonly object n, sum, min, max, first, last, tmin, tmax, tfirst, tlast
    cdef readonly Py_ssize_t buckets
    cdef int64_t[::1] _n, _tmin, _tmax, _tfirst, _tlast
    cdef double[::1] _sum, _min, _max, _first, _last

    def __init__(self, Py_ssize_t buckets):
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, not {buckets}")
        self.buckets = buckets
        self.n = np.zeros(buckets, np.int64)
        self.sum = np.zeros(buckets)
        self.min = np.full(buckets, np.inf)
        self.max = np.full(buckets, -np.inf)
        self.first = np.full(buckets, np.inf)
        self.last = np.full(buckets, -np.inf)
        self.tmin = np.full(buckets, I64_MAX, np.int64)
        self.tmax = np.full(buckets, I64_MAX, np.int64)
        self.tfirst = np.full(buckets, I64_MAX, np.int64)
        self.tlast = np.full(buckets, I64_MIN, np.int64)
        self._n, self._sum, self._min, self._max = self.n, self.sum, self.min, self.max
        self._first, self._last, self._tmin = self.first, self.last, self.tmin
        self._tmax, self._tfirst, self._tlast = self.tmax, self.tfirst, self.tlast

    cdef inline void merge(self, Py_ssize_t b, int64_t n, double total, double mn, int64_t tmn,
                           double mx, int64_t tmx, double f, int64_t tf, double l,
                           int64_t tl) noexcept nogil:
        merge(&self._n[b], &self._sum[b], &self._min[b], &self._tmin[b], &self._max[b],
              &self._tmax[b], &self._first[b], &self._tfirst[b], &self._last[b],
              &self._tlast[b], n, total, mn, tmn, mx, tmx, f, tf, l, tl)

    cdef inline void merge_summary(self, Py_ssize_t b, const char* out) noexcept nogil:
        """Merge one signal's summary fields (as `summarise_values` writes them, or a
        summary row holds them) into bucket b."""
        cdef Summary s = unpack(out)
        if s.n > 0:
            self.merge(b, s.n, s.total, s.mn, s.tmn, s.mx, s.tmx, s.first, s.tfirst, s.last,
                       s.tlast)

    def add_records(self, const double[::1] x, const int64_t[::1] t,
                    const uint8_t[::1] null, const int64_t[::1] edges):
        """Merge records into the buckets [edges[i], edges[i+1]); records outside
        [edges[0], edges[-1]), NaN, or with ``null`` 1 are left out (``null`` may be None).
        Records may come in any order: each stretch in time order inside one bucket is
        summarised in one pass and merged once."""
        cdef Py_ssize_t i = 0, j, b = 0, nb = edges.shape[0] - 1
        cdef Py_ssize_t n = x.shape[0]
        cdef int64_t ti, top
        cdef char out[8 * SUMMARY_FIELDS]
        if t.shape[0] != n or (null is not None and null.shape[0] != n):
            raise ValueError(f"{n} values, {t.shape[0]} times, "
                             f"{n if null is None else null.shape[0]} flags")
        if nb != self.buckets:
            raise ValueError(f"{nb + 1} edges for {self.buckets} buckets")
        with nogil:
            while i < n:
                ti = t[i]
                if ti < edges[0] or ti >= edges[nb]:
                    i += 1
                    continue
                b = find(edges, b, ti)
                top = edges[b + 1]
                j = i + 1
                while j < n and t[j] >= t[j - 1] and t[j] < top:
                    j += 1
                summarise_values(<const char*>&x[i], V_FLOAT64,
                                 &null[i] if null is not None else NULL, &t[i], j - i, True,
                                 out)
                self.merge_summary(b, out)
                i = j

    def add_rows(self, rows, int k, const int64_t[:] bucket, const int64_t[:] at=None):
        """Merge summary rows (signal ``k``'s fields of a summary array) into buckets: row
        ``at[i]`` (row i when ``at`` is None) into bucket ``bucket[i]``."""
        merge_rows([self], [k], rows, bucket, at)


_CHUNK = 64     # rows merged signal by signal while they are in cache


def merge_rows(list stats, signals, rows, const int64_t[:] bucket, const int64_t[:] at=None):
    """Merge summary rows into buckets, for several signals at once: signal
    ``signals[s]``'s fields of row ``at[i]`` (row i when ``at`` is None) into bucket
    ``bucket[i]`` of ``stats[s]``. The rows are read in place at their fields' offsets, a
    few dozen at a time for every signal while they are in cache (an overview merges tens
    of thousands of rows of a few hundred bytes, picked from many segments)."""
    cdef Py_ssize_t i, c0, c1, s, m = bucket.shape[0], count = len(rows), stride
    cdef const char* base
    cdef const uint8_t[::1] raw
    cdef Stats st
    if len(stats) != len(signals):
        raise ValueError(f"{len(stats)} statistics for {len(signals)} signals")
    offsets = [_signal_fields(rows, k) for k in signals]
    if at is None and m != count:
        raise ValueError(f"{count} rows, {m} buckets")
    if at is not None and at.shape[0] != m:
        raise ValueError(f"{at.shape[0]} rows chosen, {m} buckets")
    for st in stats:
        for i in range(m):
            if bucket[i] < 0 or bucket[i] >= st.buckets:
                raise ValueError(f"row {i}: bucket {bucket[i]} of {st.buckets}")
    for i in range(m):
        if at is not None and (at[i] < 0 or at[i] >= count):
            raise ValueError(f"row {at[i]} of {count}")
    if m == 0:
        return
    if not rows.flags.c_contiguous:
        rows = np.ascontiguousarray(rows)
    raw = rows.view(np.uint8)
    stride = rows.dtype.itemsize
    for c0 in range(0, m, _CHUNK):
        c1 = min(m, c0 + _CHUNK)
        for s in range(len(stats)):
            st = stats[s]
            base = <const char*>&raw[0] + <Py_ssize_t>offsets[s]
            for i in range(c0, c1):
                st.merge_summary(bucket[i], base + (i if at is None else at[i]) * stride)


_FIELDS = ("n", "sum", "min", "max", "first", "last", "tmin", "tmax", "tfirst", "tlast")
_KINDS = "ifffffiiii"


_OFFSETS: dict = {}


def _signal_fields(rows, int k):
    """The byte offset of signal k's fields in a summary row, after checking (once per
    dtype) that they lie as `_overview.summary_dtype` lays them out: ten little-endian
    8-byte numbers in a row."""
    if not isinstance(rows, np.ndarray) or rows.ndim != 1 or rows.dtype.fields is None:
        raise ValueError("summary rows must be a one-dimensional structured array")
    key = (rows.dtype, k)
    if key not in _OFFSETS:
        _OFFSETS[key] = _check_fields(rows.dtype.fields, k)
    return _OFFSETS[key]


def _check_fields(fields, int k):
    try:
        first = fields[f"n{k}"][1]
        for i, (name, kind) in enumerate(zip(_FIELDS, _KINDS)):
            dt, at = fields[f"{name}{k}"][:2]
            if at != first + 8 * i or dt.kind != kind or dt.itemsize != 8 or \
                    dt.byteorder == ">":
                raise ValueError(f"field {name}{k} is {dt} at byte {at}")
    except KeyError as e:
        raise ValueError(f"summary rows have no field {e} for signal {k}") from None
    return first
