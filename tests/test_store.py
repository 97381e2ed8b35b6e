import datetime as dt
import json
import os
from pathlib import Path

import fastavro
import h5py
import numpy as np
import pytest

import speeddata
from speeddata import (ChannelExists, ChannelNotFound, SchemaError, StoreError, TagNotFound,
                       TimeRangeError)
from speeddata.codec import encoder
from speeddata.errors import StoreWarning

from helpers import EXAMPLE_AVSC, T0, TEMPERATURE_AVSC, example_record


@pytest.fixture
def store(tmp_path):
    with speeddata.store.open(tmp_path / "data", block_bytes=4096) as s:
        yield s


def fill(ch, n, start=0, **kw):
    return ch.append([example_record(i) for i in range(start, start + n)], **kw)


def test_create_append_read(store):
    ch = store.create_channel("example", EXAMPLE_AVSC)
    assert store.channels == ["example"] and store["example"] is ch and "example" in store
    assert fill(ch, 1000).records == 1000
    cols = ch.read()
    assert cols.counter.tolist() == list(range(1000))
    assert cols.time[0] == T0 and cols.message[4] == "m1"
    part = ch.read(T0 + 10_000_000, T0 + 20_000_000, signals=["sine_wave"])
    assert part.signals == ["sine_wave"] and len(part) == 10
    assert np.allclose(part.sine_wave, np.arange(10, 20) / 7)
    # the same instant in every accepted spelling
    iso = str(np.datetime64(T0 + 10_000_000, "ns")) + "Z"
    for start in (T0 + 10_000_000, iso, np.datetime64(T0 + 10_000_000, "ns")):
        assert ch.read(start, T0 + 20_000_000).counter[0] == 10
    when = dt.datetime.fromtimestamp((T0 + 10_000_000) / 1e9, dt.timezone.utc)
    assert ch.read(when, T0 + 20_000_000).counter[0] == 10
    assert len(ch.read(T0 + 5, T0 + 5)) == 0


def test_bad_requests_name_the_problem(store, tmp_path):
    ch = store.create_channel("example", EXAMPLE_AVSC)
    with pytest.raises(ChannelNotFound, match="'nope'"):
        store["nope"]
    with pytest.raises(TimeRangeError, match="before start"):
        ch.read(T0 + 10, T0)
    with pytest.raises(TimeRangeError, match="cannot read 'yesterday-ish'"):
        ch.read("yesterday-ish", None)
    with pytest.raises(SchemaError, match="no signal 'volts'"):
        ch.read(signals=["volts"])
    with pytest.raises(ChannelExists, match="other fields"):
        store.create_channel("example", TEMPERATURE_AVSC)
    assert store.create_channel("example", EXAMPLE_AVSC) is ch   # same fields: the same channel
    redoc = json.loads(EXAMPLE_AVSC.read_text())
    redoc["fields"][3]["doc"] = "a better description"
    assert store.create_channel("example", redoc) is ch         # a doc is not a field change
    with pytest.raises(StoreError, match="bad channel name"):
        store.create_channel("../evil", EXAMPLE_AVSC)
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not a SpeedData store"):
        speeddata.store.open(other)
    assert (other / "thesis.tex").read_text() == "precious"


def test_datagrams_bad_ones_counted_rest_stored(store):
    ch = store.create_channel("example", EXAMPLE_AVSC)
    one = encoder(ch.schema)
    good = [one(example_record(i)) for i in range(10)]
    result = ch.append_datagrams(good[:5] + [b"", b"\x00\x02", good[5] + b"\x01"] + good[5:])
    assert result.records == 10 and result.datagrams == 13
    assert result.rejected == {"empty": 1, "truncated": 2}
    assert ch.read().counter.tolist() == list(range(10))
    assert ch.stats().rejects == {"empty": 1, "truncated": 2}


