"""The cluster seam: every call SpeedData makes to its distributed engine, NATS JetStream.

A node is one ``speeddata serve`` with ``cluster:`` in its config. Its own store stays the
primary copy of its channels and the cluster never sits on the ingest path: the workers
store every datagram whether NATS answers or not. What the nodes share lives in JetStream:

- KV ``speeddata-channels``: channel name -> its entry (owner node, UDP port, schema as
  stored, the owner's gRPC address). A name is claimed with KV create (compare-and-set), so
  of two nodes registering one name at once exactly one wins.
- KV ``speeddata-nodes``: node -> its heartbeat (addresses, its channels and their status),
  put every ``heartbeat`` seconds; a node silent for `SILENT_BEATS` is unreachable.
- KV ``speeddata-tags``: cluster tags; retention on every node keeps what they cover, and
  pauses while they cannot be read (when in doubt, keep).
- Object store ``speeddata-archives``: tagged ranges as stored (Avro object container files,
  any Avro reader opens them) plus a manifest, with ``replicas`` copies.
- Subjects ``speeddata.live.<channel>.<form>``: live batches of a channel in the columnar
  wire form (`speeddata.wire`), one subject per *form* (signals and decimation: an
  envelope, or full rate). An owner publishes a form only while some node leases it by
  sending ``speeddata.want.<channel>`` each heartbeat, so nothing is published that nobody
  watches, and each form is decimated once at the owner however many nodes watch it.

Stored data of another node's channel (queries, overviews, exports, archives) is read from
the owner's gRPC service at the address its heartbeat gives. Nothing else in SpeedData
imports NATS: another engine would replace this module alone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import tempfile
import time
import concurrent.futures
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from .columns import Columns
from .config import ClusterConfig
from .decimation import Decimation
from .errors import (ChannelExists, ChannelNotFound, ClusterUnavailable, ConfigError,
                     SpeedDataError,
                     StoreError, TagExists, TagNotFound, listing)
from .hub import Subscription, Update
from .pb_enums import AGGREGATE, DATA_TYPE
from .schema import ChannelSchema
from .store import Tag, load_stored, stored_avro
from .timeutil import format_ns, now_ns, to_ns

if TYPE_CHECKING:
    from .client import Client
    from .hub import Hub
    from .serve import Supervisor

log = logging.getLogger("speeddata.cluster")

CHANNELS = "speeddata-channels"
NODES = "speeddata-nodes"
TAGS = "speeddata-tags"
ARCHIVES = "speeddata-archives"
LIVE = "speeddata.live"
WANT = "speeddata.want"
SILENT_BEATS = 3          # heartbeats a node may miss before it is unreachable
CALL_TIMEOUT = 5.0        # s for one call to NATS from a request
ROUTED_TIMEOUT = 10.0    # s for a call routed to another node (streams have none)
LIVE_BYTES = 512 << 10    # a live message holds at most this much (NATS takes 1 MiB)


def _key(name: str) -> str:
    """A KV key or object name for any text (tag names may hold spaces)."""
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=") or "-"


@dataclass
class RemoteChannel:
    """A channel another node of the cluster receives and stores."""
    name: str
    node: str
    port: int
    bind: str
    grpc: str                 # where its stored data is read
    status: str               # the owner's word for it, or "unreachable"
    since: int                # unreachable: the owner's last heartbeat (ns); else 0
    schema: ChannelSchema
    created: int
    decimation: str = "none"
    retention: dict = field(default_factory=dict)


@dataclass
class _Lease:
    """A form of a local channel that another node watches: published until ``expires``."""
    expires: float
    sub: Subscription
    task: asyncio.Task


class _Relay:
    """One form of another node's channel, relayed from its subject to local subscriptions
    (gRPC Subscribe, WebSockets) that take it as they take a local channel's."""

    def __init__(self, cluster: "Cluster", channel: str, want: dict[str, Any], form: str):
        self.cluster = cluster
        self.channel = channel
        self.want = want
        self.form = form
        self.subs: set[Subscription] = set()
        self.next_record: int | None = None
        self.nats_sub: Any = None

    async def open(self) -> None:
        nc = self.cluster.nc
        self.nats_sub = await nc.subscribe(f"{LIVE}.{self.channel}.{self.form}",
                                           cb=self._on_batch, pending_bytes_limit=64 << 20)
        await self.ask()

    async def ask(self) -> None:
        """(Re)new the lease on this form at the owner."""
        await self.cluster.nc.publish(f"{WANT}.{self.channel}", json.dumps(self.want).encode())

    async def _on_batch(self, msg) -> None:
        from .client import batch_columns
        h = msg.headers or {}
        first, covered, missed = int(h.get("first", 0)), int(h.get("next", 0)), \
            int(h.get("missed", 0))
        if self.next_record is not None and first > self.next_record:
            missed += first - self.next_record       # lost between the nodes (slow, away)
        if self.next_record is not None and covered <= self.next_record and not missed:
            return                                   # a repeat
        cols = batch_columns(msg.data)
        update = Update(Columns(cols.time, cols.data, self.channel), first, covered, missed, {})
        self.next_record = max(self.next_record or 0, covered)
        for sub in list(self.subs):
            sub._enqueue(update)

    def remove(self, sub: Subscription) -> None:
        self.subs.discard(sub)
        if not self.subs:
            self.cluster._relays.pop((self.channel, self.form), None)
            if self.nats_sub is not None:
                asyncio.ensure_future(_quietly(self.nats_sub.unsubscribe()))

    def close(self, why: str, error: type[SpeedDataError] = ChannelNotFound) -> None:
        for sub in list(self.subs):
            sub._close(why, error)
        self.subs.clear()
        if self.nats_sub is not None:
            asyncio.ensure_future(_quietly(self.nats_sub.unsubscribe()))


