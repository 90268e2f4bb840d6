"""chunk_executor's MoveIt Servo backend: configuration checks here, behaviour against a fake Servo.

moveit_msgs is not on PyPI. The fake-Servo cases (servo_fake_server_cases.py) need its ServoStatus and
ServoCommandType, so this test builds those two interfaces (fake_moveit_msgs/, test only) with colcon
into build/fake_moveit_msgs/ (about 20 s once, then reused while the definitions are unchanged) and runs
the cases in a subprocess that sources that build.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from internvla_policy.chunk_executor_node import ChunkExecutorNode, ServoCommandType  # noqa: E402
from internvla_ros_common.params import ParameterSchemaError  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
CASES = Path(__file__).resolve().parent / "servo_fake_server_cases.py"

SERVO = {
    "embodiment": "franka_real",
    "mode": "chunk",
    "backend": "servo",
    "servo_planning_frame": "fr3_link0",
    "ee_frame": "fr3_hand_tcp",
    "servo_incoming_command_timeout": 0.25,
}


def _configure(params: dict):
    """The configure result; FAILURE too when the schema already refuses a value at construction."""
    context = Context()
    rclpy.init(context=context)
    try:
        node = ChunkExecutorNode(
            context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
        )
    except ParameterSchemaError:
        rclpy.shutdown(context=context)
        return TransitionCallbackReturn.FAILURE, None
    try:
        return node.trigger_configure(), node
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.ros
@pytest.mark.parametrize(
    "change, fails",
    [
        ({}, False),
        ({"servo_incoming_command_timeout": 0.1}, True),  # Servo's default, 10 Hz stream: halts between
        ({"servo_planning_frame": ""}, True),  # commands need header.frame_id
        ({"servo_command": "joint_jog"}, True),
        ({"pose_source": "odometry"}, True),
        ({"embodiment": "widowx_bridge", "servo_incoming_command_timeout": 0.25}, True),  # 5 Hz: 0.5 s
        ({"embodiment": "widowx_bridge", "servo_incoming_command_timeout": 0.5}, False),
    ],
)
def test_configure_refuses_what_servo_would_refuse_or_halt_on(change, fails):
    result, _ = _configure({**SERVO, "dry_run": True, **change})
    assert (result == TransitionCallbackReturn.FAILURE) is fails


@pytest.mark.ros
def test_humble_servo_is_not_claimed(monkeypatch):
    monkeypatch.setenv("ROS_DISTRO", "humble")  # e.g. the WidowX image: Humble's Servo is another API
    result, _ = _configure({**SERVO, "dry_run": True})
    assert result == TransitionCallbackReturn.FAILURE
    monkeypatch.setenv("ROS_DISTRO", "jazzy")
    assert _configure({**SERVO, "dry_run": True})[0] == TransitionCallbackReturn.SUCCESS


@pytest.mark.ros
def test_without_moveit_msgs_only_a_dry_run_configures():
    result, _ = _configure({**SERVO, "dry_run": False})
    if ServoCommandType is None:  # this PyPI setup: no way to switch Servo's command type
        assert result == TransitionCallbackReturn.FAILURE
    else:  # a full ROS install with MoveIt
        assert result == TransitionCallbackReturn.SUCCESS


@pytest.mark.ros
def test_dry_run_servo_backend_previews_and_sends_nothing(spin_in_background):
    context = Context()
    rclpy.init(context=context)
    params = [Parameter(k, value=v) for k, v in {**SERVO, "dry_run": True}.items()]
    node = ChunkExecutorNode(context=context, parameter_overrides=params)
    peer = Node("peer", context=context)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(node)
    executor.add_node(peer)
    got = {"pose": [], "twist": [], "preview": []}
    peer.create_subscription(PoseStamped, "servo/pose_target_cmds", got["pose"].append, 10)
    peer.create_subscription(TwistStamped, "servo/delta_twist_cmds", got["twist"].append, 10)
    peer.create_subscription(PoseStamped, "executor/preview_pose", got["preview"].append, 10)
    pose_pub = peer.create_publisher(PoseStamped, "ee_pose", 10)  # reliable publisher, best-effort sub
    halt = spin_in_background(executor)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        msg = PoseStamped()
        msg.pose.position.x, msg.pose.position.z, msg.pose.orientation.w = 0.45, 0.4, 1.0
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not got["preview"]:
            pose_pub.publish(msg)
            time.sleep(0.05)
        assert got["preview"], "no preview: the ee_pose subscription did not receive the pose"
        time.sleep(0.3)
        assert got["pose"] == [] and got["twist"] == []
        assert node.servo is not None and not node.servo.session.accepted  # never asked
    finally:
        halt()
        executor.shutdown()
        node.destroy_node()
        peer.destroy_node()
        rclpy.shutdown(context=context)


@pytest.fixture(scope="session")
def fake_moveit_msgs() -> Path:
    """The two moveit_msgs interfaces, built once (fake_interfaces.py); returns the install's setup."""
    from fake_interfaces import moveit_msgs_setup

    return moveit_msgs_setup()


@pytest.mark.ros
@pytest.mark.slow
def test_executor_against_a_fake_moveit_servo(fake_moveit_msgs):
    """The cases: switch before commanding, stamped commands in the planning frame move the tip, a
    stopped stream is stale and halts, twists in speed units, ServoStatus and refusals in diagnostics."""
    command = (
        f"source {ROOT}/scripts/env.sh && source {fake_moveit_msgs} && "
        f"python -m pytest -q -p no:cacheprovider {CASES}"
    )
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=280)
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert "4 passed" in result.stdout, output
