"""gripper_bridge: openings become one gripper-controller trajectory per change (WidowX / Interbotix);
its parameters are checked against the schema; it survives lifecycle cycles and bridges only while active."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from internvla_policy.gripper_bridge_node import GripperBridgeNode, franka_actions  # noqa: E402
from internvla_ros_common.params import ParameterSchemaError  # noqa: E402
from internvla_ros_common.testing import Spinner, run_lifecycle_cycles, spin_until  # noqa: E402

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def bridge_of(context, **params) -> GripperBridgeNode:
    return GripperBridgeNode(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )


def _run(context, params: dict, openings: list[float], activate: bool = True) -> list[JointTrajectory]:
    """The trajectories the bridge publishes for ``openings``; asserts it listens only when active."""
    bridge = bridge_of(context, **params)
    assert bridge.trigger_configure() == SUCCESS
    if activate:
        assert bridge.trigger_activate() == SUCCESS
    peer = Node("peer", context=context)
    got: list[JointTrajectory] = []
    peer.create_subscription(JointTrajectory, "gripper_controller/joint_trajectory", got.append, 10)
    pub = peer.create_publisher(Float64, "gripper/command", 10)
    nodes = [bridge, peer]
    listening = spin_until(nodes, lambda: pub.get_subscription_count() > 0, 5.0 if activate else 0.5)
    assert listening == activate
    for opening in openings:
        pub.publish(Float64(data=opening))
        spin_until(nodes, lambda: False, 0.2)  # spin for 0.2 s: the bridge answers or stays silent
    spin_until(nodes, lambda: False, 0.4)
    bridge.destroy_node()
    peer.destroy_node()
    return got


@pytest.mark.ros
def test_widowx_openings_become_left_finger_trajectories_on_changes_only(context):
    params = {"interface": "joint_trajectory", "dry_run": False, "time_from_start": 0.4}
    got = _run(context, params, [1.0, 1.0, 0.97, 0.0, 0.02, 0.0, 1.0])
    assert [t.joint_names for t in got] == [["left_finger"]] * 3  # open, close, open: changes only
    assert [round(t.points[0].positions[0], 6) for t in got] == [0.037, 0.015, 0.037]
    for t in got:
        assert len(t.points) == 1 and t.points[0].time_from_start.nanosec == 400_000_000
        assert t.header.stamp.sec == 0 and t.header.stamp.nanosec == 0  # 0 = now for the controller


@pytest.mark.ros
def test_dry_run_sends_nothing(context):
    assert _run(context, {"interface": "joint_trajectory", "dry_run": True}, [1.0, 0.0]) == []


@pytest.mark.ros
def test_a_configured_but_inactive_bridge_neither_listens_nor_sends(context):
    assert _run(context, {"dry_run": False}, [1.0, 0.0], activate=False) == []


@pytest.mark.ros
def test_franka_without_franka_msgs_fails_configure_naming_the_package(context):
    try:
        import franka_msgs  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="needs franka_msgs"):
            franka_actions()
        bridge = bridge_of(context, interface="franka")
        assert bridge.trigger_configure() == FAILURE
        assert bridge.trigger_configure() == FAILURE  # still unconfigured, still refusing
        bridge.destroy_node()
    else:
        pytest.skip("franka_msgs is installed here: the missing-package path cannot happen")


@pytest.mark.ros
def test_an_unknown_parameter_is_rejected_with_the_nearest_name(context):
    with pytest.raises(
        ParameterSchemaError, match=r"Unknown parameter 'dead_band' .*Did you mean: 'deadband'"
    ):
        bridge_of(context, dead_band=0.2)


@pytest.mark.ros
def test_an_invalid_value_is_rejected_naming_the_rule(context):
    with pytest.raises(ParameterSchemaError) as error:
        bridge_of(context, interface="gripper", time_from_start=-1.0)
    text = str(error.value)
    assert "Parameter 'interface' with the value 'gripper' must be one of" in text
    assert "Parameter 'time_from_start' with the value -1.0 must be in [0.0, 60.0]" in text


@pytest.mark.ros
def test_a_hundred_lifecycle_cycles_while_spinning_leak_nothing(context):
    bridge = bridge_of(context, dry_run=False)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(bridge)
    entities = (len(list(bridge.subscriptions)), len(list(bridge.publishers)))
    with Spinner(executor):  # raises when the executor thread died
        results = run_lifecycle_cycles(bridge, 100)
    executor.shutdown()
    assert results == [("success",) * 4] * 100
    assert (len(list(bridge.subscriptions)), len(list(bridge.publishers))) == entities
    bridge.destroy_node()


def run_standalone(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m <module> args`` as a person runs the node (console script main = main_for)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.ros
def test_standalone_help_usage_error_and_failed_configure_exit_codes():
    module = "internvla_policy.gripper_bridge_node"
    shown = run_standalone(module, "--help")
    assert shown.returncode == 0 and "deadband" in shown.stdout and "interface" in shown.stdout
    typo = run_standalone(module, "dead_band:=0.2")
    assert typo.returncode == 2 and "Did you mean: 'deadband'" in typo.stderr
    try:
        import franka_msgs  # noqa: F401
    except ImportError:
        failed = run_standalone(module, "autostart:=true", "interface:=franka")
        assert failed.returncode == 1 and "needs franka_msgs" in failed.stderr
