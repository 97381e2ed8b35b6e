"""What every gRPC method of a serve passes, whatever its service (SpeedData's, health
checking, reflection): bytes that are not its request message answer INVALID_ARGUMENT,
never UNKNOWN or INTERNAL. And standard health checking with its List method."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2


class _Malformed:
    """A request whose bytes are not the method's message (see `MalformedRequests`)."""

    def __init__(self, error: str):
        self.error = error


class MalformedRequests(grpc.aio.ServerInterceptor):
    """Every method of the server (SpeedData's, health checking, reflection) answers bytes
    that are not its request message with INVALID_ARGUMENT naming the problem; grpcio's own
    answer is UNKNOWN, or INTERNAL, with a traceback in the log."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse = handler.request_deserializer
        method = details.method

        def deserialize(data: bytes) -> Any:
            try:
                return parse(data)
            except DecodeError as e:
                return _Malformed(f"{method}: the request is not the method's message: {e}")

        kind = ("stream" if handler.request_streaming else "unary") + "_" + \
            ("stream" if handler.response_streaming else "unary")
        behaviour = _checked(getattr(handler, kind), handler.request_streaming)
        return handler._replace(request_deserializer=deserialize, **{kind: behaviour})


def _checked(behaviour: Callable, streaming_requests: bool) -> Callable:
    """``behaviour`` that aborts with INVALID_ARGUMENT on a `_Malformed` request."""
    async def refuse(context, request: _Malformed) -> None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.error)

    def requests(request, context) -> Any:
        if not streaming_requests:
            return request

        async def checked():
            async for item in request:
                if isinstance(item, _Malformed):
                    await refuse(context, item)
                yield item
        return checked()

    if inspect.isasyncgenfunction(behaviour):
        async def generator(request, context):
            if isinstance(request, _Malformed):
                await refuse(context, request)
            async for response in behaviour(requests(request, context), context):
                yield response
        return generator

    async def coroutine(request, context):
        if isinstance(request, _Malformed):
            await refuse(context, request)
        result = behaviour(requests(request, context), context)
        return await result if inspect.isawaitable(result) else result
    return coroutine


class HealthServicer(health.aio.HealthServicer):
    """Standard health checking, with the ``List`` method that grpcio-health-checking's
    servicer declares but leaves unimplemented (it would answer UNKNOWN)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: dict[str, int] = {}

    async def set(self, service: str, status: Any) -> None:
        self.statuses[service] = status
        await super().set(service, status)

    async def List(self, request: Any, context: Any) -> Any:
        return health_pb2.HealthListResponse(statuses={
            name: health_pb2.HealthCheckResponse(status=status)
            for name, status in self.statuses.items()})
