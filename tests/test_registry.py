"""The channel registry: persisted, unique names and ports, the one source for serve."""

import json
import socket

import pytest

from speeddata import ChannelExists, ChannelNotFound, ConfigError
from speeddata.config import ChannelConfig, channel
from speeddata.ingest import Registry
from speeddata.send import send
from speeddata.ingest import Supervisor

from helpers import EXAMPLE_AVSC, free_udp_port, wait_for


def cfg(name, port, **kw):
    return channel({"name": name, "port": port, "schema": str(EXAMPLE_AVSC), **kw},
                   f"{name}.")


def test_register_persists_and_keeps_names_and_ports_unique(tmp_path):
    reg = Registry(tmp_path)
    reg.register(cfg("a", 26001, decimation="minmax:10", retention={"max_age": "PT1H"}))
    reg.register(cfg("b", 26002), source="config")
    with pytest.raises(ChannelExists, match="channel 'a' is registered already"):
        reg.register(cfg("a", 26003))
    with pytest.raises(ChannelExists, match="port 26002 is registered to channel 'b'"):
        reg.register(cfg("c", 26002))
    again = Registry(tmp_path)                      # a new process sees the same
    a = again.get("a")
    assert a.source == "api" and a.config.port == 26001 and a.config.decimation == "minmax:10"
    assert a.config.options == {"max_age": "PT1H"}
    assert json.loads(a.config.schema)["name"] == "data"   # the schema travels as text
    assert [r.config.name for r in again.entries(source="config")] == ["b"]
    again.deregister("a")
    with pytest.raises(ChannelNotFound, match="'a'"):
        again.get("a")


def test_available_ports_leave_out_registered_and_bound_ones(tmp_path):
    reg = Registry(tmp_path)
    first = free_udp_port(count=3)
    reg.register(cfg("a", first))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", first + 1))            # another program holds it
        free = reg.available_ports(range(first, first + 3))
    assert free == [first + 2]


def test_config_channels_follow_the_file_and_api_ones_stay(tmp_path):
    reg = Registry(tmp_path)
    reg.sync_config([cfg("x", 26010), cfg("y", 26011)])
    reg.register(cfg("api", 26012))
    reg.sync_config([cfg("x", 26020)])               # y dropped from the file, x moved
    assert {r.config.name: r.config.port for r in reg.entries()} == {"x": 26020, "api": 26012}
    with pytest.raises(ConfigError, match="config channel 'z'.*port 26012 is registered "
                                          "to channel 'api'"):
        reg.sync_config([cfg("z", 26012)])
    assert reg.names() == ["api", "x"]               # nothing half-applied


def test_a_channel_registered_at_run_time_comes_back_after_a_restart(tmp_path):
    data = str(tmp_path / "data")
    a, b = ChannelConfig("a", free_udp_port(), str(EXAMPLE_AVSC)), \
        ChannelConfig("b", free_udp_port(), str(EXAMPLE_AVSC))
    sup = Supervisor(data, [a]).start()
    try:
        sup.wait_ready()
        sup.add_channel(b)
        sup.wait_ready()
        with pytest.raises(ChannelExists):
            sup.add_channel(ChannelConfig("b2", b.port, str(EXAMPLE_AVSC)))
    finally:
        sup.stop()
    sup = Supervisor(data, [a]).start()                # the config names only a
    try:
        assert sup.wait_ready() == {} and set(sup.channels) == {"a", "b"}
        send(port=b.port, rate=5_000, count=300)
        wait_for(lambda: len(sup.store["b"].read()) == 300, what="b's records")
        sup.remove_channel("b")                         # deregistered, data kept
    finally:
        sup.stop()
    assert Registry(data).names() == ["a"]


def test_one_table_maps_errors_to_grpc_and_http():
    from speeddata import errors as E
    assert E.status_of(E.SchemaError("x")) == ("INVALID_ARGUMENT", 400)
    assert E.status_of(E.ChannelExists("x")) == ("ALREADY_EXISTS", 409)
    assert E.status_of(E.TagNotFound("x")) == ("NOT_FOUND", 404)
    assert E.status_of(E.LimitExceeded("x")) == ("RESOURCE_EXHAUSTED", 413)
    assert E.status_of(E.PortUnavailable("x")) == ("UNAVAILABLE", 503)
    assert E.status_of(E.FormatError("x")) == ("DATA_LOSS", 500)   # before StoreError
    assert E.status_of(KeyError("x")) == ("INTERNAL", 500)
    for cls in vars(E).values():       # every SpeedData error has its row
        if isinstance(cls, type) and issubclass(cls, E.SpeedDataError):
            assert cls in E.STATUS, cls


def test_registering_a_port_another_program_holds_is_unavailable(tmp_path):
    from speeddata import PortUnavailable
    sup = Supervisor(str(tmp_path / "data"), [])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            port = free_udp_port()
            s.bind(("127.0.0.1", port))
            with pytest.raises(PortUnavailable, match=f"UDP port {port} .* held by pid"):
                sup.add_channel(ChannelConfig("x", port, str(EXAMPLE_AVSC)))
        assert sup.registry.names() == []
    finally:
        sup.stop()
