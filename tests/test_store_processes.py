"""Writers killed with SIGKILL, and readers in other processes while a writer appends."""

import random
import signal
import subprocess
import time

import numpy as np
import pytest

import speeddata
from speeddata.store._segment import needs_repair

from helpers import python_child

SCHEMA = {"type": "record", "name": "k", "fields": [
    {"name": "time", "type": "long"}, {"name": "id", "type": "long"},
    {"name": "payload", "type": "string"}]}

# Appends ids in order from where the store left off; prints each id once it is flushed.
WRITER = """
import sys, speeddata
store = speeddata.store.open(sys.argv[1], block_bytes=2048, segment_bytes=65536)
ch = store.create_channel("k", %r)
held = ch.read(signals=["id"]).id
i = int(held[-1]) + 1 if len(held) else 0
print("start", i, flush=True)
while True:
    ch.append([{"time": 10**9 + j, "id": j, "payload": "x" * (j %% 50)} for j in range(i, i + 97)])
    i += 97
    if i %% 3 == 0:
        ch.flush()
        print("flushed", i, flush=True)
""" % (SCHEMA,)


@pytest.mark.slow
def test_kill_9_writer_many_times_loses_nothing_flushed(tmp_path, child_processes):
    rng = random.Random(11)
    flushed = 0
    for round_ in range(12):
        p = python_child(WRITER, str(tmp_path), stdout=subprocess.PIPE, text=True)
        child_processes.append(p)
        start = p.stdout.readline().split()
        assert start[0] == "start" and int(start[1]) >= flushed
        deadline = time.monotonic() + rng.uniform(0.05, 0.4)
        while time.monotonic() < deadline:
            line = p.stdout.readline().split()
            if line and line[0] == "flushed":
                flushed = int(line[1])
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        for line in p.stdout:   # what it reported before it died (the last may be torn)
            word = line.split()
            if len(word) == 2 and word[0] == "flushed" and word[1].isdigit():
                flushed = max(flushed, int(word[1]))
        with speeddata.store.open(tmp_path) as store:
            ch = store["k"]
            cols = ch.read()
            ids = cols.id
            assert len(ids) >= flushed, (round_, len(ids), flushed)
            assert np.array_equal(ids, np.arange(len(ids))), "a gap or a duplicate"
            assert cols.payload.tolist() == ["x" * (j % 50) for j in ids.tolist()]
            assert not any(needs_repair(path) for path in ch.segments())
    assert flushed > 1000


READER = """
import sys, time, speeddata
import numpy as np
store = speeddata.store.open(sys.argv[1], readonly=True)
seen, reads = 0, 0
end = time.monotonic() + 3
while time.monotonic() < end:
    ids = store["k"].read(signals=["id"]).id
    assert np.array_equal(ids, np.arange(len(ids))), "torn or missing block"
    assert len(ids) >= seen, "a read lost records an earlier read saw"
    seen, reads = len(ids), reads + 1
print(reads, seen, flush=True)
"""


def test_readers_in_other_processes_while_writing(tmp_path, child_processes):
    with speeddata.store.open(tmp_path, block_bytes=2048, segment_bytes=32768,
                              flush_interval=0.01) as store:
        ch = store.create_channel("k", SCHEMA)
        ch.append([{"time": 10**9, "id": 0, "payload": ""}])
        ch.flush()
        readers = [python_child(READER, str(tmp_path), stdout=subprocess.PIPE, text=True)
                   for _ in range(2)]
        child_processes.extend(readers)
        i = 1
        while any(r.poll() is None for r in readers):
            ch.append([{"time": 10**9 + j, "id": j, "payload": "y"} for j in range(i, i + 50)])
            i += 50
            time.sleep(0.001)
        for r in readers:
            out, _ = r.communicate(timeout=30)
            assert r.returncode == 0, out
            reads, seen = map(int, out.split())
            assert reads > 10 and 0 < seen <= i
        assert len(ch.segments()) > 2       # the readers saw rollovers happen
