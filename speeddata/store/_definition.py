"""A channel's definition on disk: its schema (``schema.avsc``) and settings
(``channel.json``), each rebuilt from what survives when the other, or a segment header,
still says enough."""

from __future__ import annotations

import json
import os
from typing import Any

from .. import schema as channel_schema
from ..errors import FormatError, StoreError
from . import _format as on_disk

SCHEMA_FILE = "schema.avsc"
CONFIG_FILE = "channel.json"
TIME_FIELD_KEY = "speeddata.time_field"     # kept in the stored schema too, so that a
TIME_UNIT_KEY = "speeddata.time_unit"       # channel's definition survives a lost channel.json


def stored_avro(cs: channel_schema.ChannelSchema) -> dict:
    """The schema as a channel keeps it: with its time field and unit, so that the schema
    file (and every segment header, which holds it) alone defines the channel."""
    return dict(cs.avro, **{TIME_FIELD_KEY: cs.time_field, TIME_UNIT_KEY: cs.time_unit})


def load_stored(avro: dict) -> channel_schema.ChannelSchema:
    """A schema as a channel keeps it (`stored_avro`), checked, with its time field."""
    return channel_schema.load(avro, time_field=avro.get(TIME_FIELD_KEY),
                               time_unit=avro.get(TIME_UNIT_KEY))


def read_definition(path: str, name: str, readonly: bool):
    """(config, schema, what was rebuilt) of a channel directory. A damaged channel.json is
    rebuilt from the schema; a damaged schema.avsc from the newest segment's header. What
    is rebuilt is written back (unless read-only) and named, so the store can say so."""
    rebuilt = []
    schema_path, config_path = os.path.join(path, SCHEMA_FILE), os.path.join(path, CONFIG_FILE)
    try:
        avro = read_json(schema_path, name, dict)
    except StoreError as e:
        avro = schema_from_segments(path)
        if avro is None:
            raise
        rebuilt.append(f"{schema_path} ({e.args[0]}): rebuilt from a segment header")
    try:
        config = read_json(config_path, name, dict)
    except StoreError as e:
        if TIME_FIELD_KEY not in avro:
            raise StoreError(f"{e.args[0]}; its schema does not name the time field either",
                             hint="restore channel.json from a backup") from None
        config = {"name": name, "time_field": avro[TIME_FIELD_KEY],
                  "time_unit": avro[TIME_UNIT_KEY], "options": {}}
        rebuilt.append(f"{config_path} ({e.args[0]}): rebuilt from the schema; the channel's "
                       "own settings are lost")
    if not isinstance(config.get("options"), dict):
        # channels of store format 1 kept their settings beside name and time
        config["options"] = {k: v for k, v in config.items()
                             if k not in ("name", "time_field", "time_unit", "created",
                                          "options")}
    try:
        schema = channel_schema.load(avro, time_field=config.get("time_field"),
                        time_unit=config.get("time_unit"))
    except channel_schema.SchemaError as e:
        raise StoreError(f"channel {name!r}: {schema_path} is damaged: {e}") from e
    if rebuilt and not readonly:
        write_json(schema_path, avro)
        write_json(config_path, config)
    return config, schema, rebuilt


def schema_from_segments(path: str) -> dict | None:
    for stem in sorted((n[:-5] for n in os.listdir(path) if n.endswith(".avro")),
                       reverse=True):
        try:
            return on_disk.read_header(os.path.join(path, stem + ".avro"))[0]
        except (FormatError, OSError):
            continue
    return None


def write_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def read_json(path: str, channel: str, kind: type):
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise StoreError(f"channel {channel!r}: {path} is damaged or missing: {e}",
                         hint="restore the file from a backup, or drop the channel") from e
    if not isinstance(value, kind):
        raise StoreError(f"channel {channel!r}: {path} is damaged (not a JSON object)")
    return value
