"""Arrow results: Columns.to_arrow shares numpy's memory, frames of several channels match
pandas' own merges, and an Arrow Flight client reads a real serve's ranges exactly as
Channel.read does, with its token."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import speeddata
from helpers import ServeProcess, free_tcp_port

T0 = 1_765_000_000 * 10**9
SCHEMA = {"type": "record", "name": "rig", "fields": [
    {"name": "time", "type": "long"},
    {"name": "x", "type": "double", "unit": "V"},
    {"name": "n", "type": ["null", "int"]},
    {"name": "label", "type": "string"},
    {"name": "raw", "type": "bytes"},
    {"name": "ok", "type": "boolean"}]}


def fill(store, name="rig", n=5000, step=1000, offset=0):
    ch = store.create_channel(name, SCHEMA)
    t = T0 + offset + np.arange(n, dtype=np.int64) * step
    ch.append_columns(t, {
        "x": np.sin(np.arange(n) / 50.0),
        "n": np.ma.MaskedArray(np.arange(n, dtype=np.int32), mask=np.arange(n) % 3 == 0),
        "label": np.array([f"s{i % 7}é" for i in range(n)], dtype=object),
        "raw": np.array([bytes([i % 256]) * (i % 4) for i in range(n)], dtype=object),
        "ok": np.arange(n) % 2 == 0})
    ch.flush()
    return ch


@pytest.fixture
def store(tmp_path):
    with speeddata.store.open(tmp_path / "data") as st:
        yield st


def test_to_arrow_shares_numpys_buffers_and_keeps_types_and_nulls(store):
    cols = fill(store).read()
    table = cols.to_arrow()
    assert table.schema.field("time").type == pa.timestamp("ns", "UTC")
    assert [table.schema.field(k).type for k in ("x", "n", "label", "raw", "ok")] == \
        [pa.float64(), pa.int32(), pa.string(), pa.binary(), pa.bool_()]
    # numbers and time: the same memory, no copy
    assert table.column("time").chunk(0).buffers()[1].address == cols.time.ctypes.data
    assert table.column("x").chunk(0).buffers()[1].address == cols.x.ctypes.data
    assert table.column("n").chunk(0).buffers()[1].address == cols.n.data.ctypes.data
    # nulls are the validity, values exact
    assert table.column("n").null_count == int(cols.n.mask.sum()) > 0
    assert table.column("n").to_pylist() == cols.n.tolist()
    assert table.column("label").to_pylist() == list(cols.label)
    assert table.column("raw").to_pylist() == list(cols.raw)
    assert table.column("time").cast(pa.int64()).to_numpy().tolist() == cols.time.tolist()
    assert table.schema.metadata == {b"speeddata.channel": b"rig"}


def test_an_empty_range_keeps_its_columns_and_types(store):
    fill(store)
    table = store["rig"].read(0, 10).to_arrow()
    assert table.num_rows == 0
    assert table.schema.names == ["time", "x", "n", "label", "raw", "ok"]
    assert table.schema.field("x").type == pa.float64()
    assert table.schema.field("n").type == pa.int32()


def test_to_polars_has_the_same_values(store):
    cols = fill(store).read()
    frame = cols.to_polars()
    assert frame.columns == ["time", "x", "n", "label", "raw", "ok"]
    assert frame["x"].to_numpy().tolist() == cols.x.tolist()
    assert frame["n"].null_count() == int(cols.n.mask.sum())


def _hand_made(store, how, lo, hi):
    a = store["rig"].read(lo, hi).to_pandas()[["x"]].rename(columns={"x": "rig.x"})
    b = store["imu"].read(lo, hi).to_pandas()[["x", "n"]].rename(
        columns={"x": "imu.x", "n": "imu.n"})
    a, b = a.rename_axis("time").reset_index(), b.rename_axis("time").reset_index()
    if how == "asof":
        return pd.merge_asof(a, b, on="time", direction="backward")
    return pd.merge(a, b, on="time", how="outer").sort_values("time", kind="stable")


@pytest.mark.parametrize("how", ["asof", "outer"])
def test_read_frame_is_what_a_pandas_merge_gives(store, how):
    fill(store, "rig", n=3000, step=1000)
    fill(store, "imu", n=900, step=3333, offset=-2000)     # starts earlier, other clock
    lo, hi = T0 + 1500, T0 + 3000 * 1000           # imu's first records fall before it
    got = store.read_frame(["rig.x", "imu.x", "imu.n"], lo, hi, how=how).to_pandas()
    want = _hand_made(store, how, lo, hi)
    assert want["imu.x"].isna().any() and want["imu.x"].notna().any()
    assert got.columns.tolist() == ["time", "rig.x", "imu.x", "imu.n"]
    assert len(got) == len(want)
    assert got["time"].tolist() == want["time"].tolist()
    for name in ("rig.x", "imu.x", "imu.n"):
        g, w = got[name].to_numpy(dtype=float, na_value=np.nan), \
            want[name].to_numpy(dtype=float, na_value=np.nan)
        assert np.array_equal(g, w, equal_nan=True), name


def test_read_frame_names_what_it_does_not_know(store):
    fill(store)
    with pytest.raises(speeddata.ChannelNotFound, match="channels are: rig"):
        store.read_frame(["nothing.x"])
    with pytest.raises(speeddata.SchemaError):
        store.read_frame(["rig.nope"])
    with pytest.raises(speeddata.RequestError, match="asof"):
        store.read_frame(["rig.x"], how="inner")


def test_a_dataset_as_one_table_and_one_pandas_frame(store, tmp_path):
    fill(store, "rig", n=100)
    fill(store, "imu", n=50, step=2000, offset=500)
    path = store.export_hdf5(tmp_path / "set.h5", T0, T0 + 10**9)
    data = speeddata.read_hdf5(path)
    table = data.to_arrow()
    assert table.num_rows == 150 and "rig.x" in table.column_names and \
        "imu.label" in table.column_names
    frame = data.to_pandas()
    assert frame.index.name == "time" and frame["rig.x"].notna().sum() == 100


# ---- Arrow Flight on a real serve --------------------------------------------------------

@pytest.fixture
def flight_serve(tmp_path):
    with speeddata.store.open(tmp_path / "data") as st:
        fill(st, n=20000)
    port = free_tcp_port()
    proc = ServeProcess(tmp_path / "data", token="s3cret",
                        extra_args=["--flight", f"127.0.0.1:{port}"])
    try:
        assert f"flight grpc://127.0.0.1:{port}" in proc.output
        yield proc, flight.connect(f"grpc://127.0.0.1:{port}")
    finally:
        proc.stop()


TOKEN = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer s3cret")])


def _ticket(**fields) -> flight.Ticket:
    return flight.Ticket(json.dumps(fields).encode())


def test_a_flight_client_reads_a_range_exactly_as_channel_read(flight_serve, tmp_path):
    proc, client = flight_serve
    lo, hi = T0 + 1234 * 1000, T0 + 17000 * 1000
    got = client.do_get(_ticket(channel="rig", start=lo, end=hi), options=TOKEN).read_all()
    with speeddata.store.open(tmp_path / "data", readonly=True) as st:
        want = st["rig"].read(lo, hi).to_arrow()
    assert got.schema.names == want.schema.names
    assert got.num_rows == want.num_rows == 17000 - 1234
    assert got.equals(want.cast(got.schema))
    # signals and text times, as the ticket's documentation says
    part = client.do_get(_ticket(channel="rig", signals=["x"],
                                 start="2025-12-06T05:46:40Z"), options=TOKEN).read_all()
    assert part.schema.names == ["time", "x"] and part.num_rows == 20000


def test_flight_lists_channels_and_describes_a_range(flight_serve):
    _, client = flight_serve
    flights = list(client.list_flights(options=TOKEN))
    assert [f.descriptor.path for f in flights] == [[b"rig"]]
    assert flights[0].total_records == 20000
    assert flights[0].schema.field("x").type == pa.float64()
    command = json.dumps({"channel": "rig", "start": T0, "end": T0 + 1000 * 1000}).encode()
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command), options=TOKEN)
    assert info.total_records == 1000
    # the endpoint's ticket fetches what the info described
    table = client.do_get(info.endpoints[0].ticket, options=TOKEN).read_all()
    assert table.num_rows == 1000
    decimated = client.do_get(_ticket(channel="rig", decimation="minmax:100"),
                              options=TOKEN).read_all()
    assert decimated.num_rows == 200 and "x:min" in decimated.schema.names


def test_flight_needs_the_token_and_names_what_is_wrong(flight_serve):
    _, client = flight_serve
    with pytest.raises(flight.FlightUnauthenticatedError, match="token"):
        list(client.list_flights())
    bad = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer guess")])
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.do_get(_ticket(channel="rig"), options=bad).read_all()
    with pytest.raises(flight.FlightServerError, match="NOT_FOUND: no channel 'nope'.*"
                                                       "channels are: rig") as e:
        client.do_get(_ticket(channel="nope"), options=TOKEN).read_all()
    assert "Traceback" not in str(e.value) and "/" not in str(e.value).split("Detail")[0]
    for ticket, why in ((b"not json", "JSON"), (b'{"channel": "rig", "when": 1}', "when"),
                        (b'{"channel": "rig", "start": "soon"}', "start"),
                        (b'{"channel": "rig", "signals": "x"}', "signals")):
        with pytest.raises(flight.FlightServerError, match="INVALID_ARGUMENT.*" + why):
            client.do_get(flight.Ticket(ticket), options=TOKEN).read_all()
    empty = client.do_get(_ticket(channel="rig", start=5, end=6), options=TOKEN).read_all()
    assert empty.num_rows == 0 and empty.schema.names == ["time", "x", "n", "label", "raw",
                                                          "ok"]
