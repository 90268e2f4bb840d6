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


def test_a_chunk_stamped_far_in_the_future_is_rejected_and_neither_blocks_later_chunks_nor_the_watchdog():
    """Regression: a future observation stamp used to become the streamer's current chunk, so every later
    chunk counted as "older" and was dropped silently, the watchdog was fed by those dropped chunks and the
    hold blamed the model ("no chunk covers this step")."""
    core = make()
    future = core.add_chunk(np.tile(MOVE_X, (2, 1)), observation_time=1000.0, now=0.0)
    for k in range(3):  # later, well-stamped chunks still drive the arm
        core.add_chunk(np.tile(MOVE_X, (2, 1)), observation_time=0.1 * k, now=0.1 * k)
        assert not core.tick(0.1 * k, START).hold
    assert "future" in future
    assert core.counters["rejected_chunks"] == 1 and core.counters["rejected_future_stamp"] == 1
    # only rejected chunks from now on: the watchdog trips and says so
    reasons = []
    for k in range(3, 10):
        core.add_chunk(np.tile(MOVE_X, (2, 1)), observation_time=1000.0 + k, now=0.1 * k)
        reasons.append(core.tick(0.1 * k, START).reason)
    assert any(r.startswith("watchdog") for r in reasons) and core.counters["watchdog_trips"] == 1
    assert core.counters["rejected_future_stamp"] == 8


def test_stale_nan_and_absurd_state_hold_the_setpoint_and_name_the_input(panda):
    from internvla_core.status import StatusCode

    core = make("chunk", embodiment="franka_real", ik=panda, max_state_age=0.2)
    start = panda.fk(PANDA_HOME)
    core.add_chunk(np.tile([0.0, 0.0, 0.01, 0.0, 0.0, 0.0, 1.0], (20, 1)), 0.0, 0.0)
    moved = core.tick(0.0, start, joints=PANDA_HOME, joints_stamp=0.0)
    assert not moved.hold and moved.status == StatusCode.OK
    stale = core.tick(0.1, start, joints=PANDA_HOME, joints_stamp=-0.15)  # 0.25 s old
    assert stale.hold and stale.status == StatusCode.STALE_STATE and "joint_states is stale" in stale.reason
    np.testing.assert_array_equal(stale.joint_targets, moved.joint_targets)  # the setpoint, not the state
    nan_joints = PANDA_HOME.copy()
    nan_joints[3] = np.nan
    for joints, pose_in, words in (
        (nan_joints, start, "joint_states contains NaN"),
        (PANDA_HOME[:6], start, "joint_states has shape (6,)"),
        (PANDA_HOME + 50.0, start, "outside the joint limits"),
    ):
        held = core.tick(0.1, pose_in, joints=joints, joints_stamp=0.1)
        assert held.hold and held.status == StatusCode.INVALID_STATE and words in held.reason, held.reason
        np.testing.assert_array_equal(held.joint_targets, moved.joint_targets)
    from internvla_core.input_checks import Stamp

    bad_stamp = core.tick(0.1, start, joints=PANDA_HOME, joints_stamp=Stamp(0, 2_000_000_000))
    assert bad_stamp.status == StatusCode.INVALID_STATE and "nanosec" in bad_stamp.reason
    assert core.counters["stale_state_holds"] == 1 and core.counters["invalid_state_holds"] == 4
    assert not core.tick(0.2, start, joints=PANDA_HOME, joints_stamp=0.2).hold  # fresh again: moves


def test_without_ik_a_nan_or_stale_ee_pose_is_named_and_nothing_leaves_as_nan():
    from internvla_core.status import StatusCode

    core = make(max_state_age=0.2)
    core.add_chunk(np.tile(MOVE_X, (10, 1)), 0.0, 0.0)
    bad = START.copy()
    bad[0, 3] = np.inf
    first = core.tick(0.0, bad, pose_stamp=0.0)  # nothing commanded yet and no valid pose: no target at all
    assert first.hold and first.target_pose is None and first.joint_targets is None
    assert first.status == StatusCode.INVALID_STATE and "ee_pose contains NaN or inf" in first.reason
    far = pose([1e6, 0.0, 0.4])
    assert "m from the base" in core.tick(0.0, far, pose_stamp=0.0).reason
    moved = core.tick(0.0, START, pose_stamp=0.0)
    assert not moved.hold
    stale = core.tick(0.1, START, pose_stamp=-0.5)
    assert stale.status == StatusCode.STALE_STATE and "ee_pose is stale" in stale.reason
    np.testing.assert_array_equal(stale.target_pose, moved.target_pose)


