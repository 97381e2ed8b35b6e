"""What the serve process offers, whatever the transport: gRPC (`speeddata.serving.grpc_api`) and
the web's REST API call these, so both check and answer alike.

Every method raises SpeedData errors; `speeddata.errors.status_of` maps them to gRPC codes
and HTTP statuses. Methods that touch the disk or start processes block: call them from a
worker thread on the event loop (``asyncio.to_thread``). Subscriptions go through the live
hub (`speeddata.live.hub`), from the loop's thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any


from .. import config as config_mod
from ..columns import Columns
from ..codec import empty
from ..decimation import Decimation, Decimator, decimated_empty
from ..errors import (ChannelExists, ChannelNotFound, ClusterUnavailable, LimitExceeded,
                     RequestError, SchemaError, StoreError, TagExists, TagNotFound,
                     TimeRangeError, listing)
from .exports import Exports, RemoteReader
from ..live import Hub
from .limits import Limits
from ..schema import ChannelSchema, load_avro
from ..ingest import Supervisor
from ..stats import ChannelStats
from ..store import Tag, check_name, stored_avro

if TYPE_CHECKING:
    from ..cluster import Cluster, RemoteChannel

STATUSES = ("running", "starting", "failed", "stored", "unreachable")


@dataclass
class ServedStats:
    """A channel's counters and holdings, and what the live hub serves of it."""
    stats: ChannelStats
    horizon_s: float              # how far back the store holds it
    subscribers: int              # live streams following it now
    live_stalled: int             # live streams dropped for not reading


@dataclass
class ChannelInfo:
    """A channel as the APIs describe it."""
    name: str
    status: str                    # one of STATUSES
    schema: ChannelSchema = field(repr=False)
    port: int = 0
    bind: str = ""
    failure: str = ""
    source: str = "store"          # config, api, or store (only stored data left)
    decimation: str = "none"
    retention: dict = field(default_factory=dict)
    created: int = 0
    node: str = ""                 # the cluster node that owns it ("" on a single host)
    since: int = 0                 # unreachable: the owner's last heartbeat, ns


