"""The analysis workflow in examples/: the script and the notebook, each against a real
`speeddata serve` receiving the example sender's signals."""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import speeddata
from speeddata.send import builtin_schema, send

from helpers import ServeProcess, free_udp_port, wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def fed_server(tmp_path):
    """A server whose example channel holds 2 s of the example signals."""
    port = free_udp_port()
    server = ServeProcess(tmp_path / "data", config={"channels": [
        {"name": "example", "port": port, "schema": builtin_schema("example")}]})
    try:
        send(port=port, rate=1_000, count=2_000)
        with speeddata.store.open(server.data, readonly=True) as st:
            wait_for(lambda: st["example"].count() == 2_000, what="stored")
        yield server
    finally:
        server.stop()


def test_the_analysis_script(fed_server, tmp_path):
    out = subprocess.run([sys.executable, str(EXAMPLES / "analysis.py"), "--server",
                          fed_server.address, "--out", str(tmp_path / "results")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "last minute of example: 2000 records" in out.stdout
    assert (tmp_path / "results" / "last-minute.png").stat().st_size > 1000
    event = speeddata.read_hdf5(tmp_path / "results" / "event.h5")["example"]
    assert 0 < len(event) <= 2_000 and "tagged example-crossing-" in out.stdout
    with speeddata.Client(fed_server.address) as c:
        assert [t["name"] for t in c.tags()][0].startswith("example-crossing-")


def test_the_analysis_notebook(fed_server, tmp_path):
    nb = nbformat.read(EXAMPLES / "analysis.ipynb", as_version=4)
    env = {"SPEEDDATA_SERVER": fed_server.address, "SPEEDDATA_CHANNEL": "example",
           "SPEEDDATA_OUT": str(tmp_path)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)            # the kernel inherits them
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert (tmp_path / "notebook-last-minute.png").exists()
    assert len(speeddata.read_hdf5(tmp_path / "notebook-event.h5")["example"]) > 0
