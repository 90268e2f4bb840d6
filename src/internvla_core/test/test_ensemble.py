"""Adaptive ensembling: upstream's weights and row choice, late chunks, time-aligned variant."""

from __future__ import annotations

import math

import numpy as np
import pytest

from internvla_core.ensemble import AdaptiveEnsembler, TimedEnsembler, ensemble_rows


def test_weights_are_exp_alpha_cos_to_the_newest_prediction_normalised():
    rows = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # oldest ... newest
    cos = np.array([0.0, 1 / math.sqrt(2), 1.0])  # against the newest row (0, 1)
    w = np.exp(0.1 * cos)
    expected = (w[:, None] * rows).sum(axis=0) / w.sum()
    np.testing.assert_allclose(ensemble_rows(rows, 0.1), expected, rtol=1e-6)
    # by hand: w = (1, e^0.0707.., e^0.1) = (1, 1.07327, 1.10517), sum 3.17844
    np.testing.assert_allclose(ensemble_rows(rows, 0.1), [0.65229, 0.68538], atol=1e-5)


def test_larger_alpha_trusts_predictions_that_agree_with_the_newest_more():
    rows = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert ensemble_rows(rows, 0.0)[1] == pytest.approx(0.5)
    assert ensemble_rows(rows, 5.0)[1] > ensemble_rows(rows, 0.1)[1] > 0.5


def test_upstream_takes_row_k_of_the_chunk_from_k_steps_ago_and_keeps_h_chunks():
    ens = AdaptiveEnsembler(horizon=2)
    a = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    b = np.array([[10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    c = np.array([[100.0, 0.0], [200.0, 0.0], [300.0, 0.0]])
    np.testing.assert_allclose(ens.ensemble_action(a), [1.0, 0.0])
    np.testing.assert_allclose(ens.ensemble_action(b), [6.0, 0.0])  # a[1]=2, b[0]=10, cos 1 -> equal
    np.testing.assert_allclose(ens.ensemble_action(c), [60.0, 0.0])  # a dropped: b[1]=20, c[0]=100
    ens.reset()
    np.testing.assert_allclose(ens.ensemble_action(c), [100.0, 0.0])


def test_a_late_chunk_contributes_the_row_for_now_not_its_row_zero():
    ens = AdaptiveEnsembler(horizon=3)
    late = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    np.testing.assert_allclose(ens.ensemble_action(late, age=2), [3.0, 0.0])
    on_time = np.array([[5.0, 0.0], [6.0, 0.0]])
    np.testing.assert_allclose(ens.ensemble_action(on_time), [(4.0 + 5.0) / 2, 0.0])
    with pytest.raises(ValueError):
        ens.ensemble_action(on_time, age=-1)


def test_timed_ensembler_equals_upstream_with_one_fresh_chunk_per_step():
    rng = np.random.default_rng(0)
    upstream, timed = AdaptiveEnsembler(3), TimedEnsembler(3)
    for step in range(8):
        chunk = rng.normal(size=(8, 7))
        timed.add(chunk, step)
        np.testing.assert_allclose(timed.action(step), upstream.ensemble_action(chunk), rtol=1e-12)


def test_timed_ensembler_aligns_by_observation_step_and_handles_out_of_order_chunks():
    ens = TimedEnsembler(horizon=2)
    ens.add(np.arange(10.0).reshape(5, 2), obs_step=4)  # arrives late: rows for steps 4..8
    np.testing.assert_allclose(ens.action(6), [4.0, 5.0])  # row 2
    assert ens.action(9) is None and ens.action(3) is None
    ens.add(np.full((5, 2), 100.0), obs_step=6)
    ens.add(np.full((5, 2), -1.0), obs_step=3)  # arrives last, older than the newest two: dropped
    assert [s for s, _ in ens.chunks] == [4, 6]
    # step 8: rows (8, 9) of the older chunk and (100, 100) of the newest, which has cos 1 to itself
    cos = (8 * 100 + 9 * 100) / (math.hypot(8, 9) * math.hypot(100, 100))
    w_old, w_new = math.exp(0.1 * cos), math.exp(0.1)
    np.testing.assert_allclose(
        ens.action(8), (w_old * np.array([8.0, 9.0]) + w_new * 100.0) / (w_old + w_new)
    )
    assert ens.newest_step() == 6
    ens.reset()
    assert ens.action(6) is None and ens.newest_step() is None


def test_horizon_must_be_positive():
    with pytest.raises(ValueError):
        AdaptiveEnsembler(0)
    with pytest.raises(ValueError):
        TimedEnsembler(0)
