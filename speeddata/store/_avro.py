"""Reading a single Avro object container file (a segment, or any other) as a DataSet."""

from __future__ import annotations

import os
import warnings

from .. import schema as S
from ..codec import Plan, allocate, finish
from ..dataset import DataSet
from ..errors import SpeedDataError, StoreWarning
from . import _format as F
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
        avro, codec, sync, pos = F.parse_header(data)
        cs = S.load(avro, time_field=time_field, time_unit=time_unit)
    except SpeedDataError as e:
        raise type(e)(f"{path}: {e}") from e
    # a segment holds the receive time SpeedData stamped; a foreign file without a time
    # field does not (S.load prepended one to the schema: read without it)
    holds_time = not cs.stamped or bool(avro["fields"][0].get(S.STAMPED_KEY))
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
    decompress = F.Decompressor(codec)
    row = 0
    for b in blocks:
        _, payload, _ = F.parse_block(data, b.offset, sync)
        plan.decode_into(decompress(payload), b.records, row, time, columns, masks)
        row += b.records
    parent = os.path.dirname(os.path.abspath(path))
    if channel is None:
        channel = os.path.basename(parent) if os.path.exists(
            os.path.join(parent, "schema.avsc")) else avro["name"]
    return DataSet({channel: finish(cs, time, columns, masks, channel)}, {"source": path})
