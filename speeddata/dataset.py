"""DataSet: a Set (channels over one time range) loaded for analysis.

``data.example.sine_wave``, ``data.channel["example"].sine_wave`` and, when the signal name
is unique across channels, ``data.sine_wave`` (as the prototype's DataSet allowed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from . import schema as S
from .codec import Columns, Plan, allocate, finish
from .errors import SpeedDataError


class DataSet:
    """Channels of one Set, each a `speeddata.codec.Columns` (``time`` plus signals)."""

    def __init__(self, channels: Mapping[str, Columns], attrs: Mapping | None = None):
        self.channel = dict(channels)
        self.attrs = dict(attrs or {})

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {len(v)} records" for k, v in self.channel.items())
        return f"<DataSet {parts}>"

    def __getitem__(self, name: str) -> Columns:
        return self.channel[name]

    def __getattr__(self, name: str):
        channels = self.__dict__.get("channel", {})
        if name in channels:
            return channels[name]
        owners = [c for c, cols in channels.items() if name in cols.data]
        if len(owners) == 1:
            return channels[owners[0]][name]
        if owners:
            raise AttributeError(f"signal {name!r} is in several channels ({', '.join(owners)}); "
                                 f"say which: data.{owners[0]}.{name}")
        raise AttributeError(f"no channel or signal {name!r} in this DataSet")

    @property
    def signals(self) -> dict[str, list[str]]:
        return {c: cols.signals for c, cols in self.channel.items()}


def read_hdf5(path: str | os.PathLike) -> DataSet:
    """Load an HDF5 Set written by SpeedData (``store.export_hdf5`` or the pivot API)."""
    from .hdf5 import read
    return read(os.fspath(path))


def read_avro(path: str | os.PathLike, *, channel: str | None = None,
              time_field: str | None = "time", time_unit: str | None = None) -> DataSet:
    """Load an Avro object container file (a SpeedData segment or any other) as a DataSet.

    The channel is named after the store channel directory holding the file, else the
    schema's record name. A file without the time field gets a time column of zeros.
    """
    from .store import _format as F
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        avro, codec, sync, pos = F.parse_header(data)
        cs = S.load(avro, time_field=time_field, time_unit=time_unit)
        decompress = F.Decompressor(codec)
        bodies = []
        while pos < len(data):
            count, payload, pos = F.parse_block(data, pos, sync)
            bodies.append((count, decompress(payload)))
    except SpeedDataError as e:
        raise type(e)(f"{path}: {e}") from e
    plan = Plan(cs, wire=cs.stamped)   # a stamped time field the file does not hold reads as 0
    total = sum(c for c, _ in bodies)
    time, columns, masks = allocate(cs, total)
    row = 0
    for count, body in bodies:
        plan.decode_into(body, count, row, time, columns, masks)
        row += count
    if cs.stamped:
        time[:] = 0
    parent = os.path.dirname(os.path.abspath(path))
    if channel is None:
        channel = os.path.basename(parent) if os.path.exists(
            os.path.join(parent, "schema.avsc")) else avro["name"]
    return DataSet({channel: finish(cs, time, columns, masks, channel)}, {"source": path})
