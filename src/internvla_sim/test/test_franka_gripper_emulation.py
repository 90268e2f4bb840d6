"""sim_node serves franka_gripper's Grasp / Move with the real success window, where franka_msgs exists.

franka_msgs is not on PyPI: ``test_franka_gripper_actions_in_the_simulator`` builds the test-only
definitions (internvla_policy/test/fake_franka_msgs/, never installed) and runs
``franka_gripper_emulation_cases.py`` in a subprocess that sources that build. The inner test drives the simulated Franka's open fingers
around the 4 cm red block (joint configurations from the scripted expert), then: a Grasp to width 0 with
the default epsilons (0.005 m) aborts (final width ~0.04 m), a Move opens, the gripper_bridge's Grasp
(FrankaGripperPlanner: epsilons 0.08 m) succeeds on the same block; in free air a default Grasp to 0.04 m
succeeds.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mujoco")

ROOT = Path(__file__).resolve().parents[3]
BUILDER = ROOT / "src/internvla_policy/test/fake_interfaces.py"
CASES = Path(__file__).resolve().parent / "franka_gripper_emulation_cases.py"  # not collected by itself


@pytest.mark.ros
@pytest.mark.slow
def test_franka_gripper_actions_in_the_simulator():
    spec = importlib.util.spec_from_file_location("fake_interfaces", BUILDER)
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    setup = builder.franka_msgs_setup()
    command = (
        f"source {ROOT}/scripts/env.sh && source {setup} && INTERNVLA_FAKE_FRANKA_MSGS=1 "
        f"python -m pytest -q -p no:cacheprovider {CASES}"
    )
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=280)
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert "1 passed" in result.stdout, output
