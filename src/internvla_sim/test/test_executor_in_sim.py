"""The executor core driving the simulated arms without ROS: holds that hold under gravity.

A hold must repeat the last *commanded* joint targets. Re-commanding the measured joints each cycle
(what the executor did before) lets a position-controlled arm sink by its gravity sag at every cycle;
the contrast case below proves the simulator shows that failure, so the first test can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from internvla_core.embodiments import get_embodiment
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.kinematics import IKSolver
from internvla_core.robot_assets import robot_description
from internvla_core.safety import SafetyLimits
from internvla_sim.env import SimEnv

EMBODIMENT = {"franka": "franka_real", "widowx": "widowx_bridge"}
HOLD_SECONDS = 60.0  # half of it under e-stop


def _executor(env: SimEnv) -> ExecutorCore:
    ik = IKSolver.from_description(robot_description(env.robot.description))
    config = ExecutorConfig(mode="chunk", control_period=env.control_dt, limits=SafetyLimits())
    return ExecutorCore(get_embodiment(EMBODIMENT[env.robot.robot]), config, ik)


def _tcp(env: SimEnv) -> np.ndarray:
    hand = env.hand_pose()
    return hand[:3, 3] + hand[:3, :3] @ np.array(env.robot.tcp_offset)


def _hold_for(env: SimEnv, core: ExecutorCore, seconds: float, estop: bool = False) -> float:
    """Tick the executor (every tick a hold) for ``seconds``; the largest TCP drift from the start [m]."""
    start, worst = _tcp(env), 0.0
    for _ in range(int(round(seconds / env.control_dt))):
        command = core.tick(env.time, env.hand_pose(), env.arm_positions(), estop=estop)
        assert command.hold
        if command.joint_targets is not None:
            env.apply_joint_targets(command.joint_targets)
        env.step()
        worst = max(worst, float(np.linalg.norm(_tcp(env) - start)))
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("robot", ["franka", "widowx"])
def test_holds_keep_the_end_effector_within_a_millimetre_for_a_minute_under_gravity(robot):
    env = SimEnv("pick_green", seed=0, robot=robot, wrist=False, width=64, height=48)
    core = _executor(env)
    core.reset(env.time)
    for _ in range(5):  # let the arm settle on its home targets
        env.step()
    # before anything was commanded the hold sends nothing: the controller keeps its own setpoint
    assert _hold_for(env, core, 10.0) < 1e-3
    # move 4 cm down and 2 cm sideways, then the chunk runs out: "no chunk covers", watchdog, e-stop
    now = env.time
    core.add_chunk(np.tile([0.0, 0.0, -0.01, 0.0, 0.0, 0.0, 1.0], (4, 1)), now, now)
    for _ in range(4):
        command = core.tick(env.time, env.hand_pose(), env.arm_positions())
        assert not command.hold
        env.apply_joint_targets(command.joint_targets)
        env.step()
    _hold_for(env, core, 1.0)  # the arm finishes the last step of the motion
    drift = max(_hold_for(env, core, HOLD_SECONDS / 2), _hold_for(env, core, HOLD_SECONDS / 2, estop=True))
    print(f"{robot}: hold drift over {HOLD_SECONDS:.0f} s: {drift * 1000:.3f} mm")
    assert drift < 1e-3, f"{robot}: end effector drifted {drift * 1000:.2f} mm while holding"
    env.close()


@pytest.mark.slow
def test_re_commanding_the_measured_joints_sags_which_is_why_holds_use_the_setpoint():
    env = SimEnv("pick_green", seed=0, robot="franka", wrist=False, width=64, height=48)
    for _ in range(5):
        env.step()
    start = _tcp(env)
    for _ in range(int(10.0 / env.control_dt)):
        env.apply_joint_targets(env.arm_positions())
        env.step()
    assert np.linalg.norm(_tcp(env) - start) > 0.01
    env.close()
