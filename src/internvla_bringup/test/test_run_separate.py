"""internvla-run --executor-process separate: chunk_executor in a process of its own, same configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from internvla_bringup.composition import standalone_command
from internvla_bringup.graphs import GraphOptions, build_graph
from internvla_bringup.run import parse_args

SRC = Path(__file__).resolve().parents[2]


def test_the_standalone_command_carries_the_in_process_configuration():
    graph = build_graph("sim_franka", GraphOptions(namespace="arm1", checkpoint=""))
    spec = graph.node("chunk_executor")
    argv = standalone_command(graph, spec, {"mode": "rtc", "joint_lower": [-1.0, -2.0], "note": ""})
    assert argv[:3] == [sys.executable, "-m", "internvla_policy.chunk_executor_node"]
    assert argv[3:6] == ["--ros-args", "--params-file", str(graph.params_path())]
    pairs = list(zip(argv[6::2], argv[7::2]))
    assert ("-r", "__node:=chunk_executor") in pairs and ("-r", "__ns:=/arm1") in pairs
    for source, target in spec.remappings:
        assert ("-r", f"{source}:={target}") in pairs
    params = dict(value.split(":=", 1) for flag, value in pairs if flag == "-p")
    assert params["use_sim_time"] == "true" and params["dry_run"] == "false"
    assert params["tick_source"] == "state" and params["mode"] == "rtc"
    assert params["joint_lower"] == "[-1.0, -2.0]" and params["note"] == "''"  # YAML, as rcl parses -p
    assert parse_args(["sim_franka"]).executor_process == "shared"
    assert parse_args(["sim_franka", "--executor-process", "separate"]).executor_process == "separate"


@pytest.mark.ros
def test_runner_with_the_executor_in_its_own_process_moves_the_simulated_arm(tmp_path):
    pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
    pytest.importorskip("mujoco")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*(str(p) for p in sorted(SRC.iterdir()) if p.is_dir()), env.get("PYTHONPATH", "")]
    )
    summary_path = tmp_path / "summary.json"
    steps = 4
    done = subprocess.run(
        [sys.executable, "-m", "internvla_bringup.run", "sim_franka", "--executor-process", "separate"]
        + [
            "--steps",
            str(steps),
            "--summary",
            str(summary_path),
            "-p",
            "sim:width:=160",
            "-p",
            "sim:height:=120",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["goal_result"] == "finished" and summary["policy_chunks"] == steps
    assert summary["trajectories"] >= steps  # the other process's executor answered every chunk
    assert summary["max_joint_motion_rad"] > 1e-3
    assert "chunk_executor in its own process (pid" in done.stderr
