"""The cluster: every call SpeedData makes to its distributed engine, NATS JetStream, and
only with ``cluster:`` in the config. The node (`speeddata.cluster.node`: registry,
heartbeats, tags, routed reads, archives), its live relay (`speeddata.cluster.relay`) and the
buckets as read without joining (`speeddata.cluster.buckets`: ``speeddata archives`` and
``restore``). Another engine would replace this package alone.

A node is one ``speeddata serve`` with ``cluster:`` in its config. Its own store stays the
primary copy of its channels and the cluster never sits on the ingest path: the workers
store every datagram whether NATS answers or not. What the nodes share lives in JetStream:

- KV ``speeddata-channels``: channel name -> its entry (owner node, UDP port, schema as
  stored, the owner's gRPC address). A name is claimed with KV create (compare-and-set), so
  of two nodes registering one name at once exactly one wins.
- KV ``speeddata-nodes``: node -> its heartbeat (addresses, its channels and their status),
  every ``heartbeat`` seconds, written by compare-and-set so that one process holds a
  name (`speeddata.cluster.names`); a node silent for `SILENT_BEATS` is unreachable, and
  one unreachable for long can be forgotten (``speeddata cluster forget``), which releases
  its channel names.
- KV ``speeddata-tags``: cluster tags; retention on every node keeps what they cover, and
  pauses while they cannot be read (when in doubt, keep).
- Object store ``speeddata-archives``: tagged ranges as stored (Avro container files) and a
  manifest (partial ones list what is missing), with ``replicas`` copies.
- Subjects ``speeddata.live.<channel>.<form>``: live batches of a channel in the columnar
  wire form (`speeddata.wire`), one subject per *form* (signals and decimation: an
  envelope, or full rate). An owner publishes a form only while some node leases it by
  sending ``speeddata.want.<channel>`` each heartbeat, so nothing is published that nobody
  watches, and each form is decimated once at the owner however many nodes watch it.

Another node's stored data (queries, overviews, exports, archives) comes from its gRPC.
"""

from .buckets import RemoteChannel, archives, fetch_archive, restore_into
from .node import Cluster

__all__ = ["Cluster", "RemoteChannel", "archives", "fetch_archive", "restore_into"]
