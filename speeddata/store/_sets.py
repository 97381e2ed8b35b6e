"""Sets: several channels over one range, as one HDF5 file (`Store.export_hdf5`) or one
Arrow table aligned in time (`Store.read_frame`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import StoreError, TagNotFound, TimeRangeError, listing
from ..timeutil import TimeLike, time_range, to_ns
from ._tags import Tag


def export_hdf5(store, path: str | os.PathLike, start: TimeLike | str | None,
                end: TimeLike | None, channels: Sequence[str] | None,
                signals: Sequence[str] | None, *, tag: Tag | str | None, allow_empty: bool,
                compression: str | None, progress) -> str:
    """`Store.export_hdf5`."""
    from ..hdf5 import export     # h5py loads only when a file is written
    out = os.path.realpath(os.fspath(path))
    if os.path.commonpath([out, os.path.realpath(store.path)]) == \
            os.path.realpath(store.path):
        raise StoreError(f"refusing to write {out}: it is inside the store {store.path}",
                         hint="export to a path outside the store directory")
    found = store.get_tag(tag) if isinstance(tag, str) else tag
    if found is None and isinstance(start, str) and end is None:
        name = start
        try:
            found, start = store.get_tag(name), None
        except TagNotFound:
            try:
                to_ns(name)
            except TimeRangeError:
                raise TagNotFound(f"no tag {name!r}", hint="tags are: " + listing(
                    t.name for t in store.tags())) from None
    if found is not None and start is None and end is None:
        lo, hi = found.start, found.end
    else:
        if start is None and end is None:
            raise TimeRangeError("export_hdf5 needs a time range or a tag name")
        lo, hi = time_range(start, end)
    if channels is None and found is not None and found.channels is not None:
        channels = list(found.channels)
    names = list(dict.fromkeys(channels)) if channels is not None else store.channels
    return export(store, os.fspath(path), lo, hi, [store[n] for n in names], signals,
                  compression=compression, progress=progress, tag=found,
                  allow_empty=allow_empty)


def read_frame(store, names: Sequence[str], start: TimeLike | None, end: TimeLike | None,
               how: str) -> Any:
    """`Store.read_frame`."""
    from ..arrow import frame, split_names
    wanted = split_names(names, store.channels)
    return frame({c: store[c].read(start, end, s) for c, s in wanted.items()}, how)
