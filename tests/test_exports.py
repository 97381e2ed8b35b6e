"""Exports and results on every surface (Python, the command line, REST, gRPC) of one real
serve: an empty range is refused with what the store holds, a tag names its file, a range
without records keeps its signals, and an error is the same error wherever it is raised."""

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import h5py
import numpy as np
import pytest

import speeddata
from helpers import ServeProcess

T0 = 1_800_000_000_000_000_000
SCHEMA = {"type": "record", "name": "rig", "fields": [
    {"name": "time", "type": "long"}, {"name": "x", "type": "double"},
    {"name": "label", "type": ["null", "string"]}]}
NOTE = "pump trip, second try ✓"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "speeddata.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A store with 1,000 records of 'rig' 1 ms apart from T0 and a tag over the first
    100, served by a real serve."""
    folder = tmp_path_factory.mktemp("exports")
    with speeddata.store.open(folder / "data") as st:
        ch = st.create_channel("rig", SCHEMA)
        t = T0 + np.arange(1000, dtype=np.int64) * 1_000_000
        ch.append_columns(t, {"x": np.arange(1000.0), "label": np.ma.MaskedArray(
            np.array(["a"] * 1000, dtype=object), mask=np.arange(1000) % 2 == 0)})
        st.tag("trip", T0, T0 + 100 * 1_000_000, note=NOTE)
    proc = ServeProcess(folder / "data")
    try:
        yield proc, folder
    finally:
        proc.stop()


def _attrs(path) -> dict:
    with h5py.File(path) as f:
        return {"tag": f.attrs["tag"], "note": f.attrs["note"],
                "records": len(f["rig/time"]) if "rig" in f else None}


EMPTY = ("2027-01-01T00:00:00Z", "2027-01-01T00:01:00Z")


def test_an_empty_export_is_refused_in_python_with_what_the_store_holds(served, tmp_path):
    _, folder = served
    with speeddata.store.open(folder / "data", readonly=True) as st:
        with pytest.raises(speeddata.EmptyRange) as e:
            st.export_hdf5(tmp_path / "e.h5", *EMPTY)
        assert "holds no record of rig" in str(e.value)
        assert "rig holds 2027-01-15T08:00:00" in str(e.value)     # what is there
        assert "allow_empty=True" in e.value.hint
        assert not (tmp_path / "e.h5").exists()
        path = st.export_hdf5(tmp_path / "e.h5", *EMPTY, allow_empty=True)
    assert _attrs(path)["records"] == 0


def test_an_empty_export_is_refused_on_the_command_line(served, tmp_path):
    proc, folder = served
    for where in (["--data", folder / "data"], ["--server", proc.address]):
        out = cli("export", tmp_path / "e.h5", "--start", EMPTY[0], "--end", EMPTY[1],
                  "--quiet", *where)
        assert out.returncode == 1, out.stderr
        assert "nothing to export" in out.stderr and "rig holds" in out.stderr
        assert "--allow-empty" in out.stderr and "allow_empty=True" not in out.stderr
        assert not (tmp_path / "e.h5").exists()
        out = cli("export", tmp_path / "e.h5", "--start", EMPTY[0], "--end", EMPTY[1],
                  "--quiet", "--allow-empty", *where)
        assert out.returncode == 0, out.stderr
        assert _attrs(tmp_path / "e.h5")["records"] == 0
        (tmp_path / "e.h5").unlink()


def test_an_empty_export_is_404_on_rest_and_not_found_on_grpc(served, tmp_path):
    proc, _ = served
    query = urllib.parse.urlencode({"start": EMPTY[0], "end": EMPTY[1]})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{proc.url}api/v1/pivot/export?{query}")
    assert e.value.code == 404
    body = json.loads(e.value.read())
    assert body["code"] == "NOT_FOUND" and "rig holds" in body["error"]
    assert '"allow_empty": true' in body["error"]
    with urllib.request.urlopen(f"{proc.url}api/v1/pivot/export?{query}&allow_empty=1") as r:
        assert r.status == 200 and r.read(8) == b"\x89HDF\r\n\x1a\n"
    with speeddata.Client(proc.address) as c:
        with pytest.raises(speeddata.EmptyRange, match="rig holds") as e:
            c.export_hdf5(tmp_path / "e.h5", *EMPTY)
        assert "allow_empty=True" in e.value.hint      # the Python form, for Python
        c.export_hdf5(tmp_path / "e.h5", *EMPTY, allow_empty=True)
    assert _attrs(tmp_path / "e.h5")["records"] == 0


def test_a_tag_names_its_file_on_every_export_path(served, tmp_path):
    proc, folder = served
    paths = {}
    with speeddata.store.open(folder / "data", readonly=True) as st:
        paths["python"] = st.export_hdf5(tmp_path / "py.h5", tag="trip")
    out = cli("export", tmp_path / "cli.h5", "--tag", "trip", "--quiet", "--data",
              folder / "data")
    assert out.returncode == 0, out.stderr
    paths["cli"] = tmp_path / "cli.h5"
    out = cli("export", tmp_path / "cli-server.h5", "--tag", "trip", "--quiet", "--server",
              proc.address)
    assert out.returncode == 0, out.stderr
    paths["cli --server"] = tmp_path / "cli-server.h5"
    with speeddata.Client(proc.address) as c:
        paths["grpc"] = c.export_hdf5(tmp_path / "grpc.h5", tag="trip")
    # the page's button asks the REST route
    with urllib.request.urlopen(f"{proc.url}api/v1/pivot/export?tag=trip") as r:
        (tmp_path / "rest.h5").write_bytes(r.read())
    paths["rest (page button)"] = tmp_path / "rest.h5"
    for where, path in paths.items():
        assert _attrs(path) == {"tag": "trip", "note": NOTE, "records": 100}, where


def test_a_range_without_records_keeps_its_signals_remotely_as_locally(served):
    proc, folder = served
    with speeddata.store.open(folder / "data", readonly=True) as st:
        local = st["rig"].read(*EMPTY)
    with speeddata.Client(proc.address) as c:
        remote = c.query("rig", *EMPTY)
        decimated = c.query("rig", *EMPTY, decimation="minmax:10")
        some = c.query("rig", *EMPTY, signals=["x"])
    assert len(local) == len(remote) == 0
    assert remote.signals == local.signals == ["x", "label"]
    assert remote.x.dtype == local.x.dtype == np.float64
    assert len(remote.x) == 0                         # a script on a quiet channel runs
    assert decimated.signals == ["x:min", "x:max", "label:first"]
    assert some.signals == ["x"]
    assert remote.to_arrow().schema == local.to_arrow().schema


def test_an_error_is_the_same_error_remotely_with_its_hint(served, tmp_path):
    proc, _ = served
    with speeddata.store.open(tmp_path / "local") as st:       # the same refusal locally
        st.create_channel("rig", SCHEMA)
        st.tag("trip", T0, T0 + 5)
        with pytest.raises(speeddata.TagExists) as local:
            st.tag("trip", T0, T0 + 1)
    with speeddata.Client(proc.address) as c:
        with pytest.raises(speeddata.TagExists) as remote:
            c.tag("trip", T0, T0 + 1)
        with pytest.raises(speeddata.ChannelNotFound) as missing:
            c.query("nope", T0, T0 + 1)
    assert remote.value.hint == local.value.hint and "replace=True" in remote.value.hint
    assert remote.value.args[0].startswith("a tag 'trip' exists already")
    assert str(remote.value).count("hint:") == 1
    assert "channels are: rig" in missing.value.hint
    out = cli("tag", "trip", "--start", str(T0), "--duration", "1s", "--server",
              proc.address)
    assert out.returncode == 2 and "--replace" in out.stderr and "replace=True" not in \
        out.stderr


def test_no_server_says_which_address_and_how_to_start_one():
    with speeddata.Client("127.0.0.1:9", timeout=2) as c:
        with pytest.raises(speeddata.Unavailable) as e:
            c.list_channels()
    assert "no SpeedData server answers at 127.0.0.1:9" in str(e.value)
    assert "speeddata serve" in e.value.hint and "failed to connect" not in str(e.value)


def test_an_overview_has_one_shape_locally_and_remotely(served):
    proc, folder = served
    lo, hi = T0, T0 + 1000 * 1_000_000
    with speeddata.store.open(folder / "data", readonly=True) as st:
        local = st["rig"].overview(lo, hi, buckets=10)
    with speeddata.Client(proc.address) as c:
        remote = c.overview("rig", lo, hi, buckets=10)
        flat = c.query("rig", lo, hi, buckets=10)
        open_ended = c.overview("rig", lo, buckets=10)
    assert type(remote) is type(local) and list(remote.signals) == list(local.signals)
    assert remote.end == local.end and remote.time.tolist() == local.time.tolist()
    assert remote.count.tolist() == local.count.tolist() == [100] * 10
    for stat in ("count", "min", "max", "mean", "first", "last", "min_time", "max_time",
                 "first_time", "last_time"):
        assert np.array_equal(getattr(remote["x"], stat), getattr(local["x"], stat),
                              equal_nan=True), stat
    # the flat view is the same numbers under "signal:stat" names, locally too
    assert flat.signals == local.as_columns().signals
    assert np.array_equal(flat["x:max"], local["x"].max)
    assert open_ended.end > open_ended.time[-1]
