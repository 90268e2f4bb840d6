"""Franka Panda in LIBERO: upstream's LIBERO evaluation client (model spec section 5, [newer] files).

Only the agent-view image is sent, rotated by 180 degrees (both axes flipped), rendered at 256 and
resized to 224; key ``franka``; ensemble horizon 3; cfg 1.5; 10 DDIM steps. The env action is
[dx, dy, dz, r1, r2, r3 (raw model values, which LIBERO's OSC controller reads as an axis-angle
delta), gripper = -1 if g > 0.5 else +1] (LIBERO: -1 opens). The first 10 steps send the dummy action
[0, 0, 0, 0, 0, 0, -1] while objects settle. LIBERO runs at 20 Hz. The gripper is not normalised in
LIBERO training data, so ``g`` is the model's raw value after the generic threshold at 0.5.

Units (not stated in the repo or the spec): LIBERO records robosuite OSC_POSE controller inputs in
[-1, 1]; robosuite's default OSC_POSE configuration, which LIBERO uses, clips them to [-1, 1] and scales
them to at most 0.05 m and 0.5 rad per step, applied in the robot base frame (orientation delta
pre-multiplied). ``env_action`` keeps the raw values LIBERO's client sends; the ``EEDelta`` for our
robots is scaled to metres / radians with those maxima (we do not clip: the safety filter limits the
step). The deltas are "base" frame, as the OSC applies them.
"""

from __future__ import annotations

import numpy as np

from ..rotations import rotvec_to_matrix
from .base import ActionAdapter, EEDelta, Embodiment

WARMUP_STEPS = 10
OSC_MAX_TRANSLATION = 0.05  # m per step at action 1.0 (robosuite OSC_POSE default output_max)
OSC_MAX_ROTATION = 0.5  # rad per step at action 1.0


class FrankaLiberoAdapter(ActionAdapter):
    def _warmup_model_action(self) -> np.ndarray:
        action = np.zeros(7)
        action[6] = 1.0  # env -1 = open
        return action

    def convert(self, action: np.ndarray) -> EEDelta:
        base = super().convert(action)
        env = base.env_action
        # LIBERO's OSC reads the raw rotation values as an axis-angle delta (scaled like translation)
        rotvec = env[3:6] * self.embodiment.rotation_scale
        return EEDelta(
            base.translation, rotvec_to_matrix(rotvec), rotvec, base.frame, base.gripper_opening, env
        )

    def env_action(self, action: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
        gripper = -1.0 if action[6] > 0.5 else 1.0
        return np.concatenate([action[:6], [gripper]])


EMBODIMENT = Embodiment(
    name="franka_libero",
    description="Franka Panda in LIBERO (agent view flipped 180 degrees, OSC delta control)",
    unnorm_keys=("franka",),
    control_rate_hz=20.0,
    ensemble_horizon=3,
    reference_frame="base",
    flip_images=True,
    warmup_steps=WARMUP_STEPS,
    warmup_action=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    translation_scale=OSC_MAX_TRANSLATION,
    rotation_scale=OSC_MAX_ROTATION,
    adapter_class=FrankaLiberoAdapter,
    source="upstream examples/LIBERO/eval_libero.py ([newer]); model spec section 5",
)
