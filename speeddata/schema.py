"""Channel schemas: load, check, flatten to signals, find the time field.

A channel's Avro schema is a record. Nested records are flattened to dotted signal names
(``outer.inner``); unions of ``null`` and one type become nullable signals; arrays, maps and
unions of several types are refused, because a signal must be one column of scalars.
The flattened form is a *plan*: one op per Avro value in wire order, which the Cython codec
(`speeddata._codec`) walks without looking at the schema again.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

from .errors import SchemaError, listing

# Op kinds, the same numbers as the K_* of _codec.pyx (tests/test_layout.py checks).
NULL, BOOLEAN, INT, LONG, FLOAT, DOUBLE, BYTES, STRING, ENUM, FIXED, UNION = range(11)
_PRIMITIVES = {"null": NULL, "boolean": BOOLEAN, "int": INT, "long": LONG, "float": FLOAT,
               "double": DOUBLE, "bytes": BYTES, "string": STRING}
_DTYPES = {BOOLEAN: np.dtype(bool), INT: np.dtype(np.int32), LONG: np.dtype(np.int64),
           FLOAT: np.dtype(np.float32), DOUBLE: np.dtype(np.float64),
           BYTES: np.dtype(object), STRING: np.dtype(object), ENUM: np.dtype(object),
           FIXED: np.dtype(object)}

TIME_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_LOGICAL_UNITS = {"timestamp-nanos": "ns", "timestamp-micros": "us", "timestamp-millis": "ms",
                  "local-timestamp-nanos": "ns", "local-timestamp-micros": "us",
                  "local-timestamp-millis": "ms"}
DEFAULT_TIME_FIELD = "time"
MAX_DEPTH = 32            # nested records; deeper is a mistake, not telemetry
RECEIVE_TIME_DOC = "receive time in ns since the Unix epoch, stamped by SpeedData"
# Marks the time field SpeedData prepends to a device schema that has none.
STAMPED_KEY = "speeddata.stamped"


@dataclass(frozen=True)
class Signal:
    """One named scalar of a channel's records: one column when read, one HDF5 dataset."""

    name: str
    type: str                 # Avro type name: boolean, int, long, float, double, bytes, string, enum, fixed
    dtype: np.dtype
    nullable: bool = False
    doc: str = ""
    symbols: tuple[str, ...] = ()
    size: int = 0             # fixed only
    unit: str = ""            # the field's "unit" attribute ("Pa", "degC", "%"): axes show it

    @property
    def kind(self) -> int:
        return {"enum": ENUM, "fixed": FIXED}.get(self.type) or _PRIMITIVES[self.type]


@dataclass
class ChannelSchema:
    """A checked channel schema.

    Attributes
    ----------
    avro : dict
        The schema as stored (with the receive-time field prepended when the device schema
        has no time field).
    signals : list of Signal
        The data signals in wire order; the time field is not one of them (it is read as
        ``time``, int64 ns).
    time_field : str
        Dotted name of the time field in `avro`.
    time_unit : str
        Unit of the time field on the wire: ``ns``, ``us``, ``ms`` or ``s``.
    stamped : bool
        True when the device sends no time and the receiver prepends the receive time.
    """

    avro: dict
    signals: list[Signal]
    time_field: str
    time_unit: str
    stamped: bool
    ops: list[tuple[int, int, int, int]] = field(repr=False)
    time_op: int = field(repr=False)

    @property
    def name(self) -> str:
        return self.avro["name"]

    @property
    def signal_names(self) -> list[str]:
        return [s.name for s in self.signals]

    def signal(self, name: str) -> Signal:
        for s in self.signals:
            if s.name == name:
                return s
        raise SchemaError(f"no signal {name!r} in schema {self.name!r}",
                          hint=f"signals are: {listing(self.signal_names)}")

    @property
    def time_scale(self) -> int:
        return TIME_UNITS[self.time_unit]

    def to_json(self) -> str:
        return json.dumps(self.avro, separators=(",", ":"))

    def same_fields(self, other: "ChannelSchema") -> bool:
        """True when both schemas give the same records on the wire, signals and time
        (docs and namespaces may differ)."""
        def shape(cs):
            return [(s.name, s.type, s.nullable, s.symbols, s.size) for s in cs.signals]
        return (self.ops == other.ops and shape(self) == shape(other)
                and self.time_op == other.time_op and self.time_unit == other.time_unit)


