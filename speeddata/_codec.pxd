# The compiled record plan, shared with _ingest.pyx.
from libc.stdint cimport int64_t, uint8_t, uint64_t

ctypedef struct Op:
    int kind      # speeddata.schema NULL..UNION
    int arg       # enum: symbol count; fixed: size; union: index of the null branch (-1: none)
    int span      # union: number of ops in the value branch that follows
    int col       # column number, -1 for ops without one

ctypedef struct ColOut:
    char* data            # NULL: column not wanted
    Py_ssize_t itemsize   # string/bytes columns hold (offset, length) int64 pairs
    uint8_t* mask         # nullable columns: 1 where null

cdef enum:
    R_OK = 0
    R_EMPTY = 1
    R_TRUNCATED = 2
    R_BAD_VARINT = 3
    R_NEGATIVE_LENGTH = 4
    R_BAD_UNION = 5
    R_BAD_ENUM = 6
    R_BAD_BOOLEAN = 7
    R_BAD_UTF8 = 8
    R_TOO_MANY = 9
    R_NO_MEMORY = 10
    R_TIME_RANGE = 11
    R_COUNT = 12

cdef class Plan:
    cdef Op* ops
    cdef int nops
    cdef readonly int ncols
    cdef readonly int time_op
    cdef readonly int64_t time_scale
    cdef int64_t time_max, time_min
    cdef readonly object schema

    cdef Py_ssize_t parse(self, const uint8_t* buf, Py_ssize_t n, Py_ssize_t max_records,
                          int64_t* times, Py_ssize_t* ends, ColOut* cols, Py_ssize_t row0,
                          int* reason, Py_ssize_t* where) noexcept nogil


cdef inline Py_ssize_t put_varint(uint8_t* out, int64_t value) noexcept nogil:
    """Write value as an Avro long (zigzag varint); return the bytes written."""
    cdef uint64_t z = (<uint64_t>value << 1) ^ <uint64_t>(value >> 63)
    cdef Py_ssize_t n = 0
    while z >= 0x80:
        out[n] = <uint8_t>(z | 0x80)
        z >>= 7
        n += 1
    out[n] = <uint8_t>z
    return n + 1
