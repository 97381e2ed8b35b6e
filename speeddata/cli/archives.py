"""The ``speeddata`` commands of a cluster's archives: archive, archives, restore.

``archive`` asks a node (``--server HOST:PORT``, its gRPC address) to copy a tag's range of
every channel, wherever it is stored, into the cluster's object store. ``archives`` and
``restore`` talk to NATS itself (``--nats URL``), so they work whichever nodes are gone.
"""

from __future__ import annotations

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

