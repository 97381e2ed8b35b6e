"""The serving layer's hot paths, each against a baseline in the same run:

- a retention pass over a store of many segments, against stat-ing their files;
- the hub's fan-out of one decoded batch to 50 subscriptions, against 1;
- a Query batch written by hand (speeddata.wire), against the protobuf runtime;
- a WebSocket frame of a chart's envelope, against numpy's own bytes of the same columns.
Run: make bench  (or .venv/bin/pytest benchmarks/test_serving_bench.py --benchmark-enable)
"""

import asyncio
import os

import numpy as np
import pytest

import speeddata
from speeddata.columns import Columns
from speeddata.decimation import Decimation
from speeddata.pb_enums import AGGREGATE, DATA_TYPE
from speeddata.live.hub import Subscription, fan_out
from speeddata.v1 import speeddata_pb2 as pb
from speeddata.serving.web_app import frame
from speeddata.wire import batch_message

from benchdata import T0


def _ratio(benchmark, name):
    if benchmark.stats:
        benchmark.extra_info["what"] = name


@pytest.fixture(scope="module")
def segmented_store(tmp_path_factory, full_size):
    """A store of one channel in many small segments."""
    path = tmp_path_factory.mktemp("retention") / "data"
    segments = 300 if full_size else 20
    with speeddata.store.open(path) as st:
        ch = st.create_channel("four", {"type": "record", "name": "four", "fields": [
            {"name": "time", "type": "long"}, {"name": "x", "type": "double"}]},
            segment_bytes=4096)
        for k in range(segments):
            t = T0 + np.arange(k * 200, (k + 1) * 200, dtype=np.int64) * 1_000_000
            ch.append_columns(t, {"x": np.arange(200.0)})
            ch.flush()
    return path


def test_retention_pass(benchmark, segmented_store):
    with speeddata.store.open(segmented_store, max_bytes=1 << 40) as st:
        deleted = benchmark(st.enforce_retention)
    assert deleted == []                       # under the quota: a pass that keeps all


def test_retention_baseline_stat_every_segment(benchmark, segmented_store):
    folder = segmented_store / "channels" / "four"
    benchmark(lambda: [os.stat(e.path) for e in os.scandir(folder)])


@pytest.fixture(scope="module")
def batch(full_size):
    n = 10_000 if full_size else 1_000
    rng = np.random.default_rng(0)
    return Columns(T0 + np.arange(n, dtype=np.int64) * 100_000,
                   {f"s{k}": rng.normal(size=n) for k in range(4)}, "rig")


def _subscriptions(n):
    loop = asyncio.new_event_loop()
    wake = asyncio.Event()
    subs = [Subscription(None, "rig", ["s0", "s1"], Decimation(), wake) for _ in range(n)]
    return loop, subs


@pytest.mark.parametrize("subscribers", [1, 50])
def test_hub_fan_out(benchmark, batch, subscribers):
    loop, subs = _subscriptions(subscribers)
    try:
        first = [0]

        def push():
            fan_out(subs, batch, first[0], 0)
            first[0] += len(batch)
            for s in subs:                     # taken as a stream would take them
                while s.take() is not None:
                    pass
        benchmark(push)
    finally:
        loop.close()
    assert all(s.delivered > 0 for s in subs)


def test_query_batch_by_hand(benchmark, batch):
    out = benchmark(lambda: b"".join(batch_message(batch, "rig", AGGREGATE, DATA_TYPE)))
    assert pb.Batch.FromString(out).rows == len(batch)


def test_query_batch_protobuf_baseline(benchmark, batch):
    def build():
        return pb.Batch(channel="rig", rows=len(batch), time=batch.time.tobytes(), columns=[
            pb.Column(name=k, type=pb.DATA_TYPE_FLOAT64, values=v.tobytes())
            for k, v in batch.data.items()]).SerializeToString()
    assert pb.Batch.FromString(benchmark(build)).rows == len(batch)


@pytest.fixture(scope="module")
def envelope():
    rng = np.random.default_rng(1)
    data = {}
    for k in range(8):
        data[f"s{k}:min"] = rng.normal(size=1200)
        data[f"s{k}:max"] = data[f"s{k}:min"] + 1
    return Columns(T0 + np.arange(1200, dtype=np.int64) * 50_000_000, data, "rig")


def test_websocket_frame(benchmark, envelope):
    out = benchmark(lambda: frame(envelope, "rig", first_record=0, next_record=1, missed=0))
    assert len(out) > 17 * 1200 * 8


def test_websocket_frame_numpy_baseline(benchmark, envelope):
    benchmark(lambda: b"".join([(envelope.time / 1e6).tobytes()] +
                               [v.tobytes() for v in envelope.data.values()]))
