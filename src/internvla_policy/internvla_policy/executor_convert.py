"""chunk_executor's own messages (the shared ones are in internvla_ros_common.conversions): trajectories
for a JointTrajectoryController, MoveIt Servo commands, ExecutorStatus."""

from __future__ import annotations

from geometry_msgs.msg import PoseStamped, TwistStamped
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from internvla_core.execution.report import status_counters
from internvla_core.executor_core import ExecutorCore
from internvla_core.servo import PoseCommand, TwistCommand
from internvla_core.status import StatusCode
from internvla_core.status import text as status_text
from internvla_msgs.msg import ExecutorStatus
from internvla_ros_common.conversions import header, to_duration


def servo_pose_msg(content: PoseCommand, msg_header: Header) -> PoseStamped:
    msg = PoseStamped(header=msg_header)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in content.position)
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in content.orientation)
    return msg


def servo_twist_msg(content: TwistCommand, msg_header: Header) -> TwistStamped:
    msg = TwistStamped(header=msg_header)
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in content.linear)
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in content.angular)
    return msg


def trajectory_msg(
    stamp_s: float, frame_id: str, joints, times, positions, velocities=None
) -> JointTrajectory:
    """Points at ``times`` after the stamp; no velocities = a single-point stream's point."""
    msg = JointTrajectory(header=header(stamp_s, frame_id), joint_names=list(joints))
    for i, (t, q) in enumerate(zip(times, positions)):
        point = JointTrajectoryPoint(positions=[float(x) for x in q], time_from_start=to_duration(t))
        if velocities is not None:
            point.velocities = [float(x) for x in velocities[i]]
        msg.points.append(point)
    return msg


def status_msg(
    code: StatusCode, detail: str, stamp_s: float, core: ExecutorCore, dry_run: bool
) -> ExecutorStatus:
    msg = ExecutorStatus(header=header(stamp_s), code=int(code), message=status_text(code), detail=detail)
    msg.estop_latched, msg.dry_run = core.estop_latched, bool(dry_run)
    for name, value in status_counters(core).items():
        setattr(msg, name, value)
    return msg
