"""The REST API (/api/v1): handler tests with tornado.testing against a real supervisor and
real workers, and one against a real `speeddata serve` where gRPC and REST share a registry."""

import json
import urllib.error
import urllib.request

import pytest
from tornado.testing import AsyncHTTPTestCase

import speeddata
from speeddata.live import Hub
from speeddata.schema import load_avro
from speeddata.send import builtin_schema, send
from speeddata.ingest import Supervisor
from speeddata.serving.limits import Limits
from speeddata.serving import Service
from speeddata.serving.web_app import make_app

from helpers import ServeProcess, free_udp_port, wait_for

EXAMPLE_TEXT = json.dumps(load_avro(builtin_schema("example")))


class ApiTest(AsyncHTTPTestCase):
    token = None

    def setUp(self):
        import tempfile
        self.tmp = tempfile.TemporaryDirectory(prefix="sdweb-")
        self.sup = Supervisor(self.tmp.name + "/data").start()
        super().setUp()

    def get_app(self):
        import asyncio
        self.service = Service(self.sup, Hub(self.sup, asyncio.get_event_loop()),
                               Limits(export_records=10_000))
        return make_app(self.service, self.token)

    def tearDown(self):
        super().tearDown()
        self.sup.stop()
        self.tmp.cleanup()

    def call(self, method, path, body=None, headers=None):
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        if data is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        r = self.fetch(path, method=method, body=data, headers=headers,
                       allow_nonstandard_methods=True)
        return r.code, (json.loads(r.body) if r.headers.get("Content-Type", "").startswith(
            "application/json") else r.body)


