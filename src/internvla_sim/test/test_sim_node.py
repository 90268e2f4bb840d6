"""sim_node's robot-facing extras: the latched URDF, TF messages, and parameters refused out of range."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mujoco")

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from internvla_sim.env import SimEnv  # noqa: E402
from internvla_sim.sim_node import SimNode, transform_messages  # noqa: E402

SMALL = [Parameter("width", value=64), Parameter("height", value=48)]


def _latched_strings(context, topic: str, seconds: float) -> list[str]:
    """What a late subscriber receives on a latched topic within ``seconds``."""
    peer = Node("late_listener", context=context)
    received: list[str] = []
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    peer.create_subscription(String, topic, lambda m: received.append(m.data), qos)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(peer)
    deadline = time.monotonic() + seconds
    while not received and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    executor.shutdown()
    peer.destroy_node()
    return received


@pytest.mark.ros
def test_sim_latches_a_urdf_of_each_robot_on_robot_description():
    context = Context()
    rclpy.init(context=context)
    try:
        widowx = SimNode(
            context=context, parameter_overrides=[*SMALL, Parameter("robot", value="widowx")], namespace="wx"
        )
        franka = SimNode(context=context, parameter_overrides=SMALL, namespace="fr")
        try:
            urdf = _latched_strings(context, "/wx/robot_description", 10.0)
            assert urdf and "<robot" in urdf[0] and 'name="wx250s/ee_gripper_link"' in urdf[0]
            assert "package://" not in urdf[0]  # mesh paths resolved to files on this machine
            panda = _latched_strings(context, "/fr/robot_description", 10.0)
            assert panda and 'link name="panda_hand"' in panda[0] and 'joint name="joint7"' in panda[0]
        finally:
            widowx.destroy_node()
            franka.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_transform_messages_carry_parent_child_stamp_and_a_unit_quaternion():
    env = SimEnv("red_on_plate", seed=0, width=64, height=48, wrist=True, robot="widowx")
    edges = env.frame_transforms()
    messages = transform_messages(edges, Time(sec=3, nanosec=5))
    assert len(messages) == len(edges)
    for edge, msg in zip(edges, messages):
        assert (msg.header.frame_id, msg.child_frame_id) == (edge.parent, edge.child)
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 5)
        t, r = msg.transform.translation, msg.transform.rotation
        np.testing.assert_allclose([t.x, t.y, t.z], edge.pose[:3, 3])
        assert abs(np.linalg.norm([r.x, r.y, r.z, r.w]) - 1.0) < 1e-9
    env.close()


@pytest.mark.ros
@pytest.mark.parametrize("name, value", [("width", 4), ("control_rate_hz", 0.0), ("lockstep_timeout", -1.0)])
def test_out_of_range_parameters_are_refused_at_start(name, value):
    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(Exception, match=name):
            SimNode(context=context, parameter_overrides=[*SMALL, Parameter(name, value=value)])
    finally:
        rclpy.try_shutdown(context=context)


def _bench_seams():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "bench" / "bench_seams.py"
    spec = importlib.util.spec_from_file_location("bench_seams", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_single_point_stream_stops_between_commands_a_trajectory_per_chunk_keeps_moving():
    """Behind the JTC emulation, with 30 ms from tick to controller: the old one point per tick stands
    still at the end of periods; one multi-point trajectory per chunk never drops below the policy's speed."""
    bench = _bench_seams()
    stream = bench.run("franka", "stream", latency=0.03, seconds=3.0)
    trajectory = bench.run("franka", "trajectory", latency=0.03, seconds=3.0)
    commanded = stream["commanded_speed"]
    assert stream["end_speed_min"] < 0.1 * commanded and stream["still_fraction"] > 0.1
    assert trajectory["end_speed_min"] > 0.8 * commanded and trajectory["still_fraction"] == 0.0
    assert trajectory["seam_jump_rad"] < 0.1 * stream["seam_jump_rad"]
