"""Ingest end to end on real UDP sockets (127.0.0.1): workers, supervisor, live feed."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import speeddata
from speeddata import ConfigError
from speeddata.config import ChannelConfig, Multicast, parse
from speeddata.codec import Plan, decode, encode_columns, encoder
from speeddata.decimation import Decimation, decimate
from speeddata.send import builtin_schema, example_columns, send, temperature_columns
from speeddata.ingest import Supervisor

from helpers import EXAMPLE_AVSC, feeding, free_udp_port, wait_for


@pytest.fixture
def supervisor(tmp_path):
    sups = []

    def make(*channels, **kw):
        sup = Supervisor(str(tmp_path / "data"), channels, **kw).start()
        sups.append(sup)
        sup.wait_ready()
        return sup

    yield make
    for sup in sups:
        sup.stop()


def example_channel(name="example", **kw) -> ChannelConfig:
    return ChannelConfig(name=name, port=free_udp_port(), schema=str(EXAMPLE_AVSC), **kw)


def stored(sup, name):
    return sup.store[name].read()


def test_exact_counts_single_and_multi_record_datagrams(supervisor):
    a, b = example_channel("single"), example_channel("multi")
    sup = supervisor(a, b)
    send(port=a.port, rate=20_000, count=20_000)
    send(port=b.port, rate=2_000, count=20_000, records_per_datagram=20)
    for name, n_dg in (("single", 20_000), ("multi", 1_000)):
        wait_for(lambda: sup.counters(name)["records"] == 20_000, what=f"{name} records")
        wait_for(lambda: len(stored(sup, name)) == 20_000, what=f"{name} stored")
        cols = stored(sup, name)
        assert cols.counter.tolist() == list(range(20_000))     # continuous, no duplicate
        c = sup.counters(name)
        assert c["datagrams"] == n_dg and c["kernel_drops"] == 0
        assert np.allclose(cols.sine_wave, np.sin(2 * np.pi * np.arange(20_000) / 20))
        st = sup.stats(name)       # one shape: the worker's counters and what is held
        assert (st.records, st.stored_records, st.datagrams) == (20_000, 20_000, n_dg)
        assert st.rejects == {} and st.status == "running" and st.segments >= 1
    # the current rate: about 1000 records/s while a sender runs at that rate
    send(port=a.port, rate=1_000, duration=2.5, first=20_000)
    # (a generous bound: the machine may be busy; benchmarks time it)
    assert 200 <= sup.counters("single")["records_per_s"] <= 5_000


REJECT_SCHEMA = {"type": "record", "name": "r", "fields": [
    {"name": "time", "type": "long"}, {"name": "flag", "type": "boolean"},
    {"name": "mode", "type": {"type": "enum", "name": "M", "symbols": ["A", "B"]}},
    {"name": "opt", "type": ["null", "int"]}, {"name": "name", "type": "string"}]}


def test_every_reject_reason_is_counted_and_nothing_bad_is_stored(supervisor):
    cfg = ChannelConfig(name="r", port=free_udp_port(), schema=REJECT_SCHEMA)
    sup = supervisor(cfg)
    good = encoder(sup.store["r"].schema)({"time": 5, "flag": True, "mode": "B", "opt": 3,
                                            "name": "ok"})
    assert good == b"\x0a\x01\x02\x02\x06\x04ok"
    bad = {
        "empty": b"",
        "truncated": good[:-1],
        "bad_varint": b"\xff" * 11,
        "negative_length": good[:-3] + b"\x03ok",
        "bad_union_index": good[:3] + b"\x04" + good[4:],
        "bad_enum_index": good[:2] + b"\x06" + good[3:],
        "bad_boolean": good[:1] + b"\x02" + good[2:],
        "bad_utf8": good[:-3] + b"\x04\xff\xfe",
    }
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        me = s.getsockname()
        for data in bad.values():
            s.sendto(data, ("127.0.0.1", cfg.port))
        s.sendto(good * 3, ("127.0.0.1", cfg.port))              # and three good records
        s.sendto(os.urandom(60_000), ("127.0.0.1", cfg.port))    # a large garbage datagram
    c = wait_for(lambda: (c := sup.counters("r"))["datagrams"] == len(bad) + 2 and c,
                 what="all datagrams")
    for reason in bad:
        assert c[f"reject_{reason}"] >= 1, reason
    assert set(sup.stats("r").rejects) == set(bad)
    assert sum(v for k, v in c.items() if k.startswith("reject_")) \
        == len(bad) + 1
    samples = wait_for(lambda: sup.counters("r")["bad_datagrams"], what="samples")
    assert samples["bad_boolean"][0][0] == f"{me[0]}:{me[1]}"      # who sent it
    cols = wait_for(lambda: len(c := stored(sup, "r")) == 3 and c, what="good records")
    assert cols.name.tolist() == ["ok"] * 3 and cols.mode.tolist() == ["B"] * 3


def test_worker_killed_is_restarted_and_others_untouched(supervisor):
    a, b = example_channel("victim"), example_channel("bystander")
    sup = supervisor(a, b)
    pids = sup.pids()
    send(port=a.port, rate=5_000, count=2_000)
    wait_for(lambda: len(stored(sup, "victim")) == 2_000, what="victim's first records")
    os.kill(pids["victim"], signal.SIGKILL)
    t0 = time.monotonic()
    wait_for(lambda: sup.counters("victim")["restarts"] == 1 and
             sup.counters("victim")["running"], timeout=5, what="restart")
    restart_s = time.monotonic() - t0
    sup.wait_ready()
    assert restart_s < 5     # within a second on an idle machine (benchmarks time it)
    assert sup.pids()["bystander"] == pids["bystander"]
    assert sup.pids()["victim"] != pids["victim"]
    send(port=a.port, rate=5_000, count=1_000)
    send(port=b.port, rate=5_000, count=1_000)
    wait_for(lambda: len(stored(sup, "victim")) == 3_000, what="victim after restart")
    wait_for(lambda: len(stored(sup, "bystander")) == 1_000, what="bystander")
    counters = stored(sup, "victim").counter.tolist()
    assert counters == list(range(2_000)) + list(range(1_000))


def test_live_subscriber_decimation_matches_numpy(supervisor):
    cfg = example_channel()
    sup = supervisor(cfg)
    subs = {d: sup.subscribe("example", d) for d in ("none", "every:7", "mean:10", "rms:10",
                                                     "minmax:10")}
    send(port=cfg.port, rate=10_000, count=3_000)
    got = {d: [] for d in subs}
    missed = 0

    def drained():
        nonlocal missed
        for d, sub in subs.items():
            cols, m = sub.poll()
            missed += m
            if len(cols):
                got[d].append(cols)
        return sum(len(c) for c in got["none"]) == 3_000
    wait_for(drained, what="3000 live records")
    for _ in range(3):
        drained()
    assert missed == 0
    sine = np.concatenate([c.sine_wave for c in got["none"]])
    expected = np.sin(2 * np.pi * np.arange(3000) / 20)
    assert np.allclose(sine, expected)
    assert np.allclose(np.concatenate([c.sine_wave for c in got["every:7"]]), expected[::7])
    buckets = expected.reshape(-1, 10)
    mean, rms, low, high = (np.concatenate([c[k] for c in got[d]]) for d, k in (
        ("mean:10", "sine_wave:mean"), ("rms:10", "sine_wave:rms"),
        ("minmax:10", "sine_wave:min"), ("minmax:10", "sine_wave:max")))
    n = len(mean)
    assert n >= 299 and len(rms) == len(low) == len(high) == n  # the newest may be open
    assert np.allclose(mean, buckets.mean(1)[:n])
    assert np.allclose(rms, np.sqrt((buckets ** 2).mean(1))[:n])
    assert np.allclose(low, buckets.min(1)[:n])
    assert np.allclose(high, buckets.max(1)[:n])
    assert [c.time[0] for c in got["minmax:10"]][0] == got["none"][0].time[0]  # bucket start


def test_decimate_time_buckets_and_slow_subscriber_is_told_what_it_missed(supervisor):
    cfg = example_channel()
    sup = supervisor(cfg)
    slow = sup.subscribe("example", "none")
    ring = sup.ring("example")
    send(port=cfg.port, rate=0, count=200_000, records_per_datagram=1)
    wait_for(lambda: ring.written[1] == 200_000, what="all records in the ring")
    total, missed = 0, 0
    while True:
        cols, m = slow.poll()
        missed += m
        total += len(cols)
        if not len(cols):
            break
    assert missed > 0 and total + missed == 200_000
    # time buckets: 10 ms buckets of the records it did get
    t = np.arange(0, 100_000_000, 1_000_000, dtype=np.int64)
    cols = speeddata.codec.Columns(t, {"v": np.arange(100.0)})
    out, held = decimate(cols, Decimation("minmax", bucket_ns=10_000_000))
    assert held == 10 and out["v:min"].tolist() == [k * 10 for k in range(9)]
    assert out["v:max"].tolist() == [k * 10 + 9 for k in range(9)]
    assert out.time.tolist() == t[::10][:9].tolist()
    closed, held = decimate(cols, Decimation("minmax", bucket_ns=10_000_000), final=True)
    assert held == 0 and closed["v:max"][-1] == 99.0


def test_multicast_full_rate_and_decimated_on_loopback_ttl_0(supervisor):
    group, dec_group = "239.255.42.1", "239.255.42.2"
    full_port, dec_port = free_udp_port(27001, 28000), free_udp_port(28001, 29000)
    listeners = []
    for g, p in ((group, full_port), (dec_group, dec_port)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # we read after the burst
        s.bind((g, p))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                     socket.inet_aton(g) + socket.inet_aton("127.0.0.1"))
        s.settimeout(5)
        listeners.append(s)
    try:
        cfg = example_channel(multicast=Multicast(
            group=group, port=full_port, interface="127.0.0.1", ttl=0,
            decimated_group=dec_group, decimated_port=dec_port, decimation="every:10"))
        sup = supervisor(cfg)
        send(port=cfg.port, rate=2_000, count=500)
        plan = Plan(sup.store["example"].schema, wire=True)
        full = [listeners[0].recv(65536) for _ in range(500)]
        dec = [listeners[1].recv(65536) for _ in range(50)]
        assert [decode(plan, d).counter[0] for d in full] == list(range(500))
        assert [decode(plan, d).counter[0] for d in dec] == list(range(0, 500, 10))
        wait_for(lambda: sup.counters("example")["forwarded"] == 500, what="forwarded count")
    finally:
        for s in listeners:
            s.close()


def test_port_taken_is_reported_with_its_owner(tmp_path, capfd):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        port = free_udp_port()
        blocker.bind(("127.0.0.1", port))
        sup = Supervisor(str(tmp_path / "data"),
                         [ChannelConfig(name="x", port=port, schema=str(EXAMPLE_AVSC))]).start()
        try:
            wait_for(lambda: sup.counters("x")["last_exit"] == 3, what="worker to give up")
        finally:
            sup.stop()
        err = capfd.readouterr().err
        assert f"UDP port {port} is already taken by pid {os.getpid()}" in err
    finally:
        blocker.close()


def test_full_disk_stops_writing_keeps_counting_and_resumes(tmp_path, small_disk):
    filler = small_disk / "filler"
    cfg = example_channel()
    sup = Supervisor(str(small_disk / "data"), [cfg]).start()
    try:
        sup.wait_ready()
        filler.write_bytes(b"\0" * (1_600_000))
        sent = 0
        while not sup.counters("example")["disk_error"]:
            send(port=cfg.port, rate=20_000, count=5_000, first=sent)
            sent += 5_000
            assert sent < 2_000_000, "the disk never filled"
        before = sup.counters("example")["datagrams"]
        # records keep coming (the disk may take a small block now and then: wait for a
        # full-disk moment)
        with feeding(cfg.port, first=sent) as fed:
            wait_for(lambda: (c := sup.counters("example"))["datagrams"] + c["kernel_drops"]
                     >= before + 1_000 and c["disk_error"] and
                     c["error"].startswith("disk full writing"),
                     what="counting while the disk is full, and the error shown")
        sent = fed.sent
        filler.unlink()                                  # space comes back
        send(port=cfg.port, rate=20_000, count=1_000, first=sent)
        wait_for(lambda: sup.counters("example")["disk_error"] == 0, what="writing again")
        wait_for(lambda: sup.counters("example")["error"] == "", what="the error cleared")
        wait_for(lambda: stored(sup, "example").counter[-1] == sent + 999, what="new records")
        cols = stored(sup, "example")
        assert np.all(np.diff(cols.counter) > 0)         # nothing torn, nothing repeated
        assert sup.counters("example")["dropped_records"] > 0
    finally:
        sup.stop()


def ring_records(serve_pid: int, channel: str) -> int:
    """Records a running serve's worker has published to its live ring (0 before)."""
    from speeddata.live import Ring
    for name in os.listdir("/dev/shm"):
        if name.startswith(f"speeddata-{serve_pid}-"):
            path = os.path.join("/dev/shm", name, f"{channel}.ring")
            if os.path.exists(path):
                ring = Ring(path)
                try:
                    return ring.written[1]
                finally:
                    ring.close()
    return 0


