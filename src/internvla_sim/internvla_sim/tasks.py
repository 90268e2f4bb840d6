"""Seeded table-top tasks with geometric success checks (positions in the robot base frame, metres).

"Left" is the robot's left (+y of the base frame), as an operator standing behind the robot says it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .scene import BLOCK_HALF, PLATE_RADIUS


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    target: str  # the block the task is about
    success: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], bool]  # (now, at reset) -> bool


def _on_plate(now: dict[str, np.ndarray], start: dict[str, np.ndarray]) -> bool:
    block, plate = now["red_block"], now["plate"]
    return bool(np.linalg.norm(block[:2] - plate[:2]) < PLATE_RADIUS - 0.01 and block[2] < BLOCK_HALF + 0.03)


def _lifted(now: dict[str, np.ndarray], start: dict[str, np.ndarray]) -> bool:
    return bool(now["green_block"][2] > BLOCK_HALF + 0.06)


def _pushed_left(now: dict[str, np.ndarray], start: dict[str, np.ndarray]) -> bool:
    return bool(
        now["blue_block"][1] - start["blue_block"][1] > 0.08 and now["blue_block"][2] < BLOCK_HALF + 0.01
    )


TASKS: dict[str, Task] = {
    "red_on_plate": Task("red_on_plate", "put the red block on the plate", "red_block", _on_plate),
    "pick_green": Task("pick_green", "pick up the green block", "green_block", _lifted),
    "push_blue_left": Task("push_blue_left", "push the blue block to the left", "blue_block", _pushed_left),
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task '{name}'; known: {sorted(TASKS)}") from None


def random_layout(
    rng: np.random.Generator,
    x_range: tuple[float, float] = (0.42, 0.65),
    y_range: tuple[float, float] = (-0.22, 0.22),
) -> dict[str, np.ndarray]:
    """Non-overlapping xy positions inside the robot's reach for the plate and the three blocks."""
    placed: dict[str, np.ndarray] = {}
    radii = {"plate": PLATE_RADIUS, "red_block": 0.03, "green_block": 0.03, "blue_block": 0.03}
    for name, radius in radii.items():
        for _ in range(500):
            xy = np.array([rng.uniform(*x_range), rng.uniform(*y_range)])
            if all(np.linalg.norm(xy - other) > radius + radii[o] + 0.03 for o, other in placed.items()):
                placed[name] = xy
                break
        else:  # pragma: no cover - the table is large enough for 4 objects
            raise RuntimeError("could not place the objects")
    return placed
