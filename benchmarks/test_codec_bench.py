"""Codec speed: decode-to-columns and validate against fastavro on the example schema.

Targets (issue 2): decode >= 20x fastavro.schemaless_reader + numpy; validate >= 10 M records/s.
Run: make bench  (or .venv/bin/pytest benchmarks/test_codec_bench.py --benchmark-enable)
"""

import io

import fastavro
import numpy as np
import pytest

from speeddata.codec import Plan, decode

from benchdata import example_datagrams


@pytest.fixture(scope="module")
def block(example_schema, full_size):
    n = 1_000_000 if full_size else 20_000
    return n, b"".join(example_datagrams(example_schema, n))


def _rate(benchmark, n):
    if benchmark.stats:
        benchmark.extra_info["records_per_s"] = n / benchmark.stats.stats.median


def test_decode_columns(benchmark, example_schema, block):
    n, data = block
    plan = Plan(example_schema)
    cols = benchmark(decode, plan, data, n)
    assert len(cols) == n and cols.counter[-1] == n - 1
    _rate(benchmark, n)


def test_validate(benchmark, example_schema, block):
    n, data = block
    plan = Plan(example_schema)
    assert benchmark(plan.validate, data) == n
    _rate(benchmark, n)


def test_fastavro_baseline(benchmark, example_schema, block):
    """fastavro.schemaless_reader in a loop, then numpy arrays from the dicts."""
    n, data = block
    parsed = fastavro.parse_schema(example_schema.avro)
    names = example_schema.signal_names

    def baseline():
        stream = io.BytesIO(data)
        read = fastavro.schemaless_reader
        rows = [read(stream, parsed) for _ in range(n)]
        time = np.fromiter((r["time"] for r in rows), dtype=np.int64, count=n)
        return time, {k: np.array([r[k] for r in rows]) for k in names}

    time, cols = benchmark.pedantic(baseline, rounds=3, iterations=1)
    assert len(time) == n
    _rate(benchmark, n)
