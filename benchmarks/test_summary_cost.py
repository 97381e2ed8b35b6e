"""Smoke run of the summary cost script (its real run: benchmarks/summary_cost.py)."""

import summary_cost


def test_summary_cost_quick_run():
    rows = summary_cost.measure(records=4_000, rounds=1)
    assert [r["measure"] for r in rows] == ["block stage", "store side of ingest"]
    for r in rows:
        assert r["with"] > 0 and r["without"] > 0 and r["ratio"] > 0
    print(summary_cost.table(rows))
