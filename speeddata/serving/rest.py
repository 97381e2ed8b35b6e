"""The REST API of the web front-end (Tornado), under ``/api/v1``: the prototype's endpoints
over the same registry and service as gRPC (`speeddata.serving.service`).

Every error is JSON ``{"error": message, "code": gRPC code name}`` with the HTTP status of
`speeddata.errors.STATUS`. With a token configured, every request that changes something
needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from typing import Any

import tornado.httputil
import tornado.web

from .._version import __version__
from . import tokens
from ..errors import Forbidden, RequestError, TimeRangeError
from .service import ChannelInfo, Service
from ..stats import ChannelStats
from ..timeutil import duration_ns, end_of, to_ns, whole_number
from .web_guard import JsonErrors


def channel_json(info: ChannelInfo, stats: ChannelStats | None = None,
                 horizon: float | None = None) -> dict[str, Any]:
    """A channel as the API shows it: the prototype's name, port, status and config, its
    signals, and its stats when given."""
    out: dict[str, Any] = {
        "name": info.name, "port": info.port, "bind": info.bind, "status": info.status,
        "failure": info.failure, "source": info.source, "created": info.created,
        "node": info.node, "unreachable_since": info.since or None,
        "config": {"decimation": info.decimation, "retention": info.retention,
                   "time_field": None if info.schema.stamped else info.schema.time_field},
        "signals": [{"name": s.name, "type": s.type, "nullable": s.nullable, "doc": s.doc,
                     "unit": s.unit} for s in info.schema.signals]}
    if stats is not None:
        st = stats.as_dict()
        st.pop("channel", None)
        st["horizon_s"] = horizon
        out["stats"] = st
    return out


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower case ('' when it has none)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def check_same_origin(request: tornado.httputil.HTTPServerRequest) -> None:
    """Refuse a request that changes something when a web page of another origin sent it.

    A browser names the page that sends a request in ``Origin`` (or, for some requests,
    only in ``Referer``), and lets any page send a "simple" POST without asking first; so
    a change is taken only from this server's own pages or from a program that names no
    page at all (curl, the Python client), and only with a JSON body, which a browser never
    sends across origins without a preflight that SpeedData does not answer.
    """
    own = f"{request.protocol}://{request.host}".lower()
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin.lower() != own:     # "null" (sandboxed pages, file://) is not ours either
            raise Forbidden(f"{request.method} {request.path} from the web page origin "
                            f"{origin!r} is refused: changes are only taken from {own}'s "
                            "own pages", hint="use SpeedData's own pages, or a program that "
                            "sends no Origin header")
    elif request.headers.get("Referer"):
        referer = origin_of(request.headers["Referer"])
        if referer != own:
            raise Forbidden(f"{request.method} {request.path} from the page "
                            f"{referer or request.headers['Referer']!r} is refused: changes "
                            f"are only taken from {own}'s own pages")
    if request.body:
        kind = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            raise Forbidden(f"{request.method} {request.path}: the body must be "
                            f"application/json, not {kind or 'of no type'!r}",
                            hint="send the header 'Content-Type: application/json'")


class ApiHandler(JsonErrors):
    """JSON in and out, SpeedData errors as their HTTP status (`JsonErrors`)."""

    service: Service
    token: str | None

    def initialize(self, service: Service, token: str | None = None) -> None:
        self.service = service
        self.token = token

    def prepare(self) -> None:
        if self.request.method not in ("GET", "HEAD"):
            # the body's size is the gate's (speeddata.serving.web_guard), before it is read
            check_same_origin(self.request)
            tokens.check(self.token, tokens.presented(self.request.headers.get("Authorization")),
                         f"{self.request.method} {self.request.path}")

    def body_json(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except (ValueError, RecursionError) as e:
            raise RequestError(f"the request body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        return body

    def send_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class Health(ApiHandler):
    def get(self) -> None:
        sup = self.service.supervisor
        cluster = self.service.cluster
        # the store's name, not its path: a caller has no business knowing the disk's layout
        self.send_json({"status": "ok", "version": __version__,
                        "channels": len(sup.channels), "store": os.path.basename(
                            os.path.normpath(sup.data)),
                        "cluster": None if cluster is None else {
                            "node": cluster.node, "connected": cluster.connected,
                            "problem": cluster.problem or ""},
                        "retention_paused": sup.retention_paused})


class Channels(ApiHandler):
    async def get(self) -> None:
        status = self.get_argument("status", None)
        infos = await asyncio.to_thread(self.service.channels, status)
        self.send_json({"channels": [channel_json(i) for i in infos]})

    async def post(self) -> None:
        body = self.body_json()
        item: dict[str, Any] = {k: body[k] for k in ("name", "port", "schema") if k in body}
        config = body.get("config") or {}
        if not isinstance(config, dict):
            raise RequestError("config must be a JSON object")
        item.update(config)
        info = await asyncio.to_thread(self.service.register_channel, item)
        self.send_json(channel_json(info), 201)


class Channel(ApiHandler):
    async def get(self, name: str) -> None:
        info = await asyncio.to_thread(self.service.channel, name)
        stats, horizon = (await asyncio.to_thread(self.service.stats, [name]))[0]
        self.send_json(channel_json(info, stats, horizon))

    async def delete(self, name: str) -> None:
        if self.get_argument("data", "") == "delete":
            await asyncio.to_thread(self.service.delete_channel_data, name)
            self.send_json({"deleted": name})
            return
        if self.service.is_remote(name):                 # waits for the node that owns it
            await asyncio.to_thread(self.service.deregister_channel, name)
        else:
            self.service.deregister_channel(name)        # the hub, from the loop's thread
        self.send_json({"deregistered": name})


class Schema(ApiHandler):
    async def get(self, name: str) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(await asyncio.to_thread(self.service.schema_json, name))


class SchemaCheck(ApiHandler):
    """``POST /api/v1/schemas/check {"schema": "<Avro JSON>"}``: its signals, or the error
    that names the problem (what the registration form shows as one types)."""

    def post(self) -> None:
        from ..schema import load
        text = self.body_json().get("schema")
        if not isinstance(text, str):
            raise RequestError("send {\"schema\": \"<Avro schema as JSON text>\"}")
        try:
            schema = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise RequestError(f"the schema is not JSON: {e}") from None
        self.service.check_schema_size(schema, text)
        cs = load(schema)
        self.send_json({"signals": [{"name": s.name, "type": s.type} for s in cs.signals],
                        "time_field": None if cs.stamped else cs.time_field})


class Ports(ApiHandler):
    async def get(self) -> None:
        limit = whole_number(self.get_argument("limit", "") or "0", what="limit (ports)",
                             lo=0, hi=65_536)
        ports = await asyncio.to_thread(self.service.available_ports, limit)
        self.send_json({"ports": ports})


class Stats(ApiHandler):
    async def get(self) -> None:
        names = [n for n in self.get_argument("channels", "").split(",") if n]
        served = await asyncio.to_thread(self.service.served_stats, names)
        self.send_json({x.stats.channel: dict(x.stats.as_dict(), horizon_s=x.horizon_s,
                                              subscribers=x.subscribers,
                                              live_stalled=x.live_stalled) for x in served})


def _time_range(args: dict[str, Any]) -> tuple[int, int]:
    """[start, end) from ``start`` and ``end`` or ``duration`` (ISO 8601 or ns)."""
    if "start" not in args:
        raise TimeRangeError("give a start (ISO 8601) and a duration or an end")
    start = to_ns(args["start"], what="start")
    if args.get("end") not in (None, ""):
        end = to_ns(args["end"], what="end")
    elif args.get("duration") not in (None, ""):
        end = end_of(start, duration_ns(args["duration"], what="duration"), what="duration")
    else:
        raise TimeRangeError("give a duration (ISO 8601, e.g. PT30S) or an end")
    if end <= start:
        raise TimeRangeError(f"the range ends before it starts ({args})")
    return start, end


class Tags(ApiHandler):
    async def get(self) -> None:
        tags = await asyncio.to_thread(self.service.tags)
        self.send_json({"tags": [t.as_dict() for t in tags]})

    async def post(self) -> None:
        body = self.body_json()
        start, end = _time_range(body)
        channels = body.get("channels") or []
        if not isinstance(channels, list):
            raise RequestError("channels must be a list of names")
        tag = await asyncio.to_thread(self.service.tag, str(body.get("name", "")), start,
                                      end, channels, str(body.get("note", "")),
                                      bool(body.get("replace", False)))
        self.send_json(tag.as_dict(), 201)


class TagOne(ApiHandler):
    async def delete(self, name: str) -> None:
        await asyncio.to_thread(self.service.untag, name)
        self.send_json({"deleted": name})


class Export(ApiHandler):
    """``GET /api/v1/pivot/export?start=..&duration=..&channels=a,b[&signals=..]`` or
    ``?tag=NAME``: the HDF5 file, streamed. A range without any record is 404, saying what
    the channels hold, unless ``allow_empty=1``."""

    async def get(self) -> None:
        args = {k: self.get_argument(k) for k in self.request.arguments}
        names = [n for n in args.get("channels", "").split(",") if n]
        signals = [n for n in args.get("signals", "").split(",") if n]
        tag = args.get("tag", "")
        start, end = (0, None) if tag else _time_range(args)
        allow_empty = args.get("allow_empty", "") in ("1", "true")
        chunks = self.service.export_hdf5(tag=tag, start=start, end=end, channels=names,
                                          signals=signals, allow_empty=allow_empty)
        first = await asyncio.to_thread(next, chunks, None)   # errors before any byte
        filename = "".join(c for c in (tag or f"speeddata-{args.get('start', '')}")
                           if c.isalnum() or c in "-_.") + ".h5"
        self.set_header("Content-Type", "application/x-hdf5")
        self.set_header("Content-Disposition",
                        f'attachment; filename="{filename}"')
        try:
            item = first
            while item is not None:
                data, size = item
                if not self._headers_written:
                    self.set_header("Content-Length", str(size))
                self.write(data)
                await self.flush()
                item = await asyncio.to_thread(next, chunks, None)
        finally:
            await asyncio.to_thread(chunks.close)  # type: ignore[attr-defined]
        self.finish()


class Cluster(ApiHandler):
    """``GET /api/v1/cluster``: this node, its NATS and the nodes it hears."""

    def get(self) -> None:
        self.send_json(self.service.cluster_info())


class ClusterNode(ApiHandler):
    """``DELETE /api/v1/cluster/nodes/NAME[?unreachable_for=10m]``: forget a node that has
    been unreachable that long, releasing its channels' names (409 while it beats)."""

    async def delete(self, node: str) -> None:
        after = duration_ns(self.get_argument("unreachable_for", "0"),
                            what="unreachable_for") / 1e9
        released = await asyncio.to_thread(self.service.forget_node, node, after)
        self.send_json({"node": node, "released": released})


