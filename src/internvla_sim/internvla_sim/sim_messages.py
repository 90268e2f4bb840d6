"""ROS messages of the simulator's state: joint states, TF edges, trajectories in, the robot's URDF.

Plain message building (no node, no rclpy), so each is tested without spinning ROS.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Header

from internvla_ros_common.conversions import matrix_to_transform_stamped

from .env import FrameTransform


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
