"""Codec speed: decode-to-columns, validate and encode against fastavro on the example schema.

Targets (issue 2): decode >= 20x fastavro.schemaless_reader + numpy; validate >= 10 M records/s.
Encoding columns (what append_columns and the senders do) is set against
fastavro.schemaless_writer on the same records.
Run: make bench  (or .venv/bin/pytest benchmarks/test_codec_bench.py --benchmark-enable)
"""

import io

import fastavro
import numpy as np
import pytest

from speeddata.codec import Plan, decode, encode_columns

from benchdata import example_columns, example_datagrams


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


def test_encode_columns(benchmark, example_schema, block):
    n, data = block
    t, cols = example_columns(n)
    plan = Plan(example_schema, wire=True)
    body, ends = benchmark(encode_columns, plan, t, cols)
    assert len(ends) == n and decode(plan, body, n).counter[-1] == cols["counter"][-1]
    _rate(benchmark, n)


def test_fastavro_encode_baseline(benchmark, example_schema, full_size):
    """fastavro.schemaless_writer over dicts, a tenth of the records (it is slow)."""
    n = 100_000 if full_size else 2_000
    t, cols = example_columns(n)
    names = list(cols)
    rows = [dict(zip(names, values), time=int(ts))
            for ts, *values in zip(t, *(cols[k].tolist() for k in names))]
    parsed = fastavro.parse_schema(example_schema.avro)

    def baseline():
        stream = io.BytesIO()
        write = fastavro.schemaless_writer
        for r in rows:
            write(stream, parsed, r)
        return stream.getvalue()

    assert len(benchmark.pedantic(baseline, rounds=3, iterations=1)) > n
    _rate(benchmark, n)
