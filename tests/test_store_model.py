"""The store against a model: a plain list of (time, id) records per channel."""

import shutil
import tempfile

import fastavro
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import speeddata

SCHEMA = {"type": "record", "name": "m", "fields": [
    {"name": "time", "type": "long"}, {"name": "id", "type": "long"}]}
CHANNELS = ("a", "b")
times = st.integers(0, 10_000)


class StoreModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="speeddata-model-")
        self.options = dict(block_bytes=128, segment_bytes=1024, flush_interval=3600)
        self.store = speeddata.store.open(self.dir, **self.options)
        for name in CHANNELS:
            self.store.create_channel(name, SCHEMA)
        self.model = {name: [] for name in CHANNELS}
        self.next_id = 0
        self.cursor = 0
        self.tags = []

    def teardown(self):
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _append(self, channel, ts):
        records = []
        for t in ts:
            records.append({"time": t, "id": self.next_id})
            self.model[channel].append((t, self.next_id))
            self.next_id += 1
        assert self.store[channel].append(records).records == len(records)

    @rule(channel=st.sampled_from(CHANNELS), n=st.integers(1, 60), step=st.integers(0, 5))
    def append_in_order(self, channel, n, step):
        ts = [self.cursor + k * step for k in range(n)]
        self.cursor = ts[-1]
        self._append(channel, ts)

    @rule(channel=st.sampled_from(CHANNELS), ts=st.lists(times, min_size=1, max_size=40))
    def append_out_of_order(self, channel, ts):
        self._append(channel, ts)

    @rule(channel=st.sampled_from(CHANNELS))
    def flush(self, channel):
        self.store[channel].flush()

    @rule(channel=st.sampled_from(CHANNELS), lo=times, length=st.integers(0, 4000),
          signals=st.sampled_from([None, ["id"]]))
    def read(self, channel, lo, length, signals):
        hi = lo + length
        got = self.store[channel].read(lo, hi, signals=signals)
        want = sorted([r for r in self.model[channel] if lo <= r[0] < hi], key=lambda r: r[0])
        assert got.time.tolist() == [t for t, _ in want]
        assert got.id.tolist() == [i for _, i in want]

    @rule(lo=times, length=st.integers(1, 3000), channel=st.sampled_from([None, "a"]))
    def tag(self, lo, length, channel):
        name = f"t{self.next_id}-{len(self.tags)}-{lo}"
        self.tags = [t for t in self.tags if t[0] != name]   # the same name replaces
        self.store.tag(name, lo, lo + length, channels=None if channel is None else [channel],
                       replace=True)
        self.tags.append((name, lo, lo + length, channel))

    @precondition(lambda self: self.tags)
    @rule(data=st.data())
    def untag(self, data):
        name, *_ = self.tags.pop(data.draw(st.integers(0, len(self.tags) - 1)))
        self.store.untag(name)

    @rule(quota=st.integers(300, 4000))
    def retention(self, quota):
        """Retention deletes whole segments: the model loses exactly their records, and
        never a tagged one."""
        for name in CHANNELS:
            self.store[name].flush()
        # fastavro, not SpeedData, says what each segment holds
        held = {path: (name, _fastavro_records(path))
                for name in CHANNELS for path in self.store[name].segments()}
        self.store.options["max_bytes"] = quota
        try:
            deleted = self.store.enforce_retention()
            event(f"retention deleted {min(len(deleted), 2)}+ segments")
        finally:
            self.store.options["max_bytes"] = None
        for path in deleted:
            name, records = held[path]
            gone = {r["id"] for r in records}
            for tag, lo, hi, ch in self.tags:
                if ch in (None, name):
                    assert not any(lo <= r["time"] < hi for r in records), (tag, path)
            self.model[name] = [r for r in self.model[name] if r[1] not in gone]

    @rule()
    def reopen(self):
        self.store.close()
        self.store = speeddata.store.open(self.dir, **self.options)

    @invariant()
    def stats_agree(self):
        for name in CHANNELS:
            ch = self.store[name]
            ch.flush()
            assert ch.stats().stored_records == len(self.model[name])


def _fastavro_records(path):
    with open(path, "rb") as f:
        return list(fastavro.reader(f))


StoreModel.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestStoreModel = pytest.mark.slow(StoreModel.TestCase)
