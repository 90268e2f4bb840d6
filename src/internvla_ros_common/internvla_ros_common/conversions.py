"""Message <-> Python conversions that several nodes need, written once.

Gathered from the copies in policy_node, chunk_executor (executor_convert), grounding (conversions),
sim_node (sim_messages) and demo: stamps, durations, headers, poses/transforms as 4x4 matrices,
images as numpy arrays, camera_info. The maths lives in internvla_core (stamps, rotations,
image_conversion); this module only moves fields in and out of messages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Pose, PoseStamped, Transform, TransformStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from internvla_core.image_conversion import (
    depth_to_image_fields,
    image_to_depth_m,
    image_to_rgb,
    rgb_to_image_fields,
)
from internvla_core.rotations import matrix_to_quaternion, quaternion_to_matrix
from internvla_core.stamps import NANOSECONDS, join_seconds, split_seconds


# -------------------------------------------------------------------------------------- time
def stamp_seconds(stamp: Time | Duration) -> float:
    """builtin_interfaces Time/Duration as float seconds."""
    return join_seconds(stamp.sec, stamp.nanosec)


def stamp_ns(stamp: Time | Duration) -> int:
    """Time/Duration as exact integer nanoseconds (for comparing and pairing stamps)."""
    return int(stamp.sec) * NANOSECONDS + int(stamp.nanosec)


def to_stamp(seconds: float) -> Time:
    """float seconds -> Time without losing the carry (2.9999999997 s is 3 s, not 2 s)."""
    sec, nanosec = split_seconds(float(seconds))
    return Time(sec=sec, nanosec=nanosec)


def to_duration(seconds: float) -> Duration:
    sec, nanosec = split_seconds(float(seconds))
    return Duration(sec=sec, nanosec=nanosec)


def header(seconds: float, frame_id: str = "") -> Header:
    """A Header stamped at ``seconds``."""
    return Header(stamp=to_stamp(seconds), frame_id=frame_id)


# -------------------------------------------------------------------------------------- poses
def _matrix(translation: Any, rotation: Any) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix([rotation.x, rotation.y, rotation.z, rotation.w])
    out[:3, 3] = [translation.x, translation.y, translation.z]
    return out


def pose_to_matrix(msg: Pose | PoseStamped) -> np.ndarray:
    """geometry_msgs Pose or PoseStamped -> 4x4 homogeneous matrix."""
    pose = msg.pose if isinstance(msg, PoseStamped) else msg
    return _matrix(pose.position, pose.orientation)


def transform_to_matrix(msg: Transform | TransformStamped) -> np.ndarray:
    """geometry_msgs Transform or TransformStamped -> 4x4 homogeneous matrix."""
    transform = msg.transform if isinstance(msg, TransformStamped) else msg
    return _matrix(transform.translation, transform.rotation)


def matrix_to_pose(matrix: np.ndarray) -> Pose:
    """4x4 homogeneous matrix -> Pose (unit quaternion, w >= 0 as internvla_core returns it)."""
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in matrix[:3, 3])
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in matrix_to_quaternion(matrix[:3, :3]))
    return pose


def matrix_to_pose_stamped(matrix: np.ndarray, msg_header: Header) -> PoseStamped:
    return PoseStamped(header=msg_header, pose=matrix_to_pose(matrix))


def matrix_to_transform(matrix: np.ndarray) -> Transform:
    """4x4 homogeneous matrix -> Transform."""
    pose = matrix_to_pose(matrix)
    transform = Transform()
    transform.translation.x, transform.translation.y, transform.translation.z = (
        pose.position.x,
        pose.position.y,
        pose.position.z,
    )
    transform.rotation = pose.orientation
    return transform


def matrix_to_transform_stamped(
    matrix: np.ndarray, msg_header: Header, child_frame_id: str
) -> TransformStamped:
    """A TF edge: ``msg_header.frame_id`` is the parent, ``child_frame_id`` the child."""
    return TransformStamped(
        header=msg_header, child_frame_id=child_frame_id, transform=matrix_to_transform(matrix)
    )


# ------------------------------------------------------------------------------------- images
def image_to_rgb_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image of any supported colour encoding -> [H, W, 3] uint8 RGB.
    Raises internvla_core.image_conversion.ImageConversionError with what to change."""
    return image_to_rgb(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)


def image_to_depth_array(msg: Image) -> np.ndarray:
    """Depth image (16UC1 mm, 32FC1 m) -> [H, W] float32 metres, invalid pixels NaN."""
    return image_to_depth_m(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)


def rgb_to_image_msg(rgb: np.ndarray, msg_header: Header | None = None) -> Image:
    """[H, W, 3] uint8 -> rgb8 Image."""
    return Image(header=msg_header or Header(), **rgb_to_image_fields(rgb))


def depth_to_image_msg(depth_m: np.ndarray, msg_header: Header | None = None) -> Image:
    """[H, W] metres -> 32FC1 Image."""
    return Image(header=msg_header or Header(), **depth_to_image_fields(depth_m))


def camera_info_msg(msg_header: Header, k: np.ndarray, width: int, height: int) -> CameraInfo:
    """An undistorted pinhole camera_info (plumb_bob, zero coefficients) for intrinsics ``k``."""
    k = np.asarray(k, dtype=float).reshape(3, 3)
    info = CameraInfo(header=msg_header, width=int(width), height=int(height), distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = k.ravel().tolist()
    info.r = np.eye(3).ravel().tolist()
    info.p = np.hstack([k, np.zeros((3, 1))]).ravel().tolist()
    return info


def camera_matrix(info: CameraInfo) -> np.ndarray:
    """The 3x3 intrinsics K of a camera_info."""
    return np.asarray(info.k, dtype=float).reshape(3, 3)
