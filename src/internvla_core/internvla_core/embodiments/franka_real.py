"""A real Franka (FR3/Panda) as upstream's real-robot client drives it (model spec section 5, [newer]).

The delta [dx, dy, dz, droll, dpitch, dyaw] is right-multiplied onto the last *commanded* end-effector
pose, i.e. applied in the tool frame; gripper 1 = open. Statistics key ``franka``. The control rate is
not stated upstream: 10 Hz is our default (a parameter of the executor). Ensemble horizon 3 as LIBERO.
"""

from __future__ import annotations

from .base import Embodiment

EMBODIMENT = Embodiment(
    name="franka_real",
    description="Real Franka FR3/Panda, tool-frame deltas applied to the last commanded pose",
    unnorm_keys=("franka",),
    control_rate_hz=10.0,
    ensemble_horizon=3,
    reference_frame="tool",
    source="upstream examples/real_robot/deploy_client.py ([newer]); model spec section 5",
)
