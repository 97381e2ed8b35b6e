"""A node's name, held by one process: its heartbeat in the nodes bucket is written by
compare-and-set on its revision. The first beat claims the name; a name another process's
heartbeat holds is refused while that process beats (ConfigError naming it), and taken
over once it has been silent for SILENT_BEATS beats, or at once when its gRPC address is
ours (then it is this node, killed and started again). Silence is judged by the NATS
server's clock, never by comparing two hosts' clocks.

A node unreachable for long can be forgotten (`forget`, ``speeddata cluster forget``): its
heartbeat is overwritten by a marker saying by whom and when, and its channel entries are
deleted, so their names can be registered on another node. Should it come back, it reads the
marker, says so, and offers only the names no other node took meanwhile."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ..errors import ConfigError, NodeAlive, NodeNotFound, RequestError
from ..timeutil import format_ns, to_ns
from .buckets import CHANNELS, NODES, kv_entries
from .relay import SILENT_BEATS

log = logging.getLogger("speeddata.cluster")
CLOCK_PROBE = "=clock="    # keys of the nodes bucket no node can be named (see `age`)


async def put_beat(kv: Any, js: Any, node: str, grpc: str, heartbeat: float,
                   revision: int | None, data: bytes) -> int:
    """Write ``node``'s heartbeat ``data`` over ``revision`` (None: claim the name); the
    new revision."""
    if revision is not None:
        try:
            return await kv.update(node, data, last=revision)
        except KeyWrongLastSequenceError:
            entry = await kv.get(node)
            held = json.loads(entry.value or b"{}")
            if "forgotten" in held:
                return await _back(kv, node, data, entry.revision, held)
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
    if "forgotten" in held:
        return await _back(kv, node, data, entry.revision, held)
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


async def _back(kv: Any, node: str, data: bytes, revision: int, marker: dict) -> int:
    """Our name again, after the cluster forgot this node (the marker says by whom)."""
    f = marker["forgotten"]
    log.error("cluster: this node (%s) was forgotten by the cluster at %s UTC (through node "
              "%s), its channels released (%s); it joins again and offers those no other "
              "node registered meanwhile", node, format_ns(int(f.get("at", 0)))[:19],
              f.get("by", "?"), ", ".join(f.get("released", [])) or "none")
    return await kv.update(node, data, last=revision)


async def forget(nodes: Any, channels: Any, js: Any, node: str, *, by: str,
                 heartbeat: float, unreachable_for: float) -> list[str]:
    """Forget ``node``: release every channel it owns, once it has been unreachable for
    ``unreachable_for`` seconds (NodeAlive while it beats or has not been away that long,
    NodeNotFound for a name no node holds); the channels released."""
    if node == by:
        raise RequestError(f"node {node!r} is the one asked: it is alive",
                           hint="ask another node of the cluster to forget it")
    try:
        entry = await nodes.get(node)
    except KeyNotFoundError:
        entry = None
    held = json.loads(entry.value or b"{}") if entry is not None else {}
    if entry is None or "forgotten" in held or node.startswith(CLOCK_PROBE):
        raise NodeNotFound(f"no node {node!r} in the cluster" +
                           (" (forgotten already)" if "forgotten" in held else ""))
    silent = await age(nodes, js, node)
    gone_after = SILENT_BEATS * heartbeat + 2.0      # as `Cluster._alive` judges
    if silent < gone_after:
        raise NodeAlive(f"node {node!r} is alive: its last heartbeat was {silent:.1f} s ago",
                        hint="only a node that has stopped can be forgotten")
    if silent - gone_after < unreachable_for:
        raise NodeAlive(f"node {node!r} has been unreachable for {silent - gone_after:.0f} s, "
                        f"less than the {unreachable_for:g} s asked",
                        hint="wait, or ask for a shorter time")
    owned = {name: e.revision for name, e in (await kv_entries(js, channels, CHANNELS)).items()
             if json.loads(e.value).get("node") == node}
    released = sorted(owned)
    marker = {"node": node, "forgotten": {"by": by, "at": time.time_ns(),
                                          "released": released}}
    try:   # over the beat we judged: a node that beat meanwhile is alive after all
        await nodes.update(node, json.dumps(marker).encode(), last=entry.revision)
    except KeyWrongLastSequenceError:
        raise NodeAlive(f"node {node!r} sent a heartbeat just now",
                        hint="only a node that has stopped can be forgotten") from None
    for name, revision in owned.items():
        try:
            await channels.delete(name, last=revision)
        except KeyWrongLastSequenceError:
            released.remove(name)            # written meanwhile: no longer that node's
    log.warning("cluster: node %s forgotten (unreachable %.0f s); released %s", node,
                silent, ", ".join(released) or "no channels")
    return released

