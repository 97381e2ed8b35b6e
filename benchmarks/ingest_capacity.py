"""Ingest capacity on this machine (issue 4): baseline recvmmsg receiver vs full ingest.

    .venv/bin/python benchmarks/ingest_capacity.py [--quick] [--count N]

In one run, with the sender (``speeddata send``, sendmmsg) in its own process:
1. the sender alone into the baseline receiver (recvmmsg, discard) at full speed;
2. full ingest (validate + block + zstd + store) at the same sender setting;
3. 20 records per datagram into full ingest;
4. live feed latency: record time to a subscriber seeing it, at 10k records/s;
5. a worker killed with SIGKILL: time until its replacement receives again.
Prints a table: datagrams/s, records/s, loss, receiver CPU per datagram (and its ratio to
the baseline), bytes on disk per record, latency percentiles.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from speeddata.config import ChannelConfig
from speeddata.send import builtin_schema
from speeddata.ingest import Supervisor

HZ = os.sysconf("SC_CLK_TCK")
DRAIN = """
import os, resource, sys
import pyximport
sys.path.insert(0, os.path.dirname(os.path.dirname(sys.argv[3])))   # speeddata/_net.pxd
sys.path.insert(0, os.path.dirname(sys.argv[3]))
pyximport.install(language_level=3, build_dir=os.path.join(os.path.dirname(sys.argv[3]), ".build"))
from speeddata.ingest.worker import open_socket
from _drain import drain
sock, granted = open_socket("127.0.0.1", int(sys.argv[1]), 32 << 20)
print("ready", granted, flush=True)
ru0 = resource.getrusage(resource.RUSAGE_SELF)
n, nbytes, drops = drain(sock.fileno(), float(sys.argv[2]))
ru = resource.getrusage(resource.RUSAGE_SELF)
cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
print(n, nbytes, drops, cpu, flush=True)
"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def free_port() -> int:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from helpers import free_udp_port
    return free_udp_port()


def sender(port: int, count: int, per: int, rate: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "speeddata.cli", "send", "--port",
                             str(port), "--count", str(count), "--rate", str(rate),
                             "--records-per-datagram", str(per)],
                            stdout=subprocess.PIPE, text=True)


def sent_figures(p: subprocess.Popen) -> tuple[int, float]:
    out = p.communicate(timeout=600)[0]
    words = out.split()          # "sent N datagrams (M records) in S s: ..."
    return int(words[1]), float(words[6])


