"""The one check of the server's token, whatever the transport: a REST call and the live
WebSocket over HTTP, a gRPC call. A token is presented as ``Authorization: Bearer <token>``
(header or gRPC metadata), or, where a browser cannot set headers (a WebSocket), as
``?token=``."""

from __future__ import annotations

import hmac

from ..errors import Unauthenticated


def presented(authorization: str | None, query: str | None = None) -> str:
    """The token a request presents: its ``?token=``, else its ``Bearer`` credential."""
    if query:
        return query
    scheme, _, credential = (authorization or "").strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""


def check(token: str | None, given: str, what: str) -> None:
    """Unauthenticated, naming ``what`` needs the token, unless ``given`` is the server's
    ``token`` (or it has none). Compared in constant time."""
    if token and not hmac.compare_digest(given.encode(), token.encode()):
        raise Unauthenticated(f"{what} needs the server's token",
                              hint="send 'Authorization: Bearer <token>'")
