import io
import random
from pathlib import Path

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from speeddata import DecodeError
from speeddata import schema as S
from speeddata._codec import read_varint, write_varint
from speeddata.codec import REASONS, Plan, decode, encode, encode_columns, encoder

from avro_strategies import channel_schema, flatten, records_for, same

# the prototype's two example schemas, shipped with the package
REFERENCE = Path(__file__).resolve().parents[1] / "speeddata" / "schemas"
SETTINGS = settings(deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fastavro_records(parsed, data: bytes):
    """fastavro's reading of back-to-back records, or None when it cannot read them exactly
    (including non-canonical bytes: re-encoding must give the same bytes back). An empty
    datagram holds no record, and SpeedData rejects it."""
    if not data:
        return None
    stream, out = io.BytesIO(data), []
    try:
        while stream.tell() < len(data):
            out.append(fastavro.schemaless_reader(stream, parsed))
    except Exception:
        return None
    again = io.BytesIO()
    for r in out:
        fastavro.schemaless_writer(again, parsed, r)
    if again.getvalue() != data or not all(_ints_fit(r, parsed) for r in out):
        return None
    return out


def _ints_fit(value, schema) -> bool:
    """Avro ints are 32-bit; fastavro reads wider values without complaint."""
    if isinstance(schema, list):
        return value is None or any(_ints_fit(value, b) for b in schema if b != "null")
    if isinstance(schema, dict):
        if schema["type"] == "record":
            return all(_ints_fit(value[f["name"]], f["type"]) for f in schema["fields"])
        schema = schema["type"] if isinstance(schema["type"], str) else "other"
    if schema == "int":
        return -(2**31) <= value < 2**31
    return True


def check_columns(cs, avro, records, cols):
    assert len(cols) == len(records)
    for row, record in enumerate(records):
        flat = flatten(record, avro)
        if cs.time_field in flat:
            assert cols.time[row] == flat.pop(cs.time_field)
        for name, expected in flat.items():
            got = cols[name][row]
            if got is np.ma.masked:
                got = None
            elif isinstance(got, np.generic):
                got = got.item()
            assert same(got, expected), (name, row, got, expected)


@SETTINGS
@given(st.data())
def test_decode_matches_fastavro_on_random_schemas(data):
    avro = data.draw(channel_schema())
    cs = S.load(avro)
    records = data.draw(records_for(avro))
    parsed = fastavro.parse_schema(avro)
    wire = b"".join(_fa_encode(parsed, r) for r in records)
    assert fastavro_records(parsed, wire) is not None
    if cs.stamped:  # our stored form starts with the receive time; devices send without it
        plan = Plan(cs, wire=True)
        assert plan.validate(wire) == len(records)
        stamps = list(range(7, 7 + len(records)))
        stored = b"".join(write_varint(t) + _fa_encode(parsed, r)
                          for t, r in zip(stamps, records))
        cols = decode(cs, stored)     # the stored form decodes, stamped times and all
        assert cols.time.tolist() == stamps
        avro = cs.avro
        records = [dict(r, **{cs.time_field: t}) for r, t in zip(records, stamps)]
        parsed = fastavro.parse_schema(avro)
        wire = stored
    cols = decode(cs, wire)
    check_columns(cs, avro, [fastavro.schemaless_reader(io.BytesIO(_fa_encode(parsed, r)),
                                                       parsed) for r in records], cols)
    # the columnar encoder writes records that decode to the very same columns (the bytes
    # too, but for a nullable record whose fields are all null: columns cannot tell that
    # from a null record)
    body, ends = encode_columns(Plan(cs), cols.time, cols.data)
    again = decode(cs, body)
    assert ends[-1] == len(body) and np.array_equal(again.time, cols.time)
    for name in cs.signal_names:
        assert np.array_equal(np.ma.getmaskarray(again[name]), np.ma.getmaskarray(cols[name]))
        assert [same(a, b) for a, b in zip(again[name].tolist(), cols[name].tolist())] == \
            [True] * len(cols)
    # selecting signals decodes the same values for those signals only
    some = cs.signal_names[::2]
    part = decode(cs, wire, signals=some)
    assert part.signals == some
    for name in some:
        assert np.array_equal(np.ma.getdata(part[name]), np.ma.getdata(cols[name]))


@SETTINGS
@given(st.data())
def test_validate_accepts_exactly_what_fastavro_reads(data):
    avro = data.draw(channel_schema())
    cs = S.load(avro)
    plan = Plan(cs, wire=True)
    wire_avro = dict(cs.avro, fields=cs.avro["fields"][1:]) if cs.stamped else avro
    parsed = fastavro.parse_schema(wire_avro)
    records = data.draw(records_for(wire_avro))
    encoded = [_fa_encode(parsed, r) for r in records]
    wire = b"".join(encoded)
    assert plan.validate(wire) == len(records)
    ends = set(np.cumsum([len(e) for e in encoded]).tolist())
    for cut in range(len(wire)):  # every truncation: only whole-record prefixes pass
        expected = fastavro_records(parsed, wire[:cut])
        got = plan.validate(wire[:cut])
        assert (got >= 0) == (expected is not None) == (cut in ends and cut > 0), cut
        if got >= 0:
            assert got == len(expected)
    extra = data.draw(st.binary(min_size=1, max_size=8))
    expected = fastavro_records(parsed, wire + extra)
    got = plan.validate(wire + extra)
    assert (got >= 0) == (expected is not None)
    if expected is not None:
        assert got == len(expected)


@pytest.mark.parametrize("name, unit", [("example.avsc", None), ("temperature.avsc", "ms")])
def test_reference_schemas_round_trip(name, unit):
    cs = S.load(REFERENCE / name, time_unit=unit)
    rng = random.Random(7)
    records = []
    for i in range(50):
        r = {}
        for f in cs.avro["fields"]:
            r[f["name"]] = {"long": 1_700_000_000_000 + i, "int": i, "double": rng.random(),
                            "string": rng.choice(["ok", "warning", "héllo"])}[
                f["type"] if isinstance(f["type"], str) else f["type"]["type"]]
        records.append(r)
    cols = decode(cs, encode(cs, records))
    assert cols.time.tolist() == [r["time"] * cs.time_scale for r in records]
    for s in cs.signals:
        assert list(cols[s.name]) == [r[s.name] for r in records]


EXAMPLE_RECORD = {"time": 5, "message": "hi", "counter": 3, "sine_wave": 1.0, "ramp": 2.0,
                  "square_wave": 3.0, "noise": 4.0}


@pytest.mark.parametrize("data, reason, offset", [
    (b"", "empty", 0),
    (b"\x0a\x04h", "truncated", 1),                                   # string past the end
    (b"\x0a\x03hi", "negative_length", 1),
    (b"\xff" * 11, "bad_varint", 0),                                  # longer than 10 bytes
    (b"\x80\x00", "bad_varint", 0),                                   # overlong zero
    (b"\x0a\x04\xff\xfe", "bad_utf8", 2),
])
def test_reject_reasons_and_offsets(data, reason, offset):
    plan = Plan(S.load(REFERENCE / "example.avsc"))
    assert plan.validate(data) == -REASONS.index(reason)
    with pytest.raises(DecodeError) as err:
        plan.check(data)
    assert err.value.reason == reason and err.value.offset == offset
    assert f"at byte {offset}" in str(err.value)


def _varint_by_the_spec(data: bytes, pos: int):
    """(value, end) of the zigzag varint at pos, a byte at a time; None where the strict
    reader must refuse it (truncated, overlong, past 64 bits)."""
    acc = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            return None
        b = data[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            if (b == 0 and shift) or acc >= 1 << 64:
                return None
            return (acc >> 1) ^ -(acc & 1), pos
        shift += 7


@SETTINGS
@given(st.one_of(st.integers(-2**63, 2**63 - 1).map(write_varint),
                 st.builds(lambda more, last: bytes(more) + bytes([last]),   # varint-shaped
                           st.lists(st.integers(0x80, 0xFF), max_size=11),
                           st.integers(0, 0x7F)),
                 st.binary(max_size=12)),
       st.integers(0, 12), st.integers(0, 12))
@example(b"\x80" * 9 + b"\x00", 0, 0)      # ten bytes, overlong
@example(b"\x80" * 9 + b"\x02", 0, 3)      # ten bytes, past 64 bits
@example(b"\xff" * 8 + b"\x00", 0, 3)      # nine bytes, overlong
@example(b"\xff\x00", 0, 9)                 # two bytes, overlong
def test_varints_read_as_the_spec_reads_them(body, before, after):
    """The reader takes eight bytes at once where the buffer allows and one at a time near
    its end: both ways agree with the spec on any bytes, valid or not."""
    data = bytes(range(1, before + 1)) + body + b"\x81" * after
    want = _varint_by_the_spec(data, before)
    if want is None:
        with pytest.raises(DecodeError):
            read_varint(data, before)
    else:
        assert read_varint(data, before) == want


def test_union_enum_boolean_and_int_range_rejects():
    cs = S.load({"type": "record", "name": "r", "fields": [
        {"name": "o", "type": ["null", "int"]},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
        {"name": "b", "type": "boolean"}]})
    plan = Plan(cs, wire=True)   # no time field: devices send the fields only
    assert plan.validate(b"\x02\x02\x02\x01") == 1       # o=1, e=B, b=true
    assert plan.validate(b"\x00\x02\x01") == 1           # o=null
    assert plan.validate(b"\x04\x02\x02\x01") == -REASONS.index("bad_union_index")
    assert plan.validate(b"\x00\x04\x01") == -REASONS.index("bad_enum_index")
    assert plan.validate(b"\x00\x01\x01") == -REASONS.index("bad_enum_index")   # -1
    assert plan.validate(b"\x00\x02\x02") == -REASONS.index("bad_boolean")
    assert plan.validate(b"\x02\x80\x80\x80\x80\x10\x00\x01") == -REASONS.index("bad_varint")
    cols = decode(cs, b"\x06\x02\x02\x02\x01" + b"\x08\x00\x00\x00")  # stored: time first
    assert cols.time.tolist() == [3, 4]
    assert cols.o.tolist() == [1, None] and cols.e.tolist() == ["B", "A"]
    assert cols.b.tolist() == [True, False]


def test_multi_record_datagram_and_times():
    cs = S.load(REFERENCE / "example.avsc")
    records = [dict(EXAMPLE_RECORD, time=t, counter=t) for t in (30, 10, 20)]
    wire = encode(cs, records)
    assert Plan(cs).check(wire).tolist() == [30, 10, 20]
    with pytest.raises(DecodeError, match="too_many|more records"):
        Plan(cs).check(wire, max_records=2)


def test_fuzz_random_and_mutated_datagrams_never_crash():
    """Random bytes and bit-flipped valid datagrams: a count or a reason, nothing else."""
    rng = np.random.default_rng(1)
    for path, unit in (("example.avsc", None), ("temperature.avsc", "ms")):
        cs = S.load(REFERENCE / path, time_unit=unit)
        plan, one = Plan(cs), encoder(cs)
        valid = one({f["name"]: EXAMPLE_RECORD.get(f["name"], 1.5 if f["type"] == "double"
                                                   else "x") for f in cs.avro["fields"]})
        for _ in range(20_000):
            if rng.random() < 0.5:
                data = rng.bytes(int(rng.integers(0, 200)))
            else:
                buf = bytearray(valid * int(rng.integers(1, 4)))
                for _ in range(int(rng.integers(1, 4))):
                    buf[rng.integers(len(buf))] ^= 1 << int(rng.integers(8))
                data = bytes(buf[: int(rng.integers(0, len(buf) + 1))])
            got = plan.validate(data)
            assert got > 0 or -got in range(1, len(REASONS))
            if got > 0:  # whatever validates also decodes
                assert len(decode(cs, data, got)) == got


def _fa_encode(parsed, record) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record)
    return buf.getvalue()


def test_encoder_keeps_a_record_present_when_one_of_its_fields_is_null():
    cs = S.load({"type": "record", "name": "r", "fields": [
        {"name": "time", "type": "long"},
        {"name": "pos", "type": ["null", {"type": "record", "name": "P", "fields": [
            {"name": "x", "type": "double"}, {"name": "q", "type": ["null", "int"]}]}]}]})
    records = [{"time": 1, "pos": {"x": 1.5, "q": None}}, {"time": 2, "pos": None},
               {"time": 3, "pos": {"x": 2.5, "q": 7}}]
    wire = encode(cs, records)
    cols = decode(cs, wire)
    assert cols["pos.x"].tolist() == [1.5, None, 2.5] and cols["pos.q"].tolist() == [None, None, 7]
    assert encode_columns(Plan(cs), cols.time, cols.data)[0] == wire