def test_out_of_order_and_repeated_times_come_back_sorted(store):
    ch = store.create_channel("example", EXAMPLE_AVSC)
    rng = np.random.default_rng(3)
    times = T0 + rng.integers(0, 1000, size=3000) * 1_000_000   # many repeats, any order
    ch.append([example_record(i, int(t)) for i, t in enumerate(times)])
    lo, hi = T0 + 200_000_000, T0 + 700_000_000
    cols = ch.read(lo, hi)
    inside = (times >= lo) & (times < hi)
    expected = np.arange(3000)[inside][np.argsort(times[inside], kind="stable")]
    assert cols.counter.tolist() == expected.tolist()
    assert np.all(np.diff(cols.time) >= 0)


def test_stamped_channel_records_receive_time(store):
    ch = store.create_channel("plain", {"type": "record", "name": "p",
                                        "fields": [{"name": "v", "type": "double"}]})
    wire = encoder(ch.schema)
    ch.append_datagrams([wire({"v": 1.5}), wire({"v": 2.5})], receive_time=T0 + 7)
    cols = ch.read()
    assert cols.time.tolist() == [T0 + 7, T0 + 7] and cols.v.tolist() == [1.5, 2.5]


def test_segments_are_real_avro(tmp_path):
    with speeddata.store.open(tmp_path, block_bytes=2048, segment_bytes=20_000) as store:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        fill(ch, 3000)
        ch.flush()
        segments = ch.segments()
        assert len(segments) > 1 and segments == sorted(segments)
        # one append's blocks are written a run at a time: a run stops where a segment
        # is full, which it overfills by one block at most
        for path in segments:
            assert os.path.getsize(path) < 20_000 + 2 * 2048
        rows = []
        for path in segments:
            with open(path, "rb") as f:
                reader = fastavro.reader(f)
                assert reader.codec == "zstandard"
                rows.extend(reader)
        assert rows == [example_record(i) for i in range(3000)]
        assert speeddata.read_avro(segments[0]).example.counter[0] == 0


def test_reopen_sees_everything_and_holds(tmp_path):
    with speeddata.store.open(tmp_path) as store:
        fill(store.create_channel("example", EXAMPLE_AVSC), 500)
    with speeddata.store.open(tmp_path) as store:
        ch = store["example"]
        assert len(ch.read()) == 500
        assert store.holds("example") == (T0, T0 + 499 * 1_000_000)
        assert store.horizon() == pytest.approx(0.499)
        stats = store.stats()["example"]
        assert stats.stored_records == 500 and stats.segments == 1 and stats.bytes > 0


def test_retention_by_bytes_keeps_tagged_segments(tmp_path):
    with speeddata.store.open(tmp_path, block_bytes=1024, segment_bytes=8192,
                              max_bytes=64 * 1024) as store:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        fill(ch, 200)
        ch.flush()
        store.tag("keep", T0, T0 + 10 * 1_000_000, note="first ten")
        for k in range(1, 40):
            fill(ch, 200, start=k * 200)
            ch.flush()
        quota_slack = 64 * 1024 + 2 * 8192 + 1024
        total = sum(os.path.getsize(p) + os.path.getsize(p[:-5] + ".idx")
                    for p in ch.segments())
        assert total <= quota_slack, total
        cols = ch.read()
        assert cols.counter[0] == 0           # the tagged start survived
        assert cols.counter[-1] == 7999        # the newest data is there
        assert len(cols) < 8000                # something in between was deleted
        store.untag("keep")          # now the oldest data goes first, as any other
        fill(ch, 600, start=8000)
        ch.flush()
        store.enforce_retention()
        assert ch.read().counter[0] > 200
        with pytest.raises(TagNotFound):
            store.untag("keep")


