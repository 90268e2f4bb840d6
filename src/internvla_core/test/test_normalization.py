"""Action normalisation: upstream's q99 un-normalisation semantics on hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from internvla_core.normalization import (
    ActionStats,
    UnnormKeyError,
    action_stats,
    load_dataset_statistics,
    normalize_actions,
    resolve_unnorm_key,
    unnormalize_actions,
)

Q01 = [-0.1, -0.2, 0.0, -1.0, -1.0, -2.0, 0.0]
Q99 = [0.1, 0.2, 0.4, 1.0, 3.0, 2.0, 1.0]
MASK = [True, True, True, True, True, True, False]


def _stats(mask=MASK) -> dict:
    action = {"q01": Q01, "q99": Q99, "mean": [0.0] * 7, "std": [1.0] * 7}
    if mask is not None:
        action["mask"] = mask
    return {"bridge": {"action": action}}


def test_unnormalize_maps_minus_one_and_one_to_q01_and_q99():
    stats = action_stats(_stats())
    n = np.array([[-1, -1, -1, -1, -1, -1, 0.0], [1, 1, 1, 1, 1, 1, 1.0]], dtype=np.float32)
    a = unnormalize_actions(n, stats)
    np.testing.assert_allclose(a[0, :6], Q01[:6], atol=1e-7)
    np.testing.assert_allclose(a[1, :6], Q99[:6], atol=1e-7)
    assert a.dtype == np.float64


def test_unnormalize_hand_values_midpoint_and_clip():
    stats = action_stats(_stats())
    n = np.array([[0.0, 0.5, 2.0, -3.0, 0.0, 0.25, 0.2]], dtype=np.float64)
    a = unnormalize_actions(n, stats)
    # 0.5*(n+1)*(q99-q01)+q01 per dim; 2.0 and -3.0 are clipped to +-1 first
    expected = [0.0, 0.1, 0.4, -1.0, 1.0, 0.5, 0.0]
    np.testing.assert_allclose(a[0], expected, atol=1e-12)


def test_gripper_channel_is_thresholded_at_half_and_kept_binary_when_unmasked():
    stats = action_stats(_stats())
    n = np.zeros((4, 7), dtype=np.float32)
    n[:, 6] = [0.49, 0.5, -0.7, 5.0]
    a = unnormalize_actions(n, stats)
    assert a[:, 6].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_missing_mask_rescales_every_dimension_including_the_gripper():
    stats = action_stats(_stats(mask=None))
    assert not stats.has_explicit_mask and stats.mask.all()
    n = np.zeros((1, 7))
    n[0, 6] = 0.9  # -> 1 after threshold, then rescaled with q01=0, q99=1 -> 1.0
    stats2 = ActionStats(
        key="x", q01=np.array([*Q01[:6], -1.0]), q99=np.array([*Q99[:6], 3.0]), mask=np.ones(7, bool)
    )
    assert unnormalize_actions(n, stats)[0, 6] == 1.0
    assert unnormalize_actions(n, stats2)[0, 6] == pytest.approx(3.0)  # 0.5*(1+1)*4-1


def test_unnormalize_does_not_modify_its_input():
    stats = action_stats(_stats())
    n = np.full((2, 7), 3.0, dtype=np.float32)
    unnormalize_actions(n, stats)
    assert (n == 3.0).all()


def test_normalize_then_unnormalize_round_trips_in_range_values():
    stats = action_stats(_stats())
    rng = np.random.default_rng(0)
    lo, hi = np.array(Q01), np.array(Q99)
    x = lo + (hi - lo) * rng.uniform(0.01, 0.99, size=(16, 7))
    x[:, 6] = rng.integers(0, 2, size=16)
    back = unnormalize_actions(normalize_actions(x, stats), stats)
    np.testing.assert_allclose(back, x, atol=1e-12)


def test_normalize_passes_degenerate_dimensions_through():
    stats = ActionStats(
        key="d", q01=np.array([1.0, 0.0]), q99=np.array([1.0, 2.0]), mask=np.array([True, True])
    )
    out = normalize_actions(np.array([[5.0, 1.0]]), stats)
    assert out.tolist() == [[5.0, 0.0]]


def test_single_key_is_the_default_and_several_keys_need_an_explicit_choice():
    assert resolve_unnorm_key({"franka": {}}, None) == "franka"
    with pytest.raises(UnnormKeyError, match=r"oxe_bridge.*oxe_rt1"):
        resolve_unnorm_key({"oxe_bridge": {}, "oxe_rt1": {}}, None)
    with pytest.raises(UnnormKeyError, match=r"'bridge_dataset' not in dataset statistics.*oxe_bridge"):
        resolve_unnorm_key({"oxe_bridge": {}, "oxe_rt1": {}}, "bridge_dataset")


def test_load_dataset_statistics_reads_a_run_dir_and_rejects_bad_files(tmp_path):
    (tmp_path / "dataset_statistics.json").write_text(json.dumps(_stats()))
    assert list(load_dataset_statistics(tmp_path)) == ["bridge"]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "dataset_statistics.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_dataset_statistics(bad)
    with pytest.raises(FileNotFoundError, match="dataset statistics not found"):
        load_dataset_statistics(tmp_path / "missing")


def test_action_dim_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="action dim 5"):
        unnormalize_actions(np.zeros((2, 5)), action_stats(_stats()))
