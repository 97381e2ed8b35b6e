"""Data the benchmarks share: the example sender's signals (`speeddata.send`), encoded with
the columnar encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speeddata import send
from speeddata.codec import Plan, encode_columns

EXAMPLE_AVSC = Path(__file__).resolve().parents[1] / "speeddata" / "schemas" / "example.avsc"
T0 = 1_700_000_000_000_000_000


def example_columns(n: int, start_ns: int = T0, step_ns: int = 10_000, first: int = 0):
    """The example sender's signals for samples first..first+n, step_ns apart."""
    return send.example_columns(first, n, start_ns, step_ns)


def example_body(schema, n: int, **kw) -> tuple[bytes, np.ndarray]:
    """n example records back to back, and the end offset of each."""
    time, data = example_columns(n, **kw)
    return encode_columns(Plan(schema), time, data)


def example_datagrams(schema, n: int, per_datagram: int = 1, **kw) -> list[bytes]:
    """n records as datagrams of ``per_datagram`` records each."""
    body, ends = example_body(schema, n, **kw)
    cuts = [0] + ends[per_datagram - 1::per_datagram].tolist()
    if cuts[-1] != len(body):
        cuts.append(len(body))
    view = memoryview(body)
    return [bytes(view[a:b]) for a, b in zip(cuts, cuts[1:])]
