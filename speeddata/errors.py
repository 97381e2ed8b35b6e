"""The SpeedData error hierarchy: catch ``SpeedDataError`` to catch them all.

Errors that are also a builtin inherit from it too, so ``except KeyError`` keeps working
for code that does not know SpeedData.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable


class SpeedDataError(Exception):
    """Root of every error SpeedData raises on purpose.

    ``hint``, when set, tells the user what to do next.
    """

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        text = Exception.__str__(self)      # not KeyError's, which would quote it
        return f"{text} (hint: {self.hint})" if self.hint else text


class SchemaError(SpeedDataError, ValueError):
    """A channel schema that SpeedData cannot use; the message names the field."""


class DecodeError(SpeedDataError, ValueError):
    """Bytes that are not records of the channel's schema; the message names the byte offset."""

    def __init__(self, message: str, *, reason: str, offset: int, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.reason = reason
        self.offset = offset


class ChannelNotFound(SpeedDataError, KeyError):
    """No channel of that name in the store or registry."""


class ChannelExists(SpeedDataError, ValueError):
    """A channel of that name exists already, with another schema or port."""


class TimeRangeError(SpeedDataError, ValueError):
    """A time or time range that cannot be understood (bad text, end before start)."""


class StoreError(SpeedDataError, OSError):
    """The store directory is not a store, is read-only, full, or locked by another writer.

    ``reason`` names, for records that could not be stored, why: one of `NOT_STORED`."""

    def __init__(self, message: str, *, hint: str | None = None, reason: str = "disk_error"):
        super().__init__(message, hint=hint)
        self.reason = reason


class BadName(StoreError, ValueError):
    """A channel or tag name that breaks the naming rule (letters, digits, '_', '.', '-')."""


# why accepted records were not stored (ChannelStats.not_stored)
NOT_STORED = ("disk_full", "read_only", "disk_error")


class FormatError(StoreError, ValueError):
    """Bytes that are not a well-formed segment, block or index; the message says where."""


class TagExists(SpeedDataError, ValueError):
    """A tag of that name exists already (pass ``replace=True`` to move it)."""


class TagNotFound(SpeedDataError, KeyError):
    """No tag of that name."""


class ConfigError(SpeedDataError, ValueError):
    """A configuration file or value that is wrong; the message names the key (and, from a
    file, its line)."""

    key: str | None = None       # the key's path (channels[0].port), to find its line


class StoreWarning(UserWarning):
    """Something in the store was damaged and skipped or repaired; the message says where."""


class PortUnavailable(SpeedDataError, OSError):
    """A UDP port that another program holds; the message names it where it can."""


class LimitExceeded(SpeedDataError, ValueError):
    """A request larger than a configured limit (a range, an export)."""


class TooMany(LimitExceeded):
    """One more of something counted (live streams, exports) than a configured limit."""


class RequestError(SpeedDataError, ValueError):
    """An API request that cannot be served as asked (a missing or contradictory field)."""


class Unauthenticated(SpeedDataError, PermissionError):
    """A call that changes something, without the server's token."""


class Forbidden(SpeedDataError, PermissionError):
    """A request refused whoever sends it: from another web page's origin, or of a kind the
    server does not take (a body that is not JSON)."""


class Misdirected(Forbidden):
    """A web request for a host name this server does not answer to (DNS rebinding)."""


class LengthRequired(RequestError):
    """A web request whose body comes without its length (chunked)."""


class EmptyRange(SpeedDataError, LookupError):
    """A range that holds no record, asked for where an empty answer would pass unseen (an
    export); the message says what the store holds."""


class Unavailable(SpeedDataError, ConnectionError):
    """A server that cannot be reached or does not answer in time."""


class ClusterUnavailable(Unavailable):
    """The cluster (its NATS servers, or the node that owns a channel) cannot be reached."""


class NodeNotFound(SpeedDataError, KeyError):
    """No node of that name in the cluster (never joined, or forgotten already)."""


class NodeAlive(SpeedDataError, RuntimeError):
    """A node asked to be forgotten that is still heartbeating, or has been silent for less
    than the time asked."""


# One table for every API: each error as a gRPC status code (by name) and an HTTP status.
# The first class of an error's MRO that is listed here decides.
STATUS: dict[type[BaseException], tuple[str, int]] = {
    SchemaError: ("INVALID_ARGUMENT", 400),
    DecodeError: ("INVALID_ARGUMENT", 400),
    TimeRangeError: ("INVALID_ARGUMENT", 400),
    ConfigError: ("INVALID_ARGUMENT", 400),
    RequestError: ("INVALID_ARGUMENT", 400),
    BadName: ("INVALID_ARGUMENT", 400),
    Unauthenticated: ("UNAUTHENTICATED", 401),
    Misdirected: ("PERMISSION_DENIED", 421),
    LengthRequired: ("INVALID_ARGUMENT", 411),
    Forbidden: ("PERMISSION_DENIED", 403),
    ClusterUnavailable: ("UNAVAILABLE", 503),
    Unavailable: ("UNAVAILABLE", 503),
    ChannelExists: ("ALREADY_EXISTS", 409),
    TagExists: ("ALREADY_EXISTS", 409),
    ChannelNotFound: ("NOT_FOUND", 404),
    TagNotFound: ("NOT_FOUND", 404),
    NodeNotFound: ("NOT_FOUND", 404),
    NodeAlive: ("FAILED_PRECONDITION", 409),
    EmptyRange: ("NOT_FOUND", 404),
    TooMany: ("RESOURCE_EXHAUSTED", 429),
    LimitExceeded: ("RESOURCE_EXHAUSTED", 413),
    PortUnavailable: ("UNAVAILABLE", 503),
    FormatError: ("DATA_LOSS", 500),
    StoreError: ("FAILED_PRECONDITION", 503),
    SpeedDataError: ("INTERNAL", 500),
}


# gRPC trailing metadata that names an error's class (`SpeedDataError` subclasses), so
# that `speeddata.Client` raises the one the server raised, hint and all
GRPC_ERROR_KEY = "speeddata-error"


def by_name(name: str) -> type[SpeedDataError] | None:
    """The SpeedData error class of that name, if there is one."""
    cls = globals().get(name)
    return cls if isinstance(cls, type) and issubclass(cls, SpeedDataError) else None


def split_hint(text: str) -> tuple[str, str | None]:
    """``"message (hint: what to do)"`` as (message, hint): `SpeedDataError.__str__` undone."""
    message, sep, hint = text.partition(" (hint: ")
    if sep and hint.endswith(")"):
        return message, hint[:-1]
    return text, None


# Tornado's own refusals (an unknown route, a method a route lacks, a malformed request), by
# HTTP status, as gRPC code names
HTTP_CODES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              405: "UNIMPLEMENTED", 411: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED",
              421: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}


