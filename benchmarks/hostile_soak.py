"""The serving layer under a hostile load, against a real ``speeddata serve`` on loopback:
200 idle gRPC subscribers and 200 idle WebSockets (on a quiet channel, so they stay open),
one fast subscriber at full rate, and 50,000 datagrams/s into another channel. Then
10,000 subscribe / close cycles. Then 1,000 refused cross-site WebSockets a minute while the
dashboard's own charts stay live in Chromium.

Reported: the serve process's RSS and fd count over time (flat is the target), the fast
subscriber's latency p50 / p99 from a record's send time (target p99 < 20 ms), and records
lost: sent against stored, and against what the fast subscriber saw plus what it was told
it missed (target 0); for the refused WebSockets, fds and RSS again, every refusal a 403,
and the charts' frames (p99 of the time between frames) and live frames still coming.

Run: .venv/bin/python benchmarks/hostile_soak.py [--minutes 5] [--cycles 10000]
     [--refused-minutes 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
from speeddata.send import builtin_schema, send  # noqa: E402
from speeddata.v1 import speeddata_pb2 as pb  # noqa: E402
from speeddata.v1 import speeddata_pb2_grpc as pb_grpc  # noqa: E402

from helpers import ServeProcess, free_udp_port, live_websocket  # noqa: E402


def fds_and_rss(pid: int) -> tuple[int, float]:
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return len(os.listdir(f"/proc/{pid}/fd")), rss / 1024


def websocket(url: str, channel: str):
    return live_websocket(url, f"channel={channel}")[0]


def refused_websockets(server, port: int, minutes: float, per_minute: int = 1000) -> dict:
    """Cross-site WebSockets refused at ``per_minute`` while a Chromium dashboard follows
    the channel: fds and RSS, refusals that were not 403, and the chart's frames."""
    import socket

    from playwright.sync_api import sync_playwright
    host, web_port = server.url.split("//")[1].rstrip("/").split(":")
    pid = server.proc.pid
    stop = threading.Event()
    counts = {"refused": 0, "other": 0}

    def attack() -> None:
        while not stop.is_set():
            with socket.create_connection((host, int(web_port)), timeout=10) as s:
                s.sendall((f"GET /ws/live?channel=example HTTP/1.1\r\nHost: {host}:{web_port}\r\n"
                           "Origin: http://evil.example\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
                head = s.recv(64)
            counts["refused" if head.startswith(b"HTTP/1.1 403") else "other"] += 1
            stop.wait(60 / per_minute)

    feeder = subprocess.Popen([sys.executable, "-m", "speeddata.cli", "send", "--port",
                               str(port), "--rate", "1000", "--duration", str(minutes * 60 + 30)],
                              stdout=subprocess.DEVNULL)
    samples = []
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = b.new_page(viewport={"width": 1300, "height": 900})
            page.goto(server.url)
            page.wait_for_function("SpeedData.charts.length > 0 && SpeedData.charts[0].frames > 3",
                                   timeout=30_000)
            page.evaluate("SpeedData.charts[0].frameTimes = []")
            frames_before = page.evaluate("SpeedData.charts[0].frames")
            attacker = threading.Thread(target=attack, daemon=True)
            attacker.start()
            t0 = time.monotonic()
            while time.monotonic() - t0 < minutes * 60:
                samples.append((time.monotonic() - t0, *fds_and_rss(pid)))
                time.sleep(min(10.0, minutes * 6))
            stop.set()
            attacker.join(10)
            samples.append((time.monotonic() - t0, *fds_and_rss(pid)))
            stamps = page.evaluate("SpeedData.charts[0].frameTimes")
            frames = page.evaluate("SpeedData.charts[0].frames") - frames_before
            b.close()
    finally:
        feeder.terminate()
        feeder.wait()
    dt = np.diff(stamps)
    return {"samples": samples, **counts, "live_frames": frames,
            "frame_p50_ms": float(np.median(dt)), "frame_p99_ms": float(np.percentile(dt, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=50_000, help="datagrams/s")
    ap.add_argument("--idle", type=int, default=200, help="idle subscribers of each kind")
    ap.add_argument("--cycles", type=int, default=10_000, help="subscribe / close cycles")
    ap.add_argument("--refused-minutes", type=float, default=2.0,
                    help="minutes of refused cross-site WebSockets (0: skip)")
    args = ap.parse_args()
    port = free_udp_port(count=2)
    quiet = port + 1
    with tempfile.TemporaryDirectory(prefix="sdsoak-") as tmp:
        server = ServeProcess(Path(tmp) / "data", config={
            "channels": [{"name": "example", "port": port, "schema": builtin_schema("example")},
                         {"name": "quiet", "port": quiet, "schema": builtin_schema("example")}],
            "limits": {"subscriptions": 4 * args.idle + 100,
                       "subscriptions_per_client": 4 * args.idle + 100}})
        pid = server.proc.pid
        channel = grpc.insecure_channel(server.address)
        stub = pb_grpc.SpeedDataStub(channel)
        idle_calls = [stub.Subscribe(pb.SubscribeRequest(channels=[
            pb.ChannelSubscription(channel="quiet")])) for _ in range(args.idle)]
        idle_ws = [websocket(server.url, "quiet") for _ in range(args.idle)]
        client = speeddata.Client(server.address)
        lat: list[np.ndarray] = []
        seen = {"records": 0, "missed": 0}
        stop = threading.Event()

        def follow() -> None:
            with client.subscribe("example", ["counter"]) as live:
                for batch in live:
                    lat.append(time.time_ns() - batch.time)
                    seen["records"] += len(batch)
                    seen["missed"] = sum(live.missed.values())
                    if stop.is_set():
                        return
        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        time.sleep(1.0)
        seconds = args.minutes * 60
        sender = subprocess.Popen([sys.executable, "-m", "speeddata.cli", "send", "--port",
                                   str(port), "--rate", str(args.rate), "--duration",
                                   str(seconds)], stdout=subprocess.DEVNULL)
        samples = []
        t0 = time.monotonic()
        while sender.poll() is None:
            fds, rss = fds_and_rss(pid)
            samples.append((time.monotonic() - t0, fds, rss))
            time.sleep(min(10.0, seconds / 10))
        time.sleep(2.0)
        stop.set()
        send(port=port, rate=100, count=5, first=10**9)    # wakes the follower to end
        follower.join(10)
        time.sleep(1.0)
        stats = client.stats(["example", "quiet"])
        fds, rss = fds_and_rss(pid)
        samples.append((time.monotonic() - t0, fds, rss))
        for call in idle_calls:
            call.cancel()
        for s in idle_ws:
            s.close()
        # subscribe / close cycles, each a new connection that takes one batch, while a
        # sender feeds the channel slowly
        trickle = subprocess.Popen([sys.executable, "-m", "speeddata.cli", "send", "--port",
                                    str(port), "--rate", "2000", "--duration", "100000"],
                                   stdout=subprocess.DEVNULL)
        time.sleep(3.0)                  # the idle ones closed
        cycles_before = fds_and_rss(pid)
        t = time.perf_counter()
        for k in range(args.cycles):
            if k % 2:
                with websocket(server.url, "example") as s:
                    s.recv(2)            # the first frame comes
            else:
                with speeddata.Client(server.address) as c, c.subscribe("example") as sub:
                    next(iter(sub))
        cycle_s = time.perf_counter() - t
        trickle.terminate()
        trickle.wait()
        time.sleep(2.0)
        cycles_after = fds_and_rss(pid)
        refused = refused_websockets(server, port, args.refused_minutes) \
            if args.refused_minutes else None
        client.close()
        channel.close()
        server.stop()

    ms = np.concatenate(lat) / 1e6 if lat else np.array([np.nan])
    ex = stats["example"]
    sent = ex["records"] - 5              # the worker's count, less the 5 that woke it
    print(f"\nhostile soak: {args.idle} idle gRPC + {args.idle} idle WebSockets, 1 fast "
          f"subscriber, {args.rate:,.0f} datagrams/s for {args.minutes:g} min\n")
    print("| t (s) | fds | RSS (MiB) |\n|---:|---:|---:|")
    for t_s, f, r in samples:
        print(f"| {t_s:.0f} | {f} | {r:.1f} |")
    print(f"\nfast subscriber: p50 {np.percentile(ms, 50):.1f} ms, p99 "
          f"{np.percentile(ms, 99):.1f} ms over {len(ms):,} records")
    print(f"records: accepted {sent:,}, stored {ex['stored_records'] - 5:,}, kernel drops "
          f"{ex['kernel_drops']:,}, not stored {ex['dropped_records']:,}; the subscriber saw "
          f"{seen['records'] - 5:,} and was told of {seen['missed']:,} missed")
    print(f"{args.cycles:,} subscribe / close cycles in {cycle_s:.1f} s: fds "
          f"{cycles_before[0]} -> {cycles_after[0]}, RSS {cycles_before[1]:.1f} -> "
          f"{cycles_after[1]:.1f} MiB")
    if refused:
        print(f"\n{refused['refused'] + refused['other']:,} cross-site WebSockets in "
              f"{args.refused_minutes:g} min: {refused['refused']:,} refused with 403, "
              f"{refused['other']} answered otherwise; the dashboard's chart got "
              f"{refused['live_frames']:,} live frames meanwhile, frames p50 "
              f"{refused['frame_p50_ms']:.1f} ms, p99 {refused['frame_p99_ms']:.1f} ms")
        print("\n| t (s) | fds | RSS (MiB) |\n|---:|---:|---:|")
        for t_s, f, r in refused["samples"]:
            print(f"| {t_s:.0f} | {f} | {r:.1f} |")


if __name__ == "__main__":
    main()
