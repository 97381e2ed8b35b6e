"""The cluster in the cases it exists for, on real processes on loopback: one NATS server
(the first thing anyone tries) with the default config, a replicas setting the servers
cannot hold, and live data of a node that dies: a subscription begun after it died fails at
once, and one that was running ends, both with UNAVAILABLE naming the node."""

import threading
import time

import pytest

import speeddata
from speeddata.errors import Unavailable
from speeddata.send import builtin_schema, send
from speeddata.ingest import remove_orphans

from helpers import NatsServers, ServeProcess, free_udp_port, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
HEARTBEAT = 0.5
SHM = "/dev/shm"
EXAMPLE = builtin_schema("example")


def node(folder, name, urls, *, channels=(), **cluster):
    cfg = {"cluster": {"nats": urls, "node": name, "heartbeat": HEARTBEAT, **cluster},
           "channels": [{"name": c, "port": p, "schema": EXAMPLE} for c, p in channels]}
    (folder / name).mkdir(exist_ok=True)
    return ServeProcess(folder / name / "data", config=cfg)


@pytest.fixture
def one_nats(tmp_path):
    nats = NatsServers(tmp_path, 1)
    try:
        nats.wait_ready(1)
        yield nats
    finally:
        nats.stop()


def test_one_nats_server_and_the_default_config_make_a_cluster(tmp_path, one_nats):
    port = free_udp_port()
    a = node(tmp_path, "a", one_nats.urls, channels=[("ch-a", port)])
    b = node(tmp_path, "b", one_nats.urls)
    try:
        with speeddata.Client(b.address) as cb:
            wait_for(lambda: [(c.name, c.node, c.status) for c in cb.list_channels()] ==
                     [("ch-a", "a", "running")], what="a's channel listed through b")
            info = cb.cluster()
            assert info["connected"] and not info["problem"], info
            cb.register_channel("ch-b", free_udp_port(), EXAMPLE)     # the registry works
            assert cb.get_channel("ch-b").node == "b"
    finally:
        b.stop()
        a.stop()
    assert "replicas" not in a.output and "unreachable" not in a.output, a.output
    # the heartbeats and the registry come pushed, not read each beat
    assert "following the nodes and the registry by KV watch" in a.output, a.output
    assert "KV watch is behind" not in a.output, a.output


def test_replicas_the_servers_cannot_hold_are_refused_at_start(tmp_path, one_nats):
    with pytest.raises(AssertionError) as e:
        node(tmp_path, "a", one_nats.urls, replicas=3)
    text = str(e.value)
    assert "cluster.replicas: 3 copies" in text and "has 1 server" in text, text


def test_live_data_of_a_node_that_died_ends_with_unavailable(tmp_path, one_nats):
    port = free_udp_port()
    a = node(tmp_path, "a", one_nats.urls, channels=[("ch-a", port)])
    b = node(tmp_path, "b", one_nats.urls)
    stop = threading.Event()
    sender = threading.Thread(target=send, kwargs=dict(port=port, rate=500, stop=stop.is_set))
    sender.start()
    ended: list[BaseException] = []
    got = {"batches": 0}
    try:
        with speeddata.Client(b.address) as cb:
            wait_for(lambda: [c.status for c in cb.list_channels()] == ["running"],
                     what="a's channel through b")

            def follow():
                try:
                    with cb.subscribe("ch-a", ["counter"]) as live:
                        for _ in live:
                            got["batches"] += 1
                except BaseException as e:         # what ends it
                    ended.append(e)
            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            wait_for(lambda: got["batches"] > 5, what="live batches of a through b")
            a.proc.kill()                                  # kill -9 the owner
            a.proc.wait()
            killed = time.monotonic()
            follower.join(timeout=15)
            assert not follower.is_alive(), "the subscription stalled after its owner died"
            took = time.monotonic() - killed
            assert ended and isinstance(ended[0], Unavailable), ended
            assert "node 'a' (owner of 'ch-a') is unreachable since" in str(ended[0])
            assert took < 10 * HEARTBEAT + 3, took
            # begun after: refused at once, not a stream that never speaks
            t = time.monotonic()
            with pytest.raises(Unavailable, match="node 'a' \\(owner of 'ch-a'\\)"):
                with cb.subscribe("ch-a") as live:
                    next(iter(live))
            assert time.monotonic() - t < 5
    finally:
        stop.set()
        sender.join()
        b.stop()
        a.stop()
        remove_orphans(SHM)                 # the killed node's live rings, as its next start would


