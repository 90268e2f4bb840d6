"""Inverse kinematics with pinocchio: damped least squares on the arm joints, fingers locked.

The executor integrates end-effector deltas onto the measured pose and needs joint targets for a
joint_trajectory_controller. The model comes from the robot's URDF (``robot_description`` on a real
robot, the same file robot_state_publisher uses) or, for the bundled Franka Panda, from the MuJoCo
Menagerie MJCF shipped inside the ``genesis-world`` wheel (located, never imported or downloaded).
pinocchio is imported lazily.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .rotations import matrix_to_axis_angle


def panda_mjcf_path() -> Path:
    """The Menagerie Panda MJCF inside the installed genesis-world wheel (the package is not imported)."""
    spec = importlib.util.find_spec("genesis")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the Franka Panda model ships in the 'genesis-world' wheel: pip install --no-deps genesis-world==1.4.5"
        )
    path = Path(spec.submodule_search_locations[0]) / "assets" / "xml" / "franka_emika_panda" / "panda.xml"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the genesis-world wheel (version 1.4.5 has it)")
    return path


@dataclass(frozen=True)
class IKResult:
    q: np.ndarray
    converged: bool
    position_error: float  # metres
    rotation_error: float  # radians
    iterations: int

    @property
    def error(self) -> float:
        """One number for logs: position error [m] + rotation error [rad] (both at the solution)."""
        return self.position_error + self.rotation_error

    def __iter__(self):
        """Unpacks as ``q, converged, error``."""
        return iter((self.q, self.converged, self.error))


class RobotDescriptionLike(Protocol):
    """What ``IKSolver.from_description`` reads from internvla_core.robot_assets' RobotDescription."""

    path: Path | str  # kinematics file
    format: str  # "mjcf" | "urdf"
    ee_frame: str
    arm_joints: tuple[str, ...] | list[str]


class IKSolver:
    """Damped least-squares IK for one end-effector frame over a subset of joints."""

    def __init__(self, model, ee_frame: str, arm_joints: list[str], damping: float = 1e-4) -> None:
        import pinocchio as pin

        self.pin = pin
        if not model.existFrame(ee_frame):
            frames = [f.name for f in model.frames]
            raise ValueError(f"end-effector frame '{ee_frame}' not in the robot model; frames: {frames}")
        missing = [j for j in arm_joints if not model.existJointName(j)]
        if missing:
            names = [model.names[i] for i in range(1, model.njoints)]
            raise ValueError(f"joints {missing} not in the robot model; joints: {names}")
        multi = [j for j in arm_joints if model.joints[model.getJointId(j)].nq != 1]
        if multi:
            raise ValueError(
                f"joints {multi} are not 1-DoF revolute/prismatic joints (continuous joints are unsupported)"
            )
        self.model = model
        self.data = model.createData()
        self.ee_id = model.getFrameId(ee_frame)
        self.arm_joints = list(arm_joints)
        self.q_index = [model.joints[model.getJointId(j)].idx_q for j in arm_joints]
        self.v_index = [model.joints[model.getJointId(j)].idx_v for j in arm_joints]
        self.lower = model.lowerPositionLimit[self.q_index].copy()
        self.upper = model.upperPositionLimit[self.q_index].copy()
        self.damping = damping
        self.q_full = pin.neutral(model)

    @classmethod
    def from_urdf_string(cls, urdf: str, ee_frame: str, arm_joints: list[str]) -> IKSolver:
        import pinocchio as pin

        return cls(pin.buildModelFromXML(urdf), ee_frame, arm_joints)

    @classmethod
    def from_mjcf(cls, path: str | Path, ee_frame: str, arm_joints: list[str]) -> IKSolver:
        import pinocchio as pin

        return cls(pin.buildModelFromMJCF(str(path)), ee_frame, arm_joints)

    @classmethod
    def from_urdf_file(cls, path: str | Path, ee_frame: str, arm_joints: list[str]) -> IKSolver:
        import pinocchio as pin

        return cls(pin.buildModelFromUrdf(str(path)), ee_frame, arm_joints)

    @classmethod
    def from_description(cls, desc: RobotDescriptionLike) -> IKSolver:
        """IK for a robot description (kinematics file + format, EE frame, arm joints in order)."""
        builders = {"mjcf": cls.from_mjcf, "urdf": cls.from_urdf_file}
        if desc.format not in builders:
            raise ValueError(f"robot description format must be 'mjcf' or 'urdf', got '{desc.format}'")
        return builders[desc.format](desc.path, desc.ee_frame, list(desc.arm_joints))

    @classmethod
    def panda(cls) -> IKSolver:
        return cls.from_mjcf(panda_mjcf_path(), "hand", [f"joint{i}" for i in range(1, 8)])

    def _full(self, q_arm: np.ndarray) -> np.ndarray:
        q = self.q_full.copy()
        q[self.q_index] = q_arm
        return q

    def fk(self, q_arm: np.ndarray) -> np.ndarray:
        pin = self.pin
        pin.framesForwardKinematics(self.model, self.data, self._full(np.asarray(q_arm, dtype=np.float64)))
        return self.data.oMf[self.ee_id].homogeneous.copy()

    def solve(
        self,
        q_current: np.ndarray,
        target: np.ndarray,
        max_iters: int = 100,
        tol_pos: float = 1e-4,
        tol_rot: float = 1e-3,
        tol: float | None = None,
    ) -> IKResult:
        """Joint positions reaching the 4x4 ``target`` (base frame), starting from ``q_current``.

        Damped least squares in the end-effector frame, each iterate clipped to the joint limits (the
        solution never leaves them, even when the target is out of reach: then ``converged`` is false
        and ``q`` is the closest point the iteration found). ``tol`` sets both tolerances at once.
        """
        if tol is not None:
            tol_pos = tol_rot = tol
        pin = self.pin
        q = np.clip(np.asarray(q_current, dtype=np.float64).copy(), self.lower, self.upper)
        target_se3 = pin.SE3(np.asarray(target[:3, :3]), np.asarray(target[:3, 3]))
        best = (float("inf"), q, float("inf"), float("inf"))
        for it in range(1, max_iters + 1):
            full = self._full(q)
            pin.framesForwardKinematics(self.model, self.data, full)
            current = self.data.oMf[self.ee_id]
            error = pin.log6(current.actInv(target_se3)).vector  # in the local frame
            err_p, err_r = float(np.linalg.norm(error[:3])), float(np.linalg.norm(error[3:]))
            if err_p < tol_pos and err_r < tol_rot:
                return IKResult(q, True, err_p, err_r, it)
            if err_p + err_r < best[0]:
                best = (err_p + err_r, q, err_p, err_r)
            jac = pin.computeFrameJacobian(self.model, self.data, full, self.ee_id, pin.ReferenceFrame.LOCAL)
            jac = jac[:, self.v_index]
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self.damping * np.eye(6), error)
            q = np.clip(q + dq, self.lower, self.upper)
        _, q_best, err_p, err_r = best
        return IKResult(q_best, False, err_p, err_r, max_iters)


def pose_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(translation distance [m], rotation angle [rad]) between two 4x4 poses."""
    _, angle = matrix_to_axis_angle(a[:3, :3].T @ b[:3, :3])
    return float(np.linalg.norm(a[:3, 3] - b[:3, 3])), angle
