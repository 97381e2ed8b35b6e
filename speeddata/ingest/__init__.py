"""Data in: one ingest worker process per channel (`speeddata.ingest.worker`, around the
Cython receiver `speeddata._ingest`) writes the store and the channel's live ring; the
supervisor (`speeddata.ingest.supervisor`) starts, watches and restarts the workers and runs
retention; the registry (`speeddata.ingest.registry`) is the one list of channels it runs."""

from .registry import Registry
from .supervisor import Supervisor, remove_orphans

__all__ = ["Registry", "Supervisor", "remove_orphans"]
