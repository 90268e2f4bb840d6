"""Safety limits between the model and the arm: always on, and proven by property tests.

Every command passes ``SafetyFilter.limit_pose`` (Cartesian: workspace box, per-step translation and
rotation) and ``limit_joints`` (joint position and velocity). Non-finite input never reaches the arm:
it yields a hold (the current pose / joints) with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .rotations import matrix_to_axis_angle, rotvec_to_matrix


@dataclass(frozen=True)
class SafetyLimits:
    workspace_min: tuple[float, float, float] = (-1.0, -1.0, 0.0)  # metres, robot base frame
    workspace_max: tuple[float, float, float] = (1.0, 1.0, 1.2)
    max_translation_per_step: float = 0.03  # metres per control step
    max_rotation_per_step: float = 0.15  # radians per control step
    joint_lower: tuple[float, ...] = ()
    joint_upper: tuple[float, ...] = ()
    max_joint_velocity: tuple[float, ...] | float = 1.0  # rad/s (scalar or per joint)

    def __post_init__(self) -> None:
        if any(lo > hi for lo, hi in zip(self.workspace_min, self.workspace_max)):
            raise ValueError("workspace_min must be <= workspace_max on every axis")
        if self.max_translation_per_step <= 0 or self.max_rotation_per_step <= 0:
            raise ValueError("per-step limits must be positive")


@dataclass
class LimitReport:
    """What the filter changed: names of the limits hit, and a hold reason when it refused."""

    hits: list[str] = field(default_factory=list)
    hold_reason: str = ""

    @property
    def held(self) -> bool:
        return bool(self.hold_reason)


MAX_PLAUSIBLE_JUMP = 10.0  # metres: a target this far from the arm is a bug, not a motion to clamp


class SafetyFilter:
    def __init__(self, limits: SafetyLimits) -> None:
        self.limits = limits

    def limit_pose(self, current: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, LimitReport]:
        """Clamp a target 4x4 pose relative to the current one. Non-finite -> hold at current."""
        report = LimitReport()
        current = np.asarray(current, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        if not np.all(np.isfinite(current)):
            report.hold_reason = "current pose is not finite"
            return current, report
        if target.shape != (4, 4) or not np.all(np.isfinite(target)):
            report.hold_reason = "target pose contains NaN or inf"
            return current.copy(), report
        with np.errstate(all="ignore"):  # absurd magnitudes overflow: they are refused just below
            gram = target[:3, :3] @ target[:3, :3].T
            det = np.linalg.det(target[:3, :3]) if np.all(np.isfinite(gram)) else np.nan
        if not np.all(np.isfinite(gram)) or np.abs(gram - np.eye(3)).max() > 1e-3 or not det > 0:
            report.hold_reason = "target orientation is not a rotation matrix"
            return current.copy(), report
        if np.abs(target[:3, 3] - current[:3, 3]).max() > MAX_PLAUSIBLE_JUMP:
            report.hold_reason = f"target position is more than {MAX_PLAUSIBLE_JUMP} m away: refusing"
            return current.copy(), report
        limits = self.limits
        out = np.eye(4)
        # translation: per-step limit, then the workspace box. Projecting onto the (convex) box never
        # moves the point further from a current position inside it, so the step limit still holds;
        # from outside the box we move toward it by at most the step limit.
        step = target[:3, 3] - current[:3, 3]
        norm = float(np.linalg.norm(step))
        if norm > limits.max_translation_per_step:
            step *= limits.max_translation_per_step / norm
            report.hits.append("max_translation_per_step")
        position = current[:3, 3] + step
        boxed = np.clip(position, limits.workspace_min, limits.workspace_max)
        if not np.array_equal(boxed, position):
            report.hits.append("workspace")
        move = boxed - current[:3, 3]
        move_norm = float(np.linalg.norm(move))
        if move_norm > limits.max_translation_per_step:
            move *= limits.max_translation_per_step / move_norm
        out[:3, 3] = current[:3, 3] + move
        # rotation: limit the relative rotation angle
        relative = target[:3, :3] @ current[:3, :3].T
        u, _, vt = np.linalg.svd(relative)  # re-orthonormalise the (checked, near-rotation) relative
        relative = u @ vt
        axis, angle = matrix_to_axis_angle(relative)
        if angle > limits.max_rotation_per_step:
            relative = rotvec_to_matrix(axis * limits.max_rotation_per_step)
            report.hits.append("max_rotation_per_step")
        out[:3, :3] = relative @ current[:3, :3]
        return out, report

    def limit_joints(
        self, current: np.ndarray, target: np.ndarray, dt: float
    ) -> tuple[np.ndarray, LimitReport]:
        """Clamp joint targets to position limits and to |Δq| <= v_max·dt. Non-finite -> hold."""
        report = LimitReport()
        current = np.asarray(current, dtype=np.float64)
        target = np.asarray(target, dtype=np.float64)
        if (
            target.shape != current.shape
            or not np.all(np.isfinite(target))
            or not np.all(np.isfinite(current))
        ):
            report.hold_reason = "joint target is not finite or has the wrong size"
            return current.copy(), report
        if dt <= 0 or not math.isfinite(dt):
            report.hold_reason = f"invalid control period {dt}"
            return current.copy(), report
        out = target.copy()
        limits = self.limits
        if limits.joint_lower and limits.joint_upper:
            lo, hi = np.asarray(limits.joint_lower), np.asarray(limits.joint_upper)
            clipped = np.clip(out, lo, hi)
            if not np.array_equal(clipped, out):
                report.hits.append("joint_position")
            out = clipped
        vmax = np.broadcast_to(np.asarray(limits.max_joint_velocity, dtype=np.float64), out.shape)
        delta = np.clip(out - current, -vmax * dt, vmax * dt)
        if not np.allclose(delta, out - current):
            report.hits.append("joint_velocity")
        # between current and a clipped target: inside the limits whenever current is
        return current + delta, report
