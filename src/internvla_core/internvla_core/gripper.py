"""From the executor's gripper opening (0 closed .. 1 open) to a gripper controller's position goal.

Real grippers are driven through actions (control_msgs/GripperCommand on franka_gripper's
``gripper_action`` and on the ros2_control GripperActionController of Interbotix arms), not through a
stream of set-points: each goal moves the fingers and then waits. Sending one goal per control tick
would cancel the previous motion every 100 ms, so a new goal is only worth sending when the requested
opening moved by more than a deadband, or the last goal failed. This module decides that, and maps the
opening onto the controller's position range; the ROS node only converts messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GripperGoal:
    position: float  # controller units (finger position in metres for both supported grippers)
    max_effort: float  # 0 = the controller's limit
    opening: float  # the requested opening fraction it came from


class GripperGoalPlanner:
    """Maps openings to goals and filters the ones that would only re-send the same motion."""

    def __init__(
        self, closed_position: float, open_position: float, max_effort: float = 0.0, deadband: float = 0.1
    ) -> None:
        for name, value in (("closed_position", closed_position), ("open_position", open_position)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if closed_position == open_position:
            raise ValueError("closed_position and open_position must differ")
        if not (math.isfinite(max_effort) and max_effort >= 0.0):
            raise ValueError(f"max_effort must be >= 0, got {max_effort}")
        if not 0.0 <= deadband < 1.0:
            raise ValueError(f"deadband must be in [0, 1), got {deadband}")
        self.closed_position = closed_position
        self.open_position = open_position
        self.max_effort = max_effort
        self.deadband = deadband
        self._last_sent: float | None = None

    def position(self, opening: float) -> float:
        opening = min(1.0, max(0.0, opening))
        return self.closed_position + opening * (self.open_position - self.closed_position)

    def plan(self, opening: float) -> GripperGoal | None:
        """The goal to send for ``opening``, or None when it is within the deadband of the last one."""
        if not math.isfinite(opening):
            raise ValueError(f"gripper opening must be finite, got {opening}")
        opening = min(1.0, max(0.0, opening))
        if self._last_sent is not None and abs(opening - self._last_sent) <= self.deadband:
            return None
        self._last_sent = opening
        return GripperGoal(self.position(opening), self.max_effort, opening)

    def forget(self) -> None:
        """The last goal failed or was cancelled: the next opening is sent whatever it is."""
        self._last_sent = None
