"""The store: a directory of channels, with tags and retention across them."""

from __future__ import annotations

import builtins  # this module's open() is the store's
import json
import os
import re
import shutil
import threading
from collections.abc import Sequence
from typing import Any

from .. import schema as S
from ..errors import ChannelExists, ChannelNotFound, StoreError, TagNotFound, TimeRangeError
from ..timeutil import TimeLike, duration_ns, now_ns, time_range, to_ns
from ._channel import CONFIG_FILE, SCHEMA_FILE, Channel
from ._writer import writer_active
from ._segment import parse_stem
from ._tags import Tag, TagDB

MARKER = "speeddata.json"
FORMAT = "speeddata-store"
VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

DEFAULTS: dict[str, Any] = {
    "max_bytes": None,                 # retention: byte quota (None: unlimited)
    "max_age": None,                   # retention: ns of data kept (None: forever)
    "block_bytes": 1 << 20,            # uncompressed bytes that close a block
    "flush_interval": 0.1,             # s: a block is written once its oldest record is this old
    "segment_bytes": 64 << 20,         # a segment rolls over at this size...
    "segment_span": 3600 * 10**9,      # ...or when it spans this many ns
    "compression_level": -1,           # zstandard level: -1 costs ~3% more disk than 3 and
                                       # compresses 2x, decompresses 1.5-2.5x faster
    "fsync": False,                    # fsync every block (power-loss safety; kill -9 needs none)
}
_CHANNEL_OPTIONS = set(DEFAULTS)


def open(path: str | os.PathLike, *, create: bool = True, readonly: bool = False,
         **options: Any) -> "Store":
    """Open (or create) a store directory.

    Parameters
    ----------
    path : str or path
        The store directory; created when missing (unless ``create=False``).
    readonly : bool
        Refuse every write; nothing is repaired.
    **options
        Store-wide defaults, persisted in the store: ``max_bytes``, ``max_age`` (seconds or
        ISO 8601 duration), ``block_bytes``, ``flush_interval`` (s), ``segment_bytes``,
        ``segment_span`` (duration), ``compression_level``, ``fsync``.
    """
    return Store(os.fspath(path), create=create, readonly=readonly, **options)


