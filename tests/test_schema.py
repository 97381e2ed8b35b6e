import json
from pathlib import Path

import numpy as np
import pytest

from speeddata import SchemaError
from speeddata import schema as S

# the prototype's two example schemas, shipped with the package
REFERENCE = Path(__file__).resolve().parents[1] / "speeddata" / "schemas"
EXAMPLE = {"namespace": "t", "type": "record", "name": "r", "fields": [
    {"name": "time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "v", "type": "double", "doc": "volts"},
]}


def test_loads_dict_json_text_and_path(tmp_path):
    path = tmp_path / "r.avsc"
    path.write_text(json.dumps(EXAMPLE))
    for given in (EXAMPLE, json.dumps(EXAMPLE), str(path), path):
        cs = S.load(given)
        assert cs.signal_names == ["v"]
        assert cs.time_field == "time" and cs.time_unit == "us" and cs.time_scale == 1000
        assert cs.signal("v").doc == "volts"


def test_every_type_flattens_to_signals():
    cs = S.load({"type": "record", "name": "all", "fields": [
        {"name": "time", "type": "long"},
        {"name": "b", "type": "boolean"}, {"name": "i", "type": "int"},
        {"name": "l", "type": "long"}, {"name": "f", "type": "float"},
        {"name": "d", "type": "double"}, {"name": "by", "type": "bytes"},
        {"name": "s", "type": "string"}, {"name": "n", "type": "null"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 3}},
        {"name": "o", "type": ["null", "double"]},
        {"name": "outer", "type": {"type": "record", "name": "O", "fields": [
            {"name": "inner", "type": "int"},
            {"name": "deep", "type": ["null", {"type": "record", "name": "D", "fields": [
                {"name": "x", "type": "float"}]}]}]}},
        {"name": "again", "type": "O"},
    ]})
    assert cs.signal_names == ["b", "i", "l", "f", "d", "by", "s", "e", "fx", "o", "outer.inner",
                               "outer.deep.x", "again.inner", "again.deep.x"]
    assert cs.signal("fx").dtype == np.dtype(object) and cs.signal("fx").size == 3
    assert cs.signal("e").symbols == ("A", "B")
    assert cs.signal("o").nullable and cs.signal("outer.deep.x").nullable
    assert not cs.signal("outer.inner").nullable
    assert cs.time_unit == "ns"


@pytest.mark.parametrize("kind", [{"type": "array", "items": "int"},
                                  {"type": "map", "values": "int"}])
def test_arrays_and_maps_are_refused_naming_the_field(kind):
    with pytest.raises(SchemaError, match="'bad'"):
        S.load({"type": "record", "name": "r", "fields": [
            {"name": "ok", "type": "int"}, {"name": "bad", "type": kind}]})


@pytest.mark.parametrize("schema, message", [
    ({"type": "record", "name": "r", "fields": [{"name": "u", "type": ["int", "string"]}]},
     "'u'.*unions of null and one type"),
    ({"type": "record", "name": "r", "fields": [{"name": "n", "type": "null"}]},
     "no field that carries data"),
    ({"type": "enum", "name": "e", "symbols": ["A"]}, "must be an Avro record"),
    ({"type": "record", "name": "r", "fields": [{"name": "x", "type": "nosuch"}]},
     "invalid Avro schema"),
    ("{not json", "not valid JSON"),
    ({"type": "record", "name": "r", "fields": [{"name": "a", "type": "int"},
                                                {"name": "a", "type": "long"}]},
     "'a' appears twice"),
    ("/no/such/file.avsc", "cannot read schema file"),
])
def test_bad_schemas_say_what_is_wrong(schema, message):
    with pytest.raises(SchemaError, match=message):
        S.load(schema)


def test_recursive_record_is_refused():
    with pytest.raises(SchemaError, match="recursive"):
        S.load({"type": "record", "name": "node", "fields": [
            {"name": "v", "type": "int"}, {"name": "next", "type": ["null", "node"]}]})


def test_without_time_field_receive_time_is_prepended():
    cs = S.load({"type": "record", "name": "r", "fields": [{"name": "v", "type": "double"}]})
    assert cs.stamped and cs.time_field == "time" and cs.signal_names == ["v"]
    assert cs.avro["fields"][0]["name"] == "time"
    assert S.load(cs.avro).same_fields(cs) and S.load(cs.avro).stamped  # survives a reload
    # a data field called time would meet the time column of every read: refused, named
    with pytest.raises(SchemaError, match="field 'time' is data here.*'receive_time'"):
        S.load({"type": "record", "name": "r", "fields": [{"name": "time", "type": "string"}]})


def test_configured_time_field_and_unit():
    schema = {"type": "record", "name": "r", "fields": [
        {"name": "hdr", "type": {"type": "record", "name": "H", "fields": [
            {"name": "stamp", "type": "long"}]}}, {"name": "v", "type": "int"}]}
    cs = S.load(schema, time_field="hdr.stamp", time_unit="ms")
    assert cs.time_field == "hdr.stamp" and cs.time_scale == 1_000_000
    assert cs.signal_names == ["v"]
    with pytest.raises(SchemaError, match="'nope' not found"):
        S.load(schema, time_field="nope")
    with pytest.raises(SchemaError, match="must be a non-null long"):
        S.load({"type": "record", "name": "r", "fields": [{"name": "t", "type": "double"}]},
               time_field="t")
    with pytest.raises(SchemaError, match="unknown time unit"):
        S.load(schema, time_unit="fortnights")


def test_reference_schemas_load():
    example = S.load(REFERENCE / "example.avsc")
    assert example.time_unit == "ns"  # the prototype puts logicalType on the field itself
    assert example.signal_names == ["message", "counter", "sine_wave", "ramp", "square_wave",
                                    "noise"]
    temperature = S.load(REFERENCE / "temperature.avsc", time_unit="ms")
    assert temperature.time_scale == 1_000_000
    assert temperature.signal("temperature_c").doc == "Temperature in Celsius"