def start_serve(tmp_path, child_processes) -> tuple[subprocess.Popen, int]:
    """`speeddata serve` with one example channel, in its own process; (process, port)."""
    port = free_udp_port()
    config = tmp_path / "speeddata.yaml"
    config.write_text(f"channels:\n  - name: example\n    port: {port}\n"
                      f"    schema: {EXAMPLE_AVSC}\n")
    p = subprocess.Popen([sys.executable, "-m", "speeddata.cli", "serve", "--config",
                          str(config), "--data", str(tmp_path / "data"), "--interval", "60",
                          "--grpc", "127.0.0.1:0", "--web", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    child_processes.append(p)
    assert "serving" in p.stdout.readline()
    return p, port


def test_serve_command_flushes_on_sigterm_and_shows_channels(tmp_path, child_processes):
    p, port = start_serve(tmp_path, child_processes)
    workers = subprocess.run(["pgrep", "-P", str(p.pid), "-a"], capture_output=True,
                             text=True).stdout
    assert "speeddata.ingest.worker --channel example" in workers       # ps names the channel
    send(port=port, rate=10_000, count=777)
    wait_for(lambda: ring_records(p.pid, "example") == 777, what="777 records received")
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0
    with speeddata.store.open(tmp_path / "data") as store:
        assert store["example"].read().counter.tolist() == list(range(777))


def test_bad_config_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"channels\[0\]\.port: 80 is outside"):
        parse({"channels": [{"name": "a", "port": 80, "schema": str(EXAMPLE_AVSC)}]})
    with pytest.raises(ConfigError, match=r"channels\[0\]: unknown key\(s\) colour"):
        parse({"channels": [{"name": "a", "port": 26000, "schema": str(EXAMPLE_AVSC),
                             "colour": "red"}]})
    with pytest.raises(ConfigError, match=r"channels\[1\]\.port: port 26000 is used by two"):
        parse({"channels": [{"name": n, "port": 26000, "schema": str(EXAMPLE_AVSC)}
                            for n in "ab"]})
    with pytest.raises(ConfigError, match=r"channels\[0\]\.schema: no file"):
        parse({"channels": [{"name": "a", "port": 26000, "schema": "nope.avsc"}]})
    bad = tmp_path / "bad.yaml"
    bad.write_text("channels: [{name: a, port: 26000, schema: x.avsc, decimation: wobble:3}]")
    out = subprocess.run([sys.executable, "-m", "speeddata.cli", "serve", "--config", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "channels[0].schema: no file" in out.stderr


def test_channels_added_and_removed_at_run_time(supervisor):
    a = example_channel("first")
    sup = supervisor(a)
    first_pid = sup.pids()["first"]
    b = example_channel("second")
    sup.add_channel(b)
    sup.wait_ready()
    send(port=b.port, rate=5_000, count=100)
    wait_for(lambda: len(stored(sup, "second")) == 100, what="second channel's records")
    sup.remove_channel("second")
    assert "second" not in sup.channels and sup.pids() == {"first": first_pid}
    assert len(sup.store["second"].read()) == 100           # its data stays


def test_send_command_prints_what_it_sent():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.bind(("127.0.0.1", free_udp_port()))
        rx.settimeout(5)
        out = subprocess.run([sys.executable, "-m", "speeddata.cli", "send", "--port",
                              str(rx.getsockname()[1]), "--rate", "0", "--count", "5000",
                              "--records-per-datagram", "5"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "sent 1000 datagrams (5000 records)" in out.stdout and "0 errors" in out.stdout
        plan = Plan(speeddata.schema.load(EXAMPLE_AVSC))
        got = [decode(plan, rx.recv(65536)).counter.tolist() for _ in range(1000)]
    assert sum(got, []) == list(range(5000))


def test_another_channels_schema_and_a_burst_are_rejected_or_counted_not_fatal(supervisor):
    cfg = example_channel()
    sup = supervisor(cfg)
    pid = sup.pids()["example"]
    # another channel's records: Avro carries no type tags, so the check is structural;
    # the worker must agree with the codec on each datagram, and never store a torn record
    temp = speeddata.schema.load(builtin_schema("temperature"), time_unit="ms")
    t, data = temperature_columns(0, 300, time.time_ns(), 10**6)
    body, ends = encode_columns(Plan(temp, wire=True), t, data)
    datagrams = [body[a:b] for a, b in zip([0] + ends[:-1].tolist(), ends.tolist())]
    example_wire = Plan(sup.store["example"].schema, wire=True)
    counts = [example_wire.validate(d) for d in datagrams]
    fits, fit_records = sum(n > 0 for n in counts), sum(n for n in counts if n > 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, ("127.0.0.1", cfg.port))
    assert fits < 300

    def rejected(c):
        return sum(v for k, v in c.items() if k.startswith("reject_"))

    # counters are published field by field: a read may catch one publish half done, so
    # wait for both to agree rather than read once when the count of datagrams arrives
    wait_for(lambda: (c := sup.counters("example"))["datagrams"] == 300 and
             rejected(c) == 300 - fits, what=f"300 datagrams, {300 - fits} rejected")
    wait_for(lambda: len(stored(sup, "example")) == fit_records, what="the ones that fit")
    # a burst far above what one core ingests: drops are counted, nothing breaks
    report = send(port=cfg.port, rate=0, count=2_000_000, records_per_datagram=20)
    # the kernel reports drops on the next datagram it delivers: send a few after the burst
    tail = send(port=cfg.port, rate=100, count=10, first=2_000_000)
    wait_for(lambda: (c := sup.counters("example"))["datagrams"] + c["kernel_drops"]
             >= 300 + report.datagrams + tail.datagrams, timeout=60,
             what="every datagram accounted for")
    cols = wait_for(lambda: len(x := stored(sup, "example")) ==
                    sup.counters("example")["records"] and x, what="accepted records stored")
    assert sup.pids()["example"] == pid and sup.counters("example")["restarts"] == 0
    sent = cols.take(cols.message != "sensor-1").counter    # the burst's own records
    assert len(sent) > 0 and np.all(np.diff(sent) > 0)     # no duplicates, none reordered


def test_demo_runs_the_embedded_default_and_stores_both_channels(tmp_path):
    port = free_udp_port(count=2)     # example and temperature
    out = subprocess.run([sys.executable, "-m", "speeddata.cli", "demo", "--data",
                          str(tmp_path / "data"), "--port", str(port), "--duration", "2.5",
                          "--interval", "1", "--grpc", "127.0.0.1:0", "--web", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "example" in out.stdout and "temperature" in out.stdout
    with speeddata.store.open(tmp_path / "data", readonly=True) as store:
        example = store["example"].read()
        assert len(example) >= 150             # 100 records/s for 2.5 s, flushed on exit
        assert example.counter.tolist() == list(range(len(example)))
        assert len(store["temperature"].read()) >= 2


def test_rings_left_by_a_killed_supervisor_are_removed(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = f"/dev/shm/speeddata-{gone.pid}-test"
    os.makedirs(stale, exist_ok=True)
    open(os.path.join(stale, "x.ring"), "wb").close()
    sup = Supervisor(str(tmp_path / "data"), [])
    try:
        assert not os.path.exists(stale)
        assert os.path.isdir(sup._ring_dir)        # its own is there
    finally:
        sup.stop()
    assert not os.path.exists(sup._ring_dir)


def test_live_feed_does_not_wait_for_disk(supervisor):
    """Records reach a subscriber straight from the ring: far sooner than the store's
    100 ms flush would let them (the capacity benchmark measures the percentiles)."""
    cfg = example_channel()
    sup = supervisor(cfg)
    sub = sup.subscribe("example", "none")
    lags = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        plan = Plan(sup.store["example"].schema, wire=True)
        for k in range(200):
            t, data = example_columns(k, 1, time.time_ns(), 1)
            s.sendto(encode_columns(plan, t, data)[0], ("127.0.0.1", cfg.port))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                cols, _ = sub.poll()
                if len(cols):
                    lags.append((time.time_ns() - int(cols.time[0])) / 1e6)
                    break
                time.sleep(0.0002)
    assert len(lags) == 200
    # far below the 100 ms flush on an idle machine (the benchmark measures percentiles)
    assert np.median(lags) < 90, f"median {np.median(lags):.1f} ms"


def test_workers_stop_when_their_supervisor_is_killed(tmp_path, child_processes):
    p, port = start_serve(tmp_path, child_processes)
    worker = int(subprocess.run(["pgrep", "-P", str(p.pid), "-f", "speeddata.ingest.worker"],
                                capture_output=True, text=True).stdout.split()[0])
    send(port=port, rate=10_000, count=500)
    wait_for(lambda: ring_records(p.pid, "example") == 500, what="500 records received")
    p.kill()
    p.wait()

    def worker_gone():
        try:
            os.kill(worker, 0)
            return False
        except ProcessLookupError:
            return True
    try:
        wait_for(worker_gone, timeout=10, what="the orphaned worker to stop")
    finally:
        if not worker_gone():
            os.kill(worker, signal.SIGKILL)
    with speeddata.store.open(tmp_path / "data") as store:      # and it flushed on the way
        assert store["example"].read().counter.tolist() == list(range(500))
    from speeddata.ingest import remove_orphans
    remove_orphans("/dev/shm")     # what the next supervisor would do


def test_a_channel_that_cannot_start_leaves_the_others_running(tmp_path, child_processes):
    """`speeddata serve` with one channel's port taken: the other channel stores everything,
    and the failed one is reported with its reason and retried."""
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        taken = free_udp_port(count=2)          # two ports, never the same one twice
        free = taken + 1
        blocker.bind(("127.0.0.1", taken))
        config = tmp_path / "speeddata.yaml"
        config.write_text(f"channels:\n"
                          f"  - {{name: blocked, port: {taken}, schema: {EXAMPLE_AVSC}}}\n"
                          f"  - {{name: healthy, port: {free}, schema: {EXAMPLE_AVSC}}}\n")
        p = subprocess.Popen([sys.executable, "-m", "speeddata.cli", "serve", "--config",
                              str(config), "--data", str(tmp_path / "data"), "--interval",
                              "0.5", "--grpc", "127.0.0.1:0", "--web", "127.0.0.1:0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        child_processes.append(p)
        banner = [p.stdout.readline() for _ in range(6)]
        assert banner[0].startswith("SpeedData serving store") and "web" in banner[1]
        assert "gRPC" in banner[2]
        blocked = next(line for line in banner if line.split()[:1] == ["blocked"])
        assert f"udp 127.0.0.1:{taken}" in blocked and "(FAILED, retrying)" in blocked
        assert f"UDP port {taken} is already taken by pid {os.getpid()}" in banner[-1]
        send(port=free, rate=10_000, count=3_000)
        deadline = time.monotonic() + 30
        for line in p.stdout:          # the status lines go on naming the failure
            if "blocked" in line and "FAILED" in line and "already taken" in line:
                break
            assert time.monotonic() < deadline
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
        with speeddata.store.open(tmp_path / "data", readonly=True) as store:
            assert store["healthy"].read().counter.tolist() == list(range(3_000))
    finally:
        blocker.close()


def test_settings_that_would_kill_a_worker_are_refused_at_load():
    base = {"name": "a", "port": 26000, "schema": str(EXAMPLE_AVSC)}
    cases = [({"receive_buffer": "2G"}, r"channels\[0\]\.receive_buffer: '2G' is outside"),
             ({"multicast": {"group": "239.1.1.1", "port": 27000,
                             "decimated": {"group": "239.1.1.2"}}},
              r"channels\[0\]\.multicast\.decimated\.port: missing"),
             ({"multicast": {"group": "not-an-ip", "port": 27000}},
              r"channels\[0\]\.multicast\.group: 'not-an-ip' is not an IPv4 address"),
             ({"multicast": {"group": "10.0.0.1", "port": 27000}},
              r"multicast\.group: 10\.0\.0\.1 is not a multicast group"),
             ({"multicast": {"group": "239.1.1.1", "port": 27000, "ttl": 300}},
              r"multicast\.ttl: 300 is not a TTL")]
    for extra, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse({"channels": [dict(base, **extra)]})


def test_a_lapped_live_reader_gets_each_record_once_or_counts_it_missed(supervisor):
    """A subscriber that polls too slowly for a worker at full speed: the writer laps it,
    and still no record comes twice, none out of order, and delivered + missed adds up."""
    import threading
    cfg = example_channel()
    sup = supervisor(cfg)
    sub = sup.subscribe("example", "none")
    got, stop = [], threading.Event()

    ring = sup.ring("example")

    def follow():
        # slow on purpose: each poll waits until the writer has gone a lap and a quarter on
        while not stop.is_set():
            cols, _ = sub.poll()
            got.append(cols.counter)
            seen = ring.written[0]
            while not stop.is_set() and ring.written[0] < seen + ring.nentries * 5 // 4:
                stop.wait(0.005)

    reader = threading.Thread(target=follow)
    reader.start()
    try:
        send(port=cfg.port, rate=0, count=400_000)
        wait_for(lambda: sup.counters("example")["records"] == ring.written[1] > 0,
                 what="the worker to publish all it received")
    finally:
        stop.set()
        reader.join()
    while True:
        cols, _ = sub.poll()
        if not len(cols):
            break
        got.append(cols.counter)
    delivered = np.concatenate(got)
    assert np.all(np.diff(delivered) > 0), "a record twice or out of order"
    assert len(delivered) + sub.missed == ring.written[1]
    assert sub.missed > 0            # it really was lapped
