"""What every web request passes before its handler runs, on every route (pages, assets, the
REST API and the live WebSocket): a ``Host`` the server is known by, a body within
``limits.request_bytes``; and what every answer and log line leaves out (the ``Server``
header, credentials).

Why the Host: a page on ``evil.example`` whose name an attacker re-points at 127.0.0.1 (DNS
rebinding) is, to the browser, of the same origin as the server, so an Origin check alone
lets it change and read everything. The page's requests still name ``evil.example`` in
``Host``; a server that answers only to its own names closes the hole (as Jupyter and Vite
do). IP literals are always allowed: rebinding needs a name.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
from collections.abc import Iterable
from typing import Any

import tornado.httputil
import tornado.web

from ..errors import (HTTP_CODES, LengthRequired, LimitExceeded, Misdirected, RequestError,
                     SpeedDataError, on_surface, public_message, status_of)

access_log = logging.getLogger("tornado.access")

_WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


class Hosts:
    """The names a web server answers to: ``localhost``, any IP literal, the name it is
    bound to, the machine's own names when bound to every interface, and the names the
    config gives (``web.hosts``; ``*.lab.example`` allows every name under lab.example)."""

    def __init__(self, bind: str, extra: Iterable[str] = ()):
        names = {"localhost"}
        if bind in _WILDCARD_BINDS:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        elif not _is_ip(bind):
            names.add(bind.lower())
        self.names = names
        self.suffixes: set[str] = set()
        for item in extra:
            item = item.strip().lower().rstrip(".")
            if item.startswith("*."):
                self.suffixes.add(item[1:])         # ".lab.example"
            elif item:
                self.names.add(item)

    def allows(self, host: str) -> bool:
        """Whether a request's host name (no port) is one of this server's."""
        name = host.lower().rstrip(".")
        return _is_ip(name) or name in self.names or name.endswith(".localhost") or \
            any(name.endswith(s) for s in self.suffixes)

    def __str__(self) -> str:
        shown = sorted(self.names) + sorted(f"*{s}" for s in self.suffixes)
        return ", ".join(shown[:20]) + (f" and {len(shown) - 20} more" if len(shown) > 20
                                        else "") + " and IP addresses"


class JsonErrors(tornado.web.RequestHandler):
    """Every error of the web app as one JSON body, ``{"error": message, "code": gRPC code
    name}``, written in Tornado's documented hook (`write_error`): a SpeedData error with
    the HTTP status of its kind (`speeddata.errors.STATUS`), Tornado's own refusals by
    theirs, anything else INTERNAL with no details (those go to the log)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, SpeedDataError):
            code, status_code = status_of(error)
            self.set_status(status_code)
            message = on_surface(str(error), "rest")
        elif isinstance(error, tornado.web.HTTPError) or error is None:
            code = HTTP_CODES.get(status_code,
                                  "INVALID_ARGUMENT" if status_code < 500 else "INTERNAL")
            # Tornado keeps log_message as a format string, '%' doubled where it has no args
            message = error.log_message % error.args if error is not None and \
                error.log_message else self._reason
        else:
            code, message = "INTERNAL", "internal error"
        self.set_header("Content-Type", "application/json")
        message = public_message(message, self.settings.get("private_paths", ()))
        self.finish(json.dumps({"error": message, "code": code}))

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        if isinstance(value, SpeedDataError):
            return                 # a refusal, said to the caller; the access log has it
        super().log_exception(typ, value, tb)


@tornado.web.stream_request_body
class Refused(JsonErrors):
    """Answers a request that the gate refused, before its body is read (the connection
    then closes, so the body is never taken in)."""

    def initialize(self, error: SpeedDataError) -> None:
        self.error = error

    def prepare(self) -> None:
        # the answer goes out at once and the connection closes after it; until then the
        # body is read and dropped, not refused again with Tornado's bare 400
        connection = self.request.connection
        if connection is not None and hasattr(connection, "set_max_body_size"):
            connection.set_max_body_size(1 << 62)
        raise self.error

    def data_received(self, chunk: bytes) -> None:
        pass                                   # never kept


class GuardedApplication(tornado.web.Application):
    """A Tornado application whose every route is behind the gate: an unknown Host is 421,
    a body over the limit 413 and a chunked body 411, all answered from the headers."""

    def __init__(self, routes: list, *, hosts: Hosts, body_limit: int | None,
                 **settings: Any):
        super().__init__(routes, transforms=[NoServerHeader], log_function=log_request,
                         **settings)
        self.hosts = hosts
        self.body_limit = body_limit

    def find_handler(self, request: tornado.httputil.HTTPServerRequest,
                     **kwargs: Any) -> tornado.web._HandlerDelegate:
        refusal = self.refusal(request)
        if refusal is not None:
            return self.get_handler_delegate(request, Refused, {"error": refusal})
        return super().find_handler(request, **kwargs)

    def refusal(self, request: tornado.httputil.HTTPServerRequest) -> SpeedDataError | None:
        if not self.hosts.allows(request.host_name):
            return Misdirected(f"this server does not answer to the host name "
                               f"{request.host_name[:80]!r}", hint=f"it answers to "
                               f"{self.hosts}; add the name to web.hosts in the config")
        length = request.headers.get("Content-Length")
        if length is not None and self.body_limit is not None:
            if not (length.isascii() and length.isdigit()):
                return RequestError("Content-Length is not a number")
            if int(length) > self.body_limit:
                return LimitExceeded(f"the request body is {int(length)} bytes, more than "
                                     f"the limit of {self.body_limit}",
                                     hint="limits.request_bytes in the config sets it")
        elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            return LengthRequired("send the request body with a Content-Length, not chunked")
        return None


class NoServerHeader(tornado.web.OutputTransform):
    """Every answer without ``Server: TornadoServer/x.y``: the version helps nobody but an
    attacker."""

    def transform_first_chunk(self, status_code: int, headers: tornado.httputil.HTTPHeaders,
                              chunk: bytes, finishing: bool
                              ) -> tuple[int, tornado.httputil.HTTPHeaders, bytes]:
        headers.pop("Server", None)
        return status_code, headers, chunk


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log: every request at DEBUG (``-v`` shows it), refusals at INFO, errors
    at ERROR; credentials in the URL are never written (`redact`)."""
    status = handler.get_status()
    level = logging.DEBUG if status < 400 else logging.INFO if status < 500 else logging.ERROR
    if access_log.isEnabledFor(level):
        request = handler.request
        access_log.log(level, "%d %s %s (%s) %.1f ms", status, request.method,
                       redact(request.uri or ""), request.remote_ip,
                       1000.0 * request.request_time())


_CREDENTIAL = re.compile(r"((?:^|[?&;])(?:token|access_token|password|auth)=)[^&;#\s]*",
                         re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the values of ``token=`` (and alike) parameters, and each of
    ``secrets``, replaced by ``***``."""
    text = _CREDENTIAL.sub(r"\1***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """A log handler's filter that takes credentials out of every line (`redact`): a wrong
    guess of the token in a URL is a secret too."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
