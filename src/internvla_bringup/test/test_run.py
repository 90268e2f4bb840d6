"""internvla-run composes a simulated graph in one process and runs a bounded goal end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mujoco")

SRC = Path(__file__).resolve().parents[2]
SMALL_IMAGES = ("-p", "sim:width:=160", "-p", "sim:height:=120")  # rendering dominates on 2 cores


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    source_paths = [str(p) for p in sorted(SRC.iterdir()) if p.is_dir()]
    env["PYTHONPATH"] = os.pathsep.join([*source_paths, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "internvla_bringup.run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.ros
@pytest.mark.parametrize("setup", ["sim_franka", "sim_widowx"])
def test_runner_moves_the_simulated_arm_and_writes_the_episode_summary(tmp_path, setup):
    summary_path = tmp_path / "summary.json"
    steps = 6
    done = run(
        setup,
        "--steps",
        str(steps),
        "--seed",
        "2",
        "--summary",
        str(summary_path),
        *SMALL_IMAGES,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # the executors' worker threads finish before their guard condition goes (rclpy 9 shutdown order)
    assert "never retrieved" not in done.stderr, done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["setup"] == setup and summary["goal_result"] == "finished"
    assert summary["policy_chunks"] == steps  # one model query per lock-step observation
    assert summary["stop_chunks"] == 1  # the goal's end tells the executor to hold
    assert summary["trajectories"] >= steps  # every chunk became a joint command
    assert summary["max_joint_motion_rad"] > 1e-3  # the commands moved the simulated joints
    assert summary["sim_steps"] >= steps and summary["sim_time_s"] > 0
    assert isinstance(summary["task_success"], bool)
    assert "untrained" in summary["checkpoint"]
    assert summary["seed"] == 2 and summary["instruction"]


@pytest.mark.ros
def test_runner_stops_cleanly_when_its_wall_clock_limit_ends_a_running_goal(tmp_path):
    """A goal still running at the end (timeout here; Ctrl-C and SIGTERM take the same path) is ended
    by deactivating the nodes before the executors shut down: that shutdown waits for the goal's thread,
    which hung the process for good before."""
    summary_path = tmp_path / "summary.json"
    done = run(
        "sim_franka",
        "--steps",
        "100000",  # more than fit in the time: only the timeout ends it
        "--timeout",
        "6",
        "--summary",
        str(summary_path),
        *SMALL_IMAGES,
        timeout=120,
    )
    summary = json.loads(summary_path.read_text())
    assert summary["goal_result"].startswith("runner timeout"), summary
    assert not summary["goal_finished"]
    assert summary["policy_chunks"] > 0  # it was running when the limit came
    assert done.returncode == 0, done.stderr[-3000:]
