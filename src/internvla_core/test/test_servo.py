"""MoveIt Servo decisions without ROS: command type, message content, frames, timeout, units, status."""

from __future__ import annotations

import numpy as np
import pytest

from internvla_core.rotations import make_pose, quaternion_to_matrix, rotvec_to_matrix
from internvla_core.servo import (
    POSE,
    TWIST,
    ServoConfig,
    ServoSession,
    distro_problem,
    interpret_status,
    pose_command,
    recommended_timeout,
    timeout_problem,
    twist_command,
)

FRANKA = ServoConfig(
    command="pose", planning_frame="fr3_link0", ee_frame="fr3_hand_tcp", incoming_command_timeout=0.25
)


def test_command_type_and_topic_follow_the_chosen_input():
    assert (FRANKA.command_type, FRANKA.topic) == (POSE, "pose_target_cmds")
    twist = ServoConfig(command="twist", planning_frame="b", ee_frame="e", incoming_command_timeout=0.5)
    assert (twist.command_type, twist.topic) == (TWIST, "delta_twist_cmds")
    assert ServoConfig(command="joint", planning_frame="b", ee_frame="e").problems(0.1)


@pytest.mark.parametrize(
    "timeout, period, ok",
    [
        (0.1, 0.1, False),  # Servo's default with a 10 Hz stream: stale between commands
        (0.0, 0.1, False),  # every command stale
        (0.19, 0.1, False),
        (0.25, 0.1, True),  # franka_real, 10 Hz
        (0.5, 0.2, True),  # widowx_bridge, 5 Hz
        (0.3, 0.2, False),
    ],
)
def test_timeout_must_cover_two_command_periods(timeout, period, ok):
    problem = timeout_problem(timeout, period)
    assert (problem == "") is ok
    if not ok:
        assert "incoming_command_timeout" in problem and str(recommended_timeout(period)) in problem
        assert timeout_problem(recommended_timeout(period), period) == ""


def test_recommended_timeouts_for_our_embodiments():
    assert recommended_timeout(0.1) == 0.25 and recommended_timeout(0.2) == 0.5


def test_config_problems_name_each_missing_piece():
    assert FRANKA.problems(0.1) == []
    problems = ServoConfig(command="pose", planning_frame="", ee_frame="", command_in_type="m/s").problems(
        0.1
    )
    text = " ".join(problems)
    assert "planning frame" in text and "end-effector frame" in text and "command_in_type" in text
    assert "incoming_command_timeout" in text


def test_speed_warning_when_our_step_limits_exceed_servo_scales():
    assert FRANKA.speed_warning(0.02, 0.05, 0.1) == ""  # 0.2 m/s, 0.5 rad/s under 0.4 / 0.8
    assert "scale.linear" in FRANKA.speed_warning(0.05, 0.05, 0.1)  # 0.5 m/s


def test_pose_command_is_stamped_in_the_planning_frame_with_the_target_of_the_tip():
    rotation = rotvec_to_matrix(np.array([0.1, -0.2, 0.3]))
    target = make_pose(np.array([0.5, -0.1, 0.3]), rotation)
    cmd = pose_command(target, FRANKA, stamp=12.5)
    assert cmd.frame_id == "fr3_link0" and cmd.stamp == 12.5
    assert cmd.position == pytest.approx((0.5, -0.1, 0.3))
    np.testing.assert_allclose(quaternion_to_matrix(np.array(cmd.orientation)), rotation, atol=1e-12)
    with pytest.raises(ValueError):
        pose_command(np.full((4, 4), np.nan), FRANKA, 0.0)


