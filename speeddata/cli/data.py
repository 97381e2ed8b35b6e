"""The ``speeddata`` commands that look at data: ls, export, tag, tags, untag, inspect.

Each reads the store directly (``--data DIR``), or asks a running server (``--server
HOST:PORT``, its gRPC address) where that makes sense. Times are ISO 8601, ``now-5m`` or
int ns; durations ``30s``, ``5m``, ``PT30S``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

from ..errors import ChannelNotFound, SpeedDataError, TimeRangeError, listing
from ..timeutil import duration_ns, end_of, format_ns, to_ns


def _span(held: tuple[int, int] | None) -> str:
    return f"{format_ns(held[0])} .. {format_ns(held[1])}" if held else "empty"


def _range(args) -> tuple[int, int]:
    start = to_ns(args.start, what="--start")
    if args.end is not None:
        end = to_ns(args.end, what="--end")
    elif args.duration is not None:
        end = end_of(start, duration_ns(args.duration, what="--duration"), what="--duration")
    else:
        raise TimeRangeError("give --duration or --end with --start")
    if end <= start:
        raise TimeRangeError(f"--end {format_ns(end)} is not after --start {format_ns(start)}")
    return start, end


def _names(text: str | None) -> list[str] | None:
    return [n for n in text.split(",") if n] if text else None


@contextlib.contextmanager
def _client(address: str) -> Iterator[Any]:
    from ..client import Client
    c = Client(address)
    try:
        yield c
    finally:
        c.close()


def cmd_ls(args) -> int:
    """Channels: status and rates (from a server), records, bytes and time held; tags."""
    if args.server:
        with _client(args.server) as c:
            stats = c.stats()
            for info in c.list_channels():
                s = stats.get(info.name, {})
                held = (s["first_time"], s["last_time"]) if "first_time" in s else None
                print(f"{info.name:<16} {info.status:<8} udp {info.port or '-':<6} "
                      f"{s.get('records_per_s', 0):>9.0f}/s {s.get('stored_records', 0):>11} "
                      f"records {s.get('bytes', 0) / 1e6:>9.2f} MB  {_span(held)}")
            tags = c.tags()
    else:
        from .. import store
        with store.open(args.data, readonly=True, create=False) as st:
            for name, s in st.stats().items():
                held = (s.first_time, s.last_time) \
                    if s.first_time is not None and s.last_time is not None else None
                print(f"{name:<16} {s.stored_records:>11} records {s.bytes / 1e6:>9.2f} MB "
                      f"in {s.segments:>4} segments  {_span(held)}")
            tags = _tag_dicts(st)
            for what, problem in st.problems.items():
                print(f"problem ({what}): {problem}")
    _print_tags(tags, "tag ")
    return 0


def _tag_dicts(st) -> list[dict]:
    """A store's tags as the client gives them."""
    return [{"name": t.name, "start": t.start, "end": t.end, "channels": t.channels,
             "note": t.note} for t in st.tags()]


def _print_tags(tags: list[dict], prefix: str = "") -> None:
    for t in tags:
        print(f"{prefix}{t['name']}: {_span((t['start'], t['end']))} "
              f"{','.join(t['channels'] or []) or 'all channels'}"
              + (f"  ({t['note']})" if t["note"] else ""))


def cmd_export(args) -> int:
    """A range or a tag as HDF5, with a progress bar."""
    from tqdm import tqdm
    if args.tag:
        start, end = 0, 0
    else:
        if args.start is None:
            raise TimeRangeError("give --start with --duration or --end, or --tag")
        start, end = _range(args)
    channels, signals = _names(args.channels), _names(args.signals)
    bar = None

    def progress(fraction: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=1.0, bar_format="{l_bar}{bar}| {elapsed}",
                       desc=os.path.basename(args.out), disable=args.quiet)
        bar.update(max(0.0, min(1.0, fraction)) - bar.n)

    try:
        if args.server:
            with _client(args.server) as c:
                c.export_hdf5(args.out, start or None, end or None, channels, signals,
                              tag=args.tag or "", allow_empty=args.allow_empty,
                              progress=progress)
        else:
            _export_local(args, start, end, channels, signals, progress)
        progress(1.0)
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")
    return 0


def _export_local(args, start: int, end: int, channels, signals, progress) -> None:
    from .. import store
    with store.open(args.data, readonly=True, create=False) as st:
        tag = st.get_tag(args.tag) if args.tag else None
        names = channels or (list(tag.channels) if tag and tag.channels else st.channels)
        for n in names:
            if n not in st:
                raise ChannelNotFound(f"no channel {n!r} in {args.data}",
                                      hint=f"channels are: {listing(st.channels)}")
        lo, hi = (tag.start, tag.end) if tag else (start, end)
        total = max(1, sum(st[n].count(lo, hi, estimate=True) for n in names))
        done = [0]

        def step(_channel: str, n: int) -> None:
            done[0] += n
            progress(done[0] / total)

        st.export_hdf5(args.out, lo, hi, names, signals, tag=tag,
                       allow_empty=args.allow_empty, progress=step)


