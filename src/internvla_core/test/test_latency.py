"""Latency and rate bookkeeping used by every node's diagnostics and by the demo summary."""

import math
import time

import pytest

from internvla_core.latency import RateMeter, RollingStats, StageTimer, percentile


def test_percentile_interpolates_linearly_between_ranks():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([10.0], 95) == 10.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    assert math.isnan(percentile([], 50))


def test_stage_timer_accumulates_repeated_stages():
    timer = StageTimer()
    for _ in range(2):
        with timer.stage("vlm"):
            time.sleep(0.002)
    timer.add("dit", 0.5)
    assert timer.stages["vlm"] >= 0.004
    assert timer.total == pytest.approx(timer.stages["vlm"] + 0.5)


def test_rolling_stats_keeps_only_the_window():
    stats = RollingStats(window=3)
    for value in [100.0, 1.0, 2.0, 3.0]:
        stats.add("x", value)
    summary = stats.summary("x")
    assert summary["count"] == 3 and summary["max"] == 3.0 and summary["p50"] == 2.0
    assert stats.summary("missing")["count"] == 0


def test_rate_meter_reports_rate_and_jitter_against_the_expected_period():
    meter = RateMeter(expected_period=0.1)
    for stamp in [0.0, 0.1, 0.2, 0.35]:
        meter.tick(stamp)
    assert meter.rate() == pytest.approx(1 / (0.35 / 3))
    jitter = meter.jitter()
    assert jitter["max"] == pytest.approx(0.05)
    assert jitter["p50"] == pytest.approx(0.0, abs=1e-9)


def test_latency_items_name_each_stage_percentile_in_milliseconds():
    from internvla_core.latency import latency_items

    stats = RollingStats()
    for value in (0.010, 0.020, 0.030):
        stats.add("vlm", value)
    assert latency_items(stats) == [("vlm_p50_ms", "20.0"), ("vlm_p95_ms", "29.0")]
