"""The live hub: each channel's ring read once, decoded once, fanned out to any number of
subscriptions (gRPC Subscribe, the web's WebSocket), each with its own signals and
decimation.

It runs on the serve process's asyncio event loop. A channel's worker writes a byte to a pipe
whenever it publishes records; the hub waits on that pipe, reads the ring at most once per
`MIN_INTERVAL` (so a 100 kHz channel costs a few hundred reads a second, not one per
datagram), and wakes the subscriptions that got data. Nobody polls.

A subscription that is not drained (a slow client) holds at most `QUEUE_RECORDS` records;
older batches are dropped and counted as missed, so it never slows the worker, the hub or
other subscriptions. One that takes nothing for `Hub.stall_after` seconds while updates wait
(a client that stopped reading) is dropped, its transport told through ``on_stall``, and
counted in `Hub.stalled`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..columns import Columns
from ..decimation import Decimation, Decimator
from ..errors import ChannelNotFound, SpeedDataError, TooMany
from .ring import Ring, Subscriber

log = logging.getLogger("speeddata.hub")
MIN_INTERVAL = 0.010      # s between two reads of one channel's ring
QUEUE_RECORDS = 1 << 20   # raw records a subscription may hold before it drops the oldest


class Feeds(Protocol):
    """What the hub reads: the rings of a supervisor's channels
    (`speeddata.ingest.Supervisor`) and the pipes that say they moved."""

    @property
    def channels(self) -> Any: ...
    @property
    def store(self) -> Any: ...
    def ring(self, name: str) -> Ring: ...
    def notify_fd(self, name: str) -> int: ...


class Update(NamedTuple):
    """What a subscription receives: decimated rows covering raw records
    [first_record, next_record), after ``missed`` records it lost."""
    columns: Columns
    first_record: int
    next_record: int
    missed: int
    cache: dict = {}      # what transports derive from it once (shared by subscriptions)


class Subscription:
    """One subscriber's view of one channel. ``await next()`` returns the next `Update`;
    `pending` tells whether one is waiting."""

    def __init__(self, hub: "Hub", channel: str, signals: Sequence[str] | None,
                 decimation: Decimation, wake: asyncio.Event | None):
        self.hub = hub
        self.channel = channel
        self.signals = list(signals) if signals else None
        self.decimation = decimation
        self.wake = wake or asyncio.Event()
        self._decimator = Decimator(decimation)
        self._queue: deque[Update] = deque()
        self._queued = 0
        self._dropped = 0            # raw records dropped from the queue, not yet reported
        self.closed: str | None = None   # why the channel went away
        self.closed_error: type[SpeedDataError] = ChannelNotFound   # what it then raises
        self.delivered = 0
        self.release: Callable[[], None] | None = None   # frees its place under the limits
        self.on_stall: Callable[[str], None] | None = None   # ends the transport, with why
        self._waiting_since = 0.0    # monotonic time the oldest waiting update came
        self._stalling = False
        self.since: int | None = None    # records before this time (ns) are not sent

    @property
    def pending(self) -> bool:
        return bool(self._queue) or self.closed is not None

    @property
    def shares(self) -> tuple | None:
        """What makes this subscription's updates the same as another's: signals and a
        decimation without buckets that stay open (None when they may differ)."""
        if self.decimation.kind not in ("none", "every"):
            return None
        return tuple(self.signals) if self.signals is not None else None, self.decimation

    def _update(self, cols: Columns, first: int, missed: int) -> Update | None:
        if self.since is not None and len(cols):
            # a resume by time: the records before it left out (a prefix, in arrival
            # order, so that record numbers still count from the first one kept)
            late = cols.time < self.since
            if late.all():
                return None
            drop = int(np.argmin(late))
            if drop:
                cols, first = cols.take(slice(drop, None)), first + drop
            self.since = None
        if self.signals is not None:
            cols = Columns(cols.time, {k: cols.data[k] for k in self.signals}, cols.channel)
        out, covered = self._decimator.push(cols, first, missed)
        if not len(out) and not missed:
            return None
        return Update(out, self._decimator.covered_from, covered, missed, {})

    def _push(self, cols: Columns, first: int, missed: int) -> None:
        update = self._update(cols, first, missed)
        if update is not None:
            self._enqueue(update)

    def _enqueue(self, update: Update) -> None:
        first, covered = update.first_record, update.next_record
        now = time.monotonic()
        if not self._queue:
            self._waiting_since = now
        elif self.hub.stall_after is not None and not self._stalling and \
                now - self._waiting_since > self.hub.stall_after:
            self._stalling = True       # not now: the feed is fanning out over its subs
            self.hub.loop.call_soon(self._stall)
        self._queue.append(update)
        self._queued += covered - first
        while self._queued > QUEUE_RECORDS and len(self._queue) > 1:
            old = self._queue.popleft()
            self._queued -= old.next_record - old.first_record
            self._dropped += old.next_record - old.first_record + old.missed
        self.wake.set()

    def _close(self, why: str, error: type[SpeedDataError] = ChannelNotFound) -> None:
        """End the subscription: once what waits is taken, `take` raises ``error(why)``."""
        self.closed = why
        self.closed_error = error
        self.wake.set()

    def take(self) -> Update | None:
        """The oldest waiting update, or None. Raises ChannelNotFound once the channel is
        gone and everything before that was taken."""
        if not self._queue:
            if self.closed is not None:
                raise self.closed_error(self.closed)
            return None
        u = self._queue.popleft()
        self._queued -= u.next_record - u.first_record
        self._waiting_since = time.monotonic()
        if self._dropped:
            u = u._replace(missed=u.missed + self._dropped)
            self._dropped = 0
        self.delivered += len(u.columns)
        return u

    async def next(self) -> Update:
        while True:
            u = self.take()
            if u is not None:
                return u
            self.wake.clear()
            await self.wake.wait()

    def close(self) -> None:
        self.hub.unsubscribe(self)
        self._released()

    def _stall(self) -> None:
        """Drop a subscriber that stopped reading: its queue freed, its place given back."""
        if self.closed is not None:
            return
        why = f"dropped: the client read nothing for {self.hub.stall_after:g} s " \
              "(limits.stall_seconds)"
        self.hub.stalled[self.channel] += 1
        log.warning("live stream of %s %s", self.channel, why)
        self._queue.clear()
        self._queued = 0
        self._close(why)
        self.close()
        if self.on_stall is not None:
            self.on_stall(why)

    def _released(self) -> None:
        release, self.release = self.release, None
        if release is not None:
            release()


class _Feed:
    """One channel's reader and its subscriptions."""

    def __init__(self, hub: "Hub", name: str):
        sup = hub.supervisor
        self.hub = hub
        self.name = name
        self.ring = sup.ring(name)
        self.schema = sup.store[name].schema
        self.reader = Subscriber(self.ring, self.schema)
        self.fd = sup.notify_fd(name)
        self.subs: set[Subscription] = set()
        self.last = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.watching = False
        _drain(self.fd)
        self._watch()

    def _watch(self) -> None:
        if not self.watching:
            self.hub.loop.add_reader(self.fd, self._woken)
            self.watching = True

    def _woken(self) -> None:
        # stop watching until the read is done: one wake-up per read, however many bytes
        self.hub.loop.remove_reader(self.fd)
        self.watching = False
        delay = max(0.0, self.last + MIN_INTERVAL - time.monotonic())
        self.timer = self.hub.loop.call_later(delay, self.pump)

    def pump(self) -> None:
        self.timer = None
        _drain(self.fd)
        self.last = time.monotonic()
        while True:
            cols, missed = self.reader.poll()
            if len(cols) or missed:
                fan_out(self.subs, cols, self.reader.first_record, missed)
            if self.reader.cursor >= self.ring.written[0]:
                break
        self._watch()

    def catch_up(self, sub: Subscription, resume_from: int) -> None:
        """Records from ``resume_from`` up to where this feed stands, if the ring still
        holds them; what it does not is counted as missed."""
        end = self.reader.record
        if resume_from >= end:
            return
        private = Subscriber(self.ring, self.schema, from_record=resume_from)
        while private.record < end:
            cols, missed = private.poll()
            first = private.first_record
            if private.record > end:        # past the feed's position: the feed sends it
                cols = cols.take(slice(0, max(0, len(cols) - (private.record - end))))
            if len(cols) or missed:
                sub._push(cols, first, missed)
            if not len(cols) and not missed:
                break

    def close(self, why: str) -> None:
        if self.watching:
            self.hub.loop.remove_reader(self.fd)
            self.watching = False
        if self.timer:
            self.timer.cancel()
        for sub in self.subs:
            sub._close(why)
        self.subs.clear()


