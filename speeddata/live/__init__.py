"""Live data: each channel's latest records in a shared-memory ring (`speeddata.live.ring`),
written by its ingest worker, and the hub (`speeddata.live.hub`) that reads every ring once
and fans it out to the subscriptions of gRPC, the WebSocket and the cluster's relays."""

from .hub import Feeds, Hub, Subscription, Update
from .ring import COUNTERS, H_WRITE_ENTRY, Ring, Subscriber, create_ring

__all__ = ["COUNTERS", "H_WRITE_ENTRY", "Feeds", "Hub", "Ring", "Subscriber", "Subscription",
           "Update", "create_ring"]
