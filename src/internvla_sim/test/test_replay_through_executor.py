"""The scripted expert's recorded actions, replayed open loop through the executor core, solve the task.

This is the contract between the data the engine records and the executor that runs a policy: actions
are deltas between successive *commanded* targets (``embodiments.delta_between`` of FK of the commanded
joints), and the executor integrates them on its last commanded setpoint. Applied to the measured pose
instead, the arm's tracking error (gravity sag, about 1 cm) accumulates and the replay misses the object;
the contrast test shows that, so the main test can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from internvla_core.embodiments import compose_delta, get_embodiment
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.kinematics import IKSolver
from internvla_core.robot_assets import robot_description
from internvla_core.safety import SafetyLimits
from internvla_sim.env import SimEnv
from internvla_sim.expert import EMBODIMENTS, ScriptedExpert
from internvla_sim.task_family import InfeasibleTaskError, sample_task

# the executor's per-step limits would clip the expert's corrective steps: the test is about frames
WIDE = SafetyLimits(
    workspace_min=(-1.0, -1.0, -0.05),
    workspace_max=(1.0, 1.0, 1.0),
    max_translation_per_step=0.1,
    max_rotation_per_step=0.5,
    max_joint_velocity=10.0,
)


def _expert(robot: str, seed: int):
    """(task, recorded actions) of a successful expert episode, or None (infeasible draw, expert failed)."""
    embodiment = get_embodiment(EMBODIMENTS[robot])
    try:
        task = sample_task(robot, seed)
    except InfeasibleTaskError:
        return None
    env = SimEnv(task, seed, embodiment.control_period, 64, 64, False, robot)
    result = ScriptedExpert(env).run()
    env.close()
    return (task, np.array(result.actions)) if result.success else None


def replay(robot: str, task, seed: int, actions: np.ndarray) -> bool:
    """Stream the actions as one chunk through ExecutorCore into a fresh SimEnv; the task's success."""
    embodiment = get_embodiment(EMBODIMENTS[robot])
    env = SimEnv(task, seed, embodiment.control_period, 64, 64, False, robot)
    ik = IKSolver.from_description(robot_description(env.robot.description))
    config = ExecutorConfig(
        mode="chunk",
        control_period=embodiment.control_period,
        blend_steps=0,
        watchdog_timeout=1e6,
        limits=WIDE,
    )
    core = ExecutorCore(embodiment, config, ik)
    core.reset(env.time)
    core.add_chunk(actions, env.time, env.time)
    for _ in range(len(actions)):
        command = core.tick(env.time, env.hand_pose(), env.arm_positions())
        assert not command.hold, command.reason
        env.apply_joint_targets(command.joint_targets, command.gripper_opening)
        env.step()
    success = env.success()
    env.close()
    return success


@pytest.mark.slow
@pytest.mark.parametrize("robot", ["franka", "widowx"])
def test_expert_actions_replayed_through_the_executor_succeed_as_often_as_the_expert(robot):
    episodes = [(seed, found) for seed in range(8) if (found := _expert(robot, seed)) is not None]
    assert len(episodes) >= 5, "the expert should solve most family draws"
    replayed = [replay(robot, task, seed, actions) for seed, (task, actions) in episodes]
    assert all(replayed), f"{robot}: replay solved {sum(replayed)} of {len(replayed)} expert episodes"


@pytest.mark.slow
def test_the_same_actions_applied_to_the_measured_pose_drift_away():
    """The old executor's reference: each delta on the *measured* pose. The commanded path and the
    achieved one separate by the accumulated tracking error."""
    robot = "franka"
    seed, (task, actions) = next((s, f) for s in range(8) if (f := _expert(robot, s)) is not None)
    embodiment = get_embodiment(EMBODIMENTS[robot])
    env = SimEnv(task, seed, embodiment.control_period, 64, 64, False, robot)
    ik = IKSolver.from_description(robot_description(env.robot.description))
    adapter = embodiment.make_adapter(warmup=False)
    commanded = ik.fk(env.arm_positions())
    worst = 0.0
    for action in actions:
        measured = ik.fk(env.arm_positions())
        delta = adapter.convert(action)
        commanded = compose_delta(commanded, delta)  # what the expert commanded
        target = compose_delta(measured, delta)  # what a measured-pose executor commands
        solution = ik.solve(env.arm_positions(), target)
        env.apply_joint_targets(solution.q, delta.gripper_opening)
        env.step()
        worst = max(worst, float(np.linalg.norm(ik.fk(env.arm_positions())[:3, 3] - commanded[:3, 3])))
    env.close()
    assert worst > 0.02, f"the measured-pose replay stayed within {worst * 1000:.1f} mm of the commanded path"
