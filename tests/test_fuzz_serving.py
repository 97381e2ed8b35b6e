"""Hostile input at every REST route and every gRPC method of a real `speeddata serve`
(Hypothesis): random methods, paths, query strings, headers and JSON or binary bodies;
random bytes and random well-typed messages for each method of the .proto. Each answer is a
clear error or a real answer, never a 500 or INTERNAL; no exception reaches the log; a
request that is refused changes nothing; the server answers health at the end."""

import http.client
import json
import re
import string
import urllib.parse
import urllib.request

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from speeddata.send import builtin_schema, send
from speeddata.v1 import speeddata_pb2 as pb

from helpers import ServeProcess, free_udp_port, wait_for

TOKEN = "fuzz-s3cret-token"
# what hostile input looks like, class by class: Unicode digits and signs (str.isdigit and \\d
# take them, int() refuses some), numbers at and past what int64 ns hold, NUL and '..' in
# names and paths, and sizes far past any limit
UNICODE_DIGITS = st.sampled_from(["\u00b2", "\u0663", "\u0661\u0662", "-\u0663", "--5",
                                  "+-1", "\uff15", "5\u00b2", "\u2212" "5", "1_000"])
BIG_NUMBERS = st.sampled_from([1.5e300, -1.5e300, 9.3e9, 9.3e18, 2**63, -2**63 - 1, 2**64,
                               1e19, -1e19, 1.7976931348623157e308])
BAD_NAMES = st.sampled_from(["a/../b", "..", "\x00", "a\x00b", "\x00.js", "../x.js",
                             "x" * 5000, " ", "a b", "\u00e9t\u00e9", "-x", ".hidden"])
NAME = st.sampled_from(["example", "keep", "nope"]) | BAD_NAMES | \
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
# the query keys each route reads: most draws use them, so that values reach the parsers
ROUTE_KEYS = {"/api/v1/ports/available": ["limit"], "/api/v1/stats": ["channels"],
              "/api/v1/channels": ["status"],
              "/api/v1/channels/{}/overview": ["start", "end", "buckets", "signals"],
              "/api/v1/pivot/export": ["start", "end", "duration", "channels", "signals",
                                       "tag"],
              "/ws/live": ["channel", "signals", "window", "width", "token"]}
TIMES = st.sampled_from(["2026-01-01T00:00:00Z", "PT1S", "P1D", "-1", "0", "1e30", "now",
                         "99999999999999999999999", "T", "", "1.5e300", "now-1.5e300s",
                         "9" * 400 + "d", "P" + "9" * 400 + "D", "now+PT1S"]) | \
    st.integers(-2**70, 2**70).map(str) | BIG_NUMBERS.map(str) | UNICODE_DIGITS | \
    st.text(max_size=20)
JSON_TIMES = TIMES | BIG_NUMBERS | st.floats(allow_nan=False)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) |
                    st.floats(allow_nan=False) | st.text(max_size=20) | TIMES | BIG_NUMBERS,
                    lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner,
                                    max_size=6), max_leaves=20)
# bodies shaped like what the routes take, with hostile values in their fields
TAG_BODY = st.fixed_dictionaries({"name": OTHER}, optional={
    "start": JSON_TIMES, "duration": JSON_TIMES, "end": JSON_TIMES, "note": st.text(max_size=8),
    "channels": st.lists(NAME, max_size=3), "replace": st.booleans()})
CHANNEL_BODY = st.fixed_dictionaries({"name": OTHER, "port": st.integers(-5, 70_000) |
                                      UNICODE_DIGITS, "schema": st.text(max_size=30)},
                                     optional={"config": st.dictionaries(
                                         st.sampled_from(KEYS), JSON_TIMES | NAME |
                                         UNICODE_DIGITS, max_size=3)})
