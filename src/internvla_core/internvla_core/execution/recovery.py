"""The ~/recover sequence without ROS: which steps this install can run, the controller switch each step
asks for, the steps in order with their outcome, and aborted goals counted once.

``RobotErrorMonitor`` (``internvla_core.robot_errors``) latches the error and knows the steps; this module
runs them through a ``run_step`` callable the node provides (one ROS call per step, waiting for its answer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..executor_core import ExecutorCore
from ..robot_errors import RecoveryConfig, RobotErrorMonitor, Step

RECOVERED = "recovered: holding (sending nothing) until a new chunk arrives"


def recovery_config(
    controller_name: str,
    recovery_controllers: Iterable[str],
    error_recovery_action: str,
    controller_manager: str,
    hardware_component: str,
    driver_distro: str,
) -> RecoveryConfig:
    """The steps the parameters ask for ('' entries ignored: [''] declares an empty list)."""
    controllers = tuple(dict.fromkeys([controller_name, *(c for c in recovery_controllers if c)]))
    return RecoveryConfig(
        error_recovery=bool(error_recovery_action),
        hardware_component=hardware_component if controller_manager else "",
        controllers=controllers if controller_manager else (),
        deactivate_first=RecoveryConfig.humble(driver_distro),
    )


def missing_for(steps: Sequence[Step], error_recovery_client: bool, manager_clients: bool) -> str:
    """What this install lacks for ``steps`` ('' = nothing): the refusal names the missing packages."""
    missing = []
    if Step.ERROR_RECOVERY in steps and not error_recovery_client:
        missing.append("franka_msgs (ErrorRecovery)")
    if (Step.HARDWARE_ACTIVE in steps or Step.ACTIVATE_CONTROLLERS in steps) and not manager_clients:
        missing.append("controller_manager_msgs")
    return f"not installed: {', '.join(missing)}" if missing else ""


@dataclass(frozen=True)
class SwitchRequest:
    activate: tuple[str, ...]
    deactivate: tuple[str, ...]
    strict: bool  # activating: all or nothing; deactivating: best effort (the ones still active)


def switch_request(step: Step, controllers: Sequence[str]) -> SwitchRequest:
    if step == Step.ACTIVATE_CONTROLLERS:
        return SwitchRequest(tuple(controllers), (), True)
    if step == Step.DEACTIVATE_CONTROLLERS:
        return SwitchRequest((), tuple(controllers), False)
    raise ValueError(f"{step.value} is no controller switch")


@dataclass
class RecoveryOutcome:
    success: bool
    message: str
    steps: list[str] = field(default_factory=list)  # one line per step run, in order


def forget_setpoint(core: ExecutorCore) -> None:
    """The arm stopped wherever the reflex left it: a hold of the old setpoint must never be sent."""
    core.last_commanded = core.last_commanded_joints = None


def latch_robot_error(core: ExecutorCore, reason: str) -> None:
    """A newly latched robot error: drop the chunks and the setpoint (the executor sends nothing)."""
    core.stop(f"robot error: {reason}")
    forget_setpoint(core)


def run_recovery(
    monitor: RobotErrorMonitor,
    core: ExecutorCore,
    missing: str,
    run_step: Callable[[Step], tuple[bool, str]],
    now: Callable[[], float],
    on_line: Callable[[str, bool], None] = lambda line, ok: None,
    guard: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> RecoveryOutcome:
    """Run the steps in order, stop at the first failure; refused (nothing run) when ``missing`` or the
    monitor refuses. On success the executor holds (sending nothing) until a new chunk arrives.

    ``guard``: held while the monitor and core change (the node's command lock), never during a step.
    ``on_line``: each step's line and outcome as it completes (status, log).
    """
    with guard():
        problem, steps = (missing, ()) if missing else monitor.start_recovery()
    if problem:
        return RecoveryOutcome(False, f"recovery refused: {problem}")
    outcome = RecoveryOutcome(False, "")
    for step in steps:
        ok, detail = run_step(step)
        with guard():
            line = monitor.step_result(step, ok, detail)
            if ok and step == Step.ACTIVATE_CONTROLLERS:
                for name in monitor.config.controllers:
                    monitor.on_controller_state(name, "active")
        outcome.steps.append(line)
        on_line(line, ok)
        if not ok:
            outcome.message = f"recovery failed: {monitor.reason}"
            return outcome
    with guard():
        monitor.finish(now())
        core.stop("robot error recovered: waiting for a new chunk")
        forget_setpoint(core)
    outcome.success, outcome.message = True, RECOVERED
    return outcome


class AbortedGoals:
    """Each goal id seen ABORTED counts once (an action's status lists goals until they expire)."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._seen: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def is_new(self, goal_id: bytes) -> bool:
        if goal_id in self._seen:
            return False
        if len(self._seen) > self.capacity:
            self._seen.clear()
        self._seen.add(goal_id)
        return True