def test_twist_speed_units_reach_the_target_in_one_period_in_the_planning_frame():
    config = ServoConfig("twist", "wx250s/base_link", "wx250s/ee_gripper_link", 0.5)
    measured = make_pose(np.array([0.3, 0.0, 0.2]), rotvec_to_matrix(np.array([0.0, 0.5, 0.0])))
    step = rotvec_to_matrix(np.array([0.0, 0.0, 0.04]))
    target = make_pose(np.array([0.31, -0.02, 0.2]), step @ measured[:3, :3])
    cmd = twist_command(target, measured, 0.2, config, stamp=3.0)
    assert cmd.frame_id == "wx250s/base_link"
    assert cmd.linear == pytest.approx((0.05, -0.1, 0.0))  # m/s
    assert cmd.angular == pytest.approx((0.0, 0.0, 0.2))  # rad/s about the base z axis
    hold = twist_command(None, measured, 0.2, config, stamp=3.0)
    assert hold.linear == (0.0, 0.0, 0.0) and hold.angular == (0.0, 0.0, 0.0)


def test_unitless_twist_is_a_fraction_of_the_scales_and_never_above_one():
    config = ServoConfig(
        "twist", "b", "e", 0.5, command_in_type="unitless", scale_linear=0.4, scale_rotational=0.8
    )
    measured = make_pose(np.zeros(3))
    slow = twist_command(make_pose(np.array([0.02, 0.0, 0.0])), measured, 0.2, config, 0.0)
    assert slow.linear == pytest.approx((0.25, 0.0, 0.0))  # 0.1 m/s of 0.4
    fast = twist_command(make_pose(np.array([0.3, 0.4, 0.0])), measured, 0.2, config, 0.0)
    assert np.linalg.norm(fast.linear) == pytest.approx(1.0)
    assert fast.linear == pytest.approx((0.6, 0.8, 0.0))  # direction kept


@pytest.mark.parametrize(
    "code, name, level, halted",
    [
        (-1, "INVALID", "error", True),
        (0, "NO_WARNING", "ok", False),
        (1, "DECELERATE_FOR_APPROACHING_SINGULARITY", "warn", False),
        (2, "HALT_FOR_SINGULARITY", "error", True),
        (3, "DECELERATE_FOR_LEAVING_SINGULARITY", "warn", False),
        (4, "DECELERATE_FOR_COLLISION", "warn", False),
        (5, "HALT_FOR_COLLISION", "error", True),
        (6, "JOINT_BOUND", "error", True),
        (42, "UNKNOWN(42)", "error", True),
    ],
)
def test_status_codes_of_moveit_servo(code, name, level, halted):
    info = interpret_status(code, "detail")
    assert (info.name, info.level, info.halted) == (name, level, halted)
    assert info.meaning.endswith("detail")


def test_session_commands_only_after_servo_accepted_the_type_and_retries_refusals():
    session = ServoSession(FRANKA, retry_period=1.0, status_timeout=2.0)
    assert session.wants_switch(0.0) and not session.accepted
    session.request_sent(0.0)
    assert not session.wants_switch(0.5)  # one request in flight
    session.response(False)
    assert not session.accepted and session.refusals == 1
    assert not session.wants_switch(0.9) and session.wants_switch(1.0)
    level, message, _ = session.report(1.0)
    assert level == "warn" and "refused command type pose (2)" in message
    session.request_sent(1.0)
    session.response(True)
    assert session.accepted and not session.wants_switch(5.0)
    level, message, values = session.report(1.5)
    assert level == "warn" and "no ~/status" in message
    session.on_status(0, "", 1.6)
    assert session.report(1.7)[0] == "ok"
    session.on_status(5, "self collision", 1.8)
    level, message, values = session.report(1.9)
    assert level == "error" and "HALT_FOR_COLLISION" in message and values["servo_status_code"] == "5"
    assert session.report(4.0)[0] == "warn"  # status went quiet
    session.reset()  # a new activation asks again
    assert not session.accepted and session.wants_switch(4.0)


@pytest.mark.parametrize("distro, ok", [("jazzy", True), ("kilted", True), ("", True), ("humble", False)])
def test_only_the_jazzy_kilted_servo_api_is_claimed(distro, ok):
    assert (distro_problem(distro) == "") is ok
