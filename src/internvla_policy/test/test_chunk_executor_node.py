"""chunk_executor over real rclpy against a robot double: commands, dry run, watchdog, e-stop, lock-step."""

from __future__ import annotations

import itertools
import re
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Bool, Float64  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from internvla_core.kinematics import IKSolver  # noqa: E402
from internvla_msgs.msg import ActionChunk, ExecutorStatus  # noqa: E402
from internvla_msgs.srv import ReleaseEstop  # noqa: E402
from internvla_policy.chunk_executor_node import ChunkExecutorNode  # noqa: E402
from internvla_ros_common.params import ParameterSchemaError  # noqa: E402
from internvla_ros_common.testing import (  # noqa: E402
    Spinner,
    ros_context,
    run_lifecycle_cycles,
    wait_for,
)

HOME = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
JOINTS = [f"joint{i}" for i in range(1, 8)]


def matched_both_ways(publisher, node: Node) -> bool:
    """``publisher`` matched a subscription of ``node`` on its topic, and that subscription matched it.

    The publisher can match the subscription before the subscription has matched the publisher; a
    message sent in between is dropped by the reader, so a test that sends one chunk and waits for
    trajectories can fail for no fault of the node (seen once in CI).
    """
    subscriptions = [s for s in node.subscriptions if s.topic_name == publisher.topic_name]
    return (
        publisher.get_subscription_count() > 0
        and bool(subscriptions)
        and all(s.get_publisher_count() > 0 for s in subscriptions)
    )


