"""The front door of a real `speeddata serve` on loopback, class by class: DNS rebinding
(a foreign Host) on every route, live slots that refused WebSockets give back, no secret in
the log, strict numbers, tag names, errors that fit gRPC's metadata, and the small ones
(413 for a large body, no paths or Server header for callers, 405 as UNIMPLEMENTED, a bind
address that is no address). Each test fails on the code before its fix."""

import json
import socket
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import speeddata
from speeddata.errors import BadName
from speeddata.send import builtin_schema
from speeddata.v1 import speeddata_pb2 as pb

from helpers import EXAMPLE_AVSC, ServeProcess, free_udp_port, wait_for

TOKEN = "front-door-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PER_CLIENT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("door") / "data"
    s = ServeProcess(data, token=TOKEN, verbose=True, config={
        "channels": [{"name": "example", "port": free_udp_port(),
                      "schema": builtin_schema("example")}],
        "web": {"hosts": ["rig-a.lab", "*.lab.example"]},
        "limits": {"subscriptions_per_client": PER_CLIENT}})
    try:
        yield s
    finally:
        s.stop()
    assert TOKEN not in s.output, "the token reached the log"
    for bad in ("Traceback", "Uncaught exception"):
        assert bad not in s.output, s.output


def raw(server, head: str, body: bytes = b"", *, host: str | None = None) -> tuple[int, dict,
                                                                                bytes]:
    """One request as bytes on a socket: (status, headers, body)."""
    own = server.url.split("//")[1].rstrip("/")
    addr, port = own.rsplit(":", 1)
    with socket.create_connection((addr, int(port)), timeout=10) as s:
        s.sendall(head.replace("{host}", host or own).encode() + b"\r\n" + body)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        head_bytes, _, rest = got.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(headers.get("Content-Length", 0))
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(lines[0].split()[1]), headers, rest


def http(server, method: str, path: str, body=None, *, host: str | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    data = b"" if body is None else (body if isinstance(body, bytes) else
                                     json.dumps(body).encode())
    extra = dict(headers or {})
    if body is not None:
        extra.setdefault("Content-Type", "application/json")
        extra["Content-Length"] = str(len(data))
    head = f"{method} {path} HTTP/1.1\r\nHost: {{host}}\r\nConnection: close\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in extra.items())
    return raw(server, head, data, host=host)


def websocket(server, query: str, *, host: str | None = None, origin: str | None = None):
    """The status of a WebSocket handshake at /ws/live (the socket closed at once)."""
    head = (f"GET /ws/live?{query} HTTP/1.1\r\nHost: {{host}}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n" + (f"Origin: {origin}\r\n" if origin else ""))
    return raw(server, head, host=host)


def tags(server) -> list[str]:
    return [t["name"] for t in json.loads(http(server, "GET", "/api/v1/tags")[2])["tags"]]


# ---- 1. DNS rebinding -------------------------------------------------------------------

def test_a_foreign_host_is_refused_on_every_route_and_changes_nothing(server):
    port = server.url.rstrip("/").rsplit(":", 1)[1]
    evil = f"evil.example:{port}"
    tag = {"name": "rebind", "start": "now-5m", "duration": "1m"}
    status, _, body = http(server, "POST", "/api/v1/tags", tag, host=evil,
                           headers={"Origin": f"http://{evil}", **AUTH})
    assert status == 421 and json.loads(body)["code"] == "PERMISSION_DENIED", body
    assert "web.hosts" in json.loads(body)["error"]
    assert "rebind" not in tags(server)
    for path in ("/", "/channels", "/tags", "/static/stripchart.js", "/api/v1/health",
                 "/api/v1/channels", "/api/v1/channels/example/overview", "/api/v1/nope",
                 "/ws/live?channel=example"):
        assert http(server, "GET", path, host=evil)[0] == 421, path
    assert websocket(server, "channel=example", host=evil,
                     origin=f"http://{evil}")[0] == 421
    # the names the server is known by
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.1",
                 f"rig-a.lab:{port}", f"pc7.lab.example:{port}", f"LocalHost:{port}"):
        assert http(server, "GET", "/api/v1/health", host=host)[0] == 200, host
    for host in (f"lab.example.evil:{port}", f"rig-a.lab.evil:{port}", "xlab.example"):
        assert http(server, "GET", "/api/v1/health", host=host)[0] == 421, host


