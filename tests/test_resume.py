"""A live subscription resumed by time: from the store, then the ring, then live, and across
a kill -9 and restart of serve with the Python client's reconnect=True."""

import os
import signal
import threading

import numpy as np

import speeddata
from helpers import ServeProcess, feeding, free_tcp_port, free_udp_port, wait_for


def _config(port):
    return {"channels": [{"name": "example", "port": port,
                          "schema": os.path.join(os.path.dirname(speeddata.__file__),
                                                 "schemas", "example.avsc")}]}


def test_resume_from_a_time_reads_the_store_then_follows_live(tmp_path):
    udp = free_udp_port()
    server = ServeProcess(tmp_path / "data", config=_config(udp))
    try:
        with speeddata.Client(server.address) as c:
            wait_for(lambda: c.get_channel("example").status == "running")
            # more than the live ring keeps (32,768 records back), so the first part of
            # the resume can only come from the store
            with feeding(udp, rate=40_000) as feed:
                wait_for(lambda: c.stats(["example"])["example"]["stored_records"] >= 45_000,
                         what="records stored")
            stored = c.query("example")
            since = int(stored.time[1234])
            sub = c.subscribe("example", resume_from_time={"example": since})
            got = []
            with feeding(udp, first=feed.sent, rate=20_000) as more:
                for batch in sub:
                    got.append(batch.counter.copy())
                    if np.concatenate(got)[-1] >= more.sent - 1 and more.sent > feed.sent:
                        break
            sub.close()
    finally:
        server.stop()
    counters = np.concatenate(got)
    # from the record at `since` on, each record once, in order, through store and live
    assert counters[0] == stored.counter[1234]
    assert np.array_equal(counters, np.arange(counters[0], counters[0] + len(counters)))


def test_a_reconnecting_subscription_gets_every_record_once_across_kill_9(tmp_path):
    udp, grpc_port = free_udp_port(), free_tcp_port()
    fixed = ["--grpc", f"127.0.0.1:{grpc_port}"]
    server = ServeProcess(tmp_path / "data", config=_config(udp), extra_args=fixed)
    received: list[np.ndarray] = []
    try:
        client = speeddata.Client(server.address)
        wait_for(lambda: client.get_channel("example").status == "running")
        sub = client.subscribe("example", reconnect=True)

        def follow():
            for batch in sub:
                received.append(batch.counter.copy())

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        with feeding(udp, rate=10_000) as feed:
            wait_for(lambda: sum(map(len, received)) >= 3000, what="live records")
        server.proc.send_signal(signal.SIGKILL)          # serve and its worker die at once
        server.stop()
        server = ServeProcess(tmp_path / "data", config=_config(udp), extra_args=fixed)
        with feeding(udp, first=feed.sent, rate=10_000) as after:
            wait_for(lambda: sub.reconnects >= 1 and len(received) and
                     received[-1][-1] >= feed.sent + 2000, what="records after the restart")
        last = after.sent - 1
        wait_for(lambda: received[-1][-1] >= last, what="the last record")
        sub.close()
        follower.join(timeout=10)
        wait_for(lambda: client.query("example").counter[-1] == last, what="all stored")
        stored = client.query("example")
        client.close()
    finally:
        server.stop()
    counters = np.concatenate(received)
    assert len(np.unique(counters)) == len(counters), "a record came twice"
    assert np.all(np.diff(counters) > 0), "out of order"
    # every record the restarted server stored after the last one received came; what
    # was sent while no serve ran is the only gap
    before = counters[counters < feed.sent]
    after_restart = stored.counter[stored.counter > before[-1]]
    assert set(after_restart.tolist()) <= set(counters.tolist())
    assert after_restart[-1] == last
