"""~/recover without ROS: what is missing, steps in order, the first failure ends it, aborted goals once."""

from __future__ import annotations

import pytest

from internvla_core.embodiments import get_embodiment
from internvla_core.execution.recovery import (
    RECOVERED,
    AbortedGoals,
    missing_for,
    recovery_config,
    run_recovery,
    switch_request,
)
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.robot_errors import RobotErrorMonitor, RobotMode, Step


def config(distro: str = "jazzy", **change):
    args = {
        "controller_name": "arm_controller",
        "recovery_controllers": ["joint_state_broadcaster", "", "arm_controller"],
        "error_recovery_action": "/action_server/error_recovery",
        "controller_manager": "/controller_manager",
        "hardware_component": "FrankaHardwareInterface",
        "driver_distro": distro,
        **change,
    }
    return recovery_config(**args)


def latched_core_and_monitor(distro: str = "jazzy"):
    core = ExecutorCore(get_embodiment("franka_real"), ExecutorConfig(mode="chunk", control_period=0.1))
    core.last_commanded_joints = core.last_commanded = object()
    monitor = RobotErrorMonitor(config(distro))
    assert monitor.on_robot_mode(RobotMode.REFLEX)
    return core, monitor


def test_config_dedups_controllers_skips_blanks_and_humble_deactivates_first():
    assert config().controllers == ("arm_controller", "joint_state_broadcaster")
    assert config().steps() == (Step.ERROR_RECOVERY, Step.HARDWARE_ACTIVE, Step.ACTIVATE_CONTROLLERS)
    assert config("humble").steps()[0] == Step.DEACTIVATE_CONTROLLERS
    no_manager = config(controller_manager="")
    assert no_manager.steps() == (Step.ERROR_RECOVERY,)


def test_missing_packages_are_named_for_the_steps_that_need_them():
    steps = config().steps()
    assert (
        missing_for(steps, False, False)
        == "not installed: franka_msgs (ErrorRecovery), controller_manager_msgs"
    )
    assert missing_for(steps, True, True) == ""
    assert missing_for((Step.ERROR_RECOVERY,), True, False) == ""


def test_switch_requests_activate_strictly_and_deactivate_best_effort():
    up = switch_request(Step.ACTIVATE_CONTROLLERS, ["a", "b"])
    down = switch_request(Step.DEACTIVATE_CONTROLLERS, ["a", "b"])
    assert (up.activate, up.deactivate, up.strict) == (("a", "b"), (), True)
    assert (down.activate, down.deactivate, down.strict) == ((), ("a", "b"), False)
    with pytest.raises(ValueError):
        switch_request(Step.ERROR_RECOVERY, ["a"])


def test_a_full_recovery_runs_every_step_in_order_then_holds_from_nothing():
    core, monitor = latched_core_and_monitor("humble")
    ran, lines = [], []
    outcome = run_recovery(
        monitor,
        core,
        "",
        lambda step: (ran.append(step), (True, ""))[1],
        lambda: 5.0,
        on_line=lambda line, ok: lines.append((line, ok)),
    )
    assert outcome.success and outcome.message == RECOVERED
    assert ran == list(config("humble").steps()) and [ok for _, ok in lines] == [True] * len(ran)
    assert outcome.steps[0] == "deactivate_controllers: ok" and not monitor.blocked
    assert core.last_commanded is None and core.last_commanded_joints is None
    assert core.stop_reason == "robot error recovered: waiting for a new chunk"


def test_the_first_failed_step_ends_the_recovery_and_the_error_stays():
    core, monitor = latched_core_and_monitor()
    ran = []

    def run_step(step):
        ran.append(step)
        return (False, "no action server") if step == Step.ERROR_RECOVERY else (True, "")

    outcome = run_recovery(monitor, core, "", run_step, lambda: 1.0)
    assert not outcome.success and ran == [Step.ERROR_RECOVERY]
    assert outcome.steps == ["error_recovery: failed (no action server)"]
    assert monitor.blocked and "recovery failed at error_recovery" in outcome.message


def test_a_refused_recovery_runs_nothing():
    core, monitor = latched_core_and_monitor()
    outcome = run_recovery(monitor, core, "not installed: franka_msgs", lambda s: 1 / 0, lambda: 0.0)
    assert outcome.message == "recovery refused: not installed: franka_msgs" and not outcome.steps
    monitor.on_robot_mode(RobotMode.USER_STOPPED)
    outcome = run_recovery(monitor, core, "", lambda s: 1 / 0, lambda: 0.0)
    assert not outcome.success and "user stop is still pressed" in outcome.message


def test_an_aborted_goal_counts_once_and_memory_stays_bounded():
    seen = AbortedGoals(capacity=3)
    assert seen.is_new(b"a") and not seen.is_new(b"a")
    for goal in (b"b", b"c", b"d", b"e"):
        assert seen.is_new(goal)
    assert len(seen) <= 4