class RobotDouble:
    """Publishes joint_states at 50 Hz (or on demand) and records everything the executor sends."""

    def __init__(self, node: Node, auto: bool = True) -> None:
        self.node = node
        self.q = list(HOME)
        self.joint_pub = node.create_publisher(JointState, "joint_states", 10)
        self.chunk_pub = node.create_publisher(ActionChunk, "action_chunk", 10)
        self.estop_pub = node.create_publisher(Bool, "estop", 10)
        self.state_age = 0.0  # seconds subtracted from the joint_states stamps (a stale driver)
        self.got: dict[str, list] = {"traj": [], "preview": [], "pose": [], "gripper": [], "status": []}
        node.create_subscription(ExecutorStatus, "chunk_executor/status", self.got["status"].append, 100)
        node.create_subscription(
            JointTrajectory, "arm_controller/joint_trajectory", self.got["traj"].append, 10
        )
        node.create_subscription(JointTrajectory, "executor/preview", self.got["preview"].append, 10)
        node.create_subscription(PoseStamped, "executor/preview_pose", self.got["pose"].append, 10)
        node.create_subscription(Float64, "gripper/command", self.got["gripper"].append, 10)
        if auto:
            node.create_timer(0.02, self.publish_state)

    def publish_state(self, stamp=None) -> None:
        msg = JointState(name=JOINTS, position=self.q)
        now = self.node.get_clock().now().nanoseconds - int(self.state_age * 1e9)
        msg.header.stamp = stamp or Time(sec=now // 10**9, nanosec=now % 10**9)
        self.joint_pub.publish(msg)

    def chunk(
        self,
        rows: np.ndarray,
        obs_stamp=None,
        embodiment: str = "franka_real",
        header_stamp=None,
        command: int = ActionChunk.CHUNK,
        reason: str = "",
    ) -> None:
        msg = ActionChunk(
            embodiment=embodiment, rows=rows.shape[0], cols=rows.shape[1], command=command, reason=reason
        )
        msg.data = rows.ravel().tolist()
        msg.observation_stamp = obs_stamp or self.node.get_clock().now().to_msg()
        msg.header.stamp = header_stamp or self.node.get_clock().now().to_msg()
        self.chunk_pub.publish(msg)

    def codes(self) -> list[int]:
        return [s.code for s in list(self.got["status"])]

    def matched(self, executor_node: Node) -> bool:
        """action_chunk and joint_states are matched both ways with the executor's subscriptions."""
        return all(matched_both_ways(pub, executor_node) for pub in (self.chunk_pub, self.joint_pub))


@pytest.fixture
def ros():
    """``make(params)``: an executor node (configured, active) and a robot double, spun on a thread."""
    with ros_context() as context:
        yield from _executor_and_double(context)


def _executor_and_double(context):
    nodes: list = []
    executor = MultiThreadedExecutor(num_threads=4, context=context)

    def make(params: dict, auto_state: bool = True):
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        executor_node = ChunkExecutorNode(context=context, parameter_overrides=overrides)
        peer = Node("robot_double", context=context)
        nodes.extend([executor_node, peer])
        executor.add_node(executor_node)
        executor.add_node(peer)
        robot = RobotDouble(peer, auto=auto_state)
        assert executor_node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert executor_node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert wait_for(lambda: robot.matched(executor_node)), "action_chunk / joint_states never matched"
        return executor_node, robot

    spinner = Spinner(executor)
    try:
        yield make
        for node in nodes:  # shut down while spinning: the executor drops their entities before it stops
            if isinstance(node, ChunkExecutorNode) and node.lifecycle_state != "finalized":
                node.trigger_shutdown()
    finally:
        spinner.stop()
        executor.shutdown()
        for node in nodes:
            node.destroy_node()


BASE = {
    "embodiment": "franka_real",
    "mode": "chunk",
    "control_rate_hz": 20.0,
    "dry_run": False,
    "watchdog_timeout": 0.3,
}
STEP = np.array([[0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
SMALL_STEP = np.array([[0.003, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])


@pytest.mark.ros
def test_chunks_become_joint_trajectories_that_reach_the_tool_frame_target(ros):
    _node, robot = ros({**BASE, "chunk_trajectory": False})  # the per-tick single-point stream
    assert wait_for(
        lambda: robot.joint_pub.get_subscription_count() > 0 and robot.chunk_pub.get_subscription_count() > 0
    )
    time.sleep(0.1)
    robot.chunk(np.repeat(STEP, 40, axis=0))

    def moving():  # before the chunk the executor holds (trajectories to the current joints)
        return [t for t in robot.got["traj"] if not np.allclose(t.points[0].positions, HOME)]

    assert wait_for(lambda: moving() and robot.got["gripper"])
    traj = moving()[0]
    assert traj.joint_names == JOINTS and len(traj.points) == 1
    ik = IKSolver.panda()
    start = ik.fk(np.array(HOME))
    expected = start @ np.array([[1, 0, 0, 0.01], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    reached = ik.fk(np.array(traj.points[0].positions))
    np.testing.assert_allclose(reached[:3, 3], expected[:3, 3], atol=2e-3)
    assert robot.got["gripper"][0].data == 1.0
    joint_step = np.abs(np.array(traj.points[0].positions) - HOME).max()
    assert joint_step <= 1.0 * 0.05 + 1e-9  # max_joint_velocity * period


def _seconds(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


@pytest.mark.ros
def test_chunk_mode_sends_each_chunk_once_as_one_time_parameterised_multi_point_trajectory(ros):
    # small steps: the double never moves, so more than max_tracking_error (5 cm) would re-synchronise
    # plan_budget 1: the whole period for planning, so even a loaded machine plans the 12 rows in one tick
    # (slices are the next test's subject)
    node, robot = ros({**BASE, "watchdog_timeout": 1.0, "plan_budget": 1.0})
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.repeat(SMALL_STEP, 12, axis=0))
    assert wait_for(lambda: robot.got["traj"])
    time.sleep(0.3)  # six more ticks: they continue the running trajectory and send nothing
    assert len(robot.got["traj"]) == 1
    traj = robot.got["traj"][0]
    times = [_seconds(p.time_from_start) for p in traj.points]
    assert len(traj.points) >= 10  # the current setpoint, then the rows from the one for now
    np.testing.assert_allclose(times, 0.05 * np.arange(len(times)), atol=1e-9)
    np.testing.assert_allclose(traj.points[0].positions, HOME)  # anchor: the setpoint at the stamp
    ik = IKSolver.panda()
    start, end = ik.fk(np.array(HOME)), ik.fk(np.array(traj.points[-1].positions))
    steps = len(traj.points) - 1
    np.testing.assert_allclose(end[:3, 3] - start[:3, 3], start[:3, :3] @ [0.003 * steps, 0, 0], atol=3e-3)
    assert np.all(np.array(traj.points[-1].velocities) == 0.0)
    q = np.array([p.positions for p in traj.points])
    v = np.array([p.velocities for p in traj.points])
    np.testing.assert_allclose(v[1:-1], (q[2:] - q[:-2]) / 0.1, atol=1e-9)  # central differences
    assert np.abs(np.diff(q, axis=0)).max() <= 1.0 * 0.05 + 1e-9  # joint velocity limit on every point
    # the next chunk replaces it, planned from the setpoint the running trajectory is at by now
    robot.chunk(np.repeat(SMALL_STEP, 12, axis=0))
    assert wait_for(lambda: len(robot.got["traj"]) == 2)
    second = robot.got["traj"][1]
    k = int(round((_seconds(second.header.stamp) - _seconds(traj.header.stamp)) / 0.05))
    np.testing.assert_allclose(second.points[0].positions, traj.points[k].positions, atol=1e-9)
    assert node.core.counters["trajectories"] == 2


@pytest.mark.ros
def test_a_chunk_too_long_to_plan_in_one_tick_is_sent_as_it_grows_without_changing_the_motion(ros):
    # plan_budget 0.05 of 50 ms: ~2.5 ms per tick, a few IK solves; 40 rows of 1 mm (the double never
    # moves: 4 cm stays under the 5 cm that would re-synchronise)
    node, robot = ros({**BASE, "watchdog_timeout": 3.0, "plan_budget": 0.05})
    robot.chunk(np.repeat([[0.001, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]], 40, axis=0))
    assert wait_for(lambda: node.plan_follower.plan is not None and node.plan_follower.plan.planner.done)
    time.sleep(0.2)
    trajectories = list(robot.got["traj"])
    planned = len(node.plan_follower.plan.planner)
    assert planned >= 38 and len(trajectories) >= 2
    assert len(trajectories[0].points) < planned + 1  # the first tick sent what it had planned
    for a, b in itertools.pairwise(trajectories):  # each re-send: the same knots, from "now", longer
        k = int(round((_seconds(b.header.stamp) - _seconds(a.header.stamp)) / 0.05))
        qa = np.array([pt.positions for pt in a.points])
        qb = np.array([pt.positions for pt in b.points])
        assert k >= 1 and len(qb) + k > len(qa)
        np.testing.assert_allclose(qb[: len(qa) - k], qa[k:], atol=1e-12)
        va = np.array([pt.velocities for pt in a.points])
        vb = np.array([pt.velocities for pt in b.points])
        np.testing.assert_allclose(vb[: len(qa) - k - 1], va[k:-1], atol=1e-12)  # a's end was at rest
    first, last = trajectories[0], trajectories[-1]
    end = _seconds(last.header.stamp) + _seconds(last.points[-1].time_from_start)
    # stamped at each tick's time: equal up to the ticks' jitter
    assert end == pytest.approx(_seconds(first.header.stamp) + 0.05 * planned, abs=0.01)
    assert np.all(np.array(last.points[-1].velocities) == 0.0)


@pytest.mark.ros
def test_dry_run_publishes_the_preview_and_nothing_to_the_robot(ros):
    _node, robot = ros({**BASE, "dry_run": True})
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.repeat(STEP, 20, axis=0))
    assert wait_for(lambda: len(robot.got["preview"]) >= 3)
    time.sleep(0.2)
    assert robot.got["traj"] == [] and robot.got["gripper"] == []


@pytest.mark.ros
def test_watchdog_holds_when_chunks_stop_and_nan_chunks_are_refused(ros):
    node, robot = ros(BASE)
    commands: list = []
    publish = node._publish
    node._publish = lambda command, stamp, **kw: (commands.append(command), publish(command, stamp, **kw))
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.full((5, 7), np.nan))
    assert wait_for(lambda: node.core.counters["rejected_chunks"] == 1)
    robot.chunk(np.repeat(STEP, 100, axis=0))
    assert wait_for(lambda: any(not c.hold for c in commands))
    # no new chunk: the first tick after watchdog_timeout (ROS clock) holds
    assert wait_for(lambda: any("watchdog" in c.reason for c in commands), timeout=3.0)
    held = next(c for c in commands if "watchdog" in c.reason)
    silence = float(re.search(r"for ([0-9.]+) s", held.reason).group(1))
    assert silence >= 0.3  # never before the timeout (the exact tick timing is a benchmark matter)
    moving = [c for c in commands if not c.hold]
    assert moving and commands.index(held) > commands.index(moving[-1])  # nothing moves after the hold
    assert held.hold and held.joint_targets is not None
    # the hold repeats the last commanded setpoint, not the measured joints (the fake arm never moved)
    np.testing.assert_allclose(held.joint_targets, moving[-1].joint_targets)
    assert not np.allclose(held.joint_targets, HOME)


@pytest.mark.ros
def test_estop_holds_at_once_and_keeps_holding(ros):
    node, robot = ros(BASE)
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.repeat(STEP, 200, axis=0))
    # the chunk moves the arm (an activation hold at HOME may come first)
    assert wait_for(lambda: any(not np.allclose(t.points[-1].positions, HOME) for t in robot.got["traj"]))
    before = len(robot.got["traj"])
    robot.estop_pub.publish(Bool(data=True))
    # the e-stop callback itself publishes the hold: no waiting for the next control tick
    assert wait_for(
        lambda: node.report.last_command is not None and node.report.last_command.reason == "e-stop",
        timeout=2.0,
    )

    # the hold is the last commanded setpoint (where the arm was told to be), not the measured HOME
    setpoint = np.array(node.report.last_command.joint_targets)
    assert not np.allclose(setpoint, HOME)

    def is_hold(trajectory: JointTrajectory) -> bool:
        return len(trajectory.points) == 1 and np.allclose(trajectory.points[0].positions, setpoint)

    # commands published before the e-stop may still be in delivery: count from the first hold received
    assert wait_for(lambda: any(is_hold(t) for t in robot.got["traj"][before:]), timeout=2.0)
    first_hold = next(i for i in range(before, len(robot.got["traj"])) if is_hold(robot.got["traj"][i]))
    time.sleep(0.2)
    assert all(is_hold(t) for t in robot.got["traj"][first_hold:])


@pytest.mark.ros
def test_lockstep_ticks_once_per_state_stamp_in_ensemble_mode(ros):
    _node, robot = ros(
        {**BASE, "mode": "ensemble", "tick_source": "state", "control_rate_hz": 10.0}, auto_state=False
    )
    assert wait_for(
        lambda: robot.joint_pub.get_subscription_count() > 0 and robot.chunk_pub.get_subscription_count() > 0
    )
    from builtin_interfaces.msg import Time

    for k in range(3):
        stamp = Time(sec=100 + k)
        robot.publish_state(stamp)
        time.sleep(0.05)
        assert len(robot.got["traj"]) == k  # no command before the chunk of this observation
        robot.chunk(np.repeat(STEP, 8, axis=0), obs_stamp=stamp)
        assert wait_for(lambda k=k: len(robot.got["traj"]) == k + 1)
        assert robot.got["traj"][k].header.stamp.sec == 100 + k
    time.sleep(0.2)
    assert len(robot.got["traj"]) == 3


TWO_LINK_URDF = """<robot name="two_link">
  <link name="base_link"/>
  <link name="link1"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="link2"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="tool0"/>
  <joint name="j1" type="revolute"><parent link="base_link"/><child link="link1"/><origin xyz="0 0 0.3"/>
    <axis xyz="0 0 1"/><limit lower="-3" upper="3" effort="10" velocity="2"/></joint>
  <joint name="j2" type="revolute"><parent link="link1"/><child link="link2"/><origin xyz="0 0 0.2"/>
    <axis xyz="0 1 0"/><limit lower="-2" upper="2" effort="10" velocity="2"/></joint>
  <joint name="tool" type="fixed"><parent link="link2"/><child link="tool0"/><origin xyz="0.4 0 0"/></joint>
</robot>"""


@pytest.mark.ros
def test_ik_comes_from_the_robot_description_topic_when_no_urdf_parameter_is_given(ros):
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from std_msgs.msg import String

    params = {**BASE, "robot": "urdf", "ee_frame": "tool0", "arm_joints": ["j1", "j2"]}
    node, robot = ros(params, auto_state=False)
    peer = robot.node

    def state() -> None:
        msg = JointState(name=["j1", "j2"], position=[0.0, 0.3])
        msg.header.stamp = peer.get_clock().now().to_msg()
        robot.joint_pub.publish(msg)

    peer.create_timer(0.02, state)
    robot.chunk(np.repeat(STEP, 200, axis=0))
    time.sleep(0.3)
    assert node.core.ik is None and robot.got["traj"] == []  # no IK model: nothing is commanded
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    peer.create_publisher(String, "robot_description", latched).publish(String(data=TWO_LINK_URDF))
    assert wait_for(lambda: node.core.ik is not None)
    robot.chunk(
        np.repeat(STEP, 200, axis=0)
    )  # the first chunk may have run out meanwhile (holds send nothing)
    assert wait_for(lambda: robot.got["traj"])
    traj = robot.got["traj"][-1]
    assert traj.joint_names == ["j1", "j2"]
    assert node.core.config.limits.joint_upper == (3.0, 2.0)  # limits taken from the URDF


@pytest.mark.ros
def test_lockstep_chunk_mode_answers_each_state_stamp_exactly_once_with_that_stamp(ros):
    _node, robot = ros({**BASE, "tick_source": "state", "control_rate_hz": 10.0}, auto_state=False)
    assert wait_for(
        lambda: robot.joint_pub.get_subscription_count() > 0 and robot.chunk_pub.get_subscription_count() > 0
    )
    from builtin_interfaces.msg import Time

    robot.chunk(np.repeat(STEP, 20, axis=0), obs_stamp=Time(sec=50))
    time.sleep(0.2)
    for k in range(4):
        robot.publish_state(Time(sec=50, nanosec=k * 100_000_000))
        assert wait_for(lambda k=k: len(robot.got["traj"]) == k + 1)
        assert robot.got["traj"][k].header.stamp.nanosec == k * 100_000_000
    robot.publish_state(Time(sec=50, nanosec=300_000_000))  # the same stamp again: no new tick
    time.sleep(0.2)
    assert len(robot.got["traj"]) == 4


@pytest.mark.ros
def test_diagnostics_count_refused_chunks_and_report_the_hold_reason(ros):
    from diagnostic_msgs.msg import DiagnosticArray

    _node, robot = ros(BASE)
    diagnostics: list = []
    robot.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.full((5, 7), np.nan))

    def values():
        for array in reversed(diagnostics):
            for status in array.status:
                if status.name.endswith("executor"):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    # the rate is measured over the ticks since activation: on a loaded machine the first diagnostics
    # after the refusal can come before the meter has two ticks, so wait for both
    assert wait_for(
        lambda: values().get("rejected_chunks") == "1" and float(values().get("control_rate_hz", "0")) > 0,
        timeout=4.0,
    )
    v = values()
    assert v["last_hold_reason"] == "waiting for the first chunk" and v["mode"] == "chunk"
    assert float(v["control_rate_hz"]) > 0 and "jitter_p99_ms" in v and v["watchdog_trips"] == "0"


@pytest.mark.ros
def test_deactivate_publishes_a_hold_at_once_and_then_nothing(ros):
    node, robot = ros({**BASE, "chunk_trajectory": False})
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.repeat(STEP, 200, axis=0))
    assert wait_for(lambda: any(not np.allclose(t.points[0].positions, HOME) for t in robot.got["traj"]))
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert wait_for(lambda: node.report.last_command.reason == "deactivated")
    setpoint = node.report.last_command.joint_targets  # the last commanded setpoint, held
    assert not np.allclose(setpoint, HOME)
    # the last motion command and the hold carry the same positions: wait for both to be delivered
    assert wait_for(
        lambda: (
            len(robot.got["traj"]) >= 2
            and all(np.allclose(t.points[0].positions, setpoint) for t in robot.got["traj"][-2:])
        )
    )
    count = len(robot.got["traj"])
    time.sleep(0.3)
    assert len(robot.got["traj"]) == count


@pytest.mark.ros
def test_configured_joint_limits_narrow_the_model_limits(ros):
    lower = [-0.1, -1.0, -0.1, -2.5, -0.1, 1.4, 0.7]
    upper = [0.001, -0.5, 0.1, -2.0, 0.1, 1.7, 0.9]
    node, robot = ros({**BASE, "joint_lower": lower, "joint_upper": upper, "chunk_trajectory": False})
    assert node.core.config.limits.joint_upper[0] == 0.001
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.repeat(STEP, 200, axis=0))
    assert wait_for(lambda: len(robot.got["traj"]) > 10)
    for traj in robot.got["traj"]:
        q = np.array(traj.points[0].positions)
        assert np.all(q >= np.array(lower) - 1e-12) and np.all(q <= np.array(upper) + 1e-12)


def _node(context, **params) -> ChunkExecutorNode:
    return ChunkExecutorNode(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )


def test_an_unknown_parameter_is_refused_with_the_nearest_valid_name(context):
    with pytest.raises(ParameterSchemaError) as refused:
        _node(context, contrl_rate_hz=20.0)
    assert "Unknown parameter 'contrl_rate_hz' for node chunk_executor" in str(refused.value)
    assert "Did you mean: 'control_rate_hz'" in str(refused.value)


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("max_joint_velocity", 20.0, ["max_joint_velocity", "20.0", "0.01", "10.0"]),
        ("backend", "moveit", ["backend", "'moveit'", "'joint_trajectory'", "'servo'"]),
        ("embodiment", "ur5", ["embodiment", "'ur5'", "'franka_real'"]),
        ("workspace_min", [0.1, 0.2], ["workspace_min", "greater than 2"]),
    ],
)
def test_an_invalid_value_is_refused_naming_the_parameter_and_the_allowed_range(context, name, value, words):
    with pytest.raises(ParameterSchemaError) as refused:
        _node(context, **{name: value})
    message = str(refused.value)
    assert all(word in message for word in words), message


