"""The store: a directory of channels, with tags and retention across them.

Layout::

    <store>/speeddata.json        format, version, store-wide options
    <store>/tags.sqlite           tags
    <store>/channels/<name>/      one directory per channel: schema.avsc, channel.json,
                                  segments (.avro), their indexes (.idx), HEAD, writer.lock

Channels live in a directory of their own, so that no channel name can meet one of the
store's own files. Stores of version 1 kept channels beside those files and are moved on
the first read-write open.
"""

from __future__ import annotations

import builtins  # this module's open() is the store's
import json
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from .. import schema as channel_schema
from ..errors import ChannelExists, ChannelNotFound, StoreError, StoreWarning, listing
from ..stats import ChannelStats
from ..timeutil import TimeLike, now_ns, time_range, to_ns
from . import _retention
from . import _sets as sets
from ._avro import container_schema, read_avro
from ._channel import Channel, StoreLink
from ._definition import CONFIG_FILE, SCHEMA_FILE, stored_avro, write_json
from ._lock import writer_active
from ._segment import parse_stem
from ._names import NAME, check_name
from ._opening import (CHANNELS_DIR, FORMAT, MARKER, TAGS_FILE, VERSION, create_store,
                       finish_interrupted, migrate_v1)
from ._options import DEFAULTS, check_options, setting_text, settings_text
from ._tags import Tag, TagDB

log = logging.getLogger("speeddata.store")


def open(path: str | os.PathLike, *, create: bool = True, readonly: bool = False,
         retention: bool = True, **options: Any) -> "Store":
    """Open (or create) a store directory.

    Parameters
    ----------
    path : str or path
        The store directory; created when missing (unless ``create=False``).
    readonly : bool
        Refuse every write; nothing is repaired.
    retention : bool
        This process enforces the store's retention as it writes (the default, for a
        library user). ``speeddata serve`` gives it to its supervisor alone, and its
        workers open with ``retention=False``.
    **options
        Store-wide settings, persisted in the store and logged when they change (None
        returns one to its default): ``max_bytes``, ``max_age`` (seconds or ISO 8601
        duration), ``block_bytes``, ``flush_interval`` (s), ``segment_bytes``,
        ``segment_span`` (duration), ``compression_level``, ``fsync``.
    """
    return Store(os.fspath(path), create=create, readonly=readonly, retention=retention,
                 **options)


