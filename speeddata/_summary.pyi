from collections.abc import Sequence
from typing import Any

import numpy as np

class Stats:
    n: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    first: np.ndarray
    last: np.ndarray
    tmin: np.ndarray
    tmax: np.ndarray
    tfirst: np.ndarray
    tlast: np.ndarray
    buckets: int
    def __init__(self, buckets: int) -> None: ...
    def add_records(self, x: np.ndarray, t: np.ndarray, null: np.ndarray | None,
                    edges: np.ndarray) -> None: ...
    def add_rows(self, rows: Any, k: int, bucket: np.ndarray,
                 at: np.ndarray | None = ...) -> None: ...

def block_stats(x: np.ndarray, t: np.ndarray, null: np.ndarray | None
                ) -> tuple[int, float, float, float, float, float, int, int, int, int]: ...
def count_records(counts: np.ndarray, t: np.ndarray, edges: np.ndarray) -> None: ...
def merge_rows(stats: list[Stats], signals: Sequence[int], rows: np.ndarray,
               bucket: np.ndarray, at: np.ndarray | None = ...) -> None: ...