class _Relayed(Subscription):
    """A subscription to another node's channel: fed by its `_Relay`."""

    def __init__(self, relay: _Relay, signals, decimation: Decimation, wake):
        super().__init__(relay.cluster.hub, relay.channel, signals, decimation,  # type: ignore[arg-type]
                         wake)
        self.relay = relay

    def close(self) -> None:
        self.relay.remove(self)
        self._released()


def unreachable(rc: RemoteChannel) -> str:
    """What a read of a dead owner's channel is told: "node 'a' (owner of 'rig') is
    unreachable since 10:30:38 UTC"."""
    return (f"node {rc.node!r} (owner of {rc.name!r}) is unreachable since "
            f"{format_ns(rc.since)[11:19]} UTC")


async def _quietly(coro: Awaitable) -> None:
    try:
        await coro
    except Exception:          # the connection went meanwhile: nothing left to undo
        pass


class Cluster:
    """This node's membership of a cluster, on the serve process's event loop.

    Requests call it from worker threads (``Service``); the methods that talk to NATS then
    run on the loop through `call`. What other nodes hold is cached from the heartbeats
    and refreshed each one, so listing never waits for NATS.
    """

    def __init__(self, cfg: ClusterConfig, *, grpc: str, web: str = "",
                 token: str | None = None):
        self.cfg = cfg
        self.node = cfg.node
        self.grpc = grpc
        self.web = web
        self.token = token
        self.loop: asyncio.AbstractEventLoop | None = None
        self.nc: Any = None
        self._kv: dict[str, Any] = {}
        self._objects: Any = None
        self._js: Any = None
        self._made: dict[str, tuple[Any, dict]] = {}  # channel -> (its config, its entry)
        self._seen: dict[str, tuple[int, dict]] = {}  # bucket -> (last sequence, contents)
        self.problem: str | None = "not connected yet"
        self.problem_since = now_ns()
        self.nodes: dict[str, dict] = {}           # node -> its last heartbeat
        self.entries: dict[str, dict] = {}         # channel -> its entry, whole cluster
        self.conflicts: dict[str, str] = {}        # local channels another node owns
        self.live_dropped = 0
        self.supervisor: Supervisor | None = None
        self.hub: Hub | None = None
        self._leases: dict[tuple[str, str], _Lease] = {}
        self._relays: dict[tuple[str, str], _Relay] = {}
        self._clients: dict[str, Client] = {}
        self._alive_before: set[str] = set()      # nodes beating at the last look
        # (the server's time of our last beat, ns; our monotonic time when we read it)
        self._server_now: tuple[int, float] | None = None
        self._schemas: dict[str, ChannelSchema] = {}
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self.replicas = cfg.replicas or 1     # what the buckets are made with (`_connect`)
        self.fatal: ConfigError | None = None  # a config the cluster refuses: serve stops

    # ---- life ----------------------------------------------------------------------------

    async def start(self, supervisor: "Supervisor", hub: "Hub", wait: float = 5.0) -> None:
        """Join: connect, then heartbeat until `stop`. A NATS that does not answer yet is
        no reason not to serve: the node stores and serves its own channels meanwhile and
        joins when NATS answers."""
        self.loop = asyncio.get_running_loop()
        self.supervisor, self.hub = supervisor, hub
        self._task = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(asyncio.shield(self._ready.wait()), wait)
        except asyncio.TimeoutError:
            log.warning("cluster: not joined yet: %s; storing locally, joining when NATS "
                        "answers", self.problem)
        if self.fatal is not None:
            await self.stop()
            raise self.fatal

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for lease in self._leases.values():
            lease.task.cancel()
            lease.sub.close()
        self._leases.clear()
        for relay in list(self._relays.values()):
            relay.close("the server is stopping")
        self._relays.clear()
        if self.nc is not None:
            try:
                # its last heartbeat stays: the others show its channels unreachable
                # since then, and its stored data is there again when it comes back
                await asyncio.wait_for(self.nc.close(), 2)
            except Exception:
                pass
            self.nc = None
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time()
        while True:
            next_beat += self.cfg.heartbeat
            try:
                if self.nc is None:
                    await self._connect()
                await self._beat()
                if self.problem:
                    log.info("cluster: node %s joined (NATS %s)", self.node,
                             self.nc.connected_url.netloc if self.nc.connected_url else "")
                self.problem = None
                self._ready.set()
            except asyncio.CancelledError:
                raise
            except ConfigError as e:              # waiting will not mend it
                self.fatal = e
                self._failed(e)
                self._ready.set()
                return
            except Exception as e:
                self._failed(e)
            # at a steady rate, however long a beat took (but never two at once)
            next_beat = max(next_beat, loop.time())
            await asyncio.sleep(next_beat - loop.time())

    def _failed(self, e: BaseException) -> None:
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if not self.problem or self.problem == "not connected yet":
            self.problem_since = now_ns()
            log.error("cluster unreachable (NATS %s): %s; storing locally, retention "
                      "paused", ", ".join(self.cfg.nats), text)
        self.problem = f"NATS unreachable since {format_ns(self.problem_since)}: {text}"

    async def _connect(self) -> None:
        import nats
        from nats.js.api import KeyValueConfig, ObjectStoreConfig
        from nats.js.errors import BucketNotFoundError

        async def quiet(e: Exception) -> None:
            log.debug("cluster: NATS: %s", e)

        nc = await nats.connect(servers=self.cfg.nats, name=f"speeddata-{self.node}",
                                connect_timeout=2, reconnect_time_wait=0.5,
                                max_reconnect_attempts=-1, allow_reconnect=True,
                                ping_interval=max(1, int(self.cfg.heartbeat)),
                                max_outstanding_pings=3, error_cb=quiet)
        try:
            self.replicas = self._fitting_replicas(nc)
            js = nc.jetstream(timeout=CALL_TIMEOUT)
            for bucket in (CHANNELS, NODES, TAGS):
                try:
                    self._kv[bucket] = await js.key_value(bucket)
                except BucketNotFoundError:
                    self._kv[bucket] = await self._create(js.create_key_value(
                        config=KeyValueConfig(bucket=bucket, history=1,
                                              replicas=self.replicas)), bucket)
            try:
                self._objects = await js.object_store(ARCHIVES)
            except BucketNotFoundError:
                self._objects = await self._create(js.create_object_store(
                    ARCHIVES, config=ObjectStoreConfig(replicas=self.replicas)), ARCHIVES)
            await nc.subscribe(f"{WANT}.>", cb=self._on_want)
            self._js = js
        except BaseException:
            await _quietly(nc.close())
            raise
        self.nc = nc
        self._ready.clear()

    def _fitting_replicas(self, nc: Any) -> int:
        """The copies of the buckets: ``replicas:`` as configured if the JetStream cluster
        met has that many servers (ConfigError otherwise), else min(3, its servers)."""
        # the server's INFO names its cluster and every member's client URL; nats-py
        # keeps it on the connection only
        info = getattr(nc, "_server_info", None) or {}
        servers = max(1, len(set(info.get("connect_urls") or ()))) if info.get("cluster") \
            else 1
        wanted = self.cfg.replicas
        if wanted is None:
            return min(3, servers)
        if wanted > servers:
            where = info.get("cluster") or "a single server, not clustered"
            raise ConfigError(f"cluster.replicas: {wanted} copies, but the JetStream cluster "
                              f"at {nc.connected_url.netloc if nc.connected_url else 'NATS'} "
                              f"({where}) has {servers} server{'s' if servers > 1 else ''}",
                              hint=f"set replicas: {servers} or fewer, or leave it out "
                                   f"(min(3, the servers))")
        return wanted

    async def _create(self, creating: Awaitable, bucket: str) -> Any:
        try:
            return await creating
        except Exception as e:
            raise ClusterUnavailable(
                f"cannot create the JetStream bucket {bucket} with {self.replicas} "
                f"replicas: {e}", hint="replicas: can be at most the number of NATS servers "
                "with JetStream") from None

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected and self.problem is None

    # ---- calls from request threads ------------------------------------------------------

    def call(self, make: Callable[..., Coroutine[Any, Any, Any]], *args: Any,
             timeout: float = CALL_TIMEOUT) -> Any:
        """Run a coroutine of this cluster on the loop and wait for it (from a thread);
        ClusterUnavailable when NATS is away or does not answer in time."""
        if self.nc is None or not self.nc.is_connected or not self._kv:
            raise ClusterUnavailable(f"the cluster cannot be reached: {self.problem or 'NATS is away'}",
                                     hint="the node stores its own channels meanwhile; "
                                          "try again when NATS is back")
        assert self.loop is not None
        future: concurrent.futures.Future = asyncio.run_coroutine_threadsafe(make(*args),
                                                                             self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise ClusterUnavailable(f"NATS did not answer in {timeout:g} s") from None
        except SpeedDataError:
            raise
        except Exception as e:
            raise ClusterUnavailable(f"the cluster failed the call: {type(e).__name__}: "
                                     f"{e}") from None

    # ---- heartbeat and registry ----------------------------------------------------------

    def _own_state(self) -> dict[str, tuple[str, dict]]:
        """Each local channel's status and cluster entry, those with only stored data left
        too (reads the store: in a thread)."""
        sup = self.supervisor
        assert sup is not None
        out = {}
        running = sup.channels
        # an entry is made once per channel config (it reads the registry and the schema),
        # so a beat costs a channel a look at its counters
        made: dict[str, tuple[Any, dict]] = {}
        for name in sup.store.channels:
            if name in running:
                continue
            cached = self._made.get(name)
            if cached is None or cached[0] is not None:
                try:
                    schema = json.dumps(stored_avro(sup.store[name].schema))
                except (ChannelNotFound, StoreError):
                    continue                # damaged or dropped: it says so locally
                cached = (None, {"node": self.node, "port": 0, "bind": "",
                                 "grpc": self.grpc, "schema": schema, "created": 0,
                                 "decimation": "none", "retention": {}})
            made[name] = cached
            out[name] = ("stored", cached[1])
        for name, cfg in running.items():
            try:
                status = sup.counters(name)["status"]
                cached = self._made.get(name)
                if cached is None or cached[0] is not cfg:
                    cached = (cfg, {"node": self.node, "port": cfg.port, "bind": cfg.bind,
                                    "grpc": self.grpc,
                                    "schema": json.dumps(stored_avro(sup.store[name].schema)),
                                    "created": sup.registry.get(name).created,
                                    "decimation": cfg.decimation,
                                    "retention": dict(cfg.options)})
            except (ChannelNotFound, StoreError):
                continue                    # removed meanwhile
            made[name] = cached
            out[name] = (status, cached[1])
        self._made = made
        return out

    async def _beat(self) -> None:
        own = await asyncio.to_thread(self._own_state)
        beat = {"node": self.node, "grpc": self.grpc, "web": self.web,
                "heartbeat": now_ns(), "channels": {n: s for n, (s, _) in own.items()}}
        await self._kv[NODES].put(self.node, json.dumps(beat).encode())
        self.entries = await self._all(CHANNELS)
        self.nodes = await self._beats()
        self._forget_clients_of_returned_nodes()
        for name, (_, entry) in own.items():
            await self._publish_entry(name, entry)
        for name, entry in list(self.entries.items()):
            if entry.get("node") == self.node and name not in own:
                await self._kv[CHANNELS].delete(name)       # deregistered while away
                self.entries.pop(name, None)
        now = time.monotonic()
        for key, lease in list(self._leases.items()):
            if lease.expires < now or lease.task.done():
                self._end_lease(key)
        for (channel, form), relay in list(self._relays.items()):
            gone = self._owner_gone(channel)
            if gone:                     # its subscribers end, told why, rather than wait
                self._relays.pop((channel, form), None)
                relay.close(gone, ClusterUnavailable)
            else:
                await relay.ask()

    async def _publish_entry(self, name: str, entry: dict) -> None:
        from nats.js.errors import KeyWrongLastSequenceError
        held = self.entries.get(name)
        if held == entry:
            return
        kv = self._kv[CHANNELS]
        if held is None:
            try:
                await kv.create(name, json.dumps(entry).encode())
                self.entries[name] = entry
                self.conflicts.pop(name, None)
                return
            except KeyWrongLastSequenceError:
                got = await kv.get(name)
                held = json.loads(got.value)
                self.entries[name] = held
        if held.get("node") == self.node:
            await kv.put(name, json.dumps(entry).encode())
            self.entries[name] = entry
        elif name not in self.conflicts:
            self.conflicts[name] = held.get("node", "?")
            log.error("cluster: channel %r is registered on node %s too; this node stores "
                      "it but does not offer it to the cluster", name, held.get("node"))

    async def _all(self, bucket: str) -> dict[str, dict]:
        """A bucket's contents, read again only when it changed since the last beat."""
        info = await self._js.stream_info(f"KV_{bucket}")
        seen = self._seen.get(bucket)
        if seen is not None and seen[0] == info.state.last_seq:
            return dict(seen[1])
        found = await kv_all(self._js, self._kv[bucket], bucket)
        self._seen[bucket] = (info.state.last_seq, found)
        return dict(found)

    async def _beats(self) -> dict[str, dict]:
        """Every node's last heartbeat, with ``at``: when the NATS server stored it (ns, the
        server's clock). Liveness compares these with the server's time of our own beat,
        so no two hosts' clocks are ever compared."""
        from nats.js.errors import NotFoundError
        stream = f"KV_{NODES}"
        info = await self._js.stream_info(stream, subjects_filter=f"$KV.{NODES}.>")
        out = {}
        for subject in (info.state.subjects or {}):
            try:
                msg = await self._js.get_last_msg(stream, subject)
            except NotFoundError:
                continue
            if not msg.data:
                continue                          # a tombstone
            beat = json.loads(msg.data)
            beat["at"] = to_ns(msg.time) if msg.time is not None else 0
            out[subject[len(f"$KV.{NODES}."):]] = beat
        own = out.get(self.node)
        if own is not None:
            self._server_now = (own["at"], time.monotonic())
        return out

    async def claim(self, name: str, entry: dict) -> None:
        """Take a channel name for this node, cluster-wide; ChannelExists naming the node
        that has it."""
        from nats.js.errors import KeyWrongLastSequenceError
        try:
            await self._kv[CHANNELS].create(name, json.dumps(entry).encode())
        except KeyWrongLastSequenceError:
            got = json.loads((await self._kv[CHANNELS].get(name)).value)
            local = self.supervisor.channels if self.supervisor else {}
            if got.get("node") == self.node and name not in local:
                await self._kv[CHANNELS].put(name, json.dumps(entry).encode())
            else:
                raise ChannelExists(f"channel {name!r} is registered on node "
                                    f"{got.get('node')!r} of the cluster (port "
                                    f"{got.get('port')})", hint="pick another name") from None
        self.entries[name] = entry

    def claim_channel(self, cfg, schema: ChannelSchema) -> None:
        """From a request thread: the name, before the channel is started here."""
        entry = {"node": self.node, "port": cfg.port, "bind": cfg.bind, "grpc": self.grpc,
                 "schema": json.dumps(stored_avro(schema)), "created": now_ns(),
                 "decimation": cfg.decimation, "retention": dict(cfg.options)}
        self.call(self.claim, cfg.name, entry)

    def release_soon(self, name: str) -> None:
        """Give a name back (from any thread; the next heartbeat does it otherwise)."""
        async def release() -> None:
            entry = self.entries.get(name)
            if entry and entry.get("node") == self.node and self.nc and self.nc.is_connected:
                await self._kv[CHANNELS].delete(name)
                self.entries.pop(name, None)
        if self.loop is not None:
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_quietly(release())))

    def release_now(self, name: str) -> None:
        """From a request thread: give a name back at once (a start that failed)."""
        async def release() -> None:
            await self._kv[CHANNELS].delete(name)
            self.entries.pop(name, None)
        try:
            self.call(release)
        except ClusterUnavailable:
            pass                      # the next heartbeat removes it

    def _schema(self, entry: dict) -> ChannelSchema:
        text = entry["schema"]
        cs = self._schemas.get(text)
        if cs is None:
            cs = self._schemas[text] = load_stored(json.loads(text))
        return cs

    def _alive(self, node: str) -> tuple[bool, dict | None]:
        beat = self.nodes.get(node)
        if beat is None or self._server_now is None:
            return False, beat
        # how long ago the server took its beat, by the server's clock at our own last beat,
        # and our monotonic clock since then: this host's wall clock plays no part
        server_at, seen = self._server_now
        age = (server_at - int(beat.get("at", 0))) / 1e9 + (time.monotonic() - seen)
        # a second or two of slack: a busy node's beat may come late without being gone
        return age < SILENT_BEATS * self.cfg.heartbeat + 2.0, beat

    def remote(self) -> dict[str, RemoteChannel]:
        """The channels other nodes own, as last heard."""
        out = {}
        local = self.supervisor.channels if self.supervisor else {}
        for name, e in self.entries.items():
            if e.get("node") == self.node or name in local:
                continue
            alive, beat = self._alive(e["node"])
            status = (beat or {}).get("channels", {}).get(name, "starting") if alive \
                else "unreachable"
            since = 0 if alive else int((beat or {}).get("at", e.get("created", 0)))
            out[name] = RemoteChannel(
                name, e["node"], int(e.get("port", 0)), e.get("bind", ""),
                (beat or {}).get("grpc", e.get("grpc", "")), status, since, self._schema(e),
                int(e.get("created", 0)), e.get("decimation", "none"),
                dict(e.get("retention") or {}))
        return out

    def remote_channel(self, name: str) -> RemoteChannel | None:
        return self.remote().get(name)

    def _forget_clients_of_returned_nodes(self) -> None:
        """A node beating again after silence gets a new gRPC client: the old one's channel
        would still wait out its reconnect back-off (tens of seconds) before trying it."""
        alive = {name for name in self.nodes if self._alive(name)[0]}
        for name in alive - self._alive_before:
            grpc_address = self.nodes[name].get("grpc", "")
            client = self._clients.pop(grpc_address, None)
            if client is not None:
                client.close()
        self._alive_before = alive

    def _owner_gone(self, channel: str) -> str:
        """Why another node's channel cannot be followed now ('' while its owner beats)."""
        rc = self.remote_channel(channel)
        if rc is None or rc.status != "unreachable":
            return ""
        return unreachable(rc)

    def info(self) -> dict[str, Any]:
        """What GetCluster and ``/api/v1/cluster`` say."""
        nodes = []
        for name, beat in sorted(self.nodes.items()):
            alive, _ = self._alive(name)
            nodes.append({"name": name, "grpc": beat.get("grpc", ""), "web": beat.get("web", ""),
                          "heartbeat": int(beat.get("at", 0)), "reachable": alive,
                          "channels": sorted(beat.get("channels", {}))})
        problem = self.problem or ("" if self.connected else
                                   "the connection to NATS was lost; reconnecting")
        return {"clustered": True, "node": self.node, "nats": list(self.cfg.nats),
                "connected": self.connected, "problem": problem,
                "nodes": nodes, "live_dropped": self.live_dropped,
                "conflicts": dict(self.conflicts)}

    # ---- reading another node ------------------------------------------------------------

    def client(self, name: str) -> "Client":
        """A gRPC client of the node that owns a channel; ChannelNotFound when no node does."""
        from .client import Client
        rc = self.remote_channel(name)
        if rc is None:
            raise ChannelNotFound(f"no channel {name!r} in the cluster")
        # while this node hears the cluster, a node silent for three beats is gone: say so
        # at once, naming it. Deaf ourselves, we cannot tell: ask it (NATS, not it, may be
        # away); if it is gone too, the call fails with UNAVAILABLE.
        if rc.status == "unreachable" and self.connected:
            raise ClusterUnavailable(unreachable(rc))
        client = self._clients.get(rc.grpc)
        if client is None:
            client = self._clients[rc.grpc] = Client(rc.grpc, token=self.token,
                                                      timeout=ROUTED_TIMEOUT)
        return client

    # ---- tags ----------------------------------------------------------------------------

    async def _tags(self) -> list[Tag]:
        return sorted((Tag.from_dict(d) for d in (await self._all(TAGS)).values()),
                      key=lambda t: (t.start, t.name))

    def tags(self) -> list[Tag]:
        """The cluster's tags, read now; ClusterUnavailable when they cannot be."""
        return self.call(self._tags)

    def put_tag(self, tag: Tag, replace: bool = False) -> Tag:
        async def put() -> Tag:
            from nats.js.errors import KeyWrongLastSequenceError
            value = json.dumps(dict(tag.as_dict(), node=self.node)).encode()
            kv = self._kv[TAGS]
            if replace:
                await kv.put(_key(tag.name), value)
                return tag
            try:
                await kv.create(_key(tag.name), value)
            except KeyWrongLastSequenceError:
                old = Tag.from_dict(json.loads((await kv.get(_key(tag.name))).value))
                raise TagExists(f"a cluster tag {tag.name!r} exists already: {old}",
                                hint="pick another name, or replace it") from None
            return tag
        return self.call(put)

    def delete_tag(self, name: str) -> None:
        async def delete() -> None:
            from nats.js.errors import KeyNotFoundError
            kv = self._kv[TAGS]
            try:
                await kv.get(_key(name))
            except KeyNotFoundError:
                raise TagNotFound(f"no tag {name!r} in the cluster") from None
            await kv.delete(_key(name))
        self.call(delete)

    # ---- live ----------------------------------------------------------------------------

    @staticmethod
    def _want(channel: str, signals: Sequence[str] | None, d: Decimation) -> tuple[dict, str]:
        want: dict[str, Any] = {"channel": channel,
                                "signals": list(signals) if signals else None,
                "decimation": {"kind": d.kind, "factor": d.factor, "bucket_ns": d.bucket_ns}}
        form = hashlib.sha1(json.dumps([want["signals"], want["decimation"]]).encode())
        want["form"] = form.hexdigest()[:16]
        return want, want["form"]

    def subscribe(self, channel: str, signals: Sequence[str] | None, decimation: Decimation,
                  wake: asyncio.Event | None = None) -> Subscription:
        """Follow another node's channel (from the loop's thread), as `Hub.subscribe` does
        a local one. Its records are numbered as on the owner."""
        rc = self.remote_channel(channel)
        if rc is None:
            raise ChannelNotFound(f"no channel {channel!r} in the cluster")
        for s in signals or ():
            rc.schema.signal(s)                  # SchemaError naming it
        if self.nc is None or not self.nc.is_connected:
            raise ClusterUnavailable(f"channel {channel!r} is on node {rc.node!r} and the "
                                     f"cluster cannot be reached: {self.problem}")
        if rc.status == "unreachable":
            raise ClusterUnavailable(unreachable(rc), hint="its data comes back when the node "
                                     "does; Query reads nothing from it meanwhile either")
        want, form = self._want(channel, signals, decimation)
        relay = self._relays.get((channel, form))
        if relay is None:
            relay = self._relays[(channel, form)] = _Relay(self, channel, want, form)
            asyncio.ensure_future(_quietly(relay.open()))
        sub = _Relayed(relay, signals, decimation, wake)
        relay.subs.add(sub)
        return sub

    async def _on_want(self, msg) -> None:
        """Another node leases a form of one of our channels."""
        try:
            want = json.loads(msg.data)
            channel, form = want["channel"], want["form"]
            d = want["decimation"]
            decimation = Decimation(d["kind"], int(d["factor"]), int(d["bucket_ns"]))
        except (ValueError, KeyError, TypeError):
            return                                   # not ours to answer
        sup = self.supervisor
        if sup is None or channel not in sup.channels or self.hub is None:
            return
        expires = time.monotonic() + SILENT_BEATS * self.cfg.heartbeat + 1.0
        lease = self._leases.get((channel, form))
        if lease is not None and not lease.task.done():
            lease.expires = expires
            return
        try:
            sub = self.hub.subscribe(channel, want.get("signals"), decimation)
        except SpeedDataError as e:
            log.warning("cluster: cannot publish %s as asked: %s", channel, e)
            return
        task = asyncio.create_task(self._publish(channel, form, sub))
        self._leases[(channel, form)] = _Lease(expires, sub, task)

    async def _publish(self, channel: str, form: str, sub: Subscription) -> None:
        from . import wire
        subject = f"{LIVE}.{channel}.{form}"
        while True:
            try:
                u = await sub.next()
            except SpeedDataError:
                return                               # the channel went away
            pieces = wire.split(u.columns, 1 << 30, LIVE_BYTES) if len(u.columns) else \
                [u.columns]
            for k, piece in enumerate(pieces):
                last = k == len(pieces) - 1
                headers = {"first": str(u.first_record),
                           "next": str(u.next_record if last else u.first_record),
                           "missed": str(u.missed if k == 0 else 0)}
                if self.nc is None or not self.nc.is_connected:
                    self.live_dropped += 1           # never wait for NATS: drop and count
                    continue
                data = b"".join(bytes(p) for p in wire.batch_message(piece, channel,
                                                                      AGGREGATE, DATA_TYPE))
                try:
                    await self.nc.publish(subject, data, headers=headers)
                except Exception:
                    self.live_dropped += 1

    def _end_lease(self, key: tuple[str, str]) -> None:
        lease = self._leases.pop(key)
        lease.task.cancel()
        lease.sub.close()

    # ---- archives ------------------------------------------------------------------------

    def archive(self, tag: Tag, parts: dict[str, tuple[str, Iterator[bytes]]]) -> dict:
        """Store a tag's range of each channel (channel -> (node it is read from, the Avro
        container file's bytes in pieces)) in the object store, then its manifest; the
        manifest is written last, so an archive listed is an archive whole."""
        manifest: dict[str, Any] = {"tag": tag.as_dict(), "node": self.node,
                                    "created": now_ns(), "channels": []}
        for channel, (node, pieces) in parts.items():
            with tempfile.TemporaryFile() as f:
                for piece in pieces:
                    f.write(piece)
                size = f.tell()
                f.seek(0)
                self.call(self._put, f"{_key(tag.name)}/{channel}.avro", f,
                          timeout=CALL_TIMEOUT + size / 5e6)
            manifest["channels"].append({"channel": channel, "bytes": size, "node": node})
        self.call(self._put, f"{_key(tag.name)}/manifest.json",
                  json.dumps(manifest).encode())
        log.info("cluster: archived tag %s (%d channels, %d bytes)", tag.name,
                 len(parts), sum(c["bytes"] for c in manifest["channels"]))
        return manifest

    async def _put(self, name: str, data: bytes | BinaryIO) -> None:
        await self._objects.put(name, data)

    def archives(self) -> list[dict]:
        return self.call(list_manifests, self._js, self._objects, timeout=4 * CALL_TIMEOUT)


