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
