"""The simulator's lock-step clock and gripper goal rules, without ROS or MuJoCo."""

from __future__ import annotations

import threading
import time

import pytest

from internvla_core.sim_stepping import (
    MOVE_TOLERANCE,
    LockstepClock,
    gripper_goal_check,
    gripper_goal_outcome,
)


def test_a_command_stamped_for_the_step_lets_the_simulation_advance_at_once():
    clock = LockstepClock(timeout=5.0)
    threading.Timer(0.05, clock.command, args=(1.0,)).start()
    start = time.monotonic()
    assert clock.wait_for_command(1.0, republish=lambda: None)
    assert time.monotonic() - start < 2.0 and clock.timeouts == 0


def test_an_older_command_does_not_count_and_the_wait_times_out_republishing_meanwhile():
    clock = LockstepClock(timeout=0.35, republish_period=0.1)
    clock.command(0.9)  # answered the previous step, not this one
    republished = []
    assert not clock.wait_for_command(1.0, republish=lambda: republished.append(1))
    assert clock.timeouts == 1 and 2 <= len(republished) <= 4


def test_stop_wakes_the_waiting_loop_without_counting_a_timeout_and_start_rearms_it():
    clock = LockstepClock(timeout=30.0)
    threading.Timer(0.05, clock.stop).start()
    assert not clock.wait_for_command(1.0, republish=lambda: None)
    assert clock.timeouts == 0 and clock.stopped
    clock.start()
    clock.command(2.0)
    assert clock.wait_for_command(2.0, republish=lambda: None)


def test_the_fingers_count_as_settled_after_three_steps_without_change():
    clock = LockstepClock(timeout=1.0)
    widths = [0.08, 0.06, 0.041] + [0.0401] * 10

    def step() -> None:
        time.sleep(0.2)  # the test is waiting by then
        for width in widths:
            time.sleep(0.02)
            clock.stepped(width)

    threading.Thread(target=step, daemon=True).start()
    assert clock.wait_settled(timeout=5.0) == pytest.approx(0.0401)


def test_settling_gives_none_on_timeout_or_stop():
    clock = LockstepClock(timeout=1.0)
    assert clock.wait_settled(timeout=0.1) is None
    threading.Timer(0.05, clock.stop).start()
    assert clock.wait_settled(timeout=5.0) is None


def test_goal_widths_outside_the_hand_are_refused():
    assert gripper_goal_check(0.04, 0.08) == ""
    assert "outside [0, 0.080]" in gripper_goal_check(0.09, 0.08)
    assert gripper_goal_check(float("nan"), 0.08) != ""


def test_a_grasp_succeeds_only_within_its_epsilons_and_a_move_within_the_tolerance():
    assert gripper_goal_outcome("grasp", 0.04, 0.041, 0.08, inner=0.005, outer=0.005)[0]
    ok, error, final = gripper_goal_outcome("grasp", 0.0, 0.04, 0.08, inner=0.005, outer=0.005)
    assert not ok and "outside [-0.0050, 0.0050]" in error and final == 0.04
    assert gripper_goal_outcome("move", 0.05, 0.05 + MOVE_TOLERANCE / 2, 0.08)[0]
    assert "blocked" in gripper_goal_outcome("move", 0.05, 0.02, 0.08)[1]
    assert gripper_goal_outcome("move", 0.0, -0.001, 0.08)[2] == 0.0  # squeezed shut reads 0
    assert gripper_goal_outcome("grasp", 0.04, None, 0.08)[:2] == (
        False,
        "the fingers did not settle in time (or the simulator stopped)",
    )
