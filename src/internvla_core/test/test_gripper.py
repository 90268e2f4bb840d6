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