@pytest.mark.parametrize(
    "params",
    [
        {"joint_lower": [0.0, 1.0]},  # one value per arm joint: the Panda has 7
        {"robot": "urdf", "urdf_path": "/nonexistent/robot.urdf"},
        {"backend": "servo", "servo_planning_frame": ""},  # Servo needs the frame of every command
    ],
)
def test_a_configure_that_cannot_succeed_returns_failure_and_leaves_the_node_unconfigured(context, params):
    node = _node(context, **params)
    try:
        for _ in range(2):  # the failed attempt left nothing behind: the second fails the same way
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert node.lifecycle_state == "unconfigured" and node.core is None
            assert node.output is None  # its lifecycle publishers were freed with it
            assert not [p for p in node.publishers if p.topic_name.endswith("joint_trajectory")]
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_one_hundred_lifecycle_cycles_in_one_process_all_succeed(context):
    """configure -> activate -> deactivate -> cleanup, 100 times on one spinning executor: every transition
    SUCCESS; after each cycle no control thread, no subscription, no core is left."""
    node = _node(context, **{**BASE, "chunk_trajectory": False})
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)

    def nothing_left(cycle: int) -> None:
        assert node.control_loop is None and node.core is None and node.output is None, cycle
        assert not [s for s in node.subscriptions if s.topic_name.endswith(("action_chunk", "joint_states"))]

    try:
        with Spinner(executor):
            results = run_lifecycle_cycles(node, 100, on_cycle=nothing_left)
        assert results == [("success",) * 4] * 100
    finally:
        executor.shutdown()
        node.destroy_node()