def test_projected_horizon(tmp_path):
    with speeddata.store.open(tmp_path, max_bytes=10_000_000) as store:
        assert store.projected_horizon() is None          # no data yet
        ch = store.create_channel("example", EXAMPLE_AVSC)
        for k in range(3):                                 # received over 2 s
            fill(ch, 667, start=k * 667, receive_time=T0 + k * 10**9)
            ch.flush()
        rate = ch.stats().bytes / 2.0
        assert store.projected_horizon() == pytest.approx(10_000_000 / rate)
    with speeddata.store.open(tmp_path, max_age="PT10S") as store:
        assert store.projected_horizon() == pytest.approx(min(10.0, 10_000_000 / rate))


def test_retention_by_age(tmp_path):
    with speeddata.store.open(tmp_path, block_bytes=1024, segment_bytes=4096,
                              max_age="PT1S") as store:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        for k in range(30):     # 3 s of data at 1 kHz, received as it goes
            fill(ch, 100, start=k * 100, receive_time=T0 + k * 100_000_000)
        ch.flush()
        store.enforce_retention(now=T0 + 3 * 10**9)
        first, last = store.holds("example")
        assert last == T0 + 2999 * 1_000_000
        assert first >= T0 + 10**9 - 500 * 1_000_000    # at most a segment more than 1 s
        assert first > T0


def test_tags_and_export_hdf5(store, tmp_path):
    ex = store.create_channel("example", EXAMPLE_AVSC)
    temp = store.create_channel("temperature", TEMPERATURE_AVSC, time_unit="ms")
    fill(ex, 100)
    temp.append([{"time": T0 // 1_000_000 + i * 10, "device_id": "d1", "temperature_c": 20.0 + i,
                  "temperature_f": 68.0, "pressure_pa": 1e5, "humidity_pct": 40.0,
                  "status": "ok"} for i in range(10)])
    tag = store.tag("run-42", T0 + 10_000_000, T0 + 50_000_000, note="warm-up")
    assert [t.name for t in store.tags()] == ["run-42"] and tag.note == "warm-up"
    out = store.export_hdf5(tmp_path / "run.h5", "run-42")
    with h5py.File(out) as f:   # the layout, read without SpeedData
        assert set(f) == {"example", "temperature"}
        assert f.attrs["tag"] == "run-42"
        g = f["example"]
        assert g["time"][0] == T0 + 10_000_000 and len(g["time"]) == 40
        assert g["counter"][()].tolist() == list(range(10, 50))
        assert g["message"].asstr()[0] == "m1"
        assert json.loads(g.attrs["avro_schema"])["name"] == "data"
        assert f["temperature"]["temperature_c"].attrs["doc"] == "Temperature in Celsius"
        assert f["temperature"]["time"][()].tolist() == [T0 + 10_000_000 + k * 10_000_000
                                                         for k in range(4)]
    data = speeddata.read_hdf5(out)
    assert data.example.counter.tolist() == list(range(10, 50))
    assert data.channel["temperature"].status.tolist() == ["ok"] * 4
    assert data.temperature_c[0] == 21.0            # unique across channels
    only = store.export_hdf5(tmp_path / "sig.h5", T0, T0 + 10**9, channels=["example"],
                             signals=["sine_wave", "example.ramp"])
    assert speeddata.read_hdf5(only).example.signals == ["sine_wave", "ramp"]
    with pytest.raises(SchemaError, match="'volts'"):
        store.export_hdf5(tmp_path / "bad.h5", T0, T0 + 1, signals=["volts"])
    assert not (tmp_path / "bad.h5").exists()


