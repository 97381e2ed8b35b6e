"""Soak: a writer killed with SIGKILL at random moments, under load, with retention and tags.

    .venv/bin/python benchmarks/soak_kill9.py [--kills 100] [--seed 1]

Each round starts a writer process on the same store, lets it append and flush for a random
while, and kills it with SIGKILL. After each kill the store is opened as a fresh process
would (repairing what the kill tore) and a retention pass runs, as the supervisor of
`speeddata serve` does: a byte quota keeps it busy and a tag protects one early range.
Every record the writer reported flushed must then be in the store or in a segment that
retention removed (read with fastavro just before). Prints records flushed, found, removed
by retention, lost, duplicated, and tagged records lost; the target is zero lost, zero
duplicated and zero tagged records lost.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import fastavro
import numpy as np

import speeddata

WRITER = """
import sys, speeddata
store = speeddata.store.open(sys.argv[1], block_bytes=4096, segment_bytes=65536,
                             retention=False)
ch = store.create_channel("k", {"type": "record", "name": "k", "fields": [
    {"name": "time", "type": "long"}, {"name": "id", "type": "long"},
    {"name": "payload", "type": "string"}]})
held = ch.read(signals=["id"]).id
i = int(held.max()) + 1 if len(held) else 0
print("start", i, flush=True)
while True:
    ch.append([{"time": 10**18 + j * 1000, "id": j, "payload": "x" * (j % 40)}
               for j in range(i, i + 200)])
    i += 200
    ch.flush()
    print("flushed", i, flush=True)
"""
TAGGED = (0, 5_000)          # ids under the tag: never deleted by retention


def run(kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    path = tempfile.mkdtemp(prefix="speeddata-soak-")
    flushed = 0
    removed = np.zeros(0, dtype=bool)     # by id: in a segment that retention deleted
    lost = np.zeros(0, dtype=bool)        # by id: reported flushed, then nowhere
    duplicated = tag_lost = found = 0
    t0 = time.monotonic()
    with speeddata.store.open(path) as store:     # the tag is there before any data
        store.tag("keep", 10**18 + TAGGED[0] * 1000, 10**18 + TAGGED[1] * 1000)
    for _ in range(kills):
        p = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE,
                             text=True)
        try:
            p.stdout.readline()
            deadline = time.monotonic() + rng.uniform(0.02, 0.6)
            while time.monotonic() < deadline:
                line = p.stdout.readline().split()
                if line and line[0] == "flushed":
                    flushed = max(flushed, int(line[1]))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
            for line in p.stdout:
                if line.startswith("flushed"):
                    flushed = max(flushed, int(line.split()[1]))
            p.stdout.close()
        grow = flushed + 100_000 - len(removed)
        removed = np.concatenate([removed, np.zeros(max(0, grow), bool)])
        lost = np.concatenate([lost, np.zeros(len(removed) - len(lost), bool)])
        with speeddata.store.open(path, max_bytes=1_500_000) as store:
            ch = store["k"]
            before = {seg: _ids(seg) for seg in ch.segments()}
            for seg in store.enforce_retention():
                removed[before[seg]] = True
            ids = ch.read(signals=["id"]).id
        duplicated += len(ids) - len(np.unique(ids))
        present = np.zeros(len(removed), dtype=bool)
        present[ids] = True
        lost[:flushed] |= ~present[:flushed] & ~removed[:flushed]
        tag_lost = max(tag_lost, int((~present[:min(flushed, TAGGED[1])]).sum()))
        found = len(ids)
    return {"kills": kills, "seconds": round(time.monotonic() - t0, 1),
            "records flushed": flushed, "records found": found,
            "removed by retention": int(removed.sum()), "flushed but lost": int(lost.sum()),
            "duplicated": duplicated, "tagged records lost": tag_lost, "store": path}


def _ids(segment: str) -> np.ndarray:
    with open(segment, "rb") as f:
        return np.array([r["id"] for r in fastavro.reader(f)], dtype=np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    result = run(args.kills, args.seed)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if result["flushed but lost"] or result["duplicated"] or result["tagged records lost"]:
        sys.exit(1)
    if "SPEEDDATA_KEEP" not in os.environ:
        import shutil
        shutil.rmtree(result["store"], ignore_errors=True)


if __name__ == "__main__":
    main()
