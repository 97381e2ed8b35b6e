"""A KV bucket as JetStream pushes it: a watch (an ordered consumer the servers deliver each
change to) keeps every key's value, its revision and the time the server stored it, so that
a node knows the heartbeats and the registry without asking NATS for them each beat.

A watch can fall behind unseen (its consumer lost with a NATS server, until nats-py makes it
again), so it is trusted only as far as it shows what this node wrote itself: after each
heartbeat the node looks for that beat's revision in the nodes watch (`Watch.has`). A watch
that does not show it within a moment is begun again, and the bucket is read directly
meanwhile (`speeddata.cluster.buckets.kv_all`)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ..timeutil import to_ns

log = logging.getLogger("speeddata.cluster")


class Watch:
    """One KV bucket's keys as last pushed: key -> (JSON value, revision, the server's time
    of it in ns). Deleted keys and values that are not JSON objects are left out."""

    def __init__(self, bucket: str):
        self.bucket = bucket
        self.values: dict[str, tuple[dict, int, int]] = {}
        self.synced = False            # it holds what the bucket held when it began
        self._watcher: Any = None
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()

    async def start(self, kv: Any) -> None:
        """Begin (again) from the bucket's current contents."""
        await self.stop()
        self._watcher = await kv.watchall()
        self._task = asyncio.create_task(self._follow(self._watcher))

    async def stop(self) -> None:
        self.synced = False
        self.values = {}
        watcher, task, self._watcher, self._task = self._watcher, self._task, None, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if watcher is not None:
            try:
                await asyncio.wait_for(watcher.stop(), 2)
            except Exception:          # the connection went: nothing left to stop
                pass

    async def _follow(self, watcher: Any) -> None:
        async for entry in watcher:
            if entry is None:                       # the contents at the start, all seen
                self.synced = True
            elif entry.operation in ("DEL", "PURGE") or not entry.value:
                self.values.pop(entry.key, None)
            else:
                try:
                    value = json.loads(entry.value)
                except ValueError:
                    log.warning("cluster: %s: key %r holds no JSON; left out", self.bucket,
                                entry.key)
                    continue
                if isinstance(value, dict):
                    at = to_ns(entry.created) if entry.created is not None else 0
                    self.values[entry.key] = (value, int(entry.revision or 0), at)
            self._changed.set()
            self._changed.clear()

    async def has(self, key: str, revision: int, wait: float) -> bool:
        """Whether the watch shows ``key`` at ``revision`` or later, waiting up to ``wait`` s
        for it: a watch that shows our own writes is not behind."""
        deadline = time.monotonic() + wait
        while True:
            held = self.values.get(key)
            if self.synced and held is not None and held[1] >= revision:
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self._task is None or self._task.done():
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                return False

    def contents(self) -> dict[str, dict]:
        return {key: value for key, (value, _, _) in self.values.items()}


async def start_watches(watches: dict[str, Watch], kv: dict[str, Any]) -> None:
    """Begin each bucket's watch again; one that cannot begin now is read each beat."""
    for bucket, watch in watches.items():
        try:
            await watch.start(kv[bucket])
        except Exception as e:
            log.debug("cluster: cannot watch %s (read each beat meanwhile): %s", bucket, e)
            await watch.stop()
