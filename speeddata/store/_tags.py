"""Tags: named time ranges that retention keeps, stored in SQLite beside the channels."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import TagNotFound
from ..timeutil import format_ns, now_ns


@dataclass(frozen=True)
class Tag:
    name: str
    start: int          # ns, inclusive
    end: int            # ns, exclusive
    channels: tuple[str, ...] | None   # None: every channel
    note: str = ""
    created: int = 0

    def covers(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels

    def overlaps(self, channel: str, tmin: int, tmax: int) -> bool:
        return self.covers(channel) and tmin < self.end and tmax >= self.start

    def __str__(self) -> str:
        return f"{self.name} [{format_ns(self.start)}, {format_ns(self.end)})"


class TagDB:
    def __init__(self, path: str):
        self.path = path
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS tags (name TEXT PRIMARY KEY, start INTEGER "
                       "NOT NULL, end INTEGER NOT NULL, channels TEXT, note TEXT NOT NULL, "
                       "created INTEGER NOT NULL)")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # a short-lived connection per call: several processes share the file
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def put(self, tag: Tag) -> Tag:
        tag = Tag(tag.name, tag.start, tag.end, tag.channels, tag.note, tag.created or now_ns())
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?, ?, ?)",
                       (tag.name, tag.start, tag.end,
                        None if tag.channels is None else json.dumps(list(tag.channels)),
                        tag.note, tag.created))
        return tag

    def all(self) -> list[Tag]:
        with self._connect() as db:
            rows = db.execute("SELECT name, start, end, channels, note, created FROM tags "
                              "ORDER BY start, name").fetchall()
        return [Tag(n, s, e, None if c is None else tuple(json.loads(c)), note, created)
                for n, s, e, c, note, created in rows]

    def get(self, name: str) -> Tag:
        for tag in self.all():
            if tag.name == name:
                return tag
        raise TagNotFound(f"no tag {name!r}")

    def remove(self, name: str) -> None:
        with self._connect() as db:
            if db.execute("DELETE FROM tags WHERE name = ?", (name,)).rowcount == 0:
                raise TagNotFound(f"no tag {name!r}")
