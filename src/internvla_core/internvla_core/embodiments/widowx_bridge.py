"""WidowX 250 on Bridge data: upstream's SimplerEnv WidowX client (model spec section 5).

Source: examples/simplerEnv/m1_server.py at 949223b (policy_setup "widowx_bridge") and the spec:
one third-person image resized to 224x224 (cv2 INTER_AREA), cfg 1.5, 10 DDIM steps, adaptive
ensemble horizon 7, 5 Hz control, action scale 1.0. Rotation: roll/pitch/yaw -> axis-angle with
transforms3d ``euler2axangle`` (axes 'sxyz'), sent as axis * angle. Gripper: +1 (open) if g > 0.5
else -1. Deltas are those of the Bridge dataset: metres and radians per step in the robot base frame
(the repo does not state units; Bridge V2 logs them so).
"""

from __future__ import annotations

import numpy as np

from .base import ActionAdapter, Embodiment


class WidowXBridgeAdapter(ActionAdapter):
    def env_action(self, action: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
        gripper = 1.0 if action[6] > 0.5 else -1.0
        return np.concatenate([action[:3], rotvec, [gripper]])


EMBODIMENT = Embodiment(
    name="widowx_bridge",
    description="WidowX 250 6DOF, Bridge dataset conventions (SimplerEnv WidowX)",
    unnorm_keys=("oxe_bridge", "bridge_dataset"),
    control_rate_hz=5.0,
    ensemble_horizon=7,
    reference_frame="base",
    adapter_class=WidowXBridgeAdapter,
    source="upstream examples/simplerEnv/m1_server.py (widowx_bridge); model spec section 5",
)
