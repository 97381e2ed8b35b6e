"""The channel registry: every channel a store serves, persisted beside it (SQLite).

It is the one source for channels from the config file and channels registered at run time
(gRPC, REST): ``speeddata serve`` starts what it holds, so a channel registered over an API
comes back after a restart. Each entry is kept as the config file would spell it, schema as
Avro JSON text, and checked by the same rules (`speeddata.config.channel`) whenever it is
read. The database keeps names and ports unique.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config as config_mod
from ..config import PORT_RANGE, ChannelConfig
from ..errors import ChannelExists, ChannelNotFound, ConfigError, listing
from ..schema import load_avro

REGISTRY_FILE = "registry.sqlite"
SOURCES = ("config", "api")


@dataclass(frozen=True)
class Registered:
    """A registered channel: its checked config, where it came from, when it was added."""
    config: ChannelConfig
    source: str            # "config" (the YAML file) or "api" (gRPC, REST, Python)
    created: int           # ns since the epoch


def entry(cfg: ChannelConfig) -> dict[str, Any]:
    """A channel config as the config file would spell it, the schema as Avro JSON."""
    out: dict[str, Any] = {"name": cfg.name, "port": cfg.port,
                           "schema": json.dumps(load_avro(cfg.schema)), "bind": cfg.bind,
                           "time_field": cfg.time_field, "decimation": cfg.decimation,
                           "receive_buffer": cfg.receive_buffer}
    if cfg.time_unit is not None:
        out["time_unit"] = cfg.time_unit
    if cfg.options:
        out["retention"] = dict(cfg.options)
    if cfg.multicast is not None:
        mc = cfg.multicast
        out["multicast"] = {"group": mc.group, "port": mc.port, "interface": mc.interface,
                            "ttl": mc.ttl}
        if mc.decimated_group:
            out["multicast"]["decimated"] = {"group": mc.decimated_group,
                                             "port": mc.decimated_port,
                                             "decimation": mc.decimation}
    return out


class Registry:
    """The channels of one store directory."""

    def __init__(self, store_path: str | Path):
        self.path = str(Path(store_path) / REGISTRY_FILE)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS channels (name TEXT PRIMARY KEY, "
                       "port INTEGER NOT NULL UNIQUE, entry TEXT NOT NULL, "
                       "source TEXT NOT NULL, created INTEGER NOT NULL)")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(f"file:{urllib.parse.quote(self.path)}", uri=True, timeout=10,
                             isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def register(self, cfg: ChannelConfig, source: str = "api") -> Registered:
        """Add a channel; ChannelExists when its name or port is taken."""
        if source not in SOURCES:
            raise ConfigError(f"unknown channel source {source!r}")
        row = (cfg.name, cfg.port, json.dumps(entry(cfg)), source, time.time_ns())
        with self._connect() as db:
            try:
                db.execute("INSERT INTO channels VALUES (?, ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError:
                raise self._conflict(db, cfg) from None
        return Registered(cfg, source, row[4])

    def _conflict(self, db: sqlite3.Connection, cfg: ChannelConfig) -> ChannelExists:
        same = db.execute("SELECT name, port FROM channels WHERE name = ? OR port = ?",
                          (cfg.name, cfg.port)).fetchall()
        for name, port in same:
            if name == cfg.name:
                return ChannelExists(f"channel {cfg.name!r} is registered already (port "
                                     f"{port})", hint="deregister it first, or pick a new name")
        name, _ = same[0]
        return ChannelExists(f"port {cfg.port} is registered to channel {name!r}",
                             hint="pick one of the available ports")

    def deregister(self, name: str) -> None:
        with self._connect() as db:
            if db.execute("DELETE FROM channels WHERE name = ?", (name,)).rowcount == 0:
                raise ChannelNotFound(f"no registered channel {name!r}")

    def get(self, name: str) -> Registered:
        for r in self.entries():
            if r.config.name == name:
                return r
        raise ChannelNotFound(f"no registered channel {name!r}",
                              hint=f"channels are: {listing(self.names())}")

    def names(self) -> list[str]:
        with self._connect() as db:
            return [n for (n,) in db.execute("SELECT name FROM channels ORDER BY name")]

    def entries(self, source: str | None = None) -> list[Registered]:
        """The registered channels (of one source), each checked again as the config file
        is; an entry that no longer checks is a ConfigError naming the channel."""
        with self._connect() as db:
            rows = db.execute("SELECT name, entry, source, created FROM channels "
                              "ORDER BY name").fetchall()
        out = []
        for name, text, src, created in rows:
            if source is not None and src != source:
                continue
            try:
                cfg = config_mod.channel(json.loads(text), f"registry[{name}].")
            except (ValueError, ConfigError) as e:
                raise ConfigError(f"{self.path}: channel {name!r}: {e}") from e
            out.append(Registered(cfg, src, created))
        return out

    def sync_config(self, channels: Iterable[ChannelConfig]) -> None:
        """Make the config file's channels exactly the given ones: new ones added, changed
        ones replaced, ones the file no longer names removed; channels registered over an
        API stay. A config channel that meets an API one (name or port) is a ConfigError."""
        channels = list(channels)
        given = {c.name for c in channels}
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for (name,) in db.execute("SELECT name FROM channels WHERE source = 'config'"
                                          ).fetchall():
                    if name not in given:
                        db.execute("DELETE FROM channels WHERE name = ?", (name,))
                for cfg in channels:
                    db.execute("DELETE FROM channels WHERE name = ? AND source = 'config'",
                               (cfg.name,))
                    try:
                        db.execute("INSERT INTO channels VALUES (?, ?, ?, 'config', ?)",
                                   (cfg.name, cfg.port, json.dumps(entry(cfg)),
                                    time.time_ns()))
                    except sqlite3.IntegrityError:
                        raise ConfigError(f"config channel {cfg.name!r}: "
                                          f"{self._conflict(db, cfg)} over the API",
                                          hint="deregister that channel, or change the "
                                               "config") from None
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def available_ports(self, ports: range = PORT_RANGE, bind: str = "127.0.0.1") -> list[int]:
        """Ports of the range that no channel holds and nothing on this host has bound."""
        with self._connect() as db:
            taken = {p for (p,) in db.execute("SELECT port FROM channels")}
        free = []
        for port in ports:
            if port in taken:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((bind, port))
                except OSError:
                    continue
            free.append(port)
        return free