def load_avro(schema: Any) -> dict:
    """Read a schema given as dict, JSON text or path to an ``.avsc`` file, as a dict."""
    if isinstance(schema, ChannelSchema):
        return copy.deepcopy(schema.avro)
    if isinstance(schema, dict):
        return copy.deepcopy(schema)
    if isinstance(schema, (str, os.PathLike)):
        text = str(schema)
        if isinstance(schema, os.PathLike) or not text.lstrip().startswith("{"):
            path = Path(text)
            try:
                text = path.read_text()
            except OSError as e:
                raise SchemaError(f"cannot read schema file {str(path)!r}: {e.strerror}") from e
        try:
            result = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(f"schema is not valid JSON: {e}") from e
        if not isinstance(result, dict):
            raise SchemaError("schema must be a JSON object (an Avro record)")
        return result
    raise SchemaError(f"a schema is a dict, JSON text or .avsc path, not {type(schema).__name__}")


def load(schema: Any, *, time_field: str | None = DEFAULT_TIME_FIELD,
         time_unit: str | None = None) -> ChannelSchema:
    """Load and check a channel schema.

    Parameters
    ----------
    schema : dict, str or path
        An Avro record schema, as a dict, JSON text or path to an ``.avsc`` file.
    time_field : str or None
        Dotted name of the field that holds each record's time. The default ``"time"`` is
        used when present; when absent (or None), the receiver stamps the receive time.
        A name other than the default must exist.
    time_unit : {'ns', 'us', 'ms', 's'}, optional
        Unit of the time field; by default taken from its ``timestamp-*`` logical type,
        else nanoseconds.
    """
    try:
        return _load(schema, time_field, time_unit)
    except RecursionError:
        raise SchemaError("schema nests too deeply",
                          hint=f"at most {MAX_DEPTH} levels of records") from None


def _load(schema: Any, time_field: str | None, time_unit: str | None) -> ChannelSchema:
    avro = load_avro(schema)
    if avro.get("type") != "record":
        raise SchemaError("a channel schema must be an Avro record "
                          f"(got type {avro.get('type')!r})")
    try:
        fastavro.parse_schema(copy.deepcopy(avro))
    except RecursionError:
        raise SchemaError(f"schema {avro.get('name', '?')!r} nests too deeply",
                          hint=f"at most {MAX_DEPTH} levels of records") from None
    except Exception as e:  # fastavro raises several types for bad schemas
        raise SchemaError(f"invalid Avro schema {avro.get('name', '?')!r}: {e}") from e
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise SchemaError(f"unknown time unit {time_unit!r}",
                          hint=f"use one of {', '.join(TIME_UNITS)}")

    flat = _Flattener(avro)
    try:
        flat.record(avro, prefix="", nullable=False)
    except RecursionError:
        raise SchemaError(f"schema {avro.get('name', '?')!r} nests records too deeply",
                          hint=f"at most {MAX_DEPTH} levels") from None
    if all(op[0] == NULL for op in flat.ops):
        raise SchemaError(f"schema {avro['name']!r} has no field that carries data")
    time_op, unit = _find_time(flat, avro, time_field, time_unit)
    if time_op < 0:
        taken = {f["name"] for f in avro["fields"]}
        name = "time" if "time" not in taken else "receive_time"
        avro = dict(avro, fields=[{"name": name, "doc": RECEIVE_TIME_DOC, STAMPED_KEY: True,
                                   "type": {"type": "long", "logicalType": "timestamp-nanos"}}]
                    + list(avro["fields"]))
        return load(avro, time_field=name)
    signals = [s for i, s in enumerate(flat.signals) if flat.signal_ops[i] != time_op]
    _check_names(signals, flat.names[time_op])
    ops = _number_columns(flat.ops, time_op)
    stamped = time_op == 0 and bool(avro["fields"][0].get(STAMPED_KEY))
    return ChannelSchema(avro=avro, signals=signals, time_field=flat.names[time_op],
                         time_unit=unit, stamped=stamped, ops=ops, time_op=time_op)


