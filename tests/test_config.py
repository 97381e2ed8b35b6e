"""The config file: the annotated example loads, and each bad file gets a message naming the
key and its line."""

from pathlib import Path

import pytest

from speeddata import config
from speeddata.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "speeddata" / "schemas" / "example.avsc"


def test_the_annotated_example_loads_with_every_section():
    cfg = config.load(ROOT / "examples" / "speeddata.yaml")
    assert [c.name for c in cfg.channels] == ["example", "temperature"]
    assert cfg.store_options["max_bytes"] == 20 * 2**30
    assert cfg.store_options["segment_bytes"] == 64 * 2**20
    assert cfg.web == {"bind": "127.0.0.1", "port": 8080, "hosts": ["rig-a.lab"]}
    assert cfg.pages == {"/rig": str(ROOT / "examples" / "rig.html")}
    assert cfg.limits == {"query_records": 100_000_000, "export_records": 500_000_000}
    assert cfg.channels[0].options == {"max_age": "24h"}
    assert cfg.channels[1].multicast.decimated_port == 27002


CHANNEL = f"channels:\n  - name: a\n    port: 26000\n    schema: {SCHEMA}\n"
BAD = [
    ("colour: red\n", 1, "config: unknown key(s) colour"),
    ("data: ./d\nretention:\n  max_bytes: lots\n", 3, "retention.max_bytes: 'lots' is not a size"),
    ("retention:\n  max_age: soon\n", 2, "cannot read 'soon' as a duration"),
    ("store:\n  block_bytes: 1M\n  flush_interval: -1\n", 3, "flush_interval must be 0 to 3600"),
    ("store:\n  segment_span: 0s\n", 2, "segment_span must be a positive duration"),
    ("store:\n  blocks: 3\n", 2, "store: unknown key(s) blocks"),
    ("web: {port: 99999}\n", 1, "web.port: 99999 is outside"),
    ("grpc:\n  bind: 127.0.0.1\n  port: http\n", 3, "grpc.port: expected int"),
    ("limits:\n  query_records: 0\n", 2, "limits.query_records: 0 is not a positive count"),
    ("token: 42\n", 1, "token: expected str"),
    (CHANNEL + "  - name: b\n    port: 80\n    schema: x.avsc\n", 6,
     "channels[1].port: 80 is outside the channel port range"),
    (CHANNEL + "    decimation: median:3\n", 5, "channels[0].decimation: unknown decimation"),
    (CHANNEL + "    multicast: {group: 10.0.0.1, port: 27000}\n", 5,
     "channels[0].multicast.group: 10.0.0.1 is not a multicast group"),
    (CHANNEL.replace("26000", "26000\n    colour: red"), 4, "channels[0]: unknown key(s) colour"),
    ("channels:\n  - name: a\n    port: 26000\n    schema: nope.avsc\n", 4,
     "channels[0].schema: no file"),
    ("channels: [\n", None, "not valid YAML"),
    ("web:\n  pages:\n    /api/x: page.html\n", 3, "web.pages./api/x: a page needs a path"),
    ("web:\n  pages:\n    /rig: nope.html\n", 3, "web.pages./rig: no file"),
]


@pytest.mark.parametrize("text, line, words", BAD)
def test_a_bad_config_names_the_key_and_its_line(tmp_path, text, line, words):
    path = tmp_path / "speeddata.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    message = str(e.value)
    assert words in message
    if line is not None:
        assert f"{path}, line {line}: " in message