MUTATING = {"POST", "PUT", "DELETE", "PATCH"}
HUGE = "HUGE-VALUE-OF-"          # ...N digits: written out only when sent, not in reports
ORIGINS = ["own", "none", "evil", "null", "rebind", "rebind-host-only"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_udp_port()
    data = tmp_path_factory.mktemp("fuzz") / "data"
    s = ServeProcess(data, token=TOKEN, verbose=True, config={"channels": [
        {"name": "example", "port": port, "schema": builtin_schema("example")}]})
    try:
        send(port=port, rate=20_000, count=1_000)
        wait_for(lambda: state(s)[2] == (("example", 1_000),), what="records stored")
        request(s, "POST", "/api/v1/tags", json.dumps(
            {"name": "keep", "start": "2000-01-01T00:00:00Z", "duration": "P1D"}).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        yield s
    finally:
        s.stop()
    assert TOKEN not in s.output, "the token reached the log"


def request(server, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes, dict]:
    host = server.url.split("//")[1].rstrip("/")
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.putrequest(method, path, skip_host="Host" in (headers or {}),
                        skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
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
    """The server's log since the last look: no exception and no secret may reach it. A
    look ends at a marker request's access line, so that what a request logged after its
    answer is not put down to the next one."""

    marks = 0

    def __init__(self, server):
        self.server, self.seen = server, len(server.output)

    def check(self, what: str, secrets=()) -> None:
        Watch.marks += 1
        mark = f"/api/v1/health?look={Watch.marks}"
        request(self.server, "GET", mark)
        wait_for(lambda: mark in self.server.output, what="the marker's access line")
        end = self.server.output.index(mark, self.seen)
        new = self.server.output[self.seen:end]
        self.seen = end
        for bad in ("Traceback", "Uncaught exception", "Exception in callback", TOKEN,
                    *secrets):
            assert bad not in new, f"{what}: {bad!r} in the log:\n{new}"


@st.composite
def http_requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]))
    route = draw(st.sampled_from(ROUTES))
    # a change may name the channel and tag the others rely on only to read them
    name = draw(NAME if method == "GET" else OTHER)
    path = route.format(urllib.request.quote(name, safe=""))
    own_keys = st.sampled_from(ROUTE_KEYS[route]) if route in ROUTE_KEYS else st.nothing()
    pair = st.tuples(own_keys | st.sampled_from(KEYS) | st.text(max_size=6), TIMES | NAME)
    query = draw(st.lists(pair, max_size=5) |
                 # one parameter repeated, or one huge value
                 # (short ones: the report of a failing example must stay readable)
                 st.tuples(st.tuples(st.sampled_from(KEYS), (TIMES | NAME).filter(
                     lambda v: len(v) <= 40)), st.integers(50, 150)).map(
                     lambda p: [p[0]] * p[1]) |
                 st.tuples(own_keys | st.sampled_from(KEYS), st.integers(10_000, 30_000)).map(
                     lambda p: [(p[0], f"{HUGE}{p[1]}")]))
    if query:
        path += "?" + urllib.parse.urlencode(query)       # a huge value is spelled out later
    kind = draw(st.sampled_from(["none", "json", "bytes", "shaped"]))
    if kind == "shaped":
        shape = TAG_BODY if route.startswith("/api/v1/tags") else CHANNEL_BODY
        body = json.dumps(draw(shape)).encode()
    else:
        body = None if kind == "none" else \
            json.dumps(draw(JSON)).encode() if kind == "json" else draw(st.binary(max_size=64))
    headers = {}
    if body is not None:
        headers["Content-Type"] = draw(st.sampled_from(
            ["application/json", "application/json", "text/plain",
             "application/x-www-form-urlencoded", ""]))
    origin = draw(st.sampled_from(ORIGINS))
    auth = draw(st.sampled_from(["token", "token", "none", "guess"]))
    return method, path, body, headers, origin, auth


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(http_requests())
@example(("GET", "/api/v1/ports/available?limit=2026-01-01T00%3A00%3A00Z", None, {}, "own",
          "none"))
