"""The cluster: every call SpeedData makes to its distributed engine, NATS JetStream, and
only with ``cluster:`` in the config. The node (`speeddata.cluster.node`: registry,
heartbeats, tags, routed reads, archives), its live relay (`speeddata.cluster.relay`) and the
buckets as read without joining (`speeddata.cluster.buckets`: ``speeddata archives`` and
``restore``). Another engine would replace this package alone."""

from .buckets import RemoteChannel, archives, fetch_archive, restore_into
from .node import Cluster

__all__ = ["Cluster", "RemoteChannel", "archives", "fetch_archive", "restore_into"]
