"""Hostile input at every REST route and every gRPC method of a real `speeddata serve`
(Hypothesis): random methods, paths, query strings, headers and JSON or binary bodies;
random bytes and random well-typed messages for each method of the .proto. Each answer is a
clear error or a real answer, never a 500 or INTERNAL; no exception reaches the log; a
request that is refused changes nothing; the server answers health at the end."""

import http.client
import json
import string
import urllib.parse
import urllib.request

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from speeddata.send import builtin_schema, send
from speeddata.v1 import speeddata_pb2 as pb

from helpers import ServeProcess, free_udp_port, wait_for

NAME = st.sampled_from(["example", "keep", "nope"]) | \
    st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=12)
# what a change may name: never the channel and tag the other examples read
OTHER = NAME.filter(lambda n: n not in ("example", "keep"))
ROUTES = ["/api/v1/health", "/api/v1/channels", "/api/v1/channels/{}",
          "/api/v1/channels/{}/schema", "/api/v1/channels/{}/overview",
          "/api/v1/ports/available", "/api/v1/schemas/check", "/api/v1/stats", "/api/v1/tags",
          "/api/v1/tags/{}", "/api/v1/pivot/export", "/api/v1/cluster", "/api/v1/archives",
          "/api/v1/{}", "/ws/live", "/", "/channels", "/tags", "/static/{}"]
KEYS = ["start", "end", "duration", "channels", "channel", "signals", "buckets", "tag",
        "limit", "window", "width", "name", "port", "schema", "note", "replace", "config",
        "bind", "decimation", "retention", "token"]
TIMES = st.sampled_from(["2026-01-01T00:00:00Z", "PT1S", "P1D", "-1", "0", "1e30", "now",
                         "99999999999999999999999", "T", ""]) | \
    st.integers(-2**70, 2**70).map(str) | st.text(max_size=20)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) |
                    st.floats(allow_nan=False) | st.text(max_size=20) | TIMES,
                    lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner,
                                    max_size=6), max_leaves=20)
MUTATING = {"POST", "PUT", "DELETE", "PATCH"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_udp_port()
    data = tmp_path_factory.mktemp("fuzz") / "data"
    s = ServeProcess(data, config={"channels": [
        {"name": "example", "port": port, "schema": builtin_schema("example")}]})
    try:
        send(port=port, rate=20_000, count=1_000)
        wait_for(lambda: state(s)[2] == (("example", 1_000),), what="records stored")
        request(s, "POST", "/api/v1/tags", json.dumps(
            {"name": "keep", "start": "2000-01-01T00:00:00Z", "duration": "P1D"}).encode(),
            {"Content-Type": "application/json"})
        yield s
    finally:
        s.stop()


def request(server, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes, dict]:
    host = server.url.split("//")[1].rstrip("/")
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def state(server) -> tuple:
    """What a refused request must not change: channels, tags and records held."""
    def get(path):
        with urllib.request.urlopen(server.url + path.lstrip("/")) as r:
            return json.load(r)
    channels = tuple(sorted((c["name"], c["port"], c["source"])
                            for c in get("/api/v1/channels")["channels"]))
    tags = tuple(sorted((t["name"], t["start"], t["end"]) for t in get("/api/v1/tags")["tags"]))
    held = tuple(sorted((name, s["stored_records"]) for name, s in get("/api/v1/stats").items()))
    return channels, tags, held


class Watch:
    """The server's log since the last look: no exception may reach it."""

    def __init__(self, server):
        self.server, self.seen = server, len(server.output)

    def check(self, what: str) -> None:
        new = self.server.output[self.seen:]
        self.seen = len(self.server.output)
        for bad in ("Traceback", "Uncaught exception", "Exception in callback"):
            assert bad not in new, f"{what}:\n{new}"


@st.composite
def http_requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
    route = draw(st.sampled_from(ROUTES))
    # a change may name the channel and tag the others rely on only to read them
    name = draw(NAME if method == "GET" else OTHER)
    path = route.format(urllib.request.quote(name, safe=""))
    query = draw(st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=6),
                                    TIMES | NAME), max_size=5))
    if query:
        path += "?" + urllib.parse.urlencode(query)
    kind = draw(st.sampled_from(["none", "json", "bytes"]))
    body = None if kind == "none" else \
        json.dumps(draw(JSON)).encode() if kind == "json" else draw(st.binary(max_size=64))
    headers = {}
    if body is not None:
        headers["Content-Type"] = draw(st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
    origin = draw(st.sampled_from(["own", "none", "evil", "null"]))
    return method, path, body, headers, origin


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(http_requests())
@example(("GET", "/api/v1/ports/available?limit=2026-01-01T00%3A00%3A00Z", None, {}, "own"))
def test_every_rest_route_answers_bad_input_with_a_clear_error(server, req):
    method, path, body, headers, origin = req
    headers = dict(headers)
    if origin == "own":
        headers["Origin"] = server.url.rstrip("/")
    elif origin == "evil":
        headers["Origin"] = "http://evil.example"
    elif origin == "null":
        headers["Origin"] = "null"
    watch = Watch(server)
    before = state(server)
    status, data, got = request(server, method, path, body, headers)
    assert status < 500, (method, path, body, status, data)
    if status >= 400 and path.startswith("/api/") and method != "HEAD":
        assert "error" in json.loads(data), data                # said, not just refused
    if method in MUTATING and (status >= 400 or origin in ("evil", "null")):
        assert status >= 400 or origin not in ("evil", "null")
        assert state(server) == before, (method, path, body, status, data)
    assert "Access-Control-Allow-Origin" not in got
    watch.check(f"{method} {path} {body!r}")


# ---- gRPC ------------------------------------------------------------------------------

SERVICE = pb.DESCRIPTOR.services_by_name["SpeedData"]
MUTATING_GRPC = {"RegisterChannel", "DeregisterChannel", "DeleteChannelData", "CreateTag",
                 "DeleteTag", "Archive"}
_INTS = {FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32:
         (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1),
         FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32:
         (0, 2**32 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
         FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64:
         (-2**63, 2**63 - 1), FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
         FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1)}


def _value(f, depth: int, names):
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(f.message_type, depth + 1, names)
    if f.type == FieldDescriptor.TYPE_STRING:
        return names | st.sampled_from(["counter", "sine_wave", "x:min"]) | \
            st.text(max_size=30).filter(lambda n: n not in ("example", "keep"))
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=40)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if f.type == FieldDescriptor.TYPE_FLOAT else 64)
    if f.type == FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in f.enum_type.values]) | st.integers(0, 40)
    lo, hi = _INTS[f.type]
    return st.integers(lo, hi) | st.integers(-2, 2_000_000_000_000_000_000).filter(
        lambda v: lo <= v <= hi)


