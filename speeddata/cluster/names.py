"""A node's name, held by one process: its heartbeat in the nodes bucket is written by
compare-and-set on its revision. The first beat claims the name; a name another process's
heartbeat holds is refused while that process beats (ConfigError naming it), and taken
over once it has been silent for SILENT_BEATS beats, or at once when its gRPC address is
ours (then it is this node, killed and started again). Silence is judged by the NATS
server's clock, never by comparing two hosts' clocks."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ..errors import ConfigError
from ..timeutil import to_ns
from .buckets import NODES
from .relay import SILENT_BEATS

log = logging.getLogger("speeddata.cluster")
CLOCK_PROBE = "=clock="    # keys of the nodes bucket no node can be named (see `age`)


async def put_beat(kv: Any, js: Any, node: str, grpc: str, heartbeat: float,
                   revision: int | None, data: bytes) -> int:
    """Write ``node``'s heartbeat ``data`` over ``revision`` (None: claim the name); the
    new revision."""
    from nats.js.errors import KeyWrongLastSequenceError
    if revision is not None:
        try:
            return await kv.update(node, data, last=revision)
        except KeyWrongLastSequenceError:
            held = json.loads((await kv.get(node)).value or b"{}")
            raise ConfigError(
                f"node name {node!r} was taken by another process (gRPC "
                f"{held.get('grpc', '?')}) while this one was silent; this node no longer "
                "speaks for it", hint="stop one of them, or give each its own "
                                      "cluster.node") from None
    try:
        return await kv.create(node, data)
    except KeyWrongLastSequenceError:
        pass
    entry = await kv.get(node)
    held = json.loads(entry.value or b"{}")
    silent = SILENT_BEATS * heartbeat + 1.0
    if held.get("grpc") != grpc:
        # alive if its entry changes within the beats a live node would send, counted from
        # when the server stored it
        deadline = time.monotonic() + max(0.0, silent - await age(kv, js, node))
        while time.monotonic() < deadline:
            await asyncio.sleep(min(heartbeat / 2, 0.5))
            now = await kv.get(node)
            if now.revision != entry.revision:
                beat = json.loads(now.value or b"{}")
                raise ConfigError(
                    f"node name {node!r} is held by a running node (gRPC "
                    f"{beat.get('grpc', '?')}, web {beat.get('web', '') or '-'})",
                    hint="give this node another cluster.node (or --node), or stop that "
                         "one first")
        log.warning("cluster: node name %r was held by %s, silent for %d beats: taken over",
                    node, held.get("grpc", "?"), SILENT_BEATS)
    return await kv.update(node, data, last=entry.revision)


async def age(kv: Any, js: Any, node: str) -> float:
    """Seconds since the server stored ``node``'s heartbeat, by the server's clock: it
    stores a probe (a key no node can be named) and compares the two times."""
    stream, probe = f"KV_{NODES}", f"{CLOCK_PROBE}{node}"
    await kv.put(probe, b"")
    try:
        now = await js.get_last_msg(stream, f"$KV.{NODES}.{probe}")
        then = await js.get_last_msg(stream, f"$KV.{NODES}.{node}")
    finally:
        await kv.purge(probe)
    if now.time is None or then.time is None:
        return 0.0
    return max(0.0, (to_ns(now.time) - to_ns(then.time)) / 1e9)
