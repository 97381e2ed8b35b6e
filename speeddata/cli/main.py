"""The ``speeddata`` command: serve, demo, send, stats; and the data commands of
`speeddata.cli.data` (ls, export, tag, tags, untag, inspect)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time

from .. import config as config_mod
from .data import add_commands
from .. import send as send_mod
from ..errors import EmptyRange, SpeedDataError, on_surface
from ..timeutil import format_ns


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def default_config(data: str, port: int = 26000) -> config_mod.ServeConfig:
    """The embedded default: the prototype's two example channels on loopback."""
    return config_mod.parse({"data": data, "channels": [
        {"name": "example", "port": port, "schema": send_mod.builtin_schema("example"),
         "decimation": "minmax:10"},
        {"name": "temperature", "port": port + 1,
         "schema": send_mod.builtin_schema("temperature"), "time_unit": "ms"},
    ]})


def _print_status(sup, started: float) -> None:
    lines = [f"[{time.monotonic() - started:6.1f} s]"]
    for name in sup.channels:
        st = sup.stats(name)
        last = format_ns(st.last_time) if st.last_time is not None else "-"
        if st.status == "failed":
            lines.append(f"  {name:<12} FAILED: {st.failure}")
            continue
        lines.append(f"  {name:<12} {st.records_per_s:>7.0f}/s  datagrams {st.datagrams:>9}"
                     f"  stored {st.stored_records:>9}  rejected {sum(st.rejects.values())}"
                     f"  drops {st.kernel_drops}  {st.bytes / 1e6:7.2f} MB  newest {last}")
    print("\n".join(lines), flush=True)


def cmd_serve(args, cfg: config_mod.ServeConfig, senders=()) -> int:
    return asyncio.run(_serve(args, cfg, senders))


async def _serve(args, cfg: config_mod.ServeConfig, senders) -> int:
    from ..serving import Server
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cluster = None
    if args.cluster:
        cluster = config_mod.cluster({"nats": args.cluster, "node": args.node} if args.node
                                     else {"nats": args.cluster}, "--cluster ")
    server = Server(cfg, data=args.data, grpc=args.grpc, web=args.web, token=args.token,
                    insecure=args.insecure, cluster=cluster, flight=args.flight)
    where = await server.start()
    sup = server.supervisor
    assert sup is not None
    threads = []
    stopped = threading.Event()
    try:
        failed = await asyncio.to_thread(sup.wait_ready)
        print(f"SpeedData serving store {sup.data}\n  web    {where.web}\n"
              f"  gRPC   {where.grpc}" +
              (f"\n  flight {where.flight}" if where.flight else "") +
              (f"\n  cluster node {where.node}" if where.node else "") + "".join(
            f"\n  {name:<12} {udp}" + (" (FAILED, retrying)" if name in failed else "")
            for name, udp in where.channels.items()), flush=True)
        for name, reason in failed.items():
            print(f"  channel {name} cannot start: {reason}", flush=True)
        if getattr(args, "browser", False) and (os.environ.get("DISPLAY") or
                                                os.environ.get("WAYLAND_DISPLAY")):
            import webbrowser
            webbrowser.open(where.web)          # where a desktop browser exists
        for kind, port, rate in senders:
            t = threading.Thread(target=send_mod.send, args=("127.0.0.1", port, kind),
                                 kwargs={"rate": rate, "stop": stopped.is_set}, daemon=True)
            t.start()
            threads.append(t)
        started = time.monotonic()
        deadline = started + args.duration if getattr(args, "duration", None) else None
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), args.interval)
            except asyncio.TimeoutError:
                pass
            await asyncio.to_thread(_print_status, sup, started)
            if deadline and time.monotonic() >= deadline:
                break
    finally:
        stopped.set()
        for t in threads:
            t.join()
        await server.stop()
    print("stopped; every received record is flushed to the store", flush=True)
    return 0


def cmd_serve_config(args) -> int:
    cfg = config_mod.load(args.config) if args.config else default_config("./data")
    return cmd_serve(args, cfg)


def cmd_demo(args) -> int:
    return cmd_serve(args, default_config(args.data, args.port),
                     senders=[("example", args.port, args.rate),
                              ("temperature", args.port + 1, 1.0)])


def cmd_send(args) -> int:
    report = send_mod.send(args.host, args.port, args.kind, rate=args.rate, count=args.count,
                           duration=args.duration,
                           records_per_datagram=args.records_per_datagram,
                           stop=_stop_on_signals().is_set)
    print(report)
    return 0


