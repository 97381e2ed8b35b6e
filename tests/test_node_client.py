"""The gRPC contract from another language: a Node.js client (@grpc/grpc-js and
@grpc/proto-loader, installed from the committed package.json and lockfile) that loads only
the .proto files registers a channel, subscribes, queries and decodes columnar batches."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from speeddata import store
from speeddata.send import WORDS, builtin_schema, send

from helpers import ServeProcess, free_udp_port

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="module")
def node_client():
    """The Node.js test client with its packages (npm ci on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed")
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        out = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"npm ci failed:\n{out.stdout}\n{out.stderr}"
    return NODE_DIR / "client.js"


def test_a_node_client_registers_subscribes_queries_and_decodes(node_client, tmp_path):
    server = ServeProcess(tmp_path / "data")
    port = free_udp_port()
    proc = subprocess.Popen(["node", str(node_client), server.address, str(ROOT / "proto"),
                             builtin_schema("example"), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline()
        assert ready.strip() == "READY", proc.stderr.read()
        send(port=port, rate=5_000, count=500)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        got = json.loads(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()
    assert got["registered"] == "node" and "sine_wave" in got["signals"]
    assert got["schemaFields"][0] == "time" and len(got["ports"]) == 5
    live = got["live"]
    assert live["counter"] == list(range(500))
    assert np.allclose(live["sine_wave"], np.sin(2 * np.pi * np.arange(500) / 20))
    assert live["message"] == [WORDS[(k // 10) % len(WORDS)] for k in range(500)]
    with store.open(server.data, readonly=True) as st:
        local = st["node"].read()
    assert [int(t) for t in live["time"]] == local.time.tolist()
    stored = got["stored"]
    assert stored["counter"] == list(range(500))
    assert stored["noise"] == local.noise.tolist()
    assert [int(t) for t in stored["time"]] == local.time.tolist()
    env = got["envelope"]
    assert int(env["time"][0]) == local.time[0]          # unset start: the oldest held
    assert len(env["time"]) == 5 and sum(int(c) for c in env["sine_wave:count"]) == 500
    assert max(env["sine_wave:max"]) == pytest.approx(local.sine_wave.max())
    assert got["notFound"]["code"] == 5 and "no-such-channel" in got["notFound"]["details"]
