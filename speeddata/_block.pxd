# The block builder, shared with the ingest receiver (_ingest.pyx).
from libc.stdint cimport int64_t, uint8_t, uint64_t

from ._codec cimport ColOut, Plan, R_COUNT

cdef enum:
    # No datagram can hold more records than bytes; 64 KiB bounds the UDP payload.
    MAX_RECORDS = 65536


cdef class BlockBuilder:
    cdef readonly Plan plan
    cdef bint stamp
    cdef uint8_t* buf
    cdef Py_ssize_t size, cap
    cdef int64_t* times
    cdef Py_ssize_t count, tcap
    cdef int64_t* dg_times
    cdef Py_ssize_t* dg_ends
    cdef readonly int64_t tmin, tmax, rmin, rmax
    cdef bint in_order
    cdef uint64_t reject_counts[R_COUNT]
    cdef readonly uint64_t datagrams, records, clock_skew
    cdef readonly int64_t skew_ns
    cdef int64_t started_ns
    cdef ColOut* cols             # numeric signals' values, row by row (summaries)
    cdef list numeric             # [(column, how its values are held)]

    cdef bint grow_columns(self, Py_ssize_t tcap) noexcept nogil
    cdef _summary(self)

    cdef void reset(self) noexcept nogil
    cdef bint reserve(self, Py_ssize_t nbytes, Py_ssize_t nrec) noexcept nogil
    cdef int add(self, const uint8_t* data, Py_ssize_t n, int64_t recv_ns) noexcept nogil
