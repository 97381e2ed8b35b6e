
import numpy as np

from ._block import BlockBuilder
from ._ring import LiveRing

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
