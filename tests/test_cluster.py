"""A cluster of SpeedData nodes on NATS JetStream, as real processes on loopback: three
``nats-server`` processes routed into one JetStream cluster and three ``speeddata serve``
nodes, each with its own store and channel. What one node holds is listed, followed live,
queried, exported, tagged and archived through the others; a node and a NATS server are
killed with SIGKILL; NATS stops entirely and comes back."""

import asyncio
import threading
import time

import h5py
import numpy as np
import pytest

import speeddata
from speeddata.errors import ChannelExists, SpeedDataError
from speeddata.send import builtin_schema, send

from helpers import NatsServers, ServeProcess, free_udp_port, wait_for
from test_web_pages import COUNT_INK, browser, open_page, shot  # noqa: F401 (a fixture)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
HEARTBEAT = 0.5
EXAMPLE = builtin_schema("example")


def node(folder, name, urls, *, channels=(), store=None, retention=None, replicas=3,
         extra=()):
    cfg = {"cluster": {"nats": urls, "node": name, "replicas": replicas,
                       "heartbeat": HEARTBEAT},
           "channels": [{"name": c, "port": p, "schema": EXAMPLE} for c, p in channels]}
    if store:
        cfg["store"] = store
    if retention:
        cfg["retention"] = retention
    (folder / name).mkdir(exist_ok=True)
    return ServeProcess(folder / name / "data", config=cfg, extra_args=extra)


class Rig:
    """Three NATS servers and nodes a, b and c, with channels ch-a, ch-b and ch-c."""

    def __init__(self, folder):
        self.folder = folder
        self.nats = NatsServers(folder, 3)
        self.nodes: dict[str, ServeProcess] = {}
        self.ports: dict[str, int] = {}
        self.clients: dict[str, speeddata.Client] = {}
        try:
            self.nats.wait_ready(3)
            for name in "abc":
                self.ports[name] = free_udp_port()
                # a and b under retention pressure: small segments and a small quota
                self.nodes[name] = node(
                    folder, name, self.nats.urls, channels=[(f"ch-{name}", self.ports[name])],
                    store={"segment_bytes": 24 << 10, "block_bytes": 4 << 10},
                    retention={"max_bytes": 160 << 10} if name in "ab" else None)
                self.clients[name] = speeddata.Client(self.nodes[name].address)
            wait_for(lambda: all([ch.status for ch in c.list_channels()] == ["running"] * 3
                                 for c in self.clients.values()),
                     timeout=30, what="every channel listed, running, on every node")
        except BaseException:
            self.stop()
            raise

    def stop(self):
        for c in self.clients.values():
            c.close()
        for n in self.nodes.values():
            if n.proc.poll() is None:
                n.stop()
        self.nats.stop()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("cluster"))
    yield r
    r.stop()


def stored(client, channel):
    return client.stats([channel])[channel]["stored_records"]


def test_every_node_lists_every_channel_with_its_node_and_status(rig):
    for name, client in rig.clients.items():
        listed = {c.name: c for c in client.list_channels()}
        assert sorted(listed) == ["ch-a", "ch-b", "ch-c"], name
        for owner in "abc":
            ch = listed[f"ch-{owner}"]
            assert ch.node == owner and ch.status == "running" and \
                ch.port == rig.ports[owner]
            assert "sine_wave" in ch.signals
        info = client.cluster()
        assert info["clustered"] and info["connected"] and info["node"] == name
        assert sorted(n["name"] for n in info["nodes"]) == ["a", "b", "c"]
    # the REST list of any node too
    import json
    import urllib.request
    with urllib.request.urlopen(rig.nodes["b"].url + "api/v1/channels") as r:
        channels = json.load(r)["channels"]
    assert {c["name"]: c["node"] for c in channels} == {"ch-a": "a", "ch-b": "b", "ch-c": "c"}


