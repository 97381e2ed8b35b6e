"""Shared benchmark data. In the normal test run (--benchmark-disable) every benchmark runs
once on a small data set as a smoke test; `make bench` times the full sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speeddata import schema as S
from speeddata.codec import encoder

EXAMPLE_AVSC = Path(__file__).resolve().parents[1] / "speeddata" / "schemas" / "example.avsc"


@pytest.fixture(scope="session")
def full_size(request) -> bool:
    opt = request.config.getoption
    return bool(opt("benchmark_enable") or not opt("benchmark_disable"))


@pytest.fixture(scope="session")
def example_schema():
    return S.load(EXAMPLE_AVSC)


def example_records(n: int, start_ns: int = 1_700_000_000_000_000_000, step_ns: int = 10_000):
    """The example sender's signals, as dicts."""
    i = np.arange(n)
    words = ["alpha", "bravo", "charlie", "delta"]
    noise = np.random.default_rng(0).normal(size=n)
    return [{"time": start_ns + int(k) * step_ns, "message": words[(k // 1000) % 4],
             "counter": int(k), "sine_wave": float(np.sin(2 * np.pi * k / 20)),
             "ramp": float(k % 40) / 40, "square_wave": 1.0 if k % 20 < 10 else -1.0,
             "noise": float(noise[k])} for k in i.tolist()]


def example_datagrams(schema, n: int, unique: int = 20_000) -> list[bytes]:
    """n one-record datagrams (unique distinct ones, repeated, so that setup stays quick)."""
    one = encoder(schema)
    base = [one(r) for r in example_records(min(n, unique))]
    return (base * (n // len(base) + 1))[:n]
