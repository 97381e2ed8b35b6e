from typing import Any

import numpy as np

from .schema import ChannelSchema

REASONS: tuple[str, ...]
REASON_CODES: dict[str, int]
OP_KINDS: dict[str, int]
REASON_TEXT: dict[str, str]

class Plan:
    ncols: int
    time_op: int
    time_scale: int
    schema: ChannelSchema
    def __init__(self, schema: ChannelSchema, wire: bool = ...) -> None: ...
    def check(self, data: bytes, max_records: int = ...) -> np.ndarray: ...
    def validate(self, data: bytes) -> int: ...
    def decode_into(self, data: bytes, count: int, row0: int, times: np.ndarray,
                    columns: list[np.ndarray | None], masks: list[np.ndarray | None]) -> int: ...
    def decode_blocks(self, bodies: list[Any], counts: Any, rows: Any, times: np.ndarray,
                      columns: list[np.ndarray | None], masks: list[np.ndarray | None]
                      ) -> list[Exception | None]: ...

def encode_columns(plan: Plan, time: np.ndarray, columns: list[Any],
                   masks: list[np.ndarray | None] | None = ...) -> tuple[bytes, np.ndarray]: ...

def read_varint(data: bytes | memoryview, pos: int = ...) -> tuple[int, int]: ...
def write_varint(value: int) -> bytes: ...
def block_frame(buf: Any, pos: int, sync: bytes) -> tuple[int, int, int, int]: ...