# ---- listing without consumers ---------------------------------------------------------------
# A KV listing or an object read through nats-py makes an ephemeral consumer. JetStream may
# place one on a server of the stream that is gone and time out: for a while after a NATS
# server dies, one request in three does. So keys are listed from the stream's own
# bookkeeping (stream info of its subjects, answered by the stream's leader), values read by
# direct get, and an object read (which needs a consumer) is tried again.

async def kv_all(js, kv, bucket: str) -> dict[str, dict]:
    """Every live key of a KV bucket and its JSON value."""
    from nats.js.errors import KeyNotFoundError
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.>")
    prefix = f"$KV.{bucket}."
    out = {}
    for subject in (info.state.subjects or {}):
        key = subject[len(prefix):]
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue                      # deleted (its tombstone is the last message)
        if entry.value:
            out[key] = json.loads(entry.value)
    return out


async def _read(objects, name: str, writeinto: Any = None, tries: int = 8) -> Any:
    """An object (its data, or written into a file), tried again where JetStream times
    out."""
    from nats.errors import TimeoutError as NatsTimeout
    for attempt in range(tries):
        try:
            if writeinto is not None:
                writeinto.seek(0)
                writeinto.truncate()
            return await objects.get(name, writeinto=writeinto)
        except NatsTimeout:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0.2)


