"""The gRPC service (``proto/speeddata/v1/speeddata.proto``) on the serve process's asyncio
event loop: a thin adapter from protobuf messages to `speeddata.serving.Service`.

Blocking work (registering, reading the store, exporting) runs in worker threads; live
subscriptions come from the hub on the loop itself. Errors become the status code of
`speeddata.errors.STATUS` with the error's text as the detail.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..columns import Columns
from .grpc_guard import HealthServicer, MalformedRequests
from ..decimation import Decimation
from . import tokens
from ..errors import GRPC_ERROR_KEY, RequestError, SpeedDataError, public_message, status_of
from ..pb_enums import AGGREGATE, DATA_TYPE
from ..schema import Signal
from .service import ChannelInfo, Service
from ..stats import ChannelStats
from ..v1 import speeddata_pb2 as pb
from ..v1 import speeddata_pb2_grpc as pb_grpc
from .. import wire
from ..wire import split

log = logging.getLogger("speeddata.grpc")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpeedData"].full_name
BATCH_BYTES = 16 << 20         # a batch holds about this much at most
MAX_MESSAGE = 64 << 20          # bytes; batches are cut to about 4 MB, strings may be longer
CHUNK_BYTES = 1 << 20           # Avro and HDF5 streams

STATUS_PB = {"running": pb.CHANNEL_STATUS_RUNNING, "starting": pb.CHANNEL_STATUS_STARTING,
             "failed": pb.CHANNEL_STATUS_FAILED, "stored": pb.CHANNEL_STATUS_STORED,
             "unreachable": pb.CHANNEL_STATUS_UNREACHABLE}
STATUS_NAME = {v: k for k, v in STATUS_PB.items()}
DECIMATION_KIND = {pb.DECIMATION_KIND_NONE: "none", pb.DECIMATION_KIND_EVERY: "every",
                   pb.DECIMATION_KIND_MEAN: "mean", pb.DECIMATION_KIND_RMS: "rms",
                   pb.DECIMATION_KIND_MIN_MAX: "minmax"}
AVRO_TYPE = {"boolean": "bool", "int": "int32", "long": "int64", "float": "float32",
             "double": "float64", "string": "string", "enum": "string", "bytes": "bytes",
             "fixed": "bytes"}
MUTATING = {"RegisterChannel", "DeregisterChannel", "DeleteChannelData", "CreateTag",
            "DeleteTag", "Archive"}

F = TypeVar("F", bound=Callable[..., Any])


def _errors(method: F) -> F:
    """SpeedData errors as their status codes; anything else is INTERNAL and logged."""
    if asyncio.iscoroutinefunction(method):
        @functools.wraps(method)
        async def unary(self, request, context):
            try:
                self._authorize(method.__name__, context)
                return await method(self, request, context)
            except SpeedDataError as e:
                await _abort(context, e, self.service.private_paths())
        return unary  # type: ignore[return-value]

    @functools.wraps(method)
    async def stream(self, request, context):
        try:
            self._authorize(method.__name__, context)
            async for item in method(self, request, context):
                yield item
        except SpeedDataError as e:
            await _abort(context, e, self.service.private_paths())
    return stream  # type: ignore[return-value]


async def _abort(context, e: SpeedDataError, private_paths: Iterable[str] = ()) -> None:
    code, _ = status_of(e)
    # the error's class, for SpeedData's own clients to raise the same one (others ignore it)
    context.set_trailing_metadata(((GRPC_ERROR_KEY, type(e).__name__),))
    await context.abort(getattr(grpc.StatusCode, code), public_message(str(e), private_paths))


class Servicer(pb_grpc.SpeedDataServicer):
    def __init__(self, service: Service, token: str | None = None):
        self.service = service
        self.token = token

    def _authorize(self, method: str, context) -> None:
        if not self.token or method not in MUTATING:
            return
        given = dict(context.invocation_metadata() or ()).get("authorization", "")
        tokens.check(self.token, tokens.presented(given), f"{method} (in the metadata "
                     "'authorization: Bearer <token>')")

    # ---- channels ------------------------------------------------------------------------

    @_errors
    async def RegisterChannel(self, request, context):
        item: dict[str, Any] = {"name": request.name, "port": request.port,
                                "schema": request.schema}
        if request.bind:
            item["bind"] = request.bind
        if request.stamp_on_receipt:
            item["time_field"] = None
        elif request.time_field:
            item["time_field"] = request.time_field
        if request.time_unit:
            item["time_unit"] = request.time_unit
        if request.decimation:
            item["decimation"] = request.decimation
        retention = _retention_in(request.retention) if request.HasField("retention") else {}
        if retention:
            item["retention"] = retention
        info = await asyncio.to_thread(self.service.register_channel, item)
        return _channel_pb(info)

    @_errors
    async def DeregisterChannel(self, request, context):
        if self.service.is_remote(request.name):         # waits for the node that owns it
            await asyncio.to_thread(self.service.deregister_channel, request.name)
        else:
            self.service.deregister_channel(request.name)   # the hub, from the loop's thread
        return pb.DeregisterChannelResponse()

    @_errors
    async def DeleteChannelData(self, request, context):
        await asyncio.to_thread(self.service.delete_channel_data, request.name)
        return pb.DeleteChannelDataResponse()

    @_errors
    async def ListChannels(self, request, context):
        status = STATUS_NAME.get(request.status)
        infos = await asyncio.to_thread(self.service.channels, status)
        return pb.ListChannelsResponse(channels=[_channel_pb(i) for i in infos])

    @_errors
    async def GetChannel(self, request, context):
        return _channel_pb(await asyncio.to_thread(self.service.channel, request.name))

    @_errors
    async def GetSchema(self, request, context):
        info = await asyncio.to_thread(self.service.channel, request.name)
        return pb.SchemaInfo(channel=info.name, avro_json=self.service.schema_json(info.name),
                             signals=[_signal_pb(s) for s in info.schema.signals])

    @_errors
    async def ListAvailablePorts(self, request, context):
        from ..config import PORT_RANGE
        ports = await asyncio.to_thread(self.service.available_ports, request.limit)
        return pb.ListAvailablePortsResponse(ports=ports, range_start=PORT_RANGE.start,
                                             range_end=PORT_RANGE.stop - 1)

    # ---- live ----------------------------------------------------------------------------

    @_errors
    async def Subscribe(self, request, context) -> AsyncIterator[bytes]:
        hub = self.service.hub
        if hub is None:
            raise SpeedDataError("this server has no live hub")
        if not request.channels:
            raise RequestError("Subscribe needs at least one channel")
        wake = asyncio.Event()
        subs = []
        task = asyncio.current_task()

        def stalled(why: str) -> None:
            if task is not None:
                task.cancel()
        history = []           # (channel, since, until, first record) read from the store
        try:
            for c in request.channels:
                resume_from = c.resume_from if c.HasField("resume_from") else None
                since = c.resume_from_time if c.HasField("resume_from_time") else None
                if since is not None:
                    if self.service.is_remote(c.channel):
                        raise RequestError(
                            f"resume_from_time of {c.channel!r}, another node's channel, is "
                            "not offered through this node",
                            hint="subscribe through the node that holds it")
                    # live first, from the oldest record the ring holds (nothing is lost
                    # while the store is read); the store gives what came before that: up
                    # to the ring's oldest, or, while the ring is empty, all it holds now
                    oldest = hub.oldest(c.channel)
                    resume_from = oldest[0] if oldest else None
                    if oldest is not None:
                        until = oldest[1]
                    else:
                        held = await asyncio.to_thread(self.service.held, c.channel)
                        until = held[1] + 1 if held else since
                    if since < until:
                        history.append((c, since, until, resume_from or 0))
                subs.append(hub.subscribe(
                    c.channel, list(c.signals) or None, _decimation_in(c.decimation),
                    resume_from=resume_from, since=since,
                    wake=wake, client=_peer_host(context.peer())))
                # a client that stopped reading: the message stuck in flow control is
                # given up on, and the stream ends
                subs[-1].on_stall = stalled
            for c, since, until, record in history:
                async for message in self._stored_part(c, since, until, record):
                    yield message
            async for message in _interleaved(subs, wake):
                yield message
        finally:
            for sub in subs:
                sub.close()

    async def _stored_part(self, c, since: int, until: int,
                           record: int) -> AsyncIterator[bytes]:
        """A resumed subscription's records from the store, [since, until): batches that
        cover no record number of the live ring (first and next record both ``record``)."""
        decimation = _decimation_in(c.decimation)
        batches = self.service.query(c.channel, since, until, list(c.signals) or None,
                                     decimation if decimation.kind != "none" else None)
        async for cols in _in_thread(batches):
            if not len(cols):
                continue
            for piece in split(cols, 1 << 30, BATCH_BYTES):
                yield _batch_message(piece, c.channel) + wire.varint_fields(f2=record,
                                                                            f3=record)

    # ---- stored --------------------------------------------------------------------------

    @_errors
    async def Query(self, request, context) -> AsyncIterator[pb.QueryResponse | bytes]:
        if not request.channels:
            raise RequestError("Query needs at least one channel")
        start, end = request.start, (request.end or None)
        max_rows = request.max_rows or (1 << 30)
        decimation = _decimation_in(request.decimation) if request.HasField("decimation") \
            else None
        for name in request.channels:
            if self.service.is_remote(name):
                async for message in self._forwarded(request, name):
                    yield message
                continue
            if request.format == pb.QUERY_FORMAT_AVRO:
                async for data, last in _in_thread(_chunked(
                        self.service.query_avro(name, start, end), CHUNK_BYTES)):
                    yield pb.QueryResponse(avro=pb.AvroChunk(channel=name, data=data,
                                                             last=last))
                continue
            batches = self.service.query(name, start, end, list(request.signals) or None,
                                         decimation, request.buckets)
            bound = 0
            if decimation is None and not request.buckets:
                bound = await asyncio.to_thread(self.service.rows_bound, name, start, end)
            async for message in _in_thread(_query_messages(batches, max_rows)):
                yield message + wire.varint_fields(f3=bound)
                bound = 0

    async def _forwarded(self, request, name: str) -> AsyncIterator[bytes]:
        """Another node's channel: its node's answer to the query of that channel alone,
        passed on as it serialized it."""
        forward = pb.QueryRequest()
        forward.CopyFrom(request)
        del forward.channels[:]
        forward.channels.append(name)
        assert self.service.cluster is not None
        client = await asyncio.to_thread(self.service.cluster.client, name)
        async for message in _in_thread(client.query_raw(forward)):
            yield message

    # ---- tags and export -----------------------------------------------------------------

    @_errors
    async def CreateTag(self, request, context):
        tag = await asyncio.to_thread(self.service.tag, request.name, request.start,
                                      request.end, list(request.channels), request.note,
                                      request.replace)
        return _tag_pb(tag)

    @_errors
    async def ListTags(self, request, context):
        tags = await asyncio.to_thread(self.service.tags)
        return pb.ListTagsResponse(tags=[_tag_pb(t) for t in tags])

    @_errors
    async def DeleteTag(self, request, context):
        await asyncio.to_thread(self.service.untag, request.name)
        return pb.DeleteTagResponse()

    @_errors
    async def Export(self, request, context) -> AsyncIterator[pb.ExportResponse]:
        def chunks(emit: Callable[[float], None]):
            return self.service.export_hdf5(
                tag=request.tag, start=request.start, end=request.end or None,
                channels=list(request.channels), signals=list(request.signals),
                allow_empty=request.allow_empty, chunk_bytes=CHUNK_BYTES, progress=emit)

        sent = 0
        async for item in _in_thread(chunks):
            if isinstance(item, float):           # progress while the file is written
                yield pb.ExportResponse(progress=item)
                continue
            data, size = item
            sent += len(data)
            yield pb.ExportResponse(data=data, bytes_total=size, bytes_sent=sent,
                                    progress=0.9 + 0.1 * sent / max(1, size))

    # ---- cluster -------------------------------------------------------------------------

    @_errors
    async def GetCluster(self, request, context):
        info = self.service.cluster_info()
        paused = info["retention_paused"] or ""
        if not info["clustered"]:
            return pb.ClusterInfo(clustered=False, retention_paused=paused)
        return pb.ClusterInfo(
            clustered=True, node=info["node"], nats=info["nats"], connected=info["connected"],
            problem=info["problem"], live_dropped=info["live_dropped"],
            retention_paused=paused,
            nodes=[pb.ClusterNode(**n) for n in info["nodes"]])

    @_errors
    async def ForgetNode(self, request, context):
        unreachable_for = max(0, request.unreachable_for_ns) / 1e9
        released = await asyncio.to_thread(self.service.forget_node, request.node,
                                           unreachable_for)
        return pb.ForgetNodeResponse(node=request.node, released=released)

    @_errors
    async def Archive(self, request, context):
        return _archive_pb(await asyncio.to_thread(self.service.archive, request.tag,
                                                   request.partial))

    @_errors
    async def ListArchives(self, request, context):
        found = await asyncio.to_thread(self.service.archives)
        return pb.ListArchivesResponse(archives=[_archive_pb(m) for m in found])

    # ---- statistics ----------------------------------------------------------------------

    @_errors
    async def GetStats(self, request, context):
        served = await asyncio.to_thread(self.service.served_stats, list(request.channels))
        return pb.GetStatsResponse(channels=[
            _stats_pb(x.stats, x.horizon_s, x.subscribers, x.live_stalled) for x in served])


def _peer_host(peer: str) -> str:
    """The address of a gRPC peer ("ipv4:127.0.0.1:5000" -> "127.0.0.1"), its port left
    out: the limits count a machine's streams, however many connections it opens."""
    kind, _, rest = (peer or "unknown").partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]") or rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer or "unknown"