def baseline(count: int, per: int = 1, rate: float = 0) -> dict:
    port = free_port()
    rx = subprocess.Popen([sys.executable, "-c", DRAIN, str(port), "600",
                           os.path.join(os.path.dirname(os.path.abspath(__file__)), "_drain.pyx")],
                          stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().startswith("ready")
        tx = sender(port, count * per, per, rate)
        sent, seconds = sent_figures(tx)
        got, nbytes, drops, cpu = rx.stdout.readline().split()
    finally:
        rx.kill()
        rx.wait()
        rx.stdout.close()
    got = int(got)
    return {"case": f"baseline recvmmsg, {per} rec/dgram, max rate", "sent": sent, "seconds": seconds,
            "received": got, "records": got * per, "drops": int(drops), "cpu": float(cpu)}


def full(count: int, per: int = 1, rate: float = 0) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        cfg = ChannelConfig(name="example", port=port, schema=builtin_schema("example"))
        sup = Supervisor(data, [cfg]).start()
        try:
            sup.wait_ready()
            pid = sup.pids()["example"]
            cpu0 = cpu_seconds(pid)
            tx = sender(port, count * per, per, rate)
            sent, seconds = sent_figures(tx)
            last, stable, deadline = -1, 0, time.monotonic() + 60
            while time.monotonic() < deadline:   # until counters settle and all is stored
                time.sleep(0.1)
                c = sup.counters("example")
                stats = sup.store["example"].stats()
                stable = stable + 1 if c["datagrams"] == last else 0
                last = c["datagrams"]
                if stable >= 5 and stats.stored_records == c["records"]:
                    break
            cpu = cpu_seconds(pid) - cpu0     # idle polling in the wait costs ~nothing
        finally:
            sup.stop()
    offered = f"{rate * per / 1e6:.1f}M rec/s" if rate else "max rate"
    return {"case": f"full ingest, {per} rec/dgram, {offered}", "sent": sent, "seconds": seconds,
            "received": c["datagrams"], "records": stats.stored_records,
            "drops": c["kernel_drops"], "cpu": cpu,
            "disk_per_record": stats.bytes / max(1, stats.stored_records)}


def latency(seconds: float = 3.0, rate: float = 10_000) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        sup = Supervisor(data, [ChannelConfig(name="example", port=port,
                                              schema=builtin_schema("example"))]).start()
        try:
            sup.wait_ready()
            sub = sup.subscribe("example", "none")
            count = int(seconds * rate)
            tx = sender(port, count, 1, rate)
            lags, seen, deadline = [], 0, time.monotonic() + seconds + 30
            while seen < count and time.monotonic() < deadline:
                cols, missed = sub.poll()
                seen += len(cols) + missed
                if len(cols):
                    lags.append(time.time_ns() - cols.time)
                time.sleep(0.0005)
            tx.communicate()
        finally:
            sup.stop()
    lag = np.concatenate(lags) / 1e6 if lags else np.array([np.nan])
    return {"records": len(lag), "p50_ms": float(np.percentile(lag, 50)),
            "p99_ms": float(np.percentile(lag, 99)), "max_ms": float(lag.max())}


def restart_seconds(kills: int = 5) -> list[float]:
    """SIGKILL a worker; seconds until its replacement is receiving again."""
    import signal
    with tempfile.TemporaryDirectory() as data:
        sup = Supervisor(data, [ChannelConfig(name="example", port=free_port(),
                                              schema=builtin_schema("example"))]).start()
        try:
            sup.wait_ready()
            out = []
            for _ in range(kills):
                pid = sup.pids()["example"]
                os.kill(pid, signal.SIGKILL)
                t0 = time.monotonic()
                while not (sup.pids()["example"] != pid and
                           sup.counters("example")["pid"] == sup.pids()["example"]):
                    time.sleep(0.005)
                out.append(time.monotonic() - t0)
        finally:
            sup.stop()
    return out


def run(count: int) -> list[dict]:
    return [baseline(count), full(count),
            full(count // 5, per=20, rate=110_000),     # 2.2 M records/s offered
            full(count // 5, per=20),                   # as fast as the sender goes
            baseline(count)]                            # the baseline again: machine drift


def table(rows: list[dict], lat: dict) -> str:
    base_cpu = rows[0]["cpu"] / max(1, rows[0]["received"])
    out = [f"{'case':<42} {'sent dg/s':>10} {'records/s':>11} {'loss':>8} {'drops':>7} "
           f"{'CPU/dgram':>10} {'vs base':>8} {'disk B/rec':>10}"]
    for r in rows:
        per_dg = r["cpu"] / max(1, r["received"])
        loss = 1 - r["received"] / max(1, r["sent"])
        out.append(f"{r['case']:<42} {r['sent'] / r['seconds']:>10,.0f} "
                   f"{r['records'] / r['seconds']:>11,.0f} {loss:>8.3%} {r['drops']:>7} "
                   f"{per_dg * 1e6:>8.2f}us {per_dg / base_cpu if base_cpu else float('nan'):>7.2f}x "
                   f"{r.get('disk_per_record', float('nan')):>10.2f}")
    out.append(f"live feed latency at 10k records/s over {lat['records']} records: "
               f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, "
               f"max {lat['max_ms']:.2f} ms")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=2_000_000, help="datagrams per case")
    p.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    args = p.parse_args(argv)
    count = 20_000 if args.quick else args.count
    rows = run(count)
    print(table(rows, latency(1.0 if args.quick else 3.0)))
    restarts = restart_seconds()
    print(f"worker SIGKILL to receiving again: median {np.median(restarts):.3f} s "
          f"(max {max(restarts):.3f} s over {len(restarts)} kills)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
