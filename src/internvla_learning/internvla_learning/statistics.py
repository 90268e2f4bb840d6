"""Statistics shared by the dataset writers: streaming accumulators and the two output forms.

- :class:`RunningStats` accumulates ``[N, D]`` batches one episode at a time. Count, mean, std (population,
  as ``np.std``), min and max are exact (Chan's parallel update in float64). Quantiles come from a
  bounded uniform reservoir sample of rows (Vitter's algorithm R, seeded): while the number of rows seen
  is at most ``reservoir_size`` the reservoir holds every row and the quantiles equal ``np.quantile``
  over all frames exactly; beyond it they are ``np.quantile`` of a uniform random sample of
  ``reservoir_size`` rows (rank error about ``sqrt(q(1-q)/reservoir_size)``, e.g. +-0.0003 in rank for
  q01 with the default 100 000 rows). Memory is ``reservoir_size * D`` float32 values per accumulator,
  independent of the number of episodes.
- :func:`episode_feature_stats`: exact per-episode statistics in LeRobot's form (min, max, mean, std,
  count, q01, q10, q50, q90, q99) for the ``stats/<feature>/<stat>`` columns of v3.0 episode metadata and
  ``meta/episodes_stats.jsonl`` of v2.1.
- :func:`image_sample`: the pixels a video feature contributes to statistics (a bounded subsample).
- :func:`m1_statistics`: upstream InternVLA-M1's ``dataset_statistics.json`` entry
  (``{"action": {mean, std, max, min, q01, q99, mask}, "state": {...}, "num_transitions",
  "num_trajectories"}``), what :func:`internvla_core.normalization.load_dataset_statistics` reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{int(round(q * 100)):02d}" for q in QUANTILES)
DEFAULT_RESERVOIR_SIZE = 100_000


class RunningStats:
    """Streaming statistics of ``[N, D]`` rows (see the module docstring for what is exact)."""

    def __init__(self, dim: int, reservoir_size: int = DEFAULT_RESERVOIR_SIZE, seed: int = 0):
        if reservoir_size < 1:
            raise ValueError("reservoir_size must be at least 1")
        self.dim = int(dim)
        self.reservoir_size = int(reservoir_size)
        self.count = 0
        self._mean = np.zeros(self.dim, dtype=np.float64)
        self._m2 = np.zeros(self.dim, dtype=np.float64)
        self._min = np.full(self.dim, np.inf)
        self._max = np.full(self.dim, -np.inf)
        self._reservoir = np.empty((0, self.dim), dtype=np.float32)
        self._filled = 0
        self._rng = np.random.default_rng(seed)

    @property
    def exact_quantiles(self) -> bool:
        """True while every row seen is in the reservoir (quantiles equal np.quantile over all rows)."""
        return self.count <= self.reservoir_size

    def update(self, batch: np.ndarray) -> None:
        x = np.asarray(batch, dtype=np.float64).reshape(-1, self.dim)
        n = x.shape[0]
        if n == 0:
            return
        if not np.all(np.isfinite(x)):
            raise ValueError("statistics input contains NaN or inf")
        # Chan et al. parallel combination of (count, mean, M2).
        b_mean = x.mean(axis=0)
        b_m2 = ((x - b_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = b_mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + b_m2 + delta**2 * (self.count * n / total)
        np.minimum(self._min, x.min(axis=0), out=self._min)
        np.maximum(self._max, x.max(axis=0), out=self._max)
        self._add_to_reservoir(x)
        self.count = total

    def _add_to_reservoir(self, x: np.ndarray) -> None:
        cap = self.reservoir_size
        free = min(cap - self._filled, x.shape[0])
        if free > 0:
            needed = self._filled + free
            if needed > self._reservoir.shape[0]:  # grow geometrically up to the cap
                grown = np.empty(
                    (min(cap, max(needed, 2 * self._reservoir.shape[0], 64)), self.dim), np.float32
                )
                grown[: self._filled] = self._reservoir[: self._filled]
                self._reservoir = grown
            self._reservoir[self._filled : needed] = x[:free]
            self._filled = needed
        rest = x[free:]
        if rest.shape[0]:
            # Row i of the remainder is the (seen + i + 1)-th row overall: it replaces a uniformly chosen
            # slot with probability cap / (seen + i + 1).
            seen = self.count + free
            positions = seen + np.arange(rest.shape[0]) + 1
            slots = np.floor(self._rng.random(rest.shape[0]) * positions).astype(np.int64)
            keep = slots < cap
            self._reservoir[slots[keep]] = rest[keep]

    def result(self, quantiles: Sequence[float] = QUANTILES) -> dict[str, np.ndarray]:
        if self.count == 0:
            raise ValueError("no rows accumulated")
        out = {
            "min": self._min.copy(),
            "max": self._max.copy(),
            "mean": self._mean.copy(),
            "std": np.sqrt(np.maximum(self._m2 / self.count, 0.0)),
            "count": np.array([self.count], dtype=np.int64),
        }
        sample = self._reservoir[: self._filled].astype(np.float64)
        for q in quantiles:
            out[f"q{int(round(q * 100)):02d}"] = np.quantile(sample, q, axis=0)
        return out


def episode_feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Exact statistics of one episode's ``[T, D]`` (or ``[T]``) feature, LeRobot's keys and shapes."""
    x = np.asarray(values, dtype=np.float64)
    x2 = x.reshape(x.shape[0], -1)
    out = {
        "min": x2.min(axis=0),
        "max": x2.max(axis=0),
        "mean": x2.mean(axis=0),
        "std": x2.std(axis=0),
        "count": np.array([x2.shape[0]], dtype=np.int64),
    }
    for q, key in zip(QUANTILES, QUANTILE_KEYS, strict=True):
        out[key] = np.quantile(x2, q, axis=0)
    return out


