"""Store reads beyond `read`: columnar append, exact counts, raw blocks, overviews."""

import os

import fastavro
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import speeddata
from speeddata import DecodeError
from speeddata.codec import Plan, decode
from speeddata.errors import StoreWarning
from speeddata.send import example_columns
from speeddata.store import _format as F

from helpers import EXAMPLE_AVSC, T0

NULLABLE = {"type": "record", "name": "n", "fields": [
    {"name": "time", "type": "long"}, {"name": "v", "type": ["null", "double"]},
    {"name": "s", "type": ["null", "string"]}, {"name": "k", "type": "int"}]}


@pytest.fixture
def store(tmp_path):
    with speeddata.store.open(tmp_path / "s", block_bytes=4096) as s:
        yield s


def test_append_columns_round_trips_through_read_and_fastavro(store):
    ch = store.create_channel("example", EXAMPLE_AVSC)
    t, data = example_columns(0, 5000, T0, 1_000_000)
    result = ch.append_columns(t, data)
    assert result.records == 5000 and result.rejected == {}
    cols = ch.read()
    assert cols.time.tolist() == t.tolist()
    for name, values in data.items():
        assert cols[name].tolist() == list(values), name
    ch.flush()
    rows = []
    for path in ch.segments():
        with open(path, "rb") as f:
            rows.extend(fastavro.reader(f))
    assert [r["counter"] for r in rows] == data["counter"].tolist()
    assert [r["message"] for r in rows] == list(data["message"])
    # Columns in, and datetime64 times
    again = store.create_channel("again", EXAMPLE_AVSC)
    again.append_columns(cols.take(slice(0, 10)))
    again.append_columns(cols.time[10:20].astype("datetime64[ns]"),
                         {k: v[10:20] for k, v in cols.data.items()})
    assert again.read().counter.tolist() == list(range(20))


def test_a_long_append_is_stored_in_slices_and_a_bad_value_anywhere_stores_nothing(store):
    from speeddata.store._appends import APPEND_SLICE_RECORDS
    ch = store.create_channel("example", EXAMPLE_AVSC)
    n = 3 * APPEND_SLICE_RECORDS + 123
    t, data = example_columns(0, n, T0, 1_000_000)
    late = n - 5                                      # in the last slice
    for bad, why in ((42, "int, not a string"), ("\ud800", "surrogates not allowed"),
                     (None, "NoneType, not a string")):
        message = data["message"].copy()
        message[late] = bad
        with pytest.raises(DecodeError, match=rf"'message', row {late}: .*({why})"):
            ch.append_columns(t, {**data, "message": message})
        assert ch.count() == 0 and ch.stats().stored_records == 0
    assert ch.append_columns(t, data).records == n
    cols = ch.read()
    assert cols.time.tolist() == t.tolist()
    assert cols.message.tolist() == data["message"].tolist()
    assert cols.counter.tolist() == data["counter"].tolist()


def test_append_columns_nullable_strings_and_bad_columns(store):
    ch = store.create_channel("n", NULLABLE)
    v = np.ma.MaskedArray([1.5, 0.0, 2.5], mask=[False, True, False])
    s = np.ma.MaskedArray(np.array(["a", "", "b"], dtype=object), mask=[False, True, False])
    ch.append_columns(T0 + np.arange(3), {"v": v, "s": s, "k": np.arange(3)})
    cols = ch.read()
    assert cols.v.tolist() == [1.5, None, 2.5] and cols.s.tolist() == ["a", None, "b"]
    with pytest.raises(DecodeError, match="no column for signal 'k'"):
        ch.append_columns(T0 + np.arange(3), {"v": v, "s": s})
    with pytest.raises(DecodeError, match="times must be int64 ns"):
        ch.append_columns(np.array([1.5]), {"v": v[:1], "s": s[:1], "k": [1]})
    stamped = store.create_channel("p", {"type": "record", "name": "p",
                                         "fields": [{"name": "x", "type": "double"}]})
    stamped.append_columns(None, {"x": np.array([1.0, 2.0])}, receive_time=T0 + 5)
    assert stamped.read().time.tolist() == [T0 + 5] * 2