def cmd_stats(args) -> int:
    from .. import store
    with store.open(args.data, readonly=True) as st:
        for name, s_ in st.stats().items():
            span = (f"{format_ns(s_.first_time)} .. {format_ns(s_.last_time)}"
                    if s_.first_time is not None and s_.last_time is not None else "empty")
            print(f"{name}: {s_.stored_records} records, {s_.bytes / 1e6:.2f} MB in "
                  f"{s_.segments} segments, {span}")
        for what, problem in st.problems.items():
            print(f"problem ({what}): {problem}")
    return 0


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--web", metavar="HOST:PORT",
                   help="where the web app and its REST API listen (default: the config's "
                        "web:, else 127.0.0.1:8080)")
    p.add_argument("--grpc", metavar="HOST:PORT",
                   help="where the gRPC service listens (default: the config's grpc:, "
                        "else 127.0.0.1:50051)")
    p.add_argument("--flight", metavar="HOST:PORT",
                   help="serve Arrow Flight here (default: the config's flight:, else off; "
                        "a port alone binds 127.0.0.1)")
    p.add_argument("--token", help="API calls that change something need "
                   "'authorization: Bearer TOKEN' (default: the config's token:, else none)")
    p.add_argument("--cluster", metavar="URL[,URL...]",
                   help="join a cluster through these NATS servers (overrides the "
                        "config's cluster:)")
    p.add_argument("--node", help="this node's name in the cluster (default: the config's, "
                   "else the host name)")
    p.add_argument("--insecure", action="store_true",
                   help="serve gRPC and the web beyond loopback without a token (refused "
                        "otherwise)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="speeddata", description="Ephemeral high-rate telemetry "
                                "capture: UDP/Avro in, time-indexed store, live views, HDF5.")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log lines (-vv: debug)")
    p.add_argument("-q", "--quiet", dest="quiet_logs", action="count", default=0,
                   help="fewer log lines (warnings only; -qq: errors only)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the channels of a YAML config until Ctrl-C")
    s.add_argument("--config", help="YAML file (see speeddata.config); without one, the "
                   "embedded default channels example (26000) and temperature (26001)")
    s.add_argument("--data", help="store directory (overrides the config's data:)")
    s.add_argument("--interval", type=float, default=5.0, help="status print interval, s")
    _server_options(s)
    s.set_defaults(func=cmd_serve_config)
    d = sub.add_parser("demo", help="run the embedded default with example senders")
    d.add_argument("--data", default="./data")
    d.add_argument("--port", type=int, default=26000,
                   help="UDP port of the example channel; temperature takes the next")
    d.add_argument("--rate", type=float, default=100.0, help="example records/s")
    d.add_argument("--duration", type=float, help="stop after this many seconds")
    d.add_argument("--interval", type=float, default=2.0)
    d.add_argument("--no-browser", dest="browser", action="store_false",
                   help="do not open the dashboard in a browser")
    _server_options(d)
    d.set_defaults(func=cmd_demo)
    x = sub.add_parser("send", help="send example or temperature records (load generator)")
    x.add_argument("kind", nargs="?", default="example", choices=sorted(send_mod.GENERATORS))
    x.add_argument("--host", default="127.0.0.1")
    x.add_argument("--port", type=int, default=26000)
    x.add_argument("--rate", type=float, default=10.0, help="datagrams/s; 0: as fast as possible")
    x.add_argument("--count", type=int, help="records to send")
    x.add_argument("--duration", type=float, help="seconds to send")
    x.add_argument("--records-per-datagram", type=int, default=1)
    x.set_defaults(func=cmd_send)
    t = sub.add_parser("stats", help="what a store holds")
    t.add_argument("--data", default="./data")
    t.set_defaults(func=cmd_stats)
    add_commands(sub)
    from .cluster import add_commands as add_cluster_commands
    add_cluster_commands(sub)
    from .bench import add_command as add_bench
    add_bench(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    level = logging.INFO - 10 * args.verbose + 10 * args.quiet_logs
    logging.basicConfig(level=max(logging.DEBUG, min(logging.CRITICAL, level)),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except SpeedDataError as e:
        # 1: nothing there (as grep says no match); 2: anything else that went wrong
        print(f"speeddata: error: {on_surface(str(e), 'cli')}", file=sys.stderr)
        return 1 if isinstance(e, EmptyRange) else 2


if __name__ == "__main__":
    sys.exit(main())
