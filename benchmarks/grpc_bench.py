"""The gRPC service under load, against a real ``speeddata serve`` on loopback.

- Query: N records x 4 doubles streamed to the Python client, as a ratio to a local
  `Channel.read` of the same range in the same run (target: >= 40%).
- Subscribe latency at 10 kHz (1 record per datagram), from the record's send time to the
  batch in the client, per record: p50 and p99 with 1 and with 50 subscribers (target: p99
  < 20 ms), and the CPU the serve process spends for each (target: 50 < 2x of 1).
- The hub at 200k records/s with a min/max envelope subscriber: records missed (target 0)
  and what ingest lost.

Run: .venv/bin/python benchmarks/grpc_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import speeddata  # noqa: E402
from speeddata.client import Client, batch_columns  # noqa: E402
from speeddata.live.hub import MIN_INTERVAL  # noqa: E402
from speeddata.send import builtin_schema, send  # noqa: E402
from speeddata.v1 import speeddata_pb2 as pb  # noqa: E402
from speeddata.v1 import speeddata_pb2_grpc as pb_grpc  # noqa: E402

from helpers import ServeProcess, free_udp_port  # noqa: E402

FOUR = {"type": "record", "name": "four", "fields": [{"name": "time", "type": "long"}] + [
    {"name": f"s{k}", "type": "double"} for k in range(4)]}
T0 = 1_700_000_000_000_000_000


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_four(data: str, n: int) -> tuple[int, int]:
    """A store with one channel of n records x 4 doubles, 1 kHz; returns its range."""
    with speeddata.store.open(data) as st:
        ch = st.create_channel("four", FOUR)
        rng = np.random.default_rng(1)
        step = 1 << 20
        for a in range(0, n, step):
            m = min(step, n - a)
            t = T0 + (np.arange(a, a + m, dtype=np.int64) * 1_000_000)
            ch.append_columns(t, {f"s{k}": rng.normal(size=m) for k in range(4)})
        ch.flush()
    return T0, T0 + n * 1_000_000


def query_vs_local(n: int, rounds: int = 5) -> dict:
    """Medians over ``rounds`` after one warm-up round of each (the first query of a
    process also pays for the client's first large allocations), interleaved so that both
    see the same machine; each result is dropped before the next call allocates its own."""
    with tempfile.TemporaryDirectory(prefix="sdbench-") as tmp:
        data = os.path.join(tmp, "data")
        lo, hi = build_four(data, n)
        server = ServeProcess(Path(data))
        try:
            with Client(server.address) as c, speeddata.store.open(data, readonly=True) as st:
                remote, local = [], []
                for _ in range(rounds + 1):
                    t = time.perf_counter()
                    got = c.query("four", lo, hi)
                    remote.append(time.perf_counter() - t)
                    last = got.s3[-1000:].copy()
                    assert len(got) == n
                    del got
                    t = time.perf_counter()
                    ref = st["four"].read(lo, hi)
                    local.append(time.perf_counter() - t)
                    assert len(ref) == n and np.array_equal(last, ref.s3[-1000:])
                    del ref
        finally:
            server.stop()
    r, l_ = statistics.median(remote[1:]), statistics.median(local[1:])
    return {"records": n, "query_s": r, "local_s": l_, "query_rec_per_s": n / r,
            "local_rec_per_s": n / l_, "ratio": l_ / r, "first_query_s": remote[0]}


async def _subscribers(address: str, k: int, stop: asyncio.Event, lat: list, counts: list,
                       ready: asyncio.Event, decimation: str = "none") -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = pb_grpc.SpeedDataStub(ch)
        kind = {"none": pb.DECIMATION_KIND_NONE, "minmax": pb.DECIMATION_KIND_MIN_MAX}
        factor = 100 if decimation == "minmax" else 1
        request = pb.SubscribeRequest(channels=[pb.ChannelSubscription(
            channel="rig", signals=["counter"],
            decimation=pb.Decimation(kind=kind[decimation], factor=factor))])
        missed = [0]

        async def one(i: int) -> None:
            call = stub.Subscribe(request)
            try:
                async for r in call:
                    now = time.time_ns()
                    missed[0] += r.missed
                    counts[i] += r.next_record - r.first_record
                    if i == 0 and decimation == "none":      # one subscriber's view
                        cols = batch_columns(r.batch)
                        lat.append(now - cols.time)
                    if stop.is_set():
                        break
            except asyncio.CancelledError:
                pass
            finally:
                call.cancel()

        tasks = [asyncio.create_task(one(i)) for i in range(k)]
        await asyncio.sleep(0.5)
        ready.set()
        await stop.wait()
        await asyncio.sleep(0.3)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        counts.append(missed[0])


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop for the subscribers of every run, in a thread of its own (gRPC's
    asyncio client stays bound to the first loop it runs on)."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
        threading.Thread(target=_LOOP.run_forever, daemon=True).start()
    return _LOOP


def live(subscribers: int, rate: float, seconds: float, decimation: str = "none") -> dict:
    """Subscribers on one channel while a sender runs at ``rate`` datagrams/s."""
    with tempfile.TemporaryDirectory(prefix="sdbench-") as tmp:
        server = ServeProcess(Path(tmp) / "data")
        try:
            port = free_udp_port()
            with Client(server.address) as c:
                c.register_channel("rig", port, builtin_schema("example"))
                while c.get_channel("rig").status != "running":
                    time.sleep(0.05)
                lat: list = []
                counts = [0] * subscribers
                loop = _loop()
                stop, ready = asyncio.Event(), asyncio.Event()
                runner = asyncio.run_coroutine_threadsafe(
                    _subscribers(server.address, subscribers, stop, lat, counts, ready,
                                 decimation), loop)
                while not ready.is_set():
                    time.sleep(0.05)
                cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
                report = send(port=port, rate=rate, duration=seconds)
                deadline = time.monotonic() + 10        # until every subscriber caught up
                while min(counts) < report.records - 100 and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.2)
                cpu = cpu_seconds(server.proc.pid) - cpu0
                wall = time.monotonic() - t0
                loop.call_soon_threadsafe(stop.set)
                runner.result(30)
                stats = c.stats(["rig"])["rig"]
        finally:
            server.stop()
    missed = counts.pop()
    lat_ms = np.concatenate(lat) / 1e6 if lat else np.zeros(1)
    return {"subscribers": subscribers, "rate": rate, "sent": report.records,
            "received": stats["records"], "kernel_drops": stats["kernel_drops"],
            "delivered_min": min(counts), "missed": missed,
            "p50_ms": float(np.percentile(lat_ms, 50)),
            "p99_ms": float(np.percentile(lat_ms, 99)),
            "serve_cpu_pct": 100 * cpu / wall, "decimation": decimation}


BARE_SERVER = """
import asyncio, sys, grpc
async def main(size, interval):
    tick = asyncio.Condition()
    async def ticker():
        while True:
            await asyncio.sleep(interval)
            async with tick:
                tick.notify_all()
    async def stream(request, context):
        payload = bytes(size)
        while True:
            async with tick:
                await tick.wait()
            yield payload
    handler = grpc.method_handlers_generic_handler("bare.Bare", {
        "Stream": grpc.unary_stream_rpc_method_handler(stream)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    asyncio.get_running_loop().create_task(ticker())
    await server.wait_for_termination()
asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
"""


def bare_fanout(streams: int, seconds: float, interval: float = MIN_INTERVAL,
                size: int = 1200) -> float:
    """The floor under the hub's fan-out: CPU % of a bare grpc.aio server that writes one
    ``size``-byte message every ``interval`` s to each of ``streams`` streams, with no
    SpeedData code in it (a Subscribe message at 10 kHz, one signal, is about 1.2 kB)."""
    import subprocess
    proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(size), str(interval)],
                            stdout=subprocess.PIPE, text=True)
    try:
        address = f"127.0.0.1:{proc.stdout.readline().strip()}"
        got = [0] * streams
        stop = asyncio.Event()

        async def clients() -> None:
            async with grpc.aio.insecure_channel(address) as ch:
                call = ch.unary_stream("/bare.Bare/Stream")

                async def one(i: int) -> None:
                    async for _ in call(b""):
                        got[i] += 1
                        if stop.is_set():
                            return
                tasks = [asyncio.create_task(one(i)) for i in range(streams)]
                await stop.wait()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        loop = _loop()
        runner = asyncio.run_coroutine_threadsafe(clients(), loop)
        while min(got) == 0:
            time.sleep(0.05)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
        loop.call_soon_threadsafe(stop.set)
        runner.result(30)
    finally:
        proc.kill()
        proc.wait()
    return 100 * cpu / wall


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a few seconds each")
    args = p.parse_args(argv)
    n = 1_000_000 if args.quick else 10_000_000
    secs = 2.0 if args.quick else 10.0
    q = query_vs_local(n)
    print(f"Query {q['records']:,} records x 4 doubles: {q['query_s']:.2f} s "
          f"({q['query_rec_per_s'] / 1e6:.1f} M rec/s); local read {q['local_s']:.2f} s "
          f"({q['local_rec_per_s'] / 1e6:.1f} M rec/s); ratio {q['ratio']:.0%} (the first "
          f"query of the client: {q['first_query_s']:.2f} s)", flush=True)
    print(f"\n{'subscribers':>11} {'rate':>8} {'decim':>7} {'sent':>9} {'received':>9} "
          f"{'drops':>6} {'min deliv':>9} {'missed':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'serve CPU':>9}")
    rows = [live(1, 10_000, secs), live(50, 10_000, secs),
            live(1, 200_000, secs, "minmax")]
    for r in rows:
        print(f"{r['subscribers']:>11} {r['rate']:>8,.0f} {r['decimation']:>7} "
              f"{r['sent']:>9,} {r['received']:>9,} {r['kernel_drops']:>6} "
              f"{r['delivered_min']:>9,} {r['missed']:>7} {r['p50_ms']:>7.1f} "
              f"{r['p99_ms']:>7.1f} {r['serve_cpu_pct']:>8.1f}%", flush=True)
    print(f"\nserve CPU, 50 subscribers against 1: "
          f"{rows[1]['serve_cpu_pct'] / max(rows[0]['serve_cpu_pct'], 1e-9):.2f}x")
    bare = [bare_fanout(k, secs) for k in (1, 50)]
    extra = (rows[1]["serve_cpu_pct"] - rows[0]["serve_cpu_pct"]) / max(bare[1] - bare[0], 1e-9)
    print(f"a bare grpc.aio server writing the same message rate: {bare[0]:.1f}% CPU for 1 "
          f"stream, {bare[1]:.1f}% for 50; serve's extra CPU for 49 more subscribers is "
          f"{extra:.2f}x the bare server's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