def test_strings_and_nullable_strings_in_both_reading_modes(store):
    ch = store.create_channel("n", NULLABLE)
    rng = np.random.default_rng(2)
    n = 3000
    words = np.array(["idle", "run", "fault", "héllo"], dtype=object)
    s = np.ma.MaskedArray(words[rng.integers(0, 4, n)], mask=rng.random(n) < 0.3)
    ch.append_columns(T0 + np.arange(n), {"v": rng.normal(size=n), "s": s,
                                          "k": np.arange(n)})
    whole = ch.read()
    chunks = list(ch.iter_read(chunk_records=400))
    assert len(chunks) > 3
    joined = [x for c in chunks for x in c.s.tolist()]
    expect = [None if m else w for w, m in zip(s.data, s.mask)]
    assert whole.s.tolist() == expect and joined == expect


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_count_is_exact_on_random_ranges_even_out_of_order(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("count")
    times = np.array(data.draw(st.lists(st.integers(0, 5000), min_size=1, max_size=800)))
    with speeddata.store.open(path, block_bytes=256) as store:
        ch = store.create_channel("n", NULLABLE)
        ch.append_columns(times, {"v": np.zeros(len(times)), "s": ["x"] * len(times),
                                  "k": np.arange(len(times))})
        for _ in range(5):
            lo = data.draw(st.integers(-10, 5010))
            hi = data.draw(st.integers(lo, 5020))
            n = int(((times >= lo) & (times < hi)).sum())
            assert ch.count(lo, hi) == n == len(ch.read(lo, hi))
            assert ch.count(lo, hi, estimate=True) >= n
        assert ch.count() == len(times)


def test_time_may_be_named_among_signals(store):
    ch = store.create_channel("n", NULLABLE)
    ch.append_columns(T0 + np.arange(3), {"v": np.ones(3), "s": ["a"] * 3, "k": np.arange(3)})
    cols = ch.read(signals=["time", "k"])
    assert cols.signals == ["k"] and cols.time.tolist() == (T0 + np.arange(3)).tolist()
    assert ch.read(signals=["time"]).signals == []


def test_iter_blocks_gives_the_stored_blocks(store):
    ch = store.create_channel("example", EXAMPLE_AVSC)
    t, data = example_columns(0, 4000, T0, 1_000_000)
    ch.append_columns(t, data)
    blocks = list(ch.iter_blocks(T0 + 1_000_000_000, T0 + 2_000_000_000))
    assert len(blocks) > 1 and all(b.codec == "zstandard" for b in blocks)
    plan = Plan(ch.schema)
    got = np.concatenate([decode(plan, F.Decompressor(b.codec)(b.payload), b.records).counter
                          for b in blocks])
    assert set(range(1000, 2000)) <= set(got.tolist())
    assert blocks[0].tmin <= T0 + 1_000_000_000 and blocks[-1].tmax >= T0 + 1_999_000_000
    assert sum(b.records for b in ch.iter_blocks()) == 4000


def reference_overview(cols, name, lo, hi, buckets):
    """What numpy says from the full read, by the overview's own definitions."""
    edges = np.array([lo + (hi - lo) * k // buckets for k in range(buckets + 1)])
    b = np.searchsorted(edges, cols.time, "right") - 1
    v = cols[name]
    x = np.ma.getdata(v).astype(float)
    ok = ~np.ma.getmaskarray(v) & ~np.isnan(x)
    out = {k: [] for k in ("count", "min", "max", "mean", "first", "last", "min_time",
                           "max_time", "records")}
    for k in range(buckets):
        sel = (b == k) & ok
        out["records"].append(int((b == k).sum()))
        xs, ts = x[sel], cols.time[sel]
        out["count"].append(len(xs))
        if not len(xs):
            for key in ("min", "max", "mean", "first", "last"):
                out[key].append(np.nan)
            out["min_time"].append(0)
            out["max_time"].append(0)
            continue
        out["min"].append(xs.min())
        out["max"].append(xs.max())
        with np.errstate(invalid="ignore"):          # inf and -inf together: NaN
            out["mean"].append(xs.sum() / len(xs))
        out["first"].append(xs[ts == ts.min()].min())
        out["last"].append(xs[ts == ts.max()].max())
        out["min_time"].append(ts[xs == xs.min()].min())
        out["max_time"].append(ts[xs == xs.max()].min())
    return out


OV_SCHEMA = {"type": "record", "name": "o", "fields": [
    {"name": "time", "type": "long"}, {"name": "a", "type": "double"},
    {"name": "b", "type": ["null", "float"]}, {"name": "c", "type": "int"},
    {"name": "s", "type": "string"}]}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_overview_equals_numpy_on_the_full_read(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("ov")
    n = data.draw(st.integers(1, 1500))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    times = np.sort(rng.integers(0, 100_000, n))
    if data.draw(st.booleans()):                     # out-of-order stretches
        k = data.draw(st.integers(0, n - 1))
        times[k:k + 50] = times[k:k + 50][::-1]
    a = rng.normal(size=n)
    a[rng.random(n) < 0.02] = np.nan
    b = np.ma.MaskedArray(rng.normal(size=n).astype(np.float32), mask=rng.random(n) < 0.3)
    c = rng.integers(-5, 5, n).astype(np.int32)       # many ties
    with speeddata.store.open(path, block_bytes=data.draw(st.sampled_from([128, 512, 4096]))) \
            as store:
        ch = store.create_channel("o", OV_SCHEMA)
        ch.append_columns(times, {"a": a, "b": b, "c": c, "s": ["x"] * n})
        full = ch.read()
        buckets = data.draw(st.integers(1, 40))
        lo = data.draw(st.integers(-1000, 50_000))
        hi = data.draw(st.integers(lo + 1, 110_000))
        ov = ch.overview(lo, hi, buckets=buckets)
        part = full.take((full.time >= lo) & (full.time < hi))
        assert len(ov) == buckets and ov.time[0] == lo
        for name in ("a", "b", "c"):
            ref = reference_overview(part, name, lo, hi, buckets)
            got = ov[name]
            assert ov.count.tolist() == ref["records"]
            assert got.count.tolist() == ref["count"]
            for key in ("min", "max", "first", "last"):
                np.testing.assert_array_equal(getattr(got, key), ref[key], err_msg=key)
            np.testing.assert_allclose(got.mean, ref["mean"], rtol=1e-9, atol=1e-12)
            has = np.array(ref["count"]) > 0
            assert np.array_equal(got.min_time[has], np.array(ref["min_time"])[has])
            assert np.array_equal(got.max_time[has], np.array(ref["max_time"])[has])


def test_overview_reads_summaries_and_decodes_only_edges(store):
    ch = store.create_channel("o", OV_SCHEMA)
    n = 200_000
    t = T0 + np.arange(n) * 1_000_000                 # 200 s at 1 kHz
    ch.append_columns(t, {"a": np.sin(np.arange(n) / 100), "b": np.ones(n, np.float32),
                          "c": np.zeros(n, np.int32), "s": ["x"] * n})
    ov = ch.overview(T0, T0 + 200 * 10**9, buckets=10)
    assert ov.count.tolist() == [20_000] * 10
    assert ov.decoded_blocks <= 2 * 10 and ov.summarised_blocks > 10 * ov.decoded_blocks
    full = ch.read()
    assert ov["a"].max[0] == full.a[:20_000].max()
    with pytest.raises(speeddata.SchemaError, match="'s' is string"):
        ch.overview(T0, T0 + 10, signals=["s"])


def _assert_overview_matches(ov, full, lo, hi, buckets, names=("a", "c")):
    part = full.take((full.time >= lo) & (full.time < hi))
    for name in names:
        ref = reference_overview(part, name, lo, hi, buckets)
        assert ov.count.tolist() == ref["records"]
        assert ov[name].count.tolist() == ref["count"], name
        for key in ("min", "max", "first", "last"):
            np.testing.assert_array_equal(getattr(ov[name], key), ref[key], err_msg=key)
        np.testing.assert_allclose(ov[name].mean, ref["mean"], rtol=1e-9, err_msg=name)
        has = np.array(ref["count"]) > 0
        for key in ("min_time", "max_time"):
            np.testing.assert_array_equal(getattr(ov[name], key)[has],
                                          np.array(ref[key])[has], err_msg=key)


def test_overview_merges_runs_of_blocks_and_falls_back_where_summaries_are_missing(tmp_path):
    n = 40_000
    rng = np.random.default_rng(7)
    t = T0 + np.arange(n) * 1_000_000
    with speeddata.store.open(tmp_path, block_bytes=256) as store:   # ~10 records a block
        ch = store.create_channel("o", OV_SCHEMA)
        ch.append_columns(t, {"a": rng.normal(size=n), "b": np.ones(n, np.float32),
                              "c": rng.integers(-9, 9, n).astype(np.int32), "s": ["x"] * n})
        blocks = sum(len(v.index) for v in ch.views())
        assert blocks > 30 * 64
        full = ch.read()
        lo, hi = T0 + 1234, T0 + n * 1_000_000 - 999
        ov = ch.overview(lo, hi, buckets=3)
        assert ov.summarised_blocks > blocks - 4 * 64 and ov.decoded_blocks <= 6
        _assert_overview_matches(ov, full, lo, hi, 3)
        sums = [v.sum_path for v in ch.views()]
    for p in sums:           # half of each segment's summaries lost: those blocks decode
        with open(p, "r+b") as f:
            f.truncate(os.path.getsize(p) // 2)
    with speeddata.store.open(tmp_path, readonly=True) as store:
        ov = store["o"].overview(lo, hi, buckets=3)
        assert ov.decoded_blocks > blocks // 3
        _assert_overview_matches(ov, full, lo, hi, 3)


def test_an_overview_skips_a_damaged_block_it_decodes_and_names_it(tmp_path):
    """Every block straddles a bucket edge here, so all 250k records are decoded (in
    parallel runs, each folding its own statistics): the damaged block is left out with a
    warning, and the rest equals numpy on what a read returns."""
    n = 250_000
    rng = np.random.default_rng(3)
    with speeddata.store.open(tmp_path, block_bytes=1024) as store:
        ch = store.create_channel("o", OV_SCHEMA)
        ch.append_columns(T0 + np.arange(n) * 1_000_000, {
            "a": rng.normal(size=n), "b": np.ones(n, np.float32),
            "c": rng.integers(-9, 9, n).astype(np.int32), "s": ["x"] * n})
        ch.flush()
        view = ch.views()[0]
        rot, junk = view.index[len(view.index) // 3], view.index[2 * len(view.index) // 3]
        sync = view.head()[1]
    with open(view.path, "r+b") as f:
        f.seek(int(rot["offset"]) + int(rot["length"]) // 2)     # fails to decompress
        f.write(b"\xff" * 16)
        f.seek(int(junk["offset"]))                                # decompresses, not records
        count, payload, _ = F.parse_block(f.read(int(junk["length"])), 0, sync)
        for size in range(len(payload) - 64, len(payload)):     # a frame of the same length
            frame = zstandard.ZstdCompressor(write_checksum=True).compress(rng.bytes(size))
            if len(frame) == len(payload):
                break
        assert len(frame) == len(payload)
        f.seek(int(junk["offset"]) + int(junk["length"]) - F.SYNC_SIZE - len(payload))
        f.write(frame)
    lo, hi, buckets = T0, T0 + n * 1_000_000, n // 20
    named = "|".join(f"skipping corrupt block at byte {int(e['offset'])}" for e in (rot, junk))
    with speeddata.store.open(tmp_path, readonly=True) as store:
        ch = store["o"]
        with pytest.warns(StoreWarning, match=named) as read_warnings:
            full = ch.read()
        with pytest.warns(StoreWarning, match=named) as overview_warnings:
            ov = ch.overview(lo, hi, buckets=buckets)
    for caught in (read_warnings, overview_warnings):
        assert len([w for w in caught if "skipping corrupt block" in str(w.message)]) == 2
    assert len(full) == n - int(rot["count"]) - int(junk["count"])
    assert ov.decoded_blocks >= sum(len(v.index) for v in store["o"].views()) - 1
    edges = np.array([lo + (hi - lo) * k // buckets for k in range(buckets + 1)])
    b = np.searchsorted(edges, full.time, "right") - 1
    counts = np.bincount(b, minlength=buckets)
    assert ov.count.tolist() == counts.tolist()
    has = counts > 0
    starts = np.flatnonzero(np.diff(np.r_[-1, b]))          # read back in time order
    ends = np.r_[starts[1:], len(b)]
    for name in ("a", "c"):
        x = full[name].astype(float)
        got = ov[name]
        np.testing.assert_array_equal(got.min[has], np.minimum.reduceat(x, starts))
        np.testing.assert_array_equal(got.max[has], np.maximum.reduceat(x, starts))
        np.testing.assert_array_equal(got.first[has], x[starts])
        np.testing.assert_array_equal(got.last[has], x[ends - 1])


def test_summary_rows_held_back_by_the_writer_do_not_spoil_runs_of_blocks(tmp_path):
    """While a segment is open its newest summary rows wait to be written 64 at a time; an
    overview in between decodes those blocks, and once the rows are written (no new block
    with them) those blocks are merged from their summaries again."""
    n = 30_000
    t = T0 + np.arange(n) * 1_000_000
    data = {"a": np.sin(np.arange(n) / 50), "b": np.ones(n, np.float32),
            "c": np.zeros(n, np.int32), "s": ["x"] * n}
    with speeddata.store.open(tmp_path, block_bytes=256) as store, \
            speeddata.store.open(tmp_path, readonly=True) as server:   # as serve reads
        ch = store.create_channel("o", OV_SCHEMA)
        ch.append_columns(t[:-300], {k: v[:-300] for k, v in data.items()})
        # a few more blocks: written, their rows held back (fewer than a batch)
        ch.append_columns(t[-300:], {k: v[-300:] for k, v in data.items()})
        lo, hi = T0, T0 + n * 1_000_000
        before = server["o"].overview(lo, hi, buckets=2)
        ch._writer.write_summaries()     # the rows come, as a worker writes them: no block
        after = server["o"].overview(lo, hi, buckets=2)
        full = server["o"].read()
    assert before.decoded_blocks > 2
    assert after.decoded_blocks <= 2
    _assert_overview_matches(after, full, lo, hi, 2)


def test_block_summaries_from_ingest_equal_those_from_decoding(tmp_path):
    """The block stage keeps numeric values as it validates; its summaries must be the
    ones a decode of the stored block gives, for every numeric type, nulls and NaN."""
    from speeddata.store._overview import summary_dtype
    schema = {"type": "record", "name": "m", "fields": [
        {"name": "time", "type": "long"}, {"name": "flag", "type": "boolean"},
        {"name": "n", "type": "long"}, {"name": "i", "type": ["null", "int"]},
        {"name": "f", "type": ["null", "float"]}, {"name": "d", "type": "double"},
        {"name": "s", "type": "string"}]}
    n = 3000
    rng = np.random.default_rng(3)
    d = rng.normal(size=n)
    d[rng.random(n) < 0.05] = np.nan
    d[::97], d[::89], d[-40:] = np.inf, -np.inf, np.nan     # extremes, and a block of NaN
    with speeddata.store.open(tmp_path, block_bytes=700) as store:
        ch = store.create_channel("m", schema)
        ch.append_columns(np.sort(rng.integers(0, 2000, n)), {     # many equal times
            "flag": rng.random(n) < 0.5, "n": rng.integers(-2**40, 2**40, n),
            "i": np.ma.MaskedArray(rng.integers(-9, 9, n).astype(np.int32),
                                   mask=rng.random(n) < 0.3),
            "f": np.ma.MaskedArray(rng.normal(size=n).astype(np.float32),
                                   mask=rng.random(n) < 0.3),
            "d": d, "s": ["x"] * n})
        ch.flush()
        views = ch.views()
        assert sum(len(v.index) for v in views) > 20
        dtype = summary_dtype(ch.schema)
        written = [v.summaries(dtype).copy() for v in views]
        paths = [v.sum_path for v in views]
    for p in paths:
        os.remove(p)
    with speeddata.store.open(tmp_path) as store:
        ch = store["m"]
        ch.build_summaries()
        rebuilt = [np.fromfile(p, dtype) for p in paths]
        # and both are right: an overview made of them is what numpy says
        full = ch.read()
        lo, hi = int(full.time[0]), int(full.time[-1]) + 1
        ov = ch.overview(lo, hi, buckets=3)
        assert ov.summarised_blocks > 10
        _assert_overview_matches(ov, full, lo, hi, 3, names=("flag", "n", "i", "f", "d"))
    for a, b in zip(written, rebuilt):
        assert len(a) and a.tobytes() == b.tobytes()


def test_overview_of_a_store_written_before_summaries(tmp_path):
    path = tmp_path / "old"
    with speeddata.store.open(path, block_bytes=2048, segment_bytes=16_384) as store:
        ch = store.create_channel("o", OV_SCHEMA)
        n = 5000
        ch.append_columns(T0 + np.arange(n) * 1000, {"a": np.arange(n, dtype=float),
                                                     "b": np.zeros(n, np.float32),
                                                     "c": np.arange(n, dtype=np.int32),
                                                     "s": ["x"] * n})
        first = ch.overview(T0, T0 + n * 1000, buckets=7)
        paths = ch.segments()
    for p in paths:                                   # as an older SpeedData left it
        os.remove(p[:-5] + ".sum")
    with speeddata.store.open(path, readonly=True) as store:   # cannot build: decodes
        again = store["o"].overview(T0, T0 + n * 1000, buckets=7)
        assert again.decoded_blocks > first.decoded_blocks     # right, if slower
        for key in ("min", "max", "mean", "first", "last"):
            np.testing.assert_array_equal(getattr(again["a"], key), getattr(first["a"], key))
    with speeddata.store.open(path) as store:         # built on first use, for good
        third = store["o"].overview(T0, T0 + n * 1000, buckets=7)
        assert third.decoded_blocks == first.decoded_blocks
        np.testing.assert_array_equal(third["c"].max, first["c"].max)
    assert all(os.path.exists(p[:-5] + ".sum") for p in paths)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_records_and_summary_rows_merge_to_the_same_statistics(data):
    """Buckets merged from records one by one, in any order, equal those merged from
    summary rows of arbitrary pieces of the same records."""
    from speeddata._summary import Stats
    from speeddata.store import _overview as O
    n = data.draw(st.integers(1, 300))
    buckets = data.draw(st.integers(1, 9))
    t = np.array(data.draw(st.lists(st.integers(0, 50), min_size=n, max_size=n)), np.int64)
    x = np.array(data.draw(st.lists(st.sampled_from([-1.0, 0.0, 2.0, np.nan]), min_size=n,
                                    max_size=n)))
    null = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n))).view(np.uint8)
    edges = np.array([-3 + 57 * k // buckets for k in range(buckets + 1)], np.int64)
    direct = Stats(buckets)
    direct.add_records(x, t, null, edges)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=6))) | {0, n})
    dtype = np.dtype([("offset", "<u8")] + [(f"{s}0", "<i8" if s in ("n", "tmin", "tmax",
                     "tfirst", "tlast") else "<f8") for s in O._STATS])
    pieces = []
    for a, b in zip(cuts[:-1], cuts[1:]):      # each piece summarised alone, per bucket
        part = Stats(buckets)
        part.add_records(x[a:b], t[a:b], null[a:b], edges)
        pieces.append(part)
    merged = Stats(buckets)
    for part in reversed(pieces):
        for k in range(buckets):
            row = np.zeros(1, dtype)
            for stat in O._STATS:
                row[f"{stat}0"] = getattr(part, stat)[k]
            merged.add_rows(row, 0, np.array([k], np.int64))
    for stat in O._STATS:
        np.testing.assert_array_equal(getattr(merged, stat), getattr(direct, stat), err_msg=stat)
    keep = ~null.astype(bool) & ~np.isnan(x)
    assert direct.n.sum() == keep.sum()


def test_reads_keep_a_bounded_number_of_segments_mapped(tmp_path):
    """A mapping holds a file descriptor: reading many segments must not hold one each,
    and closing the store lets go of them all."""
    from speeddata.store import _view
    def fds():
        return len(os.listdir("/proc/self/fd"))
    n = 120_000
    with speeddata.store.open(tmp_path, block_bytes=1024, segment_bytes=4096) as store:
        ch = store.create_channel("o", OV_SCHEMA)
        ch.append_columns(T0 + np.arange(n) * 1000, {
            "a": np.zeros(n), "b": np.ones(n, np.float32), "c": np.zeros(n, np.int32),
            "s": ["x"] * n})
    with speeddata.store.open(tmp_path, readonly=True) as store:
        before = fds()
        segments = len(store["o"].segments())
        assert segments > 2 * _view.MAX_MAPPED
        assert len(store["o"].read()) == n
        assert fds() - before <= _view.MAX_MAPPED
    assert fds() <= before