class Archives(ApiHandler):
    """``GET /api/v1/archives``; ``POST /api/v1/archives {"tag": NAME, "partial": false}``
    archives a tag (503 naming a channel whose node is unreachable, unless partial)."""

    async def get(self) -> None:
        self.send_json({"archives": await asyncio.to_thread(self.service.archives)})

    async def post(self) -> None:
        body = self.body_json()
        tag, partial = body.get("tag"), body.get("partial", False)
        if not isinstance(tag, str) or not tag or not isinstance(partial, bool):
            raise RequestError('send {"tag": "<name of a tag>", "partial": false}')
        self.send_json(await asyncio.to_thread(self.service.archive, tag, partial), 201)


class NotFound(ApiHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, f"no API endpoint {self.request.path}")


def api_routes(service: Service, token: str | None = None) -> list:
    """The ``/api/v1`` routes, for the web app."""
    kw = {"service": service, "token": token}
    name = r"([A-Za-z0-9_.\-]+)"
    return [(p, h, kw) for p, h in (
        (r"/api/v1/health", Health),
        (r"/api/v1/channels", Channels),
        (rf"/api/v1/channels/{name}", Channel),
        (rf"/api/v1/channels/{name}/schema", Schema),
        (r"/api/v1/ports/available", Ports),
        (r"/api/v1/schemas/check", SchemaCheck),
        (r"/api/v1/stats", Stats),
        (r"/api/v1/tags", Tags),
        (rf"/api/v1/tags/{name}", TagOne),
        (r"/api/v1/pivot/export", Export),
        (r"/api/v1/cluster", Cluster),
        (rf"/api/v1/cluster/nodes/{name}", ClusterNode),
        (r"/api/v1/archives", Archives),
        (r"/api/v1/.*", NotFound),
    )]
