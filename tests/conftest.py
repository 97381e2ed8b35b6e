import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_AVSC = ROOT / "speeddata" / "schemas" / "example.avsc"
TEMPERATURE_AVSC = ROOT / "speeddata" / "schemas" / "temperature.avsc"
T0 = 1_700_000_000_000_000_000


def example_record(i: int, t: int | None = None) -> dict:
    return {"time": T0 + i * 1_000_000 if t is None else t, "message": f"m{i % 3}",
            "counter": i, "sine_wave": float(i) / 7, "ramp": float(i % 40), "square_wave": 1.0,
            "noise": -float(i)}


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, to fill the disk for real (needs root; skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def child_processes():
    """Processes a test starts; all killed at the end, even when the test fails."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def python_child(code: str, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, **kw)
