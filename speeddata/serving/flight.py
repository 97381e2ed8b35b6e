"""The Arrow Flight endpoint of ``speeddata serve`` (``flight:`` in the config, or
``--flight HOST:PORT``): channels' ranges as Arrow record batches, for any Flight client
(pyarrow, DuckDB and polars through pyarrow, Java, Go, Rust, C++) without SpeedData's .proto.

- ``list_flights``: one flight per channel, with its schema and record count.
- ``get_flight_info``: a descriptor whose path is ``[channel]`` (everything held) or whose
  command is a ticket (below): its schema, its exact record count (-1 when decimated or
  held by another node) and one endpoint with the ticket to fetch it.
- ``do_get``: a ticket, JSON text::

      {"channel": "rig", "start": "2026-12-07T10:00:00Z", "end": 1765101660000000000,
       "signals": ["x", "y"], "decimation": "minmax:100"}

  Every key but ``channel`` is optional; times are ns or what `speeddata.timeutil.to_ns`
  reads. The batches are the service's own chunks as they are decoded (threads, as a local
  read), so memory stays bounded by a chunk, not the range.

The same token as gRPC and REST (``authorization: Bearer TOKEN`` on every call) and the same
``limits:`` (the service checks them). Errors come as Flight's unauthenticated, unauthorized
and unavailable errors, or as a server error whose text begins with the gRPC code name
(``NOT_FOUND: no channel 'rig' ...``), never with a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from ..arrow import to_arrow
from ..columns import Columns
from ..decimation import Decimation
from ..errors import (Forbidden, RequestError, SpeedDataError, Unauthenticated, Unavailable,
                      public_message, status_of)
from ..prefetch import prefetch
from ..timeutil import to_ns
from . import tokens
from .service import Service

log = logging.getLogger("speeddata.flight")
TICKET_KEYS = {"channel", "start", "end", "signals", "decimation"}
CHUNK_BYTES = 16 << 20      # columns decoded at once (one parallel decode)
BATCH_ROWS = 1 << 16        # rows per record batch sent: Flight streams these best
AHEAD = 2                   # chunks decoded ahead of the one being sent


def ticket_of(channel: str, start: int = 0, end: int | None = None,
              signals: list[str] | None = None, decimation: str = "") -> bytes:
    """A do_get ticket (JSON text) for a channel's range."""
    out: dict[str, Any] = {"channel": channel, "start": int(start)}
    if end is not None:
        out["end"] = int(end)
    if signals:
        out["signals"] = list(signals)
    if decimation:
        out["decimation"] = decimation
    return json.dumps(out).encode()


class Request:
    """A checked ticket: channel, range, signals and decimation."""

    def __init__(self, raw: bytes):
        try:
            fields = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise RequestError("a SpeedData Flight ticket is JSON text, such as "
                               '{"channel": "rig", "start": "now-1m"}') from None
        if not isinstance(fields, dict) or not isinstance(fields.get("channel"), str):
            raise RequestError('a SpeedData Flight ticket is a JSON object naming its '
                               '"channel"')
        unknown = set(fields) - TICKET_KEYS
        if unknown:
            raise RequestError(f"unknown ticket key(s) {', '.join(sorted(unknown))}",
                               hint=f"keys are: {', '.join(sorted(TICKET_KEYS))}")
        self.channel: str = fields["channel"]
        start, end = fields.get("start"), fields.get("end")
        self.start = to_ns(start, what="start") if start not in (None, "", 0) else 0
        self.end = to_ns(end, what="end") if end not in (None, "", 0) else None
        signals = fields.get("signals") or None
        if signals is not None and (not isinstance(signals, list) or
                                    not all(isinstance(s, str) for s in signals)):
            raise RequestError('"signals" is a list of signal names')
        self.signals: list[str] | None = signals
        text = fields.get("decimation") or ""
        if not isinstance(text, str):
            raise RequestError('"decimation" is text, such as "minmax:100" or "every:10"')
        self.decimation_text = text
        self.decimation = Decimation.parse(text) if text else None


