"""A simulated episode whose policy node asks internvla-serve (remote backend) instead of a local model."""

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


@pytest.mark.ros
def test_policy_node_in_remote_mode_runs_a_sim_episode_against_our_server(tmp_path):
    from internvla_core.model import load_policy, tiny_checkpoint
    from internvla_core.serving.engine import BatchEngine
    from internvla_core.serving.server import PolicyServer

    policy = load_policy(tiny_checkpoint())
    server = PolicyServer(BatchEngine(policy, seed=0), port=0, api_key="robot-1-key").start()
    statistics = tiny_checkpoint().parents[1] / "dataset_statistics.json"
    summary_path = tmp_path / "summary.json"
    steps = 4
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the test's DDS traffic stays on this host
    env["PYTHONPATH"] = os.pathsep.join(
        [*(str(p) for p in sorted(SRC.iterdir()) if p.is_dir()), env.get("PYTHONPATH", "")]
    )
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "internvla_bringup.run",
                "sim_widowx",
                "--steps",
                str(steps),
                "--summary",
                str(summary_path),
                "-p",
                "sim:width:=160",
                "-p",
                "sim:height:=120",
                "-p",
                "policy_node:backend:=remote",
                "-p",
                f"policy_node:remote_url:={server.url}",
                "-p",
                "policy_node:remote_api_key:=robot-1-key",
                "-p",
                f"policy_node:dataset_statistics:={statistics}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    finally:
        server.close()
        policy.close()
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["goal_result"] == "finished" and summary["policy_chunks"] == steps
    assert summary["trajectories"] >= steps and summary["max_joint_motion_rad"] > 1e-3
    assert server.batcher.stats.jobs == steps  # every chunk came from the server
    assert server.stats.connections >= 1 and server.stats.error_replies == 0
