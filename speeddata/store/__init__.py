"""The time-indexed segment store.

``speeddata.store.open(path)`` gives a `Store`: a directory with one subdirectory per
channel (under ``channels/``) holding its schema, its segments (Avro object container files,
zstandard blocks, named ``<first receive time ns>-<seq>.avro`` so that a sorted listing is
the write order) and a block index beside each (``.idx``). Nothing outside this package
opens a segment file.
"""
from ._avro import FileReport, describe, read_avro
from ._channel import Channel
from ._definition import load_stored, stored_avro
from ._writer import Appended
from ._names import check_name
from ._overview import Overview, SignalOverview
from ._store import DEFAULTS, Store, check_options, open
from ._tags import Tag

__all__ = ["Appended", "Channel", "DEFAULTS", "FileReport", "Overview", "SignalOverview", "Store",
           "Tag", "check_name", "check_options", "describe", "load_stored", "open", "read_avro",
           "stored_avro"]
