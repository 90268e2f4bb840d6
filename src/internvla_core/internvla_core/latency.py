"""Per-stage latency measurement and rolling statistics shared by the core and the nodes.

Why here: every node reports per-stage latency on /diagnostics and the demo writes p50/p95 tables;
one implementation keeps the numbers comparable across nodes, benchmarks and the demo summary.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Times named stages of one pass (e.g. one inference): ``with timer.stage("vlm"): ...``.

    Durations are wall-clock seconds from ``time.perf_counter``. A stage entered twice accumulates.
    """

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + (time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + float(seconds)

    @property
    def total(self) -> float:
        return sum(self.stages.values())


def percentile(values: list[float] | tuple[float, ...], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty sequence; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


class RollingStats:
    """Thread-safe window of the last ``window`` samples per key, with p50/p95/max/mean summaries."""

    def __init__(self, window: int = 200) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self._window = window
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, key: str, value: float) -> None:
        with self._lock:
            self._samples.setdefault(key, deque(maxlen=self._window)).append(float(value))

    def add_stages(self, stages: dict[str, float], prefix: str = "") -> None:
        for name, value in stages.items():
            self.add(prefix + name, value)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._samples)

    def values(self, key: str) -> list[float]:
        with self._lock:
            return list(self._samples.get(key, ()))

    def summary(self, key: str) -> dict[str, float]:
        vals = self.values(key)
        if not vals:
            return {"count": 0, "p50": math.nan, "p95": math.nan, "max": math.nan, "mean": math.nan}
        return {
            "count": len(vals),
            "p50": percentile(vals, 50),
            "p95": percentile(vals, 95),
            "max": max(vals),
            "mean": sum(vals) / len(vals),
        }

    def summaries(self) -> dict[str, dict[str, float]]:
        return {key: self.summary(key) for key in self.keys()}


def latency_items(stats: RollingStats) -> list[tuple[str, str]]:
    """(key, value) pairs "<stage>_p50_ms" / "<stage>_p95_ms" for every stage: what /diagnostics shows."""
    items: list[tuple[str, str]] = []
    for key, summary in stats.summaries().items():
        items.append((f"{key}_p50_ms", f"{1e3 * summary['p50']:.1f}"))
        items.append((f"{key}_p95_ms", f"{1e3 * summary['p95']:.1f}"))
    return items


class RateMeter:
    """Measures the rate and period jitter of a periodic event (a control loop tick, a publisher)."""

    def __init__(self, expected_period: float | None = None, window: int = 500) -> None:
        self.expected_period = expected_period
        self._stamps: deque[float] = deque(maxlen=window + 1)
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._stamps.append(time.perf_counter() if now is None else now)

    def periods(self) -> list[float]:
        with self._lock:
            stamps = list(self._stamps)
        return [b - a for a, b in itertools.pairwise(stamps)]

    def rate(self) -> float:
        periods = self.periods()
        if not periods:
            return 0.0
        mean = sum(periods) / len(periods)
        return 1.0 / mean if mean > 0 else math.inf

    def jitter(self) -> dict[str, float]:
        """|period - expected| percentiles in seconds (expected = mean period when not given)."""
        periods = self.periods()
        if not periods:
            return {"p50": math.nan, "p99": math.nan, "max": math.nan}
        ref = self.expected_period if self.expected_period else sum(periods) / len(periods)
        dev = [abs(p - ref) for p in periods]
        return {"p50": percentile(dev, 50), "p99": percentile(dev, 99), "max": max(dev)}
