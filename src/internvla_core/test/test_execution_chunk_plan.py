"""The chunk trajectory a controller follows: planned once per chunk, anchored at the commanded setpoint,
grown as planning catches up, re-sent every tick in lock-step, followed when ticks are late."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from internvla_core.embodiments import get_embodiment
from internvla_core.execution.chunk_plan import ChunkPlanFollower
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.kinematics import IKSolver
from internvla_core.safety import SafetyLimits

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
DT = 0.05
SMALL = [0.003, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


@pytest.fixture(scope="module")
def panda() -> IKSolver:
    return IKSolver.panda()


def setup(panda, lockstep=False, budget=1.0):
    config = ExecutorConfig(mode="chunk", control_period=DT, warmup=False, limits=SafetyLimits())
    core = ExecutorCore(get_embodiment("franka_real"), config, panda)
    core.reset(0.0)
    return core, ChunkPlanFollower(core, DT, budget, lockstep)


def tick(core, follower, t, joints=HOME):
    """What the node does each tick: follow, core tick, then the plan."""
    follower.follow(t)
    previous, previous_pose = core.last_commanded_joints, core.last_commanded
    command = core.tick(t, core.ik.fk(joints), joints)
    return command, follower.after_tick(command, previous, previous_pose, joints)


def test_a_chunk_is_sent_once_as_one_trajectory_from_the_measured_joints(panda):
    core, follower = setup(panda)
    core.add_chunk(np.tile(SMALL, (12, 1)), 0.0, 0.0)
    _, first = tick(core, follower, 0.0)
    assert first.send and len(first.times) >= 10
    np.testing.assert_allclose(first.times, DT * np.arange(len(first.times)), atol=1e-12)
    np.testing.assert_allclose(first.positions[0], HOME)  # anchor: the setpoint now (nothing commanded)
    assert np.all(first.velocities[0] == 0.0) and np.all(first.velocities[-1] == 0.0)
    for k in range(1, 5):  # the controller plays it: nothing more to send, the rest from "now"
        _, out = tick(core, follower, k * DT)
        assert not out.send
        np.testing.assert_allclose(out.positions, first.positions[k:], atol=1e-12)
    assert core.counters["trajectories"] == 1


def test_lockstep_resends_the_rest_every_tick_without_changing_it(panda):
    core, follower = setup(panda, lockstep=True)
    core.add_chunk(np.tile(SMALL, (12, 1)), 0.0, 0.0)
    _, first = tick(core, follower, 0.0)
    _, second = tick(core, follower, DT)
    assert second.send
    np.testing.assert_allclose(second.positions, first.positions[1:], atol=1e-12)
    np.testing.assert_allclose(second.times, first.times[1:] - DT, atol=1e-12)


def test_a_new_chunk_replans_from_the_setpoint_the_running_trajectory_is_at(panda):
    core, follower = setup(panda)
    core.add_chunk(np.tile(SMALL, (12, 1)), 0.0, 0.0)
    _, first = tick(core, follower, 0.0)
    for k in (1, 2):
        tick(core, follower, k * DT)
    core.add_chunk(np.tile(SMALL, (12, 1)), 3 * DT, 3 * DT)
    _, replanned = tick(core, follower, 3 * DT)
    assert replanned.send and core.counters["trajectories"] == 2
    np.testing.assert_allclose(replanned.positions[0], first.positions[3], atol=1e-9)


def test_a_late_tick_takes_the_setpoint_the_controller_reached(panda):
    core, follower = setup(panda)
    core.add_chunk(np.tile(SMALL, (12, 1)), 0.0, 0.0)
    _, first = tick(core, follower, 0.0)
    follower.follow(4 * DT)  # ticks 1-3 never ran; the controller kept playing
    np.testing.assert_allclose(core.last_commanded_joints, first.positions[4])


def test_a_small_budget_plans_in_slices_and_resends_when_the_plan_doubles(panda):
    core, follower = setup(panda, budget=1e-9)  # one point per tick
    core.add_chunk(np.tile([0.001, 0, 0, 0, 0, 0, 1.0], (20, 1)), 0.0, 0.0)
    sends = []
    for k in range(20):
        _, out = tick(core, follower, k * DT)
        if out.send:
            sends.append(len(follower.plan.planner))
    assert sends[0] < 20 and len(sends) >= 3
    assert all(b >= 2 * a or b == len(follower.plan.planner) for a, b in itertools.pairwise(sends))


def test_a_hold_goes_alone_and_drops_the_plan(panda):
    core, follower = setup(panda)
    core.add_chunk(np.tile(SMALL, (12, 1)), 0.0, 0.0)
    tick(core, follower, 0.0)
    core.stop("goal ended")
    command, out = tick(core, follower, DT)
    assert command.hold and out is None and follower.plan is None
