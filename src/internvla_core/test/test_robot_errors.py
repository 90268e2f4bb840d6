"""robot_errors: robot modes and aborted goals latch an error; only a requested, complete recovery clears it."""

from __future__ import annotations

import pytest

from internvla_core.robot_errors import RecoveryConfig, RobotErrorMonitor, RobotMode, Step

ARM = ("fr3_arm_controller", "franka_robot_state_broadcaster")


def monitor(**kwargs) -> RobotErrorMonitor:
    return RobotErrorMonitor(RecoveryConfig(controllers=ARM, **kwargs))


def recover(m: RobotErrorMonitor, now: float = 10.0) -> list[Step]:
    problem, steps = m.start_recovery()
    assert problem == ""
    for step in steps:
        m.step_result(step, True)
    m.finish(now)
    return list(steps)


def test_robot_mode_numbers_are_franka_msgs():
    # franka_msgs/msg/FrankaRobotState ROBOT_MODE_* constants
    assert [m.value for m in RobotMode] == list(range(7))
    assert RobotMode.REFLEX == 4 and RobotMode.USER_STOPPED == 5 and RobotMode.AUTOMATIC_ERROR_RECOVERY == 6


@pytest.mark.parametrize(
    "mode, latches",
    [
        (RobotMode.IDLE, False),
        (RobotMode.MOVE, False),
        (RobotMode.AUTOMATIC_ERROR_RECOVERY, False),
        (RobotMode.REFLEX, True),
        (RobotMode.USER_STOPPED, True),
        (RobotMode.GUIDING, True),
        (RobotMode.OTHER, True),
        (42, True),  # a mode this code does not know is not assumed fine
    ],
)
def test_which_modes_latch(mode, latches):
    m = monitor()
    reason = m.on_robot_mode(mode, 1.0)
    assert m.blocked is latches
    assert bool(reason) is latches
    if latches:
        assert m.report()[0] == "error" and reason in m.report()[1]


def test_the_error_stays_when_the_mode_returns_to_normal():
    m = monitor()
    assert "REFLEX" in m.on_robot_mode(RobotMode.REFLEX, 1.0)
    assert m.on_robot_mode(RobotMode.IDLE, 2.0) == "" and m.blocked  # never cleared silently
    assert m.on_robot_mode(RobotMode.MOVE, 3.0) == "" and m.blocked
    assert m.on_robot_mode(RobotMode.USER_STOPPED, 4.0) == ""  # first cause stays the reason
    assert "REFLEX" in m.reason and m.counters["robot_errors"] == 1


def test_aborted_goals_latch_with_their_source():
    m = monitor()
    assert (
        m.on_goal_aborted("franka_gripper/grasp", "goal 1a2b")
        == "franka_gripper/grasp goal aborted (goal 1a2b)"
    )
    assert m.blocked and m.report()[0] == "error"


def test_an_inactive_recovery_controller_latches_others_do_not():
    m = monitor()
    assert m.on_controller_state("some_other_controller", "inactive") == ""
    assert m.on_controller_state("fr3_arm_controller", "active") == "" and not m.blocked
    assert (
        m.on_controller_state("fr3_arm_controller", "inactive") == "controller fr3_arm_controller is inactive"
    )
    assert m.blocked


@pytest.mark.parametrize(
    "config, steps",
    [
        (
            RecoveryConfig(controllers=ARM),  # Jazzy, franka_ros2 v3.3+: the controllers went inactive
            [Step.ERROR_RECOVERY, Step.HARDWARE_ACTIVE, Step.ACTIVATE_CONTROLLERS],
        ),
        (
            RecoveryConfig(controllers=ARM, deactivate_first=True),  # Humble: deactivate first
            [
                Step.DEACTIVATE_CONTROLLERS,
                Step.ERROR_RECOVERY,
                Step.HARDWARE_ACTIVE,
                Step.ACTIVATE_CONTROLLERS,
            ],
        ),
        (RecoveryConfig(hardware_component=""), [Step.ERROR_RECOVERY]),  # older drivers: the action only
        (
            RecoveryConfig(error_recovery=False, hardware_component="", controllers=ARM),
            [Step.ACTIVATE_CONTROLLERS],
        ),
    ],
)
def test_recovery_steps_in_franka_ros2_order(config, steps):
    m = RobotErrorMonitor(config)
    m.on_robot_mode(RobotMode.REFLEX, 1.0)
    assert recover(m) == steps
    assert not m.blocked and m.counters["recoveries"] == 1
    assert m.steps_done == [f"{s.value}: ok" for s in steps]


