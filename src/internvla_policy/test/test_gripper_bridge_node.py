"""gripper_bridge: openings become one gripper-controller trajectory per change (WidowX / Interbotix)."""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import Float64  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from internvla_policy.gripper_bridge_node import GripperBridgeNode  # noqa: E402


def _run(params: dict, openings: list[float]) -> list[JointTrajectory]:
    context = Context()
    rclpy.init(context=context)
    try:
        bridge = GripperBridgeNode(
            context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
        )
        peer = Node("peer", context=context)
        got: list[JointTrajectory] = []
        peer.create_subscription(JointTrajectory, "gripper_controller/joint_trajectory", got.append, 10)
        pub = peer.create_publisher(Float64, "gripper/command", 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(bridge)
        executor.add_node(peer)
        deadline = time.monotonic() + 5.0
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for opening in openings:
            pub.publish(Float64(data=opening))
            for _ in range(10):
                executor.spin_once(timeout_sec=0.02)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.02)
        executor.shutdown()
        bridge.destroy_node()
        peer.destroy_node()
        return got
    finally:
        rclpy.try_shutdown(context=context)


@pytest.mark.ros
def test_widowx_openings_become_left_finger_trajectories_on_changes_only():
    params = {"interface": "joint_trajectory", "dry_run": False, "time_from_start": 0.4}
    got = _run(params, [1.0, 1.0, 0.97, 0.0, 0.02, 0.0, 1.0])
    assert [t.joint_names for t in got] == [["left_finger"]] * 3  # open, close, open: changes only
    assert [round(t.points[0].positions[0], 6) for t in got] == [0.037, 0.015, 0.037]
    for t in got:
        assert len(t.points) == 1 and t.points[0].time_from_start.nanosec == 400_000_000
        assert t.header.stamp.sec == 0 and t.header.stamp.nanosec == 0  # 0 = now for the controller


@pytest.mark.ros
def test_dry_run_sends_nothing_and_franka_needs_franka_msgs():
    assert _run({"interface": "joint_trajectory", "dry_run": True}, [1.0, 0.0]) == []
    try:
        import franka_msgs  # noqa: F401
    except ImportError:
        context = Context()
        rclpy.init(context=context)
        try:
            with pytest.raises(RuntimeError, match="franka_msgs"):
                GripperBridgeNode(
                    context=context, parameter_overrides=[Parameter("interface", value="franka")]
                )
        finally:
            rclpy.try_shutdown(context=context)
