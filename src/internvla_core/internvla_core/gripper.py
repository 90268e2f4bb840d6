"""From the executor's gripper opening (0 closed .. 1 open) to what the grippers' drivers accept.

- ``GripperGoalPlanner``: a position per opening, sent only when the opening moved by more than a
  deadband (or the last goal failed). Used for the WidowX, whose Interbotix driver runs the gripper as a
  second JointTrajectoryController (``gripper_controller``, joint ``left_finger``, about 0.015 m closed ..
  0.037 m open): one short trajectory per change, never a stream that restarts it every tick; and for a
  control_msgs/GripperCommand server.
- ``FrankaGripperPlanner``: franka_gripper's actions. Closing is a ``Grasp`` (width, speed, force,
  epsilon.inner/outer); it succeeds only if the final width lies within [width - epsilon.inner,
  width + epsilon.outer], else the goal aborts, so closing uses wide epsilons (0.08 m: any object the hand
  can hold) and opening a ``Move``. Goals go out on state *changes* (open <-> closed) only; an aborted
  grasp is reported (``on_result``) and not retried: re-sending a close every cycle after an abort is a
  loop that never ends. A new open/close decision from the policy is a new change and is sent.

The ROS node (internvla_policy.gripper_bridge_node) only converts messages.
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


def grasp_succeeds(width: float, epsilon_inner: float, epsilon_outer: float, final_width: float) -> bool:
    """franka_gripper's success rule for a Grasp goal."""
    return width - epsilon_inner <= final_width <= width + epsilon_outer


@dataclass(frozen=True)
class FrankaGripperGoal:
    kind: str  # "grasp" (franka_msgs/action/Grasp) or "move" (franka_msgs/action/Move)
    width: float  # [m] between the fingers
    speed: float  # [m/s]
    force: float = 0.0  # [N], grasp only
    epsilon_inner: float = 0.0  # [m], grasp only
    epsilon_outer: float = 0.0


class FrankaGripperPlanner:
    """Opening -> Grasp (closing) or Move (opening) goals, on state changes only; aborts reported once."""

    def __init__(
        self,
        open_width: float = 0.08,
        grasp_width: float = 0.0,
        speed: float = 0.1,
        force: float = 20.0,
        epsilon: float = 0.08,
        threshold: float = 0.5,
    ) -> None:
        values = (open_width, grasp_width, speed, force, epsilon, threshold)
        if not all(math.isfinite(v) for v in values):
            raise ValueError("gripper settings must be finite")
        if not (0.0 <= grasp_width < open_width and speed > 0 and force > 0 and epsilon >= 0):
            raise ValueError("need 0 <= grasp_width < open_width, speed > 0, force > 0, epsilon >= 0")
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        self.open_width, self.grasp_width = open_width, grasp_width
        self.speed, self.force, self.epsilon, self.threshold = speed, force, epsilon, threshold
        self.state: str | None = None  # "open" / "closed": the last state a goal was sent for
        self.failures = 0

    def plan(self, opening: float) -> FrankaGripperGoal | None:
        if not math.isfinite(opening):
            raise ValueError(f"gripper opening must be finite, got {opening}")
        state = "closed" if opening < self.threshold else "open"
        if state == self.state:
            return None  # no change: nothing is re-sent (not after an abort either)
        self.state = state
        if state == "closed":
            return FrankaGripperGoal(
                "grasp", self.grasp_width, self.speed, self.force, self.epsilon, self.epsilon
            )
        return FrankaGripperGoal("move", self.open_width, self.speed)

    def on_result(self, goal: FrankaGripperGoal, success: bool, final_width: float | None = None) -> str:
        """'' after a success, else the report to log (the state stays: no retry until the next change)."""
        if success:
            return ""
        self.failures += 1
        width = "unknown" if final_width is None else f"{final_width:.4f} m"
        if goal.kind == "grasp":
            return (
                f"grasp aborted (final width {width} outside [{goal.width - goal.epsilon_inner:.3f}, "
                f"{goal.width + goal.epsilon_outer:.3f}] m, or the gripper faulted): not retried; "
                "the next open/close decision is sent"
            )
        return f"move to {goal.width:.3f} m failed (final width {width}): not retried"

    def forget(self) -> None:
        """The driver restarted or the goal was never accepted: send the next decision whatever it is."""
        self.state = None
