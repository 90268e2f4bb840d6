"""Ensembling, chunk streaming, safety limits, IK and the executor step, without ROS."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from internvla_core.embodiments import get_embodiment
from internvla_core.ensemble import AdaptiveEnsembler, TimedEnsembler, ensemble_rows
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.kinematics import IKSolver, pose_error
from internvla_core.rotations import matrix_to_axis_angle, rpy_to_matrix
from internvla_core.safety import SafetyFilter, SafetyLimits
from internvla_core.scheduling import ChunkStreamer

LIMITS = SafetyLimits(
    workspace_min=(0.2, -0.4, 0.05),
    workspace_max=(0.7, 0.4, 0.7),
    max_translation_per_step=0.02,
    max_rotation_per_step=0.1,
)
PANDA_HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


def pose(xyz, rpy=(math.pi, 0.0, 0.0)) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rpy_to_matrix(*rpy)
    out[:3, 3] = xyz
    return out


# ----------------------------------------------------------------------------------------- ensembling
def test_ensemble_weights_follow_the_cosine_to_the_newest_prediction():
    rows = np.array([[1.0, 0.0], [0.0, 1.0]])  # older, newest
    w_old, w_new = math.exp(0.1 * 0.0), math.exp(0.1 * 1.0)
    expected = (w_old * rows[0] + w_new * rows[1]) / (w_old + w_new)
    np.testing.assert_allclose(ensemble_rows(rows, 0.1), expected, rtol=1e-6)


def test_adaptive_ensembler_takes_row_k_of_the_chunk_k_steps_old():
    ens = AdaptiveEnsembler(horizon=2)
    a = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    b = np.array([[10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    np.testing.assert_allclose(ens.ensemble_action(a), [1.0, 0.0])
    out = ens.ensemble_action(b)  # candidates: a[1] = 2 and b[0] = 10, both cos = 1 -> equal weights
    np.testing.assert_allclose(out, [6.0, 0.0])


def test_timed_ensembler_matches_upstream_with_one_fresh_chunk_per_step():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(8, 7)) for _ in range(6)]
    upstream, timed = AdaptiveEnsembler(3), TimedEnsembler(3)
    for step, chunk in enumerate(chunks):
        timed.add(chunk, step)
        np.testing.assert_allclose(timed.action(step), upstream.ensemble_action(chunk), rtol=1e-12)


def test_timed_ensembler_aligns_late_chunks_by_observation_step():
    ens = TimedEnsembler(horizon=3)
    ens.add(np.arange(10.0).reshape(5, 2), obs_step=4)  # arrives late: rows for steps 4..8
    np.testing.assert_allclose(ens.action(6), [4.0, 5.0])  # row 2
    assert ens.action(9) is None


# ----------------------------------------------------------------------------------------- streaming
def test_streamer_skips_stale_rows_and_cross_fades_the_seam():
    s = ChunkStreamer(blend_steps=1)
    s.add(np.zeros((6, 1)), obs_step=0, now_step=0)
    assert s.action(1)[0] == 0.0
    skipped = s.add(np.ones((6, 1)), obs_step=1, now_step=3)  # computed at step 1, arrives at 3
    assert skipped == 2
    assert s.action(3)[0] == pytest.approx(0.5)  # blend: half old, half new
    assert s.action(4)[0] == 1.0
    assert s.action(6)[0] == 1.0 and s.action(7) is None  # 6 rows from step 1 cover steps 1..6


@settings(max_examples=150, deadline=None)
@given(
    first=arrays(np.float64, (6, 1), elements=st.floats(-1, 1)),
    second=arrays(np.float64, (6, 1), elements=st.floats(-1, 1)),
    delay=st.integers(0, 4),
    blend=st.integers(1, 4),
)
def test_seam_blend_never_jumps_more_than_the_gap_split_over_the_blend(first, second, delay, blend):
    # a constant-per-chunk signal: the worst seam jump is |new - old| / (blend + 1)
    old_value, new_value = float(first[0, 0]), float(second[0, 0])
    s = ChunkStreamer(blend_steps=blend)
    s.add(np.full((10, 1), old_value), 0, 0)
    s.add(np.full((10, 1), new_value), 1, 1 + delay)
    values = [s.action(k)[0] for k in range(1 + delay, 9)]
    values = [old_value, *values]
    jumps = np.abs(np.diff(values))
    assert jumps.max() <= abs(new_value - old_value) / (blend + 1) + 1e-12


# ----------------------------------------------------------------------------------------- safety
finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.floats(-1e6, 1e6)


@settings(max_examples=300, deadline=None)
@given(
    current_xyz=arrays(np.float64, 3, elements=st.floats(0, 1)),
    target=arrays(np.float64, (4, 4), elements=finite_or_not),
)
def test_no_pose_command_leaves_the_limits_whatever_the_target(current_xyz, target):
    lo, hi = np.array(LIMITS.workspace_min), np.array(LIMITS.workspace_max)
    current = pose(lo + current_xyz * (hi - lo))  # the robot is inside the workspace
    out, report = SafetyFilter(LIMITS).limit_pose(current, target)
    assert np.all(np.isfinite(out))
    assert np.all(out[:3, 3] >= lo - 1e-9) and np.all(out[:3, 3] <= hi + 1e-9)
    assert np.linalg.norm(out[:3, 3] - current[:3, 3]) <= LIMITS.max_translation_per_step + 1e-9
    _, angle = matrix_to_axis_angle(out[:3, :3] @ current[:3, :3].T)
    assert angle <= LIMITS.max_rotation_per_step + 1e-6
    np.testing.assert_allclose(out[:3, :3] @ out[:3, :3].T, np.eye(3), atol=1e-9)
    if not np.all(np.isfinite(target)):
        assert report.held and np.array_equal(out, current)


@settings(max_examples=300, deadline=None)
@given(target=arrays(np.float64, 3, elements=finite_or_not), dt=st.floats(0.001, 1.0))
def test_no_joint_command_leaves_position_or_velocity_limits(target, dt):
    limits = SafetyLimits(
        joint_lower=(-1.0, -2.0, 0.0), joint_upper=(1.0, 2.0, 3.0), max_joint_velocity=(1.0, 0.5, 2.0)
    )
    current = np.array([0.5, -1.0, 1.0])
    out, report = SafetyFilter(limits).limit_joints(current, target, dt)
    assert np.all(np.isfinite(out))
    assert np.all(out >= np.array(limits.joint_lower)) and np.all(out <= np.array(limits.joint_upper))
    assert np.all(np.abs(out - current) <= np.array(limits.max_joint_velocity) * dt + 1e-12)
    if not np.all(np.isfinite(target)):
        assert report.held


# ----------------------------------------------------------------------------------------- IK
def test_panda_ik_reaches_a_delta_pose_and_respects_joint_limits():
    ik = IKSolver.panda()
    start = ik.fk(PANDA_HOME)
    target = start.copy()
    target[:3, 3] += [0.03, -0.02, 0.02]
    target[:3, :3] = rpy_to_matrix(0.0, 0.0, 0.1) @ start[:3, :3]
    result = ik.solve(PANDA_HOME, target)
    assert result.converged
    dp, dr = pose_error(ik.fk(result.q), target)
    assert dp < 1e-3 and dr < 1e-2
    assert np.all(result.q >= ik.lower) and np.all(result.q <= ik.upper)


def test_ik_names_missing_frames_and_joints():
    with pytest.raises(ValueError, match="frame 'tool0'"):
        IKSolver.from_mjcf(
            __import__("internvla_core.kinematics").kinematics.panda_mjcf_path(), "tool0", ["joint1"]
        )


# ----------------------------------------------------------------------------------------- executor
def make_executor(mode: str = "ensemble", with_ik: bool = False) -> tuple[ExecutorCore, np.ndarray]:
    ik = IKSolver.panda() if with_ik else None
    config = ExecutorConfig(mode=mode, control_period=0.1, watchdog_timeout=0.35, limits=LIMITS)
    core = ExecutorCore(get_embodiment("franka_libero"), config, ik)
    core.adapter.steps = 10  # past LIBERO's warm-up
    start = ik.fk(PANDA_HOME) if ik else pose([0.45, 0.0, 0.4])
    return core, start


def test_executor_moves_along_the_chunk_then_holds_when_chunks_stop():
    core, start = make_executor("chunk")
    chunk = np.tile([0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], (3, 1))
    assert core.add_chunk(chunk, observation_time=0.0, now=0.0) == ""
    cmd = core.tick(0.0, start)
    assert not cmd.hold and cmd.gripper_opening == 1.0
    np.testing.assert_allclose(cmd.target_pose[:3, 3], start[:3, 3] + [0.01, 0, 0])
    core.tick(0.1, start)
    core.tick(0.2, start)
    assert core.tick(0.3, start).reason.startswith("no chunk covers")
    assert "watchdog" in core.tick(0.4, start).reason
    assert core.counters["watchdog_holds"] == 1


def test_executor_rejects_nan_chunks_and_holds_on_estop():
    core, start = make_executor()
    assert "NaN" in core.add_chunk(np.full((4, 7), np.nan), 0.0, 0.0)
    assert core.tick(0.0, start).reason == "waiting for the first chunk"
    core.add_chunk(np.zeros((4, 7)), 0.0, 0.0)
    held = core.tick(0.0, start, estop=True)
    assert held.hold and held.reason == "e-stop" and np.array_equal(held.target_pose, start)


def test_executor_with_ik_produces_joint_targets_within_velocity_limits():
    core, start = make_executor("ensemble", with_ik=True)
    core.add_chunk(np.tile([0.05, 0.0, -0.05, 0.0, 0.0, 0.0, 0.0], (4, 1)), 0.0, 0.0)
    cmd = core.tick(0.0, start, joints=PANDA_HOME)
    assert not cmd.hold and cmd.joint_targets is not None and cmd.gripper_opening == 0.0
    assert np.all(np.abs(cmd.joint_targets - PANDA_HOME) <= 1.0 * 0.1 + 1e-12)
    assert "max_translation_per_step" in cmd.hits


@settings(max_examples=60, deadline=None)
@given(chunk=arrays(np.float64, (4, 7), elements=finite_or_not), delay=st.floats(0, 0.5))
def test_for_any_chunk_and_timing_no_executor_command_leaves_the_limits(chunk, delay):
    core, start = make_executor("chunk")
    core.add_chunk(chunk, observation_time=0.0, now=delay)
    for k in range(5):
        now = delay + 0.1 * k
        cmd = core.tick(now, start)
        assert np.all(np.isfinite(cmd.target_pose))
        assert np.linalg.norm(cmd.target_pose[:3, 3] - start[:3, 3]) <= LIMITS.max_translation_per_step + 1e-9
        lo, hi = np.array(LIMITS.workspace_min), np.array(LIMITS.workspace_max)
        assert np.all(cmd.target_pose[:3, 3] >= lo - 1e-9) and np.all(cmd.target_pose[:3, 3] <= hi + 1e-9)
