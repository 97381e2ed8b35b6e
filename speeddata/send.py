"""Senders: the prototype's example signals and temperature sensor, and a load generator.

Records are built as columns and encoded with the columnar encoder; datagrams go out with
sendmmsg, paced to the requested rate, so one core sends hundreds of thousands a second.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from importlib import resources

import numpy as np

from . import schema as channel_schema
from ._ingest import send_datagrams
from .codec import Plan, encode_columns

WORDS = np.array(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"], dtype=object)
STATUS = np.array(["ok", "ok", "ok", "ok", "warning", "ok", "ok", "error"], dtype=object)


def builtin_schema(kind: str) -> str:
    """Path of a bundled schema: ``example`` or ``temperature``."""
    return str(resources.files("speeddata") / "schemas" / f"{kind}.avsc")


def example_columns(first: int, n: int, t0_ns: int, period_ns: int):
    """The prototype's example signals for samples first..first+n."""
    k = np.arange(first, first + n)
    rng = np.random.default_rng(first)
    return t0_ns + k * period_ns, {
        "message": WORDS[(k // 10) % len(WORDS)],
        "counter": (k % (1 << 31)).astype(np.int32),
        "sine_wave": np.sin(2 * np.pi * k / 20),          # period 20 samples
        "ramp": (k % 40) / 40.0,                          # sawtooth over 40
        "square_wave": np.where(k % 20 < 10, 1.0, -1.0),  # period 20
        "noise": rng.normal(0, 0.1, n),
    }


def temperature_columns(first: int, n: int, t0_ns: int, period_ns: int):
    """A temperature sensor: slow drift and noise; time in ms, as its schema says."""
    k = np.arange(first, first + n)
    rng = np.random.default_rng(first)
    c = 21 + 2 * np.sin(2 * np.pi * k / 600) + rng.normal(0, 0.05, n)
    return t0_ns + k * period_ns, {
        "device_id": np.array(["sensor-1"] * n, dtype=object), "temperature_c": c,
        "temperature_f": c * 9 / 5 + 32, "pressure_pa": 101_325 + rng.normal(0, 20, n),
        "humidity_pct": 45 + 5 * np.sin(2 * np.pi * k / 900), "status": STATUS[k % len(STATUS)],
    }


GENERATORS = {"example": (example_columns, None), "temperature": (temperature_columns, "ms")}


@dataclass
class SendReport:
    datagrams: int
    records: int
    errors: int
    seconds: float

    def __str__(self) -> str:
        rate = self.datagrams / self.seconds if self.seconds else 0
        return (f"sent {self.datagrams} datagrams ({self.records} records) in "
                f"{self.seconds:.2f} s: {rate:,.0f} datagrams/s, {self.errors} errors")


def send(host: str = "127.0.0.1", port: int = 26000, kind: str = "example", *,
         rate: float = 10.0, count: int | None = None, duration: float | None = None,
         records_per_datagram: int = 1, chunk: int = 1 << 14, first: int = 0,
         progress=None, stop=None) -> SendReport:
    """Send ``kind`` records to host:port at ``rate`` datagrams/s (0: as fast as possible),
    until ``count`` records were sent, ``duration`` s passed, or ``stop()`` is true."""
    gen, unit = GENERATORS[kind]
    cs = channel_schema.load(builtin_schema(kind), time_unit=unit)
    plan = Plan(cs, wire=True)
    rec_rate = rate * records_per_datagram
    period = int(1e9 / rec_rate) if rec_rate > 0 else 1000
    t0 = time.time_ns()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect((host, port))
    sent = errors = records = 0
    start = time.monotonic_ns()
    end = start + int(duration * 1e9) if duration else None
    k = first
    try:
        while (count is None or records < count) and not (stop and stop()):
            if end and time.monotonic_ns() >= end:
                break
            n = chunk if count is None else min(chunk, count - records)
            if rate > 0:   # small chunks at low rates, so that stop and duration are prompt
                n = max(records_per_datagram, min(n, int(rec_rate / 10) or 1))
            if n > records_per_datagram:   # whole datagrams only, but for the very last
                n -= n % records_per_datagram
            t, data = gen(k, n, t0, period)
            body, ends = encode_columns(plan, t, data)
            ok, err = send_datagrams(sock.fileno(), body, ends, records_per_datagram, rate,
                                     start + int(sent * 1e9 / rate) if rate > 0 else 0)
            sent += ok
            errors += err
            records += n
            k += n
            if progress:
                progress(sent, records)
    finally:
        sock.close()
    return SendReport(sent, records, errors, (time.monotonic_ns() - start) / 1e9)