class Service:
    """The operations of a serving SpeedData: channels, live data, queries, tags, export."""

    def __init__(self, supervisor: Supervisor, hub: Hub | None = None,
                 limits: Limits | None = None):
        self.supervisor = supervisor
        self.store = supervisor.store
        self.registry = supervisor.registry
        self.hub = hub
        self.limits = limits or Limits()
        # the cluster this node belongs to (`speeddata.cluster`); None on a single host
        self.cluster: Cluster | None = None
        # configured for a cluster, not joined yet: a name claimed now would be local only
        self.joining = False
        self.exports = Exports(self.store, self.limits)

    def _remote(self, name: str) -> "RemoteChannel | None":
        """Another node's channel of that name (never one this node has locally)."""
        if self.cluster is None or name in self.supervisor.channels or name in self.store:
            return None
        return self.cluster.remote_channel(name)

    # ---- channels ------------------------------------------------------------------------

    def register_channel(self, item: dict[str, Any]) -> ChannelInfo:
        """Register a channel given as a config-file entry; its schema is Avro JSON text or
        a dict, never a path on this machine."""
        schema = item.get("schema")
        if isinstance(schema, str):
            limit = self.limits.schema_bytes
            if limit is not None and len(schema.encode()) > limit:
                raise LimitExceeded(f"the schema is {len(schema.encode())} bytes, more than "
                                    f"the limit of {limit}")
            try:
                item = dict(item, schema=json.loads(schema))
            except (ValueError, RecursionError) as e:
                raise SchemaError(f"the schema is not JSON text: {e}",
                                  hint="send the Avro schema itself, not a file name") from None
        if not isinstance(item.get("schema"), dict):
            raise SchemaError("a channel needs an Avro schema (a JSON object)")
        self.check_schema_size(item["schema"], schema if isinstance(schema, str) else None)
        cfg = config_mod.channel(item, "", bind=item.get("bind") or "127.0.0.1")
        load_avro(cfg.schema)
        if self.joining:
            raise ClusterUnavailable("this node has not joined its cluster yet, and a name "
                                     "must be unique cluster-wide",
                                     hint="try again in a moment")
        if self.cluster is None:
            self.supervisor.add_channel(cfg)
            return self.channel(cfg.name)
        from ..schema import load
        if cfg.name in self.supervisor.channels:
            raise ChannelExists(f"channel {cfg.name!r} is registered already (port "
                                f"{self.supervisor.channels[cfg.name].port})",
                                hint="deregister it first, or pick a new name")
        self.cluster.claim_channel(cfg, load(cfg.schema, time_field=cfg.time_field,
                                             time_unit=cfg.time_unit))
        try:
            self.supervisor.add_channel(cfg)
        except BaseException:
            self.cluster.release_now(cfg.name)
            raise
        return self.channel(cfg.name)

    def check_schema_size(self, schema: Any, text: str | None = None) -> None:
        """LimitExceeded for a schema larger than the limits (text, nesting, signals),
        before anything parses it further."""
        lim = self.limits
        size = len(text.encode()) if text is not None else len(json.dumps(schema))
        if lim.schema_bytes is not None and size > lim.schema_bytes:
            raise LimitExceeded(f"the schema is {size} bytes, more than the limit of "
                                f"{lim.schema_bytes}")
        depth, leaves = _shape(schema)
        if lim.schema_depth is not None and depth > lim.schema_depth:
            raise LimitExceeded(f"the schema nests {depth} deep, more than the limit of "
                                f"{lim.schema_depth}")
        if lim.schema_fields is not None and leaves > lim.schema_fields:
            raise LimitExceeded(f"the schema has {leaves} fields, more than the limit of "
                                f"{lim.schema_fields}")

    def deregister_channel(self, name: str) -> None:
        """Stop and forget a channel (the data stays). Another node's channel is
        deregistered there: call this from a thread then, as it waits for that node."""
        remote = self._remote(name)
        if remote is not None:
            self.cluster.client(name).deregister_channel(name)  # type: ignore[union-attr]
            return
        if self.hub is not None:
            self.hub.drop(name)
        self.supervisor.remove_channel(name)
        if self.cluster is not None:
            self.cluster.release_soon(name)

    def private_paths(self) -> list[str]:
        """The server's own paths, which errors sent to callers leave out
        (`speeddata.errors.public_message`)."""
        return sorted({self.store.path, os.path.abspath(self.store.path),
                       os.path.realpath(self.store.path)}, key=len, reverse=True)

    def is_remote(self, name: str) -> bool:
        """Whether another node of the cluster owns the channel."""
        return self._remote(name) is not None

    def delete_channel_data(self, name: str) -> None:
        if self._remote(name) is not None:
            self.cluster.client(name).delete_channel_data(name)  # type: ignore[union-attr]
            return
        if name in self.supervisor.channels:
            raise StoreError(f"channel {name!r} is registered; deregister it before deleting "
                             "its data", hint="DeregisterChannel first")
        if name not in self.store:
            raise ChannelNotFound(f"no channel {name!r} in the store")
        self.store.drop_channel(name)

    def channels(self, status: str | None = None) -> list[ChannelInfo]:
        """Registered channels and channels with only stored data, by name."""
        names = set(self.supervisor.channels) | set(self.store.channels)
        remote = self.cluster.remote() if self.cluster is not None else {}
        out = []
        for name in sorted(names | set(remote)):
            if name not in names:
                info = _remote_info(remote[name])
                if status in (None, "", info.status):
                    out.append(info)
                continue
            try:
                info = self.channel(name)
            except (ChannelNotFound, StoreError):
                continue                            # dropped meanwhile, or unreadable
            if status in (None, "", info.status):
                out.append(info)
        return out

    def channel(self, name: str) -> ChannelInfo:
        remote = self._remote(name)
        if remote is not None:
            return _remote_info(remote)
        node = self.cluster.node if self.cluster is not None else ""
        running = self.supervisor.channels
        if name in running:
            cfg = running[name]
            counters = self.supervisor.counters(name)
            try:
                registered = self.registry.get(name)
                source, created = registered.source, registered.created
            except ChannelNotFound:
                source, created = "api", 0
            return ChannelInfo(name, counters["status"], self.store[name].schema, cfg.port,
                               cfg.bind, counters["failure"], source, cfg.decimation,
                               dict(cfg.options), created, node)
        if name not in self.store:
            raise ChannelNotFound(f"no channel {name!r}", hint="channels are: " + listing(
                sorted(set(running) | set(self.store.channels))))
        ch = self.store[name]
        return ChannelInfo(name, "stored", ch.schema, retention=dict(ch.options), node=node)

    def schema_json(self, name: str) -> str:
        """The channel's Avro schema as stored (with its time field) as JSON text."""
        return json.dumps(stored_avro(self.channel(name).schema))

    def available_ports(self, limit: int = 0) -> list[int]:
        ports = self.registry.available_ports()
        return ports[:limit] if limit else ports

    def stats(self, names: Sequence[str] = ()) -> list[tuple[ChannelStats, float]]:
        """Each channel's ChannelStats and how far back the store holds it (s)."""
        out = []
        for info in ([self.channel(n) for n in names] if names else self.channels()):
            if info.node and self._remote(info.name) is not None:
                out.append(self._remote_stats(info))
                continue
            if info.status == "stored":
                st = self.store[info.name].stats()
                st.status = "stored"
            else:
                st = self.supervisor.stats(info.name)
            out.append((st, self.store.horizon(info.name)))
        return out

    def served_stats(self, names: Sequence[str] = ()) -> list[ServedStats]:
        """`stats`, with what the live hub serves of each channel: what GetStats and
        ``/api/v1/stats`` say."""
        hub = self.hub
        return [ServedStats(s, h, hub.subscriptions(s.channel) if hub else 0,
                            hub.stalled[s.channel] if hub else 0) for s, h in self.stats(names)]

    def cluster_info(self) -> dict[str, Any]:
        """This node, its NATS and the nodes it hears (``{"clustered": False}`` alone), and
        why retention is paused: what GetCluster and ``/api/v1/cluster`` say."""
        info: dict[str, Any] = self.cluster.info() if self.cluster is not None else \
            {"clustered": False}
        info["retention_paused"] = self.supervisor.retention_paused
        return info

    def forget_node(self, node: str, unreachable_for: float = 0.0) -> list[str]:
        """Release every channel of a node of the cluster that has been unreachable for at
        least ``unreachable_for`` s, so that their names can be registered elsewhere; the
        channels released. NodeAlive while it beats, NodeNotFound for no such node."""
        if self.cluster is None:
            raise RequestError("forgetting a node needs a cluster (cluster: in the config)")
        return self.cluster.forget_node(node, unreachable_for)

    def _remote_stats(self, info: ChannelInfo) -> tuple[ChannelStats, float]:
        """Another node's channel's stats, from that node (just its status when it cannot
        be reached)."""
        from ..errors import SpeedDataError
        if info.status == "unreachable":             # not worth a wait on each listing
            return ChannelStats(info.name, status="unreachable"), 0.0
        try:
            got = self.cluster.client(info.name).stats([info.name])[info.name]  # type: ignore[union-attr]
        except SpeedDataError:
            return ChannelStats(info.name, status="unreachable"), 0.0
        fields = {k: v for k, v in got.items() if k in ChannelStats.__dataclass_fields__}
        return ChannelStats(**fields), float(got.get("horizon_s", 0.0))

    # ---- stored data ---------------------------------------------------------------------

    def _check_range(self, start: int, end: int | None) -> tuple[int, int | None]:
        if end is not None and end <= start:
            raise TimeRangeError(f"the range ends ({end}) before it starts ({start})")
        return start, end

    def _stored(self, name: str):
        if name not in self.store:
            raise ChannelNotFound(f"no channel {name!r} in the store",
                                  hint=f"channels are: {listing(self.store.channels)}")
        return self.store[name]

    def held(self, channel: str) -> tuple[int, int] | None:
        """(first, last) record time a stored channel holds; None when it holds none."""
        return self._stored(channel).holds()

    def count(self, channel: str, start: int, end: int | None) -> int:
        """Exactly how many records [start, end) holds (a stored channel's index)."""
        return self._stored(channel).count(start or None, end)

    def empty_result(self, channel: str, signals: Sequence[str] | None = None,
                     decimation: Decimation | None = None) -> Columns:
        """What `query` answers for a range without records: no rows, but every column
        (and dtype) a range with records would have."""
        schema = self.channel(channel).schema
        wanted = [s for s in signals or () if s != "time"] or None
        for s in wanted or ():
            schema.signal(s)                        # SchemaError naming it
        none = empty(schema, wanted, channel)
        if decimation is None or decimation.kind == "none":
            return none
        return decimated_empty(none, decimation)

    def query(self, channel: str, start: int, end: int | None,
              signals: Sequence[str] | None = None, decimation: Decimation | None = None,
              buckets: int = 0, chunk_bytes: int = 64 << 20) -> Iterator[Columns]:
        """Columns of [start, end) in time order, in chunks of about ``chunk_bytes`` of
        columns (few and large: each chunk is one parallel decode): decimated, or
        (``buckets``) an overview of that many buckets from the block summaries."""
        start, end = self._check_range(start, end)
        if self._remote(channel) is not None:
            yield from self.cluster.client(channel).iter_query(  # type: ignore[union-attr]
                channel, start, end, signals, decimation, buckets=buckets)
            return
        ch = self._stored(channel)
        wanted = list(signals) if signals else None
        for s in wanted or ():
            if s != "time":
                ch.schema.signal(s)                 # SchemaError naming it
        if buckets:
            if self.limits.buckets is not None and buckets > self.limits.buckets:
                raise LimitExceeded(f"{buckets} buckets are more than the limit of "
                                    f"{self.limits.buckets} per overview")
            yield ch.overview(start or None, end, buckets, wanted).as_columns()
            return
        limit = self.limits.query_records
        if limit is not None:
            n = ch.count(start, end, estimate=True)
            if n > limit and ch.count(start, end) > limit:
                raise LimitExceeded(f"the range holds {n} records of channel {channel!r}, "
                                    f"more than the limit of {limit} per query",
                                    hint="ask for a shorter range, or for N buckets")
        dec = Decimator(decimation) if decimation and decimation.kind != "none" else None
        row = 0
        width = 8 + 8 * len(wanted or ch.schema.signals)     # bytes a record's columns take
        sent = False
        for cols in ch.iter_read(start, end, wanted, chunk_records=max(1 << 16,
                                                                        chunk_bytes // width)):
            if dec is not None:
                out, _ = dec.push(cols, row)
                row += len(cols)
                if len(out):
                    sent = True
                    yield out
            else:
                sent = True
                yield cols
        if dec is not None:
            last = dec.finish()
            if len(last):
                sent = True
                yield last
        if not sent:        # no record: the signals still come, as a local read keeps them
            yield self.empty_result(channel, wanted, decimation)

    def rows_bound(self, channel: str, start: int, end: int | None) -> int:
        """At most how many records a query of [start, end) returns (from the index)."""
        if self._remote(channel) is not None:
            return 0                            # the owner says, in its own responses
        return self._stored(channel).count(start or None, end, estimate=True)

    def query_avro(self, channel: str, start: int, end: int | None) -> Iterator[bytes]:
        """An Avro object container file of the stored blocks that hold [start, end): the
        header with the schema as stored, then the blocks as they are on disk (blocks at
        the edges hold some records outside the range)."""
        start, end = self._check_range(start, end)
        if self._remote(channel) is not None:
            yield from self.cluster.client(channel).iter_avro(  # type: ignore[union-attr]
                channel, start, end)
            return
        yield from self._stored(channel).avro_container(start, end)

    # ---- tags and export -----------------------------------------------------------------

    def tag(self, name: str, start: int, end: int, channels: Sequence[str] = (),
            note: str = "", replace: bool = False) -> Tag:
        """Keep [start, end) of some channels (all by default) through retention: in the
        store, or, in a cluster, on every node that holds them."""
        self._check_range(start, end)
        if self.cluster is None:
            return self.store.tag(name, start, end, list(channels) or None, note,
                                  replace=replace)
        from ..timeutil import now_ns
        check_name(name, "tag")
        known = {i.name for i in self.channels()}
        for c in channels:
            if c not in known:
                raise ChannelNotFound(f"no channel {c!r} in the cluster")
        if not replace and any(t.name == name for t in self.store.tags()):
            raise TagExists(f"a tag {name!r} exists already on this node's store",
                            hint="pick another name")
        return self.cluster.put_tag(Tag(name, start, end, tuple(channels) or None, note,
                                        now_ns()), replace)

    def tags(self) -> list[Tag]:
        """Tags by start: the cluster's (in a cluster) and the store's own."""
        own = self.store.tags()
        if self.cluster is None:
            return own
        shared = self.cluster.tags()
        names = {t.name for t in shared}
        return sorted(shared + [t for t in own if t.name not in names],
                      key=lambda t: (t.start, t.name))

    def get_tag(self, name: str) -> Tag:
        for t in self.tags():
            if t.name == name:
                return t
        raise TagNotFound(f"no tag {name!r}", hint="tags are: " + listing(
            t.name for t in self.tags()))

    def untag(self, name: str) -> None:
        if self.cluster is not None and any(t.name == name for t in self.cluster.tags()):
            self.cluster.delete_tag(name)
            return
        self.store.untag(name)

    def archive(self, tag: str, partial: bool = False) -> dict:
        """Copy a tag's range of each channel it covers, as stored, into the cluster's
        object store (`speeddata.cluster`); returns the archive's manifest. A channel whose
        node is unreachable is ClusterUnavailable naming it, unless ``partial`` (then the
        manifest lists it as ``missing``); a channel without records in the range is left
        out and listed as ``empty``."""
        if self.cluster is None:
            raise RequestError("archives need a cluster (cluster: in the config)",
                             hint="export to HDF5 instead, or join a cluster")
        t = self.get_tag(tag)
        names = list(t.channels) if t.channels is not None else \
            [i.name for i in self.channels()]
        infos = {n: self.channel(n) for n in names}
        missing = [n for n, i in infos.items() if i.status == "unreachable"]
        if missing and not partial:
            nodes = sorted({infos[n].node for n in missing})
            raise ClusterUnavailable(
                f"cannot archive tag {tag!r}: {listing(missing)} cannot be read (node "
                f"{', '.join(nodes)} unreachable)",
                hint="archive when the node is back, or pass partial=True for an archive "
                     "without them, marked partial")
        parts, empty = {}, []
        for n, info in infos.items():
            if n in missing:
                continue
            if self._remote(n) is None and not self._stored(n).count(t.start, t.end):
                empty.append(n)
                continue
            parts[n] = (info.node or self.cluster.node, self.query_avro(n, t.start, t.end))
        return self.cluster.archive(t, parts, missing=missing, empty=empty)

    def archives(self) -> list[dict]:
        if self.cluster is None:
            return []
        return self.cluster.archives()

    def export_hdf5(self, *, tag: str = "", start: int = 0, end: int | None = None,
                    channels: Sequence[str] = (), signals: Sequence[str] = (),
                    allow_empty: bool = False, chunk_bytes: int = 1 << 20,
                    progress: Callable[[float], None] | None = None) -> Iterator[tuple[bytes, int]]:
        """The HDF5 file of a tag or a range, in chunks: (bytes, file size), within the
        limits (`speeddata.serving.exports`)."""
        names = list(dict.fromkeys(channels)) or None      # each channel once
        found = None
        if tag:
            found = self.get_tag(tag)
            lo, hi = found.start, found.end
            names = names or (list(found.channels) if found.channels is not None else None)
        else:
            lo, hi = start, end if end is not None else start
            self._check_range(lo, hi)
        readers = [self._reader(n) for n in names or self.store.channels]
        yield from self.exports.hdf5(lo, hi, readers, signals, found, chunk_bytes, progress,
                                     allow_empty)

    def _reader(self, name: str):
        """What an export reads a channel through: the store's channel, or another node's
        over gRPC."""
        if self._remote(name) is not None:
            return RemoteReader(name, self.channel(name).schema, self.query)
        return self._stored(name)


def _shape(schema: Any, depth: int = 0) -> tuple[int, int]:
    """(deepest nesting, number of leaf fields) of an Avro schema as JSON, without
    recursing past what any limit allows (a hostile schema may nest a million deep)."""
    if depth > 1000:
        return depth, 0
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            deepest, leaves = depth + 1, 0
            for f in schema.get("fields") or []:
                d, n = _shape(f.get("type") if isinstance(f, dict) else None, depth + 1)
                deepest, leaves = max(deepest, d), leaves + n
            return deepest, leaves
        if kind in ("array", "map"):
            return _shape(schema.get("items", schema.get("values")), depth + 1)
        return _shape(kind, depth) if isinstance(kind, (dict, list)) else (depth, 1)
    if isinstance(schema, list):
        shapes = [_shape(b, depth) for b in schema]
        return max((d for d, _ in shapes), default=depth), max((n for _, n in shapes), default=1)
    return depth, 1


def _remote_info(rc: "RemoteChannel") -> ChannelInfo:
    return ChannelInfo(rc.name, rc.status, rc.schema, rc.port, rc.bind, "", "api",
                       rc.decimation, rc.retention, rc.created, rc.node, rc.since)