def _normalise(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - _CHANNEL_OPTIONS
    if unknown:
        raise StoreError(f"unknown store option(s): {', '.join(sorted(unknown))}",
                         hint=f"options are: {', '.join(sorted(_CHANNEL_OPTIONS))}")
    out = dict(options)
    for key in ("max_age", "segment_span"):
        if out.get(key) is not None:
            out[key] = duration_ns(out[key], what=key)
    for key in ("max_bytes", "block_bytes", "segment_bytes"):
        if out.get(key) is not None and int(out[key]) <= 0:
            raise StoreError(f"{key} must be positive, not {out[key]!r}")
    return out


class Store:
    """A directory of channels. Use `speeddata.store.open` to get one."""

    def __init__(self, path: str, *, create: bool = True, readonly: bool = False, **options):
        self.path = os.path.abspath(path)
        self.readonly = readonly
        self._why_readonly = "it was opened read-only"
        marker = os.path.join(self.path, MARKER)
        if not os.path.exists(marker):
            if os.path.isdir(self.path) and os.listdir(self.path):
                raise StoreError(f"{self.path} is not a SpeedData store (no {MARKER}) and is "
                                 "not empty", hint="open an empty or new directory")
            if not create or readonly:
                raise StoreError(f"no store at {self.path}")
            try:
                os.makedirs(self.path, exist_ok=True)
                _write_json(marker, {"format": FORMAT, "version": VERSION, "options": {}})
            except OSError as e:
                raise StoreError(f"cannot create a store at {self.path}: {e.strerror}") from e
        try:
            with builtins.open(marker) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise StoreError(f"{marker} is unreadable: {e}") from e
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise StoreError(f"{self.path} holds an unknown store format "
                             f"{meta.get('format')!r} version {meta.get('version')!r}")
        if not readonly and not os.access(self.path, os.W_OK):
            # a read-only filesystem or directory: still a store to read
            self.readonly, readonly = True, True
            self._why_readonly = "its directory is not writable (read-only filesystem?)"
        saved = meta.get("options", {})
        given = _normalise(options)
        if given and not readonly:
            saved.update(given)
            _write_json(marker, dict(meta, options=saved))
        self.options = {**DEFAULTS, **saved, **given}
        self._channels: dict[str, Channel] = {}
        self._lock = threading.RLock()
        self._tags = TagDB(os.path.join(self.path, "tags.sqlite")) if not readonly or \
            os.path.exists(os.path.join(self.path, "tags.sqlite")) else None
        if not readonly:
            for name in self.channels:  # finish what a killed writer left torn
                self[name].repair_if_idle()
            self.enforce_retention()

    def __repr__(self) -> str:
        return f"<Store {self.path!r} channels={self.channels}>"

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Flush every channel this process writes and release their locks."""
        with self._lock:
            errors = []
            for ch in self._channels.values():
                try:
                    ch.close()
                except StoreError as e:
                    errors.append(e)
            self._channels.clear()
        if errors:
            raise errors[0]

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"cannot write store {self.path}: {self._why_readonly}")

    # ---- channels ------------------------------------------------------------------------

    @property
    def channels(self) -> list[str]:
        """Channel names, sorted."""
        return sorted(n for n in os.listdir(self.path)
                      if os.path.isfile(os.path.join(self.path, n, SCHEMA_FILE)))

    def __contains__(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.path, name, SCHEMA_FILE)) \
            if isinstance(name, str) and _NAME.match(name) else False

    def __getitem__(self, name: str) -> Channel:
        with self._lock:
            if name not in self._channels:
                if name not in self:
                    raise ChannelNotFound(f"no channel {name!r} in store {self.path}",
                                          hint=f"channels are: {', '.join(self.channels) or 'none'}")
                self._channels[name] = Channel(self, name)
            return self._channels[name]

    def __iter__(self):
        return (self[name] for name in self.channels)

    def create_channel(self, name: str, schema: Any, *, time_field: str | None = "time",
                       time_unit: str | None = None, **options: Any) -> Channel:
        """Create a channel, or return the existing one when its schema has the same fields.

        Parameters
        ----------
        name : str
            Letters, digits, ``_ . -``; up to 128 characters.
        schema : dict, str or path
            The channel's Avro record schema (dict, JSON text or ``.avsc`` path).
        time_field, time_unit
            See `speeddata.schema.load`.
        **options
            Per-channel overrides of the store options (retention, block and segment sizes).
        """
        self._check_writable()
        if not isinstance(name, str) or not _NAME.match(name):
            raise StoreError(f"bad channel name {name!r}",
                             hint="use letters, digits, '_', '.', '-' (not first), up to 128")
        cs = S.load(schema, time_field=time_field, time_unit=time_unit)
        opts = _normalise(options)
        with self._lock:
            if name in self:
                existing = self[name]
                if not existing.schema.same_fields(cs):
                    raise ChannelExists(
                        f"channel {name!r} exists with other fields or time: "
                        f"{existing.schema.signal_names} vs {cs.signal_names}",
                        hint="drop the channel first, or register under a new name")
                return existing
            tmp = os.path.join(self.path, f".{name}.creating-{os.getpid()}")
            try:
                os.makedirs(tmp, exist_ok=True)
                _write_json(os.path.join(tmp, SCHEMA_FILE), cs.avro)
                _write_json(os.path.join(tmp, CONFIG_FILE), {
                    "name": name, "time_field": cs.time_field, "time_unit": cs.time_unit,
                    "created": now_ns(), **opts})
                os.rename(tmp, os.path.join(self.path, name))
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                if name in self:   # another process created it at the same moment
                    return self.create_channel(name, schema, time_field=time_field,
                                               time_unit=time_unit, **options)
                raise StoreError(f"cannot create channel {name!r}: {e.strerror}") from e
            return self[name]

    def drop_channel(self, name: str) -> None:
        """Delete a channel and all its data (refused while another process writes it)."""
        self._check_writable()
        ch = self[name]
        with self._lock:
            ch.close()
            if writer_active(ch.path):
                raise StoreError(f"channel {name!r} is being written by another process",
                                 hint="stop its receiver first")
            trash = os.path.join(self.path, f".{name}.dropping-{os.getpid()}")
            os.rename(ch.path, trash)
            shutil.rmtree(trash)
            self._channels.pop(name, None)

    # ---- tags ----------------------------------------------------------------------------

    def tag(self, name: str, start: TimeLike, end: TimeLike,
            channels: Sequence[str] | None = None, note: str = "") -> Tag:
        """Keep [start, end) of the given channels (all by default) through retention."""
        self._check_writable()
        lo, hi = time_range(start, end)
        if not name or not isinstance(name, str):
            raise StoreError("a tag needs a name")
        if channels is not None:
            channels = tuple(channels)
            for ch in channels:
                if ch not in self:
                    raise ChannelNotFound(f"no channel {ch!r} in store {self.path}")
        return self._tags.put(Tag(name, lo, hi, channels, note))

    def tags(self) -> list[Tag]:
        return self._tags.all() if self._tags else []

    def get_tag(self, name: str) -> Tag:
        if not self._tags:
            raise TagNotFound(f"no tag {name!r}")
        return self._tags.get(name)

    def untag(self, name: str) -> None:
        """Remove a tag; its data is then subject to retention again."""
        self._check_writable()
        self._tags.remove(name)

    # ---- what it holds -------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per channel: records, bytes on disk, first and last time, segments."""
        return {name: self[name].stats() for name in self.channels}

    def holds(self, channel: str | None = None) -> tuple[int, int] | None:
        """(first, last) time held in ns by one channel or, by default, the whole store."""
        if channel is not None:
            return self[channel].holds()
        spans = [h for h in (self[n].holds() for n in self.channels) if h]
        return (min(h[0] for h in spans), max(h[1] for h in spans)) if spans else None

    def horizon(self, channel: str | None = None) -> float:
        """Seconds of data held (last time minus first), 0 when empty."""
        held = self.holds(channel)
        return (held[1] - held[0]) / 1e9 if held else 0.0

    def projected_horizon(self) -> float | None:
        """Seconds of data the store will hold once retention applies, at the rate it has
        been filling (bytes held over time held, summed over channels); None without a
        quota or age limit, or before any data."""
        max_age = self.options.get("max_age")
        quota = self.options.get("max_bytes")
        if quota is None and max_age is None:
            return None
        rate = 0.0
        for name in self.channels:
            st = self[name].stats()
            if st["records"] and st["last_time"] > st["first_time"]:
                rate += st["bytes"] / ((st["last_time"] - st["first_time"]) / 1e9)
        if not rate:
            return None
        limits = [max_age / 1e9] if max_age is not None else []
        if quota is not None:
            limits.append(quota / rate)
        return min(limits)

    # ---- retention -----------------------------------------------------------------------

    def _has_retention(self) -> bool:
        if self.options.get("max_bytes") is not None or self.options.get("max_age") is not None:
            return True
        return any(self[n].config.get("max_bytes") is not None
                   or self[n].config.get("max_age") is not None for n in self.channels)

    def enforce_retention(self, now: TimeLike | None = None) -> list[str]:
        """Delete whole oldest segments beyond ``max_age`` and ``max_bytes`` (per channel,
        then store-wide). The newest segment of a channel, which its writer may be filling,
        and segments that overlap a tag are kept. Returns the deleted segment paths."""
        if self.readonly or not self._has_retention():
            return []
        now = now_ns() if now is None else to_ns(now, what="now")
        tags = self.tags()
        deleted: list[str] = []
        pool = []          # (tmax, channel, segment) closed and untagged, store-wide
        store_bytes = 0
        for name in self.channels:
            try:
                ch = self[name]
                segs = list(ch._refresh())
            except (FileNotFoundError, StoreError):
                continue   # dropped meanwhile
            max_age, max_bytes = ch.option("max_age"), ch.option("max_bytes")
            if self.options.get("max_bytes") == max_bytes and "max_bytes" not in ch.config:
                max_bytes = None     # the store-wide quota is applied below, across channels
            sizes = {s.stem: s.disk_bytes() for s in segs}
            total = sum(sizes.values())
            candidates = [s for s in segs[:-1]
                          if not any(t.overlaps(name, s.tmin, s.tmax) for t in tags)]
            for s in candidates:
                expired = max_age is not None and len(s.index) and s.tmax < now - max_age
                over = max_bytes is not None and total > max_bytes
                if expired or over:
                    if _delete(s):
                        deleted.append(s.path)
                    total -= sizes[s.stem]
                else:
                    pool.append((s.tmax, parse_stem(s.stem)[1], name, s, sizes[s.stem]))
            store_bytes += total
        quota = self.options.get("max_bytes")
        if quota is not None and store_bytes > quota:
            for *_, s, size in sorted(pool, key=lambda p: (p[0], p[1])):
                if store_bytes <= quota:
                    break
                if _delete(s):
                    deleted.append(s.path)
                store_bytes -= size
        return deleted

    # ---- export --------------------------------------------------------------------------

    def export_hdf5(self, path: str | os.PathLike, start: TimeLike | str | None = None,
                    end: TimeLike | None = None, channels: Sequence[str] | None = None,
                    signals: Sequence[str] | None = None, *, compression: str | None = None,
                    progress=None) -> str:
        """Write a Set (a time range of some channels) as one HDF5 file.

        ``start`` may name a tag instead of a time; the tag's range and channels are then
        used. Signals are given as ``name`` (in every channel that has it) or
        ``channel.name``. See `speeddata.hdf5` for the layout.
        """
        from ..hdf5 import export
        tag = None
        if isinstance(start, str) and end is None and self._tags is not None:
            try:
                tag = self.get_tag(start)
            except TagNotFound:
                tag = None
        if tag is not None:
            lo, hi = tag.start, tag.end
            if channels is None and tag.channels is not None:
                channels = list(tag.channels)
        else:
            if start is None and end is None:
                raise TimeRangeError("export_hdf5 needs a time range or a tag name")
            lo, hi = time_range(start, end)
        names = list(channels) if channels is not None else self.channels
        return export(self, os.fspath(path), lo, hi, [self[n] for n in names], signals,
                      compression=compression, progress=progress, tag=tag)


def _delete(seg) -> bool:
    gone = False
    for p in (seg.path, seg.idx_path):
        try:
            os.remove(p)
            gone = True
        except FileNotFoundError:
            pass
    return gone


def _write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with builtins.open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)
