"""The gRPC service against a real ``speeddata serve`` process on loopback ports, with real
ingest workers receiving real UDP datagrams."""

import json
import socket
import threading

import fastavro
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import speeddata
from speeddata import store
from speeddata.client import Client
from speeddata.send import builtin_schema, send
from speeddata.v1 import speeddata_pb2 as pb

from helpers import ServeProcess, free_udp_port, wait_for

EXAMPLE = builtin_schema("example")


@pytest.fixture
def serve(tmp_path):
    """Start ``speeddata serve`` processes (stopped at the end, even when the test fails)."""
    procs = []

    def start(name="data", **kw) -> ServeProcess:
        p = ServeProcess(tmp_path / name, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture
def client():
    clients = []

    def make(address, **kw) -> Client:
        c = Client(address, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def running(c: Client, name: str) -> bool:
    return c.get_channel(name).status == "running"


def subscribed(c: Client, n: int, *names: str) -> None:
    """Wait until each named channel has n live subscriptions at the server."""
    wait_for(lambda: all(st["subscribers"] >= n for st in c.stats(list(names)).values()),
             what=f"{n} subscriptions")


class Follower:
    """Reads a Subscription in a thread until it has ``want`` records."""

    def __init__(self, sub, want: int):
        self.sub, self.want, self.batches = sub, want, []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for batch in self.sub:
            self.batches.append(batch)
            if self.count >= self.want:
                break

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.batches)

    def join(self, timeout=20) -> "Follower":
        self.thread.join(timeout)
        self.sub.close()
        assert self.count >= self.want, f"got {self.count} of {self.want} records"
        return self

    def column(self, name):
        return np.concatenate([b[name] for b in self.batches])


def test_register_send_then_subscribe_and_query_exact_values(serve, client):
    s = serve()
    c = client(s.address)
    port = free_udp_port()
    info = c.register_channel("rig", port, EXAMPLE)
    assert info.name == "rig" and info.port == port and info.source == "api"
    assert "sine_wave" in info.signals
    wait_for(lambda: running(c, "rig"), what="the worker")
    follower = Follower(c.subscribe("rig"), 2_000)
    envelope = Follower(c.subscribe("rig", ["sine_wave"], "minmax:10"), 190)
    subscribed(c, 2, "rig")
    send(port=port, rate=10_000, count=2_000)
    follower.join()
    envelope.join()
    counter = follower.column("counter")
    assert counter.tolist() == list(range(2_000))          # each once, in order
    expected = np.sin(2 * np.pi * np.arange(2_000) / 20)
    assert np.allclose(follower.column("sine_wave"), expected)
    low, high = envelope.column("sine_wave:min"), envelope.column("sine_wave:max")
    n = len(low)
    assert np.allclose(low, expected.reshape(-1, 10).min(1)[:n])
    assert np.allclose(high, expected.reshape(-1, 10).max(1)[:n])
    assert envelope.batches[0].signals == ["sine_wave:min", "sine_wave:max"]

    wait_for(lambda: c.stats(["rig"])["rig"]["stored_records"] == 2_000, what="stored")
    got = c.query("rig")
    with store.open(s.data, readonly=True) as st:
        local = st["rig"].read()
    assert got.time.tolist() == local.time.tolist()
    for name in local.signals:
        assert got[name].tolist() == local[name].tolist(), name
    t0, t1 = int(local.time[100]), int(local.time[300])
    part = c.query("rig", t0, t1, ["counter"], max_rows=64)
    assert part.counter.tolist() == list(range(100, 300)) and part.signals == ["counter"]
    ov = c.query("rig", int(local.time[0]), int(local.time[-1]) + 1, ["sine_wave"], buckets=4)
    assert len(ov) == 4 and ov["sine_wave:count"].sum() == 2_000
    assert ov["sine_wave:max"].max() == pytest.approx(expected.max())
    mean = c.query("rig", signals=["counter"], decimation="mean:100")
    assert mean["counter:mean"].tolist() == [k * 100 + 49.5 for k in range(20)]
    stats = c.stats(["rig"])["rig"]
    assert stats["records"] == stats["datagrams"] == 2_000 and stats["status"] == "running"
    assert stats["first_time"] == local.time[0] and stats["horizon_s"] > 0


def test_avro_query_is_a_container_file_any_avro_library_reads(serve, client, tmp_path):
    s = serve()
    c = client(s.address)
    port = free_udp_port()
    c.register_channel("rig", port, EXAMPLE)
    wait_for(lambda: running(c, "rig"), what="the worker")
    send(port=port, rate=20_000, count=3_000)
    wait_for(lambda: c.stats(["rig"])["rig"]["stored_records"] == 3_000, what="stored")
    path = c.query_avro("rig", tmp_path / "rig.avro")
    with open(path, "rb") as f:
        records = list(fastavro.reader(f))
    assert [r["counter"] for r in records] == list(range(3_000))
    assert all(isinstance(r["time"], int) for r in records[:5])
    assert c.get_schema("rig")["fields"][0]["name"] == "time"


def test_a_channel_registered_over_grpc_comes_back_after_a_restart(serve, client):
    s = serve()
    c = client(s.address)
    port = free_udp_port()
    c.register_channel("kept", port, EXAMPLE, decimation="minmax:10")
    wait_for(lambda: running(c, "kept"), what="the worker")
    assert s.stop() == 0
    s2 = serve()                                      # same store directory
    c2 = client(s2.address)
    wait_for(lambda: running(c2, "kept"), what="the worker after the restart")
    info = c2.get_channel("kept")
    assert (info.port, info.source, info.decimation) == (port, "api", "minmax:10")
    assert f"udp 127.0.0.1:{port}" in s2.output
    send(port=port, rate=10_000, count=500)
    wait_for(lambda: c2.stats(["kept"])["kept"]["stored_records"] == 500, what="stored")
    c2.deregister_channel("kept")
    assert [i.status for i in c2.list_channels()] == ["stored"]   # data stays
    assert c2.list_channels("running") == []
    c2.delete_channel_data("kept")
    assert c2.list_channels() == []


def test_resume_gets_what_the_ring_still_holds_or_says_what_was_lost(serve, client):
    s = serve()
    c = client(s.address)
    port = free_udp_port()
    c.register_channel("rig", port, EXAMPLE)
    wait_for(lambda: running(c, "rig"), what="the worker")
    first = c.subscribe("rig", ["counter"])
    f = Follower(first, 1_000)
    subscribed(c, 1, "rig")
    send(port=port, rate=10_000, count=1_000)
    f.join()
    resume = dict(first.next_record)
    assert resume == {"rig": 1_000}
    # disconnected: 3000 more arrive; the ring still holds them
    send(port=port, rate=20_000, count=3_000)
    wait_for(lambda: c.stats(["rig"])["rig"]["records"] == 4_000, what="records")
    again = c.subscribe("rig", ["counter"], resume_from=resume)
    g = Follower(again, 3_000).join()
    assert g.column("counter").tolist() == list(range(3_000))     # each send counts from 0
    assert again.next_record == {"rig": 4_000}
    assert again.missed == {"rig": 0}
    # 100,000 more: more than the ring holds, so some are lost and counted exactly
    send(port=port, rate=0, count=100_000)
    wait_for(lambda: c.stats(["rig"])["rig"]["records"] == 104_000, timeout=30,
             what="records")
    late = c.subscribe("rig", ["counter"], resume_from=dict(again.next_record))
    h = Follower(late, 1)
    wait_for(lambda: h.batches and late.missed["rig"] + h.count == 100_000
             if h.batches else False, what="the catch-up")
    h.join()
    assert late.missed["rig"] > 0
    got = h.column("counter")
    assert np.all(np.diff(got) == 1) and got[-1] == 99_999 and len(got) == 100_000 - \
        late.missed["rig"]


def test_a_slow_subscriber_does_not_slow_a_fast_one_or_the_worker(serve, client):
    s = serve()
    c = client(s.address)
    port = free_udp_port()
    c.register_channel("rig", port, EXAMPLE)
    wait_for(lambda: running(c, "rig"), what="the worker")
    stalled = c.subscribe("rig")                # opened, never read
    stalled_iter = iter(stalled)
    reader = threading.Thread(target=lambda: next(stalled_iter, None), daemon=True)
    reader.start()                               # starts the call, takes one batch, stops
    fast = Follower(c.subscribe("rig", ["counter"]), 60_000)
    subscribed(c, 2, "rig")
    send(port=port, rate=30_000, count=60_000)
    fast.join(timeout=30)
    assert fast.column("counter").tolist() == list(range(60_000))
    st = wait_for(lambda: (lambda st: st["records"] == 60_000 and st)(c.stats(["rig"])["rig"]),
                  what="the worker's counters")
    assert st["kernel_drops"] == 0
    assert st["subscribers"] == 1               # fast is closed; the stalled one remains
    stalled.close()
    wait_for(lambda: c.stats(["rig"])["rig"]["subscribers"] == 0,
             what="the closed stream's hub slot to be freed")


def test_fifty_subscribers_on_one_channel_each_get_every_record(serve, client):
    s = serve()
    c = client(s.address)
    port = free_udp_port()
    c.register_channel("rig", port, EXAMPLE)
    wait_for(lambda: running(c, "rig"), what="the worker")
    followers = [Follower(c.subscribe("rig", ["counter"]), 3_000) for _ in range(50)]
    subscribed(c, 50, "rig")
    send(port=port, rate=5_000, count=3_000)
    for f in followers:
        assert f.join().column("counter").tolist() == list(range(3_000))


def test_several_channels_share_one_stream_fairly(serve, client):
    s = serve()
    c = client(s.address)
    fast_port = free_udp_port(count=2)          # two ports, never the same one twice
    slow_port = fast_port + 1
    c.register_channel("fast", fast_port, EXAMPLE)
    c.register_channel("slow", slow_port, EXAMPLE)
    wait_for(lambda: running(c, "fast") and running(c, "slow"), what="the workers")
    sub = c.subscribe(["fast", "slow"], ["counter"])
    seen = {"fast": 0, "slow": 0}

    def follow():
        for batch in sub:
            seen[batch.channel] += len(batch)
            if seen["slow"] >= 20:
                break
    t = threading.Thread(target=follow, daemon=True)
    t.start()
    subscribed(c, 1, "fast", "slow")
    flood = threading.Thread(target=send, kwargs=dict(port=fast_port, rate=0, count=300_000))
    flood.start()
    send(port=slow_port, rate=50, count=20)      # 1 record per 20 ms while the other floods
    t.join(timeout=20)
    flood.join()
    sub.close()
    assert seen["slow"] == 20 and seen["fast"] > 0


def test_health_and_reflection(serve):
    s = serve()
    with grpc.insecure_channel(s.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", "speeddata.v1.SpeedData"):
            assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == \
                health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        answers = stub.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {sv.name for a in answers for sv in a.list_services_response.service}
    assert {"speeddata.v1.SpeedData", "grpc.health.v1.Health"} <= names


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def test_every_error_has_its_status_code_and_names_the_problem(serve, tmp_path):
    s = serve(config={"limits": {"query_records": 100}})
    port = free_udp_port()
    with grpc.insecure_channel(s.address) as ch:
        from speeddata.v1 import speeddata_pb2_grpc
        stub = speeddata_pb2_grpc.SpeedDataStub(ch)
        schema = json.dumps(speeddata.schema.load_avro(EXAMPLE))

        def register(**kw):
            args = dict(name="rig", port=port, schema=schema)
            args.update(kw)
            return stub.RegisterChannel(pb.RegisterChannelRequest(**args))

        code, detail = status_of(lambda: register(schema='{"type": "record", "name": "x", '
                                                         '"fields": [{"name": "a"}]}'))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "type" in detail
        code, detail = status_of(lambda: register(schema="/etc/passwd"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a file name" in detail
        code, detail = status_of(lambda: register(port=80))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "80" in detail
        register()
        code, detail = status_of(lambda: register(port=free_udp_port()))
        assert code == grpc.StatusCode.ALREADY_EXISTS and "'rig'" in detail
        code, detail = status_of(lambda: register(name="other"))
        assert code == grpc.StatusCode.ALREADY_EXISTS and str(port) in detail
        held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        held_port = free_udp_port()
        held.bind(("127.0.0.1", held_port))
        try:
            code, detail = status_of(lambda: register(name="blocked", port=held_port))
        finally:
            held.close()
        assert code == grpc.StatusCode.UNAVAILABLE and str(held_port) in detail
        code, detail = status_of(lambda: stub.GetChannel(pb.GetChannelRequest(name="nope")))
        assert code == grpc.StatusCode.NOT_FOUND and "'nope'" in detail
        code, detail = status_of(lambda: stub.DeleteTag(pb.DeleteTagRequest(name="nope")))
        assert code == grpc.StatusCode.NOT_FOUND and "nope" in detail
        code, detail = status_of(lambda: list(stub.Query(pb.QueryRequest(
            channels=["rig"], start=20, end=10))))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "before" in detail
        code, detail = status_of(lambda: list(stub.Query(pb.QueryRequest(
            channels=["rig"], signals=["nope"]))))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "nope" in detail
        code, detail = status_of(lambda: list(stub.Subscribe(pb.SubscribeRequest(
            channels=[pb.ChannelSubscription(channel="ghost")]))))
        assert code == grpc.StatusCode.NOT_FOUND and "ghost" in detail
        code, detail = status_of(lambda: stub.CreateTag(pb.CreateTagRequest(
            name="t", start=5, end=1)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        stub.CreateTag(pb.CreateTagRequest(name="t", start=1, end=5))
        code, detail = status_of(lambda: stub.CreateTag(pb.CreateTagRequest(
            name="t", start=1, end=9)))
        assert code == grpc.StatusCode.ALREADY_EXISTS and "replace" in detail
        # the query limit
        wait_for(lambda: stub.GetChannel(pb.GetChannelRequest(name="rig")).status ==
                 pb.CHANNEL_STATUS_RUNNING, what="the worker")
        send(port=port, rate=20_000, count=500)
        with store.open(s.data, readonly=True) as st:
            wait_for(lambda: st["rig"].count() == 500, what="stored")
        code, detail = status_of(lambda: list(stub.Query(pb.QueryRequest(channels=["rig"]))))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 100" in detail
        overview = list(stub.Query(pb.QueryRequest(channels=["rig"], buckets=10)))
        assert overview[0].batch.rows == 10           # what a chart asks for stays open
        code, detail = status_of(lambda: stub.DeleteChannelData(
            pb.DeleteChannelDataRequest(name="rig")))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "deregister" in detail


def test_with_a_token_every_change_needs_it(serve, client):
    s = serve(token="s3cret")
    anonymous, wrong, right = (client(s.address), client(s.address, token="guess"),
                               client(s.address, token="s3cret"))
    port = free_udp_port()
    for c in (anonymous, wrong):
        with pytest.raises(speeddata.Unauthenticated, match="Bearer"):
            c.register_channel("rig", port, EXAMPLE)
        with pytest.raises(speeddata.Unauthenticated):
            c.tag("t", 1, 2)
    right.register_channel("rig", port, EXAMPLE)
    assert [i.name for i in anonymous.list_channels()] == ["rig"]   # reading needs none
    with pytest.raises(speeddata.Unauthenticated):
        anonymous.deregister_channel("rig")
    right.deregister_channel("rig")


def test_export_streams_an_hdf5_file_with_progress(serve, client, tmp_path):
    s = serve()
    c = client(s.address)
    port = free_udp_port()
    c.register_channel("rig", port, EXAMPLE)
    wait_for(lambda: running(c, "rig"), what="the worker")
    send(port=port, rate=20_000, count=5_000)
    wait_for(lambda: c.stats(["rig"])["rig"]["stored_records"] == 5_000, what="stored")
    local = c.query("rig")
    c.tag("run", int(local.time[1000]), int(local.time[2000]), note="the good part")
    assert c.tags()[0]["note"] == "the good part"
    seen = []
    path = c.export_hdf5(tmp_path / "run.h5", tag="run", progress=seen.append)
    ds = speeddata.read_hdf5(path)
    assert ds["rig"]["counter"].tolist() == list(range(1000, 2000))
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    with pytest.raises(speeddata.TagNotFound):
        c.export_hdf5(tmp_path / "x.h5", tag="nope")
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.h5.part").exists()
