"""Embodiment conventions of the datasets InternVLA-M1 was trained on, one module each.

``get_embodiment(name)`` returns the frozen description; ``embodiment.make_adapter()`` gives the
stateful per-episode converter from un-normalised model actions to robot actions.
"""

from __future__ import annotations

from . import franka_libero, franka_real, google_robot, widowx_bridge
from .base import (
    ACTION_SPACE,
    DEFAULT_DIMENSIONS,
    ActionAdapter,
    EEDelta,
    Embodiment,
    compose_delta,
    delta_between,
)

EMBODIMENTS: dict[str, Embodiment] = {
    module.EMBODIMENT.name: module.EMBODIMENT
    for module in (widowx_bridge, google_robot, franka_libero, franka_real)
}


def get_embodiment(name: str) -> Embodiment:
    try:
        return EMBODIMENTS[name]
    except KeyError:
        raise KeyError(f"unknown embodiment '{name}'; known: {sorted(EMBODIMENTS)}") from None


__all__ = [
    "ACTION_SPACE",
    "DEFAULT_DIMENSIONS",
    "EMBODIMENTS",
    "ActionAdapter",
    "EEDelta",
    "Embodiment",
    "compose_delta",
    "delta_between",
    "get_embodiment",
]