def test_reads_of_a_dead_owner_say_so_and_recover_when_it_returns(tmp_path, one_nats):
    port = free_udp_port()
    a = node(tmp_path, "a", one_nats.urls, channels=[("ch-a", port)])
    b = node(tmp_path, "b", one_nats.urls)
    try:
        send(port=port, rate=5000, count=1000)
        with speeddata.Client(b.address) as cb:
            wait_for(lambda: [c.status for c in cb.list_channels()] == ["running"],
                     what="a's channel through b")
            wait_for(lambda: len(cb.query("ch-a")) == 1000, what="a's records through b")
            a.proc.kill()
            a.proc.wait()
            wait_for(lambda: [c.status for c in cb.list_channels()] == ["unreachable"],
                     what="a unreachable")
            t = time.monotonic()
            with pytest.raises(Unavailable) as e:
                cb.query("ch-a")
            assert time.monotonic() - t < 3
            text = str(e.value)
            assert text.startswith("node 'a' (owner of 'ch-a') is unreachable since"), text
            assert "unavailable: the server is unavailable" not in text
            remove_orphans(SHM)
            a = node(tmp_path, "a", one_nats.urls, channels=[("ch-a", port)])   # back
            back = time.monotonic()
            wait_for(lambda: _answers(cb), timeout=30, what="a routed query after a's return")
            took = time.monotonic() - back
            assert took < 4 * HEARTBEAT + 3, took      # not the gRPC back-off's 25-45 s
    finally:
        b.stop()
        a.stop()


def _answers(client) -> bool:
    try:
        return len(client.query("ch-a")) == 1000
    except Unavailable:
        return False


def test_a_registration_before_the_node_joined_is_refused_not_kept_local(tmp_path):
    from helpers import free_tcp_port
    nats = NatsServers(tmp_path, 1)
    nats.stop()                                        # not there yet
    grpc_port = free_tcp_port()
    answers: list = []

    def register_early():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not answers:
            try:
                with speeddata.Client(f"127.0.0.1:{grpc_port}", timeout=2) as c:
                    c.register_channel("early", free_udp_port(), EXAMPLE)
                    answers.append("registered")
            except Unavailable as e:
                if "not joined" in str(e) or "cannot be reached" in str(e):
                    answers.append(str(e))
            except Exception:
                time.sleep(0.05)
    early = threading.Thread(target=register_early)
    early.start()
    (tmp_path / "a").mkdir()
    a = ServeProcess(tmp_path / "a" / "data", config={"cluster": {
        "nats": nats.urls, "node": "a", "heartbeat": HEARTBEAT}},
        extra_args=("--grpc", f"127.0.0.1:{grpc_port}"))
    try:
        early.join(timeout=40)
        assert answers and answers[0] != "registered", answers
        with speeddata.Client(a.address) as c:
            assert "early" not in [ch.name for ch in c.list_channels()]   # nothing local
            for i in range(len(nats.procs)):
                nats.start(i)
            nats.wait_ready(1)
            wait_for(lambda: c.cluster()["connected"], timeout=30, what="a joined")
            c.register_channel("early", free_udp_port(), EXAMPLE)
            assert c.get_channel("early").node == "a"
    finally:
        a.stop()
        nats.stop()


