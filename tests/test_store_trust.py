"""A store that never loses what it should keep: device clocks, tags, damage and settings.

One regression test per way the store was found to lose, hide or refuse data, and the
fault-injection and property tests that would have found each class of them.
"""

import datetime as dt
import json
import os
import warnings

import fastavro
import numpy as np
import pytest

import speeddata
from speeddata import (SchemaError, StoreError,
                       TagExists, TimeRangeError)
from speeddata import schema as S
from speeddata.codec import REASONS, Plan, encode_columns, encoder
from speeddata.errors import StoreWarning
from speeddata.store import _format as F
from speeddata.store._segment import needs_repair

from helpers import EXAMPLE_AVSC, T0, example_record

SEC = 10**9
YEAR = 365 * 86_400 * SEC
NOW = 1_800_000_000 * SEC          # the receive clock of these tests (2027)
SCHEMA = {"type": "record", "name": "k", "fields": [
    {"name": "time", "type": "long"}, {"name": "id", "type": "long"}]}


def records(ids, times):
    return [{"time": int(t), "id": int(i)} for i, t in zip(ids, times)]


def ids_of(ch, *args):
    return ch.read(*args).id.tolist()


def received_in_steps(ch, times, per=50, start_recv=NOW, step=SEC, first_id=0):
    """Append ``times`` in groups of ``per``, each group received ``step`` after the last."""
    for k in range(0, len(times), per):
        chunk = times[k:k + per]
        ch.append(records(range(first_id + k, first_id + k + len(chunk)), chunk),
                  receive_time=start_recv + (k // per) * step)
        ch.flush()


# ---- data loss -----------------------------------------------------------------------------

def test_1_reusing_a_tag_name_is_an_error_unless_replace(tmp_path):
    with speeddata.store.open(tmp_path) as store:
        store.create_channel("k", SCHEMA)
        store.tag("run", T0, T0 + 10, note="first")
        with pytest.raises(TagExists, match="'run' exists already.*replace=True"):
            store.tag("run", T0 + 100, T0 + 200)
        assert store.get_tag("run").start == T0              # the first range still holds
        moved = store.tag("run", T0 + 100, T0 + 200, replace=True)
        assert store.get_tag("run") == moved and moved.start == T0 + 100


def test_2_a_1970_clock_or_a_clock_stepped_back_loses_nothing_to_max_age(tmp_path):
    with speeddata.store.open(tmp_path, segment_bytes=4096, block_bytes=1024,
                              max_age=3600) as store:
        ch = store.create_channel("k", SCHEMA)
        times = np.arange(3000) * 1_000_000                  # a device that boots in 1970
        received_in_steps(ch, times, step=SEC)
        back = NOW + 7200 * SEC - np.arange(2000) * 10 * SEC  # and one stepped back 5 h
        received_in_steps(ch, back, first_id=3000, start_recv=NOW + 60 * SEC)
        assert len(ch.segments()) > 5
        assert store.enforce_retention(now=NOW + 600 * SEC) == []   # all received 10 min ago
        assert sorted(ids_of(ch)) == list(range(5000))
        # and once they really are old (by the receive clock), they go, oldest received first
        gone = store.enforce_retention(now=NOW + 3600 * SEC + 30 * SEC)
        assert gone and 0 not in ids_of(ch) and 4999 in ids_of(ch)


def test_3_records_far_ahead_are_kept_counted_and_decide_nothing(tmp_path):
    with speeddata.store.open(tmp_path, segment_bytes=1 << 20, block_bytes=2048,
                              segment_span=10) as store:
        ch = store.create_channel("k", SCHEMA)
        future = NOW + 10 * YEAR
        times = NOW + np.arange(6000) * 10_000_000
        times[[100, 2500, 4000]] = future                   # a GPS glitch, three times
        # received over 60 s, 100 records/s: with a 10 s span that is 6+ segments
        received_in_steps(ch, times, per=100, step=SEC)
        st = ch.stats()
        assert st.clock_skew == 3 and st.stored_records == 6000 and st.records == 6000
        segs = ch.segments()
        assert len(segs) >= 5, "rolls by receive time, whatever the device clock says"
        for path in segs:     # named by receive time, never by the future
            assert abs(int(os.path.basename(path)[:20]) - NOW) < 120 * SEC
        assert sorted(ids_of(ch)) == list(range(6000))
        assert ids_of(ch, future, future + 1) == [100, 2500, 4000]
        # an export of an unrelated range comes in bounded chunks, not one
        chunks = list(ch.iter_read(NOW, NOW + 50 * SEC, chunk_records=500))
        assert len(chunks) >= 8 and max(len(c) for c in chunks) <= 1500
        got = np.concatenate([c.id for c in chunks])
        assert got.tolist() == [i for i in range(5000) if i not in (100, 2500, 4000)]
        # the horizon comes from the 59 s of receive time, not from ten years of device time
        store.configure(max_bytes=10 << 20)
        assert store.projected_horizon() == pytest.approx((10 << 20) / (ch.stats().bytes / 59))
        # under max_age they go with their neighbours (received at the same time)
        store.configure(max_age=30)
        store.enforce_retention(now=NOW + 75 * SEC)
        left = ids_of(ch)
        assert 100 not in left and 2500 not in left and 5999 in left


def test_3_under_a_quota_the_oldest_received_go_first(tmp_path):
    with speeddata.store.open(tmp_path, segment_bytes=4096, block_bytes=1024) as store:
        ch = store.create_channel("k", SCHEMA)
        times = NOW + np.arange(4000) * 1_000_000
        times[10] = NOW + 10 * YEAR                          # pins nothing
        received_in_steps(ch, times, per=100, step=SEC)
        store.configure(max_bytes=20_000)
        store.enforce_retention()
        left = sorted(ids_of(ch))
        assert 10 not in left and left[-1] == 3999          # newest received stay


def test_4_a_damaged_header_without_index_loses_no_block(tmp_path):
    with speeddata.store.open(tmp_path, block_bytes=1024) as store:
        ch = store.create_channel("k", SCHEMA)
        ch.append(records(range(1000), T0 + np.arange(1000)))
        seg = ch.segments()[-1]
    with open(seg, "r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 4)                     # the magic and beyond
    os.remove(seg[:-5] + ".idx")
    with pytest.warns(StoreWarning, match="rebuilt its damaged header"):
        with speeddata.store.open(tmp_path) as store:
            assert ids_of(store["k"]) == list(range(1000))
    with open(seg, "rb") as f:                                # a valid Avro file again
        assert [r["id"] for r in fastavro.reader(f)] == list(range(1000))


def test_5_settings_given_are_the_settings_in_force(tmp_path, caplog):
    caplog.set_level("INFO", logger="speeddata.store")
    with speeddata.store.open(tmp_path, max_bytes=1 << 20) as store:
        assert store.options["max_bytes"] == 1 << 20
        store.create_channel("k", SCHEMA, max_age=60)
    with speeddata.store.open(tmp_path) as store:            # persisted
        assert store.options["max_bytes"] == 1 << 20
        assert store["k"].option("max_age") == 60 * SEC
        store.configure(replace=True)                         # the config dropped it
        assert store.options["max_bytes"] is None
        store.create_channel("k", SCHEMA, max_age=120, max_bytes=5000)   # a change applies
        assert store["k"].option("max_age") == 120 * SEC
        assert store["k"].option("max_bytes") == 5000
        store.create_channel("k", SCHEMA)                     # and so does its removal
        assert store["k"].option("max_age") is None and store["k"].option("max_bytes") is None
    with speeddata.store.open(tmp_path) as store:
        assert store.options["max_bytes"] is None and store["k"].options == {}
        store.configure(max_age="PT1H")
        store.configure(max_age=None)
        assert store.options["max_age"] is None
    text = caplog.text
    assert "max_bytes changed from 1048576 to default" in text
    assert "max_age changed from 60 s to 120 s" in text
    assert "max_age changed from 3600 s to default" in text


def test_6_an_empty_tags_database_pauses_retention(tmp_path):
    with speeddata.store.open(tmp_path, segment_bytes=4096, block_bytes=1024) as store:
        ch = store.create_channel("k", SCHEMA)
        received_in_steps(ch, T0 + np.arange(3000), step=SEC)
        store.tag("keep", T0, T0 + 100)
    open(tmp_path / "tags.sqlite", "wb").close()                  # zero bytes
    with pytest.warns(StoreWarning, match="tags database .* is empty"):
        store = speeddata.store.open(tmp_path, max_bytes=5000)
    with store:
        assert "empty" in store.retention_paused
        assert store.enforce_retention() == []
        assert len(store["k"].read()) == 3000                         # nothing deleted
        with pytest.raises(StoreError, match="tags database .* empty.*reset_tags"):
            store.tags()
        aside = store.reset_tags()
        assert os.path.exists(aside) and store.retention_paused is None
        assert store.enforce_retention()                              # it runs again


def test_7_channel_names_never_meet_the_stores_own_files(tmp_path):
    with speeddata.store.open(tmp_path) as store:
        for name in ("tags.sqlite-journal", "speeddata.json.tmp", "tags.sqlite"):
            store.create_channel(name, SCHEMA).append(records([1], [T0]))
        store.tag("t", T0, T0 + 1)
    with speeddata.store.open(tmp_path) as store:
        assert store.channels == ["speeddata.json.tmp", "tags.sqlite", "tags.sqlite-journal"]
        assert [t.name for t in store.tags()] == ["t"]
        store.tag("u", T0, T0 + 1)


def test_8_a_drop_or_create_cut_short_leaves_a_store_that_opens(tmp_path):
    with speeddata.store.open(tmp_path) as store:
        store.create_channel("k", SCHEMA).append(records([1], [T0]))
        store.create_channel("gone", SCHEMA)
    root = tmp_path / "channels"
    os.rename(root / "gone", root / ".gone.dropping-999999999")      # killed mid-drop
    half = root / ".new.creating-999999999"                           # killed mid-create
    half.mkdir()
    (half / "schema.avsc").write_text(json.dumps(SCHEMA))
    with speeddata.store.open(tmp_path, readonly=True) as store:
        assert store.channels == ["k"]            # a reader never sees half a channel
    with speeddata.store.open(tmp_path) as store:
        assert store.channels == ["k"] and ids_of(store["k"]) == [1]
    assert sorted(os.listdir(root)) == ["k"]      # and the writer cleaned up after it


def test_9_one_damaged_channel_or_tags_database_leaves_the_rest_open(tmp_path):
    with speeddata.store.open(tmp_path) as store:
        for name in ("a", "b", "c"):
            store.create_channel(name, SCHEMA).append(records([1, 2], [T0, T0 + 1]))
    (tmp_path / "channels" / "a" / "channel.json").write_text("{not json")
    (tmp_path / "channels" / "b" / "schema.avsc").write_bytes(b"\x00\xff garbage")
    with open(tmp_path / "tags.sqlite", "r+b") as f:
        f.write(b"garbage" * 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with speeddata.store.open(tmp_path) as store:
            assert store.channels == ["a", "b", "c"]
            for name in ("a", "b", "c"):                   # rebuilt from schema or segment
                assert ids_of(store[name]) == [1, 2]
            assert set(store.problems) >= {"tags", "channel option a", "channel option b"}
            assert store.retention_paused
            store.create_channel("d", SCHEMA)             # still writable
    text = " ".join(str(w.message) for w in caught)
    assert "channel.json" in text and "schema.avsc" in text and "tags.sqlite" in text
    # with neither file left, the channel is reported and the others work on
    for f in ("channel.json", "schema.avsc"):
        (tmp_path / "channels" / "c" / f).write_text("{")
    for seg in (tmp_path / "channels" / "c").glob("*.avro"):
        seg.write_bytes(b"junk")
    with pytest.warns(StoreWarning):
        with speeddata.store.open(tmp_path) as store:
            with pytest.raises(StoreError, match="channel 'c'"):
                store["c"]
            assert "channel c" in store.problems and ids_of(store["a"]) == [1, 2]
            assert set(store.stats()) == {"a", "b", "d"}


def closed_segment(path) -> str:
    """A store of 3000 records in several segments; the path of the first (closed) one."""
    with speeddata.store.open(path, block_bytes=1024, segment_bytes=8192) as store:
        ch = store.create_channel("k", SCHEMA)
        ch.append(records(range(3000), T0 + np.arange(3000)))
        return ch.segments()[0]


@pytest.mark.parametrize("damage", ["random", "huge_count", "short"])
def test_10_12_an_index_that_disagrees_with_its_segment_is_not_trusted(tmp_path, damage):
    closed = closed_segment(tmp_path)
    idx = closed[:-5] + ".idx"
    with open(idx, "rb") as f:
        raw = bytearray(f.read())
    if damage == "random":
        raw[64:128] = np.random.default_rng(0).bytes(64)
    elif damage == "huge_count":
        entries = np.frombuffer(bytes(raw), dtype=F.INDEX_DTYPE).copy()
        entries[1]["count"] = 1 << 40
        raw = bytearray(entries.tobytes())
    else:
        raw = raw[:-F.INDEX_DTYPE.itemsize]
    with open(idx, "wb") as f:
        f.write(bytes(raw))
    with pytest.warns(StoreWarning, match="index not trusted"):
        with speeddata.store.open(tmp_path, readonly=True) as store:
            assert ids_of(store["k"]) == list(range(3000))
    if damage == "short":
        assert needs_repair(closed)
        with speeddata.store.open(tmp_path) as store:        # repair fixes it for good
            store["k"]
        assert not needs_repair(closed)


@pytest.mark.parametrize("damage", ["zero", "header", "middle"])
def test_12_a_damaged_closed_segment_is_named_never_silent(tmp_path, damage):
    closed = closed_segment(tmp_path)
    if damage == "zero":
        open(closed, "wb").close()
    elif damage == "header":
        with open(closed, "r+b") as f:
            f.seek(10)
            f.write(b"\xff" * 40)
    else:
        with open(closed, "r+b") as f:
            f.seek(os.path.getsize(closed) // 2)
            f.write(b"\xff" * 40)
    with pytest.warns(StoreWarning, match=os.path.basename(closed)):
        with speeddata.store.open(tmp_path, readonly=True) as store:
            got = ids_of(store["k"])
    assert got == sorted(got) and 2999 in got and set(got) <= set(range(3000))


def test_13_times_beyond_int64_ns_are_rejected_with_their_own_reason(tmp_path):
    with speeddata.store.open(tmp_path) as store:
        ch = store.create_channel("ms", SCHEMA, time_unit="ms")
        one = encoder(ch.schema)
        past_2262 = 9_300_000_000_000          # ms
        result = ch.append_datagrams([one({"time": past_2262, "id": 1}),
                                      one({"time": 1_700_000_000_000, "id": 2})])
        assert result.rejected == {"time_out_of_range": 1}
        assert ids_of(ch) == [2] and ch.read().time[0] == 1_700_000_000_000 * 1_000_000
    assert "time_out_of_range" in REASONS
    with pytest.raises(TimeRangeError, match="outside"):
        speeddata.timeutil.to_ns(dt.datetime(9999, 1, 1))


def test_14_signals_that_collide_after_flattening_are_refused():
    with pytest.raises(SchemaError, match="'a.b'"):
        S.load({"type": "record", "name": "r", "fields": [
            {"name": "time", "type": "long"}, {"name": "a.b", "type": "int"},
            {"name": "a", "type": {"type": "record", "name": "A",
                                   "fields": [{"name": "b", "type": "int"}]}}]})
    with pytest.raises(SchemaError, match="'time' is data.*'t'"):
        S.load({"type": "record", "name": "r", "fields": [
            {"name": "t", "type": "long"}, {"name": "time", "type": "double"}]},
            time_field="t")


def test_15_the_largest_time_is_read_back(tmp_path):
    with speeddata.store.open(tmp_path) as store:
        ch = store.create_channel("k", SCHEMA)
        ch.append(records([1, 2, 3], [-(2**63), 0, 2**63 - 1]))
        assert ids_of(ch) == [1, 2, 3]
        assert ids_of(ch, 2**63 - 1) == [3] and ids_of(ch, 2**63 - 2) == [3]


def test_16_export_with_a_signal_called_valid(tmp_path):
    odd = {"type": "record", "name": "o", "fields": [
        {"name": "time", "type": "long"}, {"name": "_valid", "type": ["null", "double"]}]}
    with speeddata.store.open(tmp_path / "s") as store:
        store.create_channel("odd", odd).append([{"time": T0, "_valid": 1.5},
                                                 {"time": T0 + 1, "_valid": None}])
        store.create_channel("k", SCHEMA).append(records([7], [T0]))
        data = speeddata.read_hdf5(store.export_hdf5(tmp_path / "x.h5", T0, T0 + 10))
    assert data.odd["_valid"].tolist() == [1.5, None] and data.k.id.tolist() == [7]


def test_17_a_small_quota_bounds_the_disk_whatever_the_block_size(tmp_path):
    quota = 100_000
    with speeddata.store.open(tmp_path, max_bytes=quota) as store:
        ch = store.create_channel("example", EXAMPLE_AVSC)
        rng = np.random.default_rng(1)
        peak = 0
        for k in range(60):
            ch.append([dict(example_record(k * 100 + i), message=rng.bytes(20).hex())
                       for i in range(100)])
            ch.flush()
            peak = max(peak, sum(os.path.getsize(os.path.join(ch.path, f))
                                 for f in os.listdir(ch.path)
                                 if f.endswith((".avro", ".idx", ".sum"))))
        segment = ch.writer().segment_bytes
    assert peak <= quota + 1.5 * segment, (peak, segment)


def test_18_bad_input_gets_speeddata_errors(tmp_path):
    with speeddata.store.open(tmp_path) as store:
        ch = store.create_channel("k", SCHEMA)
        ch.append(records([1], [T0]))
        with pytest.raises(TimeRangeError, match="empty"):
            ch.read("")
        with pytest.raises(TimeRangeError, match="outside"):
            store.tag("far", T0, dt.datetime(9999, 1, 1))
        deep = {"type": "int"}
        for k in range(3000):
            deep = {"type": "record", "name": f"r{k}", "fields": [{"name": "f", "type": deep}]}
        with pytest.raises(SchemaError, match="too deep"):
            store.create_channel("deep", deep)
        (tmp_path / "channels" / "k" / "HEAD").write_bytes(b"\xff\xfe\x00garbage")
    with speeddata.store.open(tmp_path) as store:
        assert ids_of(store["k"]) == [1]


def test_19_bad_values_are_refused_before_anything_is_saved(tmp_path):
    with speeddata.store.open(tmp_path) as store:
        ch = store.create_channel("k", SCHEMA)
        ch.append(records(range(100), T0 + np.arange(100)))
        ch.flush()
        for bad in ("abc\n", "", "../x", ".hidden"):
            with pytest.raises(StoreError, match="bad channel name"):
                store.create_channel(bad, SCHEMA)
        with pytest.raises(StoreError, match="compression_level"):
            store.configure(compression_level=1000)
        with pytest.raises(StoreError, match="fsync must be true or false"):
            store.configure(fsync="no")
        with pytest.raises(StoreError, match="block_bytes must be at most"):
            store.configure(block_bytes=1 << 30)       # reads take more as damage
        with pytest.raises(StoreError, match="max_bytes"):
            store.create_channel("k", SCHEMA, max_bytes=-5)
        assert store.options["compression_level"] == -1 and store.options["fsync"] is False
        with pytest.raises(StoreError, match="inside the store"):
            store.export_hdf5(ch.segments()[0], T0, T0 + 10)
        assert ids_of(ch) == list(range(100))          # the segment it would have destroyed
    marker = tmp_path / "speeddata.json"
    meta = json.loads(marker.read_text())
    meta["options"]["max_bytes"] = -5                  # edited by hand
    marker.write_text(json.dumps(meta))
    with pytest.warns(StoreWarning, match="max_bytes must be a positive"):
        with speeddata.store.open(tmp_path) as store:
            assert store.retention_paused and store.enforce_retention() == []
            assert ids_of(store["k"]) == list(range(100))


def test_20_codec_edges(tmp_path):
    cs = S.load({"type": "record", "name": "e", "fields": [
        {"name": "time", "type": "long"},
        {"name": "m", "type": {"type": "enum", "name": "M", "symbols": ["A", "B"]}}]})
    with pytest.raises(ValueError, match="'TYPO' is not one of its enum symbols"):
        encode_columns(Plan(cs), np.array([1]), {"m": np.array(["TYPO"], dtype=object)})
    body = encode_columns(Plan(cs), np.arange(4), {"m": np.array(["A", "B"] * 2, dtype=object)})[0]
    with pytest.raises(ValueError, match="do not fit"):
        Plan(cs).decode_into(body, 4, 2, np.empty(4, np.int64), [np.empty(6, np.int32)], [None])
    with pytest.raises(ValueError, match="do not fit"):
        Plan(cs).decode_into(body, 4, 0, np.empty(4, np.int64), [np.empty(3, np.int32)], [None])
    with pytest.raises(F.FormatError, match="bad varint"):
        F.decode_long(b"\x80\x00", 0)                   # overlong, as the codec says
    # a channel without a time field: its segments read back with the stamped time
    with speeddata.store.open(tmp_path) as store:
        ch = store.create_channel("p", {"type": "record", "name": "p",
                                        "fields": [{"name": "v", "type": "double"}]})
        wire = encoder(ch.schema)
        ch.append_datagrams([wire({"v": 1.5}), wire({"v": 2.5})], receive_time=T0 + 7)
        ch.flush()
        data = speeddata.read_avro(ch.segments()[0])
    assert data.p.v.tolist() == [1.5, 2.5] and data.p.time.tolist() == [T0 + 7] * 2


# ---- faults on purpose ---------------------------------------------------------------------

KINDS = ["segment head", "segment middle", "block frame size", "segment tail", "index", "HEAD",
         "channel.json", "schema.avsc", "tags.sqlite", "speeddata.json"]


def _build(path):
    """Two channels; 'k' has a closed segment and an open one (its writer was killed)."""
    with speeddata.store.open(path, block_bytes=1024, segment_bytes=8192) as store:
        ch = store.create_channel("k", SCHEMA)
        store.create_channel("other", SCHEMA).append(records(range(50), T0 + np.arange(50)))
        ch.append(records(range(4000), T0 + np.arange(4000)))
        store.tag("t", T0, T0 + 10)
    segs = sorted((path / "channels" / "k").glob("*.avro"))
    blocks = {}
    for seg in segs:
        with open(seg, "rb") as f:
            ids = [r["id"] for r in fastavro.reader(f)]
        idx = F.load_index(str(seg)[:-5] + ".idx")
        k = 0
        for e in idx:
            blocks[(seg.name, int(e["offset"]))] = ids[k:k + int(e["count"])]
            k += int(e["count"])
    return segs, blocks


def _damage(path, kind, segs, which):
    ch = path / "channels" / "k"
    seg = segs[which]
    idx = F.load_index(str(seg)[:-5] + ".idx")
    hit = None
    if kind == "segment head":
        with open(seg, "r+b") as f:
            f.write(b"JUNK" * 8)
    elif kind == "segment middle":
        e = idx[len(idx) // 2]
        hit = (seg.name, int(e["offset"]))
        with open(seg, "r+b") as f:
            f.seek(int(e["offset"]) + int(e["length"]) // 2)
            f.write(b"\xff" * 16)
    elif kind == "block frame size":     # the zstandard frame claims 32 TiB of records
        e = idx[len(idx) // 2]
        hit = (seg.name, int(e["offset"]))
        with open(seg, "r+b") as f:
            f.seek(int(e["offset"]))
            block = f.read(int(e["length"]))
            at = block.find(b"\x28\xb5\x2f\xfd") + 4          # the frame descriptor
            f.seek(int(e["offset"]) + at)
            f.write(bytes([block[at] | 0xC0]) + (1 << 45).to_bytes(8, "little"))
    elif kind == "segment tail":
        e = idx[-1]
        hit = (seg.name, int(e["offset"]))
        os.truncate(seg, int(e["offset"]) + int(e["length"]) // 2)
    elif kind == "index":
        with open(str(seg)[:-5] + ".idx", "r+b") as f:
            f.seek(70)
            f.write(os.urandom(100))
    elif kind in ("HEAD", "channel.json", "schema.avsc"):
        (ch / kind).write_bytes(b"\x00\xffjunk{")
    else:
        with open(path / kind, "r+b") as f:
            f.write(b"\x00garbage" * 8)
    return hit


@pytest.mark.parametrize("which", ["closed", "open"])
@pytest.mark.parametrize("kind", KINDS)
def test_fault_injection_every_store_file(tmp_path, kind, which):
    """Damage one file: open() works, every undamaged block reads back exactly, and each
    lost block is named in a warning."""
    path = tmp_path / "s"
    segs, blocks = _build(path)
    assert len(segs) >= 2
    hit = _damage(path, kind, segs, 0 if which == "closed" else -1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with speeddata.store.open(path) as store:
            got = ids_of(store["k"])
            assert ids_of(store["other"]) == list(range(50))
            store["k"].append(records([99_999], [T0 + 10**6]))   # and it writes on
            assert ids_of(store["k"])[-1] == 99_999
    text = "\n".join(str(w.message) for w in caught)
    expected = [i for key, ids in blocks.items() if key != hit for i in ids]
    assert got == sorted(got)
    assert set(expected) <= set(got) <= set(range(4000))
    if hit is not None:
        lost = set(blocks[hit]) - set(got)
        assert lost, "the damaged block cannot have read back whole"
        assert hit[0] in text and str(hit[1]) in text, text


# ---- device clocks against the model -------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jumps=st.lists(st.integers(-300 * YEAR // SEC, 300 * YEAR // SEC), min_size=5,
                      max_size=30),
       max_age=st.integers(5, 40), quota=st.sampled_from([None, 6000, 20000]),
       tag_at=st.integers(0, 29))
def test_device_clocks_jumping_300_years_never_decide_retention(tmp_path_factory, jumps,
                                                                max_age, quota, tag_at):
    """Groups of records, each received a second after the last, stamped by a clock that
    jumps by up to 300 years. Retention removes exactly the oldest received (whole
    segments), tagged ranges survive, disk use stays within quota plus one segment."""
    path = tmp_path_factory.mktemp("clocks")
    with speeddata.store.open(path, block_bytes=512, segment_bytes=2048,
                              segment_span=1) as store:
        ch = store.create_channel("k", SCHEMA)
        received, device, next_id = {}, {}, 0
        clock = NOW
        for g, jump in enumerate(jumps):
            clock = int(np.clip(clock + jump * SEC, -(2**62), 2**62))
            ids = list(range(next_id, next_id + 20))
            ch.append(records(ids, [clock + i for i in range(20)]), receive_time=NOW + g * SEC)
            ch.flush()
            for i in ids:
                received[i], device[i] = NOW + g * SEC, clock + (i - next_id)
            next_id += 20
        tagged = [i for i in range(next_id) if i // 20 == tag_at % len(jumps)]
        t0 = device[tagged[0]]
        store.tag("keep", t0, t0 + 20, channels=["k"])
        opts = {"max_age": max_age} if quota is None else {"max_age": max_age, "max_bytes": quota}
        store.configure(**opts)
        now = NOW + len(jumps) * SEC
        store.enforce_retention(now=now)
        left = set(ids_of(ch))
        assert set(tagged) <= left                             # tags survive
        assert max(range(next_id), key=lambda i: received[i]) in left   # the newest stays
        # what went is exactly the oldest received: nothing kept is older than something
        # gone, but for what shares a segment with the tagged range (by device time)
        near_tag = set()
        for view in ch.views():
            if view.tmin < t0 + 20 and view.tmax >= t0:
                with open(view.path, "rb") as f:
                    near_tag.update(r["id"] for r in fastavro.reader(f))
        gone = set(range(next_id)) - left
        if gone and left - near_tag:
            assert max(received[i] for i in gone) <= min(received[i] for i in left - near_tag)
        for i in gone:
            assert received[i] < now - max_age * SEC or quota is not None
        if quota is not None:
            used = sum(os.path.getsize(os.path.join(ch.path, f)) for f in os.listdir(ch.path)
                       if f.endswith((".avro", ".idx", ".sum")))
            assert used <= quota + 2048 + 1024 + _tagged_bytes(ch, t0)


def _tagged_bytes(ch, t0):
    return sum(v.disk_bytes() for v in ch.views() if v.tmin <= t0 + 20 and v.tmax >= t0)


def test_5b_store_settings_come_back_as_they_were_saved(tmp_path):
    """A store's max_age is persisted in ns: read back as seconds it was a billion times
    longer, and age retention never ran after a reopen."""
    with speeddata.store.open(tmp_path) as store:
        store.configure(max_age=3600, segment_span="PT10M")
        store.create_channel("k", SCHEMA, max_age=60)
    with speeddata.store.open(tmp_path) as store:
        assert store.options["max_age"] == 3600 * SEC
        assert store.options["segment_span"] == 600 * SEC
        assert store["k"].option("max_age") == 60 * SEC
        assert not store.problems
