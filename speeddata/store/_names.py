"""The one rule for the names of channels and tags: a file name, a URL path segment and a
NATS key alike, so that every surface can name, show and delete what it made."""

from __future__ import annotations

import re

from ..errors import BadName

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
RULE = "use letters, digits, '_', '.', '-' (not first), up to 128 characters"


def check_name(name: object, what: str) -> str:
    """``name`` if it is a good name for a ``what`` (channel, tag); `BadName` otherwise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise BadName(f"bad {what} name {shown}", hint=RULE)
    return name