async def _interleaved(subs, wake: asyncio.Event) -> AsyncIterator[bytes]:
    """SubscribeResponse messages of the subscriptions, fairly: each turn at most one update
    per channel, starting one further each time; waits on ``wake`` while none has any."""
    turn = 0
    while True:
        sent = False
        for sub in subs[turn % len(subs):] + subs[:turn % len(subs)]:
            u = sub.take()               # ChannelNotFound once it is deregistered
            if u is None:
                continue
            sent = True
            pieces = _live_pieces(u, sub.channel)
            for k, piece in enumerate(pieces):
                last = k == len(pieces) - 1
                yield piece + wire.varint_fields(
                    f2=u.first_record, f3=u.next_record if last else u.first_record,
                    f4=u.missed if k == 0 else 0)
        turn += 1
        if not sent:
            wake.clear()
            if not any(s.pending for s in subs):
                await wake.wait()


def _query_messages(batches, max_rows: int):
    """QueryResponse messages, serialized (see `_batch_message`)."""
    for cols in batches:
        for piece in split(cols, max_rows, BATCH_BYTES):
            yield _batch_message(piece, cols.channel)


def _batch_message(cols: Columns, channel: str) -> bytes:
    """A QueryResponse or SubscribeResponse (field 1 of both) holding a Batch, serialized
    with one copy of the column data (`speeddata.wire`)."""
    return b"".join(wire.embed(1, wire.batch_message(cols, channel, AGGREGATE, DATA_TYPE)))


