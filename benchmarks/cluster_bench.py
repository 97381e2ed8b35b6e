"""The cluster against one host, in the same run, on loopback: real ``nats-server``
processes and two ``speeddata serve`` nodes, a (which receives and stores) and b.

- Live latency at 10 kHz, from a record's send time to the batch in a client, followed
  through node a's own Subscribe and through node b's at once (target: p99 through b
  < 2x of a, and < 40 ms).
- Query of N records x 4 doubles through node b (routed to a) against the same Query to
  node a, interleaved (target: >= 70%).
- Archive (node a into the object store) and restore (out of it, into a new store) in MB/s
  of the Avro files, against writing and reading the same bytes on this disk.
- Ingest CPU per datagram (worker and serve process) of a node with ``cluster:`` against
  one without, in alternating rounds (target: within 5%).
- Archive speed alone (``--archive``): a node's archive of N records against storing the
  same Avro file in the object store straight from nats-py, in its default 128 KiB chunks
  and in SpeedData's 512 KiB, and against this disk, in alternating rounds.
- A node killed and started again (``--faults``, the default 2 s heartbeat): the time from
  kill -9 to "unreachable" listed on the other node, and from the restart having started
  to a routed query that works there.

Run: .venv/bin/python benchmarks/cluster_bench.py [--quick] [--nats 3] [--faults | --archive]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import speeddata  # noqa: E402
from speeddata.client import Client  # noqa: E402
from speeddata.send import builtin_schema, send  # noqa: E402

from grpc_bench import build_four, cpu_seconds  # noqa: E402
from helpers import NatsServers, ServeProcess, free_udp_port  # noqa: E402


def start_node(folder: Path, name: str, urls, channels=(), replicas=1) -> ServeProcess:
    cfg: dict = {"channels": [{"name": c, "port": p, "schema": builtin_schema("example")}
                              for c, p in channels]}
    if urls:
        cfg["cluster"] = {"nats": urls, "node": name, "replicas": replicas}   # heartbeat 2 s
    (folder / name).mkdir(exist_ok=True)
    return ServeProcess(folder / name / "data", config=cfg)


def wait(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the cluster did not settle")
        time.sleep(0.05)


def latency(a: Client, b: Client, port: int, rate: float, seconds: float) -> dict:
    """One subscriber through each node while a sender runs at ``rate``."""
    lat: dict[str, list] = {"a": [], "b": []}
    counts = {"a": 0, "b": 0}
    stop = threading.Event()

    def follow(who: str, client: Client) -> None:
        with client.subscribe("rig", ["counter"]) as live:
            for batch in live:
                lat[who].append(time.time_ns() - batch.time)
                counts[who] += len(batch)
                if stop.is_set():
                    return

    threads = [threading.Thread(target=follow, args=(w, c), daemon=True)
               for w, c in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    time.sleep(2.5)                       # b's lease reaches a
    report = send(port=port, rate=rate, duration=seconds)
    wait(lambda: min(counts.values()) >= report.records - 100, 15)
    stop.set()
    send(port=port, rate=100, count=20)   # wakes both streams so that they end
    for t in threads:
        t.join(10)
    out = {"sent": report.records}
    for who in "ab":
        ms = np.concatenate(lat[who]) / 1e6
        out[who] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                    "received": counts[who]}
    return out


def queries(a: Client, b: Client, lo: int, hi: int, n: int, rounds: int) -> dict:
    direct, routed = [], []
    for _ in range(rounds + 1):
        t = time.perf_counter()
        got = a.query("four", lo, hi)
        direct.append(time.perf_counter() - t)
        assert len(got) == n
        del got
        t = time.perf_counter()
        got = b.query("four", lo, hi)
        routed.append(time.perf_counter() - t)
        assert len(got) == n
        del got
    d, r = statistics.median(direct[1:]), statistics.median(routed[1:])
    return {"direct_s": d, "routed_s": r, "ratio": d / r}


def disk_speed(folder: Path, size: int) -> tuple[float, float]:
    """MB/s writing (with fsync) and reading back ``size`` bytes here."""
    path = folder / "disk-probe"
    data = os.urandom(1 << 20) * max(1, size >> 20)
    t = time.perf_counter()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    w = len(data) / (time.perf_counter() - t) / 1e6
    t = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass
    r = len(data) / (time.perf_counter() - t) / 1e6
    path.unlink()
    return w, r


def archive_restore(a: Client, urls, lo: int, hi: int, folder: Path) -> dict:
    from speeddata.cluster import fetch_archive, restore_into
    a.tag("bench", lo, hi, channels=["four"])
    t = time.perf_counter()
    manifest = a.archive("bench")
    archive_s = time.perf_counter() - t
    size = sum(c["bytes"] for c in manifest["channels"])
    into = folder / "restore-files"
    into.mkdir()
    t = time.perf_counter()
    fetch_archive(urls, "bench", str(into))
    fetch_s = time.perf_counter() - t
    t = time.perf_counter()
    with speeddata.store.open(folder / "restored") as st:
        counts = restore_into(st, manifest, str(into))
    restore_s = time.perf_counter() - t
    w, r = disk_speed(folder, size)
    return {"bytes": size, "archive_mb_s": size / archive_s / 1e6,
            "fetch_mb_s": size / fetch_s / 1e6, "restore_into_store_mb_s":
            size / restore_s / 1e6, "records": counts["four"], "disk_write_mb_s": w,
            "disk_read_mb_s": r}


def archive_speed(folder: Path, urls, replicas: int, n: int, rounds: int) -> dict:
    """MB/s of a node's archive, and of nats-py storing the same file in 128 and 512 KiB
    chunks, round by round; the disk's write+fsync speed."""
    import asyncio
    import io

    import nats
    from nats.js.api import ObjectMeta, ObjectMetaOptions
    from speeddata.cluster.buckets import ARCHIVE_CHUNK, ARCHIVES

    (folder / "a").mkdir()
    lo, hi = build_four(str(folder / "a" / "data"), n)
    node = start_node(folder, "a", urls, (), replicas)
    speeds: dict[str, list[float]] = {"node": [], "nats-py 128 KiB": [],
                                      f"nats-py {ARCHIVE_CHUNK >> 10} KiB": []}
    try:
        with Client(node.address) as a:
            wait(lambda: a.cluster()["connected"])
            avro = a.query_avro("four", folder / "four.avro", lo, hi)
            data = Path(avro).read_bytes()

            async def direct(name: str, chunk: int) -> float:
                nc = await nats.connect(servers=urls)
                try:
                    objects = await nc.jetstream(timeout=60).object_store(ARCHIVES)
                    t = time.perf_counter()
                    await objects.put(name, io.BytesIO(data), meta=ObjectMeta(
                        name=name, options=ObjectMetaOptions(max_chunk_size=chunk)))
                    took = time.perf_counter() - t
                    await objects.delete(name)
                    return len(data) / took / 1e6
                finally:
                    await nc.close()

            for r in range(rounds):
                a.tag(f"speed-{r}", lo, hi, channels=["four"])
                t = time.perf_counter()
                manifest = a.archive(f"speed-{r}")
                speeds["node"].append(manifest["channels"][0]["bytes"] /
                                      (time.perf_counter() - t) / 1e6)
                speeds["nats-py 128 KiB"].append(asyncio.run(direct(f"raw-{r}", 128 << 10)))
                speeds[f"nats-py {ARCHIVE_CHUNK >> 10} KiB"].append(
                    asyncio.run(direct(f"big-{r}", ARCHIVE_CHUNK)))
    finally:
        node.stop()
    w, _ = disk_speed(folder, len(data))
    return {"bytes": len(data), "speeds": speeds, "disk_write_mb_s": w}


