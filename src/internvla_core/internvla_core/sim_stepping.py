"""The simulator's side of lock-step time and the gripper goals it serves, without ROS.

Lock-step (docs/graph-contract.md): the simulator publishes the observation of step k stamped t_k and
advances only when a command stamped >= t_k arrived, or after ``timeout`` wall seconds (holding the
last command; counted in ``timeouts``). While it waits it re-publishes the observation every
``republish_period`` so late joiners get it. The gripper actions wait on the same condition for the
fingers to settle. One condition variable serves both, so the simulator node only calls these.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from internvla_core.gripper import grasp_succeeds

MOVE_TOLERANCE = 0.005  # [m] a Move ends within this of its width (franka_gripper does not say)
SETTLED_STEPS = 3  # control steps with the finger width changing by less than SETTLED_CHANGE: stopped
SETTLED_CHANGE = 2e-4  # [m]


class LockstepClock:
    """Commands in, steps out: when the simulation may advance and when the fingers stopped."""

    def __init__(self, timeout: float, republish_period: float = 1.0) -> None:
        self.timeout, self.republish_period = timeout, republish_period
        self._cond = threading.Condition()
        self._command_stamp = -1.0
        self._stopped = False
        self.steps = 0
        self.timeouts = 0
        self.finger_width = 0.0

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self) -> None:
        """Accept waiting again (after ``stop``): an activation after a deactivation."""
        with self._cond:
            self._stopped = False

    def stop(self) -> None:
        """Wake every waiter: the simulation loop and the gripper goals return at once."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def command(self, stamp: float) -> None:
        """A command stamped ``stamp`` arrived: any answer stamped for this step lets the sim advance."""
        with self._cond:
            self._command_stamp = max(self._command_stamp, stamp)
            self._cond.notify_all()

    def wait_for_command(self, t_k: float, republish: Callable[[], None]) -> bool:
        """Block until a command stamped >= t_k (True), the timeout (False, counted) or ``stop``.
        ``republish`` runs every ``republish_period`` while waiting, outside the lock."""
        start = time.monotonic()
        with self._cond:
            while not self._stopped and time.monotonic() - start < self.timeout:
                wait = min(self.republish_period, self.timeout - (time.monotonic() - start))
                if self._cond.wait_for(
                    lambda: self._stopped or self._command_stamp >= t_k - 1e-9, timeout=max(0.0, wait)
                ):
                    return not self._stopped
                self._cond.release()
                try:
                    republish()
                finally:
                    self._cond.acquire()
            if self._stopped:
                return False
            self.timeouts += 1
            return False

    def stepped(self, finger_width: float) -> None:
        """One control step done; ``finger_width`` is the gripper opening it ended with [m]."""
        with self._cond:
            self.steps += 1
            self.finger_width = finger_width
            self._cond.notify_all()

    def wait_settled(self, timeout: float) -> float | None:
        """The finger width once it changed by < SETTLED_CHANGE for SETTLED_STEPS steps; None on
        timeout or stop."""
        deadline = time.monotonic() + timeout
        last, stable = None, 0
        with self._cond:
            seen = self.steps
            while stable < SETTLED_STEPS:
                changed = self._cond.wait_for(
                    lambda seen=seen: self.steps > seen or self._stopped,
                    timeout=max(0.0, deadline - time.monotonic()),
                )
                if not changed or self._stopped:
                    return None
                seen, width = self.steps, self.finger_width
                stable = stable + 1 if last is not None and abs(width - last) < SETTLED_CHANGE else 0
                last = width
        return last


def gripper_goal_check(width: float, max_width: float) -> str:
    """Why a Grasp/Move goal width is refused ("" when it is fine)."""
    if np.isfinite(width) and 0.0 <= width <= max_width + 1e-9:
        return ""
    return f"width {width} outside [0, {max_width:.3f}] m"


def gripper_goal_outcome(
    kind: str, width: float, final: float | None, max_width: float, inner: float = 0.0, outer: float = 0.0
) -> tuple[bool, str, float | None]:
    """(success, error, measured width) of a franka_gripper Grasp ("grasp") or Move ("move") goal.

    The hand measures 0 .. max (simulated fingers squeezed shut read below 0). A Grasp succeeds when
    the final width lies within [width - inner, width + outer] (franka_gripper's rule); a Move within
    MOVE_TOLERANCE of its width (our choice)."""
    if final is None:
        return False, "the fingers did not settle in time (or the simulator stopped)", None
    final = min(max(final, 0.0), max_width)
    if kind == "grasp":
        if grasp_succeeds(width, inner, outer, final):
            return True, "", final
        return False, f"final width {final:.4f} m outside [{width - inner:.4f}, {width + outer:.4f}] m", final
    if abs(final - width) <= MOVE_TOLERANCE:
        return True, "", final
    return False, f"final width {final:.4f} m, asked {width:.4f} m (blocked?)", final
