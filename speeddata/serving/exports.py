"""HDF5 exports as serve sends them: each bounded (records, temporary disk, how many at
once), written to a temporary file first (HDF5 needs to seek) that carries serve's pid, so
the next serve removes the file of one killed meanwhile, then sent in chunks."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..columns import Columns
from ..errors import LimitExceeded, StoreError, TooMany
from .limits import Limits
from ..schema import ChannelSchema
from ..store import Store
from ..store import Tag


class Exports:
    """The exports of one serving store, within its `Limits`."""

    def __init__(self, store: Store, limits: Limits):
        self.store = store
        self.limits = limits
        self._running = 0
        self._lock = threading.Lock()

    def hdf5(self, lo: int, hi: int, readers: list, signals: Sequence[str], tag: Tag | None,
             chunk_bytes: int, progress: Callable[[float], None] | None,
             allow_empty: bool = False) -> Iterator[tuple[bytes, int]]:
        """The HDF5 file of [lo, hi] of the channels ``readers`` read (the store's, or
        `RemoteReader`), in chunks: (bytes, file size). Refused, before anything is
        written, beyond the record limit, the temporary disk's room or the exports at
        once."""
        total = sum(r.count(lo, hi, estimate=True) for r in readers)
        limit = self.limits.export_records
        if limit is not None and total > limit:
            raise LimitExceeded(f"the export holds about {total} records, more than the "
                                f"limit of {limit}", hint="export a shorter range")
        width = 8 + sum(8 * len(r.signals) for r in readers) // max(1, len(readers))
        need = total * width + (1 << 20)
        free = shutil.disk_usage(tempfile.gettempdir()).free
        if need > free:
            raise StoreError(f"the export needs about {need >> 20} MiB in "
                             f"{tempfile.gettempdir()}, which has {free >> 20} MiB free",
                             hint="export a shorter range or fewer signals, or free space")
        with self._lock:
            if self.limits.exports is not None and self._running >= self.limits.exports:
                raise TooMany(f"{self._running} exports are running, the limit at once",
                              hint="try again when one has finished")
            self._running += 1
        try:
            yield from self._file(lo, hi, readers, signals, tag, max(1, total), chunk_bytes,
                                  progress, allow_empty)
        finally:
            with self._lock:
                self._running -= 1

    def _file(self, lo, hi, readers, signals, tag, expected, chunk_bytes,
              progress, allow_empty: bool) -> Iterator[tuple[bytes, int]]:
        done = 0

        def step(_channel: str, n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(min(1.0, done / expected) * 0.9)

        fd, path = tempfile.mkstemp(prefix=f"speeddata-{os.getpid()}-export-", suffix=".h5")
        os.close(fd)
        try:
            self._write(path, lo, hi, readers, list(signals) or None, step, tag, allow_empty)
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                while chunk := f.read(chunk_bytes):
                    yield chunk, size
        finally:
            os.remove(path)

    def _write(self, path: str, lo: int, hi: int, readers, signals, step,
               tag: Tag | None, allow_empty: bool) -> None:
        from ..hdf5 import export
        if all(not isinstance(r, RemoteReader) for r in readers):
            self.store.export_hdf5(path, lo, hi, [r.name for r in readers], signals,
                                   tag=tag, allow_empty=allow_empty, progress=step)
            return
        export(self.store, path, lo, hi, readers, signals, progress=step, tag=tag,
               allow_empty=allow_empty)


class RemoteReader:
    """Another node's channel as an HDF5 export reads it: its schema (from the registry),
    and its records through ``query(name, start, end, signals=None, buckets=0)``, which
    asks the node that stores it."""

    exact_count = False           # a count here would cost a read: datasets grow instead

    def __init__(self, name: str, schema: ChannelSchema,
                 query: Callable[..., Iterator[Columns]]):
        self.name = name
        self.schema = schema
        self._query = query

    @property
    def signals(self) -> list[str]:
        return self.schema.signal_names

    def count(self, start: int | None = None, end: int | None = None,
              estimate: bool = False) -> int:
        ov = next(iter(self._query(self.name, start or 0, end, buckets=1)))
        return int(np.asarray(ov.data["time:count"]).sum()) if "time:count" in ov.data else 0

    def iter_read(self, start: int | None, end: int | None, signals=None,
                  **_: Any) -> Iterator[Columns]:
        for cols in self._query(self.name, start or 0, end, signals):
            yield Columns(cols.time, cols.data, self.name)
