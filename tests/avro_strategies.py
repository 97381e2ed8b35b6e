"""Hypothesis strategies: random channel schemas and records that fit them."""

from __future__ import annotations

import math
import string

from hypothesis import strategies as st

PRIMS = ["boolean", "int", "long", "float", "double", "bytes", "string"]
_names = st.text(string.ascii_lowercase, min_size=1, max_size=6)


@st.composite
def avro_type(draw, depth: int, counter: list):
    counter[0] += 1
    n = counter[0]
    choice = draw(st.sampled_from(PRIMS * 3 + ["enum", "fixed", "nullable", "record", "null"]))
    if choice == "enum":
        symbols = draw(st.lists(st.from_regex(r"[A-Z][A-Z0-9_]{0,4}", fullmatch=True),
                                min_size=1, max_size=5, unique=True))
        return {"type": "enum", "name": f"E{n}", "symbols": symbols}
    if choice == "fixed":
        return {"type": "fixed", "name": f"F{n}", "size": draw(st.integers(0, 6))}
    if choice == "nullable":
        inner = draw(avro_type(depth, counter).filter(lambda t: t != "null"
                                                      and not isinstance(t, list)))
        return ["null", inner] if draw(st.booleans()) else [inner, "null"]
    if choice == "record" and depth < 2:
        return draw(record_type(depth + 1, counter))
    if choice == "null":
        return "null"
    return choice if choice in PRIMS else "long"


@st.composite
def record_type(draw, depth: int = 0, counter: list | None = None):
    counter = counter if counter is not None else [0]
    counter[0] += 1
    n = counter[0]
    names = draw(st.lists(_names, min_size=1, max_size=5, unique=True))
    fields = [{"name": f"{name}{n}", "type": draw(avro_type(depth, counter))} for name in names]
    # at least one field that carries bytes, so that no record encodes to nothing
    fields.append({"name": f"_v{n}", "type": "int"})
    return {"type": "record", "name": f"R{n}", "fields": fields}


@st.composite
def channel_schema(draw):
    rec = draw(record_type())
    if draw(st.booleans()):
        rec["fields"].insert(0, {"name": "time", "type": {"type": "long",
                                                          "logicalType": "timestamp-nanos"}})
    return rec


def value_for(t, draw):
    if isinstance(t, list):
        inner = next(b for b in t if b != "null")
        return None if draw(st.booleans()) else value_for(inner, draw)
    if isinstance(t, dict):
        kind = t["type"]
        if kind == "record":
            return {f["name"]: value_for(f["type"], draw) for f in t["fields"]}
        if kind == "enum":
            return draw(st.sampled_from(t["symbols"]))
        if kind == "fixed":
            return draw(st.binary(min_size=t["size"], max_size=t["size"]))
        if kind == "long":
            return draw(st.integers(-(2**63), 2**63 - 1))
    return {
        "null": lambda: None,
        "boolean": lambda: draw(st.booleans()),
        "int": lambda: draw(st.integers(-(2**31), 2**31 - 1)),
        "long": lambda: draw(st.integers(-(2**63), 2**63 - 1)),
        "float": lambda: draw(st.floats(width=32, allow_nan=False)),
        "double": lambda: draw(st.floats(allow_nan=False)),
        "bytes": lambda: draw(st.binary(max_size=20)),
        "string": lambda: draw(st.text(max_size=12)),
    }[t]()


@st.composite
def records_for(draw, schema: dict, min_size=1, max_size=5):
    n = draw(st.integers(min_size, max_size))
    return [value_for(schema, draw) for _ in range(n)]


def flatten(record: dict, schema: dict, prefix: str = "", null: bool = False) -> dict:
    """fastavro's nested dict to SpeedData's dotted signal names (a null record: all None)."""
    out = {}
    for f in schema["fields"]:
        t, name = f["type"], prefix + f["name"]
        value = None if null or record is None else record.get(f["name"])
        if isinstance(t, list):
            t = next(b for b in t if b != "null")
        if isinstance(t, dict) and t["type"] == "record":
            out.update(flatten(value, t, name + ".", value is None))
        elif t != "null":
            out[name] = value
    return out


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b
