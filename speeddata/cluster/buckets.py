"""The cluster's JetStream buckets, read and written without joining it: their names, a KV
bucket's contents, the heartbeats, the tags, and the archives (list, fetch, and restore into
a store). ``speeddata archives`` and ``restore`` use these straight from NATS; a node
(`speeddata.cluster`) uses them too."""

from __future__ import annotations

import asyncio
import time
import base64
import json
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import (BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError,
                             NotFoundError, ServiceUnavailableError)

from ..schema import ChannelSchema
from ..errors import (ClusterUnavailable, ConfigError, StoreError, TagExists, TagNotFound,
                      listing)
from ..store import Tag
from ..timeutil import to_ns

log = logging.getLogger("speeddata.cluster")

CHANNELS = "speeddata-channels"
NODES = "speeddata-nodes"
TAGS = "speeddata-tags"
ARCHIVES = "speeddata-archives"
CALL_TIMEOUT = 5.0        # s for one call to NATS from a request
# An archive's object is sent in chunks of this size, each one publish acknowledged by
# JetStream before the next: nats-py's 128 KiB default makes four times the round trips
# (`benchmarks/cluster_bench.py --archive` measures both)
ARCHIVE_CHUNK = 512 << 10


@dataclass
class RemoteChannel:
    """A channel another node of the cluster receives and stores."""
    name: str
    node: str
    port: int
    bind: str
    grpc: str                 # where its stored data is read
    status: str               # the owner's word for it, or "unreachable"
    since: int                # unreachable: the owner's last heartbeat (ns); else 0
    schema: ChannelSchema
    created: int
    decimation: str = "none"
    retention: dict = field(default_factory=dict)


def fitting_replicas(nc: Any, wanted: int | None) -> int:
    """The copies of the buckets: ``replicas:`` as configured if the JetStream cluster
    met has that many servers (ConfigError otherwise), else min(3, its servers)."""
    # the server's INFO names its cluster and every member's client URL; nats-py
    # keeps it on the connection only
    info = getattr(nc, "_server_info", None) or {}
    servers = max(1, len(set(info.get("connect_urls") or ()))) if info.get("cluster") \
        else 1
    if wanted is None:
        return min(3, servers)
    if wanted > servers:
        where = info.get("cluster") or "a single server, not clustered"
        raise ConfigError(f"cluster.replicas: {wanted} copies, but the JetStream cluster "
                          f"at {nc.connected_url.netloc if nc.connected_url else 'NATS'} "
                          f"({where}) has {servers} server{'s' if servers > 1 else ''}",
                          hint=f"set replicas: {servers} or fewer, or leave it out "
                               f"(min(3, the servers))")
    return wanted


def _key(name: str) -> str:
    """A KV key or object name for any text (tag names may hold spaces)."""
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=") or "-"


async def kv_all(js, kv, bucket: str) -> dict[str, dict]:
    """Every live key of a KV bucket and its JSON value."""
    return {key: json.loads(entry.value) for key, entry in (await kv_entries(js, kv, bucket)).items()}


async def kv_entries(js, kv, bucket: str) -> dict[str, Any]:
    """Every live key of a KV bucket and its entry (value and revision)."""
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"$KV.{bucket}.>")
    prefix = f"$KV.{bucket}."
    out = {}
    for subject in (info.state.subjects or {}):
        key = subject[len(prefix):]
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            continue                      # deleted (its tombstone is the last message)
        if entry.value:
            out[key] = entry
    return out


async def read_beats(js) -> list[tuple[str, dict, int]]:
    """The nodes bucket read now: each key, its JSON value and when the server stored it
    (ns, the server's clock)."""
    stream = f"KV_{NODES}"
    info = await js.stream_info(stream, subjects_filter=f"$KV.{NODES}.>")
    out = []
    for subject in (info.state.subjects or {}):
        try:
            msg = await js.get_last_msg(stream, subject)
        except NotFoundError:
            continue
        if msg.data:                              # not a tombstone
            out.append((subject[len(f"$KV.{NODES}."):], json.loads(msg.data),
                        to_ns(msg.time) if msg.time is not None else 0))
    return out


async def put_tag(kv, tag: Tag, node: str, replace: bool) -> Tag:
    """Make a cluster tag (``node``: where it was made); TagExists naming the one there,
    unless ``replace``."""
    value = json.dumps(dict(tag.as_dict(), node=node)).encode()
    if replace:
        await kv.put(_key(tag.name), value)
        return tag
    try:
        await kv.create(_key(tag.name), value)
    except KeyWrongLastSequenceError:
        old = Tag.from_dict(json.loads((await kv.get(_key(tag.name))).value))
        raise TagExists(f"a cluster tag {tag.name!r} exists already: {old}",
                        hint="pick another name, or replace it") from None
    return tag


async def delete_tag(kv, name: str) -> None:
    try:
        await kv.get(_key(name))
    except KeyNotFoundError:
        raise TagNotFound(f"no tag {name!r} in the cluster") from None
    await kv.delete(_key(name))


