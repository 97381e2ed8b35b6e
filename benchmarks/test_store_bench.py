"""Segment store speed (issue 3), example schema, one core, all in one run.

- append_datagrams with compression: target >= 2 M records/s
- read of 10 M records to columns: >= 10 M records/s and >= 20x fastavro's OCF reader + numpy
- a 1-second range read, store of 10 segments vs 10,000: < 2x apart
- HDF5 export of 10 M records x 4 doubles: >= 50% of writing the same arrays with h5py
Run: make bench  (or .venv/bin/pytest benchmarks/test_store_bench.py --benchmark-enable)
"""

import os

import fastavro
import h5py
import numpy as np
import pytest

import speeddata
from speeddata.codec import Plan, encode_columns

from benchdata import T0, example_datagrams

FOUR = {"type": "record", "name": "four", "fields": [{"name": "time", "type": "long"}] + [
    {"name": f"s{k}", "type": "double"} for k in range(4)]}


def _rate(benchmark, n):
    if benchmark.stats:
        benchmark.extra_info["records_per_s"] = round(n / benchmark.stats.stats.median)


@pytest.fixture(scope="module")
def sizes(full_size):
    return {"append": 2_000_000, "read": 10_000_000, "fastavro": 1_000_000,
            "segments": 10_000, "export": 10_000_000} if full_size else \
           {"append": 20_000, "read": 50_000, "fastavro": 20_000, "segments": 100,
            "export": 50_000}


@pytest.fixture(scope="module")
def filled(tmp_path_factory, example_schema, sizes):
    """A store holding sizes['read'] example records (100 kHz)."""
    path = tmp_path_factory.mktemp("read")
    n = sizes["read"]
    with speeddata.store.open(path) as store:
        ch = store.create_channel("example", example_schema.avro)
        step = 1_000_000
        for first in range(0, n, step):
            ch.append_datagrams(example_datagrams(example_schema, min(step, n - first),
                                                  first=first, step_ns=10_000))
    return path, n


def test_append_datagrams(benchmark, tmp_path, example_schema, sizes):
    n = sizes["append"]
    datagrams = example_datagrams(example_schema, n)
    counter = iter(range(10**6))

    def setup():
        store = speeddata.store.open(tmp_path / f"s{next(counter)}")
        return (store, store.create_channel("example", example_schema.avro)), {}

    def append(store, ch):
        ch.append_datagrams(datagrams, receive_time=T0)
        ch.close()
        store.close()

    benchmark.pedantic(append, setup=setup, rounds=5 if n > 10**5 else 1)
    _rate(benchmark, n)
    sizes_on_disk = [sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
                     for d in (tmp_path / p / "channels" / "example"
                               for p in os.listdir(tmp_path))]
    benchmark.extra_info["disk_bytes_per_record"] = round(min(sizes_on_disk) / n, 2)


def test_read_all(benchmark, filled):
    path, n = filled
    with speeddata.store.open(path, readonly=True) as store:
        cols = benchmark.pedantic(store["example"].read, rounds=5, warmup_rounds=1)
    assert len(cols) == n and cols.counter[-1] == n - 1
    _rate(benchmark, n)


def test_read_fastavro_baseline(benchmark, filled, sizes):
    """fastavro.reader over the same segments, then numpy columns (first N records)."""
    path, _ = filled
    n = sizes["fastavro"]
    with speeddata.store.open(path, readonly=True) as store:
        segments = store["example"].segments()

    def baseline():
        rows = []
        for seg in segments:
            with open(seg, "rb") as f:
                for r in fastavro.reader(f):
                    rows.append(r)
                    if len(rows) == n:
                        break
            if len(rows) == n:
                break
        return {k: np.array([r[k] for r in rows]) for k in rows[0]}

    cols = benchmark.pedantic(baseline, rounds=3)
    assert len(cols["time"]) == n
    _rate(benchmark, n)


