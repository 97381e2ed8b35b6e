"""The Python client of the gRPC service: ``speeddata.Client("127.0.0.1:50051")``.

```python
import speeddata
c = speeddata.Client("127.0.0.1:50051", token="...")      # token: for changes only
c.register_channel("rig", 26010, "rig.avsc")               # a path, JSON text or a dict
for batch in c.subscribe("rig", decimation="minmax:100"):  # Columns, live
    print(batch.time[-1], batch["sine_wave:max"][-1])
cols = c.query("rig", "-10m")                              # Columns, like Channel.read
c.export_hdf5("run.h5", tag="run-42")
```

Errors come back as the SpeedData error of their status code (NOT_FOUND as ChannelNotFound
or TagNotFound, ALREADY_EXISTS as ChannelExists...), with the server's detail.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from . import errors
from .batches import Gather
from .columns import Columns
from .decimation import Decimation
from .schema import load_avro
from .store import Overview
from .timeutil import TimeLike, duration_ns, time_range
from .v1 import speeddata_pb2 as pb
from .v1 import speeddata_pb2_grpc as pb_grpc
from . import wire
from .wire import EncodedColumn, decode

_STATUS = {pb.CHANNEL_STATUS_RUNNING: "running", pb.CHANNEL_STATUS_STARTING: "starting",
           pb.CHANNEL_STATUS_FAILED: "failed", pb.CHANNEL_STATUS_STORED: "stored",
           pb.CHANNEL_STATUS_UNREACHABLE: "unreachable"}
_AGGREGATE = {v: k for k, v in pb.Aggregate.items()}
_TYPE = {v: k for k, v in pb.DataType.items()}
_KIND = {"none": pb.DECIMATION_KIND_NONE, "every": pb.DECIMATION_KIND_EVERY,
         "mean": pb.DECIMATION_KIND_MEAN, "rms": pb.DECIMATION_KIND_RMS,
         "minmax": pb.DECIMATION_KIND_MIN_MAX}
_ERRORS: dict[grpc.StatusCode, type[errors.SpeedDataError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.RequestError,
    grpc.StatusCode.ALREADY_EXISTS: errors.ChannelExists,
    grpc.StatusCode.NOT_FOUND: errors.ChannelNotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.LimitExceeded,
    grpc.StatusCode.UNAVAILABLE: errors.PortUnavailable,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: errors.StoreError,
    grpc.StatusCode.DATA_LOSS: errors.FormatError,
}


@dataclass
class ChannelInfo:
    """A channel as the server describes it."""
    name: str
    status: str                 # running, starting, failed or stored
    port: int
    bind: str
    signals: dict[str, str] = field(default_factory=dict)   # name -> Avro type
    source: str = ""
    decimation: str = "none"
    failure: str = ""
    time_field: str = ""
    node: str = ""              # the cluster node that owns it ("" on a single host)
    unreachable_since: int = 0  # unreachable: the owner's last heartbeat, ns

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{n}</td><td>{t}</td></tr>" for n, t in self.signals.items())
        return (f"<b>{self.name}</b> {self.status} on udp {self.bind}:{self.port}"
                f"<table><tr><th>signal</th><th>type</th></tr>{rows}</table>")


def _error(e: grpc.RpcError, address: str = "") -> errors.SpeedDataError:
    code, detail = e.code(), e.details() or ""
    named = dict(e.trailing_metadata() or ()).get(errors.GRPC_ERROR_KEY)
    raised = errors.by_name(named) if isinstance(named, str) else None
    if raised is not None and raised is not errors.DecodeError:
        message, hint = errors.split_hint(detail)     # the server's own error, as it was
        return raised(message, hint=hint)
    cls = _ERRORS.get(code, errors.SpeedDataError)
    if code == grpc.StatusCode.NOT_FOUND and detail.startswith("no tag"):
        cls = errors.TagNotFound
    elif code == grpc.StatusCode.ALREADY_EXISTS and "tag" in detail.split(" ", 2)[:2]:
        cls = errors.TagExists
    elif code == grpc.StatusCode.UNAVAILABLE and "UDP port" not in detail:
        # a server's own word (a node of its cluster unreachable, named) stands as it is;
        # grpc's ("failed to connect to all addresses...") is said to be about the server
        if "unreachable since" in detail or detail.startswith("the server"):
            return errors.Unavailable(detail)
        return errors.Unavailable(
            f"no SpeedData server answers at {address or 'that address'}",
            hint="start one with `speeddata serve`, which prints its gRPC address, or pass "
                 "the address a running one printed")
    if cls is errors.SpeedDataError:
        return errors.SpeedDataError(f"{code.name}: {detail}")
    return cls(detail)


def _ns(value: TimeLike | None) -> int:
    from .timeutil import to_ns
    return 0 if value is None else to_ns(value)


def _decimation(d: Decimation | str | int | None) -> pb.Decimation:
    if not isinstance(d, Decimation):
        d = Decimation.parse(d)
    return pb.Decimation(kind=_KIND[d.kind], factor=d.factor, bucket_ns=d.bucket_ns)


_AGG_NAMES = {number: name[len("AGGREGATE_"):].lower() for number, name in _AGGREGATE.items()}
_TYPE_NAMES = {number: name[len("DATA_TYPE_"):].lower() for number, name in _TYPE.items()}


def batch_columns(batch: pb.Batch | bytes | memoryview) -> Columns:
    """A Batch (a message, or its serialized bytes) as Columns (decimated columns keyed
    "signal:aggregate"). From bytes, numeric columns are views of them: no copy."""
    if isinstance(batch, (bytes, memoryview)):
        return wire.read_batch(memoryview(batch), _AGG_NAMES, _TYPE_NAMES)
    columns = [EncodedColumn(c.name, _AGG_NAMES[c.aggregate], _TYPE_NAMES[c.type], c.values,
                             c.offsets, c.validity) for c in batch.columns]
    return decode(batch.time, columns, batch.channel)


def _response(raw: bytes) -> tuple[Columns | None, dict[int, int]]:
    """A serialized QueryResponse or SubscribeResponse: its batch (field 1) and its
    varint fields by number."""
    batch, numbers = None, {}
    for number, value in wire.read_fields(memoryview(raw)):
        if number == 1 and isinstance(value, memoryview):
            batch = wire.read_batch(value, _AGG_NAMES, _TYPE_NAMES)
        elif isinstance(value, int):
            numbers[number] = value
    return batch, numbers


class Client:
    """A connection to a SpeedData server's gRPC service: the store's verbs from anywhere.

    Parameters
    ----------
    address : str
        ``HOST:PORT`` of the server's gRPC service (what ``speeddata serve`` prints).
    token : str, optional
        The server's token, for calls that change something.
    timeout : float or None
        Seconds for one call (streams have none).

    Errors are the server's own (`speeddata.TagExists`, `speeddata.ChannelNotFound`,
    `speeddata.EmptyRange`, ...) with its hint; a server that does not answer is
    `speeddata.Unavailable`, naming the address. Use as a context manager, or ``close()``.
    """

    def __init__(self, address: str = "127.0.0.1:50051", *, token: str | None = None,
                 timeout: float | None = 30.0):
        self.address = address
        self.timeout = timeout
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20)])
        self._stub = pb_grpc.SpeedDataStub(self._channel)
        # batches come as bytes, read by hand (speeddata.wire): their columns are not copied
        self._raw = {name: self._channel.unary_stream(
            f"/{pb.DESCRIPTOR.services_by_name['SpeedData'].full_name}/{name}",
            request_serializer=request.SerializeToString, response_deserializer=None)
            for name, request in (("Query", pb.QueryRequest),
                                  ("Subscribe", pb.SubscribeRequest))}

    def __repr__(self) -> str:
        return f"<speeddata.Client {self.address}>"

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method: str, request, *, stream: bool = False, raw: bool = False):
        try:
            result = (self._raw[method] if raw else getattr(self._stub, method))(
                request, metadata=self._metadata,
                timeout=None if stream else self.timeout)
        except grpc.RpcError as e:
            raise _error(e, self.address) from None
        return self._stream(result) if stream else result

    def _stream(self, responses) -> Iterator:
        try:
            yield from responses
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise _error(e, self.address) from None
        finally:
            responses.cancel()

    # ---- channels ------------------------------------------------------------------------

    def register_channel(self, name: str, port: int, schema: Any, *,
                         time_field: str | None = "time", time_unit: str | None = None,
                         decimation: str = "", bind: str = "", max_bytes: int = 0,
                         max_age: float = 0) -> ChannelInfo:
        """Register a channel. ``schema`` is a dict, Avro JSON text or a .avsc path (read
        here, on the client). ``time_field=None``: records are stamped on receipt."""
        text = json.dumps(load_avro(schema))
        request = pb.RegisterChannelRequest(
            name=name, port=port, schema=text, bind=bind, time_field=time_field or "",
            stamp_on_receipt=time_field is None, time_unit=time_unit or "",
            decimation=str(decimation or ""))
        if max_bytes or max_age:
            request.retention.max_bytes = int(max_bytes)
            request.retention.max_age_ns = int(max_age * 1e9)
        return _info(self._call("RegisterChannel", request))

    def deregister_channel(self, name: str) -> None:
        self._call("DeregisterChannel", pb.DeregisterChannelRequest(name=name))

    def delete_channel_data(self, name: str) -> None:
        self._call("DeleteChannelData", pb.DeleteChannelDataRequest(name=name))

    def list_channels(self, status: str | None = None) -> list[ChannelInfo]:
        code = {v: k for k, v in _STATUS.items()}[status] if status else \
            pb.CHANNEL_STATUS_UNSPECIFIED
        return [_info(c) for c in self._call("ListChannels",
                                             pb.ListChannelsRequest(status=code)).channels]

    def get_channel(self, name: str) -> ChannelInfo:
        return _info(self._call("GetChannel", pb.GetChannelRequest(name=name)))

    def get_schema(self, name: str) -> dict:
        """The channel's Avro schema (as stored, with its time field)."""
        return json.loads(self._call("GetSchema", pb.GetSchemaRequest(name=name)).avro_json)

    def available_ports(self, limit: int = 0) -> list[int]:
        return list(self._call("ListAvailablePorts",
                               pb.ListAvailablePortsRequest(limit=limit)).ports)

    # ---- data ----------------------------------------------------------------------------

    def subscribe(self, channels: str | Sequence[str], signals: Sequence[str] | None = None,
                  decimation: Decimation | str | int | None = None, *,
                  resume_from: dict[str, int] | None = None,
                  resume_from_time: dict[str, TimeLike] | None = None,
                  reconnect: bool = False) -> "Subscription":
        """Follow channels live: iterate for Columns batches (``batch.channel`` says whose).

        Parameters
        ----------
        channels : str or list of str
        signals : list of str, optional
            All by default.
        decimation : str, int or Decimation, optional
            ``"minmax:100"``, ``10`` (every 10th), ...; none by default.
        resume_from : dict, optional
            Channel -> record number (``subscription.next_record`` of an earlier stream of
            this server's life): what the live ring still holds from there comes first.
        resume_from_time : dict, optional
            Channel -> time: records from then on, from the store, then the ring, then
            live (across a restart of the server too).
        reconnect : bool
            When the server goes away (restarted, killed, the network), connect again and
            resume each channel by time just after the last record received: nothing twice
            and, for what the server stored, nothing lost. Iteration then ends only with
            ``close()``.

        ``subscription.missed`` counts records lost by falling behind.
        """
        names = [channels] if isinstance(channels, str) else list(channels)
        request = pb.SubscribeRequest()
        for name in names:
            c = request.channels.add(channel=name, signals=list(signals or ()),
                                     decimation=_decimation(decimation))
            if resume_from and name in resume_from:
                c.resume_from = int(resume_from[name])
            if resume_from_time and name in resume_from_time:
                c.resume_from_time = _ns(resume_from_time[name])
        return Subscription(self, request, reconnect=reconnect)

    def query(self, channel: str, start: TimeLike | None = None, end: TimeLike | None = None,
              signals: Sequence[str] | None = None,
              decimation: Decimation | str | int | None = None, *, buckets: int = 0,
              max_rows: int = 0) -> Columns:
        """The channel's records in [start, end) as Columns, like `Channel.read`.

        Parameters
        ----------
        channel : str
        start, end : time, optional
            int ns, datetime, numpy.datetime64 or text (ISO 8601, ``now-5m``); open-ended
            when None.
        signals : list of str, optional
            All by default.
        decimation : str, int or Decimation, optional
            Applied to the rows read (``"minmax:100"``, ``10`` for every 10th).
        buckets : int
            An overview of that many buckets instead, in its flat form (``"x:max"``);
            `overview` gives it as an `Overview`.
        max_rows : int
            Rows per batch on the wire at most (0: about 16 MB a batch).

        Returns
        -------
        Columns
            A range without records keeps its signals and dtypes, as locally.
        """
        gather = Gather(channel)
        for batch, bound in self._query(channel, start, end, signals, decimation,
                                        buckets=buckets, max_rows=max_rows):
            gather.add(batch, bound)
        return gather.result()

    def overview(self, channel: str, start: TimeLike | None = None,
                 end: TimeLike | None = None, buckets: int = 1200,
                 signals: Sequence[str] | None = None) -> Overview:
        """Per bucket of equal time width over [start, end): ``ov["x"].max`` and the rest,
        the same `Overview` as `Channel.overview` gives locally (``ov.as_columns()`` is
        the flat form, ``"x:max"``, that ``query(buckets=N)`` returns)."""
        lo, hi = _range(start, end)
        cols = self.query(channel, start, end, signals, buckets=buckets)
        if hi == 0:          # open end: the last bucket's end, from the buckets' width
            width = int(cols.time[1] - cols.time[0]) if len(cols) > 1 else 1
            hi = int(cols.time[-1]) + width if len(cols) else lo
        return Overview.from_columns(cols, hi)

    def iter_query(self, channel: str, start: TimeLike | None = None,
                   end: TimeLike | None = None, signals: Sequence[str] | None = None,
                   decimation: Decimation | str | int | None = None, *, buckets: int = 0,
                   max_rows: int = 0) -> Iterator[Columns]:
        """The batches of a query as they arrive (memory stays bounded)."""
        for batch, _ in self._query(channel, start, end, signals, decimation,
                                    buckets=buckets, max_rows=max_rows):
            yield batch

    def _query(self, channel, start, end, signals, decimation, *, buckets: int,
               max_rows: int) -> Iterator[tuple[Columns, int]]:
        lo, hi = _range(start, end)
        request = pb.QueryRequest(channels=[channel], start=lo, end=hi,
                                  signals=list(signals or ()), buckets=buckets,
                                  max_rows=max_rows)
        if decimation is not None:
            request.decimation.CopyFrom(_decimation(decimation))
        for response in self._call("Query", request, stream=True, raw=True):
            batch, numbers = _response(response)
            if batch is not None:
                yield batch, numbers.get(3, 0)

    def query_avro(self, channel: str, path: str | os.PathLike,
                   start: TimeLike | None = None, end: TimeLike | None = None) -> str:
        """Save the stored blocks of [start, end) as an Avro object container file."""
        with open(path, "wb") as f:
            for data in self.iter_avro(channel, start, end):
                f.write(data)
        return os.fspath(path)

    def iter_avro(self, channel: str, start: TimeLike | None = None,
                  end: TimeLike | None = None) -> Iterator[bytes]:
        """The Avro object container file of [start, end)'s stored blocks, in pieces."""
        lo, hi = _range(start, end)
        request = pb.QueryRequest(channels=[channel], start=lo, end=hi,
                                  format=pb.QUERY_FORMAT_AVRO)
        for response in self._call("Query", request, stream=True):
            yield response.avro.data

    def query_raw(self, request: pb.QueryRequest) -> Iterator[bytes]:
        """A Query's responses as the server serialized them (a node passes them on)."""
        return self._call("Query", request, stream=True, raw=True)

    # ---- tags and export -----------------------------------------------------------------

    def tag(self, name: str, start: TimeLike, end: TimeLike,
            channels: Sequence[str] | None = None, note: str = "", *, replace: bool = False):
        lo, hi = time_range(start, end)
        return _tag(self._call("CreateTag", pb.CreateTagRequest(
            name=name, start=lo, end=hi, channels=list(channels or ()), note=note,
            replace=replace)))

    def tags(self) -> list[dict]:
        return [_tag(t) for t in self._call("ListTags", pb.ListTagsRequest()).tags]

    def untag(self, name: str) -> None:
        self._call("DeleteTag", pb.DeleteTagRequest(name=name))

    def export_hdf5(self, path: str | os.PathLike, start: TimeLike | None = None,
                    end: TimeLike | None = None, channels: Sequence[str] | None = None,
                    signals: Sequence[str] | None = None, *, tag: str = "",
                    allow_empty: bool = False,
                    progress: Callable[[float], None] | None = None) -> str:
        """Export a tag or a range to a local HDF5 file; ``progress(fraction)`` as it goes.
        The file appears complete or not at all. A range without any record is
        `speeddata.EmptyRange` unless ``allow_empty``."""
        lo, hi = (0, 0) if tag else _range(start, end)
        request = pb.ExportRequest(tag=tag, start=lo, end=hi, channels=list(channels or ()),
                                   signals=list(signals or ()), allow_empty=allow_empty)
        path = os.fspath(path)
        tmp = f"{path}.part"
        try:
            with open(tmp, "wb") as f:
                for response in self._call("Export", request, stream=True):
                    f.write(response.data)
                    if progress:
                        progress(response.progress)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    # ---- cluster -------------------------------------------------------------------------

    def cluster(self) -> dict:
        """The cluster the server belongs to: its node, NATS, the nodes it hears."""
        c = self._call("GetCluster", pb.GetClusterRequest())
        return {"clustered": c.clustered, "node": c.node, "nats": list(c.nats),
                "connected": c.connected, "problem": c.problem,
                "live_dropped": c.live_dropped, "retention_paused": c.retention_paused,
                "nodes": [{"name": n.name, "grpc": n.grpc, "web": n.web,
                           "heartbeat": n.heartbeat, "reachable": n.reachable,
                           "channels": list(n.channels)} for n in c.nodes]}

    def forget_node(self, node: str, unreachable_for: float | str = 0.0) -> list[str]:
        """Release every channel of a cluster node that has been unreachable for at least
        ``unreachable_for`` (seconds, or text such as ``"10m"``), so that their names can be
        registered on another node;
        the channels released. `speeddata.NodeAlive` while it beats (or has not been away
        that long), `speeddata.NodeNotFound` for no such node."""
        ns = duration_ns(unreachable_for, what="unreachable_for")
        return list(self._call("ForgetNode", pb.ForgetNodeRequest(
            node=node, unreachable_for_ns=ns)).released)

    def archive(self, tag: str, partial: bool = False) -> dict:
        """Archive a tag's range in the cluster's object store; its manifest. It takes as
        long as copying the range takes: no timeout. A channel whose node is unreachable
        is `speeddata.ClusterUnavailable` naming it, unless ``partial`` (the manifest's
        ``missing`` then lists it)."""
        try:
            return _archive(self._stub.Archive(pb.ArchiveRequest(tag=tag, partial=partial),
                                               metadata=self._metadata))
        except grpc.RpcError as e:
            raise _error(e, self.address) from None

    def archives(self) -> list[dict]:
        return [_archive(a) for a in self._call("ListArchives",
                                                pb.ListArchivesRequest()).archives]

    # ---- statistics ----------------------------------------------------------------------

    def stats(self, channels: Sequence[str] | None = None) -> dict[str, dict]:
        """Per channel: ingest counters, what the store holds, and the horizon (s)."""
        response = self._call("GetStats", pb.GetStatsRequest(channels=list(channels or ())))
        out = {}
        for s in response.channels:
            d = {f.name: getattr(s, f.name) for f in s.DESCRIPTOR.fields
                 if f.name not in ("rejects", "not_stored", "status") and
                 (not f.has_presence or s.HasField(f.name))}
            d["rejects"] = dict(s.rejects)
            d["not_stored"] = dict(s.not_stored)
            d["status"] = _STATUS.get(s.status, "")
            out[s.channel] = d
        return out


