"""The data commands of the command line (ls, export, tag, tags, untag, inspect), relative
times, and `speeddata demo` as a newcomer starts it."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import speeddata
from speeddata.errors import TimeRangeError
from speeddata.send import builtin_schema
from speeddata.timeutil import duration_ns, to_ns

from helpers import ServeProcess, free_udp_port, wait_for

T0 = 1_800_000_000_000_000_000


def run(*args, check=True):
    out = subprocess.run([sys.executable, "-m", "speeddata.cli", *map(str, args)],
                         capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def data(tmp_path):
    """A store with 10,000 example records, 1 ms apart from T0."""
    path = tmp_path / "data"
    with speeddata.store.open(path) as st:
        ch = st.create_channel("example", builtin_schema("example"))
        t, cols = speeddata.send.example_columns(0, 10_000, T0, 1_000_000)
        ch.append_columns(t, cols)
    return path


def test_relative_times_and_short_durations():
    now = time.time_ns()
    assert abs(to_ns("now") - now) < 5e9
    assert abs(to_ns("now-5m") - (now - 300e9)) < 5e9
    assert abs(to_ns("now + 1h") - (now + 3600e9)) < 5e9
    assert abs(to_ns("now-PT30S") - (now - 30e9)) < 5e9
    assert [duration_ns(x) for x in ("500ms", "30s", "5m", "24h", "2d", "1.5s")] == \
        [500_000_000, 30 * 10**9, 300 * 10**9, 86_400 * 10**9, 172_800 * 10**9, 1_500_000_000]
    with pytest.raises(TimeRangeError, match="now-5m"):
        to_ns("yesterday")


def test_ls_tag_tags_export_untag_and_inspect_a_store(data, tmp_path):
    start = speeddata.timeutil.format_ns(T0)
    out = run("ls", "--data", data).stdout
    assert "example" in out and "10000 records" in out and start in out
    out = run("tag", "first-second", "--start", start, "--duration", "1s", "--note", "warm-up",
              "--data", data).stdout
    assert "tagged first-second" in out
    out = run("tags", "--data", data).stdout
    assert "first-second" in out and "warm-up" in out
    assert "tag first-second" in run("ls", "--data", data).stdout
    h5 = tmp_path / "part.h5"
    done = run("export", h5, "--start", start, "--duration", "2s", "--signals", "counter",
               "--data", data)
    assert "100%" in done.stderr                     # the progress bar
    got = speeddata.read_hdf5(h5)["example"]
    assert got.counter.tolist() == list(range(2000)) and got.signals == ["counter"]
    run("export", tmp_path / "tag.h5", "--tag", "first-second", "--quiet", "--data", data)
    assert len(speeddata.read_hdf5(tmp_path / "tag.h5")["example"]) == 1000
    out = run("inspect", h5).stdout
    assert "2000 records" in out and "counter" in out
    segment = next((data / "channels" / "example").glob("*.avro"))
    out = run("inspect", segment).stdout
    assert "10000 records" in out and "zstandard" in out and '"sine_wave"' in out
    out = run("inspect", segment.with_suffix(".idx")).stdout
    assert "10000 records" in out and start in out
    assert "removed tag" in run("untag", "first-second", "--data", data).stdout
    assert "first-second" not in run("tags", "--data", data).stdout


@pytest.mark.parametrize("args, words", [
    (["export", "x.h5", "--start", "yesterday", "--duration", "1s"], "cannot read 'yesterday'"),
    (["export", "x.h5", "--start", "now-1h"], "--duration or --end"),
    (["export", "x.h5", "--start", "now-1h", "--end", "now-2h"], "not after"),
    (["export", "x.h5", "--start", "now-1h", "--duration", "1h", "--channels", "nope"],
     "no channel 'nope'"),
    (["export", "x.h5", "--tag", "nope"], "no tag 'nope'"),
    (["untag", "nope"], "no tag 'nope'"),
    (["tag", "t", "--start", "now", "--duration", "soon"], "cannot read 'soon'"),
    (["inspect", "no-such-file.avro"], "no file"),
])
def test_bad_times_names_and_files_are_errors_that_say_why(data, tmp_path, args, words):
    os.chdir(tmp_path)
    out = run(*args, *(["--data", data] if args[0] != "inspect" else []), check=False)
    assert out.returncode == 2 and words in out.stderr, out.stderr
    assert not (tmp_path / "x.h5").exists()


def test_ls_and_export_from_a_running_server(tmp_path):
    port = free_udp_port()
    server = ServeProcess(tmp_path / "data", config={"channels": [
        {"name": "example", "port": port, "schema": builtin_schema("example")}]})
    try:
        speeddata.send.send(port=port, rate=5_000, count=1_000)
        with speeddata.store.open(server.data, readonly=True) as st:
            wait_for(lambda: st["example"].count() == 1_000, what="stored")
        out = run("ls", "--server", server.address).stdout
        assert "example" in out and "running" in out and "1000 records" in out
        run("tag", "all", "--start", "now-1h", "--end", "now+1h", "--server", server.address)
        run("export", tmp_path / "s.h5", "--tag", "all", "--server", server.address)
        assert len(speeddata.read_hdf5(tmp_path / "s.h5")["example"]) == 1_000
    finally:
        server.stop()


def test_demo_shows_data_through_rest_and_grpc_within_5_s_and_stops_cleanly(tmp_path):
    port = free_udp_port(count=2)
    p = subprocess.Popen([sys.executable, "-m", "speeddata.cli", "demo", "--data",
                          str(tmp_path / "data"), "--port", str(port), "--web", "127.0.0.1:0",
                          "--grpc", "127.0.0.1:0", "--no-browser", "--interval", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        started = time.monotonic()
        lines = [p.stdout.readline() for _ in range(3)]
        url = lines[1].split()[-1]
        address = lines[2].split()[-1]
        assert url.startswith("http://127.0.0.1:") and lines[2].strip().startswith("gRPC")

        def rest_records():
            with urllib.request.urlopen(url + "api/v1/channels/example") as r:
                return json.load(r)["stats"]["records"]
        wait_for(lambda: rest_records() > 0, timeout=5, what="records over REST")
        with speeddata.Client(address) as c:
            wait_for(lambda: len(c.query("example", "now-1m")) > 0, timeout=5,
                     what="records over gRPC")
        assert time.monotonic() - started < 10     # both, including the server's start
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=30) == 0
        with speeddata.store.open(tmp_path / "data", readonly=True) as st:
            counters = st["example"].read().counter
        assert len(counters) > 0 and counters.tolist() == list(range(len(counters)))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
