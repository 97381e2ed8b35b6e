# A channel's live ring: its layout, defined once, and the writer the receiver cimports.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

cdef enum:
    RING_HEADER = 64        # bytes of header (u64 slots below)
    RING_COUNTERS = 64      # uint64 counters after the header

cdef enum:               # u64 slots of the header (0 holds the magic, see live/ring.py)
    H_ENTRIES = 1        # entry capacity
    H_DATA = 2           # data capacity in bytes
    H_WRITE_ENTRY = 3    # entries written, ever
    H_WRITE_RECORDS = 4  # records written, ever
    H_DATA_HEAD = 5      # bytes written, ever (padding included)

ctypedef struct RingEntry:
    uint64_t offset       # absolute byte position (modulo the data capacity in the ring)
    uint32_t length
    uint32_t count        # records in this entry (one datagram's worth)
    uint64_t first_record # records written before this entry
    int64_t time          # time of the entry's first record

cdef class LiveRing:
    cdef object _mem
    cdef uint64_t* header
    cdef RingEntry* entries
    cdef uint8_t* data
    cdef uint64_t nentries, ndata

    cdef void push(self, const uint8_t* chunk, Py_ssize_t n, uint32_t count,
                   int64_t t) noexcept nogil
