"""Franka Panda in LIBERO: upstream's LIBERO evaluation client (model spec section 5, [newer] files).

Only the agent-view image is sent, rotated by 180 degrees (both axes flipped), rendered at 256 and
resized to 224; key ``franka``; ensemble horizon 3; cfg 1.5; 10 DDIM steps. The env action is
[dx, dy, dz, r1, r2, r3 (raw model values, which LIBERO's OSC controller reads as an axis-angle
delta), gripper = -1 if g > 0.5 else +1] (LIBERO: -1 opens). The first 10 steps send the dummy action
[0, 0, 0, 0, 0, 0, -1] while objects settle. LIBERO runs at 20 Hz. The gripper is not normalised in
LIBERO training data, so ``g`` is the model's raw value after the generic threshold at 0.5.
"""

from __future__ import annotations

import numpy as np

from ..rotations import rotvec_to_matrix
from .base import ActionAdapter, Embodiment, RobotAction

WARMUP_STEPS = 10


class FrankaLiberoAdapter(ActionAdapter):
    def _warmup_model_action(self) -> np.ndarray:
        action = np.zeros(7)
        action[6] = 1.0  # env -1 = open
        return action

    def convert(self, action: np.ndarray) -> RobotAction:
        base = super().convert(action)
        env = base.env_action
        rotvec = env[3:6].copy()  # LIBERO reads the raw rotation values as axis-angle
        return RobotAction(
            base.translation, rotvec_to_matrix(rotvec), rotvec, base.frame, base.gripper_opening, env
        )

    def env_action(self, action: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
        gripper = -1.0 if action[6] > 0.5 else 1.0
        return np.concatenate([action[:6], [gripper]])


class _FrankaLibero(Embodiment):
    def make_adapter(self) -> ActionAdapter:
        return FrankaLiberoAdapter(self)


EMBODIMENT = _FrankaLibero(
    name="franka_libero",
    description="Franka Panda in LIBERO (agent view flipped 180 degrees, OSC delta control)",
    unnorm_keys=("franka",),
    control_rate_hz=20.0,
    ensemble_horizon=3,
    reference_frame="base",
    flip_images=True,
    warmup_steps=WARMUP_STEPS,
    warmup_action=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    source="upstream examples/LIBERO/eval_libero.py ([newer]); model spec section 5",
)
