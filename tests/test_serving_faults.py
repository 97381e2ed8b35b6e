"""The serving layer under faults, as real `speeddata serve` processes: a full disk (stats,
the dashboard in Chromium, storing again when space returns) and live clients that stop
reading (dropped after limits.stall_seconds, counted); 600 subscribe / close cycles leave
the fd count and RSS flat; a worker SIGKILLed under a chart and a subscriber."""

import json
import os
import shutil
import signal
import subprocess
import threading
import urllib.request

import grpc
import numpy as np

import speeddata
from speeddata.send import builtin_schema, send
from speeddata.v1 import speeddata_pb2 as pb
from speeddata.v1 import speeddata_pb2_grpc as pb_grpc

from helpers import ServeProcess, feeding, free_udp_port, live_websocket, wait_for
from test_web_pages import browser, open_page, shot  # noqa: F401 (a fixture)


def example(port: int) -> dict:
    return {"name": "example", "port": port, "schema": builtin_schema("example")}


def rest_stats(server: ServeProcess) -> dict:
    with urllib.request.urlopen(server.url + "api/v1/stats") as r:
        return json.load(r)["example"]


def test_a_full_disk_is_counted_shown_and_survived(tmp_path, small_disk, browser):
    port = free_udp_port()
    server = ServeProcess(small_disk / "data", config={"channels": [example(port)]})
    try:
        client = speeddata.Client(server.address)
        send(port=port, rate=20_000, count=2_000)
        wait_for(lambda: rest_stats(server)["stored_records"] == 2_000, what="first records")
        free = shutil.disk_usage(small_disk).free
        (small_disk / "filler").write_bytes(b"\0" * max(0, free - 64_000))
        sent = 2_000
        while not rest_stats(server)["error"]:
            send(port=port, rate=20_000, count=5_000, first=sent)
            sent += 5_000
            assert sent < 2_000_000, "the disk never filled"
        # records keep coming while the disk is full (it may take a small block now and then)
        with feeding(port, first=sent) as fed:
            wait_for(lambda: (s := rest_stats(server))["not_stored"].get("disk_full", 0) > 0
                     and s["error"].startswith("disk full writing"),
                     what="records not stored, counted as disk_full, and the error shown")
            assert client.stats(["example"])["example"]["not_stored"]["disk_full"] > 0
            # serving and reading go on, and what was stored before is whole
            assert client.query("example", signals=["counter"]).counter[:2_000].tolist() == \
                list(range(2_000))
            page, errors = open_page(browser, server.url)
            row = page.locator("#channels tbody tr[data-channel=example] td")
            wait_for(lambda: "disk full" in row.nth(1).inner_text() and
                     "(disk full)" in row.nth(6).inner_text(), what="the dashboard saying so")
            shot(page, "dashboard-disk-full")
            assert not errors
        sent = fed.sent
        (small_disk / "filler").unlink()                     # space comes back
        send(port=port, rate=20_000, count=1_000, first=sent)
        wait_for(lambda: rest_stats(server)["error"] == "", what="storing again")
        wait_for(lambda: client.query("example", signals=["counter"]).counter[-1]
                 == sent + 999, what="the new records stored")
        counter = client.query("example", signals=["counter"]).counter
        assert np.all(np.diff(counter) > 0)        # nothing torn, nothing stored twice
        client.close()
    finally:
        server.stop()


def test_live_clients_that_stop_reading_are_dropped_and_counted(tmp_path):
    port = free_udp_port()
    server = ServeProcess(tmp_path / "data", config={"channels": [example(port)],
                                                     "limits": {"stall_seconds": 1}})
    channel = grpc.insecure_channel(server.address)
    ws = None
    try:
        # a gRPC subscriber at full rate that never takes a message
        stub = pb_grpc.SpeedDataStub(channel)
        call = stub.Subscribe(pb.SubscribeRequest(channels=[pb.ChannelSubscription(
            channel="example")]))
        # a WebSocket (full-rate envelope) whose socket is never read, with a small window
        ws, _ = live_websocket(server.url, "channel=example&window=0.001&width=20000", 4096)
        wait_for(lambda: rest_stats(server)["subscribers"] == 2, what="both subscribed")
        sent = 0
        while rest_stats(server)["live_stalled"] < 2:
            send(port=port, rate=50_000, count=20_000, first=sent)
            sent += 20_000
            assert sent < 2_000_000, "the stalled clients were never dropped"
        wait_for(lambda: rest_stats(server)["subscribers"] == 0, what="their places freed")
        assert "read nothing for 1 s" in server.output
        with speeddata.Client(server.address) as client:       # and the server serves on
            with client.subscribe("example") as sub:
                send(port=port, rate=10_000, count=100, first=sent)
                assert len(next(iter(sub))) > 0
        assert "Traceback" not in server.output
        call.cancel()
    finally:
        if ws is not None:
            ws.close()
        channel.close()
        server.stop()


