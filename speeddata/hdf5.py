"""HDF5 pivots: rows of Avro blocks to columns of an HDF5 file, one file per Set.

Layout (readable by h5py, pandas and MATLAB without SpeedData)::

    /                         attrs: start, end (int64 ns), speeddata_version, tag, note
    /<channel>/               attrs: avro_schema (JSON), time_field, time_unit, records
    /<channel>/time           int64 ns since the Unix epoch (attr units)
    /<channel>/<signal>       one dataset per signal; attrs: doc, avro_type (+ symbols, unit)
    /<channel>/.valid/<signal>  bool, only for nullable signals (False where null; the data
                              there is NaN for floats, 0 or empty otherwise). The leading
                              dot keeps it apart from every signal name: Avro names have
                              none. (Files of SpeedData 0.1 call it _valid.)

Strings are UTF-8 variable-length strings; bytes variable-length uint8; fixed opaque;
enums their symbols as strings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import h5py
import numpy as np

from ._version import __version__
from .columns import Columns
from .dataset import DataSet
from .errors import EmptyRange, SchemaError, StoreError
from .prefetch import prefetch
from .timeutil import format_ns

CHUNK = 1 << 16
VALID = ".valid"
_I64_MAX = 2**63 - 1


def _signals_for(channel, specs: Sequence[str] | None) -> list[str]:
    if specs is None:
        return channel.signals
    return [s for s in channel.signals if s in specs or f"{channel.name}.{s}" in specs]


def _h5_dtype(sig):
    if sig.type in ("string", "enum"):
        return h5py.string_dtype("utf-8")
    if sig.type == "bytes":
        return h5py.vlen_dtype(np.dtype(np.uint8))
    if sig.type == "fixed":
        return np.dtype(f"V{max(sig.size, 1)}")
    return sig.dtype


def _h5_values(sig, values: np.ndarray) -> np.ndarray:
    mask = np.ma.getmaskarray(values) if np.ma.isMaskedArray(values) else None
    if mask is not None:
        fill: Any = {"f": np.nan}.get(values.dtype.kind, 0)
        if values.dtype == object:
            fill = "" if sig.type in ("string", "enum") else b""
        values = np.ma.filled(values, fill)
    if sig.type == "bytes":
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):   # one by one: numpy would stack equal lengths
            out[i] = np.frombuffer(v or b"", dtype=np.uint8)
        return out
    if sig.type == "fixed":
        size = max(sig.size, 1)
        return np.array([(v or b"").ljust(size, b"\0") for v in values], dtype=f"V{size}")
    return values


def export(store, path: str, lo: int, hi: int, channels, signals, *,
           compression: str | None = None, progress: Callable[[str, int], None] | None = None,
           tag=None, allow_empty: bool = False) -> str:
    """Write channels' records in [lo, hi) to ``path``, block by block (bounded memory).
    A range without any record is `EmptyRange` (saying what the channels hold) unless
    ``allow_empty``; a ``tag`` names the file (its attributes ``tag`` and ``note``)."""
    if not allow_empty:
        check_not_empty(channels, lo, hi)
    wanted = {ch.name: _signals_for(ch, signals) for ch in channels}
    if signals is not None:
        found = {s for ch in channels for s in wanted[ch.name]} | \
                {f"{ch.name}.{s}" for ch in channels for s in wanted[ch.name]}
        missing = [s for s in signals if s not in found]
        if missing:
            raise SchemaError(f"signal(s) {', '.join(map(repr, missing))} not in channel(s) "
                              f"{', '.join(ch.name for ch in channels)}")
    tmp = f"{path}.partial-{os.getpid()}"
    try:
        try:
            _write(tmp, lo, hi, channels, wanted, compression, progress, tag, contiguous=True)
        except _Short:
            # a block went unreadable between counting and reading (damage, retention):
            # write again with datasets that grow as they are filled
            _write(tmp, lo, hi, channels, wanted, compression, progress, tag, contiguous=False)
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise StoreError(f"cannot write {path}: {e}") from e
    except BaseException:
        _remove(tmp)
        raise
    return path


def check_not_empty(channels, lo: int, hi: int) -> None:
    """`EmptyRange` when none of ``channels`` holds a record in [lo, hi), naming what each
    holds (a channel of another node says only that it has none there)."""
    if any(ch.count(lo, hi) for ch in channels):
        return
    held = []
    for ch in channels:
        span = ch.holds() if hasattr(ch, "holds") else None
        held.append(f"{ch.name} holds {format_ns(span[0])} to {format_ns(span[1])}" if span
                    else f"{ch.name} holds nothing" if hasattr(ch, "holds")
                    else f"{ch.name} (on another node) holds nothing in it")
    names = ", ".join(ch.name for ch in channels) or "no channel"
    raise EmptyRange(f"nothing to export: {format_ns(lo)} to {format_ns(hi)} holds no record "
                     f"of {names}; " + "; ".join(held[:20]),
                     hint="pick a range the channels hold, or pass allow_empty=True for a "
                          "file without records")


class _Short(Exception):
    """Fewer records came than were counted."""


def _write(tmp: str, lo: int, hi: int, channels, wanted, compression, progress, tag, *,
           contiguous: bool) -> None:
    with h5py.File(tmp, "w", track_order=True) as f:
        f.attrs.update({"start": lo, "end": min(hi, _I64_MAX), "speeddata_version": __version__,
                        "tag": tag.name if tag else "", "note": tag.note if tag else ""})
        for ch in channels:
            _export_channel(f, ch, lo, hi, wanted[ch.name], compression, progress, contiguous)


def _export_channel(f: h5py.File, ch, lo, hi, names, compression, progress,
                    contiguous: bool) -> None:
    # a channel read from another node does not know its count before it is read
    contiguous = contiguous and getattr(ch, "exact_count", True)
    g = f.create_group(ch.name, track_order=True)
    cs = ch.schema
    g.attrs.update({"avro_schema": cs.to_json(), "time_field": cs.time_field,
                    "time_unit": cs.time_unit})
    end = hi if hi <= _I64_MAX else None
    total = ch.count(lo, end) if contiguous and not compression else 0
    if contiguous and not compression:
        # the size is known: plain contiguous datasets, as fast to write as h5py gets
        shape, opts = (total,), {}
    else:
        shape, opts = (0,), {"chunks": (CHUNK,), "maxshape": (None,)}
        if compression:
            opts["compression"] = compression
    sets = {"time": g.create_dataset("time", shape, dtype=np.int64, **opts)}
    sets["time"].attrs["units"] = "ns since 1970-01-01T00:00:00Z"
    valid = {}
    for name in names:
        sig = cs.signal(name)
        d = sets[name] = g.create_dataset(name, shape, dtype=_h5_dtype(sig), **opts)
        d.attrs.update({"doc": sig.doc, "avro_type": sig.type})
        if sig.unit:
            d.attrs["unit"] = sig.unit
        if sig.symbols:
            d.attrs["symbols"] = list(sig.symbols)
        if sig.nullable:
            valid[name] = g.require_group(VALID).create_dataset(name, shape, dtype=bool,
                                                                **opts)
    n = 0
    # the next chunk decodes while h5py writes this one (about 30% faster)
    for cols in prefetch(ch.iter_read(lo, end, names), name="speeddata-export"):
        m = len(cols)
        if not m:
            continue
        if contiguous and not compression and n + m > total:
            raise _Short()        # more came than counted (a writer appended meanwhile)
        columns = [(d, cols.time if key == "time" else _h5_values(cs.signal(key), cols[key]))
                   for key, d in sets.items()]
        columns += [(d, ~np.ma.getmaskarray(cols[key])) for key, d in valid.items()]
        for d, values in columns:
            if d.shape[0] < n + m:
                d.resize((n + m,))
            # write_direct: slicing would stack equal-length byte strings into 2-D
            d.write_direct(np.ascontiguousarray(values), np.s_[0:m], np.s_[n:n + m])
        n += m
        if progress:
            progress(ch.name, n)
    if contiguous and not compression and n != total:
        raise _Short()
    g.attrs["records"] = n


def read_hdf5(path: str | os.PathLike) -> DataSet:
    """Load an HDF5 Set written by SpeedData (``store.export_hdf5``, ``speeddata export``,
    the pivot API or the page's button).

    Parameters
    ----------
    path : str or path
        The file.

    Returns
    -------
    DataSet
        One `Columns` per channel (``data.rig.x``, ``data.channel["rig"]``), nulls masked
        where the file's ``.valid`` says so; ``data.attrs`` holds the file's ``start``,
        ``end``, ``tag`` and ``note``. ``data.to_arrow()`` / ``data.to_pandas()`` align
        the channels in time.
    """
    channels = {}
    with h5py.File(path, "r") as f:
        for name, g in f.items():
            if not isinstance(g, h5py.Group) or "time" not in g:
                continue
            data = {key: _read_signal(g, key, d) for key, d in g.items()
                    if key != "time" and isinstance(d, h5py.Dataset)}
            channels[name] = Columns(g["time"][()], data, name)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    return DataSet(channels, attrs)


def _read_signal(g: h5py.Group, key: str, d: h5py.Dataset) -> np.ndarray:
    """One signal back as export wrote it: strings and bytes as objects, nulls masked."""
    if h5py.check_string_dtype(d.dtype):
        values = d.asstr()[()].astype(object)
    elif h5py.check_vlen_dtype(d.dtype) is not None or d.dtype.kind == "V":
        raw = d[()]
        values = np.empty(len(raw), dtype=object)   # filled one by one: equal lengths
        for i, v in enumerate(raw):                 # would otherwise stack into 2-D
            values[i] = v.tobytes()
    else:
        values = d[()]
    for group in (VALID, "_valid"):
        if isinstance(g.get(group), h5py.Group) and key in g[group]:
            return np.ma.MaskedArray(values, mask=~g[group][key][()])
    return values


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
