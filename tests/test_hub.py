"""The live hub against a real supervisor and worker: one ring read fanned out to
subscriptions with their own signals and decimation, a resume point, a time before which
nothing is sent, a queue that drops the oldest for a subscriber that does not drain, and a
subscriber that stops reading dropped."""

import asyncio
import time

import numpy as np
import pytest

import speeddata
from speeddata.errors import ChannelNotFound, SchemaError, TooMany
from speeddata.ingest import Supervisor
from speeddata.live import Hub
from speeddata.live import hub as hub_module
from speeddata.send import builtin_schema, send

from helpers import free_udp_port


async def _collect(sub, want: int, timeout: float = 15.0) -> list:
    updates, got = [], 0
    deadline = time.monotonic() + timeout
    while got < want:
        left = deadline - time.monotonic()
        assert left > 0, f"{got} of {want} records came"
        u = await asyncio.wait_for(sub.next(), left)
        updates.append(u)
        got += u.next_record - u.first_record
    return updates


def _run(tmp_path, body):
    port = free_udp_port()
    cfg = speeddata.config.parse({"channels": [
        {"name": "example", "port": port, "schema": builtin_schema("example")}]})

    async def main():
        sup = Supervisor(str(tmp_path / "data"), cfg.channels).start()
        try:
            await asyncio.to_thread(sup.wait_ready)
            hub = Hub(sup, asyncio.get_running_loop())
            try:
                await body(hub, port)
            finally:
                hub.close()
        finally:
            await asyncio.to_thread(sup.stop)

    asyncio.run(main())


def test_one_ring_fans_out_to_subscriptions_each_with_its_own_view(tmp_path):
    async def body(hub, port):
        every = hub.subscribe("example")
        some = hub.subscribe("example", ["counter"])
        envelope = hub.subscribe("example", ["sine_wave"], "minmax:10")
        await asyncio.to_thread(send, port=port, rate=20_000, count=2000)
        full = np.concatenate([u.columns.counter for u in await _collect(every, 2000)])
        assert full.tolist() == list(range(2000))
        part = await _collect(some, 2000)
        assert all(u.columns.signals == ["counter"] for u in part)
        # the last bucket stays open until a record after it comes (it might grow)
        env = await _collect(envelope, 1990)
        cols = [u.columns for u in env]
        assert cols[0].signals == ["sine_wave:min", "sine_wave:max"]
        assert sum(len(c) for c in cols) == 199          # 1990 records, 10 per bucket
        sine = np.sin(2 * np.pi * np.arange(1990) / 20).reshape(199, 10)
        assert np.allclose(np.concatenate([c["sine_wave:max"] for c in cols]), sine.max(1))
        assert hub.subscriptions("example") == 3
        for sub in (every, some, envelope):
            sub.close()
        assert hub.subscriptions("example") == 0
    _run(tmp_path, body)


def test_resume_points_and_times(tmp_path):
    async def body(hub, port):
        first = hub.subscribe("example")
        await asyncio.to_thread(send, port=port, rate=20_000, count=1000)
        updates = await _collect(first, 1000)
        times = np.concatenate([u.columns.time for u in updates])
        first.close()
        # from a record number the ring still holds: exactly from there
        again = hub.subscribe("example", resume_from=400)
        got = np.concatenate([u.columns.counter for u in await _collect(again, 600)])
        assert got.tolist() == list(range(400, 1000))
        again.close()
        # from the ring's oldest, but nothing before a time
        oldest = hub.oldest("example")
        assert oldest is not None and oldest[0] == 0 and oldest[1] == times[0]
        since = int(times[700])
        later = hub.subscribe("example", resume_from=oldest[0], since=since)
        got = np.concatenate([u.columns.counter for u in await _collect(later, 300)])
        assert got.tolist() == list(range(700, 1000))
        later.close()
    _run(tmp_path, body)


def test_a_subscriber_that_does_not_drain_loses_the_oldest_and_is_told(tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(hub_module, "QUEUE_RECORDS", 500)

    async def body(hub, port):
        slow = hub.subscribe("example")
        await asyncio.to_thread(send, port=port, rate=20_000, count=3000)
        await asyncio.sleep(0.5)                     # the hub fans out; nobody takes
        taken, missed = [], 0
        while (u := slow.take()) is not None:
            taken.append(u.columns.counter)
            missed += u.missed
        counters = np.concatenate(taken)
        assert 0 < len(counters) <= 500 + 1000       # at most the queue (and one batch)
        assert missed + len(counters) == 3000        # every record delivered or counted
        assert counters[-1] == 2999                  # the newest kept, the oldest gone
        slow.close()
    _run(tmp_path, body)


def test_a_stalled_subscriber_is_dropped_and_limits_are_held(tmp_path):
    async def body(hub, port):
        hub.stall_after = 0.3
        hub.max_per_client = 2
        stalled = hub.subscribe("example", client="10.0.0.9")
        hub.subscribe("example", client="10.0.0.9")
        with pytest.raises(TooMany, match="10.0.0.9 has 2 live streams"):
            hub.subscribe("example", client="10.0.0.9")
        why = []
        stalled.on_stall = why.append
        for _ in range(3):
            await asyncio.to_thread(send, port=port, rate=20_000, count=200)
            await asyncio.sleep(0.25)
        assert why and "read nothing" in why[0]
        assert hub.stalled["example"] >= 1
        with pytest.raises(ChannelNotFound):
            stalled.take()
        hub.subscribe("example", client="10.0.0.9")  # its place was given back
        with pytest.raises(SchemaError):
            hub.subscribe("example", ["nope"])
        with pytest.raises(ChannelNotFound):
            hub.subscribe("nothing")
    _run(tmp_path, body)
