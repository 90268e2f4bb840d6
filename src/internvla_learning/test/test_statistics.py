"""The streaming statistics against numpy over all rows, and upstream's dataset_statistics form."""

from __future__ import annotations

import numpy as np
import pytest
from internvla_learning.statistics import (
    RunningStats,
    episode_feature_stats,
    gripper_mask,
    image_sample,
    m1_statistics,
)


def _batches(rng, sizes, dim):
    return [rng.normal(rng.uniform(-2, 2), rng.uniform(0.1, 3), (n, dim)) for n in sizes]


def test_running_stats_equal_numpy_when_everything_fits_the_reservoir():
    rng = np.random.default_rng(0)
    batches = _batches(rng, [1, 7, 30, 2, 55, 13], 5)
    stats = RunningStats(5, reservoir_size=1000)
    for b in batches:
        stats.update(b)
    allrows = np.concatenate(batches)
    out = stats.result()
    assert stats.exact_quantiles
    np.testing.assert_allclose(out["mean"], allrows.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out["std"], allrows.std(0), rtol=1e-10)
    np.testing.assert_array_equal(out["min"], allrows.min(0))
    np.testing.assert_array_equal(out["max"], allrows.max(0))
    assert out["count"].tolist() == [allrows.shape[0]]
    for q, key in [(0.01, "q01"), (0.10, "q10"), (0.5, "q50"), (0.9, "q90"), (0.99, "q99")]:
        # the reservoir stores float32 rows: equal to numpy's quantile of the float32 values
        np.testing.assert_allclose(out[key], np.quantile(allrows.astype(np.float32), q, axis=0), rtol=1e-6)


def test_quantiles_beyond_the_reservoir_stay_within_the_documented_rank_error():
    rng = np.random.default_rng(1)
    stats = RunningStats(2, reservoir_size=4000, seed=3)
    batches = [rng.standard_normal((500, 2)) * [1.0, 10.0] for _ in range(80)]  # 40k rows, 10x the reservoir
    for b in batches:
        stats.update(b)
    allrows = np.concatenate(batches)
    out = stats.result()
    assert not stats.exact_quantiles
    np.testing.assert_allclose(out["mean"], allrows.mean(0), atol=1e-12)  # moments stay exact
    np.testing.assert_allclose(out["std"], allrows.std(0), rtol=1e-10)
    for q, key in [(0.01, "q01"), (0.5, "q50"), (0.99, "q99")]:
        # the estimate's rank among all rows is within 5 standard errors sqrt(q(1-q)/n) of q
        rank = (allrows <= out[key]).mean(axis=0)
        assert np.all(np.abs(rank - q) < 5 * np.sqrt(q * (1 - q) / 4000) + 1e-3), (key, rank)
    assert stats._reservoir.shape == (4000, 2)  # bounded memory


def test_reservoir_is_a_uniform_sample_not_the_first_rows():
    stats = RunningStats(1, reservoir_size=100, seed=0)
    for start in range(0, 10_000, 100):
        stats.update(np.arange(start, start + 100, dtype=np.float64)[:, None])
    # a sample of the first rows only would have a median near 50
    assert 3000 < stats.result()["q50"][0] < 7000


def test_nan_input_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        RunningStats(2).update(np.array([[0.0, np.nan]]))


def test_episode_stats_and_image_sample_shapes():
    x = np.random.default_rng(2).normal(size=(30, 4))
    s = episode_feature_stats(x)
    np.testing.assert_allclose(s["q99"], np.quantile(x, 0.99, axis=0))
    assert s["count"].tolist() == [30]
    frames = np.zeros((40, 100, 80, 3), np.uint8)
    frames[..., 0] = 255
    sample = image_sample(frames, max_frames=16, max_side=64)
    assert sample.shape[1] == 3 and sample.shape[0] <= 16 * 50 * 40
    np.testing.assert_array_equal(sample.max(0), [1.0, 0.0, 0.0])


def test_m1_statistics_form_and_gripper_mask():
    rng = np.random.default_rng(3)
    action = RunningStats(7)
    state = RunningStats(7)
    a = rng.normal(size=(50, 7))
    action.update(a)
    state.update(rng.normal(size=(50, 7)))
    entry = m1_statistics(
        action, state, ("x", "y", "z", "roll", "pitch", "yaw", "gripper"), num_trajectories=3
    )
    assert set(entry) == {"action", "state", "num_transitions", "num_trajectories"}
    assert set(entry["action"]) == {"mean", "std", "max", "min", "q01", "q99", "mask"}
    assert entry["action"]["mask"] == [True] * 6 + [False]
    assert "mask" not in entry["state"]
    assert entry["num_transitions"] == 50 and entry["num_trajectories"] == 3
    np.testing.assert_allclose(
        entry["action"]["q01"], np.quantile(a.astype(np.float32), 0.01, axis=0), rtol=1e-6
    )
    assert gripper_mask(["x", "Gripper_width"]) == [True, False]
