"""chunk_executor (backend servo) against a fake MoveIt Servo built from moveit_msgs' interfaces.

Run by test_servo_backend.py in a subprocess that sources the test build of the two moveit_msgs
interfaces (fake_moveit_msgs/); needs ``moveit_msgs`` importable, so it is not named test_*.py.

FakeServo behaves like moveit_servo's ServoNode on Jazzy/Kilted (servo_node.cpp, servo.cpp, as read
from the jazzy branch): it starts in JOINT_JOG, answers ``~/switch_command_type`` with
``success = (requested == current)``, drops commands of another type ("Command type has not been
set"), makes a command whose frame_id is not the planning frame INVALID, treats a command as stale
when ``now - header.stamp >= incoming_command_timeout`` and then halts, moves the tip toward a pose
target at most ``scale.linear`` m/s, integrates speed_units twists, and publishes ``~/status`` every
loop. It publishes the tip pose best-effort, as franka_robot_state_broadcaster's current_pose.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped, TwistStamped
from moveit_msgs.msg import ServoStatus
from moveit_msgs.srv import ServoCommandType
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from test_chunk_executor_node import matched_both_ways

from internvla_bringup.graphs import SERVO_REMAPS
from internvla_core.rotations import (
    make_pose,
    matrix_to_quaternion,
    matrix_to_rotvec,
    quaternion_to_matrix,
    rotvec_to_matrix,
)
from internvla_msgs.msg import ActionChunk
from internvla_policy.chunk_executor_node import ChunkExecutorNode
from internvla_ros_common.testing import Spinner, wait_for

PERIOD = 0.02  # the fake's loop (moveit_servo publish_period)


class FakeServo(Node):
    def __init__(self, context, planning_frame: str, timeout: float, accept: bool = True) -> None:
        super().__init__("servo_node", context=context)
        self.planning_frame, self.timeout, self.accept = planning_frame, timeout, accept
        self.scale_linear, self.scale_rotational = 0.4, 0.8
        self.command_type = ServoCommandType.Request.JOINT_JOG
        self.tip = make_pose(np.array([0.45, 0.0, 0.4]), rotvec_to_matrix(np.array([np.pi, 0.0, 0.0])))
        self.latest: dict[str, object] = {"pose": None, "twist": None}
        self.new = {"pose": False, "twist": False}
        self.counts = {"refused": 0, "invalid": 0, "stale": 0, "applied": 0, "switches": 0}
        self.received: list = []
        self.forced_status: int | None = None
        self.create_service(ServoCommandType, "~/switch_command_type", self._switch)
        self.create_subscription(PoseStamped, "~/pose_target_cmds", self._store("pose"), 10)
        self.create_subscription(TwistStamped, "~/delta_twist_cmds", self._store("twist"), 10)
        self.status_pub = self.create_publisher(ServoStatus, "~/status", 10)
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pose_pub = self.create_publisher(PoseStamped, "/fake_robot/current_pose", best_effort)
        self.create_timer(PERIOD, self._loop)

    def _switch(self, request, response):
        self.counts["switches"] += 1
        if self.accept and 0 <= request.command_type <= 2:
            self.command_type = request.command_type
        response.success = request.command_type == self.command_type
        return response

    def _store(self, kind: str):
        def callback(msg) -> None:
            self.latest[kind], self.new[kind] = msg, True
            self.received.append((kind, msg))

        return callback

    def _loop(self) -> None:
        now = self.get_clock().now().nanoseconds * 1e-9
        code = ServoStatus.NO_WARNING
        expected = {ServoCommandType.Request.POSE: "pose", ServoCommandType.Request.TWIST: "twist"}.get(
            self.command_type
        )
        if self.forced_status is not None:
            code = self.forced_status
        elif expected is not None and self.new[expected]:
            code = self._process(expected, now)
        elif self.new["pose"] or self.new["twist"]:
            self.new = {"pose": False, "twist": False}
            self.counts["refused"] += 1  # "Command type has not been set, cannot accept input"
        self.status_pub.publish(ServoStatus(code=code, message=""))
        out = PoseStamped()
        out.header.frame_id = self.planning_frame
        out.header.stamp = self.get_clock().now().to_msg()
        p, o = out.pose.position, out.pose.orientation
        p.x, p.y, p.z = (float(v) for v in self.tip[:3, 3])
        o.x, o.y, o.z, o.w = (float(v) for v in matrix_to_quaternion(self.tip[:3, :3]))
        self.pose_pub.publish(out)

    def _process(self, kind: str, now: float) -> int:
        msg = self.latest[kind]
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if now - stamp >= self.timeout:  # stale: halt, and forget the command
            self.new[kind] = False
            self.counts["stale"] += 1
            return ServoStatus.NO_WARNING
        if msg.header.frame_id != self.planning_frame:
            self.new[kind] = False
            self.counts["invalid"] += 1
            return ServoStatus.INVALID
        self.counts["applied"] += 1
        if kind == "pose":
            p, o = msg.pose.position, msg.pose.orientation
            error = np.array([p.x, p.y, p.z]) - self.tip[:3, 3]
            limit = self.scale_linear * PERIOD
            if np.linalg.norm(error) > limit:
                error *= limit / np.linalg.norm(error)
            target_rotation = quaternion_to_matrix([o.x, o.y, o.z, o.w])
            rotation_error = matrix_to_rotvec(target_rotation @ self.tip[:3, :3].T)
            angle_limit = self.scale_rotational * PERIOD
            if np.linalg.norm(rotation_error) > angle_limit:
                rotation_error *= angle_limit / np.linalg.norm(rotation_error)
        else:
            t = msg.twist
            error = np.array([t.linear.x, t.linear.y, t.linear.z]) * PERIOD
            rotation_error = np.array([t.angular.x, t.angular.y, t.angular.z]) * PERIOD
        self.tip = make_pose(self.tip[:3, 3] + error, rotvec_to_matrix(rotation_error) @ self.tip[:3, :3])
        return ServoStatus.NO_WARNING


@pytest.fixture
def ros():
    context = Context()
    rclpy.init(context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    nodes: list = []

    def make(params: dict, planning_frame: str, timeout: float, accept: bool = True):
        servo = FakeServo(context, planning_frame, timeout, accept)
        remaps = [*SERVO_REMAPS, ("ee_pose", "/fake_robot/current_pose")]
        cli = ["--ros-args"] + [arg for a, b in remaps for arg in ("-r", f"{a}:={b}")]
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        node = ChunkExecutorNode(context=context, parameter_overrides=overrides, cli_args=cli)
        peer = Node("peer", context=context)
        nodes.extend([servo, node, peer])
        for n in (servo, node, peer):
            executor.add_node(n)
        return servo, node, peer

    # deactivate destroys subscriptions while the executor may be building a wait set: Spinner's loop
    # survives that (rclpy raises InvalidHandle there), a bare spin_once loop dies with it
    spinner = Spinner(executor)
    yield make
    spinner.stop()
    executor.shutdown()
    for n in nodes:
        n.destroy_node()
    rclpy.shutdown(context=context)


FRANKA = {
    "embodiment": "franka_real",
    "mode": "chunk",
    "backend": "servo",
    "dry_run": False,
    "watchdog_timeout": 5.0,
    "servo_command": "pose",
    "servo_planning_frame": "fr3_link0",
    "ee_frame": "fr3_hand_tcp",
    "servo_incoming_command_timeout": 0.25,
    "pose_source": "ee_pose",
    "workspace_min": [0.1, -0.6, 0.02],
    "workspace_max": [0.8, 0.6, 0.9],
}


def chunk(peer_pub, peer, rows: np.ndarray, embodiment: str) -> None:
    msg = ActionChunk(embodiment=embodiment, rows=rows.shape[0], cols=rows.shape[1])
    msg.data = rows.ravel().tolist()
    msg.observation_stamp = peer.get_clock().now().to_msg()
    peer_pub.publish(msg)


def test_the_fake_refuses_commands_before_the_switch_and_stale_ones_after(ros):
    servo, _node, peer = ros(FRANKA, "fr3_link0", 0.25)
    pub = peer.create_publisher(PoseStamped, "/servo_node/pose_target_cmds", 10)
    assert wait_for(lambda: matched_both_ways(pub, servo))
    start = servo.tip.copy()
    msg = PoseStamped()
    msg.header.frame_id = "fr3_link0"
    msg.header.stamp = peer.get_clock().now().to_msg()
    msg.pose.position.x, msg.pose.orientation.w = 0.6, 1.0
    servo.command_type = ServoCommandType.Request.JOINT_JOG
    pub.publish(msg)
    assert wait_for(lambda: servo.counts["refused"] >= 1)
    np.testing.assert_array_equal(servo.tip, start)
    servo.command_type = ServoCommandType.Request.POSE
    msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0  # unstamped: always stale
    pub.publish(msg)
    assert wait_for(lambda: servo.counts["stale"] >= 1)
    np.testing.assert_array_equal(servo.tip, start)


def test_pose_stream_moves_the_tip_after_the_switch_and_servo_halts_when_it_stops(ros):
    servo, node, peer = ros(FRANKA, "fr3_link0", 0.25)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert wait_for(lambda: servo.command_type == ServoCommandType.Request.POSE)
    assert wait_for(lambda: node.servo.session.accepted)
    chunk_pub = peer.create_publisher(ActionChunk, "action_chunk", 10)
    assert wait_for(lambda: matched_both_ways(chunk_pub, node))
    start = servo.tip.copy()
    step = np.array([[0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])  # tool x, 1 cm per 0.1 s
    chunk(chunk_pub, peer, np.repeat(step, 60, axis=0), "franka_real")
    along = start[:3, 0]  # the tool x axis in the planning frame
    assert wait_for(lambda: float((servo.tip[:3, 3] - start[:3, 3]) @ along) > 0.04, timeout=15.0)
    poses = [m for kind, m in servo.received if kind == "pose"]
    assert poses and all(m.header.frame_id == "fr3_link0" for m in poses)
    assert servo.counts["refused"] == 0 and servo.counts["invalid"] == 0  # never before the switch
    assert not [m for kind, m in servo.received if kind == "twist"]  # one command type only
    sideways = servo.tip[:3, 3] - start[:3, 3] - ((servo.tip[:3, 3] - start[:3, 3]) @ along) * along
    assert np.linalg.norm(sideways) < 0.005
    # the stream stops (deactivate: one hold, then nothing): Servo finds it stale and halts
    stale = servo.counts["stale"]
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert wait_for(lambda: servo.counts["stale"] > stale, timeout=2.0)
    halted = servo.tip.copy()
    time.sleep(0.5)
    np.testing.assert_allclose(servo.tip, halted, atol=1e-12)


def test_twist_stream_on_the_widowx_planning_frame(ros):
    params = {
        **FRANKA,
        "embodiment": "widowx_bridge",
        "servo_command": "twist",
        "servo_planning_frame": "wx250s/base_link",
        "ee_frame": "wx250s/ee_gripper_link",
        "servo_incoming_command_timeout": 0.5,  # 5 Hz stream
    }
    servo, node, peer = ros(params, "wx250s/base_link", 0.5)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert wait_for(lambda: servo.command_type == ServoCommandType.Request.TWIST)
    chunk_pub = peer.create_publisher(ActionChunk, "action_chunk", 10)
    assert wait_for(lambda: matched_both_ways(chunk_pub, node) and node.servo.session.accepted)
    start = servo.tip.copy()
    step = np.array([[0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 1.0]])  # base y, 1 cm per 0.2 s
    chunk(chunk_pub, peer, np.repeat(step, 40, axis=0), "widowx_bridge")
    assert wait_for(lambda: servo.tip[1, 3] - start[1, 3] > 0.03, timeout=15.0)
    twists = [m for kind, m in servo.received if kind == "twist"]
    assert all(m.header.frame_id == "wx250s/base_link" for m in twists)
    moving = [m.twist.linear.y for m in twists if m.twist.linear.y != 0.0]
    assert moving and np.median(moving) == pytest.approx(0.05, abs=0.02)  # m/s (speed_units)
    assert servo.counts["refused"] == 0 and servo.counts["invalid"] == 0


def test_servo_status_and_a_refused_switch_reach_diagnostics(ros):
    servo, node, peer = ros(FRANKA, "fr3_link0", 0.25)
    diagnostics: list = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert wait_for(lambda: node.servo.session.accepted)
    servo.forced_status = ServoStatus.HALT_FOR_COLLISION

    def executor_status():
        for array in reversed(diagnostics):
            for status in array.status:
                if status.name.endswith("executor"):
                    return status
        return None

    def reports(code_name: str, level) -> bool:
        status = executor_status()
        return status is not None and code_name in status.message and status.level == level

    assert wait_for(lambda: reports("HALT_FOR_COLLISION", DiagnosticStatus.ERROR), timeout=5.0)
    values = {kv.key: kv.value for kv in executor_status().values}
    assert values["servo_status_code"] == "5" and values["servo_command_type_accepted"] == "True"
    # a Servo that refuses our command type gets no commands, and diagnostics say so
    servo.accept, servo.command_type, servo.forced_status = False, ServoCommandType.Request.JOINT_JOG, None
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    time.sleep(0.3)  # the hold sent on deactivation is delivered
    count = len(servo.received)
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert wait_for(lambda: servo.counts["switches"] >= 2 and node.servo.session.refusals >= 1)
    assert wait_for(lambda: reports("refused command type pose", DiagnosticStatus.WARN), timeout=5.0)
    time.sleep(0.3)
    assert len(servo.received) == count
