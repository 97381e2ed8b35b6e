"""Smoke run of the web benchmark (its real run: benchmarks/web_bench.py)."""

import os

import pytest

import web_bench


def test_live_latency_and_export_over_http():
    lat = web_bench.live_latency(1.0)
    for p50, p99, frames in lat.values():
        assert frames > 0 and 0 < p50 <= p99
    e = web_bench.export_http(20_000)
    assert e["records"] == 20_000 and e["ratio"] > 0


@pytest.mark.skipif(not os.path.exists(web_bench.CHROMIUM), reason="chromium is installed by "
                    "the browser tests (tests/test_web_pages.py) on first use")
def test_chart_frames_and_zoom_in_chromium():
    f = web_bench.chart_frames(1.0)
    assert f["frames"] > 5 and f["buckets_drawn"] > 100 and f["draw_median_ms"] > 0
    z = web_bench.zoom(0.02)
    assert z["whole"] > 0 and z["1 min"] > 0