def test_the_readme_parameter_table_is_the_one_the_schema_generates():
    from pathlib import Path

    from internvla_policy.chunk_executor_node import SCHEMA_PATH
    from internvla_ros_common.schema import load_schema, readme_drift

    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert readme_drift(readme, load_schema(SCHEMA_PATH)) is None


@pytest.mark.parametrize(
    "argv, code, words",
    [
        (["--help"], 0, ["max_joint_velocity", "autostart", "exit codes"]),
        (["contrl_rate_hz:=20.0"], 2, ["Did you mean: 'control_rate_hz'"]),
        (["max_joint_velocity:=20.0"], 2, ["max_joint_velocity", "20.0"]),
        (["autostart:=true", "joint_lower:=[0.0]"], 1, ["configure failed"]),
    ],
)
def test_the_command_line_exits_0_on_help_2_on_a_bad_parameter_and_1_on_a_failed_configure(
    argv, code, words, capsys
):
    from internvla_policy.chunk_executor_node import main

    with pytest.raises(SystemExit) as exited:
        main(["chunk_executor", *argv])
    out = capsys.readouterr()
    assert exited.value.code == code, out
    assert all(word in out.out + out.err for word in words), out


def _diagnostic(diagnostics: list):
    for array in reversed(list(diagnostics)):
        for status in array.status:
            if status.name.endswith("executor"):
                return status
    return None


