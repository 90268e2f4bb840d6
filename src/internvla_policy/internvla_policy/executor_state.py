"""chunk_executor's view of the robot: the latest joint_states and ee_pose, read as numpy for the core."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import JointState

from internvla_core.input_checks import Stamp
from internvla_ros_common.conversions import pose_to_matrix


class RobotState:
    """Stores the inputs as they arrive; the tick reads the arm joints, the measured pose and their stamps."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.joints: JointState | None = None
        self.pose: PoseStamped | None = None
        self._index: dict[str, int] = {}
        self._warn = warn  # throttled by the caller

    def on_joints(self, msg: JointState) -> None:
        if self.joints is None or list(msg.name) != list(self.joints.name):
            self._index = {name: i for i, name in enumerate(msg.name)}
        self.joints = msg

    def on_pose(self, msg: PoseStamped) -> None:
        self.pose = msg

    def arm_positions(self, arm_joints) -> np.ndarray | None:
        if self.joints is None:
            return None
        try:
            return np.array(
                [self.joints.position[self._index[name]] for name in arm_joints], dtype=np.float64
            )
        except (KeyError, IndexError):
            self._warn(f"joint_states lacks some of {list(arm_joints)} (check arm_joints)")
            return None

    def measured_pose(self, joints: np.ndarray | None, ik, tf_pose: Callable[[], np.ndarray | None] | None):
        """The IK model's FK of the joints when there is one (one frame for all), else TF, else ee_pose."""
        if joints is not None and ik is not None:
            return ik.fk(joints)
        if tf_pose is not None:  # pose_source tf: the IK tip in Servo's planning frame
            return tf_pose()
        return None if self.pose is None else pose_to_matrix(self.pose)

    def stamps(self, joints: np.ndarray | None, ik, uses_tf: bool) -> dict:
        """The stamp of the state the tick uses, for the core's age check (TF poses: none)."""
        if joints is not None and ik is not None and self.joints is not None:
            return {"joints_stamp": Stamp.of(self.joints.header.stamp)}
        if not uses_tf and self.pose is not None:
            return {"pose_stamp": Stamp.of(self.pose.header.stamp)}
        return {}
