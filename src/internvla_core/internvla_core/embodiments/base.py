"""What an embodiment means for InternVLA-M1's 7-D actions, and the per-episode action adapter.

All released models emit ``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` end-effector deltas, already
un-normalised with the dataset statistics of their embodiment (model spec section 5); the gripper is 1
for open and 0 for closed after un-normalisation. What differs per embodiment is how upstream's own
evaluation clients turn that into an environment action (rotation convention, gripper sign and
stickiness, frame) and the control rate / ensembling horizon they use. Each module in this package
documents its source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..normalization import UnnormKeyError
from ..rotations import rpy_to_matrix, rpy_to_rotvec

DEFAULT_DIMENSIONS = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
ACTION_SPACE = "delta_ee_xyz_rpy_gripper"


@dataclass(frozen=True)
class EEDelta:
    """One model action interpreted for a robot: an end-effector delta plus a gripper command.

    translation: metres per control step, in ``frame``; rotation: 3x3 delta rotation in ``frame``;
    rotvec: the same rotation as axis * angle (radians); frame: "base" (robot base axes) or "tool"
    (current tool axes); gripper_opening: 0 (closed) .. 1 (open), our ROS command convention;
    env_action: the exact vector upstream's evaluation client would send to its benchmark environment
    (kept so a benchmark bridge and the tests can compare with upstream).
    """

    translation: np.ndarray
    rotation: np.ndarray
    rotvec: np.ndarray
    frame: str
    gripper_opening: float
    env_action: np.ndarray


class ActionAdapter:
    """Stateful per-episode conversion of un-normalised model actions (call ``reset`` per episode).

    ``warmup``: send the embodiment's warm-up action for its first ``warmup_steps`` steps (LIBERO's
    client does so while objects settle); off, every step converts the model's action.
    """

    def __init__(self, embodiment: Embodiment, warmup: bool = True) -> None:
        self.embodiment = embodiment
        self.warmup = warmup
        self.steps = 0

    def reset(self) -> None:
        self.steps = 0

    def convert(self, action: np.ndarray) -> EEDelta:
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape[0] != self.embodiment.action_dim:
            raise ValueError(f"expected {self.embodiment.action_dim} action values, got {action.shape[0]}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action.tolist()}")
        if self.warmup and self.steps < self.embodiment.warmup_steps:
            action = self._warmup_model_action()
        self.steps += 1
        translation = action[:3] * self.embodiment.translation_scale
        roll, pitch, yaw = action[3:6] * self.embodiment.rotation_scale
        rotation = rpy_to_matrix(roll, pitch, yaw)
        rotvec = rpy_to_rotvec(roll, pitch, yaw)
        opening = 1.0 if action[6] >= 0.5 else 0.0
        env = self.env_action(action, rotvec)
        return EEDelta(translation, rotation, rotvec, self.embodiment.reference_frame, opening, env)

    def _warmup_model_action(self) -> np.ndarray:
        """The model-space action equivalent of the embodiment's warm-up env action (subclasses)."""
        return np.zeros(self.embodiment.action_dim)

    def env_action(self, action: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
        """The benchmark client's action: [xyz, rpy, gripper] unchanged unless overridden."""
        return action.copy()


@dataclass(frozen=True)
class Embodiment:
    name: str
    description: str
    unnorm_keys: tuple[str, ...]
    control_rate_hz: float
    ensemble_horizon: int
    reference_frame: str  # "base" (deltas in the robot base frame) or "tool" (in the current tool frame)
    views: tuple[str, ...] = ("third_person",)
    image_size: tuple[int, int] = (224, 224)
    flip_images: bool = False  # LIBERO renders upside down; its client rotates by 180 degrees
    warmup_steps: int = 0  # steps at the start of an episode that send ``warmup_action`` instead
    warmup_action: tuple[float, ...] = ()
    source: str = ""
    action_dim: int = 7
    dimension_names: tuple[str, ...] = DEFAULT_DIMENSIONS
    action_space: str = ACTION_SPACE
    # SI units per model unit: 1 where the dataset logs metres / radians (Bridge, RT-1, real Franka);
    # LIBERO logs robosuite OSC inputs in [-1, 1] that its controller scales to 0.05 m / 0.5 rad
    translation_scale: float = 1.0
    rotation_scale: float = 1.0
    adapter_class: type[ActionAdapter] = ActionAdapter  # the stateful converter of this embodiment

    @property
    def control_period(self) -> float:
        return 1.0 / self.control_rate_hz

    def resolve_unnorm_key(self, available: list[str] | tuple[str, ...]) -> str:
        """The first of this embodiment's keys present in the statistics file (one key: that key)."""
        for key in self.unnorm_keys:
            if key in available:
                return key
        if len(available) == 1:
            return available[0]
        raise UnnormKeyError(
            f"embodiment '{self.name}' uses dataset statistics {list(self.unnorm_keys)}, but the checkpoint "
            f"has {list(available)}; set the node's unnorm_key parameter to one of those"
        )

    def make_adapter(self, warmup: bool = True) -> ActionAdapter:
        """A fresh per-episode adapter (``warmup``: honour ``warmup_steps``, see ActionAdapter)."""
        return self.adapter_class(self, warmup)


def compose_delta(current_pose: np.ndarray, robot_action: EEDelta) -> np.ndarray:
    """Target 4x4 pose after applying a delta to ``current_pose`` (4x4, tool in base frame).

    base frame: translate in base axes and pre-multiply the rotation (p' = p + d, R' = ΔR·R);
    tool frame: right-multiply the delta pose (T' = T·Δ), as upstream's real-Franka client does.
    """
    delta = np.eye(4)
    delta[:3, :3] = robot_action.rotation
    delta[:3, 3] = robot_action.translation
    if robot_action.frame == "tool":
        return current_pose @ delta
    target = np.array(current_pose, dtype=np.float64, copy=True)
    target[:3, 3] = current_pose[:3, 3] + robot_action.translation
    target[:3, :3] = robot_action.rotation @ current_pose[:3, :3]
    return target


def delta_between(previous_target: np.ndarray, next_target: np.ndarray, frame: str) -> np.ndarray:
    """The 6-vector [dx, dy, dz, droll, dpitch, dyaw] that :func:`compose_delta` turns ``previous_target``
    into ``next_target`` with (its exact inverse, up to the sxyz Euler angles' range).

    This is how a dataset's action is made from two successive *commanded* end-effector targets (never
    from measured poses: the difference between them is the tracking error, which an executor that
    integrates deltas on its last commanded target would otherwise accumulate). ``frame`` "base":
    translation in base axes and the Euler angles of ``R_next R_prevᵀ``; "tool": the pose
    ``T_prev⁻¹ T_next``.
    """
    from ..rotations import matrix_to_rpy

    previous_target = np.asarray(previous_target, dtype=np.float64)
    next_target = np.asarray(next_target, dtype=np.float64)
    if frame == "tool":
        relative = np.linalg.inv(previous_target) @ next_target
        return np.concatenate([relative[:3, 3], matrix_to_rpy(relative[:3, :3])])
    if frame != "base":
        raise ValueError(f"frame must be 'base' or 'tool', got '{frame}'")
    rotation = next_target[:3, :3] @ previous_target[:3, :3].T
    return np.concatenate([next_target[:3, 3] - previous_target[:3, 3], matrix_to_rpy(rotation)])
