"""Tags: named time ranges that retention keeps, stored in SQLite beside the channels."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import StoreError, TagExists, TagNotFound, listing
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

    def as_dict(self) -> dict[str, Any]:
        """The tag as JSON takes it: what REST answers, the cluster keeps and archives name."""
        return {"name": self.name, "start": self.start, "end": self.end,
                "channels": list(self.channels) if self.channels is not None else None,
                "note": self.note, "created": self.created}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Tag":
        """A tag from `as_dict`'s form."""
        channels = d.get("channels")
        return cls(d["name"], int(d["start"]), int(d["end"]),
                   tuple(channels) if channels is not None else None, d.get("note", ""),
                   int(d.get("created", 0)))


class TagDB:
    """The tags table of a store. A missing, empty or unreadable database is damage: every
    call then raises `StoreError` (and retention, which cannot know what it protects,
    pauses) until it is restored or `reset`."""

    def __init__(self, path: str, *, create: bool = False):
        self.path = path
        if create:
            with self._connect() as db:
                db.execute(_TABLE)

    def check(self) -> str | None:
        """Why the tags cannot be trusted, or None."""
        try:
            if os.path.getsize(self.path) == 0:
                return f"the tags database {self.path} is empty (0 bytes)"
        except FileNotFoundError:
            return f"the tags database {self.path} is missing"
        try:
            with self._connect(readonly=True) as db:
                ok = db.execute("PRAGMA quick_check").fetchone()
                if not ok or ok[0] != "ok":
                    return f"the tags database {self.path} is damaged: {ok}"
                if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                  "name = 'tags'").fetchone():
                    return f"the tags database {self.path} has no tags table"
                db.execute("SELECT name, start, end, channels, note, created FROM tags "
                           "LIMIT 1").fetchall()
        except sqlite3.Error as e:
            return f"the tags database {self.path} is damaged: {e}"
        return None

    def reset(self) -> str | None:
        """Set a damaged database aside (``tags.sqlite.damaged-<ns>``) and start an empty
        one; returns where the old one went."""
        aside = None
        if os.path.exists(self.path):
            aside = f"{self.path}.damaged-{now_ns()}"
            os.replace(self.path, aside)
        with self._connect() as db:
            db.execute(_TABLE)
        return aside

    @contextlib.contextmanager
    def _connect(self, readonly: bool = False) -> Iterator[sqlite3.Connection]:
        # a short-lived connection per call: several processes share the file
        uri = f"file:{urllib.parse.quote(self.path)}" + ("?mode=ro" if readonly else "")
        db = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def _checked(self):
        problem = self.check()
        if problem:
            raise StoreError(problem, hint="restore it from a backup, or call "
                             "store.reset_tags() to start with no tags")
        return self._connect()

    def put(self, tag: Tag, *, replace: bool = False) -> Tag:
        tag = Tag(tag.name, tag.start, tag.end, tag.channels, tag.note, tag.created or now_ns())
        row = (tag.name, tag.start, tag.end,
               None if tag.channels is None else json.dumps(list(tag.channels)),
               tag.note, tag.created)
        with self._checked() as db:
            try:
                db.execute(f"INSERT {'OR REPLACE ' if replace else ''}INTO tags "
                           "VALUES (?, ?, ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError:
                old = self.get(tag.name)
                raise TagExists(f"a tag {tag.name!r} exists already: {old}",
                                hint="pick another name, or pass replace=True to move it") from None
        return tag

    def all(self) -> list[Tag]:
        with self._checked() as db:
            rows = db.execute("SELECT name, start, end, channels, note, created FROM tags "
                              "ORDER BY start, name").fetchall()
        return [Tag(n, s, e, None if c is None else tuple(json.loads(c)), note, created)
                for n, s, e, c, note, created in rows]

    def get(self, name: str) -> Tag:
        tags = self.all()
        for tag in tags:
            if tag.name == name:
                return tag
        raise TagNotFound(f"no tag {name!r}", hint="tags are: " + listing(t.name for t in tags))

    def remove(self, name: str) -> None:
        with self._checked() as db:
            if db.execute("DELETE FROM tags WHERE name = ?", (name,)).rowcount == 0:
                names = [n for (n,) in db.execute("SELECT name FROM tags ORDER BY start, name")]
                raise TagNotFound(f"no tag {name!r}", hint="tags are: " + listing(names))


_TABLE = ("CREATE TABLE IF NOT EXISTS tags (name TEXT PRIMARY KEY, start INTEGER NOT NULL, "
          "end INTEGER NOT NULL, channels TEXT, note TEXT NOT NULL, created INTEGER NOT NULL)")
