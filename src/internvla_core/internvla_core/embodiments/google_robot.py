"""Google robot on RT-1 (fractal) data: upstream's SimplerEnv Google-robot client (spec section 5).

Source: examples/simplerEnv/m1_server.py at 949223b (policy_setup "google_robot"): ensemble horizon
2; rotation as WidowX (sxyz Euler -> axis * angle); the gripper is *relative*: rel = previous - current
(0 on the first step); when |rel| > 0.5 and no sticky action is running, rel is held ("sticky") for 10
steps and only then is ``previous`` updated (upstream comments this as a fix of SIMPLER's code). RT-1
data was logged at about 3 Hz; the repo does not state a rate, 3 Hz is our assumption.
"""

from __future__ import annotations

import numpy as np

from .base import ActionAdapter, Embodiment

STICKY_REPEAT = 10


class GoogleRobotAdapter(ActionAdapter):
    def reset(self) -> None:
        super().reset()
        self.previous: float | None = None
        self.sticky_on = False
        self.sticky_value = 0.0
        self.repeat = 0

    def __init__(self, embodiment: Embodiment, warmup: bool = True) -> None:
        super().__init__(embodiment, warmup)
        self.reset()

    def relative_gripper(self, current: float) -> float:
        if self.previous is None:
            relative = 0.0
            self.previous = current
        else:
            relative = self.previous - current
        if abs(relative) > 0.5 and not self.sticky_on:
            self.sticky_on = True
            self.sticky_value = relative
            self.previous = current
        if self.sticky_on:
            self.repeat += 1
            relative = self.sticky_value
        if self.repeat == STICKY_REPEAT:
            self.sticky_on = False
            self.repeat = 0
            self.sticky_value = 0.0
        return relative

    def env_action(self, action: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
        return np.concatenate([action[:3], rotvec, [self.relative_gripper(float(action[6]))]])


EMBODIMENT = Embodiment(
    name="google_robot",
    description="Google robot (RT-1 / fractal dataset conventions, SimplerEnv Google robot)",
    unnorm_keys=("oxe_rt1", "fractal20220817_data"),
    control_rate_hz=3.0,
    ensemble_horizon=2,
    reference_frame="base",
    adapter_class=GoogleRobotAdapter,
    source="upstream examples/simplerEnv/m1_server.py (google_robot); model spec section 5",
)
