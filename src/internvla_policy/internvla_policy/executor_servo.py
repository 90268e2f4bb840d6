"""chunk_executor's link to MoveIt Servo (Jazzy/Kilted): command type switch, status read-back, TF pose.

Decisions are in ``internvla_core.servo`` (ServoSession: accepted, retry, status meaning; pose and twist
command content); this module makes the calls and messages.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped, TwistStamped

from internvla_core.executor_core import Command
from internvla_core.servo import ServoSession, pose_command, twist_command
from internvla_ros_common.conversions import header, transform_to_matrix

from .executor_convert import servo_pose_msg, servo_twist_msg

try:  # MoveIt Servo's interfaces: full ROS installs with MoveIt only (not on PyPI)
    from moveit_msgs.msg import ServoStatus
    from moveit_msgs.srv import ServoCommandType
except ImportError:  # pragma: no cover - depends on the install
    ServoStatus = ServoCommandType = None

try:  # the end-effector pose from TF (WidowX: no pose topic); full ROS installs only
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the install
    tf2_ros = None


class ServoLink:
    """Made on configure (backend servo); ``activate`` subscribes, ``destroy`` frees the client."""

    def __init__(self, node, settings) -> None:
        self.node, self.config, self.period = node, settings.servo, settings.period
        self.session = ServoSession(settings.servo)
        self.pose_pub = node.create_lifecycle_publisher(PoseStamped, "servo/pose_target_cmds", 10)
        self.twist_pub = node.create_lifecycle_publisher(TwistStamped, "servo/delta_twist_cmds", 10)
        self._client = None
        if ServoCommandType is not None:
            self._client = node.create_client(ServoCommandType, "servo/switch_command_type")
        self.tf_buffer = None
        if settings.pose_source == "tf":
            self.tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self.tf_buffer, node)

    def activate(self) -> None:
        self.session.reset()  # ask Servo for our command type again on every activation
        if ServoStatus is not None:
            self.node.managed_subscription(ServoStatus, "servo/status", self._on_status, 10)

    def destroy(self) -> None:
        if self._client is not None:
            self.node.destroy_client(self._client)
            self._client = None
        if self.tf_buffer is not None:
            self._tf_listener.unregister()
            self.tf_buffer = None

    def send(self, command: Command, stamp_s: float, measured: Callable[[], np.ndarray | None]) -> None:
        """One stamped command in Servo's planning frame, once Servo accepted our command type.
        ``measured()``: the measured pose (twist commands only; a hold sends a zero twist)."""
        session, servo = self.session, self.config
        if not session.accepted:
            self._request_switch()
            self.node.get_logger().warning(
                f"not commanding: MoveIt Servo has not accepted command type {servo.command} yet "
                f"({session.last_problem or 'asking'})",
                throttle_duration_sec=5.0,
            )
            return
        msg_header = header(stamp_s, servo.planning_frame)
        if servo.command == "pose":  # the last commanded target again on a hold: Servo stays there
            self.pose_pub.publish(
                servo_pose_msg(pose_command(command.target_pose, servo, stamp_s), msg_header)
            )
            return
        current = None if command.hold else measured()
        content = twist_command(command.target_pose, current, self.period, servo, stamp_s)
        self.twist_pub.publish(servo_twist_msg(content, msg_header))

    def _request_switch(self) -> None:
        """Ask Servo (servo/switch_command_type) for our command type; the answer arrives asynchronously."""
        session, now = self.session, self.node.now_s()
        if self._client is None or not session.wants_switch(now):
            return
        session.request_sent(now)
        if not self._client.service_is_ready():
            session.response(None, "no servo/switch_command_type service (is MoveIt Servo running?)")
            return
        request = ServoCommandType.Request(command_type=self.config.command_type)
        self._client.call_async(request).add_done_callback(self._on_switch_answer)

    def _on_switch_answer(self, future) -> None:
        try:
            success = bool(future.result().success)
        except Exception as exc:  # the call itself failed
            self.session.response(None, f"switch_command_type failed: {exc}")
            return
        self.session.response(success)
        if success:
            self.node.get_logger().info(f"MoveIt Servo accepts command type {self.config.command}")
        else:
            self.node.get_logger().error(self.session.last_problem)

    def _on_status(self, msg) -> None:
        before = self.session.status.name if self.session.status is not None else None
        info = self.session.on_status(msg.code, msg.message, self.node.now_s())
        if info.name != before and info.level != "ok":
            log = self.node.get_logger().error if info.level == "error" else self.node.get_logger().warning
            log(f"MoveIt Servo: {info.name} ({info.meaning})")

    def tf_pose(self) -> np.ndarray | None:
        """ee_frame in servo_planning_frame from TF (latest), or None (logged) while unavailable."""
        servo = self.config
        try:
            tf = self.tf_buffer.lookup_transform(servo.planning_frame, servo.ee_frame, rclpy.time.Time())
        except Exception as exc:  # tf2 raises several lookup exception types
            self.node.get_logger().warning(
                f"no TF {servo.planning_frame} -> {servo.ee_frame} ({exc})", throttle_duration_sec=5.0
            )
            return None
        return transform_to_matrix(tf)