# ---- 2. refused WebSockets give their live slot back ------------------------------------

def test_refused_websockets_leave_the_live_slots_to_the_dashboard(server):
    port = server.url.rstrip("/").rsplit(":", 1)[1]
    own = f"http://127.0.0.1:{port}"
    for _ in range(4 * PER_CLIENT):
        assert websocket(server, "channel=example", origin="http://evil.example")[0] == 403
        assert websocket(server, "channel=example&token=wrong",
                         origin=own)[0] == 401
        assert http(server, "GET", f"/ws/live?channel=example&token={TOKEN}")[0] == 400
        assert websocket(server, f"channel=nope&token={TOKEN}", origin=own)[0] == 404
    opened = []
    try:
        from helpers import live_websocket
        for _ in range(PER_CLIENT):        # the dashboard's own charts still get theirs
            opened.append(live_websocket(server.url, f"channel=example&token={TOKEN}")[0])
        status, _, body = websocket(server, f"channel=example&token={TOKEN}", origin=own)
        assert status == 429, body         # and the limit still holds
    finally:
        for s in opened:
            s.close()


# ---- 3. no secret in the log ------------------------------------------------------------

def test_tokens_and_guesses_in_urls_never_reach_the_log(server):
    for path in (f"/?token={TOKEN}", f"/ws/live?channel=example&token={TOKEN}",
                 "/ws/live?token=guess-one-42&channel=example", "/api/v1/health?token=guess-two",
                 f"/api/v1/tags?access_token={TOKEN}"):
        http(server, "GET", path)
    websocket(server, "channel=example&token=guess-three", origin="http://evil.example")
    wait_for(lambda: server.output.count("token=***") >= 5, what="the access lines")
    for secret in (TOKEN, "guess-one-42", "guess-two", "guess-three"):
        assert secret not in server.output


# ---- 4. one strict parser for numbers, times and durations ------------------------------

@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/v1/ports/available?limit=%C2%B2", None),
    ("GET", "/api/v1/ports/available?limit=" + "9" * 5000, None),
    ("GET", "/api/v1/channels/example/overview?start=--5", None),
    ("GET", "/api/v1/channels/example/overview?start=%C2%B2", None),
    ("GET", "/api/v1/channels/example/overview?start=0&end=now&buckets=%D9%A3", None),
    ("GET", "/api/v1/pivot/export?start=now-1m&duration=1.5e300", None),
    ("GET", "/api/v1/pivot/export?start=now-1m&duration=" + "9" * 400 + "d", None),
    ("GET", "/api/v1/pivot/export?start=2262-04-01T00:00:00Z&duration=P30D", None),
    ("POST", "/api/v1/tags", {"name": "big", "start": 1.5e300, "duration": "1m"}),
    ("POST", "/api/v1/tags", {"name": "big", "start": "now", "duration": 1.5e300}),
    ("POST", "/api/v1/tags", {"name": "big", "start": "now", "end": 1.5e300}),
    ("POST", "/api/v1/tags", {"name": "big", "start": "now", "end": -1.5e300}),
    ("GET", "/static/%00.js", None),
    ("GET", "/static/a%00b.css", None),
])
def test_hostile_numbers_and_paths_are_clear_errors(server, method, path, body):
    status, _, answer = http(server, method, path, body, headers=AUTH if body else None)
    assert 400 <= status < 500, (path, status, answer)
    assert json.loads(answer)["error"]
    assert "big" not in tags(server)