def test_chunks_with_bad_stamps_are_refused_per_reason_and_change_nothing():
    from internvla_core.input_checks import Stamp

    core = make()
    assert core.add_chunk(np.tile(MOVE_X, (10, 1)), 0.0, 0.0) == ""
    before = core.tick(0.0, START)
    cases = [
        (Stamp(0, 1_000_000_000), None, "rejected_invalid_stamp"),
        (Stamp(-3, 0), None, "rejected_invalid_stamp"),
        (float("nan"), None, "rejected_invalid_stamp"),
        (0.0, Stamp(0, 1_500_000_000), "rejected_invalid_stamp"),
        (0.1, 10.0, "rejected_future_stamp"),  # header stamp far ahead of the clock
        (0.1, 0.05, "rejected_observation_after_header"),
        (-1.0, None, "rejected_out_of_order"),  # older than the chunk being executed
    ]
    for observation, header, counter in cases:
        reason = core.add_chunk(np.tile([-0.02, 0, 0, 0, 0, 0, 0.0], (10, 1)), observation, 0.1, header)
        assert reason and core.counters[counter] >= 1, (observation, header, counter)
    assert core.counters["rejected_chunks"] == len(cases) and core.counters["chunks"] == 1
    assert core.last_rejection.startswith("out_of_order")
    # none of them reached the executed chunk or fed the watchdog
    cmd = core.tick(0.1, START)
    np.testing.assert_allclose(cmd.target_pose[:3, 3], before.target_pose[:3, 3] + [0.01, 0, 0], atol=1e-12)
    assert core.last_chunk_time == 0.0
    # a zero header stamp is "not given" (ROS convention); within the tolerance is accepted
    assert core.add_chunk(np.tile(MOVE_X, (10, 1)), 0.2, 0.2, Stamp(0, 0)) == ""
    assert core.add_chunk(np.tile(MOVE_X, (10, 1)), 0.5, 0.3, 0.55) == ""


def test_the_estop_latches_until_released_and_motion_resumes_only_with_a_new_chunk():
    from internvla_core.status import StatusCode

    core = make()
    core.add_chunk(np.tile(MOVE_X, (30, 1)), 0.0, 0.0)
    moved = core.tick(0.0, START)
    held = core.tick(0.1, START, estop=True)
    assert held.hold and held.status == StatusCode.ESTOP and core.counters["estops"] == 1
    core.add_chunk(np.tile(MOVE_X, (30, 1)), 0.2, 0.2)
    again = core.tick(0.2, START, estop=False)  # the input turning false does not release it
    assert again.hold and again.status == StatusCode.ESTOP
    np.testing.assert_array_equal(again.target_pose, moved.target_pose)
    assert "still true" in core.release_estop(input_active=True) and core.estop_latched
    assert core.release_estop() == "" and not core.estop_latched
    after = core.tick(0.3, START)  # the chunks from before the release are dropped
    assert after.hold and after.status == StatusCode.HOLDING and "e-stop released" in after.reason
    core.add_chunk(np.tile(MOVE_X, (30, 1)), 0.4, 0.4)
    resumed = core.tick(0.4, START)
    assert not resumed.hold and not resumed.resynced  # from the measured pose: a new start
    np.testing.assert_allclose(resumed.target_pose[:3, 3], START[:3, 3] + [0.01, 0, 0], atol=1e-12)