class Hub:
    """The live feeds of a supervisor's channels. Use from its event loop's thread."""

    def __init__(self, supervisor: Feeds, loop: asyncio.AbstractEventLoop | None = None):
        self.supervisor = supervisor
        self.loop = loop or asyncio.get_event_loop()
        self._feeds: dict[str, _Feed] = {}
        # live streams at once, in all and per client (None: no limit)
        self.max_subscriptions: int | None = None
        self.max_per_client: int | None = None
        self._clients: Counter[str] = Counter()
        # a stream that takes nothing this long (s) while updates wait is dropped, counted
        self.stall_after: float | None = None
        self.stalled: Counter[str] = Counter()
        # another node's channels, followed through the cluster (`speeddata.cluster`)
        self.remote: Any = None

    def subscribe(self, channel: str, signals: Sequence[str] | None = None,
                  decimation: Decimation | str | None = None, *,
                  resume_from: int | None = None, since: int | None = None,
                  wake: asyncio.Event | None = None, client: str | None = None) -> Subscription:
        """Follow a channel from now on (or from record ``resume_from``; records before the
        time ``since`` left out); ``wake`` lets one event serve several subscriptions (one
        stream of many channels). A ``client`` (its address) is held to the limits on live
        streams; TooMany beyond them. SchemaError for an unknown signal, ChannelNotFound for
        a channel not running."""
        if not isinstance(decimation, Decimation):
            decimation = Decimation.parse(decimation)
        if client is None:
            return self._subscribe(channel, signals, decimation, resume_from, since, wake)
        self._admit(client)
        try:
            sub = self._subscribe(channel, signals, decimation, resume_from, since, wake)
        except BaseException:
            self._leave(client)
            raise
        sub.release = lambda: self._leave(client)
        return sub

    def _admit(self, client: str) -> None:
        total = sum(self._clients.values())
        if self.max_subscriptions is not None and total >= self.max_subscriptions:
            raise TooMany(f"{total} live streams are open, the server's limit",
                          hint="close some, or raise limits.subscriptions")
        mine = self._clients[client]
        if self.max_per_client is not None and mine >= self.max_per_client:
            raise TooMany(f"{client} has {mine} live streams open, the limit for one client",
                          hint="close some, or raise limits.subscriptions_per_client")
        self._clients[client] += 1

    def _leave(self, client: str) -> None:
        self._clients[client] -= 1
        if self._clients[client] <= 0:
            del self._clients[client]

    def streams(self) -> int:
        """Live streams of clients open now."""
        return sum(self._clients.values())

    def oldest(self, channel: str) -> tuple[int, int] | None:
        """(record number, time) of the oldest record the channel's live ring holds; None
        while it holds none (or the channel is another node's)."""
        if channel not in self.supervisor.channels:
            return None
        reader = Subscriber(self.supervisor.ring(channel), self.supervisor.store[channel].schema,
                            from_oldest=True)
        cols, _ = reader.poll(max_records=1)
        return (reader.first_record, int(cols.time[0])) if len(cols) else None

    def _subscribe(self, channel: str, signals: Sequence[str] | None, decimation: Decimation,
                   resume_from: int | None, since: int | None,
                   wake: asyncio.Event | None) -> Subscription:
        if self.remote is not None and channel not in self.supervisor.channels and \
                self.remote.remote_channel(channel) is not None:
            return self.remote.subscribe(channel, signals, decimation, wake)
        feed = self._feeds.get(channel)
        if feed is None:
            feed = self._feeds[channel] = _Feed(self, channel)
        for name in signals or ():
            feed.schema.signal(name)        # SchemaError naming an unknown signal
        sub = Subscription(self, channel, signals, decimation, wake)
        sub.since = since
        if resume_from is not None:
            feed.catch_up(sub, resume_from)
        feed.subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        feed = self._feeds.get(sub.channel)
        if feed is None:
            return
        feed.subs.discard(sub)
        if not feed.subs:
            feed.close("unsubscribed")
            del self._feeds[sub.channel]

    def drop(self, channel: str, why: str = "") -> None:
        """A channel going away: its subscriptions end (before its ring is closed)."""
        feed = self._feeds.pop(channel, None)
        if feed is not None:
            feed.close(why or f"channel {channel!r} was deregistered")

    def subscriptions(self, channel: str) -> int:
        feed = self._feeds.get(channel)
        return len(feed.subs) if feed else 0

    def close(self) -> None:
        for name in list(self._feeds):
            self.drop(name, "the server is stopping")


def fan_out(subs, cols: Columns, first: int, missed: int) -> None:
    """One decoded batch to every subscription: thinned once per kind of subscription
    (signals and a decimation without open buckets), and for each of the others."""
    shared: dict[tuple, Update | None] = {}
    for sub in list(subs):
        key = sub.shares
        if key is None:
            sub._push(cols, first, missed)
            continue
        if key not in shared:
            shared[key] = sub._update(cols, first, missed)
        update = shared[key]
        if update is not None:
            sub._enqueue(update)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