class TestChannels(ApiTest):
    def test_register_list_get_schema_send_export_and_deregister(self):
        code, health = self.call("GET", "/api/v1/health")
        assert code == 200 and health["status"] == "ok"
        code, ports = self.call("GET", "/api/v1/ports/available?limit=3")
        assert code == 200 and len(ports["ports"]) == 3
        port = free_udp_port()
        code, ch = self.call("POST", "/api/v1/channels", {
            "name": "rig", "port": port, "schema": EXAMPLE_TEXT, "config": {"decimation": 10}})
        assert code == 201, ch
        assert ch["name"] == "rig" and ch["port"] == port and ch["config"]["decimation"] == "10"
        assert "sine_wave" in [s["name"] for s in ch["signals"]]
        code, listed = self.call("GET", "/api/v1/channels")
        assert [c["name"] for c in listed["channels"]] == ["rig"]
        code, schema = self.call("GET", "/api/v1/channels/rig/schema")
        assert code == 200 and schema["fields"][0]["name"] == "time"
        wait_for(lambda: self.sup.counters("rig")["status"] == "running", what="worker")
        send(port=port, rate=20_000, count=2_000)
        # stored (from the store) and received (the worker's counters, published every
        # few ms) both reach every record
        wait_for(lambda: [self.call("GET", "/api/v1/channels/rig")[1]["stats"][k]
                          for k in ("stored_records", "records")] == [2_000, 2_000],
                 what="stored and counted")
        code, one = self.call("GET", "/api/v1/channels/rig")
        assert one["stats"]["records"] == 2_000 and one["stats"]["rejects"] == {}
        cols = self.sup.store["rig"].read()
        start = speeddata.timeutil.format_ns(int(cols.time[0]))
        code, body = self.call("GET", f"/api/v1/pivot/export?start={start}&duration=PT0.1S"
                                      f"&channels=rig&signals=counter")
        assert code == 200, body
        path = self.tmp.name + "/out.h5"
        with open(path, "wb") as f:
            f.write(body)
        got = speeddata.read_hdf5(path)["rig"]
        expected = cols.take((cols.time >= cols.time[0]) &
                             (cols.time < cols.time[0] + 100_000_000))
        assert got["counter"].tolist() == expected.counter.tolist()
        assert got.signals == ["counter"]
        code, tag = self.call("POST", "/api/v1/tags", {"name": "t", "start": start,
                                                        "duration": "PT0.05S", "note": "n"})
        assert code == 201 and tag["note"] == "n"
        code, tags = self.call("GET", "/api/v1/tags")
        assert [t["name"] for t in tags["tags"]] == ["t"]
        code, body = self.call("GET", "/api/v1/pivot/export?tag=t")
        assert code == 200 and body[:8] == b"\x89HDF\r\n\x1a\n"
        assert self.call("DELETE", "/api/v1/tags/t")[0] == 200
        code, gone = self.call("DELETE", "/api/v1/channels/rig")
        assert code == 200 and gone == {"deregistered": "rig"}
        code, listed = self.call("GET", "/api/v1/channels?status=stored")
        assert [c["name"] for c in listed["channels"]] == ["rig"]     # the data stays

    def test_bad_requests_get_a_clear_json_error(self):
        port = free_udp_port()
        cases = [
            ("POST", "/api/v1/channels", "{not json", 400, "not JSON"),
            ("POST", "/api/v1/channels", {"name": "x", "port": port, "schema": "a.avsc"},
             400, "not a file name"),
            ("POST", "/api/v1/channels", {"name": "x", "port": 80, "schema": EXAMPLE_TEXT},
             400, "80"),
            ("GET", "/api/v1/channels/nope", None, 404, "'nope'"),
            ("GET", "/api/v1/channels/nope/schema", None, 404, "nope"),
            ("DELETE", "/api/v1/tags/nope", None, 404, "nope"),
            ("GET", "/api/v1/pivot/export?start=yesterday-ish&duration=PT1S", None, 400,
             "yesterday-ish"),
            ("GET", "/api/v1/pivot/export?start=2026-01-01T00:00:00Z", None, 400, "duration"),
            ("GET", "/api/v1/pivot/export?tag=nope", None, 404, "nope"),
            ("GET", "/api/v1/nothing-here", None, 404, "/api/v1/nothing-here"),
        ]
        for method, path, body, status, words in cases:
            code, answer = self.call(method, path, body)
            assert code == status, (path, answer)
            assert words in answer["error"], (path, answer)
        self.call("POST", "/api/v1/channels", {"name": "x", "port": port,
                                               "schema": EXAMPLE_TEXT})
        code, answer = self.call("POST", "/api/v1/channels", {
            "name": "x", "port": free_udp_port(), "schema": EXAMPLE_TEXT})
        assert code == 409 and answer["code"] == "ALREADY_EXISTS"
        wait_for(lambda: self.sup.counters("x")["status"] == "running", what="worker")
        send(port=port, rate=0, count=20_000)
        wait_for(lambda: self.sup.store["x"].count() == 20_000, what="stored")
        first = speeddata.timeutil.format_ns(self.sup.store["x"].holds()[0])
        code, answer = self.call("GET", f"/api/v1/pivot/export?start={first}&duration=PT1H")
        assert code == 413 and "limit of 10000" in answer["error"]


class TestToken(ApiTest):
    token = "s3cret"

    def test_changes_need_the_token_reads_do_not(self):
        port = free_udp_port()
        body = {"name": "x", "port": port, "schema": EXAMPLE_TEXT}
        for headers in (None, {"Authorization": "Bearer guess"}):
            code, answer = self.call("POST", "/api/v1/channels", body, headers)
            assert code == 401 and "Bearer" in answer["error"]
        code, _ = self.call("POST", "/api/v1/channels", body,
                            {"Authorization": "Bearer s3cret"})
        assert code == 201
        assert self.call("GET", "/api/v1/channels")[0] == 200
        assert self.call("DELETE", "/api/v1/channels/x")[0] == 401
        assert self.call("DELETE", "/api/v1/channels/x", None,
                         {"Authorization": "Bearer s3cret"})[0] == 200


