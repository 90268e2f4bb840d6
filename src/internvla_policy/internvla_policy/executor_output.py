"""chunk_executor's outputs: previews, the command to the robot (unless dry_run or a robot error), the
gripper, ~/status every tick and event, /diagnostics each second and on every status change.

Made on configure with the node's lifecycle publishers (they publish only while active); /diagnostics is
the node's Updater, made once, so an unconfigured executor reports too. What the status and diagnostics
say is decided in ``internvla_core.execution.report``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Float64
from trajectory_msgs.msg import JointTrajectory

from internvla_core.executor_core import Command
from internvla_core.status import StatusCode
from internvla_msgs.msg import ExecutorStatus
from internvla_ros_common import qos
from internvla_ros_common.conversions import header, matrix_to_pose_stamped
from internvla_ros_common.diagnostics import WARN

from .executor_convert import status_msg, trajectory_msg


class ExecutorOutput:
    def __init__(self, node, controller_name: str) -> None:
        self.node, self.settings = node, node.settings
        publisher = node.create_lifecycle_publisher
        self.traj_pub = publisher(JointTrajectory, f"{controller_name}/joint_trajectory", qos.COMMAND)
        self.gripper_pub = publisher(Float64, "gripper/command", qos.COMMAND)
        self.preview_pub = publisher(JointTrajectory, "executor/preview", qos.COMMAND)
        self.preview_pose_pub = publisher(PoseStamped, "executor/preview_pose", qos.COMMAND)
        self.status_pub = publisher(ExecutorStatus, "~/status", qos.STATUS)

    def trajectory(self, stamp_s: float, times, positions, velocities=None) -> JointTrajectory:
        s = self.settings
        return trajectory_msg(
            stamp_s, s.embodiment.reference_frame, s.arm_joints, times, positions, velocities
        )

    def command(
        self,
        command: Command,
        stamp_s: float,
        trajectory: JointTrajectory | None,
        send_arm: bool,
        measured: Callable[[], np.ndarray | None],
    ) -> None:
        """Preview ``command`` and send it; ``trajectory`` replaces the single-point one, ``send_arm``
        False sends it nowhere but the preview (the controller already plays it)."""
        node, s = self.node, self.settings
        self.status(*node.report.commanded(command), stamp_s)
        if command.target_pose is None:  # a hold before any command, without a valid measured pose
            return
        frame = header(stamp_s, s.embodiment.reference_frame)
        self.preview_pose_pub.publish(matrix_to_pose_stamped(command.target_pose, frame))
        if trajectory is None and command.joint_targets is not None:
            trajectory = self.trajectory(stamp_s, [s.time_from_start], [command.joint_targets])
        if trajectory is not None:
            self.preview_pub.publish(trajectory)
        if s.dry_run or node.robot_errors.blocked:
            return
        if node.servo is not None:
            node.servo.send(command, stamp_s, measured)
        elif trajectory is not None and send_arm:
            self.traj_pub.publish(trajectory)
        if command.gripper_opening is not None:
            self.gripper_pub.publish(Float64(data=float(command.gripper_opening)))

    def status(self, code: StatusCode, detail: str, stamp_s: float | None = None) -> None:
        """~/status now; /diagnostics at once when the code changed."""
        node = self.node
        changed = node.report.set_status(code, detail)
        stamp = node.now_s() if stamp_s is None else stamp_s
        self.status_pub.publish(status_msg(code, detail, stamp, node.core, self.settings.dry_run))
        if changed:
            node.diagnostics.force_update()


def diagnose(node, stat):
    """The executor's /diagnostics status (node.diagnostics runs it each second and on a change)."""
    core, monitor = node.core, node.robot_errors
    if core is None or monitor is None:  # unconfigured (or torn down between the timer and this call)
        stat.summary(WARN, f"not configured ({node.lifecycle_state})")
        return stat
    servo = None if node.servo is None else node.servo.session.report(node.now_s())
    report = node.report.diagnostic(
        core, node.settings, node.rate_meter, node.estop_input, servo, monitor.report()
    )
    stat.summary(report.level, report.message)
    for key, value in report.values.items():
        stat.add(key, value)
    return stat
