"""bench/probe_condition.py: which frames count as the end of the approach, and which images it sends."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from bench_scripts import load_bench


def _probe():
    return load_bench("probe_condition")


def test_the_approach_is_the_frames_before_the_lowest_point_within_the_height_window():
    z = np.array([0.50, 0.40, 0.30, 0.24, 0.21, 0.20, 0.25, 0.40])
    state = np.zeros((len(z), 7), np.float32)
    state[:, 2] = z
    # lowest at frame 5 (0.20): frames 3 and 4 lie within 5 cm above it; the lift after it is not approach
    assert _probe().approach_frames(state, 0.05) == [3, 4]
    assert _probe().approach_frames(state, 0.001) == []


class _RecordingPolicy:
    def __init__(self, chunk: np.ndarray):
        self.chunk, self.calls = chunk, []

    def predict_action(self, images, instruction, cfg_scale=1.5, seed=None):
        self.calls.append((len(images), cfg_scale))
        return SimpleNamespace(actions=self.chunk)


def test_the_approach_error_compares_summed_steps_of_the_same_rows_with_every_trained_view(monkeypatch):
    probe = _probe()
    t = 8
    state = np.zeros((t, 7), np.float32)
    state[:, 2] = [0.5, 0.4, 0.3, 0.22, 0.21, 0.20, 0.3, 0.4]
    actions = np.zeros((t, 7), np.float32)
    actions[:, 0] = 0.001  # the expert moves 1 mm forward per step
    images = {v: np.zeros((t, 8, 8, 3), np.uint8) for v in ("third_person", "wrist")}
    episode = SimpleNamespace(state_ee=state, action_ee_delta=actions, images=images, instruction="pick")
    import internvla_learning.episode as episode_module

    monkeypatch.setattr(episode_module, "load_episode", lambda path: episode)
    chunk = np.zeros((4, 7), np.float32)
    chunk[:, 0] = 0.002  # the policy overshoots: 2 mm per step
    policy = _RecordingPolicy(chunk)
    predicted, expert = probe.approach_steps(
        policy, [Path("ep.npz")], 3, ["third_person", "wrist"], 0.05, 3.0
    )
    assert predicted.shape == expert.shape == (2, 2)  # frames 3 and 4
    np.testing.assert_allclose(predicted[:, 0], 0.006, atol=1e-7)
    np.testing.assert_allclose(expert[:, 0], 0.003, atol=1e-7)
    assert policy.calls == [(2, 3.0), (2, 3.0)]
    with pytest.raises(ValueError, match="data_engine --wrist"):
        probe.approach_steps(policy, [Path("ep.npz")], 3, ["third_person", "gripper_cam"], 0.05)
