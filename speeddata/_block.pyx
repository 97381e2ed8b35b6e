# cython: language_level=3
"""The block stage of the store: datagrams in, one block body out.

`BlockBuilder` validates each datagram against the channel's wire plan (one or more records
back to back), stamps the receive time where the device sends none, and appends whole
records to the open block; bad datagrams are counted by reason and never touch the block.
The store's writer takes the block when it is full or old enough; the ingest receiver
(`_ingest.pyx`) feeds it without the GIL.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint8_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

from ._codec cimport ColOut, Plan, R_COUNT, R_NO_MEMORY, R_OK, put_varint
from ._codec import REASONS
from ._summary cimport (SUMMARY_FIELDS, V_BOOL, V_FLOAT32, V_FLOAT64, V_INT32, V_INT64,
                        summarise_values)

import numpy as np

# a datagram this large (append_columns hands over a block's worth at once) is validated
# without the GIL, so a writer's compressing threads go on meanwhile; small ones are not
# worth the hand-over
cdef Py_ssize_t GIL_FREE_BYTES = 4096

# numeric signals, kept value by value as the block fills (its summary needs no decode)
_NUMERIC = {"boolean": (np.uint8, V_BOOL), "int": (np.int32, V_INT32),
            "long": (np.int64, V_INT64), "float": (np.float32, V_FLOAT32),
            "double": (np.float64, V_FLOAT64)}

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_MONOTONIC

cdef inline int64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec

# A record whose own time is further than this from its receive time is counted as clock
# skew (kept all the same: the device clock is wrong, not the data).
CLOCK_SKEW_NS = 3600 * 1000000000


cdef class BlockBuilder:
    """Accumulates validated records into one block body (the uncompressed Avro records).

    Parameters
    ----------
    plan : Plan
        The channel's wire plan (``Plan(schema, wire=True)``).
    stamp : bool
        Prepend the receive time to every record (channels whose devices send no time).
    skew_ns : int
        Count records whose time is further than this from their receive time
        (``clock_skew``).
    summaries : bool
        Keep numeric values as records arrive, for the block's summary row (False: no
        summary; for measuring what summaries cost).
    """

    def __cinit__(self, Plan plan not None, bint stamp=False, int64_t skew_ns=CLOCK_SKEW_NS,
                  bint summaries=True):
        self.plan = plan
        self.started_ns = 0
        self.stamp = stamp
        self.skew_ns = skew_ns
        self.clock_skew = 0
        self.cap = 1 << 20
        self.tcap = 1 << 14
        self.buf = <uint8_t*>malloc(self.cap)
        self.times = <int64_t*>malloc(self.tcap * sizeof(int64_t))
        self.dg_times = <int64_t*>malloc(MAX_RECORDS * sizeof(int64_t))
        self.dg_ends = <Py_ssize_t*>malloc(MAX_RECORDS * sizeof(Py_ssize_t))
        self.cols = <ColOut*>calloc(max(1, plan.ncols), sizeof(ColOut))
        if not (self.buf and self.times and self.dg_times and self.dg_ends and self.cols):
            raise MemoryError()
        self.numeric = []
        for k, sig in enumerate(plan.schema.signals):
            if summaries and sig.type in _NUMERIC:
                dtype, kind = _NUMERIC[sig.type]
                self.numeric.append((k, kind))
                self.cols[k].itemsize = np.dtype(dtype).itemsize
                self.cols[k].data = <char*>malloc(self.tcap * self.cols[k].itemsize)
                if sig.nullable:
                    self.cols[k].mask = <uint8_t*>malloc(self.tcap)
                if self.cols[k].data == NULL or (sig.nullable and self.cols[k].mask == NULL):
                    raise MemoryError()
        self.reset()
        for i in range(R_COUNT):
            self.reject_counts[i] = 0
        self.datagrams = 0
        self.records = 0

    def __dealloc__(self):
        cdef int k
        if self.cols != NULL:
            for k in range(self.plan.ncols):
                free(self.cols[k].data)
                free(self.cols[k].mask)
            free(self.cols)
        free(self.buf)
        free(self.times)
        free(self.dg_times)
        free(self.dg_ends)

    cdef void reset(self) noexcept nogil:
        self.size = 0
        self.count = 0
        self.tmin = INT64_MAX
        self.tmax = INT64_MIN
        self.rmin = INT64_MAX
        self.rmax = INT64_MIN
        self.in_order = True

    cdef bint reserve(self, Py_ssize_t nbytes, Py_ssize_t nrec) noexcept nogil:
        cdef Py_ssize_t cap = self.cap, tcap = self.tcap
        cdef void* p
        while self.size + nbytes > cap:
            cap *= 2
        while self.count + nrec > tcap:
            tcap *= 2
        if cap != self.cap:
            p = realloc(self.buf, cap)
            if p == NULL:
                return False
            self.buf = <uint8_t*>p
            self.cap = cap
        if tcap != self.tcap:
            p = realloc(self.times, tcap * sizeof(int64_t))
            if p == NULL:
                return False
            self.times = <int64_t*>p
            if not self.grow_columns(tcap):
                return False
            self.tcap = tcap
        return True

    cdef bint grow_columns(self, Py_ssize_t tcap) noexcept nogil:
        cdef int k
        cdef void* p
        for k in range(self.plan.ncols):
            if self.cols[k].data != NULL:
                p = realloc(self.cols[k].data, tcap * self.cols[k].itemsize)
                if p == NULL:
                    return False
                self.cols[k].data = <char*>p
            if self.cols[k].mask != NULL:
                p = realloc(self.cols[k].mask, tcap)
                if p == NULL:
                    return False
                self.cols[k].mask = <uint8_t*>p
        return True

    cdef int add(self, const uint8_t* data, Py_ssize_t n, int64_t recv_ns) noexcept nogil:
        """Add one datagram; return its record count, or -reason when it is rejected."""
        cdef int reason = R_OK
        cdef Py_ssize_t where = 0, k, prev = 0, got
        cdef int64_t t
        # room for as many records as the datagram has bytes (the most it can hold): the
        # parse writes numeric values straight into the block's columns
        if not self.reserve(0, min(n, MAX_RECORDS)):
            self.reject_counts[R_NO_MEMORY] += 1
            return -R_NO_MEMORY
        got = self.plan.parse(data, n, MAX_RECORDS, self.dg_times, self.dg_ends, self.cols,
                              self.count, &reason, &where)
        if got > 0 and self.count == 0:
            self.started_ns = monotonic_ns()
        if got < 0:
            self.reject_counts[reason] += 1
            return -reason
        if not self.reserve(n + (10 * got if self.stamp else 0), got):
            self.reject_counts[R_NO_MEMORY] += 1
            return -R_NO_MEMORY
        if self.stamp:
            for k in range(got):
                self.size += put_varint(self.buf + self.size, recv_ns)
                memcpy(self.buf + self.size, data + prev, self.dg_ends[k] - prev)
                self.size += self.dg_ends[k] - prev
                prev = self.dg_ends[k]
                self.dg_times[k] = recv_ns
        else:
            memcpy(self.buf + self.size, data, n)
            self.size += n
        for k in range(got):
            t = self.dg_times[k]
            if self.count and t < self.times[self.count - 1]:
                self.in_order = False
            self.times[self.count] = t
            self.count += 1
            if t < self.tmin:
                self.tmin = t
            if t > self.tmax:
                self.tmax = t
            if t > recv_ns + self.skew_ns or t < recv_ns - self.skew_ns:
                self.clock_skew += 1
        if recv_ns < self.rmin:
            self.rmin = recv_ns
        if recv_ns > self.rmax:
            self.rmax = recv_ns
        self.datagrams += 1
        self.records += got
        return <int>got

    def add_datagrams(self, list datagrams, int64_t recv_ns, Py_ssize_t start=0,
                      Py_ssize_t max_bytes=-1):
        """Add datagrams[start:] (bytes-like objects), stopping once the block holds
        ``max_bytes`` (if > 0); return (records added, index of the next datagram)."""
        cdef Py_ssize_t added = 0, i, n
        cdef int got
        cdef const uint8_t* p
        cdef const uint8_t[::1] view
        for i in range(start, len(datagrams)):
            if max_bytes > 0 and self.size >= max_bytes:
                return added, i
            d = datagrams[i]
            if PyBytes_CheckExact(d):
                p, n = <const uint8_t*>PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d)
            else:
                view = memoryview(d).cast("B")
                p, n = (&view[0] if view.shape[0] else NULL), view.shape[0]
            if n >= GIL_FREE_BYTES:     # many records (append_columns): others run meanwhile
                with nogil:
                    got = self.add(p, n, recv_ns)
            else:
                got = self.add(p, n, recv_ns)
            if got > 0:
                added += got
        return added, len(datagrams)

    @property
    def nbytes(self):
        return self.size

    @property
    def pending(self):
        return self.count

    @property
    def rejects(self):
        """Rejected datagrams by reason, since this builder was made."""
        return {REASONS[i]: self.reject_counts[i] for i in range(1, R_COUNT)
                if self.reject_counts[i]}

    @property
    def age(self):
        """Seconds since the open block's first record arrived (0 when empty)."""
        return (monotonic_ns() - self.started_ns) / 1e9 if self.count else 0.0

    def take(self):
        """The open block as (body bytes, info dict: count, tmin, tmax, rmin, rmax,
        in_order, and its summary row as bytes) and start anew; None when empty."""
        if self.count == 0:
            return None
        body = PyBytes_FromStringAndSize(<char*>self.buf, self.size)
        info = {"count": self.count, "tmin": self.tmin, "tmax": self.tmax,
                "rmin": self.rmin, "rmax": self.rmax, "in_order": bool(self.in_order),
                "summary": self._summary()}
        self.reset()
        return body, info

    cdef _summary(self):
        """The open block's summary row (`_overview.summary_dtype`, offset 0) from the
        values kept as it filled; None when no signal is numeric."""
        cdef Py_ssize_t j = 0
        cdef int k, kind
        if not self.numeric:
            return None
        row = PyBytes_FromStringAndSize(NULL, 8 + 8 * SUMMARY_FIELDS * len(self.numeric))
        cdef char* out = PyBytes_AS_STRING(row)
        memset(out, 0, 8)
        for k, kind in self.numeric:
            summarise_values(self.cols[k].data, kind, self.cols[k].mask, self.times,
                             self.count, self.in_order, out + 8 + 8 * SUMMARY_FIELDS * j)
            j += 1
        return row
