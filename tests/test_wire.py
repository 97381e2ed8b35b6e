"""The columnar layout of batches, written and read by hand (speeddata.wire), against the
protobuf runtime both ways; and fuzzed."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from speeddata.client import _AGG_NAMES, _TYPE_NAMES, batch_columns
from speeddata.columns import Columns
from speeddata.decimation import Decimation, Decimator, decimate
from speeddata.errors import SpeedDataError
from speeddata.serving.grpc_api import _batch_message
from speeddata.v1 import speeddata_pb2 as pb
from speeddata import wire


def sample(n: int, seed: int = 0) -> Columns:
    rng = np.random.default_rng(seed)
    mask = rng.random(n) < 0.3
    return Columns(np.arange(n, dtype=np.int64) * 1000 - 5, {
        "a.x": rng.normal(size=n), "f": rng.normal(size=n).astype(np.float32),
        "i": rng.integers(-2**31, 2**31, n).astype(np.int32),
        "l": rng.integers(-2**62, 2**62, n), "b": rng.random(n) < 0.5,
        "s": np.array([["", "ok", "größe", "x" * 300][k % 4] for k in range(n)], dtype=object),
        "raw": np.array([bytes([k % 256]) * (k % 5) for k in range(n)], dtype=object),
        "n": np.ma.MaskedArray(rng.normal(size=n), mask=mask),
        "ns": np.ma.MaskedArray(np.array(["v"] * n, dtype=object), mask=mask),
        "v:min": rng.normal(size=n), "v:max": rng.normal(size=n)}, "chan")


def same(a: Columns, b: Columns) -> None:
    assert a.time.tolist() == b.time.tolist() and a.signals == b.signals
    for k in a.signals:
        x, y = a[k], b[k]          # (a null-free batch needs no validity bitmap)
        assert np.ma.getmaskarray(x).tolist() == np.ma.getmaskarray(y).tolist(), k
        if np.ma.isMaskedArray(x) or np.ma.isMaskedArray(y):
            x, y = np.ma.asarray(x).compressed(), np.ma.asarray(y).compressed()
        assert [v for v in x.tolist()] == [v for v in y.tolist()], k


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000])
def test_hand_written_batches_are_what_protobuf_reads_and_writes(n):
    cols = sample(n)
    raw = _batch_message(cols, "chan")
    msg = pb.QueryResponse.FromString(raw)              # protobuf reads ours
    assert msg.batch.channel == "chan" and msg.batch.rows == n
    assert [(c.name, c.aggregate) for c in msg.batch.columns][-2:] == [
        ("v", pb.AGGREGATE_MIN), ("v", pb.AGGREGATE_MAX)]
    same(batch_columns(msg.batch), cols)                  # through the protobuf runtime
    same(batch_columns(msg.batch.SerializeToString()), cols)   # ours reads protobuf's
    response = pb.SubscribeResponse(batch=msg.batch, first_record=5, next_record=9, missed=2)
    from speeddata.client import _response
    batch, numbers = _response(response.SerializeToString())
    same(batch, cols)
    assert numbers == {2: 5, 3: 9, 4: 2}
    assert wire.varint_fields(f2=5, f3=9, f4=2) == \
        pb.SubscribeResponse(first_record=5, next_record=9, missed=2).SerializeToString()


@given(st.binary(max_size=300))
def test_reading_garbage_raises_a_speeddata_error_or_reads_something(data):
    try:
        wire.read_batch(memoryview(data), _AGG_NAMES, _TYPE_NAMES)
    except SpeedDataError:
        pass


@given(st.integers(0, 200), st.integers(1, 17), st.integers(1, 60))
def test_a_decimator_fed_in_pieces_equals_decimation_in_one_go(n, factor, piece):
    rng = np.random.default_rng(n)
    cols = Columns(np.arange(n, dtype=np.int64), {"x": rng.normal(size=n)})
    whole, held = decimate(cols, Decimation("minmax", factor))
    d = Decimator(Decimation("minmax", factor))
    parts = []
    for a in range(0, n, piece):
        out, covered = d.push(cols.take(slice(a, a + piece)), a)
        parts.append(out)
        assert covered <= min(n, a + piece)
    got = np.concatenate([p["x:min"] for p in parts]) if parts else np.empty(0)
    assert got.tolist() == whole["x:min"].tolist()
    last = d.finish()
    assert len(last) == (1 if held else 0)