def _in_the_future(node, seconds: float) -> Time:
    t = node.get_clock().now().nanoseconds + int(seconds * 1e9)
    return Time(sec=t // 10**9, nanosec=t % 10**9)


@pytest.mark.ros
def test_a_future_stamped_chunk_is_refused_later_chunks_still_move_and_the_watchdog_still_trips(ros):
    node, robot = ros({**BASE, "chunk_trajectory": False})
    commands: list = []
    publish = node._publish
    node._publish = lambda command, stamp, **kw: (commands.append(command), publish(command, stamp, **kw))
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.repeat(SMALL_STEP, 100, axis=0), obs_stamp=_in_the_future(robot.node, 1000.0))
    assert wait_for(lambda: node.core.counters["rejected_future_stamp"] == 1)
    assert wait_for(lambda: ExecutorStatus.REJECTED_INPUT in robot.codes())
    rejected = next(s for s in robot.got["status"] if s.code == ExecutorStatus.REJECTED_INPUT)
    assert "in the future" in rejected.detail and rejected.rejected_chunks == 1
    robot.chunk(np.repeat(SMALL_STEP, 6, axis=0))  # well stamped: executed
    assert wait_for(lambda: any(not c.hold for c in commands))
    for _ in range(8):  # from now on only future chunks (and invalid nanosec): the watchdog must trip
        robot.chunk(np.repeat(SMALL_STEP, 100, axis=0), obs_stamp=_in_the_future(robot.node, 1000.0))
        bad = Time(sec=1, nanosec=1_500_000_000)
        robot.chunk(np.repeat(SMALL_STEP, 100, axis=0), obs_stamp=bad)
        time.sleep(0.1)
    assert wait_for(lambda: any(c.status == ExecutorStatus.WATCHDOG for c in commands), timeout=3.0)
    assert node.core.counters["watchdog_trips"] == 1 and node.core.counters["rejected_invalid_stamp"] >= 8
    assert ExecutorStatus.WATCHDOG in robot.codes()