def test_every_rest_route_answers_bad_input_with_a_clear_error(server, req):
    method, path, body, headers, origin, auth = req
    path = re.sub(f"{HUGE}([0-9]+)", lambda m: "9" * int(m.group(1)), path)
    headers = dict(headers)
    own = server.url.split("//")[1].rstrip("/")
    evil = "evil.example:" + own.rpartition(":")[2]
    if origin == "own":
        headers["Origin"] = server.url.rstrip("/")
    elif origin == "evil":
        headers["Origin"] = "http://evil.example"
    elif origin == "null":
        headers["Origin"] = "null"
    elif origin.startswith("rebind"):           # DNS rebinding: the page's name is ours
        headers["Host"] = evil
        if origin == "rebind":
            headers["Origin"] = f"http://{evil}"
    guess = ""
    if auth == "token":
        headers["Authorization"] = f"Bearer {TOKEN}"
    elif auth == "guess":
        guess = f"guess-{len(path)}-{len(body or b'')}-token"
        headers["Authorization"] = f"Bearer {guess}"
        path += ("&" if "?" in path else "?") + f"token={guess}"
    watch = Watch(server)
    before = state(server)
    status, data, got = request(server, method, path, body, headers)
    assert status < 500, (method, path, body, status, data)
    if status >= 400 and path.startswith("/api/") and method != "HEAD":
        assert "error" in json.loads(data), data                # said, not just refused
    if origin.startswith("rebind"):
        assert status == 421, (method, path, headers, status, data)
    refused_origin = origin in ("evil", "null") or origin.startswith("rebind")
    if method in MUTATING and (status >= 400 or refused_origin):
        assert status >= 400 or not refused_origin
        assert state(server) == before, (method, path, body, status, data)
    if method == "POST" and path.startswith("/api/v1/tags") and status == 201:
        made = json.loads(data)["name"]             # what a surface makes, it can remove
        gone, answer, _ = request(server, "DELETE", "/api/v1/tags/" + urllib.parse.quote(
            made, safe=""), None, {"Authorization": f"Bearer {TOKEN}"})
        assert gone == 200, (made, gone, answer)
    assert "Access-Control-Allow-Origin" not in got
    assert "Server" not in got, got
    watch.check(f"{method} {path[:300]} {body!r:.300}", [guess] if guess else [])


# Well-formed requests with hostile values in one or two of their fields: the random
# requests above seldom get past the first check, these reach the parsers behind it.
# (path, baseline query) for reads; (method, path, baseline body) for changes.
READS = [("/api/v1/ports/available", {"limit": "5"}),
         ("/api/v1/channels/example/overview", {"start": "0", "end": "now", "buckets": "10",
                                                "signals": "sine_wave"}),
         ("/api/v1/pivot/export", {"start": "now-1s", "duration": "1s", "channels": "example"}),
         ("/ws/live", {"channel": "example", "window": "10", "width": "100"}),
         ("/api/v1/stats", {"channels": "example"}),
         ("/api/v1/channels", {"status": "running"}),
         ("/static/{}", {}), ("/api/v1/channels/{}", {}), ("/api/v1/tags/{}", {})]
CHANGES = [("POST", "/api/v1/tags", {"name": "fresh", "start": "now-1m", "duration": "30s",
                                     "note": "n", "channels": ["example"]}),
           ("POST", "/api/v1/tags", {"name": "fresh", "start": "2026-01-01T00:00:00Z",
                                     "end": "2026-01-01T00:01:00Z"}),
           ("DELETE", "/api/v1/tags/{}", None), ("DELETE", "/api/v1/channels/{}", None),
           ("POST", "/api/v1/channels", {"name": "fresh", "port": 80, "schema": "{}",
                                         "config": {"decimation": "minmax:10"}}),
           ("POST", "/api/v1/archives", {"tag": "keep"})]
HOSTILE_TEXT = UNICODE_DIGITS | BIG_NUMBERS.map(str) | BAD_NAMES | \
    st.integers(10_000, 30_000).map(lambda n: f"{HUGE}{n}")
HOSTILE_JSON = HOSTILE_TEXT | BIG_NUMBERS | st.floats().filter(lambda x: x == x)


@st.composite
def hostile_requests(draw):
    if draw(st.booleans()):
        path, fields = draw(st.sampled_from(READS))
        method, body = "GET", None
    else:
        method, path, body = draw(st.sampled_from(CHANGES))
        fields = dict(body or {})
    name = draw(BAD_NAMES | st.sampled_from(["nope", "x.js", "stripchart.js"]))
    fields = dict(fields)
    keys = sorted(fields)
    for key in draw(st.lists(st.sampled_from(keys), max_size=2, unique=True)) if keys else []:
        fields[key] = draw(HOSTILE_JSON if body is not None else HOSTILE_TEXT)
    if body is not None and fields.get("name") == "fresh":
        fields["name"] = f"fz{draw(st.integers(0, 10**6))}"
    path = path.format(urllib.parse.quote(name, safe=""))
    if body is None:
        if fields:
            path += "?" + urllib.parse.urlencode(fields)
        return method, path, None
    return method, path, fields