def test_a_node_whose_clock_is_an_hour_ahead_is_alive_and_dies_like_any(tmp_path, one_nats):
    """Liveness is read from when NATS stored each heartbeat, never from a host's clock: a
    node an hour ahead is neither dead to the others nor immortal when it dies."""
    import os
    ports = free_udp_port(count=2)
    (tmp_path / "a").mkdir()
    os.environ["SPEEDDATA_CLOCK_SKEW"] = "3600"          # inherited by a's process only
    try:
        a = ServeProcess(tmp_path / "a" / "data", config={
            "cluster": {"nats": one_nats.urls, "node": "a", "heartbeat": HEARTBEAT},
            "channels": [{"name": "ch-a", "port": ports, "schema": EXAMPLE}]})
    finally:
        del os.environ["SPEEDDATA_CLOCK_SKEW"]
    b = node(tmp_path, "b", one_nats.urls, channels=[("ch-b", ports + 1)])
    try:
        with speeddata.Client(a.address) as ca, speeddata.Client(b.address) as cb:
            for c in (ca, cb):          # each sees the other alive, whatever their clocks
                wait_for(lambda: {x.name: x.status for x in c.list_channels()} ==
                         {"ch-a": "running", "ch-b": "running"}, what="both alive")
            time.sleep(6 * HEARTBEAT)                       # and stays so
            assert {x.name: x.status for x in ca.list_channels()} == \
                {"ch-a": "running", "ch-b": "running"}
            assert all(n["reachable"] for n in cb.cluster()["nodes"])
            a.proc.kill()                                   # the skewed one dies
            a.proc.wait()
            t = time.monotonic()
            wait_for(lambda: {x.name: x.status for x in cb.list_channels()}["ch-a"] ==
                     "unreachable", what="the skewed node seen dead")
            assert time.monotonic() - t < 10 * HEARTBEAT + 3
    finally:
        b.stop()
        a.stop()
        remove_orphans(SHM)


def test_two_nodes_with_one_name_the_second_is_refused_naming_the_first(tmp_path, one_nats):
    a = node(tmp_path, "a", one_nats.urls)
    try:
        with pytest.raises(AssertionError, match="did not start") as e:
            cfg = {"cluster": {"nats": one_nats.urls, "node": "a", "heartbeat": HEARTBEAT}}
            (tmp_path / "twin").mkdir()
            ServeProcess(tmp_path / "twin" / "data", config=cfg)
        assert f"node name 'a' is held by a running node (gRPC {a.address}" in str(e.value)
        with speeddata.Client(a.address) as c:            # the first is undisturbed
            assert [n["name"] for n in c.cluster()["nodes"] if n["reachable"]] == ["a"]
        # killed, its name is free once it has been silent: a new process takes it over
        a.proc.kill()
        a.proc.wait()
        a.stop()
        a = ServeProcess(tmp_path / "twin" / "data", config={"cluster": {
            "nats": one_nats.urls, "node": "a", "heartbeat": HEARTBEAT}})
        assert "node name 'a' was held by" in a.output and "taken over" in a.output
        with speeddata.Client(a.address) as c:
            wait_for(lambda: c.cluster()["connected"], what="the new a joined")
            node_a = [n for n in c.cluster()["nodes"] if n["name"] == "a"]
            assert node_a and node_a[0]["reachable"] and node_a[0]["grpc"] == a.address
    finally:
        a.stop()


def test_an_archive_with_a_dead_owner_fails_naming_it_or_is_marked_partial(tmp_path,
                                                                         one_nats):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "speeddata.cli", *args],
                              capture_output=True, text=True, timeout=120)

    ports = free_udp_port(count=2)
    a = node(tmp_path, "a", one_nats.urls, channels=[("ch-a", ports)])
    b = node(tmp_path, "b", one_nats.urls, channels=[("ch-b", ports + 1)])
    try:
        t0 = time.time_ns()
        send(port=ports, rate=5000, count=500)
        with speeddata.Client(b.address) as cb:
            wait_for(lambda: len(cb.query("ch-a")) == 500, what="a's records through b")
            cb.tag("trip", t0, time.time_ns() + 10**9, note="pump")
            a.proc.kill()
            a.proc.wait()
            wait_for(lambda: {c.name: c.status for c in cb.list_channels()}["ch-a"] ==
                     "unreachable", what="a unreachable")
        out = cli("archive", "trip", "--server", b.address)
        assert out.returncode == 2, out.stdout
        assert "cannot archive tag 'trip': ch-a cannot be read (node a unreachable)" in \
            out.stderr and "--partial" in out.stderr
        out = cli("archive", "trip", "--server", b.address, "--partial")
        assert out.returncode == 0, out.stderr
        assert "PARTIAL: not archived, their node unreachable: ch-a" in out.stdout
        assert "no records in the range: ch-b" in out.stdout      # said, not silently left
        listed = cli("archives", "--nats", one_nats.urls[0])
        assert "PARTIAL" in listed.stdout and "trip" in listed.stdout
    finally:
        b.stop()
        a.stop()
        remove_orphans(SHM)


