"""The README's device sender, run as it is written against a real server: the byte layout
it documents is what SpeedData accepts."""

import json
import re
from pathlib import Path

import numpy as np

import speeddata

from helpers import ServeProcess, free_udp_port, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_sender_feeds_a_channel(tmp_path):
    text = README.read_text()
    schema = json.loads(re.search(r"For the schema\n`(\{.*?\})`", text, re.S).group(1)
                        .replace("\n", " "))
    code = re.search(r"In Python, without SpeedData:\n\n```python\n(.*?)```", text, re.S).group(1)
    port = free_udp_port()
    server = ServeProcess(tmp_path / "data", config={"channels": [
        {"name": "rig", "port": port, "schema": json.dumps(schema)}]})
    try:
        exec(code.replace("26010", str(port)).replace("range(1000)", "range(300)"), {})
        with speeddata.store.open(server.data, readonly=True) as st:
            wait_for(lambda: st["rig"].count() == 300, what="the README sender's records")
            cols = st["rig"].read()
    finally:
        server.stop()
    assert np.allclose(cols.x, np.sin(np.arange(300) / 10))
    assert cols.ok.tolist() == [k % 2 == 0 for k in range(300)]


def test_the_tour_registers_a_channel_and_reads_it_in_pandas(tmp_path):
    """The tour's steps 3 and 4, as written, against a real serve with the example channel
    fed: register, send with the README's sender, read in pandas and as one frame."""
    import os
    from textwrap import dedent

    from helpers import feeding
    text = README.read_text()
    tour = text[text.index("## A tour"):text.index("## Using the command")]
    register, read = (dedent(block) for block in
                      re.findall(r"```python\n(.*?)```", tour, re.S))
    sender = re.search(r"In Python, without SpeedData:\n\n```python\n(.*?)```", text,
                       re.S).group(1)
    rig, example = free_udp_port(), free_udp_port()
    server = ServeProcess(tmp_path / "data", config={"channels": [
        {"name": "example", "port": example,
         "schema": os.path.join(os.path.dirname(speeddata.__file__), "schemas",
                                "example.avsc")}]})
    try:
        scope: dict = {}
        exec(register.replace("127.0.0.1:50051", server.address)
             .replace("26010", str(rig)), scope)
        client = scope["client"]
        wait_for(lambda: client.get_channel("rig").status == "running", what="rig running")
        with feeding(example, rate=2000):
            exec(sender.replace("26010", str(rig)).replace("range(1000)", "range(200)"), {})
            wait_for(lambda: client.query("rig", "now-1m").to_arrow().num_rows == 200,
                     what="the sender's records")
        exec(read.replace("./data", server.data), scope)
        client.close()
    finally:
        server.stop()
    frame, both = scope["frame"], scope["both"]
    assert len(frame) == 200 and frame.columns.tolist() == ["x", "ok"]
    assert str(frame.index.dtype) == "datetime64[ns, UTC]"
    assert both.columns.tolist() == ["time", "rig.x", "example.sine_wave"]
    assert len(both) == 200 and both["example.sine_wave"].notna().sum() > 0
