"""bench/apps.py runs and reports (a short form: the numbers themselves are the bench's, not a test's)."""

from __future__ import annotations

import pytest

from bench.apps import measure, render
from bench.procs import Reaper

pytestmark = pytest.mark.slow


def test_the_apps_bench_measures_latency_throughput_and_memory(tmp_path):
    reaper = Reaper()
    try:
        results = measure(tmp_path, reaper, seconds=0.5, warmup=0.3, max_rate=2000)
    finally:
        assert reaper.kill_all() == []
    at_100 = results["rates"][0]
    assert at_100["rate"] == 100 and at_100["n"] > 0 and 0 < at_100["p50_ms"] <= at_100["p99_ms"]
    assert results["sustained"] > 0
    memory = results["memory"]
    assert memory["app_rss_mib"] > memory["plain_rss_mib"] > 0
    text = render(results)
    assert "| 100 |" in text and "added RSS of a loaded app" in text
