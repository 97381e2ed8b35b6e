from typing import Any, TypedDict

from ._codec import Plan

CLOCK_SKEW_NS: int

class BlockInfo(TypedDict):
    count: int
    tmin: int
    tmax: int
    rmin: int
    rmax: int
    in_order: bool
    summary: bytes | None             # its summary row (offset 0), None: nothing numeric

class BlockBuilder:
    plan: Plan
    tmin: int
    tmax: int
    rmin: int
    rmax: int
    datagrams: int
    records: int
    clock_skew: int
    skew_ns: int
    nbytes: int
    pending: int
    age: float
    rejects: dict[str, int]
    def __init__(self, plan: Plan, stamp: bool = ..., skew_ns: int = ...,
                 summaries: bool = ...) -> None: ...
    def add_datagrams(self, datagrams: list[bytes | memoryview] | list[Any], recv_ns: int,
                      start: int = ...,
                      max_bytes: int = ...) -> tuple[int, int]: ...
    def take(self) -> tuple[bytes, BlockInfo] | None: ...
