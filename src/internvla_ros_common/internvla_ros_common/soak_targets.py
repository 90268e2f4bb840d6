"""Nodes that bench/bench_lifecycle_soak.py cycles by default: 'module:Class' and the parameter
overrides each needs to configure without hardware or a real model.

Each package adds its converted nodes here (one line each). A target whose module cannot be
imported (a package not installed, an optional dependency missing) is reported and skipped by the
bench, so the list may name nodes of every package.
"""

from __future__ import annotations

from typing import Any

SOAK_TARGETS: list[tuple[str, dict[str, Any]]] = [
    ("internvla_ros_common.example_node:EchoNode", {"heartbeat_hz": 50.0}),
    ("internvla_policy.policy_node:PolicyNode", {"checkpoint": "", "torch_threads": 1}),  # tiny model
    (
        "internvla_policy.chunk_executor_node:ChunkExecutorNode",
        {"embodiment": "franka_real", "mode": "chunk", "chunk_trajectory": False},
    ),
    ("internvla_policy.gripper_bridge_node:GripperBridgeNode", {"interface": "joint_trajectory"}),
    ("internvla_perception.grounding_node:GroundingNode", {}),  # the tiny model: checkpoint ""
    ("internvla_sim.sim_node:SimNode", {"width": 32, "height": 24, "publish_depth": False}),
    (
        "internvla_bringup.recorder_node:RecorderNode",
        {"contract": "sim_franka", "output_dir": "/tmp/internvla_soak_recordings"},
    ),
]