async def list_manifests(js, objects) -> list[dict]:
    """The manifests of the archives in the object store, oldest range first."""
    from nats.js.errors import NotFoundError
    info = await js.stream_info(f"OBJ_{ARCHIVES}", subjects_filter=f"$O.{ARCHIVES}.M.>")
    out = []
    for subject in (info.state.subjects or {}):
        encoded = subject.rsplit(".", 1)[1]
        name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        if not name.endswith("/manifest.json"):
            continue
        try:
            out.append(json.loads((await _read(objects, name)).data))
        except NotFoundError:
            continue                      # deleted
    return sorted(out, key=lambda m: (m["tag"]["start"], m["tag"]["name"]))


async def _open_archives(urls: Sequence[str]):
    import nats
    from nats.js.errors import BucketNotFoundError
    try:
        nc = await nats.connect(servers=list(urls), connect_timeout=3,
                                max_reconnect_attempts=2, reconnect_time_wait=0.5)
    except Exception as e:
        raise ClusterUnavailable(f"cannot reach NATS at {', '.join(urls)}: {e}") from None
    try:
        js = nc.jetstream(timeout=CALL_TIMEOUT)
        return nc, js, await js.object_store(ARCHIVES)
    except BucketNotFoundError:
        await nc.close()
        raise TagNotFound("the cluster holds no archives yet") from None