class Subscription:
    """An open Subscribe stream: iterate for Columns; ``close()`` (or leaving a ``with``
    block) ends it and frees the server's slot."""

    RETRY = (0.1, 0.2, 0.5, 1.0, 2.0)      # s between tries to connect again

    def __init__(self, client: Client, request: pb.SubscribeRequest, *,
                 reconnect: bool = False):
        self._client = client
        self._request = request
        self.reconnect = reconnect
        self._closed = threading.Event()
        self._responses = client._raw["Subscribe"](request, metadata=client._metadata)
        self.next_record: dict[str, int] = {}
        self.missed: dict[str, int] = {}
        self.last_time: dict[str, int] = {}        # of the last record received, ns
        self.reconnects = 0

    def __iter__(self) -> Iterator[Columns]:
        tries = 0
        while True:
            try:
                for response in self._responses:
                    batch, numbers = _response(response)
                    if batch is None:
                        continue
                    tries = 0
                    name = batch.channel
                    self.missed[name] = self.missed.get(name, 0) + numbers.get(4, 0)
                    self.next_record[name] = numbers.get(3, 0)
                    if len(batch):
                        self.last_time[name] = int(batch.time[-1])
                    yield batch
                if not self.reconnect or self._closed.is_set():
                    return
            except grpc.RpcError as e:
                if self._closed.is_set() or (e.code() == grpc.StatusCode.CANCELLED and
                                             not self.reconnect):
                    return
                if not self.reconnect or e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                                          grpc.StatusCode.CANCELLED,
                                                          grpc.StatusCode.INTERNAL):
                    raise _error(e, self._client.address) from None
            if self._closed.wait(self.RETRY[min(tries, len(self.RETRY) - 1)]):
                return
            tries += 1
            self._reopen()

    def _reopen(self) -> None:
        """The same channels again, each from just after the last record received."""
        request = pb.SubscribeRequest()
        request.CopyFrom(self._request)
        for c in request.channels:
            if c.channel in self.last_time:
                c.ClearField("resume_from")
                c.resume_from_time = self.last_time[c.channel] + 1
        self._request = request
        self.reconnects += 1
        self._responses = self._client._raw["Subscribe"](request,
                                                         metadata=self._client._metadata)

    def close(self) -> None:
        self._closed.set()
        self._responses.cancel()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _range(start, end) -> tuple[int, int]:
    if start is None and end is None:
        return 0, 0
    if end is None:
        return _ns(start), 0
    return time_range(start if start is not None else 0, end)


def _info(c: pb.ChannelInfo) -> ChannelInfo:
    return ChannelInfo(c.name, _STATUS.get(c.status, ""), c.port, c.bind,
                       {s.name: s.avro_type for s in c.signals}, c.source, c.decimation,
                       c.failure, c.time_field, c.node, c.unreachable_since)


def _archive(a: pb.ArchiveInfo) -> dict:
    return {"tag": {"name": a.tag, "start": a.start, "end": a.end, "note": a.note},
            "created": a.created, "node": a.node,
            "channels": [{"channel": c.channel, "bytes": c.bytes, "node": c.node}
                         for c in a.channels],
            "missing": list(a.missing), "empty": list(a.empty)}


def _tag(t: pb.Tag) -> dict:
    return {"name": t.name, "start": t.start, "end": t.end,
            "channels": list(t.channels) or None, "note": t.note, "created": t.created}