@pytest.fixture(scope="module", params=["few", "many"])
def segmented(request, tmp_path_factory, sizes):
    """1 kHz data in 1-second segments: 10 of them, or sizes['segments']."""
    count = 10 if request.param == "few" else sizes["segments"]
    path = tmp_path_factory.mktemp(f"seg{count}")
    with speeddata.store.open(path, segment_span=1, block_bytes=1 << 20) as store:
        ch = store.create_channel("four", FOUR)
        plan = Plan(ch.schema)
        for second in range(count):   # a block a second, so a segment a second
            k = np.arange(second * 1000, (second + 1) * 1000)
            body, ends = encode_columns(plan, T0 + k * 1_000_000,
                                        {f"s{j}": k * 1.0 for j in range(4)})
            starts = np.concatenate([[0], ends[:-1]])
            view = memoryview(body)
            ch.append_datagrams([view[a:b] for a, b in zip(starts.tolist(), ends.tolist())],
                                receive_time=T0 + second * 10**9)   # received as it goes
            ch.flush()
        assert len(ch.segments()) >= count
    return path, count


def test_range_lookup(benchmark, segmented):
    path, count = segmented
    benchmark.group = "range lookup: 1 s of 1 kHz data"
    benchmark.extra_info["segments"] = count
    with speeddata.store.open(path, readonly=True) as store:
        ch = store["four"]
        mid = T0 + (count // 2) * 10**9 + 250_000_000
        cols = benchmark(ch.read, mid, mid + 10**9)
    assert len(cols) == 1000


@pytest.fixture(scope="module")
def four_store(tmp_path_factory, sizes):
    n = sizes["export"]
    path = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(1)
    data = {f"s{j}": rng.normal(size=n) for j in range(4)}
    time = T0 + np.arange(n, dtype=np.int64) * 10_000
    with speeddata.store.open(path) as store:
        ch = store.create_channel("four", FOUR)
        plan = Plan(ch.schema)
        step = 1_000_000
        for a in range(0, n, step):
            body, ends = encode_columns(plan, time[a:a + step],
                                        {k: v[a:a + step] for k, v in data.items()})
            starts = np.concatenate([[0], ends[:-1]])
            view = memoryview(body)
            ch.append_datagrams([view[x:y] for x, y in zip(starts.tolist(), ends.tolist())])
    return path, n, time, data


def test_export_hdf5(benchmark, four_store, tmp_path):
    path, n, _, _ = four_store
    benchmark.group = "HDF5: 10 M records x 4 doubles"
    out = tmp_path / "x.h5"

    def fresh():   # each round writes a new file; deleting the last one is not timed
        out.unlink(missing_ok=True)

    with speeddata.store.open(path, readonly=True) as store:
        benchmark.pedantic(store.export_hdf5, args=(out, T0, T0 + n * 10_000), setup=fresh,
                           rounds=3)
    with h5py.File(out) as f:
        assert len(f["four/s3"]) == n
    _rate(benchmark, n)


def test_h5py_baseline(benchmark, four_store, tmp_path):
    _, n, time, data = four_store
    benchmark.group = "HDF5: 10 M records x 4 doubles"

    out = tmp_path / "raw.h5"

    def write():
        with h5py.File(out, "w") as f:
            g = f.create_group("four")
            g.create_dataset("time", data=time)
            for k, v in data.items():
                g.create_dataset(k, data=v)

    benchmark.pedantic(write, setup=lambda: out.unlink(missing_ok=True), rounds=3)
    _rate(benchmark, n)


def test_read_what_export_writes(benchmark, four_store):
    """The decoding an export cannot avoid: a plain read of the same range (same group, so
    the table shows how much of the export is decoding and how much h5py)."""
    path, n, _, _ = four_store
    benchmark.group = "HDF5: 10 M records x 4 doubles"
    with speeddata.store.open(path, readonly=True) as store:
        cols = benchmark.pedantic(store["four"].read, args=(T0, T0 + n * 10_000), rounds=5,
                                  warmup_rounds=1)
    assert len(cols) == n
    _rate(benchmark, n)
