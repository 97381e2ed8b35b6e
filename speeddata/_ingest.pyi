
import numpy as np

from ._codec import Plan

class BlockBuilder:
    tmin: int
    tmax: int
    rmin: int
    rmax: int
    datagrams: int
    records: int
    nbytes: int
    pending: int
    rejects: dict[str, int]
    def __init__(self, plan: Plan, stamp: bool = ...) -> None: ...
    def add_datagrams(self, datagrams: list[bytes], recv_ns: int, start: int = ...,
                      max_bytes: int = ...) -> tuple[int, int]: ...
    def take(self) -> tuple[bytes, np.ndarray, dict] | None: ...

RING_LAYOUT: dict[str, int]

class LiveRing:
    def __init__(self, mem: object) -> None: ...
    def push_bytes(self, chunk: bytes, count: int, t: int) -> None: ...

class Receiver:
    datagrams: int
    bytes: int
    oversize: int
    kernel_drops: int
    forwarded: int
    forward_errors: int
    samples: dict[str, list[tuple[str, int, str]]]
    def __init__(self, fd: int, builder: BlockBuilder, ring: LiveRing | None = ...,
                 forward_fd: int = ...) -> None: ...
    def poll(self, timeout: float = ..., max_bytes: int = ...,
             max_datagrams: int = ...) -> int: ...

def send_datagrams(fd: int, body: bytes, ends: np.ndarray, per_datagram: int = ...,
                   rate: float = ..., start_ns: int = ...) -> tuple[int, int]: ...
def drain(fd: int, seconds: float, idle: float = ...) -> tuple[int, int, int]: ...