def test_strict_parsers_refuse_what_str_isdigit_takes():
    from speeddata.errors import RequestError, TimeRangeError
    from speeddata.timeutil import duration_ns, finite_number, to_ns, whole_number
    for text in ("\u00b2", "\u0663", "\uff15", "1_000", "5 5", "", "0x10", "9" * 50):
        with pytest.raises(RequestError):
            whole_number(text, what="n")
    assert whole_number(" 42 ", what="n") == 42 and whole_number("-3", what="n") == -3
    for text in ("nan", "inf", "1e999", "\u0663.5", "1,5"):
        with pytest.raises(RequestError):
            finite_number(text, what="x")
    assert finite_number("2.5e1", what="x") == 25.0
    for value in (1.5e300, float("inf"), -1e19, "\u0663\u0663", "2026-01-0\u0663", "a\x00"):
        with pytest.raises(TimeRangeError):
            to_ns(value)
    for value in (1.5e300, "1e300s", "9" * 400 + "d", "P" + "9" * 40 + "D", "\u0663s"):
        with pytest.raises(TimeRangeError):
            duration_ns(value)
    assert to_ns("+5") == 5 and duration_ns("1.5s") == 1_500_000_000


# ---- 5. tag names have the rules of channel names ---------------------------------------

@pytest.mark.parametrize("name", ["x" * 500_000, "a/../b", "a\x00b", "", " ", "-x",
                                  "\u00e9t\u00e9"])
def test_bad_tag_names_are_refused_on_every_surface(server, name, tmp_path):
    body = {"name": name, "start": "now-5m", "duration": "1m"}
    status, _, answer = http(server, "POST", "/api/v1/tags", body, headers=AUTH)
    assert status == 400 and json.loads(answer)["code"] == "INVALID_ARGUMENT", answer
    assert "tag name" in json.loads(answer)["error"]
    with grpc.insecure_channel(server.address) as channel:
        create = channel.unary_unary("/speeddata.v1.SpeedData/CreateTag",
                                     request_serializer=pb.CreateTagRequest.SerializeToString,
                                     response_deserializer=pb.Tag.FromString)
        with pytest.raises(grpc.RpcError) as e:
            create(pb.CreateTagRequest(name=name, start=1, end=2), metadata=[
                ("authorization", f"Bearer {TOKEN}")], timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert name not in tags(server)
    with speeddata.store.open(tmp_path / "s") as st, pytest.raises(BadName):
        st.tag(name, 0, 10)


# ---- 6. errors that fit gRPC's metadata -------------------------------------------------

def test_a_hint_names_the_first_twenty_and_counts_the_rest(tmp_path):
    data = tmp_path / "data"
    with speeddata.store.open(data) as st:
        st.create_channel("example", str(EXAMPLE_AVSC))
        for i in range(1500):
            st.tag(f"run-{i:04d}-with-a-long-descriptive-name", i * 10, i * 10 + 5)
    s = ServeProcess(data)
    try:
        with grpc.insecure_channel(s.address) as channel:
            delete = channel.unary_unary("/speeddata.v1.SpeedData/DeleteTag",
                                         request_serializer=pb.DeleteTagRequest.SerializeToString,
                                         response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as e:
                delete(pb.DeleteTagRequest(name="nope"), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND, e.value.details()
        assert "and 1480 more" in e.value.details()
        status, _, answer = http(s, "DELETE", "/api/v1/tags/nope")
        assert status == 404 and "and 1480 more" in json.loads(answer)["error"]
    finally:
        s.stop()


# ---- 7. the small ones ------------------------------------------------------------------

def test_garbage_to_health_and_reflection_is_invalid_argument(server):
    with grpc.insecure_channel(server.address) as channel:
        for path, streaming in (("/grpc.health.v1.Health/Check", False),
                                ("/grpc.health.v1.Health/Watch", True),
                                ("/grpc.reflection.v1alpha.ServerReflection/"
                                 "ServerReflectionInfo", "both")):
            with pytest.raises(grpc.RpcError) as e:
                if streaming == "both":
                    list(channel.stream_stream(path)(iter([b"\xff\xff\xff"]), timeout=5))
                elif streaming:
                    list(channel.unary_stream(path)(b"\xff\xff\xff", timeout=5))
                else:
                    channel.unary_unary(path)(b"\xff\xff\xff", timeout=5)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, e.value)
        check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                    request_serializer=health_pb2.HealthCheckRequest.
                                    SerializeToString,
                                    response_deserializer=health_pb2.HealthCheckResponse.
                                    FromString)
        assert check(health_pb2.HealthCheckRequest(), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING
        listing = channel.unary_unary("/grpc.health.v1.Health/List",
                                      request_serializer=health_pb2.HealthListRequest.
                                      SerializeToString,
                                      response_deserializer=health_pb2.HealthListResponse.
                                      FromString)
        assert "speeddata.v1.SpeedData" in listing(health_pb2.HealthListRequest(),
                                                   timeout=5).statuses
        reflect = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        answer = next(iter(reflect(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]), timeout=5)))
        assert "speeddata.v1.SpeedData" in [s.name for s in
                                            answer.list_services_response.service]