def _retrying(make: Callable[[], Coroutine[Any, Any, Any]], what: str,
              deadline: float = 30.0) -> Any:
    """Run ``make()`` until it succeeds: a JetStream that just lost a server answers with
    time-outs for the seconds its streams take to elect new leaders."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import ServiceUnavailableError
    until = time.monotonic() + deadline
    while True:
        try:
            return asyncio.run(make())
        except (NatsTimeout, ServiceUnavailableError, asyncio.TimeoutError) as e:
            if time.monotonic() > until:
                raise ClusterUnavailable(f"NATS did not answer {what} in {deadline:g} s: "
                                         f"{type(e).__name__}") from None
            log.info("cluster: %s: %s; trying again", what, type(e).__name__)
            time.sleep(0.5)


def archives(urls: Sequence[str]) -> list[dict]:
    """The archives of the cluster that NATS at ``urls`` serves (manifests)."""
    async def run() -> list[dict]:
        nc, js, objects = await _open_archives(urls)
        try:
            return await list_manifests(js, objects)
        finally:
            await nc.close()
    return _retrying(run, "the list of archives")


def fetch_archive(urls: Sequence[str], tag: str, into: str) -> dict:
    """Download an archive's files into the folder ``into``: ``<channel>.avro`` each, and
    its manifest (returned)."""
    from nats.js.errors import NotFoundError

    async def run() -> dict:
        nc, js, objects = await _open_archives(urls)
        try:
            try:
                manifest = json.loads((await _read(objects, f"{_key(tag)}/manifest.json")).data)
            except NotFoundError:
                names = [m["tag"]["name"] for m in await list_manifests(js, objects)]
                raise TagNotFound(f"no archive of tag {tag!r}",
                                  hint="archives are: " + listing(names)) from None
            for c in manifest["channels"]:
                with open(os.path.join(into, f"{c['channel']}.avro"), "w+b") as f:
                    await _read(objects, f"{_key(tag)}/{c['channel']}.avro", writeinto=f)
            return manifest
        finally:
            await nc.close()
    return _retrying(run, f"archive {tag!r}")


def restore_into(store, manifest: dict, folder: str) -> dict[str, int]:
    """Append an archive's records (those inside its tag's range) to a store, creating its
    channels; returns the records restored per channel. A channel that already holds
    records of that range is refused (StoreError) before anything is written, so a restore
    never doubles data."""
    tag = Tag.from_dict(manifest["tag"])
    names = [c["channel"] for c in manifest["channels"]]
    for name in names:
        if name in store and store[name].count(tag.start, tag.end):
            raise StoreError(f"channel {name!r} of {store.path} already holds "
                             f"{store[name].count(tag.start, tag.end)} records of tag "
                             f"{tag}", hint="restore into another store (--data DIR)")
    return {name: store.import_avro(name, os.path.join(folder, f"{name}.avro"), tag.start,
                                    tag.end) for name in names}
