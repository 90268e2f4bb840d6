"""Safety limits between the model and the arm: always on, and proven by property tests.

Every command passes ``SafetyFilter.limit_pose`` (Cartesian: workspace box, per-step translation and
rotation), ``limit_joints`` (joint position and velocity·dt) and ``limit_gripper`` (opening range).
Non-finite input never reaches the arm: it yields a hold (the current pose / joints) with the reason.
The guarantees hold for a robot that is inside its limits; from outside the workspace box the filter
moves toward the box by at most the per-step limit, and joints outside their range are clamped back
into it (the velocity limit then still bounds the step only if the joint limits are satisfiable).
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
    gripper_min: float = 0.0  # opening fraction: 0 closed
    gripper_max: float = 1.0  # 1 open

    def __post_init__(self) -> None:
        numbers = [
            *self.workspace_min,
            *self.workspace_max,
            self.max_translation_per_step,
            self.max_rotation_per_step,
            *np.atleast_1d(self.max_joint_velocity),
            self.gripper_min,
            self.gripper_max,
        ]
        if not all(math.isfinite(float(v)) for v in numbers):
            raise ValueError("safety limits must be finite numbers")
        if any(math.isnan(float(v)) for v in (*self.joint_lower, *self.joint_upper)):
            raise ValueError("joint limits must not be NaN (use +-inf for a continuous joint)")
        if len(self.workspace_min) != 3 or len(self.workspace_max) != 3:
            raise ValueError("workspace_min and workspace_max need 3 values (x, y, z)")
        if any(lo > hi for lo, hi in zip(self.workspace_min, self.workspace_max)):
            raise ValueError("workspace_min must be <= workspace_max on every axis")
        if self.max_translation_per_step <= 0 or self.max_rotation_per_step <= 0:
            raise ValueError("per-step limits must be positive")
        if len(self.joint_lower) != len(self.joint_upper):
            raise ValueError("joint_lower and joint_upper need the same number of joints")
        if any(lo > hi for lo, hi in zip(self.joint_lower, self.joint_upper)):
            raise ValueError("joint_lower must be <= joint_upper for every joint")
        if np.any(np.asarray(self.max_joint_velocity) <= 0):
            raise ValueError("max_joint_velocity must be positive")
        if not 0.0 <= self.gripper_min <= self.gripper_max <= 1.0:
            raise ValueError("need 0 <= gripper_min <= gripper_max <= 1 (opening fraction)")


@dataclass
class LimitReport:
    """What the filter changed: names of the limits hit, and a hold reason when it refused."""

    hits: list[str] = field(default_factory=list)
    hold_reason: str = ""

    @property
    def held(self) -> bool:
        return bool(self.hold_reason)


def _box_distance(point: np.ndarray, limits: SafetyLimits) -> float:
    """Euclidean distance from a point to the workspace box (0 inside)."""
    return float(np.linalg.norm(point - np.clip(point, limits.workspace_min, limits.workspace_max)))


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

    def violations(self, current: np.ndarray, candidate: np.ndarray, tolerance: float = 1e-6) -> list[str]:
        """The Cartesian limits a candidate pose breaks, relative to the current pose ([] = none).

        The invariant ``limit_pose`` keeps: a step of at most the translation / rotation limit, and
        never further outside the workspace box than the current pose is (inside when it is inside).
        """
        if not (np.all(np.isfinite(current)) and np.all(np.isfinite(candidate))):
            return ["not_finite"]
        limits, broken = self.limits, []
        if np.linalg.norm(candidate[:3, 3] - current[:3, 3]) > limits.max_translation_per_step + tolerance:
            broken.append("max_translation_per_step")
        _, angle = matrix_to_axis_angle(candidate[:3, :3] @ current[:3, :3].T)
        if angle > limits.max_rotation_per_step + tolerance:
            broken.append("max_rotation_per_step")
        if _box_distance(candidate[:3, 3], limits) > _box_distance(current[:3, 3], limits) + tolerance:
            broken.append("workspace")
        return broken

    def limit_gripper(self, opening: float | None) -> tuple[float | None, LimitReport]:
        """Clamp a gripper opening to [gripper_min, gripper_max]; non-finite -> None (leave the gripper)."""
        report = LimitReport()
        if opening is None:
            return None, report
        if not math.isfinite(opening):
            report.hold_reason = "gripper command is not finite"
            return None, report
        clamped = min(max(float(opening), self.limits.gripper_min), self.limits.gripper_max)
        if clamped != opening:
            report.hits.append("gripper_range")
        return clamped, report

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
        velocity = np.atleast_1d(np.asarray(limits.max_joint_velocity, dtype=np.float64))
        if (limits.joint_lower and len(limits.joint_lower) != len(out)) or velocity.size not in (1, len(out)):
            report.hold_reason = (
                f"joint limits are configured for {len(limits.joint_lower) or velocity.size} joints, "
                f"the command has {len(out)}"
            )
            return current.copy(), report
        if limits.joint_lower:
            lo, hi = np.asarray(limits.joint_lower), np.asarray(limits.joint_upper)
            clipped = np.clip(out, lo, hi)
            if not np.array_equal(clipped, out):
                report.hits.append("joint_position")
            out = clipped
        vmax = np.broadcast_to(velocity, out.shape)
        delta = np.clip(out - current, -vmax * dt, vmax * dt)
        if not np.allclose(delta, out - current):
            report.hits.append("joint_velocity")
        # between current and a clipped target: inside the limits whenever current is
        return current + delta, report