def test_nullable_and_nested_signals_through_store_and_hdf5(store, tmp_path):
    schema = {"type": "record", "name": "n", "fields": [
        {"name": "time", "type": "long"},
        {"name": "temp", "type": ["null", "double"]},
        {"name": "mode", "type": {"type": "enum", "name": "M", "symbols": ["IDLE", "RUN"]}},
        {"name": "pos", "type": {"type": "record", "name": "P", "fields": [
            {"name": "x", "type": "float"}, {"name": "id", "type": ["null", "int"]}]}},
        {"name": "raw", "type": "bytes"},
    ]}
    ch = store.create_channel("nested", schema)
    ch.append([{"time": T0 + i, "temp": None if i % 2 else float(i), "mode": "RUN",
                "pos": {"x": 0.5, "id": i if i % 3 else None}, "raw": bytes([i, 0])}
               for i in range(6)])
    cols = ch.read()
    assert cols.temp.mask.tolist() == [False, True] * 3
    assert cols["pos.id"].tolist() == [None, 1, 2, None, 4, 5]
    assert cols.mode.tolist() == ["RUN"] * 6 and cols.raw[3] == b"\x03\x00"
    data = speeddata.read_hdf5(store.export_hdf5(tmp_path / "n.h5", T0, T0 + 100))
    n = data.nested
    assert n.temp.mask.tolist() == [False, True] * 3 and n.temp[2] == 2.0
    assert np.isnan(n.temp.data[1])
    assert n["pos.id"].mask.tolist() == [True, False, False, True, False, False]
    assert n.raw.tolist() == [bytes([i, 0]) for i in range(6)]


def test_drop_channel(store):
    fill(store.create_channel("example", EXAMPLE_AVSC), 10)
    store.drop_channel("example")
    assert store.channels == []
    with pytest.raises(ChannelNotFound):
        store["example"]


