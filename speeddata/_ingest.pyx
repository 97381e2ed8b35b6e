# cython: language_level=3
"""The ingest hot path: datagrams in, block bodies out.

`BlockBuilder` validates each datagram against the channel's wire plan (one or more records
back to back), stamps the receive time where the device sends none, and appends whole
records to the open block; bad datagrams are counted by reason and never touch the block.
`Receiver` drains a UDP socket with recvmmsg without the GIL and feeds a BlockBuilder;
`send_datagrams` is the matching sendmmsg load generator.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

import numpy as np

from ._codec cimport Plan, R_COUNT, R_NO_MEMORY, R_OK, put_varint
from ._codec import REASONS

cdef enum:
    # No datagram can hold more records than bytes; 64 KiB bounds the UDP payload.
    MAX_RECORDS = 65536

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
    """

    def __cinit__(self, Plan plan not None, bint stamp=False, int64_t skew_ns=CLOCK_SKEW_NS):
        self.plan = plan
        self.stamp = stamp
        self.skew_ns = skew_ns
        self.clock_skew = 0
        self.cap = 1 << 20
        self.tcap = 1 << 14
        self.buf = <uint8_t*>malloc(self.cap)
        self.times = <int64_t*>malloc(self.tcap * sizeof(int64_t))
        self.dg_times = <int64_t*>malloc(MAX_RECORDS * sizeof(int64_t))
        self.dg_ends = <Py_ssize_t*>malloc(MAX_RECORDS * sizeof(Py_ssize_t))
        if not (self.buf and self.times and self.dg_times and self.dg_ends):
            raise MemoryError()
        self.reset()
        for i in range(R_COUNT):
            self.reject_counts[i] = 0
        self.datagrams = 0
        self.records = 0

    def __dealloc__(self):
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
            self.tcap = tcap
        return True

    cdef int add(self, const uint8_t* data, Py_ssize_t n, int64_t recv_ns) noexcept nogil:
        """Add one datagram; return its record count, or -reason when it is rejected."""
        cdef int reason = R_OK
        cdef Py_ssize_t where = 0, k, prev = 0, got
        cdef int64_t t
        got = self.plan.parse(data, n, MAX_RECORDS, self.dg_times, self.dg_ends, NULL, 0,
                              &reason, &where)
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
        cdef Py_ssize_t added = 0, i
        cdef int got
        cdef const uint8_t[::1] view
        for i in range(start, len(datagrams)):
            if max_bytes > 0 and self.size >= max_bytes:
                return added, i
            d = datagrams[i]
            if PyBytes_CheckExact(d):
                got = self.add(<const uint8_t*>PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d), recv_ns)
            else:
                view = memoryview(d).cast("B")
                got = self.add(&view[0] if view.shape[0] else NULL, view.shape[0], recv_ns)
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

    def take(self):
        """The open block as (body bytes, times int64 array, BlockInfo dict) and start anew;
        None when empty."""
        if self.count == 0:
            return None
        body = PyBytes_FromStringAndSize(<char*>self.buf, self.size)
        times = np.empty(self.count, dtype=np.int64)
        cdef int64_t[::1] tv = times
        memcpy(&tv[0], self.times, self.count * sizeof(int64_t))
        info = {"count": self.count, "tmin": self.tmin, "tmax": self.tmax,
                "rmin": self.rmin, "rmax": self.rmax, "in_order": bool(self.in_order)}
        self.reset()
        return body, times, info


# ---- system interfaces ------------------------------------------------------------------

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    int recvmmsg(int fd, mmsghdr* msgs, unsigned int vlen, int flags, void* timeout)
    int sendmmsg(int fd, mmsghdr* msgs, unsigned int vlen, int flags)
    cmsghdr* CMSG_FIRSTHDR(msghdr* m)
    cmsghdr* CMSG_NXTHDR(msghdr* m, cmsghdr* c)
    unsigned char* CMSG_DATA(cmsghdr* c)
    int MSG_DONTWAIT, MSG_TRUNC, SOL_SOCKET
    int SO_RXQ_OVFL

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        unsigned int s_addr
    struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr

