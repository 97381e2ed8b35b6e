"""Smoke run of the ingest capacity script (its real run: benchmarks/ingest_capacity.py)."""

import ingest_capacity


def test_ingest_capacity_quick_run():
    rows = ingest_capacity.run(5_000)
    for r in rows:
        assert r["sent"] == (5_000 if "1 rec" in r["case"] else 1_000)
        assert 0 < r["received"] <= r["sent"]   # (CPU time of a short run may round to 0)
    assert rows[1]["records"] == rows[1]["received"]      # everything received was stored
    assert rows[2]["records"] == rows[2]["received"] * 20 > 0
    lat = ingest_capacity.latency(0.5, 2_000)
    assert lat["records"] == 1_000
    print(ingest_capacity.table(rows, lat))
