"""The .proto's enum numbers by the names SpeedData uses: for the Batch messages that
`wire.batch_message` builds by hand (the gRPC service's and the cluster's live batches)."""

from .v1 import speeddata_pb2 as pb

AGGREGATE = {"value": pb.AGGREGATE_VALUE, "min": pb.AGGREGATE_MIN, "max": pb.AGGREGATE_MAX,
             "mean": pb.AGGREGATE_MEAN, "rms": pb.AGGREGATE_RMS, "first": pb.AGGREGATE_FIRST,
             "last": pb.AGGREGATE_LAST, "count": pb.AGGREGATE_COUNT,
             "min_time": pb.AGGREGATE_MIN_TIME, "max_time": pb.AGGREGATE_MAX_TIME,
             "first_time": pb.AGGREGATE_FIRST_TIME, "last_time": pb.AGGREGATE_LAST_TIME}
DATA_TYPE = {"bool": pb.DATA_TYPE_BOOL, "int32": pb.DATA_TYPE_INT32,
             "int64": pb.DATA_TYPE_INT64, "float32": pb.DATA_TYPE_FLOAT32,
             "float64": pb.DATA_TYPE_FLOAT64, "string": pb.DATA_TYPE_STRING,
             "bytes": pb.DATA_TYPE_BYTES}