def test_a_body_past_the_limit_is_413_before_it_is_read(server):
    head = ("POST /api/v1/tags HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {50 << 20}\r\n")
    status, _, body = raw(server, head, b"{" + b" " * 100_000)
    assert status == 413, body
    answer = json.loads(body)
    assert answer["code"] == "RESOURCE_EXHAUSTED" and "limit of 1048576" in answer["error"]
    chunked = ("POST /api/v1/tags HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\n")
    assert raw(server, chunked, b"2\r\n{}\r\n0\r\n\r\n")[0] == 411
    assert http(server, "GET", "/api/v1/health")[0] == 200


def test_callers_see_no_paths_and_no_server_version(server):
    data = server.data
    status, _, body = http(server, "GET", "/api/v1/health")
    assert status == 200 and json.loads(body)["store"] == "data"
    status, _, body = http(server, "POST", "/api/v1/tags", {
        "name": "t", "start": "now-1m", "duration": "1m", "channels": ["nope"]}, headers=AUTH)
    assert status == 404 and "nope" in json.loads(body)["error"], body
    with grpc.insecure_channel(server.address) as channel:
        create = channel.unary_unary("/speeddata.v1.SpeedData/CreateTag",
                                     request_serializer=pb.CreateTagRequest.SerializeToString,
                                     response_deserializer=pb.Tag.FromString)
        with pytest.raises(grpc.RpcError) as e:
            create(pb.CreateTagRequest(name="t", start=1, end=2, channels=["nope"]),
                   metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
    for text in (body.decode(), e.value.details()):
        assert str(data) not in text and "/tmp" not in text, text
    for path in ("/", "/static/stripchart.js", "/api/v1/health", "/api/v1/nope"):
        assert "Server" not in http(server, "GET", path)[1], path
    from helpers import live_websocket
    sock, _ = live_websocket(server.url, f"channel=example&token={TOKEN}")
    sock.close()
    assert "Server" not in websocket(server, f"channel=example&token={TOKEN}")[1]


def test_a_method_a_route_lacks_is_unimplemented(server):
    for method, path in (("PUT", "/api/v1/tags"), ("PATCH", "/api/v1/channels"),
                         ("POST", "/api/v1/health"), ("DELETE", "/")):
        status, _, body = http(server, method, path, headers=AUTH)
        assert status == 405 and json.loads(body)["code"] == "UNIMPLEMENTED", (path, body)


def test_a_bind_host_that_does_not_resolve_is_named_as_such(server):
    schema = EXAMPLE_AVSC.read_text()
    status, _, body = http(server, "POST", "/api/v1/channels", {
        "name": "nowhere", "port": free_udp_port(), "schema": schema,
        "config": {"bind": "no-such-host.invalid"}}, headers=AUTH)
    answer = json.loads(body)
    assert status == 400 and answer["code"] == "INVALID_ARGUMENT", answer
    assert "no-such-host.invalid" in answer["error"] and "held by" not in answer["error"]


# ---- 8. the suite beside a running SpeedData --------------------------------------------

def test_the_leftover_check_ignores_another_speeddata_on_the_machine(tmp_path):
    from helpers import ours
    # a process that is not this run's: its parent exits, so it is adopted by init
    out = subprocess.run(["sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    stranger = int(out.stdout)
    ring = tmp_path / f"speeddata-{stranger}-demo"
    ring.mkdir()
    try:
        assert f"speeddata-{stranger}-demo" not in ours(str(tmp_path))
        mine = tmp_path / "speeddata-restore-xyz"          # no pid: counted, to be safe
        mine.mkdir()
        assert "speeddata-restore-xyz" in ours(str(tmp_path))
    finally:
        import os
        import signal
        os.kill(stranger, signal.SIGKILL)