class _Flattener:
    """Walks an Avro record into ops (wire order) and signals (leaf scalars)."""

    def __init__(self, root: dict):
        self.named: dict[str, Any] = {}
        self.ops: list[list[int]] = []        # [kind, arg, span, is_leaf]
        self.names: list[str] = []            # dotted name per op
        self.nullable: list[bool] = []
        self.signals: list[Signal] = []
        self.signal_ops: list[int] = []
        self.active: set[str] = set()
        self.root_ns = root.get("namespace", "")

    def _fullname(self, name: str, ns: str) -> str:
        return name if "." in name or not ns else f"{ns}.{name}"

    def _register(self, t: dict, ns: str) -> str:
        full = self._fullname(t["name"], t.get("namespace", ns))
        self.named[full] = t
        self.named.setdefault(t["name"], t)
        return full

    def record(self, rec: dict, prefix: str, nullable: bool, ns: str | None = None) -> None:
        if prefix.count(".") >= MAX_DEPTH:
            raise RecursionError
        ns = rec.get("namespace", ns if ns is not None else self.root_ns)
        full = self._register(rec, ns)
        if full in self.active:
            raise SchemaError(f"field {prefix.rstrip('.') or rec['name']!r}: recursive record "
                              f"{full!r} cannot be flattened to signals")
        self.active.add(full)
        names = [f["name"] for f in rec["fields"]]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise SchemaError(f"field {prefix + dup!r} appears twice in record {full!r}")
        for f in rec["fields"]:
            self.unit = _unit(f, prefix + f["name"])
            self.value(f["type"], prefix + f["name"], nullable, f.get("doc", ""), ns, f)
        self.active.discard(full)

    def value(self, t: Any, name: str, nullable: bool, doc: str, ns: str, fdef: dict) -> None:
        if isinstance(t, str) and t not in _PRIMITIVES:
            if t not in self.named and self._fullname(t, ns) not in self.named:
                raise SchemaError(f"field {name!r}: unknown type {t!r}")
            t = self.named.get(self._fullname(t, ns)) or self.named[t]
            if t.get("type") == "record":
                return self.record(t, name + ".", nullable, ns)
        if isinstance(t, list):
            return self.union(t, name, nullable, doc, ns, fdef)
        if isinstance(t, dict):
            kind = t.get("type")
            if kind == "record":
                return self.record(t, name + ".", nullable, ns)
            if kind in ("array", "map"):
                raise SchemaError(f"field {name!r}: {kind}s are not supported; a signal is one "
                                  "scalar per record", hint="flatten it into separate fields")
            if kind == "enum":
                self._register(t, t.get("namespace", ns))
                return self.leaf(ENUM, len(t["symbols"]), name, nullable, doc,
                                 symbols=tuple(t["symbols"]), type_="enum")
            if kind == "fixed":
                self._register(t, t.get("namespace", ns))
                return self.leaf(FIXED, int(t["size"]), name, nullable, doc, size=int(t["size"]),
                                 type_="fixed")
            if isinstance(kind, (dict, list)) or kind in _PRIMITIVES or kind in self.named:
                return self.value(kind, name, nullable, doc, ns, {**fdef, **t})
            raise SchemaError(f"field {name!r}: unsupported type {kind!r}")
        self.leaf(_PRIMITIVES[t], 0, name, nullable, doc, type_=t)

    unit = ""                 # the "unit" of the field being read

    def union(self, branches: list, name: str, nullable: bool, doc: str, ns: str,
              fdef: dict) -> None:
        others = [i for i, b in enumerate(branches) if b != "null"]
        if len(branches) > 2 or len(others) != 1:
            raise SchemaError(f"field {name!r}: only unions of null and one type are supported "
                              f"(got {json.dumps(branches)})")
        null_index = 1 - others[0] if len(branches) == 2 else -1
        at = len(self.ops)
        self.ops.append([UNION, null_index, 0, 0])
        self.names.append(name)
        self.nullable.append(nullable)
        self.value(branches[others[0]], name, nullable or null_index >= 0, doc, ns, fdef)
        self.ops[at][2] = len(self.ops) - at - 1

    def leaf(self, kind: int, arg: int, name: str, nullable: bool, doc: str, *,
             type_: str, symbols: tuple = (), size: int = 0) -> None:
        self.ops.append([kind, arg, 0, kind != NULL])
        self.names.append(name)
        self.nullable.append(nullable)
        if kind == NULL:
            return  # a null field carries nothing to store
        dtype = _DTYPES[kind]
        self.signals.append(Signal(name=name, type=type_, dtype=dtype, nullable=nullable,
                                   doc=doc, symbols=symbols, size=size, unit=self.unit))
        self.signal_ops.append(len(self.ops) - 1)


