"""The ``speeddata`` commands of a cluster: ``cluster`` (the nodes a node hears),
``cluster forget NODE``, and its archives: archive, archives, restore.

``cluster`` and ``cluster forget`` ask a node (``--server HOST:PORT``, its gRPC address).
``archive`` asks a node (``--server HOST:PORT``, its gRPC address) to copy a tag's range of
every channel, wherever it is stored, into the cluster's object store. ``archives`` and
``restore`` talk to NATS itself (``--nats URL``), so they work whichever nodes are gone.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from ..timeutil import format_ns


def _print_archives(found: list[dict]) -> None:
    if not found:
        print("no archives")
    for m in found:
        t = m["tag"]
        size = sum(c["bytes"] for c in m["channels"])
        print(f"{t['name']}: {format_ns(t['start'])} .. {format_ns(t['end'])}, "
              f"{len(m['channels'])} channels, {size / 1e6:.2f} MB, archived "
              f"{format_ns(m['created'])} by node {m['node']}" +
              (f"  ({t['note']})" if t.get("note") else ""))
        for c in m["channels"]:
            print(f"  {c['channel']:<16} {c['bytes'] / 1e6:9.2f} MB  from node {c['node']}")
        if m.get("missing"):
            print(f"  PARTIAL: not archived, their node unreachable: {', '.join(m['missing'])}")
        if m.get("empty"):
            print(f"  no records in the range: {', '.join(m['empty'])}")


def cmd_cluster(args) -> int:
    from ..client import Client
    with Client(args.server, token=args.token) as c:
        info = c.cluster()
    if not info["clustered"]:
        print(f"{args.server} is a single host (no cluster: in its config)")
        return 0
    state = "connected" if info["connected"] else f"NOT connected: {info['problem']}"
    print(f"node {info['node']}, NATS {', '.join(info['nats'])}: {state}")
    for n in info["nodes"]:
        seen = "reachable" if n["reachable"] else \
            f"UNREACHABLE since {format_ns(n['heartbeat'])[:19]} UTC"
        print(f"  {n['name']:<12} {seen:<36} gRPC {n['grpc']:<22} "
              f"{len(n['channels'])} channels")
    return 0


def cmd_forget(args) -> int:
    from ..client import Client
    with Client(args.server, token=args.token) as c:
        released = c.forget_node(args.node, args.unreachable_for)
    print(f"forgot node {args.node}; released {', '.join(released) or 'no channels'}")
    return 0


def cmd_archive(args) -> int:
    from ..client import Client
    with Client(args.server, token=args.token) as c:
        manifest = c.archive(args.tag, partial=args.partial)
    _print_archives([manifest])
    return 0


def cmd_archives(args) -> int:
    if args.nats:
        from ..cluster import archives
        found = archives(_urls(args.nats))
    else:
        from ..client import Client
        with Client(args.server) as c:
            found = c.archives()
    _print_archives(found)
    return 0


def cmd_restore(args) -> int:
    from .. import store
    from ..cluster import fetch_archive, restore_into
    with tempfile.TemporaryDirectory(prefix=f"speeddata-{os.getpid()}-restore-") as folder:
        manifest = fetch_archive(_urls(args.nats), args.tag, folder)
        if args.hdf5:
            with tempfile.TemporaryDirectory(prefix=f"speeddata-{os.getpid()}-restore-store-") as tmp:
                with store.open(os.path.join(tmp, "store")) as st:
                    counts = restore_into(st, manifest, folder)
                    st.export_hdf5(args.hdf5, manifest["tag"]["start"], manifest["tag"]["end"],
                                   list(counts))
            where = args.hdf5
        else:
            with store.open(args.data) as st:
                counts = restore_into(st, manifest, folder)
            where = f"store {os.path.abspath(args.data)}"
    for name, n in counts.items():
        print(f"  {name:<16} {n} records")
    print(f"restored archive {args.tag} into {where}")
    return 0


def _urls(text: str) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()]


def add_commands(sub) -> None:
    """The commands of this module, on the ``speeddata`` parser's subparsers."""
    cl = sub.add_parser("cluster", help="the nodes of the cluster a node belongs to")
    cl.add_argument("--server", default="127.0.0.1:50051", metavar="HOST:PORT",
                    help="a node of the cluster (its gRPC address)")
    cl.add_argument("--token", help="the server's token, when it has one")
    cl.set_defaults(func=cmd_cluster)
    cl_sub = cl.add_subparsers(dest="cluster_command", metavar="{forget}")
    f = cl_sub.add_parser("forget", help="release the channel names of a node that has "
                                         "stopped, so other nodes can register them")
    f.add_argument("node")
    f.add_argument("--unreachable-for", default="0", metavar="DURATION",
                   help="refuse unless it has been unreachable this long (5m, 2h; "
                        "default 0: any unreachable node). A node that beats is refused "
                        "always")
    # given before or after "forget" alike (SUPPRESS: no default over the parent's value)
    f.add_argument("--server", default=argparse.SUPPRESS, metavar="HOST:PORT",
                   help="a node of the cluster that hears it (its gRPC address)")
    f.add_argument("--token", default=argparse.SUPPRESS,
                   help="the server's token, when it has one")
    f.set_defaults(func=cmd_forget)
    a = sub.add_parser("archive", help="copy a tag's range, as stored, into the cluster's "
                                       "replicated object store")
    a.add_argument("tag")
    a.add_argument("--server", default="127.0.0.1:50051", metavar="HOST:PORT",
                   help="a node of the cluster (its gRPC address)")
    a.add_argument("--token", help="the server's token, when it has one")
    a.add_argument("--partial", action="store_true",
                   help="archive what can be read when a channel's node is unreachable, "
                        "marked partial (otherwise an error naming those channels)")
    a.set_defaults(func=cmd_archive)

    ls = sub.add_parser("archives", help="the cluster's archives")
    src = ls.add_mutually_exclusive_group()
    src.add_argument("--nats", metavar="URL[,URL...]", help="ask NATS itself")
    src.add_argument("--server", default="127.0.0.1:50051", metavar="HOST:PORT",
                     help="ask a node (default)")
    ls.set_defaults(func=cmd_archives)

    r = sub.add_parser("restore", help="bring an archive back into a store, or to HDF5")
    r.add_argument("tag")
    r.add_argument("--nats", required=True, metavar="URL[,URL...]",
                   help="the cluster's NATS servers (any that still run)")
    out = r.add_mutually_exclusive_group()
    out.add_argument("--data", default="./data", help="the store to restore into "
                     "(default ./data; refused where it holds that range already)")
    out.add_argument("--hdf5", metavar="FILE", help="write the tag's range as HDF5 instead")
    r.set_defaults(func=cmd_restore)