def _fds_and_rss(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return len(os.listdir(f"/proc/{pid}/fd")), rss * 1024


def _ws_once(server: ServeProcess) -> None:
    """Open the live WebSocket, wait for its first frame, close."""
    s, rest = live_websocket(server.url, "channel=example")
    with s:
        if not rest:
            s.recv(2)                                     # the first frame comes


def test_subscribe_close_cycles_leave_fds_and_memory_flat(tmp_path):
    """600 cycles here (each a new gRPC connection or WebSocket); the benchmark
    benchmarks/hostile_soak.py runs 10,000."""
    port = free_udp_port()
    server = ServeProcess(tmp_path / "data", config={"channels": [example(port)]})
    stop = threading.Event()

    def feed():
        sent = 0
        while not stop.is_set():
            send(port=port, rate=5_000, count=500, first=sent)
            sent += 500
    sender = threading.Thread(target=feed, daemon=True)
    sender.start()
    try:
        def cycle(k: int) -> None:
            if k % 2:
                _ws_once(server)
                return
            with speeddata.Client(server.address) as client, \
                    client.subscribe("example") as sub:
                next(iter(sub))
        for k in range(100):                                  # warm up
            cycle(k)
        wait_for(lambda: rest_stats(server)["subscribers"] == 0, what="all closed")
        fds, rss = _fds_and_rss(server.proc.pid)
        for k in range(600):
            cycle(k)
        wait_for(lambda: rest_stats(server)["subscribers"] == 0, what="all closed")
        wait_for(lambda: _fds_and_rss(server.proc.pid)[0] <= fds + 2,
                 what=f"the fd count back to {fds}")
        grown = _fds_and_rss(server.proc.pid)[1] - rss
        assert grown < 24 << 20, f"RSS grew {grown / 2**20:.1f} MiB over 600 cycles"
    finally:
        stop.set()
        sender.join()
        server.stop()


def test_a_worker_killed_under_a_chart_and_a_subscriber(tmp_path, browser):
    """SIGKILL of a channel's worker while a Chromium chart and a gRPC subscriber follow it:
    the worker comes back, both go on with the new records, nothing is delivered or stored
    twice, and what the subscriber lost is counted as missed."""
    port = free_udp_port()
    server = ServeProcess(tmp_path / "data", config={"channels": [example(port)]})
    got: list[np.ndarray] = []
    missed = {}
    stop = threading.Event()
    try:
        client = speeddata.Client(server.address)
        page, errors = open_page(browser, server.url)
        page.wait_for_function("() => SpeedData.charts.length > 0")

        def follow():
            with client.subscribe("example", ["counter"]) as sub:
                for batch in sub:
                    got.append(batch.counter.copy())
                    missed.update(sub.missed)
                    if stop.is_set():
                        return
        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        wait_for(lambda: rest_stats(server)["subscribers"] >= 2, what="chart and subscriber")
        send(port=port, rate=10_000, count=3_000)
        wait_for(lambda: sum(map(len, got)) >= 3_000, what="the first records, live")
        wait_for(lambda: rest_stats(server)["stored_records"] == 3_000, what="them flushed")
        worker = int(subprocess.run(["pgrep", "-P", str(server.proc.pid), "-f",
                                     "speeddata.ingest.worker"], capture_output=True,
                                    text=True).stdout.split()[0])
        frames = page.evaluate("() => SpeedData.charts[0].frames")
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: rest_stats(server)["restarts"] == 1 and
                 rest_stats(server)["status"] == "running", what="the worker restarted")
        send(port=port, rate=10_000, count=3_000, first=3_000)
        wait_for(lambda: np.concatenate(got)[-1] == 5_999, what="the new records, live")
        stop.set()
        send(port=port, rate=1_000, count=1, first=6_000)       # wakes the follower
        follower.join(10)
        counter = np.concatenate(got)
        assert np.all(np.diff(counter) > 0), "a record delivered twice or out of order"
        wait_for(lambda: rest_stats(server)["stored_records"] == 6_001, what="all flushed")
        stored = client.query("example", signals=["counter"]).counter
        assert stored.tolist() == list(range(6_001))              # all stored, once
        # what the stream did not deliver it says it missed
        assert len(counter) + missed.get("example", 0) >= 6_000
        wait_for(lambda: page.evaluate("() => SpeedData.charts[0].frames") > frames + 5,
                 what="the chart taking frames after the restart")
        shot(page, "dashboard-worker-restarted")
        assert not errors
        client.close()
    finally:
        stop.set()
        server.stop()