def _field_logical_type(avro: dict, dotted: str) -> str | None:
    """The logicalType of a top-level or nested field, on its type or (as some senders write
    it) on the field itself."""
    fields = avro["fields"]
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        f = next((f for f in fields if f["name"] == part), None)
        if f is None:
            return None
        t = f["type"]
        if depth == len(parts) - 1:
            return (t.get("logicalType") if isinstance(t, dict) else None) or f.get("logicalType")
        if not (isinstance(t, dict) and t.get("type") == "record"):
            return None
        fields = t["fields"]
    return None


def _check_names(signals: list[Signal], time_field: str) -> None:
    """Every signal one column: names unique after flattening, none called ``time`` (the
    time column's name in every read, whatever the time field is called)."""
    seen: set[str] = set()
    for s in signals:
        if s.name == DEFAULT_TIME_FIELD:
            raise SchemaError(f"field 'time' is data here, but reads name the time column "
                              f"'time' (the time field is {time_field!r})",
                              hint="rename the data field, or make it the time field "
                                   "(a non-null long)")
        if s.name in seen:
            raise SchemaError(f"two fields flatten to the signal name {s.name!r} (a field "
                              f"named with a dot beside a nested record?)",
                              hint="rename one of them")
        seen.add(s.name)


def _find_time(flat: _Flattener, avro: dict, time_field: str | None, time_unit: str | None):
    if time_field is None:
        return -1, "ns"
    idx = [i for i, n in enumerate(flat.names) if n == time_field and flat.ops[i][0] != UNION]
    if not idx:
        if time_field != DEFAULT_TIME_FIELD:
            raise SchemaError(f"time field {time_field!r} not found in schema",
                              hint="name an existing long field, or none to stamp receive time")
        return -1, "ns"
    i = idx[0]
    kind = flat.ops[i][0]
    if kind not in (INT, LONG) or flat.nullable[i]:
        if time_field != DEFAULT_TIME_FIELD:
            raise SchemaError(f"time field {time_field!r} must be a non-null long or int")
        return -1, "ns"
    logical = _field_logical_type(avro, time_field)
    unit = time_unit or _LOGICAL_UNITS.get(logical or "", "ns")
    return i, unit


def _number_columns(ops: list[list[int]], time_op: int) -> list[tuple[int, int, int, int]]:
    """Give each data leaf its column number; the time op gets none (it fills ``time``)."""
    out, col = [], 0
    for i, (kind, arg, span, leaf) in enumerate(ops):
        if leaf and i != time_op:
            out.append((kind, arg, span, col))
            col += 1
        else:
            out.append((kind, arg, span, -1))
    return out


def _unit(field: dict, name: str) -> str:
    """A field's ``unit`` attribute: SpeedData's own, which other Avro readers ignore."""
    unit = field.get("unit", "")
    if not isinstance(unit, str) or len(unit) > 32 or any(ord(c) < 32 for c in unit):
        raise SchemaError(f"field {name!r}: unit must be a short text such as \"Pa\" or "
                          f"\"degC\", not {str(unit)[:40]!r}")
    return unit
