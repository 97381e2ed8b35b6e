"""Arrow results against a plain pyarrow Flight server, in one run.

- Flight DoGet of N records x 4 doubles from a real ``speeddata serve`` (decoded from its
  store as it streams), as a ratio to a pyarrow Flight server streaming the same table from
  memory (target >= 0.9);
- gRPC Query of the same range to the Python client, the same ratio (target >= 0.8);
- ``Columns.to_arrow()`` of those N records (target: microseconds, not proportional to N).
Rounds alternate between the three so the machine's noise falls on each alike; medians.

Run: .venv/bin/python benchmarks/flight_bench.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import speeddata  # noqa: E402
from grpc_bench import build_four  # noqa: E402
from helpers import ServeProcess, free_tcp_port  # noqa: E402


class MemoryServer(flight.FlightServerBase):
    """The baseline: a table held in memory, streamed in batches of 64 Ki rows (a size
    Flight streams well; one batch of N rows is slower)."""

    def __init__(self, table):
        super().__init__("grpc://127.0.0.1:0")
        self.table = pa.Table.from_batches(table.to_batches(max_chunksize=1 << 16))

    def do_get(self, context, ticket):
        return flight.RecordBatchStream(self.table)


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data")
        lo, hi = build_four(data, n)
        with speeddata.store.open(data, readonly=True) as st:
            cols = st["four"].read(lo, hi)
        table = cols.to_arrow()
        memory = MemoryServer(table)
        port = free_tcp_port()
        serve = ServeProcess(data, extra_args=["--flight", f"127.0.0.1:{port}"])
        try:
            ours = flight.connect(f"grpc://127.0.0.1:{port}")
            theirs = flight.connect(f"grpc://127.0.0.1:{memory.port}")
            client = speeddata.Client(serve.address)
            ticket = flight.Ticket(json.dumps({"channel": "four", "start": lo,
                                               "end": hi}).encode())
            runs: dict[str, list[float]] = {"flight": [], "memory": [], "grpc": [],
                                            "to_arrow": []}
            got = ours.do_get(ticket).read_all()
            assert got.num_rows == n and got.equals(table.cast(got.schema))
            for _ in range(args.rounds):
                runs["memory"].append(timed(lambda: theirs.do_get(flight.Ticket(b"")).read_all()))
                runs["flight"].append(timed(lambda: ours.do_get(ticket).read_all()))
                runs["grpc"].append(timed(lambda: client.query("four", lo, hi)))
                runs["to_arrow"].append(timed(cols.to_arrow))
            client.close()
        finally:
            serve.stop()
            memory.shutdown()
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"{n:,} records x 4 doubles, {args.rounds} alternating rounds, medians")
    print(f"{'path':<34}{'s':>8}{'M records/s':>14}{'vs memory':>11}")
    for key, what in (("memory", "pyarrow Flight, table in memory"),
                      ("flight", "SpeedData Flight DoGet (store)"),
                      ("grpc", "SpeedData gRPC Query (Client)")):
        print(f"{what:<34}{med[key]:>8.3f}{n / med[key] / 1e6:>14.1f}"
              f"{med['memory'] / med[key]:>10.2f}x")
    print(f"{'Columns.to_arrow()':<34}{med['to_arrow'] * 1e6:>7.0f} us")


if __name__ == "__main__":
    main()
