"""The ``speeddata serve`` configuration: YAML, checked key by key.

```yaml
data: ./data                 # the store directory (--data overrides)
bind: 127.0.0.1              # where channel receivers bind unless a channel says otherwise
retention: {max_bytes: 10G, max_age: P1D}
web: {bind: 127.0.0.1, port: 8080}
grpc: {bind: 127.0.0.1, port: 50051}
flight: {bind: 127.0.0.1, port: 8815}  # Arrow Flight (speeddata.serving.flight); off unless given
token: s3cret                # API calls that change something need it (Bearer token)
limits: {query_records: 100000000, export_records: 500000000}   # see speeddata.serving.limits
cluster:                     # join a cluster of nodes (NATS JetStream); off unless given
  nats: [nats://10.0.0.1:4222, nats://10.0.0.2:4222]
  node: rig-a                # this node's name, unique in the cluster (default: host name)
  replicas: 3                # copies of the registry, tags and archives (at most the
                             # number of NATS servers)
  heartbeat: 2s              # a node silent for three heartbeats is unreachable
  advertise: 10.0.0.5        # the host other nodes reach this node's gRPC at
channels:
  - name: example
    port: 26000
    schema: schemas/example.avsc     # relative to this file
    time_field: time                 # default; a schema without it is stamped on receipt
    time_unit: ns                    # default: from the logical type, else ns
    decimation: 10                   # live views: every 10th, or mean:10, minmax:100, rms:0.01s
    receive_buffer: 32M
    multicast:                       # re-serve, off unless given
      group: 239.1.1.1
      port: 27000
      interface: 127.0.0.1
      ttl: 0
      decimated: {group: 239.1.1.2, port: 27001, decimation: every:10}
```
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, SpeedDataError
from .decimation import Decimation

PORT_RANGE = range(26000, 27001)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.I)


def parse_size(value: Any, key: str) -> int:
    """Bytes from 1048576, '64M', '10 GiB'."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ConfigError(f"{key}: {value!r} is not a size", hint="e.g. 1048576, 64M, 10GiB")
    unit = (m.group(2) or "B").upper()[0]
    return int(float(m.group(1)) * {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30,
                                     "T": 1 << 40}[unit])


@dataclass
class Multicast:
    group: str
    port: int
    interface: str = "127.0.0.1"
    ttl: int = 0
    decimated_group: str | None = None
    decimated_port: int | None = None
    decimation: str = "every:10"


@dataclass
class ChannelConfig:
    name: str
    port: int
    schema: Any                      # path or dict
    bind: str = "127.0.0.1"
    time_field: str | None = "time"
    time_unit: str | None = None
    decimation: str = "none"
    receive_buffer: int = 32 << 20
    multicast: Multicast | None = None
    options: dict = field(default_factory=dict)   # store options (retention...) per channel


@dataclass
class ClusterConfig:
    """How a node joins a cluster (`speeddata.cluster`)."""
    nats: list[str]
    node: str
    replicas: int | None = None       # None: min(3, the JetStream servers the node meets)
    heartbeat: float = 2.0            # s
    advertise: str | None = None      # host for other nodes; default: the gRPC bind host


@dataclass
class ServeConfig:
    data: str = "./data"
    bind: str = "127.0.0.1"
    channels: list[ChannelConfig] = field(default_factory=list)
    store_options: dict = field(default_factory=dict)   # retention, block and segment sizes
    web: dict = field(default_factory=lambda: {"bind": "127.0.0.1", "port": 8080})
    grpc: dict = field(default_factory=lambda: {"bind": "127.0.0.1", "port": 50051})
    flight: dict | None = None      # Arrow Flight: {"bind", "port"}; off unless given
    token: str | None = None          # needed by every API call that changes something
    limits: dict = field(default_factory=dict)   # LIMIT_KEYS: see speeddata.serving.limits.Limits
    pages: dict = field(default_factory=dict)    # extra web pages: "/path" -> HTML file
    cluster: ClusterConfig | None = None         # None: a single host, no NATS at all