def test_every_command_carries_a_status_code():
    from internvla_core.status import StatusCode

    core = make(max_tracking_error=0.03)
    assert core.tick(0.0, START).status == StatusCode.HOLDING
    core.add_chunk(np.tile([0.05, 0, 0, 0, 0, 0, 1.0], (3, 1)), 0.0, 0.0)
    clipped = core.tick(0.0, START)
    assert clipped.status == StatusCode.LIMIT_CLIPPED and "max_translation_per_step" in clipped.hits
    assert core.tick(0.1, pose([0.45, 0.1, 0.4])).status == StatusCode.RESYNCED
    assert core.tick(0.3, START).status == StatusCode.HOLDING  # ran out
    assert core.tick(0.9, START).status == StatusCode.WATCHDOG
    core.stop("abort: model failed")
    assert core.tick(1.0, START).status == StatusCode.ABORTED


def test_stamps_half_a_period_off_the_start_map_to_one_step_whatever_their_float_noise():
    """5 Hz, activation at 0.0, observations at 0.1, 0.3, 0.5 ...: the chunk's observation stamp and the
    tick's clock reading of the same instant must give the same step, or every other action is lost."""
    core = ExecutorCore(get_embodiment("widowx_bridge"), ExecutorConfig(mode="ensemble", control_period=0.2))
    for k in range(50):
        exact = 0.1 + 0.2 * k
        noisy = [
            exact,
            np.nextafter(exact, 0.0),
            np.nextafter(exact, 1.0),
            round(exact, 9),
            sum([0.1] + [0.2] * k),
        ]
        assert len({core.step_of(t) for t in noisy}) == 1, (k, [core.step_of(t) for t in noisy])
    core.reset(0.0)
    actions = 0
    for k in range(1, 30):  # lock-step: a one-row chunk per observation, ticked at its stamp
        stamp = 0.1 + 0.2 * k
        core.add_chunk(np.array([[0.001, 0, 0, 0, 0, 0, 1.0]]), stamp, float(np.float32(stamp)))
        actions += not core.tick(sum([0.1] + [0.2] * k), START).hold
    assert actions == 29


def test_gripper_settle_holds_the_arm_after_each_gripper_change_while_the_gripper_follows():
    core = make(gripper_settle_steps=2)
    chunk = np.tile(MOVE_X, (8, 1))
    chunk[2:6, 6] = 0.0  # close at row 2, open again at row 6
    cmds = []
    for i in range(8):  # a fresh chunk every step (the rest of this one), as the policy sends them
        core.add_chunk(chunk[i:], observation_time=0.1 * i, now=0.1 * i)
        cmds.append(core.tick(0.1 * i, START))
    x = [c.target_pose[0, 3] - START[0, 3] for c in cmds]
    np.testing.assert_allclose(x, [0.01, 0.02, 0.02, 0.02, 0.03, 0.04, 0.04, 0.04], atol=1e-9)
    assert [c.gripper_opening for c in cmds] == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert [c.reason for c in cmds].count("gripper settling") == 4 and not any(c.hold for c in cmds)
    off = make()  # the default: no settling, the arm moves on at every step
    off.add_chunk(chunk, observation_time=0.0, now=0.0)
    assert off.tick(0.2, START).target_pose[0, 3] - START[0, 3] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="gripper_settle_steps"):
        ExecutorConfig(gripper_settle_steps=-1)


def test_a_settling_step_ends_a_watchdog_trip_like_any_command():
    core = make(gripper_settle_steps=2)
    core.add_chunk(np.tile(MOVE_X, (2, 1)), observation_time=0.0, now=0.0)
    core.tick(0.0, START)
    assert "watchdog" in core.tick(0.4, START).reason  # first trip
    closing = np.tile(MOVE_X, (2, 1))
    closing[:, 6] = 0.0
    core.add_chunk(closing, observation_time=0.5, now=0.5)
    assert core.tick(0.5, START).reason == "gripper settling"
    assert "watchdog" in core.tick(0.9, START).reason  # the chunk went stale again: a second trip
    assert core.counters["watchdog_trips"] == 2