class Store:
    """A directory of channels. Use `speeddata.store.open` to get one.

    A store opens whatever damage it holds: a damaged channel or tags database is named in
    `problems` (and in a warning), the rest works. While the store cannot know what its
    tags protect, or holds a retention setting it cannot read, retention pauses
    (`retention_paused` says why) instead of guessing.
    """

    def __init__(self, path: str, *, create: bool = True, readonly: bool = False,
                 retention: bool = True, **options):
        self.path = os.path.abspath(path)
        self.readonly = readonly
        self.owns_retention = retention and not readonly
        self._why_readonly = "it was opened read-only"
        self.problems: dict[str, str] = {}
        marker = os.path.join(self.path, MARKER)
        given = check_options(options)
        if not os.path.exists(marker):
            create_store(self.path, marker, create and not readonly)
        meta = self._read_marker(marker)
        if not readonly and not os.access(self.path, os.W_OK):
            # a read-only filesystem or directory: still a store to read
            self.readonly, readonly = True, True
            self.owns_retention = False
            self._why_readonly = "its directory is not writable (read-only filesystem?)"
        if meta["version"] == 1 and not readonly:
            meta = migrate_v1(self.path, marker, meta)
        self._channels_dir = os.path.join(self.path, CHANNELS_DIR) if meta["version"] >= 2 \
            else self.path
        self._saved = self._saved_options(meta.get("options"))
        self.options = {**DEFAULTS, **self._saved}
        # what each channel is given (the settings are looked up as they are in force)
        self._link = StoreLink(self.readonly, lambda: self.options, self._check_writable,
                               self.enforce_retention if self.owns_retention else None)
        self._channels: dict[str, Channel] = {}
        self._lock = threading.RLock()
        self._tags = TagDB(os.path.join(self.path, TAGS_FILE))
        problem = self._tags.check()
        if problem:
            self._problem("tags", problem)
        if not readonly:
            finish_interrupted(self.path, self._channels_dir)
        if given and readonly:
            self.options.update({k: v for k, v in given.items() if v is not None})
        elif given:
            self.configure(**options)

    # ---- opening -------------------------------------------------------------------------

    def _read_marker(self, marker: str) -> dict:
        try:
            with builtins.open(marker) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            if not os.path.isdir(os.path.join(self.path, CHANNELS_DIR)):
                raise StoreError(f"{marker} is unreadable: {e}",
                                 hint="restore it: it names the store's format and settings") from e
            # its channels/ says format 2; its settings are unknown, so retention pauses
            # until they are given again (configure)
            self._problem("options", f"{marker} is unreadable ({e}): store settings "
                          "unknown until configured again")
            return {"format": FORMAT, "version": VERSION, "options": {}}
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or \
                meta.get("version") not in (1, VERSION):
            raise StoreError(f"{self.path} holds an unknown store format "
                             f"{meta.get('format') if isinstance(meta, dict) else meta!r}")
        return meta

    def _saved_options(self, saved: Any) -> dict[str, Any]:
        """The persisted settings; a value that does not check is reported and ignored
        (and, for retention, pauses it), never acted on."""
        if not isinstance(saved, dict):
            self._problem("store option *", f"{MARKER} holds no readable options")
            return {}
        good = {}
        for key, value in saved.items():
            try:
                good.update(check_options({key: value}, stored=True))
            except StoreError as e:
                self._problem(f"store option {key}", f"{os.path.join(self.path, MARKER)}: {e}; "
                              "ignored")
        return {k: v for k, v in good.items() if v is not None}

    def _problem(self, what: str, message: str) -> None:
        if self.problems.get(what) != message:
            self.problems[what] = message
            warnings.warn(message, StoreWarning, stacklevel=4)
            log.warning("store %s: %s", self.path, message)

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

    # ---- settings ------------------------------------------------------------------------

    def configure(self, *, replace: bool = False, **options: Any) -> dict[str, Any]:
        """Change store-wide settings and persist them; each change is logged.

        ``replace=True`` makes the given settings the whole of them: any not given returns
        to its default (what ``speeddata serve`` does with its config file's). A None value
        returns one setting to its default. Returns the settings in force.
        """
        self._check_writable()
        given = check_options(options)
        new = {} if replace else dict(self._saved)
        new.update(given)
        new = {k: v for k, v in new.items() if v is not None}
        stale = [k for k in self.problems if k == "options" or k.startswith("store option ")]
        if new != self._saved or stale:
            marker = os.path.join(self.path, MARKER)
            meta = {"format": FORMAT, "version": VERSION}
            write_json(marker, dict(meta, options=new))
            for key in sorted(set(new) | set(self._saved)):
                if new.get(key) != self._saved.get(key):
                    log.info("store %s: %s changed from %s to %s", self.path, key,
                             setting_text(self._saved.get(key), key),
                             setting_text(new.get(key), key))
            self._saved = new
            for key in stale:
                del self.problems[key]
        self.options = {**DEFAULTS, **self._saved}
        for ch in self._channels.values():
            ch.settings_changed()
        return dict(self.options)

    @property
    def retention_paused(self) -> str | None:
        """Why retention deletes nothing now (the tags cannot be read, a retention setting
        is damaged), or None."""
        reasons = [m for k, m in self.problems.items()
                   if k in ("tags", "options") or "option " in k]
        return "; ".join(reasons) or None

    # ---- channels ------------------------------------------------------------------------

    def _channel_path(self, name: str) -> str:
        return os.path.join(self._channels_dir, name)

    @property
    def channels(self) -> list[str]:
        """Channel names, sorted."""
        try:
            names = os.listdir(self._channels_dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if NAME.fullmatch(n) and
                      os.path.isfile(os.path.join(self._channels_dir, n, SCHEMA_FILE)))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(NAME.fullmatch(name)) and \
            os.path.isfile(os.path.join(self._channel_path(name), SCHEMA_FILE))

    def __getitem__(self, name: str) -> Channel:
        with self._lock:
            if name not in self._channels:
                if name not in self:
                    raise ChannelNotFound(f"no channel {name!r} in store {self.path}",
                                          hint=f"channels are: {listing(self.channels)}")
                try:
                    ch = Channel(name, self._channel_path(name), self._link)
                except StoreError as e:
                    self._problem(f"channel {name}", str(e))
                    raise
                for what in ch.rebuilt:
                    # its own settings are unknown: keep everything until it is configured
                    self._problem(f"channel option {name}", f"channel {name!r}: {what}")
                try:
                    check_options(ch.options, f"channel {name!r}: ", stored=True)
                    if not ch.rebuilt:
                        self.problems.pop(f"channel option {name}", None)
                except StoreError as e:
                    ch.config["options"] = {}   # acted on never; retention pauses meanwhile
                    self._problem(f"channel option {name}", f"{os.path.join(ch.path, CONFIG_FILE)}: "
                                  f"{e}; ignored")
                if not self.readonly:
                    ch.repair_if_idle()      # repair what you open, nothing more
                self.problems.pop(f"channel {name}", None)
                self._channels[name] = ch
            return self._channels[name]

    def __iter__(self) -> Iterator[Channel]:
        return (self[name] for name in self.channels)

    def _readable(self) -> list[Channel]:
        """The channels that open; the damaged ones are in `problems`."""
        out = []
        for name in self.channels:
            try:
                out.append(self[name])
            except (StoreError, ChannelNotFound):
                continue
        return out

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
            Per-channel settings (retention, block and segment sizes). They are the
            channel's settings in force, also for an existing channel: one not given
            follows the store's. Changes are logged.
        """
        self._check_writable()
        check_name(name, "channel")
        cs = channel_schema.load(schema, time_field=time_field, time_unit=time_unit)
        opts = {k: v for k, v in check_options(options, f"channel {name!r}: ").items()
                if v is not None}
        with self._lock:
            if name in self:
                existing = self[name]
                if not existing.schema.same_fields(cs):
                    raise ChannelExists(
                        f"channel {name!r} exists with other fields or time: "
                        f"{existing.schema.signal_names} vs {cs.signal_names}",
                        hint="drop the channel first, or register under a new name")
                self._set_channel_options(existing, opts)
                return existing
            os.makedirs(self._channels_dir, exist_ok=True)
            tmp = self._channel_path(f".{name}.creating-{os.getpid()}")
            try:
                os.makedirs(tmp, exist_ok=True)
                write_json(os.path.join(tmp, SCHEMA_FILE), stored_avro(cs))
                write_json(os.path.join(tmp, CONFIG_FILE), {
                    "name": name, "time_field": cs.time_field, "time_unit": cs.time_unit,
                    "created": now_ns(), "options": opts})
                os.rename(tmp, self._channel_path(name))
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                if name in self:   # another process created it at the same moment
                    return self.create_channel(name, schema, time_field=time_field,
                                               time_unit=time_unit, **options)
                raise StoreError(f"cannot create channel {name!r}: {e.strerror}") from e
            log.info("store %s: created channel %r%s", self.path, name,
                     f" with {settings_text(opts)}" if opts else "")
            return self[name]

    def _set_channel_options(self, ch: Channel, opts: dict[str, Any]) -> None:
        old = ch.options
        self.problems.pop(f"channel option {ch.name}", None)   # its settings are known again
        if opts == old:
            return
        config = dict(ch.config, options=opts)
        write_json(os.path.join(ch.path, CONFIG_FILE), config)
        ch.config = config
        for key in sorted(set(opts) | set(old)):
            if opts.get(key) != old.get(key):
                log.info("channel %s: %s changed from %s to %s", ch.name, key,
                         setting_text(old.get(key), key), setting_text(opts.get(key), key))
        ch.settings_changed()

    def drop_channel(self, name: str) -> None:
        """Delete a channel and all its data (refused while another process writes it)."""
        self._check_writable()
        ch = self[name]
        with self._lock:
            ch.close()
            if writer_active(ch.path):
                raise StoreError(f"channel {name!r} is being written by another process",
                                 hint="stop its receiver first")
            trash = self._channel_path(f".{name}.dropping-{os.getpid()}")
            os.rename(ch.path, trash)
            shutil.rmtree(trash)
            self._channels.pop(name, None)
            log.info("store %s: dropped channel %r and its data", self.path, name)

    # ---- tags ----------------------------------------------------------------------------

    def import_avro(self, name: str, path: str | os.PathLike, start: TimeLike | None = None,
                    end: TimeLike | None = None) -> int:
        """Append the records in [start, end) of an Avro container file (as
        `Channel.avro_container` writes it, or any other) to channel ``name``, created from
        the file's schema when missing.

        Parameters
        ----------
        name
            The channel to append to.
        path
            The container file; its header's schema must match an existing channel's.
        start, end
            The half-open range of records taken (all by default).

        Returns
        -------
        int
            How many records were appended.
        """
        schema, time_field, time_unit = container_schema(path)
        ch = self.create_channel(name, schema, time_field=time_field, time_unit=time_unit)
        cols = read_avro(path, channel=name, time_field=time_field, time_unit=time_unit)[name]
        lo, hi = time_range(start, end)
        cols = cols.take((cols.time >= lo) & (cols.time < hi))
        if len(cols):
            ch.append_columns(cols)
        ch.flush()
        return len(cols)

    def tag(self, name: str, start: TimeLike, end: TimeLike,
            channels: Sequence[str] | None = None, note: str = "", *,
            replace: bool = False) -> Tag:
        """Keep [start, end) of the given channels (all by default) through retention.

        A name in use is an error (`TagExists`) unless ``replace=True``.
        """
        self._check_writable()
        lo, hi = time_range(start, end)
        check_name(name, "tag")
        if channels is not None:
            channels = tuple(channels)
            for ch in channels:
                if ch not in self:
                    raise ChannelNotFound(f"no channel {ch!r} in store {self.path}")
        return self._tags.put(Tag(name, lo, hi, channels, str(note)), replace=replace)

    def tags(self) -> list[Tag]:
        return self._tags.all()

    def get_tag(self, name: str) -> Tag:
        return self._tags.get(name)

    def untag(self, name: str) -> None:
        """Remove a tag; its data is then subject to retention again."""
        self._check_writable()
        self._tags.remove(name)

    def reset_tags(self) -> str | None:
        """Start afresh with no tags after the tags database was damaged or lost: the old
        file is set aside (its path is returned) and retention resumes."""
        self._check_writable()
        aside = self._tags.reset()
        self.problems.pop("tags", None)
        log.warning("store %s: tags reset; the old database is at %s", self.path, aside)
        return aside

    # ---- what it holds -------------------------------------------------------------------

    def stats(self) -> dict[str, ChannelStats]:
        """Per channel: what it holds (records, bytes, segments, time held) and, for the
        channels this process writes, their ingest counters."""
        return {ch.name: ch.stats() for ch in self._readable()}

    def holds(self, channel: str | None = None) -> tuple[int, int] | None:
        """(first, last) time held in ns by one channel or, by default, the whole store."""
        if channel is not None:
            return self[channel].holds()
        spans = [h for h in (ch.holds() for ch in self._readable()) if h]
        return (min(h[0] for h in spans), max(h[1] for h in spans)) if spans else None

    def horizon(self, channel: str | None = None) -> float:
        """Seconds of data held (last time minus first), 0 when empty."""
        held = self.holds(channel)
        return (held[1] - held[0]) / 1e9 if held else 0.0

    def projected_horizon(self) -> float | None:
        """Seconds of data the store will hold once retention applies, at the rate it has
        been filling (bytes held over the receive time they span, summed over channels);
        None without a quota or age limit, or before any data."""
        max_age = self.options.get("max_age")
        quota = self.options.get("max_bytes")
        if quota is None and max_age is None:
            return None
        rate = 0.0
        for ch in self._readable():
            st = ch.stats()
            first, last = st.first_received, st.last_received
            if st.stored_records and first is not None and last is not None and last > first:
                rate += st.bytes / ((last - first) / 1e9)
        if not rate:
            return None
        limits = [max_age / 1e9] if max_age is not None else []
        if quota is not None:
            limits.append(quota / rate)
        return min(limits)

    # ---- retention -----------------------------------------------------------------------

    def enforce_retention(self, now: TimeLike | None = None,
                          tags: Sequence[Tag] = ()) -> list[str]:
        """Delete whole oldest segments beyond ``max_age`` (by receive time) and
        ``max_bytes`` (per channel, then store-wide). The newest segment of a channel, which
        its writer may be filling, and segments that overlap a tag (the store's own, and
        ``tags`` from elsewhere: a cluster's) are kept. Returns the deleted segment paths.
        Deletes nothing while `retention_paused`."""
        if self.readonly:
            return []
        self._tags_problem()
        paused = self.retention_paused
        if paused:
            log.warning("store %s: retention paused: %s", self.path, paused)
            return []
        now = now_ns() if now is None else to_ns(now, what="now")
        channels = self._readable()
        if self.options.get("max_bytes") is None and self.options.get("max_age") is None and \
                not any(ch.option("max_bytes") or ch.option("max_age") for ch in channels):
            return []          # no limit anywhere: nothing to look at
        held, limits = [], {}
        for ch in channels:
            try:
                segs = ch.views()
            except FileNotFoundError:
                continue   # dropped meanwhile
            own = ch.options
            limits[ch.name] = _retention.Limits(own.get("max_bytes"), ch.option("max_age"))
            for i, s in enumerate(segs):
                held.append(_retention.Held(
                    ch.name, s, parse_stem(s.stem)[1], s.received[1], s.tmin, s.tmax,
                    s.disk_bytes(), i == len(segs) - 1))
        doomed = _retention.plan(held, limits, _retention.Limits(self.options.get("max_bytes")),
                                 self.tags() + list(tags), now)
        deleted = []
        for h in doomed:
            if _delete(h.key):
                deleted.append(h.key.path)
        return deleted

    def _tags_problem(self) -> None:
        problem = self._tags.check()
        if problem:
            self._problem("tags", problem)
        else:
            self.problems.pop("tags", None)

    # ---- export --------------------------------------------------------------------------

    def export_hdf5(self, path: str | os.PathLike, start: TimeLike | str | None = None,
                    end: TimeLike | None = None, channels: Sequence[str] | None = None,
                    signals: Sequence[str] | None = None, *, tag: Tag | str | None = None,
                    allow_empty: bool = False, compression: str | None = None,
                    progress=None) -> str:
        """Write a Set (a time range of some channels) as one HDF5 file.

        Parameters
        ----------
        path : str or path
            The file to write (outside the store).
        start, end : time, optional
            The half-open range. ``start`` may name a tag instead, as ``tag`` does.
        channels : list of str, optional
            All channels by default, or the tag's.
        signals : list of str, optional
            ``name`` (in every channel that has it) or ``channel.name``; all by default.
        tag : Tag or str, optional
            Export this tag: its range and channels unless given, and its name and note in
            the file's attributes ``tag`` and ``note``.
        allow_empty : bool
            Write a file even when the range holds no record; otherwise that is
            `speeddata.EmptyRange`, which says what the channels hold.

        See `speeddata.hdf5` for the layout.
        """
        return sets.export_hdf5(self, path, start, end, channels, signals, tag=tag,
                                allow_empty=allow_empty, compression=compression,
                                progress=progress)

    def read_frame(self, names: Sequence[str], start: TimeLike | None = None,
                   end: TimeLike | None = None, how: str = "asof"):
        """Several channels' signals over one range, aligned in time, as one
        ``pyarrow.Table`` (``.to_pandas()``, ``polars.from_arrow()`` for the others).

        Parameters
        ----------
        names : list of str
            ``"channel.signal"``, or ``"channel"`` for all its signals. With
            ``how="asof"`` the first channel named gives the rows.
        start, end : time, optional
            The half-open range, as `Channel.read` takes it.
        how : {"asof", "outer"}
            ``"asof"``: a row per record of the first channel, each other signal its
            latest value at or before (as ``pandas.merge_asof``); ``"outer"``: a row per
            time of any channel, null where a channel has none (a full outer join).

        Returns
        -------
        pyarrow.Table
            ``time`` (``timestamp[ns, tz=UTC]``) and a column ``channel.signal`` each.
        """
        return sets.read_frame(self, names, start, end, how)

def _delete(seg) -> bool:
    gone = False
    for p in (seg.path, seg.idx_path, seg.path[: -len(".avro")] + ".sum"):
        try:
            os.remove(p)
            gone = True
        except FileNotFoundError:
            pass
    return gone
