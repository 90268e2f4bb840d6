"""ROS messages of the simulator's state: joint states, TF edges, trajectories in, the robot's URDF,
and the publisher of one simulated time's observation.

Plain message building (no node, no rclpy; publishers are passed in), so each is tested without
spinning ROS.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header

from internvla_core.image_conversion import depth_to_image_fields, rgb_to_image_fields
from internvla_ros_common.conversions import (
    camera_info_msg,
    matrix_to_pose_stamped,
    matrix_to_transform_stamped,
    to_stamp,
)

from .env import OPTICAL_FRAMES, FrameTransform


def transform_messages(transforms: list[FrameTransform], stamp: Time) -> list[TransformStamped]:
    """geometry_msgs/TransformStamped for each TF edge (header = parent frame, child_frame_id = child)."""
    return [
        matrix_to_transform_stamped(edge.pose, Header(stamp=stamp, frame_id=edge.parent), edge.child)
        for edge in transforms
    ]


def joint_state(header: Header, names: list[str], positions: np.ndarray) -> JointState:
    return JointState(header=header, name=list(names), position=[float(v) for v in positions])


def trajectory_fields(msg) -> tuple[list[str], float, list[float], list[list[float]], list[list[float]]]:
    """trajectory_msgs/JointTrajectory as JointTrajectoryControllerEmulation.submit reads it:
    joint names, header stamp [s], time_from_start of each point [s], positions, velocities."""
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
    positions = [list(p.positions) for p in msg.points]
    return list(msg.joint_names), stamp, times, positions, [list(p.velocities) for p in msg.points]


def tf_message_type():
    """tf2_msgs/TFMessage where installed (full ROS installs), else None (pip setups: no /tf)."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return TFMessage


def robot_description_xml(scene) -> str:
    """The URDF of a robot scene: the WidowX's own; the Menagerie Panda's exported from its MJCF with
    panda_* link names and the simulator's joint names."""
    from internvla_core.robot_assets import robot_description

    from .urdf_export import urdf_from_mjcf

    description = robot_description(scene.description)
    if description.format == "urdf":
        return description.urdf_xml()
    return urdf_from_mjcf(description.path, scene.base_body, scene.tf_frame, scene.description)


class ObservationPublisher:
    """Publishes what the robot's drivers and cameras publish at one simulated time ``t``: /clock, the
    RGB (and depth) images with their camera_info, ee_pose, joint_states and the moving TF edges.

    ``publishers`` maps image, depth, info, wrist, wrist_info, pose, joints (and tf) to publishers.
    """

    def __init__(
        self, publishers: dict, clock_publisher, options, joint_names: list[str], tf_message
    ) -> None:
        self.pub, self.clock_pub, self.options = publishers, clock_publisher, options
        self.joint_names, self.tf_message = joint_names, tf_message
        self._last_tf_time: float | None = None

    def publish(self, env, t: float) -> None:
        stamp = to_stamp(t)
        self.clock_pub.publish(Clock(clock=stamp))
        for camera, image_key, info_key in (
            ("third_person", "image", "info"),
            ("wrist", "wrist", "wrist_info"),
        ):
            if camera == "wrist" and not self.options.render_wrist:
                continue
            header = Header(stamp=stamp, frame_id=OPTICAL_FRAMES[camera])
            self.pub[image_key].publish(Image(header=header, **rgb_to_image_fields(env.render(camera))))
            if camera == "third_person" and self.options.publish_depth:
                depth = depth_to_image_fields(env.render(camera, depth=True))
                self.pub["depth"].publish(Image(header=header, **depth))
            spec = next(c for c in env.cameras if c.name == camera)
            self.pub[info_key].publish(
                camera_info_msg(header, env.camera_intrinsics(camera), spec.width, spec.height)
            )
        base = Header(stamp=stamp, frame_id=env.robot.base_frame)
        self.pub["pose"].publish(matrix_to_pose_stamped(env.hand_pose(), base))
        positions = np.concatenate([env.arm_positions(), env.finger_positions()])
        self.pub["joints"].publish(joint_state(base, self.joint_names, positions))
        if self.tf_message is not None and t != self._last_tf_time:  # tf2 warns on a repeated stamp
            self._last_tf_time = t
            moving = transform_messages([e for e in env.frame_transforms() if not e.static], stamp)
            self.pub["tf"].publish(self.tf_message(transforms=moving))