@pytest.mark.ros
def test_stale_joint_states_hold_the_setpoint_with_an_error_naming_the_input(ros):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    node, robot = ros({**BASE, "chunk_trajectory": False, "max_state_age": 0.2, "watchdog_timeout": 5.0})
    diagnostics: list = []
    robot.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 50)
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.repeat(SMALL_STEP, 200, axis=0))
    assert wait_for(lambda: any(not np.allclose(t.points[0].positions, HOME) for t in robot.got["traj"]))
    robot.state_age = 1.0  # the driver keeps publishing, with stamps 1 s old
    assert wait_for(lambda: node.report.last_command.status == ExecutorStatus.STALE_STATE)
    setpoint = np.array(node.report.last_command.joint_targets)
    assert "joint_states is stale" in node.report.last_command.reason
    count = len(robot.got["traj"])
    time.sleep(0.3)
    later = robot.got["traj"][count + 2 :]  # after delivery of what was in flight: holds only
    assert later and all(np.allclose(t.points[0].positions, setpoint) for t in later)

    def stale_error():
        status = _diagnostic(diagnostics)
        return (
            status is not None and status.level == DiagnosticStatus.ERROR and "joint_states" in status.message
        )

    assert wait_for(stale_error, timeout=3.0)
    assert ExecutorStatus.STALE_STATE in robot.codes() and node.core.counters["stale_state_holds"] > 0
    robot.state_age = 0.0  # fresh again: moves on from the held setpoint
    assert wait_for(lambda: node.report.last_command is not None and not node.report.last_command.hold)


