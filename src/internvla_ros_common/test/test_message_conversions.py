"""Message conversions shared by the nodes: stamps keep the carry, poses and images round-trip."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from geometry_msgs.msg import Pose, PoseStamped, TransformStamped
from std_msgs.msg import Header

from internvla_core.rotations import rpy_to_matrix
from internvla_ros_common import conversions as c


def test_stamps_keep_the_carry_and_round_trip():
    stamp = c.to_stamp(0.1 + 0.1 + 0.1 + 2.7)  # 2.9999999999999996 in floating point
    assert (stamp.sec, stamp.nanosec) == (3, 0)
    assert c.stamp_seconds(c.to_stamp(12.25)) == 12.25
    assert c.stamp_ns(c.to_stamp(1.5)) == 1_500_000_000
    assert (c.to_duration(0.75).sec, c.to_duration(0.75).nanosec) == (0, 750_000_000)
    assert c.header(2.0, "base").frame_id == "base" and c.header(2.0).stamp.sec == 2


def pose_matrix() -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rpy_to_matrix(0.3, -0.2, 1.1)
    m[:3, 3] = [0.4, -0.1, 0.25]
    return m


def test_pose_and_transform_round_trip_through_messages():
    m = pose_matrix()
    pose = c.matrix_to_pose(m)
    assert isinstance(pose, Pose)
    np.testing.assert_allclose(c.pose_to_matrix(pose), m, atol=1e-12)
    stamped = c.matrix_to_pose_stamped(m, Header(frame_id="base"))
    assert isinstance(stamped, PoseStamped) and stamped.header.frame_id == "base"
    np.testing.assert_allclose(c.pose_to_matrix(stamped), m, atol=1e-12)
    edge = c.matrix_to_transform_stamped(m, Header(frame_id="world"), "camera")
    assert isinstance(edge, TransformStamped) and edge.child_frame_id == "camera"
    np.testing.assert_allclose(c.transform_to_matrix(edge), m, atol=1e-12)
    np.testing.assert_allclose(c.transform_to_matrix(edge.transform), m, atol=1e-12)


def test_images_round_trip_and_camera_info_carries_k():
    rgb = np.random.default_rng(0).integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    msg = c.rgb_to_image_msg(rgb, Header(frame_id="cam"))
    assert (msg.encoding, msg.header.frame_id) == ("rgb8", "cam")
    np.testing.assert_array_equal(c.image_to_rgb_array(msg), rgb)
    depth = np.array([[0.5, np.nan], [1.25, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(c.image_to_depth_array(c.depth_to_image_msg(depth)), depth)
    k = np.array([[300.0, 0, 160], [0, 280.0, 100], [0, 0, 1]])
    info = c.camera_info_msg(Header(), k, 320, 200)
    np.testing.assert_array_equal(c.camera_matrix(info), k)
    assert (info.width, info.height, list(info.d)) == (320, 200, [0.0] * 5)
