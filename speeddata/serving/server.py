"""The ``speeddata serve`` process: the supervisor of the ingest workers, the live hub and
the gRPC service, on one asyncio event loop."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import ClusterConfig, ServeConfig
from ..errors import ConfigError
from ..live import Hub
from .limits import Limits
from ..ingest import Supervisor
from .service import Service

if TYPE_CHECKING:
    from ..cluster import Cluster

log = logging.getLogger("speeddata.server")


def parse_address(text: str, what: str) -> tuple[str, int]:
    """("host", port) from "host:port" or ":port"; ConfigError naming ``what``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what}: {text!r} is not HOST:PORT", hint="e.g. 127.0.0.1:50051")
    return host or "127.0.0.1", int(port)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _check_exposure(addresses: dict[str, str], token: str | None, insecure: bool) -> None:
    """Refuse to serve the control APIs beyond this machine without a token: anyone on the
    network could then register channels and delete data. ``--insecure`` allows it, loudly."""
    exposed = [f"{what} {address}" for what, address in addresses.items()
               if not _loopback(parse_address(address, what)[0])]
    if not exposed or token:
        return
    if not insecure:
        raise ConfigError(f"refusing to serve {', '.join(exposed)} beyond this machine "
                          "without a token: anyone who reaches it could change SpeedData",
                          hint="set token: in the config (or --token), bind to 127.0.0.1, "
                               "or pass --insecure if the network is yours alone")
    log.warning("INSECURE: serving %s without a token; anyone who reaches it can register "
                "and deregister channels, tag and delete data", ", ".join(exposed))


@dataclass
class Listening:
    """Where a running server can be reached."""
    grpc: str
    web: str                      # the URL
    channels: dict[str, str]      # name -> "udp host:port"
    node: str = ""                # its name in a cluster ("" alone)
    flight: str = ""              # the Arrow Flight location ("" when off)


