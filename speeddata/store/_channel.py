"""A channel of the store: the handle its users hold. Reads (from any number of processes)
go through its segment list (`_listing.py`) and are decoded by `_decode.py`, overviews by
`_overview_read.py`; appends are encoded by `_appends.py` and written by its one writer
(`_writer.py`); its definition on disk is `_definition.py`'s."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..codec import Plan
from ..columns import Columns
from ..errors import FormatError, StoreError, StoreWarning, TimeRangeError
from ..stats import ChannelStats
from ..timeutil import TimeLike, time_range
from . import _appends as appends
from . import _decode as decoding
from . import _format as on_disk
from . import _overview as summaries
from . import _overview_read as overview_read
from ._avro import container
from ._definition import read_definition
from ._listing import SegmentList
from ._lock import take_lock, writer_active
from ._overview import Overview
from ._segment import Repair, repair_channel
from ._view import SegmentView
from ._writer import Appended, Settings, Writer


@dataclass(frozen=True)
class StoreLink:
    """What a channel is given by its store; it never reaches back for more."""
    readonly: bool
    defaults: Callable[[], Mapping[str, Any]]     # the store's settings in force
    check_writable: Callable[[], None]            # raises StoreError when it cannot write
    retention: Callable[[], Any] | None           # a writer runs it: this process owns it


class Channel:
    """One channel of a store: signals sharing one schema and one time axis.

    Get one with ``store["name"]`` or ``store.create_channel(...)``. Appends go through a
    writer that takes the channel's lock on first use (one writing process per channel);
    reads work from any number of processes while it writes.
    """

    def __init__(self, name: str, path: str, link: StoreLink):
        self.name = name
        self.path = path
        self._link = link
        self.config, self.schema, self.rebuilt = read_definition(path, name, link.readonly)
        self._plan = Plan(self.schema)
        self._wire: Plan | None = None
        self._summarised = False
        self._writer: Writer | None = None
        self._segments = SegmentList(path, self._plan)
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<Channel {self.name!r} signals={self.schema.signal_names}>"

    @property
    def signals(self) -> list[str]:
        return self.schema.signal_names

    # ---- settings ------------------------------------------------------------------------

    def option(self, key: str):
        """A channel setting, falling back to the store's."""
        value = self.config.get("options", {}).get(key)
        return self._link.defaults()[key] if value is None else value

    @property
    def options(self) -> dict[str, Any]:
        """The settings this channel overrides (the rest follow the store's)."""
        return dict(self.config.get("options", {}))

    def writer_settings(self) -> Settings:
        """The settings in force, as the writer takes them."""
        return Settings.of(self.option, self._link.defaults().get("max_bytes"))

    def settings_changed(self) -> None:
        """The channel's or the store's settings changed: a writer takes them now."""
        if self._writer is not None:
            self._writer.configure()

    # ---- writing -------------------------------------------------------------------------

    def writer(self) -> Writer:
        with self.lock:
            if self._writer is None:
                self._link.check_writable()
                self._writer = Writer(self, retention=self._link.retention)
            return self._writer

    def append(self, records: Iterable[Mapping[str, Any]], *,
               receive_time: TimeLike | None = None) -> Appended:
        """Append records given as dicts (the slow path, for tests and tools).

        Nested records are nested dicts, as fastavro takes them. Times are in the channel's
        time unit; a channel without a time field stamps ``receive_time`` (default: now).
        """
        return self.append_datagrams(appends.record_datagrams(self.schema, self.name, records),
                                     receive_time=receive_time)

    def append_datagrams(self, datagrams: Iterable[bytes | memoryview], *,
                         receive_time: TimeLike | None = None) -> Appended:
        """Append raw datagrams (one or more Avro records each, as devices send them).

        Datagrams that do not decode exactly are rejected and counted by reason; the rest
        are stored.
        """
        return self.writer().add(datagrams, appends.receive_ns(receive_time))

    def append_columns(self, time: Any, data: Mapping[str, Any] | None = None, *,
                       receive_time: TimeLike | None = None) -> Appended:
        """Append records given as columns: ``time`` (int64 ns or numpy.datetime64) and one
        array per signal (masked arrays for nulls; enum signals as symbols or indexes), or
        a `Columns`. The fast path for Python producers, imports and generators.

        A channel without a time field stamps ``receive_time`` (default: now); give
        ``time=None`` for it.

        Any number of records: they are encoded and stored 65,536 at a time, in bounded
        memory, and every value is checked before the first is stored, so a column that
        does not fit the schema stores nothing.
        """
        if self._wire is None:
            self._wire = Plan(self.schema, wire=True)
        batches = appends.column_batches(self._wire, self.name, time, data,
                                   int(self.option("block_bytes")))
        return self.writer().add_batches(batches, appends.receive_ns(receive_time))

    def flush(self) -> None:
        """Write the open block, and the summary rows held back, now (appends flush by
        size and age on their own)."""
        with self.lock:
            if self._writer is not None:
                self._writer.flush()
                self._writer.write_summaries()

    def close(self) -> None:
        """Flush, give up the writer lock and the segments' mappings."""
        with self.lock:
            self._segments.release()
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    # ---- reading -------------------------------------------------------------------------

    def _selected(self, start, end) -> tuple[list, int, int]:
        lo, hi = time_range(start, end)
        last = hi - 1      # inclusive, so that an open end reaches 2**63 - 1
        self.flush()
        with self.lock:
            return self._segments.select(lo, last), lo, last

    def read(self, start: TimeLike | None = None, end: TimeLike | None = None,
             signals: Sequence[str] | None = None) -> Columns:
        """Records with start <= time < end, sorted by time, as columns.

        Parameters
        ----------
        start, end : time, optional
            Half-open range; None for open-ended. int ns, datetime, numpy.datetime64 or
            ISO 8601 text.
        signals : list of str, optional
            Signals to decode (all by default); ``time`` always comes (naming it is fine).
        """
        selected, lo, last = self._selected(start, end)
        return decoding.decode(self._plan, self.name, selected, lo, last,
                               decoding.data_signals(signals))

    def iter_read(self, start: TimeLike | None = None, end: TimeLike | None = None,
                  signals: Sequence[str] | None = None,
                  chunk_records: int = 1 << 20) -> Iterator[Columns]:
        """Like `read`, in time-ordered chunks of about ``chunk_records`` records, so that
        memory stays bounded.

        Blocks are decoded in order of their first time; a chunk goes out once no block
        still to decode can hold an earlier record. Out-of-order data costs memory only
        where records really overlap: a stray record from a wrong device clock, outside the
        range, is dropped on decoding and holds nothing back.
        """
        selected, lo, last = self._selected(start, end)
        yield from decoding.chunks(self._plan, self.name, selected, lo, last,
                            decoding.data_signals(signals), chunk_records)

    def avro_container(self, start: TimeLike | None = None, end: TimeLike | None = None
                       ) -> Iterator[bytes]:
        """The stored blocks that may hold [start, end) as one Avro object container file,
        in pieces (blocks at the edges hold some records outside the range): what any Avro
        reader opens, and `Store.import_avro` takes back."""
        return container(self.schema, self.iter_blocks(start, end))

    def iter_blocks(self, start: TimeLike | None = None, end: TimeLike | None = None
                    ) -> Iterator[StoredBlock]:
        """The stored blocks that may hold records in [start, end), as they are on disk
        (compressed Avro, in segment order), with their index entries: for streaming Avro
        without decoding. Blocks straddling an edge hold records outside the range too."""
        selected, _, _ = self._selected(start, end)
        for seg, blocks in selected:
            try:
                codec, _ = seg.head()
                with open(seg.path, "rb") as f:
                    for b in blocks:
                        f.seek(int(b["offset"]))
                        raw = f.read(int(b["length"]))
                        count, payload, _ = on_disk.parse_block(raw, 0, seg.head()[1])
                        yield StoredBlock(seg.path, int(b["offset"]), count, int(b["tmin"]),
                                          int(b["tmax"]), codec, bytes(payload))
            except FileNotFoundError:      # deleted by retention meanwhile
                continue
            except (OSError, FormatError) as e:
                warnings.warn(f"{seg.path}: skipping blocks from byte "
                              f"{int(blocks[0]['offset'])}: {e}", StoreWarning, stacklevel=2)

    def count(self, start: TimeLike | None = None, end: TimeLike | None = None, *,
              estimate: bool = False) -> int:
        """Records in [start, end), exact: from the index for blocks inside the range,
        decoding only the times of blocks that straddle an edge. ``estimate=True`` answers
        from the index alone, an upper bound."""
        selected, lo, last = self._selected(start, end)
        inside, edges = 0, []
        for seg, blocks in selected:
            within = (blocks["tmin"] >= lo) & (blocks["tmax"] <= last)
            inside += int(blocks["count"][within].sum())
            if estimate:
                inside += int(blocks["count"][~within].sum())
            elif not within.all():
                edges.append((seg, blocks[~within]))
        return inside + (len(decoding.decode(self._plan, self.name, edges, lo, last, []))
                         if edges else 0)

    def overview(self, start: TimeLike | None = None, end: TimeLike | None = None,
                 buckets: int = 1200, signals: Sequence[str] | None = None) -> Overview:
        """Per bucket of equal time width over [start, end): the record count and, for each
        numeric signal, count, min, max, mean, first and last, with the times of the min,
        max, first and last (what a chart needs to draw a line exact at pixel resolution).

        Computed from the summary each block carries, decoding only the blocks that
        straddle a bucket edge: a day costs about what a minute costs. An open end is
        bounded by the time held.
        """
        if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
            raise TimeRangeError(f"buckets must be a positive integer, not {buckets!r}")
        lo, hi = time_range(start, end)
        if not self._summarised and not self._link.readonly:
            self._summarised = True     # an older store's segments: summarised once, here
            self.build_summaries()
        held = self.holds()
        if held is None:
            lo, hi = (lo if start is not None else 0), (hi if end is not None else 1)
        else:
            lo = lo if start is not None else held[0]
            hi = hi if end is not None else held[1] + 1
        hi = max(hi, lo + 1)
        names = overview_read.checked_signals(self.schema, signals)
        self.flush()
        with self.lock:
            segments = self._segments.within(lo, hi - 1)
        return overview_read.overview(self._plan, self.name, segments, lo, hi, buckets, names)

    def build_summaries(self, progress=None) -> int:
        """Summaries for the closed segments that lack them (written by an older version,
        or lost): each block decoded once. Returns the blocks summarised."""
        if not summaries.numeric_signals(self.schema) or self._link.readonly:
            return 0
        views = self.views()
        if self._writer is not None or writer_active(self.path):
            views = views[:-1]             # its writer appends summaries as it goes
        return overview_read.build_summaries(self.name, self._plan, views, progress)

    # ---- what it holds -------------------------------------------------------------------

    def segments(self) -> list[str]:
        """Paths of the channel's segment files, oldest first."""
        return [s.path for s in self.views()]

    def views(self) -> list[SegmentView]:
        """The segments' checked index views, oldest first (for retention and tools)."""
        with self.lock:
            return list(self._segments.refresh())

    def holds(self) -> tuple[int, int] | None:
        """(first, last) record time held, in ns; None when empty."""
        with self.lock:
            segs = [s for s in self._segments.refresh() if len(s.index)]
        if not segs:
            return None
        return min(s.tmin for s in segs), max(s.tmax for s in segs)

    def received(self) -> tuple[int, int] | None:
        """(first, last) receive time of the records held, in ns; None when empty. Unlike
        `holds`, this never trusts a device's clock: it is what retention goes by."""
        with self.lock:
            spans = [s.received for s in self._segments.refresh() if len(s.index)]
        if not spans:
            return None
        return min(a for a, _ in spans), max(b for _, b in spans)

    def stats(self) -> ChannelStats:
        """What the channel holds (records, bytes on disk, segments, time held by both
        clocks) and, when this process writes it, its ingest counters."""
        self.flush()
        with self.lock:
            segs = self._segments.refresh()
            records = sum(s.records for s in segs)
        held, received = self.holds(), self.received()
        out = self._writer.counters(self.name) if self._writer is not None \
            else ChannelStats(self.name)
        out.stored_records = records
        out.bytes = sum(s.disk_bytes() for s in segs)
        out.segments = len(segs)
        out.first_time, out.last_time = held if held else (None, None)
        out.first_received, out.last_received = received if received else (None, None)
        return out

    # ---- repair --------------------------------------------------------------------------

    def repair_if_idle(self) -> list[Repair]:
        """Repair unless another process is writing the channel (its writer repaired it)."""
        try:
            fd = take_lock(self.path, self.name)
        except StoreError:
            return []
        try:
            return self.repair()
        finally:
            os.close(fd)

    def repair(self) -> list[Repair]:
        """Repair segments a killed writer left torn or damage left unreadable (needs the
        writer lock). A cheap check of each segment's index against its size finds them."""
        done = repair_channel(self.path, self._plan, self.schema.to_json())
        self._segments.forget()
        return done


class StoredBlock(NamedTuple):
    """One block as stored: its records' count and time range, and its compressed payload
    (Avro binary records, back to back, compressed with ``codec``)."""
    segment: str
    offset: int
    records: int
    tmin: int
    tmax: int
    codec: str
    payload: bytes