def on_surface(text: str, surface: str) -> str:
    """A hint as the user of one surface acts on it: Python's ``replace=True`` is
    ``--replace`` on the command line and ``"replace": true`` in a REST body or query."""
    if surface == "cli":
        return re.sub(r"\b([a-z][a-z_]*)=True\b", lambda m: "--" + m[1].replace("_", "-"),
                      text)
    if surface == "rest":
        return re.sub(r"\b([a-z][a-z_]*)=True\b", r'"\1": true', text)
    return text


def listing(names: Iterable[str], most: int = 20) -> str:
    """Names for a hint: the first ``most``, then "and N more" (an error must fit gRPC's
    metadata and a reader's screen, whatever the store holds)."""
    names = list(names)
    shown = ", ".join(names[:most]) or "none"
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


MAX_MESSAGE = 2000     # characters of an error a remote caller is sent


def public_message(message: str, private_paths: Iterable[str] = ()) -> str:
    """An error's text as a remote caller (REST, gRPC) sees it: the server's own paths
    shortened to their last part, and cut to `MAX_MESSAGE` characters."""
    for path in private_paths:
        if path:
            message = message.replace(path, os.path.basename(os.path.normpath(path)))
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE - 20] + \
        f"... ({len(message)} characters)"


def status_of(error: BaseException) -> tuple[str, int]:
    """(gRPC status code name, HTTP status) for an error; INTERNAL/500 for anything else."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return "INTERNAL", 500