@settings(deadline=None, max_examples=300, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(hostile_requests())
def test_hostile_values_in_well_formed_requests_get_a_clear_error(server, req):
    method, path, fields = req
    path = re.sub(f"{HUGE}([0-9]+)", lambda m: "9" * int(m.group(1)), path)
    body = None
    if fields is not None:
        body = re.sub(f"{HUGE}([0-9]+)", lambda m: "9" * int(m.group(1)),
                      json.dumps(fields)).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    watch = Watch(server)
    before = state(server)
    status, data, _ = request(server, method, path, body, headers)
    assert status < 500, (method, path, body, status, data)
    if status >= 400:
        assert "error" in json.loads(data), data
        if method != "GET":
            assert state(server) == before, (method, path, body, status, data)
    if method == "POST" and path == "/api/v1/tags" and status == 201:
        made = json.loads(data)["name"]             # what a surface makes, it can remove
        gone, answer, _ = request(server, "DELETE", "/api/v1/tags/" + urllib.parse.quote(
            made, safe=""), None, {"Authorization": f"Bearer {TOKEN}"})
        assert gone == 200, (made, gone, answer)
    watch.check(f"{method} {path[:300]} {body!r:.300}")


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
    if depth > 2:
        return st.none()
    cls = message_factory.GetMessageClass(desc)
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


# every method the server offers: SpeedData's, standard health checking and reflection
METHODS = {f"/{svc.full_name}/{m.name}": m for svc in (
    SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]) for m in svc.methods}


def _call(server, method, payload: bytes, auth: str = "none") -> grpc.StatusCode:
    """One call with raw request bytes; its status (streams read to their end, or for 2 s)."""
    m = METHODS[method]
    metadata = [("authorization", f"Bearer {TOKEN}")] if auth == "token" else \
        [("authorization", "Bearer guess-grpc-token")] if auth == "guess" else []
    with grpc.insecure_channel(server.address) as channel:
        kind = (channel.stream_stream if m.client_streaming else channel.unary_stream) \
            if m.server_streaming else channel.unary_unary
        call = kind(method, request_serializer=None, response_deserializer=None)
        try:
            if m.client_streaming:
                for _ in call(iter([payload]), timeout=2, metadata=metadata):
                    pass
            elif m.server_streaming:
                for _ in call(payload, timeout=2, metadata=metadata):
                    pass
            else:
                call(payload, timeout=10, metadata=metadata)
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


@st.composite
def grpc_requests(draw):
    method = draw(st.sampled_from(sorted(METHODS)))
    desc = METHODS[method].input_type
    if draw(st.booleans()):
        payload = draw(st.binary(max_size=80))
    else:
        names = OTHER if METHODS[method].name in MUTATING_GRPC else NAME
        payload = draw(messages(desc, names=names)).SerializeToString()
    return method, payload, draw(st.sampled_from(["token", "token", "none", "guess"]))


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                HealthCheck.too_slow])
@given(grpc_requests())
@example(("/speeddata.v1.SpeedData/Export", b'\n\x04keep"\x07example"\x07example', "none"))
def test_every_grpc_method_answers_bad_input_with_a_clear_error(server, req):
    method, payload, auth = req
    watch = Watch(server)
    before = state(server)
    code = _call(server, method, payload, auth)
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (method, payload)
    if code not in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED):
        assert state(server) == before, (method, payload, code)
    if method.endswith("/CreateTag") and code == grpc.StatusCode.OK:
        made = pb.CreateTagRequest.FromString(payload).name    # what a surface makes, REST
        gone, answer, _ = request(server, "DELETE", "/api/v1/tags/" + urllib.parse.quote(
            made, safe=""), None, {"Authorization": f"Bearer {TOKEN}"})   # can remove
        assert gone == 200, (made, gone, answer)
    watch.check(f"{method} {payload!r}", ["guess-grpc-token"])


def test_the_server_still_serves_after_the_fuzz(server):
    with urllib.request.urlopen(server.url + "api/v1/health") as r:
        assert json.load(r)["status"] == "ok"
    assert state(server)[2] == (("example", 1_000),)
    assert _call(server, "/speeddata.v1.SpeedData/ListChannels", b"") == grpc.StatusCode.OK
