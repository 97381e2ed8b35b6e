"""ChannelStats: what a channel has taken in and what it holds, under one set of names for
the store, the supervisor, gRPC and the web."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ChannelStats:
    """One channel's counters and holdings.

    Ingest counters come from the process that writes the channel (a worker under
    ``speeddata serve``, or this process for a library writer); what the channel holds
    comes from its segments. Times are int64 ns since the Unix epoch.
    """

    channel: str
    # ---- ingest: what arrived -------------------------------------------------------------
    datagrams: int = 0               # datagrams taken in (accepted or rejected)
    records: int = 0                 # records accepted
    rejects: dict[str, int] = field(default_factory=dict)   # rejected datagrams by reason
    clock_skew: int = 0              # accepted records an hour or more from receive time
    kernel_drops: int = 0            # datagrams the kernel dropped (receive buffer full)
    oversize: int = 0                # datagrams larger than a receive slot
    dropped_records: int = 0         # accepted, then lost to a disk error
    not_stored: dict[str, int] = field(default_factory=dict)  # dropped_records by reason:
                                                              # disk_full, read_only, disk_error
    blocks_written: int = 0
    bytes_written: int = 0
    datagrams_per_s: float = 0.0     # current rates (last second)
    records_per_s: float = 0.0
    error: str = ""                  # the current error (disk full...), "" when none
    bad_datagrams: dict[str, list] = field(default_factory=dict)  # first few per reason
    # ---- its worker, under speeddata serve ------------------------------------------------
    status: str = ""                 # running, starting or failed ("" outside serve)
    failure: str = ""                # why it cannot start
    restarts: int = 0
    # ---- what it holds --------------------------------------------------------------------
    stored_records: int = 0
    bytes: int = 0                   # on disk, segments and indexes
    segments: int = 0
    first_time: int | None = None    # device time of the records held
    last_time: int | None = None
    first_received: int | None = None   # their receive time (what retention goes by)
    last_received: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_counters(cls, channel: str, values: dict[str, Any]) -> "ChannelStats":
        """From a live ring's counters (``reject_<reason>`` slots) and a worker's status."""
        own = {k: values[k] for k in cls.__dataclass_fields__ if k in values
               and k not in ("channel", "rejects", "not_stored")}
        rejects = {k[len("reject_"):]: int(v) for k, v in values.items()
                   if k.startswith("reject_") and v}
        not_stored = {k[len("not_stored_"):]: int(v) for k, v in values.items()
                      if k.startswith("not_stored_") and v}
        return cls(channel=channel, rejects=rejects, not_stored=not_stored, **own)

    def holding(self, other: "ChannelStats") -> "ChannelStats":
        """These counters with what ``other`` (the store's view) says the channel holds."""
        for name in ("stored_records", "bytes", "segments", "first_time", "last_time",
                     "first_received", "last_received"):
            setattr(self, name, getattr(other, name))
        return self