cdef extern from "<arpa/inet.h>" nogil:
    unsigned short ntohs(unsigned short)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    short POLLIN

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_REALTIME, CLOCK_MONOTONIC
    int nanosleep(const timespec* req, timespec* rem)

cdef extern from "<errno.h>" nogil:
    int errno
    int EAGAIN, EWOULDBLOCK, EINTR

cdef extern from *:
    """
    static inline void sd_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
    """
    void sd_release() nogil

cdef inline int64_t now_ns(int clk) noexcept nogil:
    cdef timespec ts
    clock_gettime(clk, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


# ---- the live ring ----------------------------------------------------------------------

# Layout of a channel's live ring: a file in /dev/shm, shared by the ingest worker that
# writes it and the serving process that reads it (speeddata/live.py, via RING_LAYOUT).
DEF RING_HEADER = 64
DEF RING_COUNTERS = 64          # uint64 counters after the header
DEF ENTRY_SIZE = 32
cdef enum:               # u64 slots of the header (0 holds the magic, see live.py)
    H_ENTRIES = 1        # entry capacity
    H_DATA = 2           # data capacity in bytes
    H_WRITE_ENTRY = 3    # entries written, ever
    H_WRITE_RECORDS = 4  # records written, ever
    H_DATA_HEAD = 5      # bytes written, ever (padding included)

# The layout for Python readers (speeddata.live), from the one definition above.
RING_LAYOUT = {"header_bytes": RING_HEADER, "counter_slots": RING_COUNTERS,
               "entry_bytes": ENTRY_SIZE, "entries": H_ENTRIES, "data": H_DATA,
               "write_entry": H_WRITE_ENTRY, "write_records": H_WRITE_RECORDS,
               "data_head": H_DATA_HEAD}

ctypedef struct RingEntry:
    uint64_t offset       # absolute byte position (modulo the data capacity in the ring)
    uint32_t length
    uint32_t count        # records in this entry (one datagram's worth)
    uint64_t first_record # records written before this entry
    int64_t time          # time of the entry's first record



cdef class LiveRing:
    """Writer side of a channel's live ring, over a writable buffer (an mmap)."""
    cdef object _mem
    cdef uint64_t* header
    cdef RingEntry* entries
    cdef uint8_t* data
    cdef uint64_t nentries, ndata

    def __cinit__(self, mem):
        cdef uint8_t[::1] view = mem
        self._mem = mem
        self.header = <uint64_t*>&view[0]
        self.nentries = self.header[H_ENTRIES]
        self.ndata = self.header[H_DATA]
        self.entries = <RingEntry*>(&view[0] + RING_HEADER + RING_COUNTERS * 8)
        self.data = <uint8_t*>self.entries + self.nentries * ENTRY_SIZE

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


# ---- receiving --------------------------------------------------------------------------

DEF BATCH = 64
DEF SLOT = 65536             # bytes per receive slot: more than any UDP payload
DEF SAMPLES = 4              # bad datagrams kept per reason, for diagnosis
DEF SAMPLE_BYTES = 32
DEF CTRL = 64


cdef class Receiver:
    """Drains a UDP socket with recvmmsg into a BlockBuilder, without the GIL.

    Parameters
    ----------
    fd : int
        A bound UDP socket (SO_RXQ_OVFL on, for kernel drop counts).
    builder : BlockBuilder
        Where valid records go.
    ring : LiveRing or None
        Where every accepted datagram is published for live subscribers.
    forward_fd : int
        A connected UDP socket that gets every accepted datagram as received (multicast
        re-serve), or -1.
    """
    cdef int fd, forward_fd
    cdef BlockBuilder builder
    cdef LiveRing ring
    cdef uint8_t* bufs
    cdef mmsghdr msgs[BATCH]
    cdef mmsghdr fwd[BATCH]
    cdef iovec iovs[BATCH]
    cdef iovec fwd_iovs[BATCH]
    cdef sockaddr_in addrs[BATCH]
    cdef char ctrl[BATCH][CTRL]
    cdef readonly uint64_t datagrams, bytes, oversize, kernel_drops, forwarded, forward_errors
    cdef uint32_t last_ovfl
    cdef bint have_ovfl
    cdef int sample_n[R_COUNT + 1]
    cdef uint32_t sample_ip[R_COUNT + 1][SAMPLES]
    cdef uint16_t sample_port[R_COUNT + 1][SAMPLES]
    cdef uint32_t sample_len[R_COUNT + 1][SAMPLES]
    cdef uint8_t sample_head[R_COUNT + 1][SAMPLES][SAMPLE_BYTES]

    def __cinit__(self, int fd, BlockBuilder builder not None, LiveRing ring=None,
                  int forward_fd=-1):
        cdef int i
        self.fd = fd
        self.builder = builder
        self.ring = ring
        self.forward_fd = forward_fd
        self.bufs = <uint8_t*>malloc(BATCH * SLOT)
        if self.bufs == NULL:
            raise MemoryError()
        for i in range(BATCH):
            self.iovs[i].iov_base = self.bufs + i * SLOT
            self.iovs[i].iov_len = SLOT
        for i in range(R_COUNT + 1):
            self.sample_n[i] = 0
        self.datagrams = self.bytes = self.oversize = self.kernel_drops = 0
        self.forwarded = self.forward_errors = 0
        self.have_ovfl = False

    def __dealloc__(self):
        free(self.bufs)

    cdef void reset_headers(self) noexcept nogil:
        cdef int i
        for i in range(BATCH):
            self.msgs[i].msg_hdr.msg_name = &self.addrs[i]
            self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in)
            self.msgs[i].msg_hdr.msg_iov = &self.iovs[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
            self.msgs[i].msg_hdr.msg_control = self.ctrl[i]
            self.msgs[i].msg_hdr.msg_controllen = CTRL
            self.msgs[i].msg_hdr.msg_flags = 0

    cdef void sample(self, int reason, int i, Py_ssize_t n) noexcept nogil:
        cdef int k = self.sample_n[reason]
        if k >= SAMPLES:
            return
        self.sample_n[reason] = k + 1
        self.sample_ip[reason][k] = self.addrs[i].sin_addr.s_addr
        self.sample_port[reason][k] = ntohs(self.addrs[i].sin_port)
        self.sample_len[reason][k] = <uint32_t>n
        memcpy(self.sample_head[reason][k], self.bufs + i * SLOT, min(n, SAMPLE_BYTES))

    cdef void drops(self, int i) noexcept nogil:
        cdef cmsghdr* c = CMSG_FIRSTHDR(&self.msgs[i].msg_hdr)
        cdef uint32_t v
        while c != NULL:
            if c.cmsg_level == SOL_SOCKET and c.cmsg_type == SO_RXQ_OVFL:
                memcpy(&v, CMSG_DATA(c), 4)
                if self.have_ovfl and v >= self.last_ovfl:
                    self.kernel_drops += v - self.last_ovfl
                elif not self.have_ovfl:
                    self.kernel_drops += v
                self.last_ovfl = v
                self.have_ovfl = True
            c = CMSG_NXTHDR(&self.msgs[i].msg_hdr, c)

    def poll(self, double timeout=0.05, Py_ssize_t max_bytes=1 << 20,
             Py_ssize_t max_datagrams=8192):
        """Wait up to ``timeout`` s for datagrams, then take all that are queued, until the
        open block holds ``max_bytes`` or ``max_datagrams`` were taken. Returns the number
        of datagrams taken (0 on time-out)."""
        cdef pollfd p
        cdef int n, i, got, nfwd
        cdef Py_ssize_t taken = 0, before_size, before_count, length
        cdef int64_t recv_ns
        cdef BlockBuilder b = self.builder
        cdef int err = 0
        p.fd = self.fd
        p.events = POLLIN
        with nogil:
            if poll(&p, 1, <int>(timeout * 1000)) > 0:
                while taken < max_datagrams and b.size < max_bytes:
                    self.reset_headers()
                    n = recvmmsg(self.fd, self.msgs, BATCH, MSG_DONTWAIT, NULL)
                    if n <= 0:
                        if n < 0 and errno != EAGAIN and errno != EWOULDBLOCK and errno != EINTR:
                            err = errno
                        break
                    recv_ns = now_ns(CLOCK_REALTIME)
                    nfwd = 0
                    for i in range(n):
                        length = self.msgs[i].msg_len
                        self.datagrams += 1
                        self.bytes += length
                        if self.msgs[i].msg_hdr.msg_controllen:
                            self.drops(i)
                        if self.msgs[i].msg_hdr.msg_flags & MSG_TRUNC:
                            self.oversize += 1
                            self.sample(R_COUNT, i, length)
                            continue
                        before_size = b.size
                        before_count = b.count
                        got = b.add(self.bufs + i * SLOT, length, recv_ns)
                        if got < 0:
                            self.sample(-got, i, length)
                            continue
                        if self.ring is not None:
                            self.ring.push(b.buf + before_size, b.size - before_size,
                                           <uint32_t>got, b.times[before_count])
                        if self.forward_fd >= 0:
                            self.fwd_iovs[nfwd].iov_base = self.bufs + i * SLOT
                            self.fwd_iovs[nfwd].iov_len = length
                            memset(&self.fwd[nfwd], 0, sizeof(mmsghdr))
                            self.fwd[nfwd].msg_hdr.msg_iov = &self.fwd_iovs[nfwd]
                            self.fwd[nfwd].msg_hdr.msg_iovlen = 1
                            nfwd += 1
                    if nfwd:
                        got = sendmmsg(self.forward_fd, self.fwd, nfwd, MSG_DONTWAIT)
                        if got > 0:
                            self.forwarded += got
                        if got < nfwd:
                            self.forward_errors += nfwd - max(got, 0)
                    taken += n
        if err:
            raise OSError(err, "recvmmsg failed")
        return taken

    @property
    def samples(self):
        """First bad datagrams per reason: {reason: [(sender, length, first bytes hex)]}."""
        import ipaddress
        cdef int r, k
        out = {}
        for r in range(1, R_COUNT + 1):
            name = REASONS[r] if r < R_COUNT else "oversize"
            for k in range(self.sample_n[r]):
                ip = str(ipaddress.IPv4Address(int.from_bytes(
                    (<uint32_t*>&self.sample_ip[r][k])[0].to_bytes(4, "little"), "big")))
                head = bytes(self.sample_head[r][k][:min(self.sample_len[r][k], SAMPLE_BYTES)])
                out.setdefault(name, []).append((f"{ip}:{self.sample_port[r][k]}",
                                                 self.sample_len[r][k], head.hex()))
        return out


# ---- sending ----------------------------------------------------------------------------

def send_datagrams(int fd, const uint8_t[::1] body, const int64_t[::1] ends,
                   Py_ssize_t per_datagram=1, double rate=0.0, int64_t start_ns=0):
    """Send records as datagrams of ``per_datagram`` records over a connected UDP socket
    with sendmmsg, at ``rate`` datagrams/s (0: as fast as the socket takes them), paced
    from ``start_ns`` (CLOCK_MONOTONIC ns; 0: now). Returns (datagrams sent, errors)."""
    cdef mmsghdr msgs[BATCH]
    cdef iovec iovs[BATCH]
    cdef Py_ssize_t nrec = ends.shape[0], rec = 0, first, last, k, n
    cdef int64_t prev = 0, t0, due
    cdef uint64_t sent = 0, errors = 0
    cdef int r
    cdef timespec ts
    if nrec == 0:
        return 0, 0
    if per_datagram < 1:
        raise ValueError("per_datagram must be at least 1")
    with nogil:
        t0 = start_ns if start_ns else now_ns(CLOCK_MONOTONIC)
        while rec < nrec:
            n = 0
            while n < BATCH and rec < nrec:
                first = ends[rec - 1] if rec else 0
                last = ends[min(rec + per_datagram, nrec) - 1]
                memset(&msgs[n], 0, sizeof(mmsghdr))
                iovs[n].iov_base = <void*>(&body[0] + first)
                iovs[n].iov_len = last - first
                msgs[n].msg_hdr.msg_iov = &iovs[n]
                msgs[n].msg_hdr.msg_iovlen = 1
                rec = min(rec + per_datagram, nrec)
                n += 1
            if rate > 0:
                due = t0 + <int64_t>((sent + n) * 1e9 / rate)
                while True:
                    prev = now_ns(CLOCK_MONOTONIC)
                    if prev >= due:
                        break
                    ts.tv_sec = (due - prev) // 1000000000
                    ts.tv_nsec = (due - prev) % 1000000000
                    nanosleep(&ts, NULL)
            k = 0
            while k < n:
                r = sendmmsg(fd, &msgs[k], n - k, 0)
                if r < 0:
                    if errno == EINTR:
                        continue
                    errors += 1      # e.g. ECONNREFUSED from an earlier datagram: go on
                    k += 1
                    continue
                k += r
                sent += r
    return sent, errors


def drain(int fd, double seconds, double idle=0.5):
    """The baseline receiver: recvmmsg into reused buffers and discard, for ``seconds`` or
    until nothing arrives for ``idle`` s after the first datagram. Returns (datagrams,
    bytes, kernel drops)."""
    cdef mmsghdr msgs[BATCH]
    cdef iovec iovs[BATCH]
    cdef char ctrl[BATCH][CTRL]
    cdef uint8_t* bufs = <uint8_t*>malloc(BATCH * SLOT)
    cdef pollfd p
    cdef int n, i
    cdef uint64_t count = 0, nbytes = 0, drops = 0
    cdef uint32_t v
    cdef cmsghdr* c
    cdef int64_t end, last = 0, idle_ns = <int64_t>(idle * 1e9)
    if bufs == NULL:
        raise MemoryError()
    p.fd = fd
    p.events = POLLIN
    with nogil:
        end = now_ns(CLOCK_MONOTONIC) + <int64_t>(seconds * 1e9)
        while now_ns(CLOCK_MONOTONIC) < end:
            if poll(&p, 1, 20) <= 0:
                if count and now_ns(CLOCK_MONOTONIC) - last > idle_ns:
                    break
                continue
            while True:
                for i in range(BATCH):
                    iovs[i].iov_base = bufs + i * SLOT
                    iovs[i].iov_len = SLOT
                    memset(&msgs[i], 0, sizeof(mmsghdr))
                    msgs[i].msg_hdr.msg_iov = &iovs[i]
                    msgs[i].msg_hdr.msg_iovlen = 1
                    msgs[i].msg_hdr.msg_control = ctrl[i]
                    msgs[i].msg_hdr.msg_controllen = CTRL
                n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL)
                if n <= 0:
                    break
                for i in range(n):
                    nbytes += msgs[i].msg_len
                    c = CMSG_FIRSTHDR(&msgs[i].msg_hdr)
                    while c != NULL:
                        if c.cmsg_level == SOL_SOCKET and c.cmsg_type == SO_RXQ_OVFL:
                            memcpy(&v, CMSG_DATA(c), 4)
                            drops = v
                        c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)
                count += n
            last = now_ns(CLOCK_MONOTONIC)
    free(bufs)
    return count, nbytes, drops
