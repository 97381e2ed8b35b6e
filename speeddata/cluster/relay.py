"""Live data across the cluster: another node's channel followed through its subject
(`_Relay`, `_Relayed`), and this node's channels published for the forms others lease
(`LiveRelay`, a part of `speeddata.cluster.Cluster`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .buckets import RemoteChannel
from .. import wire
from ..client import batch_columns
from ..columns import Columns
from ..config import ClusterConfig
from ..decimation import Decimation
from ..errors import ChannelNotFound, ClusterUnavailable, SpeedDataError
from ..live import Subscription, Update
from ..pb_enums import AGGREGATE, DATA_TYPE
from ..timeutil import format_ns

if TYPE_CHECKING:
    from ..live import Hub
    from ..ingest import Supervisor

log = logging.getLogger("speeddata.cluster")

LIVE = "speeddata.live"
WANT = "speeddata.want"
LIVE_BYTES = 512 << 10    # a live message holds at most this much (NATS takes 1 MiB)
SILENT_BEATS = 3          # heartbeats a node may miss before it is unreachable


@dataclass
class _Lease:
    """A form of a local channel that another node watches: published until ``expires``."""
    expires: float
    sub: Subscription
    task: asyncio.Task


class _Relay:
    """One form of another node's channel, relayed from its subject to local subscriptions
    (gRPC Subscribe, WebSockets) that take it as they take a local channel's."""

    def __init__(self, cluster: "LiveRelay", channel: str, want: dict[str, Any], form: str):
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


class LiveRelay:
    """The live part of a cluster node: what it follows of other nodes' channels and what
    it publishes of its own. `speeddata.cluster.Cluster` holds the state it uses."""

    nc: Any
    cfg: ClusterConfig
    hub: "Hub | None"
    supervisor: "Supervisor | None"
    problem: str | None
    live_dropped: int
    _relays: dict[tuple[str, str], _Relay]
    _leases: dict[tuple[str, str], _Lease]
    remote_channel: Callable[[str], RemoteChannel | None]

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

