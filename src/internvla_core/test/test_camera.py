"""Pinhole back-projection, distortion inversion, robust depth sampling and transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from internvla_core.camera import (
    CameraModelError,
    PinholeCamera,
    lift_pixels,
    pose_to_matrix,
    sample_depth,
    transform_points,
)

K = [500.0, 0, 320.0, 0, 400.0, 240.0, 0, 0, 1]


def test_back_projection_inverts_projection_on_a_non_square_image():
    cam = PinholeCamera.from_camera_info_fields(K, [0] * 5, "plumb_bob", 640, 480)
    points = np.array([[0.1, -0.2, 1.5], [-0.3, 0.05, 0.7], [0.0, 0.0, 2.0]])
    pixels = cam.project(points)
    np.testing.assert_allclose(pixels[2], [320, 240])
    np.testing.assert_allclose(pixels[0], [320 + 500 * 0.1 / 1.5, 240 - 400 * 0.2 / 1.5])
    np.testing.assert_allclose(cam.back_project(pixels[:, 0], pixels[:, 1], points[:, 2]), points, atol=1e-12)


def test_distorted_pixels_are_undistorted_before_lifting():
    cam = PinholeCamera.from_camera_info_fields(K, [-0.2, 0.05, 0.001, -0.002, 0.0], "plumb_bob", 640, 480)
    point = np.array([0.25, -0.15, 1.2])
    u, v = cam.project(point)
    naive = PinholeCamera.from_camera_info_fields(K, [0] * 5, "plumb_bob", 640, 480)
    assert np.linalg.norm(naive.back_project(u, v, 1.2) - point) > 1e-3  # distortion matters here
    np.testing.assert_allclose(cam.back_project(u, v, 1.2), point, atol=1e-7)


def test_unusable_camera_info_is_rejected_with_a_reason():
    with pytest.raises(CameraModelError, match="no intrinsics"):
        PinholeCamera.from_camera_info_fields([0] * 9, [], "plumb_bob", 640, 480)
    with pytest.raises(CameraModelError, match="equidistant"):
        PinholeCamera.from_camera_info_fields(K, [0.1, 0, 0, 0], "equidistant", 640, 480)
    equidistant_without_coeffs = PinholeCamera.from_camera_info_fields(
        K, [0, 0, 0, 0], "equidistant", 640, 480
    )
    assert equidistant_without_coeffs.distortion == ()


def test_depth_sampling_is_robust_to_holes_and_edges():
    depth = np.full((20, 20), 1.0)
    depth[10, 10] = np.nan
    depth[8:13, 12:] = 5.0  # background at the right edge of the window
    z, ok = sample_depth(depth, 10, 10, window=2)
    assert ok and z == 1.0
    holes = np.full((20, 20), np.nan)
    holes[0, 0] = 0.0
    assert sample_depth(holes, 5, 5) == (pytest.approx(math.nan, nan_ok=True), False)
    assert sample_depth(depth, 25, 5)[1] is False


def test_lifting_keeps_invalid_points_flagged_and_rescales_into_a_smaller_depth_image():
    cam = PinholeCamera.from_camera_info_fields(K, [], "", 640, 480)
    depth = np.full((240, 320), 2.0)
    depth[:, :40] = np.nan  # left strip without depth
    points, valid = lift_pixels(cam, depth, np.array([[320.0, 240.0], [10.0, 240.0]]))
    assert valid.tolist() == [True, False]
    np.testing.assert_allclose(points[0], [0, 0, 2.0])
    assert np.isnan(points[1]).all()


def test_static_extrinsic_moves_points_into_the_target_frame():
    transform = pose_to_matrix([1.0, 0.0, 0.5], [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    out = transform_points(transform, np.array([[1.0, 0.0, 0.0], [np.nan, 0, 0]]))
    np.testing.assert_allclose(out[0], [1.0, 1.0, 0.5], atol=1e-12)
    assert np.isnan(out[1]).any()
    with pytest.raises(ValueError):
        pose_to_matrix([0, 0, 0], [0, 0, 0, 0])