def messages(desc, depth: int = 0, names=NAME):
    """Random messages of a type: any subset of its fields set, nested three deep."""
    cls = getattr(pb, desc.name) if desc.containing_type is None else None
    if depth > 2 or cls is None:
        return st.none()
    fields = {}
    for f in desc.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            continue
        v = _value(f, depth, names)
        fields[f.name] = st.lists(v, max_size=3) if f.is_repeated else v

    def build(values: dict):
        m = cls()
        for name, v in values.items():
            f = desc.fields_by_name[name]
            items = v if f.is_repeated else [v]
            for item in items:
                if item is None:
                    continue
                if f.type == FieldDescriptor.TYPE_MESSAGE:
                    (getattr(m, name).add() if f.is_repeated else getattr(m, name)).CopyFrom(item)
                elif f.is_repeated:
                    getattr(m, name).append(item)
                else:
                    setattr(m, name, item)
        return m
    return st.fixed_dictionaries({}, optional=fields).map(build)


def _call(server, method, payload: bytes) -> grpc.StatusCode:
    """One call with raw request bytes; its status (streams read to their end, or for 2 s)."""
    m = SERVICE.methods_by_name[method]
    path = f"/{SERVICE.full_name}/{method}"
    with grpc.insecure_channel(server.address) as channel:
        kind = channel.unary_stream if m.server_streaming else channel.unary_unary
        call = kind(path, request_serializer=None, response_deserializer=None)
        try:
            if m.server_streaming:
                for _ in call(payload, timeout=2):
                    pass
            else:
                call(payload, timeout=10)
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


@st.composite
def grpc_requests(draw):
    method = draw(st.sampled_from([m.name for m in SERVICE.methods]))
    desc = SERVICE.methods_by_name[method].input_type
    if draw(st.booleans()):
        payload = draw(st.binary(max_size=80))
    else:
        names = OTHER if method in MUTATING_GRPC else NAME
        payload = draw(messages(desc, names=names)).SerializeToString()
    return method, payload


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(grpc_requests())
@example(("Export", b'\n\x04keep"\x07example"\x07example'))    # a channel named twice
def test_every_grpc_method_answers_bad_input_with_a_clear_error(server, req):
    method, payload = req
    watch = Watch(server)
    before = state(server)
    code = _call(server, method, payload)
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (method, payload)
    if code not in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED):
        assert state(server) == before, (method, payload, code)
    watch.check(f"{method} {payload!r}")


def test_the_server_still_serves_after_the_fuzz(server):
    with urllib.request.urlopen(server.url + "api/v1/health") as r:
        assert json.load(r)["status"] == "ok"
    assert state(server)[2] == (("example", 1_000),)
    assert _call(server, "ListChannels", b"") == grpc.StatusCode.OK
