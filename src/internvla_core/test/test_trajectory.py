"""A chunk as one multi-point joint trajectory: the per-tick commands, every point within the limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from internvla_core.embodiments import get_embodiment
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.kinematics import IKSolver
from internvla_core.rotations import matrix_to_axis_angle
from internvla_core.safety import SafetyLimits
from internvla_core.trajectory import (
    ChunkTrajectoryPlanner,
    finite_difference_velocities,
    hermite_peak_speed,
    plan_chunk_trajectory,
)

LIMITS = SafetyLimits(
    workspace_min=(0.2, -0.4, 0.05),
    workspace_max=(0.7, 0.4, 0.7),
    max_translation_per_step=0.02,
    max_rotation_per_step=0.1,
    max_joint_velocity=0.8,
)
HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
DT = 0.1
MOVE = [0.01, 0.005, -0.004, 0.0, 0.0, 0.02, 1.0]


@pytest.fixture(scope="module")
def panda() -> IKSolver:
    return IKSolver.panda()


def make(ik, watchdog=1.0, blend=3) -> ExecutorCore:
    config = ExecutorConfig(
        mode="chunk",
        control_period=DT,
        watchdog_timeout=watchdog,
        blend_steps=blend,
        limits=LIMITS,
        warmup=False,
    )
    core = ExecutorCore(get_embodiment("franka_real"), config, ik)
    core.reset(0.0)
    return core


def first_tick(core: ExecutorCore, t: float, joints: np.ndarray):
    previous = core.last_commanded_joints if core.last_commanded_joints is not None else joints
    previous = np.array(previous)
    command = core.tick(t, core.ik.fk(joints), joints)
    return command, previous


def test_velocities_are_central_differences_from_the_setpoint_before_and_zero_at_the_end():
    start = np.array([0.0, 1.0])
    positions = np.array([[0.1, 1.0], [0.3, 0.9], [0.6, 0.9]])
    v = finite_difference_velocities(start, positions, 0.1)
    np.testing.assert_allclose(v[0], [(0.3 - 0.0) / 0.2, (0.9 - 1.0) / 0.2])
    np.testing.assert_allclose(v[1], [(0.6 - 0.1) / 0.2, (0.9 - 1.0) / 0.2])
    np.testing.assert_array_equal(v[-1], [0.0, 0.0])
    np.testing.assert_array_equal(finite_difference_velocities(start, positions[:1], 0.1), [[0.0, 0.0]])
    with pytest.raises(ValueError):
        finite_difference_velocities(start, positions, 0.0)


@given(arrays(np.float64, (4, 3), elements=st.floats(-2, 2)))
def test_hermite_peak_speed_bounds_a_dense_sampling_of_the_cubic(values):
    q0, v0, q1, v1 = values
    dt = 0.2
    s = np.linspace(0.0, 1.0, 2001)[:, None]
    m = (q1 - q0) / dt
    speed = np.abs(6 * s * (1 - s) * m + (1 - 4 * s + 3 * s * s) * v0 + (3 * s * s - 2 * s) * v1)
    peak = hermite_peak_speed(q0, v0, q1, v1, dt)
    assert np.all(speed.max(axis=0) <= peak + 1e-9)
    assert np.all(peak <= speed.max(axis=0) + 1e-3 * (1 + peak))


def test_the_plan_is_exactly_what_the_per_tick_stream_commands_and_leaves_the_core_untouched(panda):
    chunk = np.tile(MOVE, (8, 1))
    streamed, planned = make(panda), make(panda)
    for core in (streamed, planned):
        assert core.add_chunk(chunk, 0.0, 0.0) == ""
    first, previous = first_tick(planned, 0.0, HOME)
    plan = plan_chunk_trajectory(planned, first, previous)
    assert plan is not None and len(plan) == 8 and plan.end_reason.startswith("no chunk covers")
    np.testing.assert_allclose(plan.times, DT * np.arange(1, 9))
    joints = HOME
    for i in range(8):  # the plan did not advance ``planned``: its own ticks give the same points
        a = streamed.tick(i * DT, panda.fk(joints), joints)
        b = planned.tick(i * DT, panda.fk(joints), joints) if i else first
        np.testing.assert_allclose(a.joint_targets, plan.positions[i], atol=1e-12)
        np.testing.assert_allclose(b.joint_targets, plan.positions[i], atol=1e-12)
        joints = a.joint_targets
    assert np.all(plan.velocities[-1] == 0.0)
    assert np.linalg.norm(plan.positions[-1] - HOME) > 0.05  # it moves


def test_the_plan_stops_at_the_watchdog_horizon(panda):
    core = make(panda, watchdog=0.35)
    core.add_chunk(np.tile(MOVE, (30, 1)), 0.0, 0.0)
    first, previous = first_tick(core, 0.0, HOME)
    plan = plan_chunk_trajectory(core, first, previous)
    assert len(plan) == 4 and plan.end_reason.startswith("watchdog")  # steps 0..3 are within 0.35 s
    assert len(plan_chunk_trajectory(core, first, previous, max_points=2)) == 2


def test_a_plan_built_a_few_points_at_a_time_equals_the_plan_built_at_once(panda):
    chunk = np.tile(MOVE, (12, 1))
    whole, pieces = make(panda), make(panda)
    for core in (whole, pieces):
        core.add_chunk(chunk, 0.0, 0.0)
    first, previous = first_tick(whole, 0.0, HOME)
    at_once = plan_chunk_trajectory(whole, first, previous)
    first_b, previous_b = first_tick(pieces, 0.0, HOME)
    planner = ChunkTrajectoryPlanner(pieces, first_b, previous_b)
    grown = []
    while not planner.done:
        added = planner.extend(max_points=len(planner) + 3)
        partial = planner.trajectory()
        grown.append(len(partial))
        assert added <= 3 and np.all(partial.velocities[-1] == 0.0)  # every partial plan ends at rest
        if not planner.done:
            assert partial.end_reason == "planning"
    assert grown[0] == 4 and grown == sorted(grown)
    final = planner.trajectory()
    assert final.end_reason == at_once.end_reason and len(final) == len(at_once) == 11  # watchdog 1 s
    np.testing.assert_allclose(final.positions, at_once.positions, atol=1e-12)
    np.testing.assert_allclose(final.velocities, at_once.velocities, atol=1e-12)


def test_a_deadline_in_the_past_still_plans_one_point_per_extend(panda):
    core = make(panda)
    core.add_chunk(np.tile(MOVE, (6, 1)), 0.0, 0.0)
    first, previous = first_tick(core, 0.0, HOME)
    planner = ChunkTrajectoryPlanner(core, first, previous)
    assert planner.extend(deadline=0.0) == 1 and len(planner) == 2  # progress whatever the load
    assert planner.extend(deadline=float("inf")) == 4 and planner.done and len(planner) == 6


def test_no_plan_for_a_hold_or_without_ik(panda):
    core = make(panda)
    hold = core.tick(0.0, panda.fk(HOME), HOME)
    assert hold.hold and plan_chunk_trajectory(core, hold, HOME) is None
    no_ik = make(None)
    no_ik.add_chunk(np.tile(MOVE, (3, 1)), 0.0, 0.0)
    command = no_ik.tick(0.0, panda.fk(HOME), None)
    assert not command.hold and plan_chunk_trajectory(no_ik, command, None) is None


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return matrix_to_axis_angle(b[:3, :3] @ a[:3, :3].T)[1]


def _box_distance(p: np.ndarray) -> float:
    return float(np.linalg.norm(p - np.clip(p, LIMITS.workspace_min, LIMITS.workspace_max)))


motion = st.floats(-0.2, 0.2) | st.floats(-5.0, 5.0) | st.sampled_from([0.0, 0.05, -0.05])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=arrays(np.float64, st.tuples(st.integers(1, 10), st.just(6)), elements=motion),
    gripper=st.floats(0.0, 1.0),
    second=st.booleans(),
)
def test_every_point_keeps_the_per_step_workspace_and_joint_velocity_limits(panda, rows, gripper, second):
    chunk = np.hstack([rows, np.full((len(rows), 1), gripper)])
    core = make(panda)
    core.add_chunk(chunk, 0.0, 0.0)
    first, previous = first_tick(core, 0.0, HOME)
    if second:  # a chunk replacing the first one mid-way: planned from the setpoint reached by then
        core.add_chunk(chunk[::-1].copy(), 0.05, 0.1)
        first, previous = first_tick(
            core, 0.1, first.joint_targets if first.joint_targets is not None else HOME
        )
    plan = plan_chunk_trajectory(core, first, previous)
    if plan is None:
        assert first.hold
        return
    vmax = LIMITS.max_joint_velocity
    before_q = previous
    before_pose = panda.fk(previous)
    for q, pose in zip(plan.positions, plan.poses):
        assert np.all(np.abs(q - before_q) <= vmax * DT + 1e-9)
        reached = panda.fk(q)  # the joints, not just the Cartesian target, keep the limits
        np.testing.assert_allclose(reached, pose, atol=1e-9)
        assert np.linalg.norm(reached[:3, 3] - before_pose[:3, 3]) <= LIMITS.max_translation_per_step + 1e-6
        assert _angle(before_pose, reached) <= LIMITS.max_rotation_per_step + 1e-6
        assert _box_distance(reached[:3, 3]) <= _box_distance(before_pose[:3, 3]) + 1e-6
        before_q, before_pose = q, reached
    assert np.all(np.abs(plan.velocities) <= vmax + 1e-9)
    assert np.all(plan.velocities[-1] == 0.0)
    assert np.all(np.diff(plan.times) > 0) and math.isclose(plan.times[0], DT)
    assert all(g is None or 0.0 <= g <= 1.0 for g in plan.grippers)