def ingest_cpu(folder: Path, urls, rate: float, seconds: float, rounds: int) -> dict:
    """CPU per datagram of the worker and the serve process, with and without cluster:."""
    out: dict[str, list] = {"alone": [], "cluster": []}
    for k in range(rounds):
        for kind in ("alone", "cluster"):
            port = free_udp_port()
            node = start_node(folder, f"cpu-{kind}-{k}", urls if kind == "cluster" else None,
                              [("cpu", port)])
            try:
                with Client(node.address) as c:
                    wait(lambda: c.get_channel("cpu").status == "running")
                    time.sleep(1.5)
                    worker = [p for p in _children(node.proc.pid)]
                    pids = [node.proc.pid] + worker
                    cpu0 = sum(cpu_seconds(p) for p in pids)
                    report = send(port=port, rate=rate, duration=seconds)
                    time.sleep(0.5)
                    cpu = sum(cpu_seconds(p) for p in pids) - cpu0
                    out[kind].append(cpu / report.datagrams * 1e6)
            finally:
                node.stop()
    alone, clustered = statistics.median(out["alone"]), statistics.median(out["cluster"])
    return {"alone_us": alone, "cluster_us": clustered, "ratio": clustered / alone,
            "rounds": out}


def death_and_return(folder: Path, urls, replicas: int, rounds: int) -> dict:
    """Seconds from kill -9 of node a to its channel shown unreachable through b, and from
    a's restart (serving) to a Query through b that answers, per round (queries are tried
    through b while a is away, as users do)."""
    from speeddata.errors import Unavailable
    from speeddata.ingest import remove_orphans
    port = free_udp_port()
    a = start_node(folder, "a", urls, [("rig", port)], replicas)
    b = start_node(folder, "b", urls, (), replicas)
    gone, back = [], []
    try:
        send(port=port, rate=10_000, count=10_000)
        with Client(b.address) as cb:
            wait(lambda: {c.name: c.status for c in cb.list_channels()}.get("rig") == "running")

            def answers() -> bool:
                try:
                    return len(cb.query("rig")) == 10_000
                except Unavailable:
                    return False
            wait(answers)
            for _ in range(rounds):
                a.proc.kill()
                t = time.monotonic()
                a.proc.wait()
                wait(lambda: {c.name: c.status for c in cb.list_channels()}.get("rig") ==
                     "unreachable", timeout=60)
                gone.append(time.monotonic() - t)
                for _ in range(3):             # users asking meanwhile, as they do
                    answers()
                remove_orphans("/dev/shm")
                a = start_node(folder, "a", urls, [("rig", port)], replicas)
                t = time.monotonic()
                wait(answers, timeout=90)
                back.append(time.monotonic() - t)
    finally:
        a.stop()
        b.stop()
    return {"unreachable_s": gone, "query_back_s": back}


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--nats", type=int, default=1, help="NATS servers (3: replicas 3)")
    p.add_argument("--faults", action="store_true", help="only: a node killed and back")
    p.add_argument("--archive", action="store_true", help="only: archive speed")
    args = p.parse_args()
    if args.archive:
        with tempfile.TemporaryDirectory(prefix="sdbench-cluster-") as tmp:
            nats = NatsServers(Path(tmp), args.nats)
            try:
                nats.wait_ready(args.nats)
                ar = archive_speed(Path(tmp), nats.urls, args.nats,
                                   1_000_000 if args.quick else 10_000_000,
                                   3 if args.quick else 5)
            finally:
                nats.stop()
        print(f"archive of {ar['bytes'] / 1e6:.0f} MB with {args.nats} NATS server(s) "
              f"(replicas {args.nats}); this disk writes {ar['disk_write_mb_s']:.0f} MB/s")
        for what, v in ar["speeds"].items():
            print(f"  {what:<18} median {statistics.median(v):6.0f} MB/s  (" +
                  ", ".join(f"{x:.0f}" for x in v) + ")")
        return
    if args.faults:
        with tempfile.TemporaryDirectory(prefix="sdbench-cluster-") as tmp:
            nats = NatsServers(Path(tmp), args.nats)
            try:
                nats.wait_ready(args.nats)
                f = death_and_return(Path(tmp), nats.urls, args.nats, 3 if args.quick else 5)
            finally:
                nats.stop()
        print("kill -9 to unreachable on the other node (heartbeat 2 s): " +
              ", ".join(f"{s:.1f}" for s in f["unreachable_s"]) + " s; median "
              f"{statistics.median(f['unreachable_s']):.1f} s")
        print("restart to a working routed query: " +
              ", ".join(f"{s:.1f}" for s in f["query_back_s"]) + " s; median "
              f"{statistics.median(f['query_back_s']):.1f} s")
        return
    n = 1_000_000 if args.quick else 10_000_000
    with tempfile.TemporaryDirectory(prefix="sdbench-cluster-") as tmp:
        folder = Path(tmp)
        nats = NatsServers(folder, args.nats)
        nodes = []
        try:
            nats.wait_ready(args.nats)
            (folder / "a").mkdir()
            lo, hi = build_four(str(folder / "a" / "data"), n)
            port = free_udp_port()
            nodes.append(start_node(folder, "a", nats.urls, [("rig", port)], args.nats))
            nodes.append(start_node(folder, "b", nats.urls, (), args.nats))
            a, b = Client(nodes[0].address), Client(nodes[1].address)
            wait(lambda: {c.name: c.status for c in b.list_channels()}.get("rig") == "running")
            print(f"cluster of {args.nats} NATS server(s), nodes a and b", flush=True)
            live = latency(a, b, port, 10_000, 3 if args.quick else 10)
            print(f"live at 10 kHz, {live['sent']} records: through a p50 "
                  f"{live['a']['p50_ms']:.1f} ms p99 {live['a']['p99_ms']:.1f} ms; through b "
                  f"p50 {live['b']['p50_ms']:.1f} ms p99 {live['b']['p99_ms']:.1f} ms "
                  f"({live['b']['p99_ms'] / live['a']['p99_ms']:.2f}x); received "
                  f"{live['a']['received']} and {live['b']['received']}", flush=True)
            q = queries(a, b, lo, hi, n, 3 if args.quick else 5)
            print(f"Query {n} records x 4 doubles: direct {q['direct_s'] * 1e3:.0f} ms, "
                  f"routed through b {q['routed_s'] * 1e3:.0f} ms: {100 * q['ratio']:.0f}% "
                  "of direct", flush=True)
            ar = archive_restore(a, nats.urls, lo, hi, folder)
            print(f"archive {ar['bytes'] / 1e6:.1f} MB: {ar['archive_mb_s']:.0f} MB/s; fetch "
                  f"{ar['fetch_mb_s']:.0f} MB/s; restore into a store "
                  f"{ar['restore_into_store_mb_s']:.0f} MB/s ({ar['records']} records); "
                  f"this disk: write+fsync {ar['disk_write_mb_s']:.0f} MB/s, read "
                  f"{ar['disk_read_mb_s']:.0f} MB/s", flush=True)
            a.close()
            b.close()
            for node in nodes:
                node.stop()
            nodes.clear()
            cpu = ingest_cpu(folder, nats.urls, 50_000, 3 if args.quick else 6,
                             2 if args.quick else 4)
            print(f"ingest CPU at 50k datagrams/s: alone {cpu['alone_us']:.2f} us, with "
                  f"cluster: {cpu['cluster_us']:.2f} us a datagram ({cpu['ratio']:.3f}x); "
                  f"rounds {cpu['rounds']}", flush=True)
        finally:
            for node in nodes:
                node.stop()
            nats.stop()


if __name__ == "__main__":
    main()