@pytest.mark.ros
def test_the_estop_latches_until_the_release_service_and_false_alone_does_not_release(ros):
    node, robot = ros({**BASE, "chunk_trajectory": False, "watchdog_timeout": 5.0})
    client = robot.node.create_client(ReleaseEstop, "chunk_executor/release_estop")
    assert client.wait_for_service(timeout_sec=5.0)
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    robot.chunk(np.repeat(SMALL_STEP, 400, axis=0))
    assert wait_for(lambda: node.report.last_command is not None and not node.report.last_command.hold)
    robot.estop_pub.publish(Bool(data=True))
    assert wait_for(lambda: node.report.last_command.status == ExecutorStatus.ESTOP)

    def release():
        future = client.call_async(ReleaseEstop.Request())
        assert wait_for(future.done, timeout=5.0)
        return future.result()

    refused = release()  # the estop input is still true
    assert not refused.success and "still true" in refused.message
    robot.estop_pub.publish(Bool(data=False))
    robot.chunk(np.repeat(SMALL_STEP, 400, axis=0))
    time.sleep(0.3)
    assert node.report.last_command.hold and node.report.last_command.status == ExecutorStatus.ESTOP
    assert robot.got["status"][-1].estop_latched
    released = release()
    assert released.success and "released" in released.message and not node.core.estop_latched
    time.sleep(0.2)  # buffered chunks were dropped: holding until a new chunk
    assert node.report.last_command.hold and "e-stop released" in node.report.last_command.reason
    robot.chunk(np.repeat(SMALL_STEP, 400, axis=0))
    assert wait_for(lambda: not node.report.last_command.hold)


