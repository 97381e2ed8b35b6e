# cython: language_level=3
"""A channel's live ring: a shared-memory file (in /dev/shm) that the ingest worker writes
every accepted datagram's records to, and any process maps and follows (speeddata.live).

The layout is defined here once: `RING_LAYOUT` and `ENTRY_FIELDS` give it to Python readers.
"""
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING

cdef extern from *:
    """
    static inline void sd_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
    """
    void sd_release() nogil

# The layout for Python readers (speeddata.live), from the one definition in _ring.pxd.
RING_LAYOUT = {"header_bytes": RING_HEADER, "counter_slots": RING_COUNTERS,
               "entry_bytes": sizeof(RingEntry), "entries": H_ENTRIES, "data": H_DATA,
               "write_entry": H_WRITE_ENTRY, "write_records": H_WRITE_RECORDS,
               "data_head": H_DATA_HEAD}
# RingEntry as a numpy dtype description (names, formats, offsets)
cdef RingEntry _probe
ENTRY_FIELDS = [("offset", "<u8", <Py_ssize_t>&_probe.offset - <Py_ssize_t>&_probe),
                ("length", "<u4", <Py_ssize_t>&_probe.length - <Py_ssize_t>&_probe),
                ("count", "<u4", <Py_ssize_t>&_probe.count - <Py_ssize_t>&_probe),
                ("first_record", "<u8", <Py_ssize_t>&_probe.first_record - <Py_ssize_t>&_probe),
                ("time", "<i8", <Py_ssize_t>&_probe.time - <Py_ssize_t>&_probe)]


cdef class LiveRing:
    """Writer side of a channel's live ring, over a writable buffer (an mmap)."""

    def __cinit__(self, mem):
        cdef uint8_t[::1] view = mem
        self._mem = mem
        self.header = <uint64_t*>&view[0]
        self.nentries = self.header[H_ENTRIES]
        self.ndata = self.header[H_DATA]
        self.entries = <RingEntry*>(&view[0] + RING_HEADER + RING_COUNTERS * 8)
        self.data = <uint8_t*>self.entries + self.nentries * sizeof(RingEntry)

    cdef void push(self, const uint8_t* chunk, Py_ssize_t n, uint32_t count,
                   int64_t t) noexcept nogil:
        cdef uint64_t pos = self.header[H_DATA_HEAD], off
        cdef RingEntry* e
        if <uint64_t>n > self.ndata // 4:
            return
        off = pos % self.ndata
        if off + n > self.ndata:       # never wrap a chunk: skip to the start
            pos += self.ndata - off
            off = 0
        memcpy(self.data + off, chunk, n)
        e = &self.entries[self.header[H_WRITE_ENTRY] % self.nentries]
        e.offset = pos
        e.length = <uint32_t>n
        e.count = count
        e.first_record = self.header[H_WRITE_RECORDS]
        e.time = t
        sd_release()    # readers must see the entry and its bytes before the new totals
        self.header[H_DATA_HEAD] = pos + n
        self.header[H_WRITE_RECORDS] += count
        self.header[H_WRITE_ENTRY] += 1

    def push_bytes(self, bytes chunk, uint32_t count, int64_t t):
        """Publish one chunk of stored-form records (tests and tools)."""
        self.push(<const uint8_t*>PyBytes_AS_STRING(chunk), len(chunk), count, t)