def cmd_tag(args) -> int:
    start, end = _range(args)
    channels = _names(args.channels)
    if args.server:
        with _client(args.server) as c:
            c.tag(args.name, start, end, channels, args.note, replace=args.replace)
    else:
        from .. import store
        with store.open(args.data, create=False) as st:
            st.tag(args.name, start, end, channels, args.note, replace=args.replace)
    print(f"tagged {args.name}: {_span((start, end))}")
    return 0


def cmd_tags(args) -> int:
    if args.server:
        with _client(args.server) as c:
            tags = c.tags()
    else:
        from .. import store
        with store.open(args.data, readonly=True, create=False) as st:
            tags = _tag_dicts(st)
    _print_tags(tags)
    return 0


def cmd_untag(args) -> int:
    if args.server:
        with _client(args.server) as c:
            c.untag(args.name)
    else:
        from .. import store
        with store.open(args.data, create=False) as st:
            st.untag(args.name)
    print(f"removed tag {args.name}; its data is subject to retention again")
    return 0


def cmd_inspect(args) -> int:
    """A segment (.avro), an index (.idx) or an HDF5 file: schema, blocks, time range."""
    path = args.file
    if not os.path.isfile(path):
        raise SpeedDataError(f"no file {path!r}")
    if path.endswith((".h5", ".hdf5")):
        from ..hdf5 import read_hdf5
        ds = read_hdf5(path)
        print(f"{path}: HDF5, {len(ds.channel)} channel(s)")
        for name, cols in ds.channel.items():
            held = (int(cols.time.min()), int(cols.time.max())) if len(cols) else None
            print(f"  {name}: {len(cols)} records, signals {', '.join(cols.signals)}; "
                  f"{_span(held)}")
        return 0
    from ..store import describe
    report = describe(path)
    if report.kind == "index":
        print(f"{path}: index of {report.blocks} blocks, {report.records} records")
        if report.blocks:
            print(f"  record time {_span(report.record_span)}")
            print(f"  receive time {_span(report.receive_span)}")
        return 0
    print(f"{path}: Avro container, codec {report.codec}, {report.blocks} blocks, "
          f"{report.records} records, {report.size} bytes")
    if report.record_span:
        print(f"  record time {_span(report.record_span)}")
    for offset, reason in report.damage:
        print(f"  damaged from byte {offset}: {reason}")
    print("  schema: " + json.dumps(report.schema))
    return 0


def add_commands(sub) -> None:
    """The commands of this module, on the ``speeddata`` parser's subparsers."""
    def where(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", default="./data", help="the store directory (default ./data)")
        p.add_argument("--server", metavar="HOST:PORT",
                       help="ask a running server (its gRPC address) instead")

    def times(p: argparse.ArgumentParser) -> None:
        p.add_argument("--start", help="ISO 8601, now-5m, or int ns")
        p.add_argument("--end", help="ISO 8601, now, or int ns")
        p.add_argument("--duration", help="30s, 5m, 1h, PT30S...")

    ls = sub.add_parser("ls", help="channels, rates, records, bytes and time held; tags")
    where(ls)
    ls.set_defaults(func=cmd_ls)

    ex = sub.add_parser("export", help="a time range or a tag as an HDF5 file, with progress",
                        description="Export a range (--start with --duration or --end) or a "
                                    "tag (--tag) of some channels and signals as HDF5.")
    ex.add_argument("out", help="the HDF5 file to write")
    times(ex)
    ex.add_argument("--tag", help="export this tag's range and channels")
    ex.add_argument("--channels", help="a,b (default: all, or the tag's)")
    ex.add_argument("--signals", help="sine_wave,example.ramp (default: all)")
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.add_argument("--allow-empty", action="store_true",
                    help="write the file even when the range holds no record (otherwise "
                         "an error that says what the channels hold, exit 1)")
    where(ex)
    ex.set_defaults(func=cmd_export)

    tg = sub.add_parser("tag", help="keep a time range through retention, under a name")
    tg.add_argument("name")
    times(tg)
    tg.add_argument("--channels", help="a,b (default: all)")
    tg.add_argument("--note", default="")
    tg.add_argument("--replace", action="store_true", help="move a tag of that name")
    where(tg)
    tg.set_defaults(func=cmd_tag)

    tl = sub.add_parser("tags", help="list the tags")
    where(tl)
    tl.set_defaults(func=cmd_tags)

    ut = sub.add_parser("untag", help="remove a tag (its data is then subject to retention)")
    ut.add_argument("name")
    where(ut)
    ut.set_defaults(func=cmd_untag)

    ins = sub.add_parser("inspect", help="a segment (.avro), index (.idx) or HDF5 file: "
                                         "schema, blocks, time range")
    ins.add_argument("file")
    ins.set_defaults(func=cmd_inspect)
