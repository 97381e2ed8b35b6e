"""SpeedData: ephemeral high-rate telemetry capture.

The names users type: ``speeddata.store.open()``, ``read_hdf5``, ``read_avro``,
``speeddata.Client`` (gRPC) and the errors.
"""
from . import errors, schema, store
from ._version import __version__
from .dataset import DataSet
from .hdf5 import read_hdf5
from .store import read_avro
from .errors import (ChannelExists, ChannelNotFound, ClusterUnavailable, ConfigError,
                     DecodeError, EmptyRange, Forbidden, FormatError, LimitExceeded,
                     NodeAlive, NodeNotFound, PortUnavailable, RequestError, SchemaError,
                     SpeedDataError, StoreError, TagExists, TagNotFound, TimeRangeError,
                     Unauthenticated, Unavailable)

__all__ = ["Client", "DataSet", "read_avro", "read_hdf5", "store", "ChannelExists",
           "ChannelNotFound", "ClusterUnavailable", "ConfigError", "DecodeError", "EmptyRange",
           "Forbidden", "FormatError", "LimitExceeded", "NodeAlive", "NodeNotFound",
           "PortUnavailable", "RequestError", "SchemaError",
           "SpeedDataError", "StoreError", "TagExists", "TagNotFound", "TimeRangeError",
           "Unauthenticated", "Unavailable", "errors", "schema"]


def __getattr__(name: str):
    if name == "Client":               # gRPC loads only for those who use it
        from .client import Client
        return Client
    raise AttributeError(f"module 'speeddata' has no attribute {name!r}")
