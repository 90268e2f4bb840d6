"""The executor step without ROS: modes, watchdog, e-stop, NaN, frames, and the per-step guarantee."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from internvla_core.embodiments import get_embodiment
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.kinematics import IKSolver
from internvla_core.rotations import matrix_to_axis_angle, rpy_to_matrix
from internvla_core.safety import SafetyLimits

LIMITS = SafetyLimits(
    workspace_min=(0.2, -0.4, 0.05),
    workspace_max=(0.7, 0.4, 0.7),
    max_translation_per_step=0.02,
    max_rotation_per_step=0.1,
)
PANDA_HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
MOVE_X = [0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]  # 1 cm along x, gripper open
anything = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.floats(-1e6, 1e6) | st.floats(-1, 1)


@pytest.fixture(scope="module")
def panda() -> IKSolver:
    return IKSolver.panda()


def pose(xyz, rpy=(math.pi, 0.0, 0.0)) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rpy_to_matrix(*rpy)
    out[:3, 3] = xyz
    return out


def make(mode="chunk", embodiment="widowx_bridge", ik=None, **config) -> ExecutorCore:
    cfg = ExecutorConfig(mode=mode, control_period=0.1, watchdog_timeout=0.35, limits=LIMITS, **config)
    return ExecutorCore(get_embodiment(embodiment), cfg, ik)


START = pose([0.45, 0.0, 0.4])


def test_chunk_mode_moves_along_the_chunk_then_holds_when_it_runs_out_then_the_watchdog_trips():
    core = make()
    assert core.add_chunk(np.tile(MOVE_X, (3, 1)), observation_time=0.0, now=0.0) == ""
    cmd = core.tick(0.0, START)
    assert not cmd.hold and cmd.gripper_opening == 1.0
    np.testing.assert_allclose(cmd.target_pose[:3, 3], START[:3, 3] + [0.01, 0, 0])
    assert not core.tick(0.1, START).hold and not core.tick(0.2, START).hold
    assert core.tick(0.3, START).reason.startswith("no chunk covers")
    for t in (0.4, 0.5):
        assert "watchdog" in core.tick(t, START).reason
    assert core.counters["watchdog_trips"] == 1 and core.counters["watchdog_holds"] == 2


def test_late_chunks_start_at_the_row_for_now():
    core = make()
    chunk = np.zeros((5, 7))
    chunk[:, 0] = [0.001, 0.002, 0.003, 0.004, 0.005]
    core.add_chunk(chunk, observation_time=0.0, now=0.2)  # two steps of inference latency
    cmd = core.tick(0.2, START)
    assert cmd.target_pose[0, 3] - START[0, 3] == pytest.approx(0.003)


def test_ensemble_mode_averages_the_chunks_for_this_step():
    core = make("ensemble")  # WidowX: horizon 7
    core.add_chunk(np.tile(MOVE_X, (4, 1)), 0.0, 0.0)
    second = np.tile(MOVE_X, (4, 1))
    second[:, 0] = 0.005
    core.add_chunk(second, 0.1, 0.1)
    cmd = core.tick(0.1, START)
    # rows (0.01, .., 1) and (0.005, .., 1) have cosine ~1: nearly equal weights
    assert 0.0074 < cmd.target_pose[0, 3] - START[0, 3] < 0.0076
    assert core.tick(0.1, START, estop=True).hold


def test_nan_chunks_are_refused_and_estop_holds_at_the_measured_pose():
    core = make("ensemble")
    assert "NaN" in core.add_chunk(np.full((4, 7), np.nan), 0.0, 0.0)
    assert "not T x 7" in core.add_chunk(np.zeros((4, 6)), 0.0, 0.0)
    assert core.counters["rejected_chunks"] == 2
    assert core.tick(0.0, START).reason == "waiting for the first chunk"
    core.add_chunk(np.zeros((4, 7)), 0.0, 0.0)
    held = core.tick(0.0, START, estop=True)
    assert held.hold and held.reason == "e-stop" and np.array_equal(held.target_pose, START)
    assert held.gripper_opening is None  # a hold leaves the gripper as it is


def test_stop_drops_the_buffer_and_holds_with_the_goal_end_reason():
    core = make()
    core.add_chunk(np.tile(MOVE_X, (10, 1)), 0.0, 0.0)
    assert not core.tick(0.0, START).hold
    core.stop("stop: cancelled")
    assert core.tick(0.1, START).reason == "stop: cancelled"


def test_tool_frame_embodiments_apply_deltas_in_the_tool_axes_from_the_last_command():
    core = make(embodiment="franka_real")
    rotated = pose([0.45, 0.0, 0.4], (0.0, 0.0, math.pi / 2))  # tool x = base y
    core.add_chunk(np.tile(MOVE_X, (3, 1)), 0.0, 0.0)
    first = core.tick(0.0, rotated)
    np.testing.assert_allclose(first.target_pose[:3, 3], [0.45, 0.01, 0.4], atol=1e-12)
    # the arm has not moved yet (measured = rotated): the next delta builds on the commanded pose
    second = core.tick(0.1, rotated)
    np.testing.assert_allclose(second.target_pose[:3, 3], [0.45, 0.02, 0.4], atol=1e-12)


def test_libero_warm_up_holds_still_with_the_gripper_open_unless_switched_off():
    core = make(embodiment="franka_libero")
    core.add_chunk(np.tile([0.2, 0, 0, 0, 0, 0, 0.0], (20, 1)), 0.0, 0.0)
    cmd = core.tick(0.0, START)
    np.testing.assert_allclose(cmd.target_pose, START) and cmd.gripper_opening == 1.0
    core = make(embodiment="franka_libero", warmup=False)
    core.add_chunk(np.tile([0.2, 0, 0, 0, 0, 0, 0.0], (20, 1)), 0.0, 0.0)
    cmd = core.tick(0.0, START)
    assert cmd.target_pose[0, 3] - START[0, 3] == pytest.approx(0.01)  # 0.2 * 0.05 m
    assert cmd.gripper_opening == 0.0


def test_with_ik_joint_targets_respect_velocity_limits_and_reach_the_limited_pose(panda):
    core = make("ensemble", embodiment="franka_real", ik=panda)
    start = panda.fk(PANDA_HOME)
    core.add_chunk(np.tile([0.05, 0.0, -0.05, 0.0, 0.0, 0.0, 0.0], (4, 1)), 0.0, 0.0)
    cmd = core.tick(0.0, start, joints=PANDA_HOME)
    assert not cmd.hold and cmd.joint_targets is not None and cmd.gripper_opening == 0.0
    assert np.all(np.abs(cmd.joint_targets - PANDA_HOME) <= 1.0 * 0.1 + 1e-12)
    assert "max_translation_per_step" in cmd.hits
    np.testing.assert_allclose(panda.fk(cmd.joint_targets), cmd.target_pose, atol=1e-12)
    assert np.linalg.norm(cmd.target_pose[:3, 3] - start[:3, 3]) == pytest.approx(0.02, abs=1e-3)


def test_seam_rate_limit_reaches_the_executor_for_motion_but_not_the_gripper():
    core = make(seam_max_change=0.002)
    core.add_chunk(np.tile([0.0, 0, 0, 0, 0, 0, 1.0], (5, 1)), 0.0, 0.0)
    core.tick(0.0, START)
    core.add_chunk(np.tile([0.01, 0, 0, 0, 0, 0, 0.0], (5, 1)), 0.1, 0.1)
    cmd = core.tick(0.1, START)
    assert cmd.target_pose[0, 3] - START[0, 3] == pytest.approx(0.002)
    assert cmd.gripper_opening == 0.0


def assert_bounded(cmd, measured) -> None:
    lo, hi = np.array(LIMITS.workspace_min), np.array(LIMITS.workspace_max)
    assert np.all(np.isfinite(cmd.target_pose))
    assert np.linalg.norm(cmd.target_pose[:3, 3] - measured[:3, 3]) <= LIMITS.max_translation_per_step + 1e-6
    _, angle = matrix_to_axis_angle(cmd.target_pose[:3, :3] @ measured[:3, :3].T)
    assert angle <= LIMITS.max_rotation_per_step + 1e-6
    assert np.all(cmd.target_pose[:3, 3] >= lo - 1e-6) and np.all(cmd.target_pose[:3, 3] <= hi + 1e-6)
    assert cmd.gripper_opening is None or 0.0 <= cmd.gripper_opening <= 1.0


@settings(max_examples=80, deadline=None)
@given(
    chunk=arrays(np.float64, (4, 7), elements=anything),
    delay=st.floats(0, 0.5),
    mode=st.sampled_from(["chunk", "ensemble"]),
    embodiment=st.sampled_from(["widowx_bridge", "franka_real", "google_robot"]),
)
def test_for_any_chunk_and_timing_no_command_leaves_the_limits(chunk, delay, mode, embodiment):
    core = make(mode, embodiment)
    core.add_chunk(chunk, observation_time=0.0, now=delay)
    for k in range(5):
        assert_bounded(core.tick(delay + 0.1 * k, START), START)


@settings(max_examples=25, deadline=None)
@given(chunk=arrays(np.float64, (3, 7), elements=st.floats(-0.5, 0.5)))
def test_with_ik_the_forward_kinematics_of_every_command_stays_within_the_limits(panda, chunk):
    core = make("chunk", embodiment="franka_real", ik=panda)
    start = panda.fk(PANDA_HOME)
    core.add_chunk(chunk, 0.0, 0.0)
    for k in range(3):
        cmd = core.tick(0.1 * k, start, joints=PANDA_HOME)
        assert_bounded(cmd, start)
        if cmd.joint_targets is not None:
            assert np.all(np.abs(cmd.joint_targets - PANDA_HOME) <= 0.1 + 1e-12)
            np.testing.assert_allclose(panda.fk(cmd.joint_targets), cmd.target_pose, atol=1e-12)