def image_sample(frames: np.ndarray, max_frames: int = 16, max_side: int = 64) -> np.ndarray:
    """A bounded subsample of an episode's ``uint8 [T, H, W, 3]`` frames as ``[N, 3]`` values in [0, 1].

    Up to ``max_frames`` frames evenly spread over the episode, each strided so that its longer side is
    at most ``max_side`` pixels (LeRobot also samples frames and downsizes them for image statistics).
    """
    t, h, w, c = frames.shape
    idx = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(np.int64))
    step = max(1, int(np.ceil(max(h, w) / max_side)))
    sub = frames[idx, ::step, ::step, :]
    return sub.reshape(-1, c).astype(np.float64) / 255.0


def image_stats_shape(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reshape per-channel image statistics to LeRobot's ``(3, 1, 1)`` (count stays ``(1,)``)."""
    return {k: (v if k == "count" else np.asarray(v).reshape(-1, 1, 1)) for k, v in stats.items()}


def to_jsonable(stats: dict[str, np.ndarray]) -> dict:
    out = {}
    for key, value in stats.items():
        arr = np.asarray(value)
        out[key] = arr.tolist() if arr.dtype.kind != "i" else [int(v) for v in arr.reshape(-1)]
    return out


def m1_block(stats: dict[str, np.ndarray], mask: Sequence[bool] | None = None) -> dict:
    """One ``action``/``state`` block of upstream's dataset_statistics.json (lists of floats)."""
    block = {
        k: [float(v) for v in np.asarray(stats[k]).reshape(-1)]
        for k in ("mean", "std", "max", "min", "q01", "q99")
    }
    if mask is not None:
        block["mask"] = [bool(m) for m in mask]
    return block


def gripper_mask(names: Sequence[str]) -> list[bool]:
    """Upstream's mask: false for every gripper dimension, true for the others."""
    return ["gripper" not in n.lower() for n in names]


def m1_statistics(
    action: RunningStats,
    state: RunningStats,
    action_names: Sequence[str],
    num_trajectories: int,
) -> dict:
    """Upstream's per-dataset statistics entry: action (with mask) and state blocks plus the counts."""
    return {
        "action": m1_block(action.result(), gripper_mask(action_names)),
        "state": m1_block(state.result()),
        "num_transitions": int(action.count),
        "num_trajectories": int(num_trajectories),
    }
