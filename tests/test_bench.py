"""`speeddata bench --quick`: a real server ramped by sender processes; its JSON report."""

import json
import subprocess
import sys

import pytest


def test_bench_quick_reports_every_field_with_sane_values(tmp_path):
    out = subprocess.run([sys.executable, "-m", "speeddata.cli", "-q", "bench", "--quick",
                          "--channels", "2", "--doubles", "4", "--rate", "5000", "--disk",
                          "100GB", "--json", str(tmp_path / "bench.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "records/s" in out.stdout and "holds" in out.stdout      # the live table, the end
    r = json.loads((tmp_path / "bench.json").read_text())
    assert set(r["channels"]) == {"bench0", "bench1"}
    for c in r["channels"].values():
        assert c["records_per_s"] > 0 and c["datagrams_per_s"] > 0 and c["mb_per_s_in"] > 0
        assert 0 <= c["stored"] <= c["sent"]                        # counted, not assumed
        assert c["loss"] == pytest.approx(1 - c["stored"] / c["sent"])
        assert 8 < c["bytes_per_record"] < 200 and c["worker_cpu"] > 0
    total = r["total"]
    assert total["records_per_s"] == pytest.approx(
        sum(c["records_per_s"] for c in r["channels"].values()))
    assert total["server_cpu"] > 0
    assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
    hours = r["horizon"]["disk_bytes"] / total["disk_bytes_per_s"] / 3600
    assert r["horizon"]["hours"] == pytest.approx(hours) and hours > 0
    assert r["limited_by"] in ("loss", "sender", "steps") and r["trials"]
    assert r["trials"][0]["records_per_s"] > 0 and r["machine"]["cpus"] >= 1


def test_bench_refuses_a_bad_mix():
    out = subprocess.run([sys.executable, "-m", "speeddata.cli", "bench", "--channels", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "must be positive" in out.stderr
