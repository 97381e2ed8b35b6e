"""What one request, one client and the server in all may take: the ``limits:`` section of
the config, shared by the service, the gRPC server, the web API and the live hub."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    """What one request, one client and the server in all may take (``limits:`` in the
    config). Beyond them: RESOURCE_EXHAUSTED, HTTP 413 for a request too large, 429 for one
    too many. None: no limit."""
    query_records: int | None = None      # records one query may read, per channel
    export_records: int | None = None     # records one export may write, in all
    subscriptions: int | None = 1000      # live streams at once (gRPC channels, WebSockets)
    subscriptions_per_client: int | None = 200   # ... of one client address
    request_bytes: int | None = 1 << 20   # a REST request's body
    schema_bytes: int | None = 256 << 10  # a schema's JSON text
    schema_depth: int | None = 32         # records and arrays nested in a schema
    schema_fields: int | None = 10_000    # signals of a schema
    buckets: int | None = 20_000          # buckets of one overview
    exports: int | None = 4               # HDF5 exports at once
    stall_seconds: int | None = 60        # a live stream whose client reads nothing this
                                          # long while data waits is dropped (counted)
