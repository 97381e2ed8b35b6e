"""Helpers shared by the tests."""
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_AVSC = ROOT / "speeddata" / "schemas" / "example.avsc"
TEMPERATURE_AVSC = ROOT / "speeddata" / "schemas" / "temperature.avsc"
T0 = 1_700_000_000_000_000_000


def example_record(i: int, t: int | None = None) -> dict:
    return {"time": T0 + i * 1_000_000 if t is None else t, "message": f"m{i % 3}",
            "counter": i, "sine_wave": float(i) / 7, "ramp": float(i % 40), "square_wave": 1.0,
            "noise": -float(i)}



def python_child(code: str, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, **kw)