def test_execute_steps_commits_chunk_mode_to_a_chunk_and_says_when_a_fresh_one_is_due():
    core = make(execute_steps=4, blend_steps=0)
    assert core.chunk_due(0.0)  # nothing running yet
    first = np.tile(MOVE_X, (16, 1))
    core.add_chunk(first, observation_time=0.0, now=0.0)
    stay = np.tile([0, 0, 0, 0, 0, 0, 1.0], (16, 1))
    xs = []
    for i in range(6):  # a fresh chunk "stay still" every step: ignored until 4 rows of the first ran
        if i:
            core.add_chunk(stay[i:], observation_time=0.1 * i, now=0.1 * i)
        xs.append(core.tick(0.1 * i, START).target_pose[0, 3] - START[0, 3])
    np.testing.assert_allclose(xs, [0.01, 0.02, 0.03, 0.04, 0.04, 0.04], atol=1e-9)
    # the chunk of step 4 took over at step 4 (the first one's 4 rows had run): committed to it for 4..7
    assert [core.chunk_due(0.1 * i) for i in (6, 7, 8)] == [False, False, True]
    assert make(mode="ensemble").chunk_due(0.0) and make(mode="ensemble").chunk_due(5.0)
    assert not make().chunk_due(0.0)  # chunk mode without a commitment streams what arrived: no wait
    for mode in ("ensemble", "rtc"):
        with pytest.raises(ValueError, match="execute_steps"):
            ExecutorConfig(mode=mode, execute_steps=2)
    with pytest.raises(ValueError, match="execute_steps"):
        ExecutorConfig(mode="chunk", execute_steps=-1)


def test_gripper_commitment_carries_a_close_through_the_hold_into_the_lift_in_ensemble_mode():
    """A policy that closes, then (re-queried at the same still picture) wants to reopen and never lift:
    with gripper_commit_steps the chunk that closed runs on, un-ensembled, into its lift."""
    approach = np.tile(MOVE_X, (8, 1))
    close_then_lift = np.tile([0, 0, 0, 0, 0, 0, 0.0], (8, 1))
    close_then_lift[3:, 2] = 0.01  # hold 3 steps closed, then rise (widowx base frame: +z up)
    reopen = np.tile([0, 0, 0, 0, 0, 0, 1.0], (8, 1))  # what the policy says at every later picture
    chunks = [approach, close_then_lift, close_then_lift[1:], reopen, reopen, reopen, reopen]

    def run(core) -> list:
        cmds = []
        for i, chunk in enumerate(chunks):
            core.add_chunk(chunk, observation_time=0.1 * i, now=0.1 * i)
            cmds.append(core.tick(0.1 * i, START))
        return cmds

    core = make(mode="ensemble", gripper_commit_steps=4)
    cmds = run(core)
    # the ensemble closes at step 2; steps 2-5 are rows 0-3 of that step's chunk: closed, the lift at 4
    assert [c.gripper_opening for c in cmds[2:6]] == [0.0, 0.0, 0.0, 0.0]
    z = [c.target_pose[2, 3] - START[2, 3] for c in cmds]
    np.testing.assert_allclose(z[2:6] - z[1], [0.0, 0.0, 0.01, 0.02], atol=1e-9)
    assert cmds[6].gripper_opening == 1.0 and core.commitment.commitments == 2  # the reopen: a new one
    plain = run(make(mode="ensemble"))  # without it the ensemble reopens two steps after the close
    assert plain[2].gripper_opening == 0.0 and plain[4].gripper_opening == 1.0
    with pytest.raises(ValueError, match="gripper_commit_steps"):
        ExecutorConfig(mode="chunk", gripper_commit_steps=2)


def test_ensemble_horizon_overrides_the_embodiments_number_of_averaged_chunks():
    assert make(mode="ensemble", embodiment="franka_real").ensembler.horizon == 3  # the embodiment's H
    core = make(mode="ensemble", embodiment="franka_real", ensemble_horizon=8)
    assert core.ensembler.horizon == 8
    core.stop("goal ended")
    assert core.ensembler.horizon == 8  # a fresh ensembler keeps the setting