class TestCrossSite(ApiTest):
    """A web page of another site must not change anything, token or not: browsers send
    its "simple" requests (a text/plain or form POST) without asking first."""

    def own(self):
        return f"http://127.0.0.1:{self.get_http_port()}"

    def mutating(self):
        """One request of every route that changes something, with a valid body."""
        return [("POST", "/api/v1/channels", {"name": "pwned", "port": free_udp_port(),
                                              "schema": EXAMPLE_TEXT}),
                ("POST", "/api/v1/schemas/check", {"schema": EXAMPLE_TEXT}),
                ("POST", "/api/v1/tags", {"name": "t", "start": "2026-01-01T00:00:00Z",
                                          "duration": "PT1S"}),
                ("DELETE", "/api/v1/tags/t", None),
                ("DELETE", "/api/v1/channels/rig", None),
                ("DELETE", "/api/v1/channels/rig?data=delete", None)]

    def test_the_reported_text_plain_post_from_another_site_is_refused(self):
        body = json.dumps({"name": "pwned", "port": free_udp_port(), "schema": EXAMPLE_TEXT})
        r = self.fetch("/api/v1/channels", method="POST", body=body,
                       headers={"Content-Type": "text/plain", "Origin": "http://evil.example"})
        assert r.code == 403 and "evil.example" in json.loads(r.body)["error"]
        assert "Access-Control-Allow-Origin" not in r.headers
        assert self.sup.channels == {} and "pwned" not in self.sup.store

    def test_every_mutating_route_refuses_other_origins_and_takes_its_own(self):
        self.call("POST", "/api/v1/channels", {"name": "rig", "port": free_udp_port(),
                                               "schema": EXAMPLE_TEXT},
                  {"Origin": self.own()})
        hostile = [{"Origin": "http://evil.example"}, {"Origin": "null"},
                   {"Referer": "http://evil.example/page.html"},
                   {"Origin": f"http://127.0.0.1:{self.get_http_port() + 1}"}]
        for method, path, body in self.mutating():
            for headers in hostile:
                code, answer = self.call(method, path, body, headers)
                assert code == 403 and answer["code"] == "PERMISSION_DENIED", \
                    (method, path, headers, answer)
        assert list(self.sup.channels) == ["rig"] and self.service.tags() == []
        # the same requests from the server's own pages go through
        expected = [201, 200, 201, 200, 200, 200]
        for (method, path, body), status in zip(self.mutating(), expected):
            headers = {"Origin": self.own()} if method == "POST" else \
                {"Referer": self.own() + "/channels"}
            code, answer = self.call(method, path, body, headers)
            assert code == status, (method, path, answer)

    def test_a_body_must_be_json_whoever_sends_it(self):
        body = json.dumps({"name": "x", "port": free_udp_port(), "schema": EXAMPLE_TEXT})
        for kind in ("text/plain", "application/x-www-form-urlencoded",
                     "multipart/form-data; boundary=x", None):
            headers = {"Content-Type": kind} if kind else {}
            r = self.fetch("/api/v1/channels", method="POST", body=body, headers=headers)
            if kind is None or kind.startswith("multipart"):
                # tornado's client names a form when given no type; tornado's server refuses
                # a malformed multipart body (400) before any handler sees it
                assert r.code in (400, 403), kind
                continue
            assert r.code == 403 and "application/json" in json.loads(r.body)["error"], kind
        assert self.sup.channels == {}
        r = self.fetch("/api/v1/channels", method="OPTIONS", allow_nonstandard_methods=True,
                       headers={"Origin": "http://evil.example",
                                "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in r.headers and r.code >= 400


def test_grpc_and_rest_share_one_registry(tmp_path):
    server = ServeProcess(tmp_path / "data")
    try:
        client = speeddata.Client(server.address)
        port = free_udp_port()
        client.register_channel("from-grpc", port, builtin_schema("example"))
        with urllib.request.urlopen(server.url + "api/v1/channels") as r:
            names = [c["name"] for c in json.load(r)["channels"]]
        assert names == ["from-grpc"]
        request = urllib.request.Request(server.url + "api/v1/channels", method="POST",
                                         data=json.dumps({"name": "from-rest",
                                                          "port": free_udp_port(),
                                                          "schema": EXAMPLE_TEXT}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as r:
            assert r.status == 201
        assert sorted(i.name for i in client.list_channels()) == ["from-grpc", "from-rest"]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server.url + "api/v1/channels/none")
        assert e.value.code == 404 and "'none'" in json.load(e.value)["error"]
        e.value.close()
        client.deregister_channel("from-rest")          # what REST added, gRPC removes

        def running():
            with urllib.request.urlopen(server.url + "api/v1/channels?status=running") as r:
                return [c["name"] for c in json.load(r)["channels"]]
        wait_for(lambda: running() == ["from-grpc"], what="from-grpc alone running")
        client.close()
    finally:
        server.stop()


def test_serving_beyond_loopback_without_a_token_is_refused(tmp_path, caplog):
    import subprocess
    import sys
    from speeddata.errors import ConfigError
    from speeddata.serving.server import _check_exposure
    done = subprocess.run([sys.executable, "-m", "speeddata.cli", "serve", "--data",
                           str(tmp_path / "data"), "--web", "0.0.0.0:0", "--grpc",
                           "127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--web 0.0.0.0:0" in done.stderr and \
        "without a token" in done.stderr and "--insecure" in done.stderr
    assert not (tmp_path / "data").exists()          # refused before anything was made
    _check_exposure({"--web": "0.0.0.0:8080"}, "s3cret", False)     # a token: fine
    _check_exposure({"--web": "127.0.0.1:8080", "--grpc": "[::1]:1"}, None, False)
    with pytest.raises(ConfigError):
        _check_exposure({"--grpc": "10.1.2.3:50051"}, None, False)
    _check_exposure({"--grpc": "10.1.2.3:50051"}, None, True)
    assert "INSECURE" in caplog.text and "10.1.2.3:50051" in caplog.text


class TestLimits(ApiTest):
    def get_app(self):
        import asyncio
        self.service = Service(self.sup, Hub(self.sup, asyncio.get_event_loop()),
                               Limits(request_bytes=4096, schema_fields=3, schema_depth=3,
                                      exports=0))
        self.service.hub.max_per_client = 1
        return make_app(self.service, self.token)

    def test_each_limit_is_reached_and_named(self):
        code, answer = self.call("POST", "/api/v1/tags", {"name": "x" * 5000,
                                                          "start": "2026-01-01T00:00:00Z",
                                                          "duration": "PT1S"})
        assert code == 413 and "limit of 4096" in answer["error"]
        assert answer["code"] == "RESOURCE_EXHAUSTED"
        code, answer = self.call("POST", "/api/v1/schemas/check", {"schema": EXAMPLE_TEXT})
        assert code == 413 and "fields" in answer["error"]
        deep = {"type": "record", "name": "r0", "fields": [{"name": "time", "type": "long"}]}
        for k in range(1, 5):
            deep = {"type": "record", "name": f"r{k}", "fields": [{"name": "x", "type": deep}]}
        code, answer = self.call("POST", "/api/v1/channels", {
            "name": "deep", "port": free_udp_port(), "schema": json.dumps(deep)})
        assert code == 413 and "nests" in answer["error"]
        code, answer = self.call("POST", "/api/v1/schemas/check",
                                 {"schema": "[" * 1900 + "]" * 1900})
        assert code == 400
        code, answer = self.call("GET", "/api/v1/pivot/export?start=2026-01-01T00:00:00Z"
                                        "&duration=PT1S")
        assert code == 429 and "exports are running" in answer["error"]
        assert self.sup.channels == {}

    def test_live_streams_of_one_client_are_limited(self):
        from speeddata.errors import TooMany
        hub = self.service.hub
        self.service.limits.schema_fields = None
        self.service.register_channel({"name": "x", "port": free_udp_port(),
                                       "schema": EXAMPLE_TEXT})
        first = hub.subscribe("x", client="10.0.0.9")
        with pytest.raises(TooMany, match="10.0.0.9"):
            hub.subscribe("x", client="10.0.0.9")
        other = hub.subscribe("x", client="10.0.0.8")
        first.close()
        again = hub.subscribe("x", client="10.0.0.9")         # its place came back
        assert hub.streams() == 2
        again.close()
        other.close()
        assert hub.streams() == 0