@pytest.mark.ros
def test_stop_and_abort_are_explicit_commands_and_unknown_commands_are_refused(ros):
    node, robot = ros({**BASE, "chunk_trajectory": False, "watchdog_timeout": 5.0})
    assert wait_for(lambda: robot.chunk_pub.get_subscription_count() > 0)
    time.sleep(0.1)
    empty = np.zeros((0, 7))
    robot.chunk(np.repeat(SMALL_STEP, 400, axis=0))
    assert wait_for(lambda: node.report.last_command is not None and not node.report.last_command.hold)
    robot.chunk(empty, command=ActionChunk.STOP, reason="cancelled")
    assert wait_for(lambda: node.report.last_command.reason == "stop: cancelled")
    assert node.report.last_command.status == ExecutorStatus.HOLDING
    robot.chunk(np.repeat(SMALL_STEP, 400, axis=0))
    assert wait_for(lambda: not node.report.last_command.hold)
    robot.chunk(empty, command=ActionChunk.ABORT, reason="error: model failed")
    assert wait_for(lambda: node.report.last_command.status == ExecutorStatus.ABORTED)
    assert node.report.last_command.reason == "abort: error: model failed"
    robot.chunk(np.repeat(SMALL_STEP, 400, axis=0), command=7)  # neither a chunk nor a stop: refused
    robot.chunk(empty)  # rows = 0 is no longer a stop: an empty CHUNK is malformed
    assert wait_for(
        lambda: (
            node.core.counters["rejected_unknown_command"] == 1 and node.core.counters["rejected_shape"] == 1
        )
    )
    time.sleep(0.2)
    assert node.report.last_command.hold and node.report.last_command.status == ExecutorStatus.ABORTED


def test_executor_status_constants_match_the_core_status_codes():
    from internvla_core.status import StatusCode

    for code in StatusCode:
        assert getattr(ExecutorStatus, code.name) == int(code)
    assert (ActionChunk.CHUNK, ActionChunk.STOP, ActionChunk.ABORT) == (0, 1, 2)