def load(path: str | os.PathLike) -> ServeConfig:
    """Read and check a YAML config; ConfigError names the bad key."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text))
    except OSError as e:
        raise ConfigError(f"cannot read config {str(path)!r}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    try:
        return parse(raw or {}, base=path.parent)
    except ConfigError as e:
        named = re.match(r"[\w\[\]./-]+", str(e))
        key = getattr(e, "key", None) or (named.group(0) if named else "")
        while key and key not in lines:            # the nearest key the file spells
            key = key.rsplit(".", 1)[0] if "." in key else key.split("[", 1)[0] \
                if "[" in key else ""
        line = lines.get(key)
        raise ConfigError(f"{path}" + (f", line {line}" if line else "") + f": {e}") from None


def _key_lines(node, where: str = "") -> dict[str, int]:
    """Each key's line in the file (1-based), named as errors name them: a.b, items[2].c."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            name = f"{where}.{k.value}" if where else str(k.value)
            out[name] = k.start_mark.line + 1
            out.update(_key_lines(v, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            name = f"{where}[{i}]"
            out[name] = item.start_mark.line + 1
            out.update(_key_lines(item, name))
    return out


def _take(d: dict, key: str, where: str, kind, default=None, required=False):
    if key not in d or d[key] is None:
        if required:
            raise ConfigError(f"{where}{key}: missing")
        return default
    value = d[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}{key}: expected {getattr(kind, '__name__', kind)}, "
                          f"got {type(value).__name__} {value!r}")
    return value


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(map(str, set(d) - allowed))
    if unknown:
        error = ConfigError(f"{where.rstrip('.') or 'config'}: unknown key(s) "
                            f"{', '.join(unknown)}", hint=f"allowed: {', '.join(sorted(allowed))}")
        error.key = f"{where}{unknown[0]}"          # where the file spells it
        raise error


def parse(raw: dict, base: Path = Path(".")) -> ServeConfig:
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping of keys")
    _check_keys(raw, {"data", "bind", "channels", "retention", "store", "web", "grpc", "flight",
                      "token", "limits", "cluster"}, "")
    cfg = ServeConfig()
    cfg.data = str(_take(raw, "data", "", str, cfg.data))
    cfg.bind = _take(raw, "bind", "", str, cfg.bind)
    cfg.store_options = _retention(_take(raw, "retention", "", dict, {}), "retention.")
    cfg.store_options.update(_store_options(_take(raw, "store", "", dict, {}), "store."))
    cfg.token = _take(raw, "token", "", str)
    limits = _take(raw, "limits", "", dict, {})
    _check_keys(limits, set(LIMIT_KEYS), "limits.")
    for key in LIMIT_KEYS:
        value = limits.get(key)
        if key.endswith("_bytes") and value is not None:
            value = parse_size(value, f"limits.{key}")
        value = _take({key: value}, key, "limits.", int)
        if value is not None:
            if value < 1:
                raise ConfigError(f"limits.{key}: {value} is not a positive count")
            cfg.limits[key] = value
    for key in ("web", "grpc"):
        section = _take(raw, key, "", dict, {})
        _check_keys(section, {"bind", "port", "pages", "hosts"} if key == "web" else
                    {"bind", "port"}, f"{key}.")
        merged = dict(getattr(cfg, key))
        merged["bind"] = _take(section, "bind", f"{key}.", str, merged["bind"])
        merged["port"] = _port(_take(section, "port", f"{key}.", int, merged["port"]),
                               f"{key}.port", any_port=True)
        setattr(cfg, key, merged)
    section = _take(raw, "flight", "", dict)
    if section is not None:
        _check_keys(section, {"bind", "port"}, "flight.")
        cfg.flight = {"bind": _take(section, "bind", "flight.", str, "127.0.0.1"),
                      "port": _port(_take(section, "port", "flight.", int, 8815),
                                    "flight.port", any_port=True)}
    section = _take(raw, "cluster", "", dict)
    if section is not None:
        cfg.cluster = cluster(section, "cluster.")
    cfg.pages = _pages(_take(raw.get("web") or {}, "pages", "web.", dict, {}), base)
    hosts = _hosts(_take(raw.get("web") or {}, "hosts", "web.", list, []))
    if hosts:
        cfg.web["hosts"] = hosts
    names, ports = set(), set()
    for i, item in enumerate(_take(raw, "channels", "", list, [])):
        ch = channel(item, f"channels[{i}].", base, cfg.bind)
        if ch.name in names:
            raise ConfigError(f"channels[{i}].name: channel {ch.name!r} appears twice")
        if ch.port in ports:
            raise ConfigError(f"channels[{i}].port: port {ch.port} is used by two channels")
        names.add(ch.name)
        ports.add(ch.port)
        cfg.channels.append(ch)
    return cfg


def channel(item: Any, where: str, base: Path = Path("."), bind: str = "127.0.0.1") -> ChannelConfig:
    """One channel entry (also what registration APIs take)."""
    if not isinstance(item, dict):
        raise ConfigError(f"{where.rstrip('.')}: a channel is a mapping with name, port, schema")
    _check_keys(item, {"name", "port", "schema", "bind", "time_field", "time_unit",
                       "decimation", "receive_buffer", "multicast", "retention"}, where)
    name = _take(item, "name", where, str, required=True)
    port = _port(_take(item, "port", where, int, required=True), f"{where}port")
    schema = _take(item, "schema", where, (str, dict), required=True)
    if isinstance(schema, str) and not schema.lstrip().startswith("{"):
        schema = str((base / schema).resolve()) if not os.path.isabs(schema) else schema
        if not os.path.isfile(schema):
            raise ConfigError(f"{where}schema: no file {schema!r}")
    decimation = str(_take(item, "decimation", where, (str, int), "none"))
    try:
        Decimation.parse(decimation)
    except (SpeedDataError, ValueError) as e:
        raise ConfigError(f"{where}decimation: {e}") from e
    time_field = item.get("time_field", "time")
    if time_field is not None and not isinstance(time_field, str):
        raise ConfigError(f"{where}time_field: expected a field name or null")
    cfg = ChannelConfig(
        name=name, port=port, schema=schema, bind=_take(item, "bind", where, str, bind),
        time_field=time_field, time_unit=_take(item, "time_unit", where, str),
        decimation=decimation,
        receive_buffer=_receive_buffer(item.get("receive_buffer", 32 << 20),
                                       f"{where}receive_buffer"),
        options=_retention(_take(item, "retention", where, dict, {}), f"{where}retention."))
    mc = _take(item, "multicast", where, dict)
    if mc is not None:
        w = f"{where}multicast."
        _check_keys(mc, {"group", "port", "interface", "ttl", "decimated"}, w)
        dec = _take(mc, "decimated", w, dict, {})
        _check_keys(dec, {"group", "port", "decimation"}, f"{w}decimated.")
        dw = f"{w}decimated."
        cfg.multicast = Multicast(
            group=_address(_take(mc, "group", w, str, required=True), f"{w}group",
                           multicast=True),
            port=_port(_take(mc, "port", w, int, required=True), f"{w}port", any_port=True),
            interface=_address(_take(mc, "interface", w, str, "127.0.0.1"), f"{w}interface"),
            ttl=_ttl(_take(mc, "ttl", w, int, 0), f"{w}ttl"))
        if dec:
            cfg.multicast.decimated_group = _address(
                _take(dec, "group", dw, str, required=True), f"{dw}group", multicast=True)
            cfg.multicast.decimated_port = _port(_take(dec, "port", dw, int, required=True),
                                                 f"{dw}port", any_port=True)
            cfg.multicast.decimation = str(_take(dec, "decimation", dw, (str, int), "every:10"))
            try:
                Decimation.parse(cfg.multicast.decimation)
            except (SpeedDataError, ValueError) as e:
                raise ConfigError(f"{dw}decimation: {e}") from e
    return cfg


_NODE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def cluster(d: dict, where: str = "cluster.") -> ClusterConfig:
    """The ``cluster:`` section (also what ``--cluster URL --node NAME`` make)."""
    import socket
    from .timeutil import duration_ns
    _check_keys(d, {"nats", "node", "replicas", "heartbeat", "advertise"}, where)
    urls = d.get("nats")
    if isinstance(urls, str):
        urls = [u for u in urls.split(",") if u.strip()]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ConfigError(f"{where}nats: expected a list of NATS server URLs",
                          hint="e.g. [nats://127.0.0.1:4222]")
    for u in urls:
        if not re.fullmatch(r"(nats|tls)://[^\s/]+(:\d+)?", u.strip()):
            raise ConfigError(f"{where}nats: {u!r} is not a NATS URL",
                              hint="e.g. nats://10.0.0.1:4222")
    node = _take(d, "node", where, str, socket.gethostname().split(".")[0])
    if not _NODE.match(node):
        raise ConfigError(f"{where}node: {node!r} is not a node name (letters, digits, _ "
                          "and -, at most 64)")
    replicas = _take(d, "replicas", where, int)
    if replicas is not None and not 1 <= replicas <= 5:
        raise ConfigError(f"{where}replicas: {replicas} is not 1 to 5 (JetStream's range)")
    beat = d.get("heartbeat", 2.0)
    try:
        seconds = duration_ns(beat, what=f"{where}heartbeat") / 1e9
    except SpeedDataError as e:
        raise ConfigError(str(e)) from None
    if not 0.1 <= seconds <= 60:
        raise ConfigError(f"{where}heartbeat: {beat!r} is not 0.1 to 60 s")
    advertise = _take(d, "advertise", where, str)
    return ClusterConfig([u.strip() for u in urls], node, replicas, seconds, advertise)


MAX_RECEIVE_BUFFER = 1 << 30    # the kernel takes an int, doubled: past 1 GiB it overflows


def _receive_buffer(value: Any, key: str) -> int:
    size = parse_size(value, key)
    if not 4096 <= size <= MAX_RECEIVE_BUFFER:
        raise ConfigError(f"{key}: {value!r} is outside 4K..1G",
                          hint="the kernel holds at most 1 GiB per socket; 32M is plenty "
                               "for 10 GbE")
    return size


def _address(value: str, key: str, multicast: bool = False) -> str:
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not an IPv4 address") from None
    if multicast and not addr.is_multicast:
        raise ConfigError(f"{key}: {value} is not a multicast group",
                          hint="use 224.0.0.0-239.255.255.255, e.g. 239.1.1.1")
    return value


def _ttl(value: int, key: str) -> int:
    if not 0 <= value <= 255:
        raise ConfigError(f"{key}: {value} is not a TTL (0-255)")
    return value


def _port(value: int, key: str, any_port: bool = False) -> int:
    if any_port and 0 <= value < 65536:
        return value
    if value not in PORT_RANGE:
        raise ConfigError(f"{key}: {value} is outside the channel port range "
                          f"{PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
    return value


def _hosts(names: list) -> list[str]:
    """Host names the web app answers to besides its own (``rig.lab``, ``*.lab.example``)."""
    for i, name in enumerate(names):
        if not isinstance(name, str) or not re.fullmatch(
                r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*"
                r"[A-Za-z0-9])?)*\.?", name, re.ASCII):
            raise ConfigError(f"web.hosts[{i}]: {str(name)[:80]!r} is not a host name",
                              hint="e.g. rig.lab or *.lab.example")
    return [n.lower() for n in names]


def _pages(d: dict, base: Path) -> dict[str, str]:
    """Extra web pages: a URL path (``/rig``) to an HTML file (relative to the config)."""
    out = {}
    for url, file in d.items():
        where = f"web.pages.{url}"
        if not isinstance(url, str) or not re.fullmatch(r"/[A-Za-z0-9_\-/]+", url) or \
                url.startswith(("/api/", "/ws/", "/static/")) or url in ("/", "/channels",
                                                                       "/tags"):
            raise ConfigError(f"{where}: a page needs a path of its own like /rig",
                              hint="not /, /channels, /tags or under /api/, /ws/, /static/")
        if not isinstance(file, str):
            raise ConfigError(f"{where}: expected the path of an HTML file")
        path = str((base / file).resolve()) if not os.path.isabs(file) else file
        if not os.path.isfile(path):
            raise ConfigError(f"{where}: no file {path!r}")
        out[url] = path
    return out


LIMIT_KEYS = ("query_records", "export_records", "subscriptions", "subscriptions_per_client",
              "request_bytes", "schema_bytes", "schema_depth", "schema_fields", "buckets",
              "exports", "stall_seconds")

STORE_KEYS = ("block_bytes", "segment_bytes", "segment_span", "flush_interval",
              "compression_level", "fsync")


def _store_options(d: dict, where: str) -> dict:
    """The store's block and segment settings: sizes like 1M, spans like 1h or PT1H."""
    from .store import check_options
    _check_keys(d, set(STORE_KEYS), where)
    out: dict[str, Any] = {}
    for key, value in d.items():
        if value is None:
            continue
        out[key] = parse_size(value, f"{where}{key}") if key.endswith("_bytes") else value
    try:
        check_options(out, where)
    except SpeedDataError as e:
        raise ConfigError(str(e)) from None
    return out                       # as written: the store reads durations itself


def _retention(d: dict, where: str) -> dict:
    """Retention settings as the store takes them: sizes in bytes, durations as written
    (seconds or ISO 8601), checked by the store's own rules."""
    from .store import check_options
    _check_keys(d, {"max_bytes", "max_age"}, where)
    out: dict[str, Any] = {}
    if d.get("max_bytes") is not None:
        out["max_bytes"] = parse_size(d["max_bytes"], f"{where}max_bytes")
    if d.get("max_age") is not None:
        out["max_age"] = d["max_age"]
    try:
        check_options(out, where)
    except SpeedDataError as e:
        raise ConfigError(str(e)) from None
    return out