def test_a_forgotten_node_s_names_are_registered_again_and_it_returns_to_find_them_taken(
        tmp_path, one_nats):
    import json
    import subprocess
    import sys
    import urllib.error
    import urllib.request
    from speeddata.errors import NodeAlive, NodeNotFound

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "speeddata.cli", *args],
                              capture_output=True, text=True, timeout=60)

    ports = free_udp_port(count=3)
    a = node(tmp_path, "a", one_nats.urls, channels=[("rig", ports), ("cart", ports + 1)])
    b = node(tmp_path, "b", one_nats.urls)
    c = node(tmp_path, "c", one_nats.urls)
    try:
        send(port=ports, rate=5000, count=200)
        with speeddata.Client(c.address) as cc, speeddata.Client(b.address) as cb:
            wait_for(lambda: {ch.name: ch.node for ch in cc.list_channels()} ==
                     {"rig": "a", "cart": "a"}, what="a's channels through c")
            with pytest.raises(NodeAlive, match="node 'a' is alive"):      # alive: refused
                cc.forget_node("a")
            request = urllib.request.Request(c.url + "api/v1/cluster/nodes/a",
                                             method="DELETE")
            with pytest.raises(urllib.error.HTTPError) as e:               # on REST alike
                urllib.request.urlopen(request)
            assert e.value.code == 409
            assert json.loads(e.value.read())["code"] == "FAILED_PRECONDITION"
            with pytest.raises(NodeNotFound, match="no node 'nobody'"):
                cc.forget_node("nobody")
            with pytest.raises(speeddata.RequestError, match="the one asked"):
                cc.forget_node("c")
            with pytest.raises(speeddata.ChannelExists, match="node 'a'"):  # the name held
                cb.register_channel("rig", ports + 2, EXAMPLE)

            a.proc.kill()
            a.proc.wait()
            wait_for(lambda: {ch.status for ch in cc.list_channels()} == {"unreachable"},
                     what="a unreachable through c")
            out = cli("cluster", "forget", "a", "--unreachable-for", "1h",
                      "--server", c.address)
            assert out.returncode == 2 and "less than the 3600 s asked" in out.stderr, out
            out = cli("cluster", "forget", "a", "--server", c.address)
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "forgot node a; released cart, rig"
            assert cc.list_channels() == []
            assert [n["name"] for n in cc.cluster()["nodes"]] == ["b", "c"]
            listed = cli("cluster", "--server", c.address)
            assert "node c" in listed.stdout and " a " not in listed.stdout, listed.stdout
            with pytest.raises(NodeNotFound, match="forgotten already"):
                cc.forget_node("a")

            cb.register_channel("rig", ports + 2, EXAMPLE)            # free: b takes it
            wait_for(lambda: {ch.name: ch.node for ch in cc.list_channels()} == {"rig": "b"},
                     what="rig on b through c")

            remove_orphans(SHM)
            a = node(tmp_path, "a", one_nats.urls, channels=[("rig", ports), ("cart", ports + 1)])
            wait_for(lambda: {ch.name: ch.node for ch in cc.list_channels()} ==
                     {"rig": "b", "cart": "a"}, what="a back, offering only cart")
            assert "was forgotten by the cluster" in a.output and "through node c" in a.output
            wait_for(lambda: "registered on node b too" in a.output,
                     what="a told rig is b's now")
            assert cc.get_channel("rig").port == ports + 2
            t_back = time.time_ns()
            send(port=ports, rate=5000, count=100)          # a still stores its own copy
            with speeddata.Client(a.address) as ca:
                wait_for(lambda: len(ca.query("rig", t_back)) == 100, what="a's rig kept")
    finally:
        c.stop()
        b.stop()
        a.stop()
        remove_orphans(SHM)