def test_live_data_of_one_node_through_anothers_grpc_at_full_rate(rig):
    """Records sent to node a, followed through node c's Subscribe: every one, in order."""
    start = stored(rig.clients["a"], "ch-a")
    got, missed = [], [0]
    ready = threading.Event()

    def follow():
        with rig.clients["c"].subscribe("ch-a", ["counter"]) as live:
            ready.set()
            for batch in live:
                got.extend(batch["counter"].tolist())
                missed[0] = sum(live.missed.values())
                if len(got) >= 3000:
                    return

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    assert ready.wait(10)
    time.sleep(1.0)          # the lease reaches node a before the first record
    send(port=rig.ports["a"], rate=3000, count=3000)
    t.join(20)
    assert not t.is_alive(), f"only {len(got)} live records came through node c"
    assert missed[0] == 0 and got[:3000] == list(range(got[0], got[0] + 3000))
    wait_for(lambda: stored(rig.clients["a"], "ch-a") == start + 3000, what="stored on a")
    # what node a stored is what node c relayed
    cols = rig.clients["a"].query("ch-a")
    assert got[:3000] == cols["counter"][-3000:].tolist()


def test_a_chart_on_node_b_draws_a_channel_of_node_a(rig, browser):
    stop = threading.Event()
    sender = threading.Thread(target=send, kwargs=dict(port=rig.ports["a"], rate=500,
                                                       stop=stop.is_set), daemon=True)
    sender.start()
    try:
        page, errors = open_page(browser, rig.nodes["b"].url)
        page.wait_for_function("() => SpeedData.charts && SpeedData.charts.length >= 3",
                               timeout=15000)
        k = page.evaluate("() => SpeedData.charts.findIndex((c) => "
                          "c.channels.includes('ch-a'))")
        assert k >= 0
        # live frames of ch-a reach node b's page through the cluster and are drawn
        wait_for(lambda: page.evaluate(COUNT_INK, [k]) > 500, timeout=20,
                 what="ch-a drawn on node b's dashboard")
        row = page.locator("#channels tr[data-channel='ch-a'] td")
        assert row.nth(1).inner_text() == "a" and row.nth(2).inner_text() == "running"
        assert not page.locator("#cluster").is_hidden()
        assert "This is node b" in page.inner_text("#cluster-state")
        shot(page, "cluster-dashboard-node-b")
        assert errors == []
        page.close()
    finally:
        stop.set()
        sender.join()


def test_query_and_export_spanning_two_nodes_are_exact(rig, tmp_path):
    for owner in "ab":
        send(port=rig.ports[owner], rate=4000, count=2000)
    a, b, c = (rig.clients[n] for n in "abc")
    wait_for(lambda: a.stats(["ch-a"])["ch-a"]["records"] >= 2000 and
             b.stats(["ch-b"])["ch-b"]["records"] >= 2000, what="both nodes stored")
    time.sleep(0.3)                              # flushed
    local = {"ch-a": a.query("ch-a"), "ch-b": b.query("ch-b")}
    lo = min(int(cols.time[0]) for cols in local.values())
    hi = max(int(cols.time[-1]) for cols in local.values()) + 1
    for name, cols in local.items():
        routed = c.query(name, lo, hi)
        assert routed.time.tolist() == cols.time.tolist()
        for s in ("sine_wave", "counter", "message"):
            assert routed[s].tolist() == cols[s].tolist(), (name, s)
        ov = c.query(name, lo, hi, buckets=10)
        assert int(np.sum(ov["counter:count"])) == len(cols)
    progress = []
    path = c.export_hdf5(tmp_path / "set.h5", lo, hi, channels=["ch-a", "ch-b"],
                         progress=progress.append)
    with h5py.File(path) as f:
        assert sorted(f) == ["ch-a", "ch-b"]
        for name, cols in local.items():
            assert f[name]["time"][:].tolist() == cols.time.tolist()
            assert f[name]["counter"][:].tolist() == cols["counter"].tolist()
            assert f[name]["sine_wave"][:].tolist() == cols["sine_wave"].tolist()
    assert progress and progress[-1] == pytest.approx(1.0)


