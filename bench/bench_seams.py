"""Seams between chunks on the simulated arms behind the JTC emulation: streaming vs one trajectory per chunk.

    source scripts/env.sh && python bench/bench_seams.py [--robot franka|widowx] [--latency 0.03]

The executor core (chunk mode, IK, limits) drives the MuJoCo arm through
``internvla_sim.controllers.JointTrajectoryControllerEmulation`` (sampled every 2 ms substep). A scripted
"policy" keeps moving: every ``--every`` control steps a new chunk of ``--rows`` rows (constant tool
motion) arrives, computed from the observation ``--every`` steps earlier. Commands reach the controller
``--latency`` seconds after the tick that computed them (transport, IK). Modes:
  stream      one single-point trajectory per tick at time_from_start = one period (the old path),
  trajectory  one multi-point trajectory per chunk (internvla_core.trajectory), replaced by the next.
Prints, after the first second: the end-effector speed at the end of each control period (min, median),
the fraction of substeps with the tool nearly still (< 10 % of the commanded speed), the largest seam
jump of the commanded setpoint (joint space, rad) and the RMS jerk of the tool (m/s^3). Printed, never
asserted (test_sim_node.py asserts the qualitative difference).
"""

from __future__ import annotations

import argparse

import numpy as np

EMBODIMENT = {"franka": "franka_real", "widowx": "widowx_bridge"}


def run(robot: str, mode: str, latency: float = 0.03, seconds: float = 4.0, every: int = 3, rows: int = 8):
    from internvla_core.embodiments import get_embodiment
    from internvla_core.executor_core import ExecutorConfig, ExecutorCore
    from internvla_core.kinematics import IKSolver
    from internvla_core.robot_assets import robot_description
    from internvla_core.safety import SafetyLimits
    from internvla_core.trajectory import anchored_points, plan_chunk_trajectory
    from internvla_sim.controllers import JointTrajectoryControllerEmulation
    from internvla_sim.env import SimEnv

    env = SimEnv("red_on_plate", seed=0, control_dt=0.1, width=32, height=24, wrist=False, robot=robot)
    dt = env.control_dt
    ik = IKSolver.from_description(robot_description(env.robot.description))
    embodiment = get_embodiment(EMBODIMENT[robot])
    limits = SafetyLimits(max_translation_per_step=0.05, max_joint_velocity=3.0)
    core = ExecutorCore(
        embodiment, ExecutorConfig(mode="chunk", control_period=dt, warmup=False, limits=limits), ik
    )
    core.reset(0.0)
    jtc = JointTrajectoryControllerEmulation(env.robot.arm_joints, env.robot.home)
    dofs = [int(env.model.joint(j).dofadr[0]) for j in env.robot.arm_joints]
    step_m = 0.004  # tool motion per control step: 4 cm/s
    row = np.zeros(embodiment.action_dim)
    row[0] = step_m  # along x of the embodiment's delta frame
    row[-1] = 1.0
    queue: list[tuple[float, tuple]] = []  # (delivery time, submit args)
    last_anchor = None  # the setpoint one step before the current one
    samples: list[tuple[float, np.ndarray, np.ndarray]] = []  # (t, tool position, setpoint)

    def substep(e) -> None:
        while queue and queue[0][0] <= e.time + 1e-9:
            _, args = queue.pop(0)
            jtc.submit(*args, now=e.time)
        target = jtc.update(e.time, e.arm_positions(), e.data.qvel[dofs])
        e.apply_joint_targets(target)
        samples.append((e.time, e.hand_pose()[:3, 3].copy(), target.copy()))

    steps = int(round(seconds / dt))
    for k in range(steps):
        t = k * dt
        if k % every == 0:
            core.add_chunk(np.tile(row, (rows, 1)), max(0.0, t - every * dt), t)
        joints = env.arm_positions()
        previous, previous_given = core.last_commanded_joints, core.last_commanded_joints is not None
        command = core.tick(t, ik.fk(joints), joints)
        if command.joint_targets is not None:
            names = list(env.robot.arm_joints)
            if mode == "stream" or command.hold:
                args = (names, t, [dt], [list(command.joint_targets)], None)
                queue.append((t + latency, args))
            elif k % every == 0:  # a new chunk: one trajectory for all of it
                anchor = previous if previous_given else joints
                plan = plan_chunk_trajectory(core, command, anchor)
                times, q, v = anchored_points(plan, anchor, last_anchor, dt)
                queue.append((t + latency, (names, t, list(times), q.tolist(), v.tolist())))
            last_anchor = None if previous is None else np.array(previous)
        env.step(substep)
    t = np.array([s[0] for s in samples])
    tool = np.array([s[1] for s in samples])
    setpoint = np.array([s[2] for s in samples])
    h = np.diff(t)
    speed = np.linalg.norm(np.diff(tool, axis=0), axis=1) / h
    after = t[1:] > 1.0
    ends = [int(np.argmin(np.abs(t[1:] - (k + 1) * dt + 0.002))) for k in range(int(1.0 / dt), steps - 1)]
    jerk = np.diff(tool, n=3, axis=0) / h[0] ** 3
    seam = np.abs(np.diff(setpoint, axis=0)).max(axis=1)
    env.close()
    return {
        "end_speed_min": float(speed[ends].min()),
        "end_speed_median": float(np.median(speed[ends])),
        "still_fraction": float(np.mean(speed[after] < 0.1 * step_m / dt)),
        "seam_jump_rad": float(seam[after[: -0 or None][: len(seam)]].max()),
        "jerk_rms": float(np.sqrt(np.mean(np.sum(jerk[after[2:]] ** 2, axis=1)))),
        "commanded_speed": step_m / dt,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", default="franka", choices=sorted(EMBODIMENT))
    parser.add_argument("--latency", type=float, default=0.03)
    parser.add_argument("--every", type=int, default=3)
    args = parser.parse_args()
    for mode in ("stream", "trajectory"):
        r = run(args.robot, mode, args.latency, every=args.every)
        print(
            f"{args.robot:7s} {mode:10s} latency {args.latency * 1e3:4.0f} ms: tool speed at period ends "
            f"min {r['end_speed_min'] * 1e3:5.1f} / median {r['end_speed_median'] * 1e3:5.1f} mm/s "
            f"(commanded {r['commanded_speed'] * 1e3:.0f}), still {100 * r['still_fraction']:4.1f} % of the "
            f"time, largest setpoint jump per 2 ms {r['seam_jump_rad'] * 1e3:6.2f} mrad, "
            f"tool jerk RMS {r['jerk_rms']:8.2f} m/s^3"
        )


if __name__ == "__main__":
    main()
