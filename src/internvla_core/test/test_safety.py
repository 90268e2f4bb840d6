"""Safety filter: for ANY input (NaN, inf, huge, non-rotations) no output leaves the limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from internvla_core.rotations import matrix_to_axis_angle, rotvec_to_matrix, rpy_to_matrix
from internvla_core.safety import SafetyFilter, SafetyLimits

LIMITS = SafetyLimits(
    workspace_min=(0.2, -0.4, 0.05),
    workspace_max=(0.7, 0.4, 0.7),
    max_translation_per_step=0.02,
    max_rotation_per_step=0.1,
)
LO, HI = np.array(LIMITS.workspace_min), np.array(LIMITS.workspace_max)
anything = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.floats(-1e6, 1e6) | st.floats(-2, 2)


def pose(xyz, rpy=(math.pi, 0.0, 0.0)) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rpy_to_matrix(*rpy)
    out[:3, 3] = xyz
    return out


def assert_within_limits(out: np.ndarray, current: np.ndarray) -> None:
    assert np.all(np.isfinite(out))
    assert np.all(out[:3, 3] >= LO - 1e-9) and np.all(out[:3, 3] <= HI + 1e-9)
    assert np.linalg.norm(out[:3, 3] - current[:3, 3]) <= LIMITS.max_translation_per_step + 1e-9
    _, angle = matrix_to_axis_angle(out[:3, :3] @ current[:3, :3].T)
    assert angle <= LIMITS.max_rotation_per_step + 1e-6
    np.testing.assert_allclose(out[:3, :3] @ out[:3, :3].T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(out[3], [0, 0, 0, 1])


@settings(max_examples=300, deadline=None)
@given(
    current_xyz=arrays(np.float64, 3, elements=st.floats(0, 1)),
    current_rpy=arrays(np.float64, 3, elements=st.floats(-3, 3)),
    target=arrays(np.float64, (4, 4), elements=anything),
)
def test_no_pose_command_leaves_the_limits_whatever_the_target(current_xyz, current_rpy, target):
    current = pose(LO + current_xyz * (HI - LO), current_rpy)  # the robot is inside the workspace
    out, report = SafetyFilter(LIMITS).limit_pose(current, target)
    assert_within_limits(out, current)
    assert SafetyFilter(LIMITS).violations(current, out) == []
    if not np.all(np.isfinite(target)):
        assert report.held and np.array_equal(out, current) and "NaN or inf" in report.hold_reason


@settings(max_examples=200, deadline=None)
@given(
    current_xyz=arrays(np.float64, 3, elements=st.floats(0, 1)),
    step=arrays(np.float64, 3, elements=st.floats(-0.5, 0.5)),
    rotvec=arrays(np.float64, 3, elements=st.floats(-3, 3)),
)
def test_no_command_leaves_the_limits_for_plausible_rotation_targets(current_xyz, step, rotvec):
    """Real rotation targets (not just the random 4x4s above, which are mostly refused outright)."""
    current = pose(LO + current_xyz * (HI - LO))
    target = current.copy()
    target[:3, 3] += step
    target[:3, :3] = rotvec_to_matrix(rotvec) @ current[:3, :3]
    out, report = SafetyFilter(LIMITS).limit_pose(current, target)
    assert not report.held
    assert_within_limits(out, current)


def test_small_targets_pass_unchanged_and_large_ones_are_scaled_along_the_same_direction():
    current = pose([0.45, 0.0, 0.4])
    target = pose([0.46, 0.005, 0.4], (math.pi, 0.0, 0.05))
    out, report = SafetyFilter(LIMITS).limit_pose(current, target)
    np.testing.assert_allclose(out, target, atol=1e-12)
    assert report.hits == [] and not report.held
    far = pose([0.55, 0.0, 0.4], (math.pi, 0.0, 0.5))
    out, report = SafetyFilter(LIMITS).limit_pose(current, far)
    np.testing.assert_allclose(out[:3, 3], [0.47, 0.0, 0.4], atol=1e-12)
    _, angle = matrix_to_axis_angle(out[:3, :3] @ current[:3, :3].T)
    assert angle == pytest.approx(0.1)
    assert report.hits == ["max_translation_per_step", "max_rotation_per_step"]


def test_targets_outside_the_workspace_stop_at_its_wall():
    current = pose([0.69, 0.0, 0.4])
    out, report = SafetyFilter(LIMITS).limit_pose(current, pose([0.75, 0.0, 0.4]))
    np.testing.assert_allclose(out[:3, 3], [0.7, 0.0, 0.4], atol=1e-12)
    assert "workspace" in report.hits


def test_from_outside_the_workspace_the_arm_may_only_move_back_toward_it():
    current = pose([0.9, 0.0, 0.4])  # e.g. the box was configured smaller than where the arm stands
    out, _ = SafetyFilter(LIMITS).limit_pose(current, pose([1.0, 0.0, 0.4]))
    assert out[0, 3] <= 0.9 and np.linalg.norm(out[:3, 3] - current[:3, 3]) <= 0.02 + 1e-12
    assert SafetyFilter(LIMITS).violations(current, out) == []
    assert SafetyFilter(LIMITS).violations(current, pose([0.91, 0.0, 0.4])) == ["workspace"]


def test_refusals_say_why():
    current = pose([0.45, 0.0, 0.4])
    f = SafetyFilter(LIMITS)
    sheared = current.copy()
    sheared[0, 1] = 0.5
    assert "not a rotation" in f.limit_pose(current, sheared)[1].hold_reason
    mirrored = current.copy()
    mirrored[:3, 0] *= -1
    assert "not a rotation" in f.limit_pose(current, mirrored)[1].hold_reason
    assert "away" in f.limit_pose(current, pose([1e3, 0.0, 0.0]))[1].hold_reason
    bad_current = current.copy()
    bad_current[0, 3] = np.nan
    _, report = f.limit_pose(bad_current, current)
    assert report.held and "current pose" in report.hold_reason


@settings(max_examples=300, deadline=None)
@given(target=arrays(np.float64, 3, elements=anything), dt=st.floats(0.001, 1.0))
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
        assert report.held and np.array_equal(out, current)


def test_joint_commands_of_the_wrong_size_or_period_are_held():
    f = SafetyFilter(SafetyLimits(joint_lower=(-1.0, -1.0), joint_upper=(1.0, 1.0)))
    assert "configured for 2 joints" in f.limit_joints(np.zeros(3), np.ones(3), 0.1)[1].hold_reason
    assert "wrong size" in f.limit_joints(np.zeros(2), np.ones(3), 0.1)[1].hold_reason
    assert "control period" in f.limit_joints(np.zeros(2), np.ones(2), 0.0)[1].hold_reason
    out, report = f.limit_joints(np.zeros(2), np.array([0.05, 2.0]), 0.1)
    np.testing.assert_allclose(out, [0.05, 0.1])  # 1 rad/s * 0.1 s
    assert report.hits == ["joint_position", "joint_velocity"]


@settings(max_examples=200, deadline=None)
@given(opening=anything, low=st.floats(0, 0.5), high=st.floats(0.5, 1))
def test_no_gripper_command_leaves_its_range(opening, low, high):
    out, report = SafetyFilter(SafetyLimits(gripper_min=low, gripper_max=high)).limit_gripper(opening)
    if math.isfinite(opening):
        assert low <= out <= high
    else:
        assert out is None and report.held


@pytest.mark.parametrize(
    "bad",
    [
        {"workspace_min": (1.0, 0.0, 0.0), "workspace_max": (0.0, 1.0, 1.0)},
        {"max_translation_per_step": 0.0},
        {"max_rotation_per_step": float("nan")},
        {"joint_lower": (0.0,), "joint_upper": (1.0, 2.0)},
        {"joint_lower": (1.0,), "joint_upper": (0.0,)},
        {"max_joint_velocity": -1.0},
        {"gripper_min": 0.8, "gripper_max": 0.2},
    ],
)
def test_inconsistent_limits_are_refused_at_construction(bad):
    with pytest.raises(ValueError):
        SafetyLimits(**bad)
