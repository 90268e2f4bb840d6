"""Gripper goal planning: opening -> controller position, deadband, failures re-send."""

from __future__ import annotations

import math

import pytest

from internvla_core.gripper import GripperGoalPlanner


def test_opening_maps_linearly_onto_the_position_range_and_is_clamped():
    planner = GripperGoalPlanner(closed_position=0.015, open_position=0.037)
    assert planner.position(0.0) == pytest.approx(0.015)
    assert planner.position(1.0) == pytest.approx(0.037)
    assert planner.position(0.5) == pytest.approx(0.026)
    assert planner.position(1.7) == pytest.approx(0.037)
    assert planner.position(-3.0) == pytest.approx(0.015)


def test_inverted_ranges_work_for_grippers_whose_closed_value_is_larger():
    planner = GripperGoalPlanner(closed_position=0.8, open_position=0.0)
    assert planner.position(1.0) == pytest.approx(0.0)
    assert planner.position(0.25) == pytest.approx(0.6)


def test_only_changes_beyond_the_deadband_send_a_new_goal():
    planner = GripperGoalPlanner(0.0, 0.04, max_effort=20.0, deadband=0.1)
    first = planner.plan(1.0)
    assert first is not None and first.position == pytest.approx(0.04) and first.max_effort == 20.0
    assert planner.plan(0.95) is None  # same motion: no goal that would interrupt the running one
    assert planner.plan(0.91) is None
    closing = planner.plan(0.0)
    assert closing is not None and closing.position == pytest.approx(0.0)
    assert planner.plan(0.05) is None


def test_a_failed_goal_is_sent_again():
    planner = GripperGoalPlanner(0.0, 0.04)
    assert planner.plan(0.0) is not None
    assert planner.plan(0.0) is None
    planner.forget()
    assert planner.plan(0.0) is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"closed_position": 0.0, "open_position": 0.0},
        {"closed_position": math.nan, "open_position": 0.04},
        {"closed_position": 0.0, "open_position": 0.04, "max_effort": -1.0},
        {"closed_position": 0.0, "open_position": 0.04, "deadband": 1.0},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        GripperGoalPlanner(**kwargs)


def test_nan_opening_is_refused_and_keeps_the_last_goal():
    planner = GripperGoalPlanner(0.0, 0.04)
    assert planner.plan(1.0) is not None
    with pytest.raises(ValueError, match="finite"):
        planner.plan(math.nan)
    assert planner.plan(1.0) is None


# ----------------------------------------------------------------------------------------- Franka
from internvla_core.gripper import FrankaGripperPlanner, grasp_succeeds  # noqa: E402


def test_franka_closes_with_a_wide_epsilon_grasp_and_opens_with_a_move():
    planner = FrankaGripperPlanner(open_width=0.08, force=30.0, epsilon=0.08)
    close = planner.plan(0.0)
    assert close.kind == "grasp" and close.width == 0.0 and close.force == 30.0
    assert close.epsilon_inner == 0.08 and close.epsilon_outer == 0.08
    assert grasp_succeeds(close.width, close.epsilon_inner, close.epsilon_outer, 0.04)  # a 4 cm block
    assert not grasp_succeeds(0.0, 0.005, 0.005, 0.04)  # franka_gripper's defaults would abort
    opened = planner.plan(1.0)
    assert opened.kind == "move" and opened.width == 0.08


def test_franka_goals_go_out_on_state_changes_only_and_an_aborted_grasp_is_not_retried():
    planner = FrankaGripperPlanner()
    goals = [planner.plan(x) for x in (1.0, 0.9, 0.7, 0.2, 0.1, 0.0, 0.3)]
    assert [g.kind if g else None for g in goals] == ["move", None, None, "grasp", None, None, None]
    report = planner.on_result(goals[3], success=False, final_width=0.0)
    assert "not retried" in report and planner.failures == 1
    assert [planner.plan(0.0) for _ in range(20)] == [None] * 20  # no loop of re-sent grasps
    assert planner.plan(1.0).kind == "move"  # the next decision is a change: sent
    assert planner.plan(0.0).kind == "grasp"
    assert planner.on_result(planner.plan(1.0), success=True) == ""


def test_franka_planner_refuses_bad_settings_and_non_finite_openings():
    with pytest.raises(ValueError):
        FrankaGripperPlanner(open_width=0.0)
    with pytest.raises(ValueError):
        FrankaGripperPlanner(threshold=1.0)
    with pytest.raises(ValueError):
        FrankaGripperPlanner().plan(math.nan)
