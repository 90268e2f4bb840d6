"""sim_node: lifecycle (paused until active), the latched URDF, TF messages, parameters from its schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mujoco")

from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from internvla_ros_common.lifecycle import FAILURE, SUCCESS  # noqa: E402
from internvla_ros_common.params import ParameterSchemaError  # noqa: E402
from internvla_ros_common.schema import load_schema, readme_drift  # noqa: E402
from internvla_ros_common.testing import ros_context, run_lifecycle_cycles, spin_until  # noqa: E402
from internvla_sim.env import SimEnv  # noqa: E402
from internvla_sim.sim_messages import transform_messages  # noqa: E402
from internvla_sim.sim_node import SCHEMA, SimNode  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1]
SMALL = {"width": 64, "height": 48}


def sim_node(context, namespace: str = "", **parameters) -> SimNode:
    overrides = [Parameter(k, value=v) for k, v in {**SMALL, **parameters}.items()]
    return SimNode(context=context, parameter_overrides=overrides, namespace=namespace)


def _latched_strings(context, nodes, topic: str, seconds: float) -> list[str]:
    """What a late subscriber receives on a latched topic within ``seconds``."""
    peer = Node("late_listener", context=context)
    received: list[str] = []
    qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    peer.create_subscription(String, topic, lambda m: received.append(m.data), qos)
    spin_until([peer, *nodes], lambda: bool(received), timeout=seconds)
    peer.destroy_node()
    return received


@pytest.mark.ros
def test_sim_latches_a_urdf_of_each_robot_on_robot_description():
    with ros_context() as context:
        widowx = sim_node(context, "wx", robot="widowx")
        franka = sim_node(context, "fr")
        try:
            for node in (widowx, franka):
                assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
            urdf = _latched_strings(context, [widowx, franka], "/wx/robot_description", 10.0)
            assert urdf and "<robot" in urdf[0] and 'name="wx250s/ee_gripper_link"' in urdf[0]
            assert "package://" not in urdf[0]  # mesh paths resolved to files on this machine
            panda = _latched_strings(context, [widowx, franka], "/fr/robot_description", 10.0)
            assert panda and 'link name="panda_hand"' in panda[0] and 'joint name="joint7"' in panda[0]
        finally:
            widowx.destroy_node()
            franka.destroy_node()


@pytest.mark.ros
def test_the_sim_stays_paused_publishing_its_clock_until_activated_and_pauses_again_on_deactivate():
    """What the demo needs: models load while the sim waits, and sim time starts only on activate."""
    with ros_context() as context:
        sim = sim_node(context, clock_mode="realtime", publish_depth=False)
        peer = Node("observer", context=context)
        clocks: list[int] = []
        images: list[int] = []
        peer.create_subscription(
            Clock, "/clock", lambda m: clocks.append(m.clock.sec * 10**9 + m.clock.nanosec), 10
        )
        peer.create_subscription(
            Image, "camera/image_raw", lambda m: images.append(m.header.stamp.nanosec), 10
        )
        try:
            assert sim.trigger_configure() == SUCCESS
            start = sim.env.time
            assert spin_until([sim, peer], lambda: len(clocks) >= 2, timeout=5.0)  # once a second
            assert set(clocks) == {round(start * 1e9)} and images == [] and sim.steps == 0
            assert sim.trigger_activate() == SUCCESS
            assert spin_until([sim, peer], lambda: sim.steps >= 5 and images, timeout=20.0)
            assert max(clocks) > round(start * 1e9)
            assert sim.trigger_deactivate() == SUCCESS
            paused_at, steps = round(sim.env.time * 1e9), sim.steps
            clocks.clear()
            assert spin_until([sim, peer], lambda: len(clocks) >= 2, timeout=5.0)
            assert set(clocks) == {paused_at} and sim.steps == steps  # time stands still
            assert sim.trigger_activate() == SUCCESS  # and resumes from there
            assert spin_until([sim, peer], lambda: sim.steps > steps, timeout=20.0)
        finally:
            peer.destroy_node()
            sim.destroy_node()


@pytest.mark.ros
def test_a_hundred_lifecycle_cycles_in_one_process():
    with ros_context() as context:
        sim = sim_node(context, width=16, height=16, publish_depth=False, publish_robot_description=False)
        try:
            assert run_lifecycle_cycles(sim, 100) == [("success",) * 4] * 100
            assert sim.env is None and sim.pub == {} and sim.lifecycle_state == "unconfigured"
        finally:
            sim.destroy_node()


@pytest.mark.ros
def test_an_unknown_task_fails_configure_and_the_node_stays_unconfigured():
    with ros_context() as context:
        sim = sim_node(context, task="red_on_plait")
        try:
            assert sim.trigger_configure() == FAILURE
            assert sim.lifecycle_state == "unconfigured" and sim.env is None
        finally:
            sim.destroy_node()


@pytest.mark.ros
@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("width", 4, r"'width' with the value 4 must be in \[16, 1920\]"),
        ("control_rate_hz", 0.0, r"'control_rate_hz' with the value 0.0 must be in \[1.0, 500.0\]"),
        ("lockstep_timeout", -1.0, r"'lockstep_timeout' with the value -1.0 must be in \[0.1, 3600.0\]"),
        (
            "clock_mode",
            "fast",
            r"'clock_mode' with the value 'fast' must be one of \['lockstep', 'realtime'\]",
        ),
    ],
)
def test_out_of_range_parameters_are_refused_at_start_naming_the_range(name, value, rule):
    with ros_context() as context, pytest.raises(ParameterSchemaError, match=rule):
        sim_node(context, **{name: value})


@pytest.mark.ros
def test_an_unknown_parameter_is_refused_with_the_nearest_name():
    with (
        ros_context() as context,
        pytest.raises(ParameterSchemaError, match="Did you mean: 'lockstep_timeout'"),
    ):
        sim_node(context, lockstep_timout=5.0)


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


def test_the_readme_table_and_the_bringup_yamls_agree_with_the_schema():
    schema = load_schema(SCHEMA)
    assert all(spec.description for spec in schema.parameters.values())
    assert readme_drift(PACKAGE / "README.md", schema) is None
    checked = []
    for path in sorted((PACKAGE.parent / "internvla_bringup" / "config").glob("*.yaml")):
        section = yaml.safe_load(path.read_text()).get("/**/sim")
        if section is not None:
            values = section["ros__parameters"]
            assert schema.unknown_messages(values) == [] and schema.validate(values) == [], path.name
            checked.append(path.name)
    assert checked, "no bringup YAML overrides sim parameters: the check would prove nothing"


def _bench_seams():
    import importlib.util

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
