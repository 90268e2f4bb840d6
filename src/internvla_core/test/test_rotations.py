"""Rotation helpers against values worked out by hand (sxyz Euler, axis-angle, quaternions xyzw, poses)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from internvla_core.rotations import (
    invert_pose,
    make_pose,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rotvec,
    matrix_to_rpy,
    pose_from_xyz_quat,
    pose_to_xyz_quat,
    quaternion_multiply,
    quaternion_to_matrix,
    rotvec_to_matrix,
    rpy_to_matrix,
    rpy_to_rotvec,
)

S3 = math.sqrt(3.0)


def axis_quaternion(axis: str, angle: float) -> np.ndarray:
    q = np.zeros(4)
    q["xyz".index(axis)] = math.sin(angle / 2)
    q[3] = math.cos(angle / 2)
    return q


def test_single_axis_rpy_gives_the_textbook_matrices():
    c, s = math.cos(0.3), math.sin(0.3)
    np.testing.assert_allclose(rpy_to_matrix(0.3, 0, 0), [[1, 0, 0], [0, c, -s], [0, s, c]], atol=1e-15)
    np.testing.assert_allclose(rpy_to_matrix(0, 0.3, 0), [[c, 0, s], [0, 1, 0], [-s, 0, c]], atol=1e-15)
    np.testing.assert_allclose(rpy_to_matrix(0, 0, 0.3), [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-15)


def test_sxyz_applies_roll_first_then_pitch_then_yaw_about_fixed_axes():
    # Rz(90°)·Rx(90°): x -> x -> y, y -> z -> z, z -> -y -> x: 120° about (1, 1, 1)/√3
    np.testing.assert_allclose(
        rpy_to_matrix(math.pi / 2, 0, math.pi / 2), [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-15
    )
    np.testing.assert_allclose(
        rpy_to_rotvec(math.pi / 2, 0, math.pi / 2), np.full(3, 2 * math.pi / 3 / S3), atol=1e-12
    )
    # Rz(90°)·Ry(90°): x -> -z, y -> -x, z -> y: 120° about (-1, 1, 1)/√3
    np.testing.assert_allclose(
        rpy_to_rotvec(0, math.pi / 2, math.pi / 2), np.array([-1, 1, 1]) * 2 * math.pi / 3 / S3, atol=1e-12
    )


def test_rpy_to_rotvec_equals_the_composition_of_axis_quaternions():
    """transforms3d's euler2axangle('sxyz') is q = qz(yaw)·qy(pitch)·qx(roll) -> axis, angle."""
    for roll, pitch, yaw in [(0.1, 0.2, 0.3), (-0.05, 0.02, 0.4), (1.0, -0.7, 2.0)]:
        q = quaternion_multiply(
            axis_quaternion("z", yaw),
            quaternion_multiply(axis_quaternion("y", pitch), axis_quaternion("x", roll)),
        )
        angle = 2 * math.acos(q[3])
        expected = q[:3] / math.sin(angle / 2) * angle
        np.testing.assert_allclose(rpy_to_rotvec(roll, pitch, yaw), expected, atol=1e-12)


def test_small_rpy_deltas_are_almost_their_own_rotation_vector():
    np.testing.assert_allclose(rpy_to_rotvec(0.01, -0.02, 0.005), [0.01, -0.02, 0.005], atol=2e-4)
    np.testing.assert_allclose(rpy_to_rotvec(0.0, 0.0, -0.2), [0.0, 0.0, -0.2], atol=1e-15)


def test_matrix_to_rpy_inverts_rpy_to_matrix_and_handles_gimbal_lock():
    rng = np.random.default_rng(1)
    for roll, pitch, yaw in rng.uniform([-3, -1.5, -3], [3, 1.5, 3], size=(100, 3)):
        np.testing.assert_allclose(
            matrix_to_rpy(rpy_to_matrix(roll, pitch, yaw)), (roll, pitch, yaw), atol=1e-9
        )
    locked = rpy_to_matrix(0.3, math.pi / 2, 0.5)
    np.testing.assert_allclose(rpy_to_matrix(*matrix_to_rpy(locked)), locked, atol=1e-9)


def test_axis_angle_of_identity_half_turn_and_general_rotations():
    axis, angle = matrix_to_axis_angle(np.eye(3))
    assert angle == 0.0 and np.linalg.norm(axis) == pytest.approx(1.0)
    axis, angle = matrix_to_axis_angle(np.diag([-1.0, 1.0, -1.0]))  # 180° about y
    assert angle == pytest.approx(math.pi) and abs(axis[1]) == pytest.approx(1.0)
    rotvec = np.array([0.3, -0.4, 1.2])
    np.testing.assert_allclose(matrix_to_rotvec(rotvec_to_matrix(rotvec)), rotvec, atol=1e-12)
    near_pi = np.array([0.0, math.pi - 1e-9, 0.0])
    np.testing.assert_allclose(
        np.abs(matrix_to_rotvec(rotvec_to_matrix(near_pi))), np.abs(near_pi), atol=1e-6
    )


def test_quaternion_hand_values_and_round_trips():
    h = math.sqrt(0.5)
    np.testing.assert_allclose(
        matrix_to_quaternion(rpy_to_matrix(0, 0, math.pi / 2)), [0, 0, h, h], atol=1e-15
    )
    np.testing.assert_allclose(
        quaternion_to_matrix([h, 0, 0, h]), rpy_to_matrix(math.pi / 2, 0, 0), atol=1e-15
    )
    np.testing.assert_allclose(matrix_to_quaternion(np.diag([1.0, -1.0, -1.0])), [1, 0, 0, 0], atol=1e-15)
    assert matrix_to_quaternion(rpy_to_matrix(0, 0, -3.0))[3] >= 0  # w >= 0 chosen
    # the product composes: q(a)·q(b) is "b, then a"
    qa, qb = axis_quaternion("z", 0.4), axis_quaternion("x", -0.9)
    np.testing.assert_allclose(
        quaternion_to_matrix(quaternion_multiply(qa, qb)),
        quaternion_to_matrix(qa) @ quaternion_to_matrix(qb),
        atol=1e-12,
    )


def test_poses_convert_to_and_from_xyz_quat_and_invert():
    pose = pose_from_xyz_quat([0.5, -0.1, 0.3], [0, 0, math.sqrt(0.5), math.sqrt(0.5)])
    np.testing.assert_allclose(pose @ [1, 0, 0, 1], [0.5, 0.9, 0.3, 1], atol=1e-12)  # x_tool = y_base
    xyz, quat = pose_to_xyz_quat(pose)
    np.testing.assert_allclose(xyz, [0.5, -0.1, 0.3])
    np.testing.assert_allclose(quat, [0, 0, math.sqrt(0.5), math.sqrt(0.5)], atol=1e-12)
    np.testing.assert_allclose(invert_pose(pose) @ pose, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(make_pose([1, 2, 3]), [[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]])