async def put_object(objects, name: str, data: Any, max_payload: int,
                     chunk: int = ARCHIVE_CHUNK) -> None:
    """Store an object in ``chunk``-byte pieces (at most half what the server takes in one
    message)."""
    size = max(64 << 10, min(chunk, max_payload // 2))
    await objects.put(name, data, meta=ObjectMeta(
        name=name, options=ObjectMetaOptions(max_chunk_size=size)))


async def _read(objects, name: str, writeinto: Any = None, tries: int = 8) -> Any:
    """An object (its data, or written into a file), tried again where JetStream times
    out."""
    for attempt in range(tries):
        try:
            if writeinto is not None:
                writeinto.seek(0)
                writeinto.truncate()
            return await objects.get(name, writeinto=writeinto)
        except NatsTimeout:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0.2)


async def list_manifests(js, objects) -> list[dict]:
    """The manifests of the archives in the object store, oldest range first."""
    info = await js.stream_info(f"OBJ_{ARCHIVES}", subjects_filter=f"$O.{ARCHIVES}.M.>")
    out = []
    for subject in (info.state.subjects or {}):
        encoded = subject.rsplit(".", 1)[1]
        name = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        if not name.endswith("/manifest.json"):
            continue
        try:
            out.append(json.loads((await _read(objects, name)).data))
        except NotFoundError:
            continue                      # deleted
    return sorted(out, key=lambda m: (m["tag"]["start"], m["tag"]["name"]))


async def _open_archives(urls: Sequence[str]):
    try:
        nc = await nats.connect(servers=list(urls), connect_timeout=3,
                                max_reconnect_attempts=2, reconnect_time_wait=0.5)
    except Exception as e:
        raise ClusterUnavailable(f"cannot reach NATS at {', '.join(urls)}: {e}") from None
    try:
        js = nc.jetstream(timeout=CALL_TIMEOUT)
        return nc, js, await js.object_store(ARCHIVES)
    except BucketNotFoundError:
        await nc.close()
        raise TagNotFound("the cluster holds no archives yet") from None


def _retrying(make: Callable[[], Coroutine[Any, Any, Any]], what: str,
              deadline: float = 30.0) -> Any:
    """Run ``make()`` until it succeeds: a JetStream that just lost a server answers with
    time-outs for the seconds its streams take to elect new leaders."""
    until = time.monotonic() + deadline
    while True:
        try:
            return asyncio.run(make())
        except (NatsTimeout, ServiceUnavailableError, asyncio.TimeoutError) as e:
            if time.monotonic() > until:
                raise ClusterUnavailable(f"NATS did not answer {what} in {deadline:g} s: "
                                         f"{type(e).__name__}") from None
            log.info("cluster: %s: %s; trying again", what, type(e).__name__)
            time.sleep(0.5)


def archives(urls: Sequence[str]) -> list[dict]:
    """The archives of the cluster that NATS at ``urls`` serves (manifests)."""
    async def run() -> list[dict]:
        nc, js, objects = await _open_archives(urls)
        try:
            return await list_manifests(js, objects)
        finally:
            await nc.close()
    return _retrying(run, "the list of archives")


def fetch_archive(urls: Sequence[str], tag: str, into: str) -> dict:
    """Download an archive's files into the folder ``into``: ``<channel>.avro`` each, and
    its manifest (returned)."""

    async def run() -> dict:
        nc, js, objects = await _open_archives(urls)
        try:
            try:
                manifest = json.loads((await _read(objects, f"{_key(tag)}/manifest.json")).data)
            except NotFoundError:
                names = [m["tag"]["name"] for m in await list_manifests(js, objects)]
                raise TagNotFound(f"no archive of tag {tag!r}",
                                  hint="archives are: " + listing(names)) from None
            for c in manifest["channels"]:
                with open(os.path.join(into, f"{c['channel']}.avro"), "w+b") as f:
                    await _read(objects, f"{_key(tag)}/{c['channel']}.avro", writeinto=f)
            return manifest
        finally:
            await nc.close()
    return _retrying(run, f"archive {tag!r}")


def restore_into(store, manifest: dict, folder: str) -> dict[str, int]:
    """Append an archive's records (those inside its tag's range) to a store, creating its
    channels; returns the records restored per channel. A channel that already holds
    records of that range is refused (StoreError) before anything is written, so a restore
    never doubles data."""
    tag = Tag.from_dict(manifest["tag"])
    names = [c["channel"] for c in manifest["channels"]]
    for name in names:
        if name in store and store[name].count(tag.start, tag.end):
            raise StoreError(f"channel {name!r} of {store.path} already holds "
                             f"{store[name].count(tag.start, tag.end)} records of tag "
                             f"{tag}", hint="restore into another store (--data DIR)")
    return {name: store.import_avro(name, os.path.join(folder, f"{name}.avro"), tag.start,
                                    tag.end) for name in names}
