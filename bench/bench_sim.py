"""Simulator numbers: render time per frame, physics steps/s, control steps/s with rendering, and the
scripted expert's success rate per task over seeds.

source scripts/env.sh && python bench/bench_sim.py [--robot franka|widowx|all] [--seeds 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def bench_robot(robot: str, seeds: int) -> None:
    from internvla_sim.env import SimEnv
    from internvla_sim.expert import ScriptedExpert
    from internvla_sim.tasks import TASKS

    print(f"== {robot}")
    env = SimEnv("red_on_plate", seed=0, width=320, height=240, wrist=True, robot=robot)
    for name, kwargs in (
        ("rgb third_person", {}),
        ("depth third_person", {"depth": True}),
        ("rgb wrist", {"camera": "wrist"}),
    ):
        env.render(**kwargs)
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            env.render(**kwargs)
            times.append(time.perf_counter() - t0)
        print(f"{name:20s} {1e3 * np.median(times):7.1f} ms per 320x240 frame")
    t0 = time.perf_counter()
    for _ in range(2000):
        env.mujoco.mj_step(env.model, env.data)
    print(
        f"physics              {2000 / (time.perf_counter() - t0):7.0f} steps/s (dt {env.model.opt.timestep * 1e3:.0f} ms)"
    )
    t0 = time.perf_counter()
    for _ in range(20):
        env.step()
        env.render()
        env.render(depth=True)
    rate = 20 / (time.perf_counter() - t0)
    print(f"control step + rgb + depth: {rate:.1f} steps/s = {rate * env.control_dt:.2f}x real time")
    env.close()
    for task in sorted(TASKS):
        t0 = time.perf_counter()
        solved = sum(
            ScriptedExpert(SimEnv(task, seed=seed, wrist=False, robot=robot)).run().success
            for seed in range(seeds)
        )
        print(f"expert {task:16s} {solved}/{seeds} seeds ({time.perf_counter() - t0:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--robot", choices=["franka", "widowx", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    for robot in ("franka", "widowx") if args.robot == "all" else (args.robot,):
        bench_robot(robot, args.seeds)


if __name__ == "__main__":
    main()
