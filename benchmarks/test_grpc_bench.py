"""Smoke run of the gRPC benchmark (its real run: benchmarks/grpc_bench.py): Query against a
local read, Subscribe latency and fan-out, the hub under a 200k records/s channel."""

import grpc_bench


def test_query_against_a_local_read():
    q = grpc_bench.query_vs_local(50_000, rounds=1)
    assert q["records"] == 50_000 and q["ratio"] > 0


def test_subscribers_get_everything_and_latency_is_measured():
    one = grpc_bench.live(1, 2_000, 0.5)
    many = grpc_bench.live(5, 2_000, 0.5)
    for r in (one, many):
        assert r["received"] == r["sent"] > 0 and r["missed"] == 0
        assert r["delivered_min"] == r["sent"] and r["p99_ms"] > 0
    env = grpc_bench.live(1, 20_000, 0.5, "minmax")
    assert env["missed"] == 0 and env["received"] == env["sent"]
