"""What block summaries cost at ingest (target: within 5% of no summaries), measured in
rounds that alternate with and without them in one process, so that the drift of a noisy
machine falls on both alike.

    .venv/bin/python benchmarks/summary_cost.py [--records N] [--rounds R]

Two measures, medians, for the example schema at 20 records per datagram:
- the block stage alone: validate datagrams into 16 KiB blocks and take each block;
- the store's side of ingest, as a worker runs it in one thread: the block stage,
  compression, the writes of blocks, index entries and summary rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import speeddata
from speeddata import schema as S
from speeddata._block import BlockBuilder
from speeddata.codec import Plan

from benchdata import EXAMPLE_AVSC, T0, example_datagrams

BLOCK_BYTES = 16 << 10


def block_stage(datagrams: list[bytes], plan: Plan, summaries: bool) -> float:
    """Seconds to validate the datagrams into blocks and take them."""
    b = BlockBuilder(plan, summaries=summaries)
    i = 0
    start = time.perf_counter()
    while i < len(datagrams):
        _, i = b.add_datagrams(datagrams, T0, i, BLOCK_BYTES)
        b.take()
    return time.perf_counter() - start


def open_writer(path, summaries: bool):
    """A store at ``path`` with the example channel and its writer open, its blocks with
    or without summaries: (store, channel)."""
    store = speeddata.store.open(path)
    ch = store.create_channel("example", speeddata.send.builtin_schema("example"))
    w = ch.writer()
    if not summaries:
        w.builder = BlockBuilder(w.builder.plan, stamp=ch.schema.stamped, summaries=False)
    return store, ch


def stream(store, ch, datagrams: list[bytes]) -> None:
    """As a worker does: fill a block, flush what is due, in one thread; then close."""
    w, i = ch.writer(), 0
    while i < len(datagrams):
        _, i = w.builder.add_datagrams(datagrams, T0, i, w.block_bytes)
        w.maybe_flush()
    ch.close()
    store.close()


def store_side(datagrams: list[bytes], summaries: bool) -> float:
    """Seconds of the store's side of ingest for the datagrams."""
    with tempfile.TemporaryDirectory() as path:
        store, ch = open_writer(path, summaries)
        start = time.perf_counter()
        stream(store, ch, datagrams)
        return time.perf_counter() - start


def measure(records: int = 400_000, rounds: int = 15) -> list[dict]:
    schema = S.load(EXAMPLE_AVSC)
    datagrams = example_datagrams(schema, records, per_datagram=20)
    plan = Plan(schema, wire=True)
    rows = []
    for name, run in (("block stage", lambda s: block_stage(datagrams, plan, s)),
                      ("store side of ingest", lambda s: store_side(datagrams, s))):
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for summaries in (True, False):
                times[summaries].append(run(summaries))
        with_, without = statistics.median(times[True]), statistics.median(times[False])
        rows.append({"measure": name, "records": records, "with": with_,
                     "without": without, "ratio": with_ / without,
                     "ns_per_record": (with_ - without) / records * 1e9})
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"{'measure':<22} {'records':>9} {'with':>10} {'without':>10} {'ratio':>7} "
             f"{'ns/record':>10}"]
    for r in rows:
        lines.append(f"{r['measure']:<22} {r['records']:>9,} {r['with'] * 1e3:>8.2f}ms "
                     f"{r['without'] * 1e3:>8.2f}ms {r['ratio']:>6.3f}x "
                     f"{r['ns_per_record']:>10.1f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=400_000)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    print(table(measure(args.records, args.rounds)))


if __name__ == "__main__":
    main()
