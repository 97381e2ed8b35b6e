# cython: language_level=3
"""The ingest hot path: UDP datagrams in, without the GIL.

`Receiver` drains a UDP socket with recvmmsg and feeds the store's block builder
(`_block.pyx`), publishing every accepted datagram to the channel's live ring (`_ring.pyx`)
and, optionally, re-serving it by multicast. `send_datagrams` is the matching sendmmsg
load generator.
"""
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from ._block cimport BlockBuilder
from ._codec cimport R_COUNT
from ._codec import REASONS
from ._ring cimport LiveRing


from ._net cimport (BATCH, CLOCK_MONOTONIC, CLOCK_REALTIME, CMSG_DATA, CMSG_FIRSTHDR,
                   CMSG_NXTHDR, CTRL, EAGAIN, EINTR, EWOULDBLOCK, MSG_DONTWAIT, MSG_TRUNC,
                   POLLIN, SLOT, SO_RXQ_OVFL, SOL_SOCKET, cmsghdr, errno, iovec, mmsghdr,
                   nanosleep, now_ns, ntohs, poll, pollfd, recvmmsg, sendmmsg, sockaddr_in,
                   timespec)


# ---- receiving --------------------------------------------------------------------------

cdef enum:
    SAMPLES = 4              # bad datagrams kept per reason, for diagnosis
    SAMPLE_BYTES = 32


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
