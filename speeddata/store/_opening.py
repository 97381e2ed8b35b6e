"""A store directory as it is opened: its marker (format and version), a new one made, a
version 1 store moved to format 2, and what a killed process left half done removed."""

from __future__ import annotations

import logging
import os
import re
import shutil

from ..errors import StoreError
from ._definition import SCHEMA_FILE, write_json
from ._names import NAME
from ._tags import TagDB

log = logging.getLogger("speeddata.store")

MARKER = "speeddata.json"
TAGS_FILE = "tags.sqlite"
CHANNELS_DIR = "channels"
FORMAT = "speeddata-store"
VERSION = 2


def create_store(path: str, marker: str, allowed: bool) -> None:
    """A new store at ``path`` (an empty or missing directory), or StoreError."""
    if os.path.isdir(path) and os.listdir(path):
        raise StoreError(f"{path} is not a SpeedData store (no {MARKER}) and is "
                         "not empty", hint="open an empty or new directory")
    if not allowed:
        raise StoreError(f"no store at {path}")
    try:
        os.makedirs(os.path.join(path, CHANNELS_DIR), exist_ok=True)
        TagDB(os.path.join(path, TAGS_FILE), create=True)
        write_json(marker, {"format": FORMAT, "version": VERSION, "options": {}})
    except OSError as e:
        raise StoreError(f"cannot create a store at {path}: {e.strerror}") from e


def migrate_v1(path: str, marker: str, meta: dict) -> dict:
    """Move the channels of a version 1 store into channels/ (each a rename)."""
    target = os.path.join(path, CHANNELS_DIR)
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(path):
        src = os.path.join(path, name)
        if NAME.fullmatch(name) and os.path.isfile(os.path.join(src, SCHEMA_FILE)):
            os.rename(src, os.path.join(target, name))
    if not os.path.exists(os.path.join(path, TAGS_FILE)):
        TagDB(os.path.join(path, TAGS_FILE), create=True)   # v1 made it on open
    meta = dict(meta, version=VERSION)
    write_json(marker, meta)
    log.info("store %s: moved its channels into %s/ (store format 2)", path,
             CHANNELS_DIR)
    return meta


def finish_interrupted(path: str, channels_dir: str) -> None:
    """Remove what a killed process left half done: a channel being created or dropped
    (``.NAME.creating-PID``, ``.NAME.dropping-PID``), when that process is gone."""
    try:
        names = os.listdir(channels_dir)
    except FileNotFoundError:
        return
    for name in names:
        m = re.fullmatch(r"\.(.+)\.(creating|dropping)-(\d+)", name)
        if not m or _alive(int(m.group(3))):
            continue
        shutil.rmtree(os.path.join(channels_dir, name), ignore_errors=True)
        log.warning("store %s: removed %s, left by process %s that was %s channel %r",
                    path, name, m.group(3), m.group(2), m.group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
