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


def free_udp_port(lo: int = 26000, hi: int = 27000, count: int = 1) -> int:
    """A port in the channel range that nothing on 127.0.0.1 holds right now (the first of
    ``count`` consecutive free ones)."""
    import contextlib
    import random
    import socket
    for port in random.sample(range(lo, hi - count + 2), hi - lo - count + 2):
        with contextlib.ExitStack() as stack:
            try:
                for p in range(port, port + count):
                    s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    s.bind(("127.0.0.1", p))
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