class _TokenCheck(flight.ServerMiddlewareFactory):
    """Every call presents the server's token (``authorization: Bearer TOKEN``)."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def start_call(self, info, headers):
        given = tokens.presented(next(iter(headers.get("authorization", [])), ""))
        try:
            tokens.check(self.token, given, "every Flight call")
        except Unauthenticated as e:
            raise flight.FlightUnauthenticatedError(str(e)) from None
        return None


def _flight_error(e: BaseException, private_paths=()) -> Exception:
    """SpeedData's error as a Flight client sees it (no traceback, no server path)."""
    if not isinstance(e, SpeedDataError):
        log.exception("Flight call failed", exc_info=e)
        return flight.FlightInternalError("internal error (the server's log has it)")
    text = public_message(str(e), private_paths)
    if isinstance(e, Unauthenticated):
        return flight.FlightUnauthenticatedError(text)
    if isinstance(e, Forbidden):
        return flight.FlightUnauthorizedError(text)
    if isinstance(e, Unavailable):
        return flight.FlightUnavailableError(text)
    return flight.FlightServerError(f"{status_of(e)[0]}: {text}")


class FlightServer(flight.FlightServerBase):
    """Flight over one `Service`, on its own threads (Flight's gRPC server)."""

    def __init__(self, service: Service, host: str, port: int, token: str | None = None):
        middleware = {"token": _TokenCheck(token)} if token else {}
        super().__init__(f"grpc://{host}:{port}", middleware=middleware)
        self.service = service
        self.host = host

    # ---- the calls ---------------------------------------------------------------------

    def list_flights(self, context, criteria) -> Iterator[flight.FlightInfo]:
        try:
            infos = [self._info(Request(ticket_of(i.name)), flight.FlightDescriptor.for_path(
                i.name)) for i in self.service.channels()]
        except Exception as e:
            raise _flight_error(e, self.service.private_paths()) from None
        yield from infos

    def get_flight_info(self, context, descriptor) -> flight.FlightInfo:
        try:
            if descriptor.descriptor_type == flight.DescriptorType.PATH:
                path = [p.decode() if isinstance(p, bytes) else p for p in descriptor.path]
                if len(path) != 1:
                    raise RequestError("a descriptor's path is one channel name")
                request = Request(ticket_of(path[0]))
            else:
                request = Request(descriptor.command)
            return self._info(request, descriptor)
        except Exception as e:
            raise _flight_error(e, self.service.private_paths()) from None

    def do_get(self, context, ticket) -> flight.RecordBatchStream:
        try:
            request = Request(ticket.ticket)
            chunks = self._chunks(request)
            first = to_arrow(next(chunks))     # the service sends one, even without records
        except Exception as e:
            raise _flight_error(e, self.service.private_paths()) from None
        return flight.GeneratorStream(first.schema, self._batches(first, chunks))

    def list_actions(self, context):
        return []

    # ---- helpers -----------------------------------------------------------------------

    def _chunks(self, r: Request) -> Iterator[Columns]:
        # decoded ahead on a thread of its own while Flight sends the chunk before
        return prefetch(self.service.query(r.channel, r.start, r.end, r.signals,
                                           r.decimation, chunk_bytes=CHUNK_BYTES),
                        depth=AHEAD, name="speeddata-flight")

    def _batches(self, first: pa.Table, chunks: Iterator[Columns]) -> Iterator[Any]:
        schema = first.schema
        try:
            yield from first.to_batches(max_chunksize=BATCH_ROWS)
            for cols in chunks:
                table = to_arrow(cols)
                if table.schema != schema:                 # an all-null column's type
                    table = table.cast(schema)
                yield from table.to_batches(max_chunksize=BATCH_ROWS)
        except Exception as e:
            raise _flight_error(e, self.service.private_paths()) from None

    def _info(self, r: Request, descriptor) -> flight.FlightInfo:
        schema = to_arrow(self.service.empty_result(r.channel, r.signals, r.decimation)).schema
        count = -1
        if r.decimation is None and not self.service.is_remote(r.channel):
            count = self.service.count(r.channel, r.start, r.end)
        endpoint = flight.FlightEndpoint(ticket_of(
            r.channel, r.start, r.end, r.signals, r.decimation_text), [])
        return flight.FlightInfo(schema, descriptor, [endpoint], count, -1)


def start(service: Service, address: str, token: str | None) -> FlightServer:
    """The Flight server on ``address`` (HOST:PORT, port 0 for any), serving."""
    from ..errors import ConfigError
    host, _, port = address.rpartition(":")
    try:
        return FlightServer(service, host or "127.0.0.1", int(port), token)
    except (OSError, pa.ArrowException) as e:
        raise ConfigError(f"cannot serve Arrow Flight on {address}: {e}",
                          hint="pick another --flight HOST:PORT") from None
