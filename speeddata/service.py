"""What the serve process offers, whatever the transport: gRPC (`speeddata.grpc_server`) and
the web's REST API call these, so both check and answer alike.

Every method raises SpeedData errors; `speeddata.errors.status_of` maps them to gRPC codes
and HTTP statuses. Methods that touch the disk or start processes block: call them from a
worker thread on the event loop (``asyncio.to_thread``). Subscriptions go through the live
hub (`speeddata.hub`), from the loop's thread.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import zstandard

from . import config as config_mod
from .columns import Columns
from .decimation import Decimation, Decimator, key
from .errors import ChannelNotFound, LimitExceeded, SchemaError, StoreError, TimeRangeError
from .hub import Hub
from .schema import ChannelSchema, load_avro
from .serve import Supervisor
from .stats import ChannelStats
from .store._channel import stored_avro
from .store import _format as F

STATUSES = ("running", "starting", "failed", "stored")


@dataclass
class Limits:
    """Request limits (RESOURCE_EXHAUSTED / HTTP 413 beyond them); None: no limit."""
    query_records: int | None = None      # records one query may read, per channel
    export_records: int | None = None     # records one export may write, in all


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


class Service:
    """The operations of a serving SpeedData: channels, live data, queries, tags, export."""

    def __init__(self, supervisor: Supervisor, hub: Hub | None = None,
                 limits: Limits | None = None):
        self.supervisor = supervisor
        self.store = supervisor.store
        self.registry = supervisor.registry
        self.hub = hub
        self.limits = limits or Limits()

    # ---- channels ------------------------------------------------------------------------

    def register_channel(self, item: dict[str, Any]) -> ChannelInfo:
        """Register a channel given as a config-file entry; its schema is Avro JSON text or
        a dict, never a path on this machine."""
        schema = item.get("schema")
        if isinstance(schema, str):
            try:
                item = dict(item, schema=json.loads(schema))
            except ValueError as e:
                raise SchemaError(f"the schema is not JSON text: {e}",
                                  hint="send the Avro schema itself, not a file name") from None
        if not isinstance(item.get("schema"), dict):
            raise SchemaError("a channel needs an Avro schema (a JSON object)")
        cfg = config_mod.channel(item, "", bind=item.get("bind") or "127.0.0.1")
        load_avro(cfg.schema)
        self.supervisor.add_channel(cfg)
        return self.channel(cfg.name)

    def deregister_channel(self, name: str) -> None:
        if self.hub is not None:
            self.hub.drop(name)
        self.supervisor.remove_channel(name)

    def delete_channel_data(self, name: str) -> None:
        if name in self.supervisor.channels:
            raise StoreError(f"channel {name!r} is registered; deregister it before deleting "
                             "its data", hint="DeregisterChannel first")
        if name not in self.store:
            raise ChannelNotFound(f"no channel {name!r} in the store")
        self.store.drop_channel(name)

    def channels(self, status: str | None = None) -> list[ChannelInfo]:
        """Registered channels and channels with only stored data, by name."""
        names = sorted(set(self.supervisor.channels) | set(self.store.channels))
        out = []
        for name in names:
            try:
                info = self.channel(name)
            except (ChannelNotFound, StoreError):
                continue                            # dropped meanwhile, or unreadable
            if status in (None, "", info.status):
                out.append(info)
        return out

    def channel(self, name: str) -> ChannelInfo:
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
                               dict(cfg.options), created)
        if name not in self.store:
            raise ChannelNotFound(f"no channel {name!r}", hint="channels are: " + (
                ", ".join(sorted(set(running) | set(self.store.channels))) or "none"))
        ch = self.store[name]
        return ChannelInfo(name, "stored", ch.schema, retention=dict(ch.options))

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
            if info.status == "stored":
                st = self.store[info.name].stats()
                st.status = "stored"
            else:
                st = self.supervisor.stats(info.name)
            out.append((st, self.store.horizon(info.name)))
        return out

    # ---- stored data ---------------------------------------------------------------------

    def _check_range(self, start: int, end: int | None) -> tuple[int, int | None]:
        if end is not None and end <= start:
            raise TimeRangeError(f"the range ends ({end}) before it starts ({start})")
        return start, end

    def _stored(self, name: str):
        if name not in self.store:
            raise ChannelNotFound(f"no channel {name!r} in the store")
        return self.store[name]

    def query(self, channel: str, start: int, end: int | None,
              signals: Sequence[str] | None = None, decimation: Decimation | None = None,
              buckets: int = 0, chunk_bytes: int = 64 << 20) -> Iterator[Columns]:
        """Columns of [start, end) in time order, in chunks of about ``chunk_bytes`` of
        columns (few and large: each chunk is one parallel decode): decimated, or
        (``buckets``) an overview of that many buckets from the block summaries."""
        start, end = self._check_range(start, end)
        ch = self._stored(channel)
        wanted = list(signals) if signals else None
        for s in wanted or ():
            if s != "time":
                ch.schema.signal(s)                 # SchemaError naming it
        if buckets:
            yield overview_columns(ch.overview(start or None, end, buckets, wanted))
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
        for cols in ch.iter_read(start, end, wanted, chunk_records=max(1 << 16,
                                                                        chunk_bytes // width)):
            if dec is not None:
                out, _ = dec.push(cols, row)
                row += len(cols)
                if len(out):
                    yield out
            else:
                yield cols
        if dec is not None:
            last = dec.finish()
            if len(last):
                yield last

    def rows_bound(self, channel: str, start: int, end: int | None) -> int:
        """At most how many records a query of [start, end) returns (from the index)."""
        return self._stored(channel).count(start or None, end, estimate=True)

    def query_avro(self, channel: str, start: int, end: int | None) -> Iterator[bytes]:
        """An Avro object container file of the stored blocks that hold [start, end): the
        header with the schema as stored, then the blocks as they are on disk (blocks at
        the edges hold some records outside the range)."""
        start, end = self._check_range(start, end)
        ch = self._stored(channel)
        sync = os.urandom(F.SYNC_SIZE)
        yield F.header(json.dumps(stored_avro(ch.schema)), sync, F.CODEC)
        recompress = None
        for block in ch.iter_blocks(start, end):
            payload = block.payload
            if block.codec != F.CODEC:      # SpeedData writes zstandard; others are re-coded
                recompress = recompress or zstandard.ZstdCompressor()
                payload = recompress.compress(F.Decompressor(block.codec)(payload))
            yield F.block(block.records, payload, sync)

    # ---- tags and export -----------------------------------------------------------------

    def tag(self, name: str, start: int, end: int, channels: Sequence[str] = (),
            note: str = "", replace: bool = False):
        self._check_range(start, end)
        return self.store.tag(name, start, end, list(channels) or None, note, replace=replace)

    def tags(self):
        return self.store.tags()

    def untag(self, name: str) -> None:
        self.store.untag(name)

    def export_hdf5(self, *, tag: str = "", start: int = 0, end: int | None = None,
                    channels: Sequence[str] = (), signals: Sequence[str] = (),
                    chunk_bytes: int = 1 << 20,
                    progress: Callable[[float], None] | None = None) -> Iterator[tuple[bytes, int]]:
        """The HDF5 file of a tag or a range, in chunks: (bytes, file size). It is written
        to a temporary file first (HDF5 needs to seek), which goes once it is sent."""
        names = list(channels) or None
        if tag:
            t = self.store.get_tag(tag)
            lo, hi = t.start, t.end
            names = names or (list(t.channels) if t.channels is not None else None)
        else:
            lo, hi = start, end if end is not None else start
            self._check_range(lo, hi)
        names = names or self.store.channels
        for n in names:
            self._stored(n)
        total = sum(self.store[n].count(lo, hi, estimate=True) for n in names)
        limit = self.limits.export_records
        if limit is not None and total > limit:
            raise LimitExceeded(f"the export holds about {total} records, more than the "
                                f"limit of {limit}", hint="export a shorter range")
        expected = max(1, total)
        done = [0]

        def step(_channel: str, n: int) -> None:
            done[0] += n
            if progress:
                progress(min(1.0, done[0] / expected) * 0.9)

        fd, path = tempfile.mkstemp(prefix="speeddata-export-", suffix=".h5")
        os.close(fd)
        try:
            self.store.export_hdf5(path, lo, hi, names, list(signals) or None, progress=step)
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                while chunk := f.read(chunk_bytes):
                    yield chunk, size
        finally:
            os.remove(path)


def overview_columns(ov) -> Columns:
    """An Overview in the wire form: per signal, min, max, mean, first, last, count and the
    times of the min and max, each bucket's start as time."""
    data = {}
    for name, s in ov.signals.items():
        for agg in ("min", "max", "mean", "first", "last", "count", "min_time", "max_time"):
            data[key(name, agg)] = getattr(s, agg)
    return Columns(ov.time, data, ov.channel)
