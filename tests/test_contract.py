"""One contract, two transports: the same cases (register, list, stats, tags, overviews,
exports, and the errors with their codes) against the REST API and the gRPC service of one
real serve. Each transport only translates; what one answers the other answers alike."""

import json
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

import speeddata
from speeddata.errors import status_of
from helpers import ServeProcess, free_udp_port

SCHEMA = {"type": "record", "name": "rig", "fields": [
    {"name": "time", "type": "long"}, {"name": "x", "type": "double", "unit": "V"}]}
T0 = 1_800_000_000_000_000_000


class Refused(Exception):
    """A transport's refusal, as (gRPC code name, HTTP status) and its text."""

    def __init__(self, code: str, status: int, text: str):
        super().__init__(text)
        self.code, self.status, self.text = code, status, text


class Rest:
    name = "rest"

    def __init__(self, url: str):
        self.url = url + "api/v1/"

    def _call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request) as r:
                raw = r.read()
                return json.loads(raw) if r.headers["Content-Type"].startswith(
                    "application/json") else raw
        except urllib.error.HTTPError as e:
            error = json.loads(e.read())
            raise Refused(error["code"], e.code, error["error"]) from None

    def register(self, name, port, schema):
        out = self._call("POST", "channels", {"name": name, "port": port,
                                              "schema": json.dumps(schema)})
        return {"name": out["name"], "port": out["port"],
                "signals": {s["name"]: s["type"] for s in out["signals"]}}

    def channels(self, status=None):
        path = f"channels?status={status}" if status else "channels"
        return sorted(c["name"] for c in self._call("GET", path)["channels"])

    def stats(self, name):
        return self._call("GET", f"stats?channels={name}")[name]["stored_records"]

    def tag(self, name, start, end, note):
        out = self._call("POST", "tags", {"name": name, "start": str(start), "end": str(end),
                                          "note": note})
        return {k: out[k] for k in ("name", "start", "end", "note")}

    def tags(self):
        return sorted(t["name"] for t in self._call("GET", "tags")["tags"])

    def untag(self, name):
        self._call("DELETE", f"tags/{name}")

    def overview(self, name, start, end, buckets):
        q = urllib.parse.urlencode({"start": start, "end": end, "buckets": buckets})
        out = self._call("GET", f"channels/{name}/overview?{q}")
        return [None if v is None else v for v in out["signals"]["x"]["max"]]

    def export(self, start, end):
        q = urllib.parse.urlencode({"start": start, "end": end})
        return len(self._call("GET", f"pivot/export?{q}"))

    def deregister(self, name):
        self._call("DELETE", f"channels/{name}")

    def forget(self, node, unreachable_for):
        q = urllib.parse.urlencode({"unreachable_for": unreachable_for})
        return self._call("DELETE", f"cluster/nodes/{node}?{q}")["released"]


class Grpc:
    name = "grpc"

    def __init__(self, address: str):
        self.client = speeddata.Client(address)

    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except speeddata.SpeedDataError as e:
            code, status = status_of(e)
            raise Refused(code, status, str(e)) from None

    def register(self, name, port, schema):
        info = self._call(self.client.register_channel, name, port, schema)
        return {"name": info.name, "port": info.port, "signals": info.signals}

    def channels(self, status=None):
        return sorted(c.name for c in self._call(self.client.list_channels, status))

    def stats(self, name):
        return self._call(self.client.stats, [name])[name]["stored_records"]

    def tag(self, name, start, end, note):
        self._call(self.client.tag, name, start, end, note=note)
        t = next(t for t in self._call(self.client.tags) if t["name"] == name)
        return {k: t[k] for k in ("name", "start", "end", "note")}

    def tags(self):
        return sorted(t["name"] for t in self._call(self.client.tags))

    def untag(self, name):
        self._call(self.client.untag, name)

    def overview(self, name, start, end, buckets):
        ov = self._call(self.client.overview, name, start, end, buckets=buckets)
        return [None if v != v else float(v) for v in ov["x"].max]

    def export(self, start, end):
        import os
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            path = self._call(self.client.export_hdf5, os.path.join(tmp, "e.h5"), start, end)
            return os.path.getsize(path)

    def deregister(self, name):
        self._call(self.client.deregister_channel, name)

    def forget(self, node, unreachable_for):
        return self._call(self.client.forget_node, node, unreachable_for)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contract")
    with speeddata.store.open(folder / "data") as st:
        ch = st.create_channel("stored", SCHEMA)
        ch.append_columns(T0 + np.arange(1000, dtype=np.int64) * 10**6,
                          {"x": np.arange(1000.0)})
    proc = ServeProcess(folder / "data")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(params=["rest", "grpc"])
