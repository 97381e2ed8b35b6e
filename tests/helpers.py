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


def free_udp_port(lo: int = 26000, hi: int = 27000) -> int:
    """A port in the channel range that nothing on 127.0.0.1 holds right now."""
    import random
    import socket
    for port in random.sample(range(lo, hi + 1), hi - lo + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free UDP port in the channel range")


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail naming what we waited for."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
