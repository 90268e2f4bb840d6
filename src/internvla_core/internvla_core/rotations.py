"""Small rotation helpers (numpy only) used by the embodiment conventions.

Conventions: roll/pitch/yaw are static-axis X-Y-Z Euler angles ("sxyz" in transforms3d terms), i.e.
R = Rz(yaw) · Ry(pitch) · Rx(roll); rotation vectors are axis * angle; quaternions are (x, y, z, w).
"""

from __future__ import annotations

import math

import numpy as np


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll) (static axes x, then y, then z)."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def matrix_to_axis_angle(rotation: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit axis, angle in [0, π]) of a rotation matrix; axis (1, 0, 0) for the identity.

    Same result as transforms3d's ``mat2axangle`` for proper rotations (angle ≥ 0).
    """
    cos_angle = (np.trace(rotation) - 1.0) / 2.0
    angle = math.acos(min(1.0, max(-1.0, cos_angle)))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0]), 0.0
    axis = np.array(
        [rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]]
    )
    norm = float(np.linalg.norm(axis))  # = 2 sin(angle)
    if math.pi - angle < 1e-6 or norm < 1e-9:
        if angle < math.pi / 2:  # tiny rotation whose antisymmetric part rounded away
            return np.array([1.0, 0.0, 0.0]), 0.0
        # near π the antisymmetric part vanishes: take the axis from the symmetric part
        sym = (rotation + np.eye(3)) / 2.0
        column = int(np.argmax(np.diag(sym)))
        from_sym = sym[:, column] / math.sqrt(max(sym[column, column], 1e-12))
        if float(from_sym @ axis) < 0:  # keep the sign the antisymmetric part still carries
            from_sym = -from_sym
        return from_sym / np.linalg.norm(from_sym), angle
    return axis / norm, angle


def rpy_to_rotvec(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Axis * angle of the sxyz Euler rotation (what upstream's SimplerEnv client sends)."""
    axis, angle = matrix_to_axis_angle(rpy_to_matrix(roll, pitch, yaw))
    return axis * angle


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec / angle
    skew = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * skew + (1.0 - math.cos(angle)) * skew @ skew


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w ≥ 0."""
    m = rotation
    trace = np.trace(m)
    if trace > 0:
        s = math.sqrt(trace + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    quat = np.array(q)
    quat /= np.linalg.norm(quat)
    return quat if quat[3] >= 0 else -quat


def quaternion_to_matrix(quat: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_rpy(rotation: np.ndarray) -> tuple[float, float, float]:
    """Inverse of ``rpy_to_matrix`` (sxyz): pitch in [-π/2, π/2]; at the gimbal lock roll is set to 0."""
    m = np.asarray(rotation, dtype=np.float64)
    cos_pitch = math.hypot(m[0, 0], m[1, 0])
    pitch = math.atan2(-m[2, 0], cos_pitch)
    if cos_pitch < 1e-9:  # pitch = ±π/2: only roll ∓ yaw is defined; put it all in yaw
        return 0.0, pitch, math.atan2(-m[0, 1], m[1, 1])
    return math.atan2(m[2, 1], m[2, 2]), pitch, math.atan2(m[1, 0], m[0, 0])


def matrix_to_rotvec(rotation: np.ndarray) -> np.ndarray:
    """Axis * angle (angle in [0, π]) of a rotation matrix."""
    axis, angle = matrix_to_axis_angle(np.asarray(rotation, dtype=np.float64))
    return axis * angle


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b of (x, y, z, w) quaternions: the rotation b first, then a."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def make_pose(translation: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
    """4x4 homogeneous pose from a translation and a 3x3 rotation (identity when omitted)."""
    pose = np.eye(4)
    pose[:3, 3] = translation
    if rotation is not None:
        pose[:3, :3] = rotation
    return pose


def pose_from_xyz_quat(xyz: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """4x4 pose from a position and an (x, y, z, w) quaternion, as in geometry_msgs/Pose."""
    return make_pose(np.asarray(xyz, dtype=np.float64), quaternion_to_matrix(quat_xyzw))


def pose_to_xyz_quat(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, quaternion xyzw with w ≥ 0) of a 4x4 pose."""
    return np.array(pose[:3, 3], dtype=np.float64), matrix_to_quaternion(pose[:3, :3])


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform without a general matrix inverse: (R, p)^-1 = (Rᵀ, -Rᵀp)."""
    rotation_t = pose[:3, :3].T
    return make_pose(-rotation_t @ pose[:3, 3], rotation_t)
