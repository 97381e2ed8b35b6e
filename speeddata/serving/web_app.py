"""The web front-end (Tornado): pages and assets from ``speeddata.web``, the live feed over a
WebSocket, overviews for charts, and the REST API of `speeddata.serving.rest`.

Live frames are binary, little-endian, one per hub update:
``u32 header length | header JSON | zero padding to 8 bytes | float64 time (ms since the
epoch) x rows | float64 values x rows for each column of the header, in order``. Nulls and
empty buckets are NaN. The header is ``{"channel", "rows", "columns": ["x:min", ...],
"first_record", "next_record", "missed"}``. The server thins live data to what the chart
can show: a min/max envelope per bucket of ``window / width``, so a one-sample spike stays
visible.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from importlib import resources
from typing import Any

import numpy as np
import tornado.web
import tornado.websocket

from ..columns import Columns
from ..decimation import Decimation
from . import tokens
from ..errors import Forbidden, LimitExceeded, RequestError, SpeedDataError
from ..live import Subscription
from .service import Service
from ..timeutil import finite_number, to_ns, whole_number
from .rest import ApiHandler, api_routes, origin_of
from .web_guard import GuardedApplication, Hosts, JsonErrors

log = logging.getLogger("speeddata.web")
PAGES = {"/": "index.html", "/channels": "channels.html", "/tags": "tags.html"}


def frame(cols: Columns, channel: str, **header: Any) -> bytes:
    """A live frame (see the module's docstring)."""
    names = list(cols.data)
    head = json.dumps(dict(channel=channel, rows=len(cols), columns=names, **header)).encode()
    pad = (-(4 + len(head))) % 8
    parts = [struct.pack("<I", len(head)), head, b"\0" * pad,
             (cols.time / 1e6).astype("<f8").tobytes()]
    for name in names:
        v = cols.data[name]
        if np.ma.isMaskedArray(v):
            v = np.ma.filled(v.astype(np.float64), np.nan) if v.dtype.kind in "biuf" else \
                np.full(len(v), np.nan)
        elif v.dtype.kind not in "biuf":
            v = np.full(len(v), np.nan)          # charts draw numbers
        parts.append(np.asarray(v, dtype="<f8").tobytes())
    return b"".join(parts)


def _signals(arg: str) -> list[str] | None:
    names = [s for s in arg.split(",") if s]
    return names or None


class Live(JsonErrors, tornado.websocket.WebSocketHandler):
    """``/ws/live?channel=NAME&signals=a,b&window=60&width=1200[&token=..]``: live frames
    of one channel, thinned to the chart's width.

    A request is checked whole (origin, token, arguments, that it asks for a WebSocket)
    before it takes a live slot, and a handshake that does not open gives the slot back: a
    refused request never holds what the dashboard's own charts need."""

    def initialize(self, service: Service, token: str | None = None) -> None:
        self.service = service
        self.token = token
        self.sub: Subscription | None = None
        self.task: asyncio.Task | None = None

    def check_origin(self, origin: str) -> bool:
        # the Host itself was checked by the gate (speeddata.serving.web_guard)
        return origin_of(origin) == f"{self.request.protocol}://{self.request.host}".lower()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            raise Forbidden(f"a live feed for the web page origin {origin[:80]!r} is "
                            "refused", hint="use SpeedData's own pages")
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            raise RequestError("/ws/live is a WebSocket: ask with 'Upgrade: websocket'")
        tokens.check(self.token, tokens.presented(self.request.headers.get("Authorization"),
                                                  self.get_argument("token", "")),
                     "the live feed (?token=<token> from a browser)")
        self._subscribe()
        try:
            await super().get(*args, **kwargs)
        finally:
            if self.task is None:                # the handshake did not open
                self._release()

    def _subscribe(self) -> None:
        hub = self.service.hub
        if hub is None:
            raise SpeedDataError("this server has no live hub")
        window = finite_number(self.get_argument("window", "60"), what="window (s)",
                               lo=0.001, hi=86_400)
        width = whole_number(self.get_argument("width", "1200"), what="width (px)", lo=1)
        most = self.service.limits.buckets
        if most is not None and width > most:
            raise LimitExceeded(f"a live chart {width} px wide needs more buckets than the "
                                f"limit of {most}")
        bucket = max(1, int(window * 1e9 / width))
        self.sub = hub.subscribe(self.get_argument("channel", ""),
                                 _signals(self.get_argument("signals", "")),
                                 Decimation("minmax", 1, bucket),
                                 client=self.request.remote_ip or "unknown")
        # a browser that stopped reading: the frame stuck in its socket is given up on
        self.sub.on_stall = lambda why: self.close(1008, why[:120])

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        sub = self.sub
        assert sub is not None
        try:
            while True:
                u = await sub.next()
                # one frame at a time: a slow browser leaves updates in the subscription's
                # bounded queue, where the oldest go (counted as missed)
                await self.write_message(frame(u.columns, sub.channel,
                                               first_record=u.first_record,
                                               next_record=u.next_record, missed=u.missed),
                                         binary=True)
        except (tornado.websocket.WebSocketClosedError, asyncio.CancelledError):
            pass
        except SpeedDataError as e:              # the channel went away
            self.close(1011, str(e)[:120])

    def on_close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self._release()

    def _release(self) -> None:
        if self.sub is not None:
            self.sub.close()                     # frees the hub slot at once
            self.sub = None


class Overview(ApiHandler):
    """``GET /api/v1/channels/NAME/overview?start=&end=&buckets=&signals=``: per bucket of
    equal time width, each numeric signal's min, max, first and last (JSON; times in ms
    since the epoch, as charts use them; null where a bucket is empty). start and end are
    ns or ISO 8601; without them, what the channel holds."""

    async def get(self, name: str) -> None:
        start = self.get_argument("start", "")
        end = self.get_argument("end", "")
        buckets = whole_number(self.get_argument("buckets", "1200"), what="buckets", lo=1)
        lo = to_ns(start, what="start") if start else 0
        hi = to_ns(end, what="end") if end else None
        signals = _signals(self.get_argument("signals", ""))

        def read() -> Columns:
            return next(iter(self.service.query(name, lo, hi, signals, buckets=buckets)))

        cols = await asyncio.to_thread(read)
        out: dict[str, Any] = {"channel": name, "time": (cols.time / 1e6).tolist(),
                               "signals": {}}
        for key, values in cols.data.items():
            signal, _, agg = key.rpartition(":")
            if signal != "time" and agg in ("min", "max", "first", "last", "count"):
                v = np.asarray(values, dtype=np.float64)
                out["signals"].setdefault(signal, {})[agg] = \
                    [None if x != x else x for x in v.tolist()]
        self.send_json(out)


class Assets(JsonErrors, tornado.web.StaticFileHandler):
    """The page assets: scripts, styles and images of ``speeddata.web``, nothing else
    (Tornado keeps the path inside the folder)."""

    SERVED = (".js", ".css", ".png", ".svg", ".txt")

    def parse_url_path(self, url_path: str) -> str:
        # a NUL or control character is no file name, and os.path refuses it with an error
        if any(ord(c) < 32 for c in url_path):
            raise tornado.web.HTTPError(404, "no such asset")
        return super().parse_url_path(url_path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if not absolute_path.endswith(self.SERVED):
            raise tornado.web.HTTPError(404)
        return super().validate_absolute_path(root, absolute_path)


class Page(JsonErrors):
    """A page of ``speeddata.web``, or (``file``) one the config names."""

    def initialize(self, page: str = "", file: str = "") -> None:
        self.page = page
        self.file = file

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        if self.file:
            with open(self.file, "rb") as f:       # read at each request: edit and reload
                self.finish(f.read())
        else:
            self.finish((resources.files("speeddata.web") / self.page).read_bytes())


def make_app(service: Service, token: str | None = None,
             pages: dict[str, str] | None = None,
             hosts: Hosts | None = None) -> tornado.web.Application:
    """The whole web app: pages (with extra ones: URL path -> HTML file), assets, live
    feed, overviews and the REST API, every route behind the gate of `web_guard` (the
    host names it answers to: ``hosts``, by default those of a loopback server)."""
    assets = str(resources.files("speeddata.web"))
    kw = {"service": service, "token": token}
    routes: list = [(path, Page, {"page": page}) for path, page in PAGES.items()]
    routes += [(path, Page, {"file": file}) for path, file in (pages or {}).items()]
    routes += [(r"/ws/live", Live, kw),
               (r"/api/v1/channels/([A-Za-z0-9_.\-]+)/overview", Overview, kw)]
    routes += api_routes(service, token)
    routes += [(r"/static/(.*)", Assets, {"path": assets})]
    return GuardedApplication(routes, hosts=hosts or Hosts("127.0.0.1"),
                              body_limit=service.limits.request_bytes,
                              websocket_max_message_size=1 << 16,
                              private_paths=service.private_paths())
