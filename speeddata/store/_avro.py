"""Avro object container files in and out of the store: any one (a segment, or any other)
read as a DataSet, a range of a channel written as one, its header read back for an
import, and a file of the store described for people."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import zstandard

from .. import schema as channel_schema
from ..codec import Plan, allocate, finish
from ..dataset import DataSet
from ..errors import SpeedDataError, StoreWarning
from . import _format as on_disk
from ._definition import TIME_FIELD_KEY, TIME_UNIT_KEY, stored_avro
from ._segment import Block, walk


def read_avro(path: str | os.PathLike, *, channel: str | None = None,
              time_field: str | None = "time", time_unit: str | None = None) -> DataSet:
    """Load an Avro object container file (a SpeedData segment or any other) as a DataSet.

    The channel is named after the store channel directory holding the file, else the
    schema's record name. A file whose records carry no time field gets a time column of
    zeros. Damaged blocks are skipped with a warning naming the file and offset.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        avro, codec, sync, pos = on_disk.parse_header(data)
        cs = channel_schema.load(avro, time_field=time_field, time_unit=time_unit)
    except SpeedDataError as e:
        raise type(e)(f"{path}: {e}") from e
    # a segment holds the receive time SpeedData stamped; a foreign file without a time
    # field does not (channel_schema.load prepended one to the schema: read without it)
    holds_time = not cs.stamped or bool(avro["fields"][0].get(channel_schema.STAMPED_KEY))
    plan = Plan(cs, wire=not holds_time)
    blocks = []
    for item in walk(data, pos, sync, codec, plan):
        if isinstance(item, Block):
            blocks.append(item)
        else:
            warnings.warn(f"{path}: skipping unreadable bytes from {item.offset} "
                          f"({item.reason})", StoreWarning, stacklevel=2)
    total = sum(b.records for b in blocks)
    time, columns, masks = allocate(cs, total)
    decompress = on_disk.Decompressor(codec)
    row = 0
    for b in blocks:
        _, payload, _ = on_disk.parse_block(data, b.offset, sync)
        plan.decode_into(decompress(payload), b.records, row, time, columns, masks)
        row += b.records
    parent = os.path.dirname(os.path.abspath(path))
    if channel is None:
        channel = os.path.basename(parent) if os.path.exists(
            os.path.join(parent, "schema.avsc")) else avro["name"]
    return DataSet({channel: finish(cs, time, columns, masks, channel)}, {"source": path})


def container(schema: channel_schema.ChannelSchema, blocks: Iterable[Any]) -> Iterator[bytes]:
    """Stored blocks as one Avro object container file, in pieces: the header with the
    schema as a channel keeps it, then each block as it is on disk (one written with
    another codec is re-coded to zstandard)."""
    sync = os.urandom(on_disk.SYNC_SIZE)
    yield on_disk.header(json.dumps(stored_avro(schema)), sync, on_disk.CODEC)
    recompress = None
    for block in blocks:
        payload = block.payload
        if block.codec != on_disk.CODEC:
            recompress = recompress or zstandard.ZstdCompressor()
            payload = recompress.compress(on_disk.Decompressor(block.codec)(payload))
        yield on_disk.block(block.records, payload, sync)


def container_schema(path: str | os.PathLike) -> tuple[dict, str | None, str | None]:
    """(Avro schema, time field, time unit) from the header of a container file that a
    channel wrote (`container`); the time field is ``time`` for a file of other origin."""
    with open(path, "rb") as f:
        avro = on_disk.parse_header(f.read(1 << 20))[0]
    schema = {k: v for k, v in avro.items() if k not in (TIME_FIELD_KEY, TIME_UNIT_KEY)}
    return schema, avro.get(TIME_FIELD_KEY, "time"), avro.get(TIME_UNIT_KEY)


@dataclass
class FileReport:
    """What a file of the store holds, as ``speeddata inspect`` shows it."""
    kind: str                                  # "index" or "container"
    blocks: int
    records: int
    size: int
    record_span: tuple[int, int] | None = None
    receive_span: tuple[int, int] | None = None     # an index only
    codec: str = ""
    schema: dict | None = None
    damage: list[tuple[int, str]] = field(default_factory=list)   # (byte offset, reason)


def describe(path: str | os.PathLike) -> FileReport:
    """A segment's index (``.idx``) or any Avro container file, summarised: blocks, records,
    the span of time they hold, and where they are damaged."""
    path = os.fspath(path)
    if path.endswith(".idx"):
        rows = on_disk.load_index(path)
        return FileReport("index", len(rows), int(rows["count"].sum()), os.path.getsize(path),
                          (int(rows["tmin"].min()), int(rows["tmax"].max())) if len(rows) else None,
                          (int(rows["rmin"].min()), int(rows["rmax"].max())) if len(rows) else None)
    with open(path, "rb") as f:
        data = f.read()
    avro, codec, sync, pos = on_disk.parse_header(data)
    blocks: list[Block] = []
    damage: list[tuple[int, str]] = []
    for item in walk(data, pos, sync, codec, Plan(channel_schema.load(avro))):
        if isinstance(item, Block):
            blocks.append(item)
        else:
            damage.append((item.offset, item.reason))
    times = [b.times for b in blocks if len(b.times)]
    span = (min(int(t.min()) for t in times), max(int(t.max()) for t in times)) if times else None
    return FileReport("container", len(blocks), sum(b.records for b in blocks), len(data), span,
                      codec=codec, schema=avro, damage=damage)