class Server:
    """Everything ``speeddata serve`` runs, started and stopped on the current event loop."""

    def __init__(self, cfg: ServeConfig, *, data: str | None = None, grpc: str | None = None,
                 web: str | None = None, token: str | None = None, insecure: bool = False,
                 cluster: ClusterConfig | None = None, flight: str | None = None):
        self.cfg = cfg
        self.cluster_config = cluster or cfg.cluster
        self.data = data or cfg.data
        self.grpc_address = grpc or f"{cfg.grpc['bind']}:{cfg.grpc['port']}"
        parse_address(self.grpc_address, "--grpc")
        self.web_address = web or f"{cfg.web['bind']}:{cfg.web['port']}"
        parse_address(self.web_address, "--web")
        if flight and flight.isdigit():
            flight = f"127.0.0.1:{flight}"          # a port alone: loopback
        self.flight_address = flight or (f"{cfg.flight['bind']}:{cfg.flight['port']}"
                                         if cfg.flight else "")
        if self.flight_address:
            parse_address(self.flight_address, "--flight")
        self._http: Any = None
        self._flight: Any = None
        self.token = token if token is not None else cfg.token
        _check_exposure({"--grpc": self.grpc_address, "--web": self.web_address,
                         **({"--flight": self.flight_address} if self.flight_address else {})},
                        self.token, insecure)
        self.supervisor: Supervisor | None = None
        self.hub: Hub | None = None
        self.service: Service | None = None
        self.cluster: Cluster | None = None
        self._grpc = None
        self._redacting: logging.Filter | None = None

    async def start(self) -> Listening:
        from . import grpc_api
        from .web_guard import RedactingFilter
        loop = asyncio.get_running_loop()
        # no log line shows the token, nor a wrong guess of it in a URL
        self._redacting = RedactingFilter([self.token or ""])
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._redacting)
        sup = self.supervisor = await asyncio.to_thread(
            Supervisor, self.data, self.cfg.channels, self.cfg.store_options)
        try:
            sup.start()
            self.hub = Hub(sup, loop)
            self.service = Service(sup, self.hub, Limits(**self.cfg.limits))
            self.service.joining = self.cluster_config is not None
            self.hub.max_subscriptions = self.service.limits.subscriptions
            self.hub.max_per_client = self.service.limits.subscriptions_per_client
            self.hub.stall_after = self.service.limits.stall_seconds
            self._grpc, port = await grpc_api.start(self.service, self.grpc_address,
                                                       self.token)
            web_host, web_port = self._start_web()
            flight_at = ""
            if self.flight_address:
                from . import flight
                self._flight = await asyncio.to_thread(flight.start, self.service,
                                                       self.flight_address, self.token)
                flight_host = parse_address(self.flight_address, "--flight")[0]
                flight_at = f"grpc://{flight_host}:{self._flight.port}"
                log.info("Arrow Flight on %s", flight_at)
            if self.cluster_config is not None:
                await self._join(port, f"http://{web_host}:{web_port}/")
        except BaseException:
            await self.stop()
            raise
        host = self.grpc_address.rpartition(":")[0] or "127.0.0.1"
        return Listening(f"{host}:{port}", f"http://{web_host}:{web_port}/",
                         {n: f"udp {c.bind}:{c.port}" for n, c in sup.channels.items()},
                         self.cluster.node if self.cluster else "", flight_at)

    async def _join(self, grpc_port: int, web_url: str) -> None:
        """Become a node of the cluster: the registry, tags, live data and archives shared
        through NATS JetStream (`speeddata.cluster`)."""
        from ..cluster import Cluster
        cfg = self.cluster_config
        assert cfg is not None and self.supervisor and self.hub and self.service
        host = self.grpc_address.rpartition(":")[0] or "127.0.0.1"
        if cfg.advertise:
            host = cfg.advertise
        elif host in ("0.0.0.0", "::", "[::]", ""):
            host = socket.gethostname()
        self.cluster = Cluster(cfg, grpc=f"{host}:{grpc_port}", web=web_url, token=self.token)
        await self.cluster.start(self.supervisor, self.hub)
        self.service.cluster = self.cluster
        self.service.joining = False          # from now on the cluster says (UNAVAILABLE)
        self.hub.remote = self.cluster
        self.supervisor.tag_source = self.cluster.tags

    def _start_web(self) -> tuple[str, int]:
        from tornado.httpserver import HTTPServer
        from tornado.netutil import bind_sockets

        from .web_app import make_app
        from .web_guard import Hosts
        assert self.service is not None
        host, port = parse_address(self.web_address, "--web")
        try:
            sockets = bind_sockets(port, host)
        except OSError as e:
            raise ConfigError(f"cannot serve the web app on {host}:{port}: {e.strerror}",
                              hint="pick another --web HOST:PORT") from None
        limit = self.service.limits.request_bytes
        # tornado refuses a body past max_body_size by closing the connection: let it take
        # a little more, so that the API answers 413 with a message that names the limit
        hosts = Hosts(host, self.cfg.web.get("hosts", ()))
        self._http = HTTPServer(make_app(self.service, self.token, self.cfg.pages, hosts),
                                max_body_size=2 * limit + (64 << 10) if limit else None)
        self._http.add_sockets(sockets)
        log.info("web on http://%s:%d/", host, sockets[0].getsockname()[1])
        return host, sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Streams end, workers flush and stop."""
        if self._redacting is not None:
            for handler in logging.getLogger().handlers:
                handler.removeFilter(self._redacting)
        if self.cluster is not None:
            if self.supervisor is not None:
                self.supervisor.tag_source = None
            await self.cluster.stop()
            self.cluster = None
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()
            self._http = None
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
            self._grpc = None
        if self._flight is not None:
            await asyncio.to_thread(self._flight.shutdown)   # running streams end first
            self._flight = None
        if self.hub is not None:
            self.hub.close()
        if self.supervisor is not None:
            await asyncio.to_thread(self.supervisor.stop)
            self.supervisor = None
