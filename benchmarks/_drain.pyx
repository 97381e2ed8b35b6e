# cython: language_level=3
"""The baseline receiver of the ingest benchmarks: recvmmsg into reused buffers and discard.

What SpeedData's receiver is measured against; it lives here, not in the package. Built on
first use by `ingest_capacity.py` (pyximport), with the system declarations of
speeddata/_net.pxd.
"""
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from speeddata._net cimport (BATCH, CLOCK_MONOTONIC, CMSG_DATA, CMSG_FIRSTHDR, CMSG_NXTHDR,
                             CTRL, MSG_DONTWAIT, POLLIN, SLOT, SO_RXQ_OVFL, SOL_SOCKET,
                             cmsghdr, iovec, mmsghdr, now_ns, poll, pollfd, recvmmsg)


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