def test_two_nodes_registering_one_name_at_once_one_wins(rig):
    results = {}
    barrier = threading.Barrier(2)

    def register(n):
        barrier.wait()
        try:
            results[n] = rig.clients[n].register_channel("contested", free_udp_port(), EXAMPLE)
        except SpeedDataError as e:
            results[n] = e

    threads = [threading.Thread(target=register, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [n for n, r in results.items() if not isinstance(r, Exception)]
    lost = [r for r in results.values() if isinstance(r, Exception)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], ChannelExists) and "contested" in str(lost[0])
    wait_for(lambda: {ch.name: ch.node for ch in rig.clients["c"].list_channels()}
             .get("contested") == won[0], what="c lists the winner's channel")
    rig.clients["c"].deregister_channel("contested")       # through a node that does not own it
    # its data stays with the node that stored it, and the cluster says so
    for n in "abc":
        wait_for(lambda: [(ch.node, ch.status) for ch in rig.clients[n].list_channels()
                          if ch.name == "contested"] == [(won[0], "stored")],
                 what=f"node {n} lists contested as stored on node {won[0]}")
    loser = "b" if won[0] == "a" else "a"
    with pytest.raises(ChannelExists, match=f"node '{won[0]}'"):
        rig.clients[loser].register_channel("contested", free_udp_port(), EXAMPLE)


def test_a_cluster_tag_protects_its_range_on_two_nodes_under_retention(rig):
    a, b, c = (rig.clients[n] for n in "abc")
    for owner in "ab":
        send(port=rig.ports[owner], rate=5000, count=1500)
    wait_for(lambda: all(rig.clients[n].stats([f"ch-{n}"])[f"ch-{n}"]["records"] >= 1500 + 0
                         for n in "ab"), what="sent")
    time.sleep(0.3)
    tagged = {}
    ends = []
    for n in "ab":
        cols = rig.clients[n].query(f"ch-{n}")
        tagged[n] = cols.take(slice(len(cols) - 1500, len(cols)))
        ends.append(int(tagged[n].time[-1]) + 1)
    lo = min(int(t.time[0]) for t in tagged.values())
    c.tag("keep-this", lo, max(ends), note="made on node c")
    assert [t["name"] for t in a.tags()] == [t["name"] for t in b.tags()] == ["keep-this"]
    # pressure: ten times the quota through each of a and b
    senders = [threading.Thread(target=send, kwargs=dict(port=rig.ports[n], rate=20000,
                                                         count=40000)) for n in "ab"]
    for t in senders:
        t.start()
    for t in senders:
        t.join()

    def held(n):
        return rig.clients[n].stats([f"ch-{n}"])[f"ch-{n}"]

    # retention deletes what was not tagged: each store falls back near its quota
    wait_for(lambda: all(held(n)["records"] - held(n)["stored_records"] > 30000 for n in "ab"),
             timeout=30, what="retention under way on a and b")
    for n in "ab":
        kept = rig.clients[n].query(f"ch-{n}", int(tagged[n].time[0]),
                                    int(tagged[n].time[-1]) + 1)
        assert kept["counter"].tolist() == tagged[n]["counter"].tolist(), n
    c.untag("keep-this")
    assert a.tags() == []


def test_the_tags_page_of_any_node_archives_a_cluster_tag(rig, browser):
    c = rig.clients["c"]
    now = time.time_ns()
    c.tag("from-the-page", now - 10**9, now, channels=["ch-b"], note="archived in Chromium")
    page, errors = open_page(browser, rig.nodes["a"].url + "tags")
    row = page.locator("#tags tr[data-tag='from-the-page']")
    row.wait_for(timeout=10000)
    row.locator("button.archive").click()
    page.locator("#archives tr[data-archive='from-the-page']").wait_for(timeout=20000)
    assert "archived from-the-page: 1 channel," in page.inner_text("#archive-state")
    cells = page.locator("#archives tr[data-archive='from-the-page'] td")
    assert cells.nth(3).inner_text() == "ch-b" and cells.nth(5).inner_text() == "a"
    shot(page, "cluster-tags-archive")
    assert errors == []
    page.close()
    assert [m["tag"]["name"] for m in c.archives()].count("from-the-page") == 1
    c.untag("from-the-page")


def test_an_archive_outlives_the_node_that_made_it_and_a_nats_server(rig, tmp_path, capsys):
    """Last in this module: it kills node a and one NATS server."""
    a = rig.clients["a"]
    send(port=rig.ports["a"], rate=5000, count=1000)
    wait_for(lambda: a.stats(["ch-a"])["ch-a"]["records"] >= 1000, what="sent")
    time.sleep(0.3)
    cols = a.query("ch-a")
    run = cols.take(slice(len(cols) - 1000, len(cols)))
    c_cols = rig.clients["c"].query("ch-c")
    a.tag("run-7", int(run.time[0]), int(run.time[-1]) + 1, channels=["ch-a", "ch-c"],
          note="archived")
    manifest = a.archive("run-7")
    assert sorted(ch["channel"] for ch in manifest["channels"]) == ["ch-a", "ch-c"]
    assert {ch["channel"]: ch["node"] for ch in manifest["channels"]} == \
        {"ch-a": "a", "ch-c": "c"}
    rig.nodes["a"].proc.kill()
    rig.nodes["a"].proc.wait()
    rig.nats.kill(0)
    survivors = ",".join(rig.nats.urls[1:])
    # node a goes unreachable, and says since when, on the nodes that remain
    wait_for(lambda: {ch.name: ch.status for ch in rig.clients["b"].list_channels()}
             .get("ch-a") == "unreachable", timeout=20, what="ch-a unreachable")
    since = {ch.name: ch for ch in rig.clients["b"].list_channels()}["ch-a"].unreachable_since
    assert 0 < since <= time.time_ns()
    # the living stay alive: the JetStream election after a NATS server died silences every
    # node for a moment, which is no node's death
    for _ in range(10):
        assert {ch.name: ch.status for ch in rig.clients["b"].list_channels()}["ch-c"] == \
            "running"
        time.sleep(0.5)
    from speeddata.cli import main as cli

    def main(argv):
        code = cli(argv)
        main.out, main.err = capsys.readouterr()
        return code

    assert main(["archives", "--nats", survivors]) == 0, main.err
    assert "run-7:" in main.out and "from node a" in main.out
    assert main(["restore", "run-7", "--nats", survivors, "--data",
                 str(tmp_path / "restored")]) == 0, main.err
    with speeddata.store.open(tmp_path / "restored") as st:
        got = st["ch-a"].read()
        assert got.time.tolist() == run.time.tolist()
        for s in ("sine_wave", "counter", "message", "ramp"):
            assert got[s].tolist() == run[s].tolist(), s
        assert st["ch-c"].count() == 0 or st["ch-c"].read().time.min() >= run.time[0]
    # a second restore into the same store would double the data: refused
    assert main(["restore", "run-7", "--nats", survivors, "--data",
                 str(tmp_path / "restored")]) == 2 and "already holds 1000" in main.err
    assert main(["restore", "run-7", "--nats", survivors, "--hdf5",
                 str(tmp_path / "run-7.h5")]) == 0, main.err
    data = speeddata.read_hdf5(tmp_path / "run-7.h5")
    assert data["ch-a"]["counter"].tolist() == run["counter"].tolist()
    assert data["ch-c"].time.tolist() == [t for t in c_cols.time.tolist()
                                          if run.time[0] <= t <= run.time[-1]]


def test_without_nats_every_node_keeps_storing_says_so_and_rejoins(tmp_path):
    nats = NatsServers(tmp_path, 1)
    nodes = []
    try:
        nats.wait_ready(1)
        ports = {n: free_udp_port() for n in "ab"}
        for n in "ab":
            nodes.append(node(tmp_path, n, nats.urls, channels=[(f"ch-{n}", ports[n])],
                              replicas=1))
        clients = {n: speeddata.Client(s.address) for n, s in zip("ab", nodes)}
        wait_for(lambda: len(clients["a"].list_channels()) == 2, what="joined")
        clients["b"].tag("kept", 0, time.time_ns())
        nats.kill(0)
        wait_for(lambda: not clients["a"].cluster()["connected"] and
                 clients["a"].cluster()["retention_paused"], timeout=20,
                 what="a says the cluster is unreachable and retention paused")
        info = clients["a"].cluster()
        assert "NATS" in info["problem"] and "tags" in info["retention_paused"]
        for n in "ab":
            send(port=ports[n], rate=10000, count=5000)
        for n in "ab":
            wait_for(lambda: clients[n].stats([f"ch-{n}"])[f"ch-{n}"]["stored_records"] == 5000,
                     what=f"node {n} stored every datagram without NATS")
        import json
        import urllib.request
        with urllib.request.urlopen(nodes[0].url + "api/v1/health") as r:
            health = json.load(r)
        assert health["status"] == "ok" and not health["cluster"]["connected"]
        # its own channel is still listed and queried while the cluster is away
        assert len(clients["a"].query("ch-a")) == 5000
        nats.start(0)
        wait_for(lambda: all(c.cluster()["connected"] for c in clients.values()), timeout=30,
                 what="both nodes rejoined")
        wait_for(lambda: {ch.name: ch.status for ch in clients["a"].list_channels()} ==
                 {"ch-a": "running", "ch-b": "running"}, what="b's channel listed on a again")
        wait_for(lambda: not clients["a"].cluster()["retention_paused"],
                 what="retention running again")
        assert [t["name"] for t in clients["a"].tags()] == ["kept"]    # JetStream kept it
        assert len(clients["a"].query("ch-b")) == 5000
        for c in clients.values():
            c.close()
    finally:
        for s in nodes:
            s.stop()
        nats.stop()


def test_a_single_host_has_no_cluster_and_no_nats(tmp_path):
    server = ServeProcess(tmp_path / "data")
    try:
        with speeddata.Client(server.address) as c:
            assert c.cluster() == {"clustered": False, "node": "", "nats": [],
                                   "connected": False, "problem": "", "live_dropped": 0,
                                   "retention_paused": "", "nodes": []}
            c.tag("t", 0, 1)                     # the store's own tag
            with pytest.raises(SpeedDataError, match="need a cluster"):
                c.archive("t")
        assert "nats" not in server.output.lower()
    finally:
        server.stop()


def test_cluster_config_is_checked():
    from speeddata import config
    from speeddata.errors import ConfigError
    ok = config.parse({"cluster": {"nats": ["nats://127.0.0.1:4222"], "node": "rig-a"}})
    assert ok.cluster.node == "rig-a" and ok.cluster.replicas is None   # min(3, servers met)
    for bad, words in [({"nats": []}, "cluster.nats"), ({"nats": ["http://x"]}, "NATS URL"),
                       ({"nats": "nats://h:1", "node": "a b"}, "node name"),
                       ({"nats": "nats://h:1", "replicas": 9}, "replicas"),
                       ({"nats": "nats://h:1", "heartbeat": "1h"}, "heartbeat"),
                       ({"nats": "nats://h:1", "peers": []}, "unknown key")]:
        with pytest.raises(ConfigError, match=words):
            config.parse({"cluster": bad})


def test_live_publishing_never_waits_for_nats(tmp_path):
    """The owner's side of live data with NATS gone: batches are dropped and counted, the
    hub and the store go on."""
    from speeddata.cluster import Cluster
    from speeddata.config import ClusterConfig
    from speeddata.live import Hub
    from speeddata.ingest import Supervisor

    async def run():
        port = free_udp_port()
        sup = Supervisor(str(tmp_path / "data"), speeddata.config.parse({"channels": [
            {"name": "x", "port": port, "schema": EXAMPLE}]}).channels).start()
        try:
            hub = Hub(sup, asyncio.get_running_loop())
            cluster = Cluster(ClusterConfig([f"nats://127.0.0.1:{free_udp_port()}"], "n",
                                            1, 0.2), grpc="127.0.0.1:1")
            await cluster.start(sup, hub, wait=0.5)
            assert cluster.problem and not cluster.connected
            sub = hub.subscribe("x")
            lease = asyncio.create_task(cluster._publish("x", "f", sub))
            await asyncio.to_thread(sup.wait_ready)
            await asyncio.to_thread(send, port=port, rate=5000, count=500)
            deadline = time.monotonic() + 10
            while cluster.live_dropped == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert cluster.live_dropped > 0
            lease.cancel()
            sub.close()
            await cluster.stop()
            hub.close()
        finally:
            await asyncio.to_thread(sup.stop)
        with speeddata.store.open(tmp_path / "data", readonly=True) as st:
            assert st["x"].count() == 500

    asyncio.run(run())