def test_humble_is_detected_from_the_distro_name():
    assert RecoveryConfig.humble("humble") and RecoveryConfig.humble(" Humble ")
    assert not RecoveryConfig.humble("jazzy") and not RecoveryConfig.humble("")


def test_a_recovery_without_steps_is_refused_at_construction():
    with pytest.raises(ValueError):
        RobotErrorMonitor(RecoveryConfig(error_recovery=False, hardware_component="", controllers=()))


def test_recovery_is_refused_without_an_error_and_while_one_runs():
    m = monitor()
    problem, steps = m.start_recovery()
    assert "nothing to recover" in problem and steps == ()
    m.on_goal_aborted("fr3_arm_controller/follow_joint_trajectory")
    assert m.start_recovery()[0] == ""
    problem, steps = m.start_recovery()
    assert "already running" in problem and steps == ()
    assert m.counters["refused_recoveries"] == 2


@pytest.mark.parametrize(
    "mode, words", [(RobotMode.USER_STOPPED, "user stop"), (RobotMode.GUIDING, "guiding")]
)
def test_recovery_is_refused_while_the_cause_persists(mode, words):
    m = monitor()
    m.on_robot_mode(mode, 1.0)
    problem, steps = m.start_recovery()
    assert words in problem and steps == () and m.state == "error"
    m.on_robot_mode(RobotMode.IDLE, 2.0)  # released: the error is still latched, recovery now allowed
    assert m.blocked
    problem, steps = m.start_recovery()
    assert problem == "" and steps and m.state == "recovering"


def test_a_failed_step_ends_the_recovery_and_keeps_the_error():
    m = monitor()
    m.on_robot_mode(RobotMode.REFLEX, 1.0)
    _, steps = m.start_recovery()
    assert m.step_result(steps[0], True) == "error_recovery: ok"
    line = m.step_result(steps[1], False, "component not found")
    assert line == "hardware_active: failed (component not found)"
    assert m.state == "error" and m.blocked
    assert "REFLEX" in m.reason and "recovery failed at hardware_active" in m.reason
    assert m.counters["failed_recoveries"] == 1 and m.counters["recoveries"] == 0
    with pytest.raises(RuntimeError):
        m.finish(2.0)  # no recovery running any more
    # a new attempt starts from the cause again and can succeed
    assert recover(m)
    assert not m.blocked and m.reason == ""


def test_finish_needs_every_step():
    m = monitor()
    m.on_robot_mode(RobotMode.REFLEX, 1.0)
    _, steps = m.start_recovery()
    m.step_result(steps[0], True)
    with pytest.raises(RuntimeError):
        m.finish(2.0)
    assert m.blocked


def test_modes_during_and_before_the_recovery_are_ignored_new_ones_count():
    m = monitor()
    m.on_robot_mode(RobotMode.REFLEX, 1.0)
    _, steps = m.start_recovery()
    assert m.on_robot_mode(RobotMode.REFLEX, 1.5) == ""  # still REFLEX until ErrorRecovery ran
    assert m.on_goal_aborted("franka_gripper/move") == ""  # the recovery itself aborts goals
    for step in steps:
        m.step_result(step, True)
    m.finish(now=5.0)
    assert m.on_robot_mode(RobotMode.REFLEX, 4.9) == "" and not m.blocked  # in flight from before
    assert m.on_robot_mode(RobotMode.MOVE, 5.1) == "" and not m.blocked
    assert "REFLEX" in m.on_robot_mode(RobotMode.REFLEX, 6.0) and m.blocked  # a new reflex
    assert m.counters["robot_errors"] == 2