def api(request, server):
    transport = Rest(server.url) if request.param == "rest" else Grpc(server.address)
    yield transport
    if isinstance(transport, Grpc):
        transport.client.close()


def test_register_list_stats_and_deregister(api):
    name, port = f"rig-{api.name}", free_udp_port()
    info = api.register(name, port, SCHEMA)
    assert info == {"name": name, "port": port, "signals": {"x": "double"}}
    assert name in api.channels()
    assert api.stats("stored") == 1000
    with pytest.raises(Refused) as e:
        api.register(name, free_udp_port(), SCHEMA)
    assert (e.value.code, e.value.status) == ("ALREADY_EXISTS", 409) and name in e.value.text
    assert name not in api.channels("stored")
    api.deregister(name)                     # its data stays: listed as stored
    assert name in api.channels("stored") and name not in api.channels("running")


def test_tags_round_trip_and_refuse_a_name_twice(api):
    name = f"run-{api.name}"
    tag = api.tag(name, T0, T0 + 10**8, "a note ✓")
    assert tag == {"name": name, "start": T0, "end": T0 + 10**8, "note": "a note ✓"}
    assert name in api.tags()
    with pytest.raises(Refused) as e:
        api.tag(name, T0, T0 + 10, "")
    assert (e.value.code, e.value.status) == ("ALREADY_EXISTS", 409)
    api.untag(name)
    assert name not in api.tags()
    with pytest.raises(Refused) as e:
        api.untag(name)
    assert (e.value.code, e.value.status) == ("NOT_FOUND", 404)


def test_an_overview_is_the_same_numbers(api):
    got = api.overview("stored", T0, T0 + 1000 * 10**6, 10)
    assert got == [float(99 + 100 * k) for k in range(10)]


def test_errors_have_one_code_on_both(api):
    cases = [
        (lambda: api.overview("nothing", T0, T0 + 10, 5), "NOT_FOUND", 404, "channels are"),
        (lambda: api.register("bad", free_udp_port(), {"type": "record", "name": "r",
                                                       "fields": [{"name": "x"}]}),
         "INVALID_ARGUMENT", 400, "x"),
        (lambda: api.register("bad name!", free_udp_port(), SCHEMA), "INVALID_ARGUMENT", 400,
         "name"),
        (lambda: api.tag("t", T0 + 10, T0, ""), "INVALID_ARGUMENT", 400, "before"),
        (lambda: api.forget("a", "1m"), "INVALID_ARGUMENT", 400, "needs a cluster"),
        (lambda: api.forget("a", "soon"), "INVALID_ARGUMENT", 400, "unreachable_for"),
        (lambda: api.export(T0 + 10**15, T0 + 10**15 + 10), "NOT_FOUND", 404,
         "holds no record"),
    ]
    for call, code, status, word in cases:
        with pytest.raises(Refused) as e:
            call()
        assert (e.value.code, e.value.status) == (code, status), e.value.text
        assert word in e.value.text


def test_an_export_is_a_file_on_both(api):
    assert api.export(T0, T0 + 10**9) > 1000


def test_the_two_transports_agree_with_each_other(server):
    rest, rpc = Rest(server.url), Grpc(server.address)
    try:
        assert rest.channels() == rpc.channels()
        assert rest.tags() == rpc.tags()
        assert rest.overview("stored", T0, T0 + 10**9, 7) == \
            rpc.overview("stored", T0, T0 + 10**9, 7)
        assert rest.stats("stored") == rpc.stats("stored")
    finally:
        rpc.client.close()
