"""Store reads at any zoom (issue 9), each against a baseline in the same run.

- overview of 24 h at 1 kHz (86 M records, 4 doubles), 1200 buckets: < 50 ms, within 3x of
  a 1-minute overview
- ingest CPU per datagram with summaries: within 5% of the same run without
- append_columns, example schema: >= 5 M records/s
- full read of the example schema with its string field, 1 M records: >= 10 M records/s
  (the fastavro baseline is in test_store_bench.py)
- a 1-second range, 10k records, all signals: < 1 ms median
Run: make bench  (or .venv/bin/pytest benchmarks/test_reads_bench.py --benchmark-enable)
"""

import numpy as np
import pytest

import speeddata

import summary_cost
from benchdata import T0, example_columns, example_datagrams

FOUR = {"type": "record", "name": "four", "fields": [{"name": "time", "type": "long"}] + [
    {"name": f"s{k}", "type": "double"} for k in range(4)]}
DAY = 86_400 * 10**9


def _rate(benchmark, n):
    if benchmark.stats:
        benchmark.extra_info["records_per_s"] = round(n / benchmark.stats.stats.median)


@pytest.fixture(scope="module")
def day(tmp_path_factory, full_size):
    """24 h of a 1 kHz channel of 4 doubles (a few minutes of it in the smoke run)."""
    seconds = 86_400 if full_size else 300
    path = tmp_path_factory.mktemp("day")
    with speeddata.store.open(path) as store:
        ch = store.create_channel("four", FOUR)
        step = 3600                   # an hour of records per append
        for first in range(0, seconds, step):
            k = np.arange(first * 1000, min(seconds, first + step) * 1000)
            x = k / 1000.0
            ch.append_columns(T0 + k * 1_000_000, {
                "s0": np.sin(x / 60), "s1": np.cos(x / 7) + (k % 1000 == 0),   # spikes
                "s2": (k % 5000) / 5000.0, "s3": np.sin(x) * np.cos(x / 3600)},
                receive_time=T0 + first * 10**9)
    return path, seconds


@pytest.mark.parametrize("span", ["minute", "day"])
def test_overview(benchmark, day, span):
    path, seconds = day
    benchmark.group = "overview, 1200 buckets"
    width = 60 * 10**9 if span == "minute" else seconds * 10**9 - 10**9
    # off the grid of blocks (0.4 s at 1 kHz), so that every bucket edge cuts a block
    start = T0 + (seconds * 10**9 - width) // 2 + 123_456_789
    with speeddata.store.open(path, readonly=True) as store:
        ch = store["four"]
        ov = benchmark(ch.overview, start, start + width, 1200)
        benchmark.extra_info["decoded_blocks"] = ov.decoded_blocks
        benchmark.extra_info["summarised_blocks"] = ov.summarised_blocks
    assert abs(ov.count.sum() - width // 1_000_000) <= 1


def test_append_columns(benchmark, tmp_path, full_size):
    n = 2_000_000 if full_size else 20_000
    t, data = example_columns(n)
    counter = iter(range(10**6))

    def setup():
        store = speeddata.store.open(tmp_path / f"s{next(counter)}")
        schema = speeddata.send.builtin_schema("example")
        return (store, store.create_channel("example", schema)), {}

    def append(store, ch):
        ch.append_columns(t, data, receive_time=T0)
        ch.close()
        store.close()

    benchmark.pedantic(append, setup=setup, rounds=5 if full_size else 1)
    _rate(benchmark, n)


def _example_store(path, n: int, reorder: bool = False):
    """The example channel at 10 kHz; with ``reorder``, one stretch of 500 records sent
    out of order."""
    t, data = example_columns(n, step_ns=100_000)
    if reorder:
        t = t.copy()
        t[n // 2:n // 2 + 500] = t[n // 2:n // 2 + 500][::-1]
    with speeddata.store.open(path) as store:
        store.create_channel("example", speeddata.send.builtin_schema("example")
                             ).append_columns(t, data, receive_time=T0)
    return path, n


@pytest.fixture(scope="module")
def example_store(tmp_path_factory, full_size):
    return _example_store(tmp_path_factory.mktemp("example"),
                          1_000_000 if full_size else 20_000)


@pytest.fixture(scope="module")
def reordered_store(tmp_path_factory, full_size):
    return _example_store(tmp_path_factory.mktemp("reordered"),
                          1_000_000 if full_size else 20_000, reorder=True)


def _full_read(benchmark, stored, **kwargs):
    path, n = stored
    benchmark.group = "full read, example schema"
    with speeddata.store.open(path, readonly=True) as store:
        cols = benchmark.pedantic(store["example"].read, kwargs=kwargs, rounds=5,
                                  warmup_rounds=1)
    assert len(cols) == n and np.all(np.diff(cols.time) >= 0)
    _rate(benchmark, n)


def test_full_read_with_strings(benchmark, example_store):
    _full_read(benchmark, example_store)


def test_full_read_one_reordered_stretch(benchmark, reordered_store):
    _full_read(benchmark, reordered_store)


def test_full_read_numeric_only(benchmark, example_store):
    _full_read(benchmark, example_store,
               signals=["counter", "sine_wave", "ramp", "square_wave", "noise"])


def test_one_second_range_all_signals(benchmark, example_store):
    path, n = example_store
    with speeddata.store.open(path, readonly=True) as store:
        ch = store["example"]
        mid = T0 + (n // 2) * 100_000
        cols = benchmark(ch.read, mid, mid + 10**9)
    assert len(cols) == min(10_000, n - n // 2)


@pytest.mark.parametrize("summaries", ["with", "without"])
def test_ingest_with_and_without_summaries(benchmark, tmp_path, full_size, example_schema,
                                           summaries):
    """The store's side of ingest (validate, block, compress, index, summarise) for the
    example schema at 20 records per datagram, in one thread as a worker runs it (an
    append would compress in threads of its own); "without" skips the block summaries.
    benchmarks/summary_cost.py measures the same with rounds that alternate."""
    n = 400_000 if full_size else 4_000
    datagrams = example_datagrams(example_schema, n, per_datagram=20)
    benchmark.group = "ingest, 20 records per datagram"
    counter = iter(range(10**6))

    def setup():
        return summary_cost.open_writer(tmp_path / f"s{next(counter)}", summaries == "with"), {}

    def ingest(store, ch):
        summary_cost.stream(store, ch, datagrams)

    benchmark.pedantic(ingest, setup=setup, rounds=7 if full_size else 1)
    _rate(benchmark, n)
