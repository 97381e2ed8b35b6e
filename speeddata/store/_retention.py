"""Retention as one pure function: which segments go, given what the store holds.

Age is judged by receive time, never by a device's clock: a record stamped 1970 or ten years
ahead is kept like its neighbours and goes when they go. Segments that overlap a tag stay;
the segment a writer may be filling stays. The oldest received go first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Held:
    """One segment as retention sees it."""
    channel: str
    key: Any             # what the caller deletes (a path, a view)
    seq: int             # write order within the channel
    received: int        # receive time of its newest record, ns
    tmin: int            # device-time range, for tags
    tmax: int
    bytes: int
    newest: bool         # its channel's last segment: a writer may be filling it


@dataclass(frozen=True)
class Limits:
    max_bytes: int | None = None
    max_age: int | None = None      # ns


def plan(held: Sequence[Held], channel_limits: dict[str, Limits], store_limits: Limits,
         tags: Sequence, now: int) -> list[Held]:
    """The segments to delete, oldest received first.

    Each channel's own limits apply to it; the store's ``max_bytes`` then applies to all
    channels together (a channel that sets its own ``max_bytes`` is held to that alone).
    ``tags`` are objects with ``overlaps(channel, tmin, tmax)``.
    """
    gone: list[Held] = []
    pool: list[Held] = []
    store_total = 0
    by_channel: dict[str, list[Held]] = {}
    for h in held:
        by_channel.setdefault(h.channel, []).append(h)
    for name, segs in by_channel.items():
        segs = sorted(segs, key=lambda h: h.seq)
        limits = channel_limits.get(name, Limits())
        total = sum(h.bytes for h in segs)
        for h in sorted(segs, key=_age_order):
            if h.newest or any(t.overlaps(name, h.tmin, h.tmax) for t in tags):
                continue
            expired = limits.max_age is not None and h.received < now - limits.max_age
            over = limits.max_bytes is not None and total > limits.max_bytes
            if expired or over:
                gone.append(h)
                total -= h.bytes
            elif limits.max_bytes is None:
                pool.append(h)
        store_total += total
    quota = store_limits.max_bytes
    if quota is not None and store_total > quota:
        for h in sorted(pool, key=_age_order):
            if store_total <= quota:
                break
            gone.append(h)
            store_total -= h.bytes
    return gone


def _age_order(h: Held) -> tuple[int, int]:
    return (h.received, h.seq)