def _live_pieces(u, channel: str) -> list[bytes]:
    """An update's batch in pieces of bounded size, serialized once however many
    subscriptions share the update."""
    pieces = u.cache.get("pieces")
    if pieces is None:
        pieces = u.cache["pieces"] = [_batch_message(p, channel)
                                      for p in split(u.columns, 1 << 30, BATCH_BYTES)]
    return pieces


def _chunked(parts, size: int):
    """Byte strings joined into chunks of about ``size``; (chunk, is_last) pairs."""
    buf: list[bytes] = []
    n = 0
    for part in parts:
        buf.append(part)
        n += len(part)
        if n >= size:
            yield b"".join(buf), False
            buf, n = [], 0
    yield b"".join(buf), True


async def _in_thread(iterator, ahead: int = 2):
    """Items of a blocking iterator, produced in a worker thread a few items ahead (so
    reading overlaps sending). ``iterator`` may instead be a function that takes an ``emit``
    callback and returns the iterator: what it emits (progress) comes out between items."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    slots = threading.Semaphore(ahead)
    stop = threading.Event()

    def put(kind: str, item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

    def produce() -> None:
        items = None
        try:
            items = iterator(lambda x: put("side", x)) if callable(iterator) else iterator
            for item in items:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                put("item", item)
            put("done", None)
        except BaseException as e:               # raised again in the loop's thread
            put("error", e)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    task = loop.run_in_executor(None, produce)
    try:
        while True:
            kind, item = await queue.get()
            if kind == "done":
                break
            if kind == "error":
                raise item
            if kind == "item":
                slots.release()
            yield item
    finally:
        stop.set()
        await task


# ---- messages -------------------------------------------------------------------------------

def _signal_pb(s: Signal) -> pb.Signal:
    return pb.Signal(name=s.name, type=DATA_TYPE[AVRO_TYPE[s.type]], avro_type=s.type,
                     nullable=s.nullable, doc=s.doc, symbols=list(s.symbols), unit=s.unit)


def _retention_in(r) -> dict:
    out: dict[str, Any] = {}
    if r.max_bytes:
        out["max_bytes"] = int(r.max_bytes)
    if r.max_age_ns:
        out["max_age"] = r.max_age_ns / 1e9
    return out


def _retention_pb(options: dict) -> pb.Retention:
    from ..timeutil import duration_ns
    age = options.get("max_age")
    return pb.Retention(max_bytes=int(options.get("max_bytes") or 0),
                        max_age_ns=duration_ns(age) if age is not None else 0)


def _channel_pb(info: ChannelInfo) -> pb.ChannelInfo:
    schema = info.schema
    return pb.ChannelInfo(
        name=info.name, port=info.port, bind=info.bind, status=STATUS_PB[info.status],
        failure=info.failure, source=info.source,
        time_field="" if schema.stamped else schema.time_field,
        time_unit=_unit(schema), decimation=info.decimation,
        retention=_retention_pb(info.retention),
        signals=[_signal_pb(s) for s in schema.signals], created=info.created,
        node=info.node, unreachable_since=info.since)


def _unit(schema) -> str:
    return {1: "ns", 1000: "us", 1_000_000: "ms", 1_000_000_000: "s"}.get(
        schema.time_scale, "ns")


def _decimation_in(d) -> Decimation:
    kind = DECIMATION_KIND.get(d.kind)
    if kind is None:
        raise RequestError(f"unknown decimation kind {d.kind}")
    if d.bucket_ns < 0:
        raise RequestError(f"decimation bucket_ns must not be negative, not {d.bucket_ns}")
    if d.bucket_ns and kind in ("none", "every"):
        raise RequestError(f"decimation {kind} takes a factor, not bucket_ns")
    return Decimation(kind, max(1, d.factor), d.bucket_ns)


def _archive_pb(m: dict) -> pb.ArchiveInfo:
    t = m["tag"]
    return pb.ArchiveInfo(tag=t["name"], start=t["start"], end=t["end"], note=t["note"],
                          created=m["created"], node=m["node"],
                          channels=[pb.ArchivedChannel(**c) for c in m["channels"]],
                          missing=m.get("missing", []), empty=m.get("empty", []))


def _tag_pb(t) -> pb.Tag:
    return pb.Tag(name=t.name, start=t.start, end=t.end, channels=list(t.channels or ()),
                  note=t.note, created=t.created)


def _stats_pb(s: ChannelStats, horizon: float, subscribers: int,
              stalled: int = 0) -> pb.ChannelStats:
    msg = pb.ChannelStats(
        channel=s.channel, datagrams=s.datagrams, records=s.records, rejects=s.rejects,
        kernel_drops=s.kernel_drops, oversize=s.oversize, dropped_records=s.dropped_records,
        clock_skew=s.clock_skew, datagrams_per_s=s.datagrams_per_s,
        records_per_s=s.records_per_s, restarts=s.restarts, error=s.error,
        status=STATUS_PB.get(s.status, pb.CHANNEL_STATUS_UNSPECIFIED), failure=s.failure,
        stored_records=s.stored_records, bytes=s.bytes, segments=s.segments,
        horizon_s=horizon, subscribers=subscribers, not_stored=s.not_stored,
        live_stalled=stalled)
    for name in ("first_time", "last_time", "first_received", "last_received"):
        value = getattr(s, name)
        if value is not None:
            setattr(msg, name, value)
    return msg


def _serialize(message) -> bytes:
    """Messages, or messages already serialized (batches, written by hand)."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def _handlers(servicer: Servicer) -> grpc.GenericRpcHandler:
    """The service's methods from the .proto's descriptor, with `_serialize`."""
    methods = {}
    for m in pb.DESCRIPTOR.services_by_name["SpeedData"].methods:
        request = getattr(pb, m.input_type.name)
        make = grpc.unary_stream_rpc_method_handler if m.server_streaming else \
            grpc.unary_unary_rpc_method_handler
        methods[m.name] = make(getattr(servicer, m.name),
                               request_deserializer=request.FromString,
                               response_serializer=_serialize)
    return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)


# ---- the server -----------------------------------------------------------------------------

async def start(service: Service, address: str = "127.0.0.1:50051",
                token: str | None = None) -> tuple[grpc.aio.Server, int]:
    """Serve on ``address`` (host:port; port 0 picks one); returns the server and its port.
    It runs on the current event loop, beside the web app and the hub."""
    server = grpc.aio.server(interceptors=[MalformedRequests()], options=[("grpc.max_send_message_length", MAX_MESSAGE),
                                      ("grpc.max_receive_message_length", MAX_MESSAGE),
                                      ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handlers(Servicer(service, token)),))
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as e:
        raise SpeedDataError(f"cannot serve gRPC on {address}: {e}",
                             hint="pick another --grpc HOST:PORT") from None
    await server.start()
    for name in (SERVICE_NAME, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC on %s", address.rsplit(":", 1)[0] + f":{port}")
    return server, port
