"""A node of the cluster (`speeddata.cluster`, whose docstring names what the nodes share):
its heartbeat and registry, tags, reads routed to other nodes, and archives."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import nats
from nats.js.api import KeyValueConfig, ObjectStoreConfig
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError

from ..client import Client
from ..config import ClusterConfig
from ..errors import (ChannelExists, ChannelNotFound, ClusterUnavailable, ConfigError,
                     SpeedDataError, StoreError)
from ..schema import ChannelSchema
from ..store import Tag, load_stored, stored_avro
from ..timeutil import format_ns, now_ns
from .buckets import (ARCHIVES, CALL_TIMEOUT, CHANNELS, NODES, TAGS, RemoteChannel, _key,
                      delete_tag, fitting_replicas, put_object, kv_all, list_manifests, put_tag,
                      read_beats)
from .names import CLOCK_PROBE, forget, put_beat
from .watch import Watch, start_watches
from .relay import SILENT_BEATS, WANT, LiveRelay, _Lease, _Relay, _quietly, unreachable

if TYPE_CHECKING:
    from ..live import Hub
    from ..ingest import Supervisor

log = logging.getLogger("speeddata.cluster")

ROUTED_TIMEOUT = 10.0    # s for a call routed to another node (streams have none)


class Cluster(LiveRelay):
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
        self._watches = {NODES: Watch(NODES), CHANNELS: Watch(CHANNELS)}
        self._watching: asyncio.Task | None = None     # (re)starting them
        self.watched = False           # the last look was the watches' (not a read)
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
        self._deaf_at: float | None = None     # since when our beats fail (monotonic)
        self._schemas: dict[str, ChannelSchema] = {}
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self.replicas = cfg.replicas or 1     # what the buckets are made with (`_connect`)
        self._revision: int | None = None      # of our heartbeat entry: the name is ours
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
            if self.nc is not None:         # NATS answers: the node name is being claimed
                try:
                    await asyncio.wait_for(asyncio.shield(self._ready.wait()),
                                           SILENT_BEATS * self.cfg.heartbeat + 5)
                except asyncio.TimeoutError:
                    pass
        if not self._ready.is_set():
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
        if self._watching is not None:
            self._watching.cancel()
        for watch in self._watches.values():
            await watch.stop()
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
                self.problem, self._deaf_at = None, None
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
        if self._deaf_at is None:
            self._deaf_at = time.monotonic()
        if not self.problem or self.problem == "not connected yet":
            self.problem_since = now_ns()
            log.error("cluster unreachable (NATS %s): %s; storing locally, retention "
                      "paused", ", ".join(self.cfg.nats), text)
        self.problem = f"NATS unreachable since {format_ns(self.problem_since)}: {text}"

    async def _connect(self) -> None:

        async def quiet(e: Exception) -> None:
            log.debug("cluster: NATS: %s", e)

        nc = await nats.connect(servers=self.cfg.nats, name=f"speeddata-{self.node}",
                                connect_timeout=2, reconnect_time_wait=0.5,
                                max_reconnect_attempts=-1, allow_reconnect=True,
                                ping_interval=max(1, int(self.cfg.heartbeat)),
                                max_outstanding_pings=3, error_cb=quiet)
        try:
            self.replicas = fitting_replicas(nc, self.cfg.replicas)
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
                    cached = (None, self._entry(sup.store[name].schema))
                except (ChannelNotFound, StoreError):
                    continue                # damaged or dropped: it says so locally
            made[name] = cached
            out[name] = ("stored", cached[1])
        for name, cfg in running.items():
            try:
                status = sup.counters(name)["status"]
                cached = self._made.get(name)
                if cached is None or cached[0] is not cfg:
                    cached = (cfg, self._entry(sup.store[name].schema, cfg,
                                               sup.registry.get(name).created))
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
        await self._put_beat(json.dumps(beat).encode())
        await self._look()
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

    async def _put_beat(self, data: bytes) -> None:
        """Our heartbeat, written over our own only (`speeddata.cluster.names`)."""
        self._revision = await put_beat(self._kv[NODES], self._js, self.node, self.grpc,
                                        self.cfg.heartbeat, self._revision, data)

    async def _publish_entry(self, name: str, entry: dict) -> None:
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

    async def _look(self) -> None:
        """The registry and every node's last heartbeat, with ``at``: when the NATS server
        stored it (ns, the server's clock). Liveness compares these with the server's time
        of our own beat, so no two hosts' clocks are ever compared. They come from the
        watches while these show our own beat; else from the buckets, read now."""
        nodes, channels = self._watches[NODES], self._watches[CHANNELS]
        watched = (self._revision is not None and channels.synced and
                   await nodes.has(self.node, self._revision, min(1.0, self.cfg.heartbeat / 2)))
        if watched != self.watched and (watched or nodes.synced):
            log.info("cluster: %s", "following the nodes and the registry by KV watch" if
                     watched else "the KV watch is behind: reading the buckets each beat")
        self.watched = watched
        if watched:
            self.entries = channels.contents()
            found = [(key, dict(value), at) for key, (value, _, at) in nodes.values.items()]
        else:
            if self._watching is None or self._watching.done():  # begun again meanwhile
                self._watching = asyncio.create_task(start_watches(self._watches, self._kv))
            self.entries = await self._all(CHANNELS)
            found = await read_beats(self._js)
        out = {}
        for key, beat, at in found:
            if not key.startswith(CLOCK_PROBE) and "forgotten" not in beat:
                out[key] = dict(beat, at=at)   # not a clock probe or a node forgotten
        self.nodes = out
        own = out.get(self.node)
        if own is not None:
            self._server_now = (own["at"], time.monotonic())

    async def claim(self, name: str, entry: dict) -> None:
        """Take a channel name for this node, cluster-wide; ChannelExists naming the node
        that has it."""
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
        self.call(self.claim, cfg.name, self._entry(schema, cfg, now_ns()))

    def _entry(self, schema: ChannelSchema, cfg: Any = None, created: int = 0) -> dict:
        """A channel's entry in the registry (``cfg`` None: only stored data is left)."""
        return {"node": self.node, "port": cfg.port if cfg else 0,
                "bind": cfg.bind if cfg else "", "grpc": self.grpc,
                "schema": json.dumps(stored_avro(schema)), "created": created,
                "decimation": cfg.decimation if cfg else "none",
                "retention": dict(cfg.options) if cfg else {}}

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
        # and our monotonic clock since then: this host's wall clock plays no part. While
        # our own beats fail we hear nobody, so that clock stops: the others stay as last
        # heard (a JetStream election after a NATS server died silences every node at once)
        server_at, seen = self._server_now
        now = self._deaf_at if self._deaf_at is not None else time.monotonic()
        age = (server_at - int(beat.get("at", 0))) / 1e9 + (now - seen)
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

    def forget_node(self, node: str, unreachable_for: float = 0.0) -> list[str]:
        """From a request thread: release every channel of a node unreachable for at least
        ``unreachable_for`` s (`names.forget`); the channels released."""
        async def forget_it() -> list[str]:
            released = await forget(self._kv[NODES], self._kv[CHANNELS], self._js, node,
                                    by=self.node, heartbeat=self.cfg.heartbeat,
                                    unreachable_for=unreachable_for)
            self.nodes.pop(node, None)
            for name in released:
                self.entries.pop(name, None)
            return released
        return self.call(forget_it)

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
        return self.call(put_tag, self._kv[TAGS], tag, self.node, replace)

    def delete_tag(self, name: str) -> None:
        self.call(delete_tag, self._kv[TAGS], name)

    # ---- archives ------------------------------------------------------------------------

    def archive(self, tag: Tag, parts: dict[str, tuple[str, Iterator[bytes]]], *,
                missing: Sequence[str] = (), empty: Sequence[str] = ()) -> dict:
        """Store a tag's range of each channel (channel -> (its node, the Avro container
        file in pieces)), then the manifest (with ``missing`` and ``empty`` channels) last,
        so that an archive listed is an archive whole."""
        manifest: dict[str, Any] = {"tag": tag.as_dict(), "node": self.node,
                                    "created": now_ns(), "channels": [],
                                    "missing": list(missing), "empty": list(empty)}
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
        await put_object(self._objects, name, data, self.nc.max_payload)

    def archives(self) -> list[dict]:
        return self.call(list_manifests, self._js, self._objects, timeout=4 * CALL_TIMEOUT)


# ---- listing without consumers ---------------------------------------------------------------
# A KV listing or an object read through nats-py makes an ephemeral consumer. JetStream may
# place one on a server of the stream that is gone and time out: for a while after a NATS
# server dies, one request in three does. So keys are listed from the stream's own
# bookkeeping (stream info of its subjects, answered by the stream's leader), values read by
# direct get, and an object read (which needs a consumer) is tried again.