def test_corrupt_block_in_the_middle_is_skipped_with_a_warning(tmp_path):
    with speeddata.store.open(tmp_path, block_bytes=1024) as store:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        fill(ch, 2000)
    seg = ch.segments()[0]
    idx = speeddata.store._format.load_index(seg[:-5] + ".idx")
    victim = idx[len(idx) // 2]
    with open(seg, "r+b") as f:   # scribble over the middle of one block
        f.seek(int(victim["offset"]) + int(victim["length"]) // 2)
        f.write(b"\xff" * 32)
    with speeddata.store.open(tmp_path, readonly=True) as store:
        with pytest.warns(StoreWarning, match=f"block at byte {int(victim['offset'])}"):
            cols = store["example"].read()
    assert len(cols) == 2000 - int(victim["count"])
    assert cols.counter[0] == 0 and cols.counter[-1] == 1999


def test_torn_tail_is_cut_on_open(tmp_path):
    with speeddata.store.open(tmp_path, block_bytes=1024) as store:
        fill(store.create_channel("example", EXAMPLE_AVSC), 2000)
        seg = store["example"].segments()[-1]
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.truncate(size - 100)       # the last block torn, as a crash mid-write leaves it
    os.remove(seg[:-5] + ".idx")     # and the index lost
    with speeddata.store.open(tmp_path) as store:
        cols = store["example"].read()
        assert 1900 < len(cols) < 2000
        assert cols.counter.tolist() == list(range(len(cols)))
        fill(store["example"], 10, start=5000)        # and it writes on
        assert store["example"].read().counter[-1] == 5009
    with open(seg, "rb") as f:
        assert len(list(fastavro.reader(f))) == len(cols)


def test_one_writer_per_channel(tmp_path, child_processes):
    from helpers import python_child
    import subprocess
    with speeddata.store.open(tmp_path) as store:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        fill(ch, 1)
        code = ("import sys, speeddata; s = speeddata.store.open(sys.argv[1]);\n"
                "from helpers import example_record\n"
                "try:\n s['example'].append([example_record(1)])\n"
                "except speeddata.StoreError as e: print(e)")
        p = python_child(code, str(tmp_path), stdout=subprocess.PIPE, text=True)
        child_processes.append(p)
        out, _ = p.communicate(timeout=60)
        assert f"being written by another process (pid {os.getpid()})" in out


def test_full_disk_is_a_clear_error_and_loses_nothing_stored(small_disk):
    with speeddata.store.open(small_disk, block_bytes=4096, compression_level=1) as store:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        rng = np.random.default_rng(0)
        stored = 0
        with pytest.raises(StoreError, match="disk full"):
            for k in range(10_000):
                recs = [dict(example_record(k * 100 + i), message=rng.bytes(30).hex())
                        for i in range(100)]
                ch.append(recs)
                ch.flush()
                stored = (k + 1) * 100
        assert ch.stats().error.startswith("disk full")
        cols = ch.read()
        assert len(cols) >= stored and cols.counter.tolist() == list(range(len(cols)))
    with open(ch.segments()[0], "rb") as f:    # still a valid Avro file
        assert len(list(fastavro.reader(f))) == len(cols)


def example_columns(n):
    k = np.arange(n)
    return T0 + k * 1000, {
        "message": np.array(["alpha", "bravo"], dtype=object)[k % 2],
        "counter": k.astype(np.int32), "sine_wave": np.sin(k / 20), "ramp": k % 40 / 40,
        "square_wave": np.where(k % 20 < 10, 1.0, -1.0),
        "noise": np.random.default_rng(0).normal(size=n)}       # does not compress


def test_a_long_append_is_written_block_after_block_in_order(tmp_path):
    """append_columns compresses its blocks in the writer's threads: the file still holds
    them in the order given."""
    with speeddata.store.open(tmp_path, block_bytes=4096) as store:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        got = ch.append_columns(*example_columns(300_000))
        assert got.records == 300_000
        ch.flush()
        segments = ch.segments()
        counters = []
        for seg in segments:
            with open(seg, "rb") as f:
                counters += [r["counter"] for r in fastavro.reader(f)]
        assert counters == list(range(300_000))


def test_full_disk_during_a_long_append_keeps_what_went_before(small_disk):
    with speeddata.store.open(small_disk, block_bytes=4096) as store:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        with pytest.raises(StoreError, match="disk full"):
            ch.append_columns(*example_columns(400_000))      # about 16 MB of records
        cols = ch.read()
        assert len(cols) > 1000 and cols.counter.tolist() == list(range(len(cols)))
        st = ch.stats()
        assert st.dropped_records > 0 and st.records - st.dropped_records == len(cols)
    n = 0
    for seg in ch.segments():
        with open(seg, "rb") as f:
            n += len(list(fastavro.reader(f)))
    assert n == len(cols)


def test_read_only_filesystem_reads_and_refuses_writes_clearly(small_disk):
    import subprocess
    with speeddata.store.open(small_disk / "data") as store:
        fill(store.create_channel("example", EXAMPLE_AVSC), 100)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with speeddata.store.open(small_disk / "data") as store:
        assert store["example"].read().counter.tolist() == list(range(100))
        with pytest.raises(StoreError, match="not writable"):
            fill(store["example"], 1)
        with pytest.raises(StoreError, match="not writable"):
            store.tag("t", T0, T0 + 1)
    assert speeddata.read_avro(store["example"].segments()[0]).example.counter[99] == 99


@pytest.mark.slow
def test_fuzz_damaged_segments_never_crash_the_reader_or_repair(tmp_path):
    """Random damage to a segment: opening and reading give data or warnings, never a crash,
    and what is read is always records that were written."""
    import shutil
    import warnings as w
    src = tmp_path / "src"
    with speeddata.store.open(src, block_bytes=512) as store:
        fill(store.create_channel("example", EXAMPLE_AVSC), 400)
        seg = store["example"].segments()[0]
    original = Path(seg).read_bytes()
    rng = np.random.default_rng(44)
    for trial in range(1000):
        dst = tmp_path / f"t{trial}"
        shutil.copytree(src, dst)
        damaged = bytearray(original)
        for _ in range(int(rng.integers(1, 6))):
            damaged[int(rng.integers(len(damaged)))] ^= 1 << int(rng.integers(8))
        cut = int(rng.integers(len(damaged) // 2, len(damaged) + 1))
        path = dst / "channels" / "example" / os.path.basename(seg)
        path.write_bytes(bytes(damaged[:cut]))
        if rng.random() < 0.5:
            os.remove(str(path)[:-5] + ".idx")
        with w.catch_warnings():
            w.simplefilter("ignore", StoreWarning)
            try:
                with speeddata.store.open(dst) as store:
                    cols = store["example"].read()
            except speeddata.SpeedDataError:
                continue            # a clear error is an acceptable answer; a crash is not
        good = {r["counter"]: r for r in (example_record(i) for i in range(400))}
        for c, t, s in zip(cols.counter.tolist(), cols.time.tolist(), cols.sine_wave.tolist()):
            assert c in good and good[c]["time"] == t and good[c]["sine_wave"] == s


def test_a_mistyped_tag_name_is_named_as_a_tag(store, tmp_path):
    fill(store.create_channel("example", EXAMPLE_AVSC), 10)
    store.tag("run-42", T0, T0 + 10**9)
    with pytest.raises(TagNotFound, match="no tag 'run-4'.*run-42"):
        store.export_hdf5(tmp_path / "x.h5", "run-4")
    assert not (tmp_path / "x.h5").exists()


def test_a_stream_writes_full_blocks_together_and_never_later_than_flush_interval(tmp_path):
    """A worker's full blocks wait to be written together (up to HOLD_BYTES of them), but
    no longer than flush_interval after the first of them was taken."""
    import time
    from speeddata.store._writer import HOLD_BYTES
    with speeddata.store.open(tmp_path, block_bytes=1024, flush_interval=0.05) as store, \
            speeddata.store.open(tmp_path, readonly=True) as reader:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        one = encoder(ch.schema)
        datagrams = [one(example_record(i)) for i in range(12_000)]
        assert sum(map(len, datagrams)) > 2 * HOLD_BYTES
        w = ch.writer()

        def stream(first, last):       # as a worker feeds the writer: a block at a time
            i = first                  # (to the end of the block that holds record last)
            while i < last or w.builder.pending:
                _, i = w.builder.add_datagrams(datagrams, T0, i, w.block_bytes)
                w.maybe_flush()
            return i

        held = stream(0, 200)
        assert w.builder.pending == 0                  # full blocks were taken...
        assert w.blocks_written == 0 and reader["example"].count() == 0   # ...and held
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:
            w.maybe_flush()
        w.maybe_flush()                                # the first held is now old enough
        assert reader["example"].count() == held
        last = stream(held, 11_000)   # past HOLD_BYTES: written without waiting
        unwritten = datagrams[reader["example"].count():last]
        assert 0 < sum(map(len, unwritten)) <= HOLD_BYTES + 1024
    with speeddata.store.open(tmp_path) as store:
        assert store["example"].read().counter.tolist() == list(range(last))


def test_a_range_as_an_avro_container_and_back_into_another_store(tmp_path):
    with speeddata.store.open(tmp_path / "a", block_bytes=1024) as st:
        ch = st.create_channel("example", EXAMPLE_AVSC)
        ch.append([example_record(i) for i in range(3000)])
        ch.flush()
        path = tmp_path / "range.avro"
        with open(path, "wb") as f:
            for piece in ch.avro_container(T0 + 1000 * 10**6, T0 + 2000 * 10**6):
                f.write(piece)
        with open(path, "rb") as f:                     # any Avro reader opens it
            counters = [r["counter"] for r in fastavro.reader(f)]
        assert counters[0] <= 1000 and counters[-1] >= 1999     # whole blocks at the edges
        report = speeddata.store.describe(path)
        assert report.kind == "container" and report.records == len(counters)
        assert report.schema["speeddata.time_field"] == "time" and not report.damage
        index = next(p for p in (tmp_path / "a" / "channels" / "example").iterdir()
                     if p.suffix == ".idx")
        assert speeddata.store.describe(index).records == 3000
    with speeddata.store.open(tmp_path / "b") as st:
        n = st.import_avro("copy", path, T0 + 1000 * 10**6, T0 + 2000 * 10**6)
        assert n == 1000
        assert st["copy"].read()["counter"].tolist() == list(range(1000, 2000))
        assert st["copy"].schema.time_field == "time"
