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


def test_nan_chunks_are_refused_and_estop_before_any_command_holds_the_measured_pose():
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


def assert_bounded(cmd, previous, measured) -> None:
    """Each command moves the setpoint at most one step from the previous one (or from the measured pose
    on a re-synchronisation), stays near the measured pose and inside the workspace."""
    lo, hi = np.array(LIMITS.workspace_min), np.array(LIMITS.workspace_max)
    assert np.all(np.isfinite(cmd.target_pose))
    reference = measured if (cmd.resynced or previous is None) else previous
    if not cmd.hold:
        assert (
            np.linalg.norm(cmd.target_pose[:3, 3] - reference[:3, 3])
            <= LIMITS.max_translation_per_step + 1e-6
        )
        _, angle = matrix_to_axis_angle(cmd.target_pose[:3, :3] @ reference[:3, :3].T)
        assert angle <= LIMITS.max_rotation_per_step + 1e-6
    tracking = ExecutorConfig().max_tracking_error + LIMITS.max_translation_per_step
    assert np.linalg.norm(cmd.target_pose[:3, 3] - measured[:3, 3]) <= tracking + 1e-6
    assert np.all(cmd.target_pose[:3, 3] >= lo - 1e-6) and np.all(cmd.target_pose[:3, 3] <= hi + 1e-6)
    assert cmd.gripper_opening is None or 0.0 <= cmd.gripper_opening <= 1.0


@settings(max_examples=80, deadline=None)
@given(
    chunk=arrays(np.float64, (8, 7), elements=anything),
    delay=st.floats(0, 0.5),
    mode=st.sampled_from(["chunk", "ensemble"]),
    embodiment=st.sampled_from(["widowx_bridge", "franka_real", "google_robot"]),
)
def test_for_any_chunk_and_timing_no_command_leaves_the_limits(chunk, delay, mode, embodiment):
    core = make(mode, embodiment)
    core.add_chunk(chunk, observation_time=0.0, now=delay)
    previous = None
    for k in range(8):  # the arm never moves: the setpoint runs ahead until the tracking bound re-syncs it
        cmd = core.tick(delay + 0.1 * k, START)
        assert_bounded(cmd, previous, START)
        previous = cmd.target_pose


@settings(max_examples=25, deadline=None)
@given(chunk=arrays(np.float64, (3, 7), elements=st.floats(-0.5, 0.5)))
def test_with_ik_the_forward_kinematics_of_every_command_stays_within_the_limits(panda, chunk):
    core = make("chunk", embodiment="franka_real", ik=panda)
    start = panda.fk(PANDA_HOME)
    core.add_chunk(chunk, 0.0, 0.0)
    previous_pose, previous_joints = None, PANDA_HOME
    for k in range(3):
        cmd = core.tick(0.1 * k, start, joints=PANDA_HOME)
        assert_bounded(cmd, previous_pose, start)
        if cmd.joint_targets is not None:
            reference = PANDA_HOME if cmd.resynced else previous_joints
            assert np.all(np.abs(cmd.joint_targets - reference) <= 0.1 + 1e-12)
            np.testing.assert_allclose(panda.fk(cmd.joint_targets), cmd.target_pose, atol=1e-12)
            previous_joints = cmd.joint_targets
        previous_pose = cmd.target_pose


def test_base_frame_deltas_integrate_on_the_last_commanded_target_while_the_arm_lags():
    core = make()
    core.add_chunk(np.tile(MOVE_X, (4, 1)), 0.0, 0.0)
    sagging = START.copy()
    for k in range(4):
        cmd = core.tick(0.1 * k, sagging)
        np.testing.assert_allclose(cmd.target_pose[:3, 3], START[:3, 3] + [0.01 * (k + 1), 0, 0], atol=1e-12)
        sagging = cmd.target_pose.copy()
        sagging[2, 3] -= 0.01  # the arm reaches 1 cm below every target (gravity): never fed back
    assert core.counters["resyncs"] == 0


def test_the_setpoint_resyncs_to_the_measured_pose_beyond_the_tracking_bound_and_says_so():
    core = make(max_tracking_error=0.03)
    core.add_chunk(np.tile(MOVE_X, (10, 1)), 0.0, 0.0)
    assert not core.tick(0.0, START).resynced  # the first setpoint comes from the arm: not a re-sync
    pushed = pose([0.45, 0.1, 0.4])  # someone moved the arm 10 cm
    cmd = core.tick(0.1, pushed)
    assert cmd.resynced and "resync_tracking_error" in cmd.hits and core.counters["resyncs"] == 1
    np.testing.assert_allclose(cmd.target_pose[:3, 3], [0.46, 0.1, 0.4], atol=1e-12)


def test_holds_keep_the_last_commanded_setpoint_and_never_re_command_the_measured_joints(panda):
    core = make("chunk", embodiment="franka_real", ik=panda)
    start = panda.fk(PANDA_HOME)
    core.add_chunk(np.tile([0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 1.0], (2, 1)), 0.0, 0.0)
    moved = [core.tick(0.1 * k, start, joints=PANDA_HOME) for k in range(2)][-1]
    sagged = moved.joint_targets + 0.01  # measured joints drift under gravity
    for t in (0.2, 0.3, 0.6, 0.9):  # "no chunk covers", then watchdog: every hold is the same setpoint
        held = core.tick(t, panda.fk(sagged), joints=sagged)
        assert held.hold
        np.testing.assert_array_equal(held.joint_targets, moved.joint_targets)
        np.testing.assert_array_equal(held.target_pose, moved.target_pose)
    estop = core.tick(1.0, panda.fk(sagged), joints=sagged, estop=True)
    np.testing.assert_array_equal(estop.joint_targets, moved.joint_targets)
    np.testing.assert_array_equal(core.hold_command("deactivated", panda.fk(sagged), sagged).joint_targets,
                                  moved.joint_targets)  # fmt: skip


def test_a_new_goal_after_stop_starts_from_the_measured_pose():
    core = make()
    core.add_chunk(np.tile(MOVE_X, (3, 1)), 0.0, 0.0)
    core.tick(0.0, START)
    core.stop("stop: goal ended")
    assert core.tick(0.1, START).hold
    elsewhere = pose([0.5, 0.05, 0.35])
    core.add_chunk(np.tile(MOVE_X, (3, 1)), 0.2, 0.2)
    cmd = core.tick(0.2, elsewhere)
    np.testing.assert_allclose(cmd.target_pose[:3, 3], [0.51, 0.05, 0.35], atol=1e-12)
    assert not cmd.resynced and core.counters["resyncs"] == 0  # a goal start is not a tracking fault
