"""Robot errors (Franka reflex, user stop, aborted goals, inactive controllers): detect, report, and
recover only on request. No ROS here; ``internvla_policy.chunk_executor_node`` feeds it and runs the
recovery steps.

Inputs:

- the Franka's robot mode (``franka_msgs/msg/FrankaRobotState.robot_mode``, from
  ``/franka_robot_state_broadcaster/robot_state``): ``REFLEX`` (a reflex stopped the arm, e.g. a
  collision threshold or a joint limit), ``USER_STOPPED`` (the user stop is pressed), ``GUIDING`` (the arm
  is hand-guided) and ``OTHER`` latch an error; ``IDLE``, ``MOVE`` and ``AUTOMATIC_ERROR_RECOVERY`` do not;
- aborted trajectory / gripper goals (``on_goal_aborted``; the node reads the actions' status topics);
- controller states (``on_controller_state``): one of the recovery controllers not ``active``.

Output: while an error is latched (``blocked``) the executor sends nothing at all (the driver would
refuse it, and a setpoint from before the reflex must never be replayed) and reports ERROR with the
reason. Nothing clears the latch but a recovery that ran every step successfully: not the mode
returning to IDLE, not a new chunk.

Recovery (``start_recovery`` on request, then ``step_result`` per step, ``finish``), in the order
franka_ros2 documents (franka_hardware/doc/index.rst, "Error Recovery"): on Humble, deactivate the
controllers first (Humble's controller_manager leaves them active when the hardware fails); then
``franka_msgs/action/ErrorRecovery`` (empty goal, libfranka's automaticErrorRecovery); then, for
franka_ros2 versions whose hardware interface survives an FCI error by going unconfigured, set the
hardware component active again (controller_manager ``set_hardware_component_state``) and activate the
controllers again (``switch_controller``). A recovery is refused while its cause persists (user stop
still pressed, arm still hand-guided), while another one runs, and when no error is latched. The first
failed step ends it; the error stays latched with the failure added to the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum


class RobotMode(IntEnum):
    """franka_msgs/msg/FrankaRobotState ROBOT_MODE_* (libfranka's franka::RobotMode)."""

    OTHER = 0
    IDLE = 1
    MOVE = 2
    GUIDING = 3
    REFLEX = 4
    USER_STOPPED = 5
    AUTOMATIC_ERROR_RECOVERY = 6


ERROR_MODES = {
    RobotMode.OTHER: "robot mode OTHER: the robot is not under FCI control",
    RobotMode.GUIDING: "robot mode GUIDING: the arm is being hand-guided",
    RobotMode.REFLEX: "robot mode REFLEX: a reflex stopped the arm (collision, joint or torque limit)",
    RobotMode.USER_STOPPED: "robot mode USER_STOPPED: the user stop is pressed",
}
# modes whose cause a recovery cannot clear: the operator must act on the robot first
PERSISTING_MODES = {
    RobotMode.USER_STOPPED: "the user stop is still pressed: release it first",
    RobotMode.GUIDING: "the arm is still being hand-guided: release the guiding button first",
}


class Step(str, Enum):
    DEACTIVATE_CONTROLLERS = "deactivate_controllers"
    ERROR_RECOVERY = "error_recovery"
    HARDWARE_ACTIVE = "hardware_active"
    ACTIVATE_CONTROLLERS = "activate_controllers"


@dataclass(frozen=True)
class RecoveryConfig:
    error_recovery: bool = True  # call franka_msgs/action/ErrorRecovery
    hardware_component: str = "FrankaHardwareInterface"  # '' = do not set a component active
    controllers: tuple[str, ...] = ()  # re-activated (and on Humble first deactivated); () = none
    deactivate_first: bool = False  # Humble: controllers stay active when the hardware fails

    @staticmethod
    def humble(distro: str) -> bool:
        """Whether the driver runs Humble (its controllers must be deactivated before a recovery)."""
        return distro.strip().lower() == "humble"

    def steps(self) -> tuple[Step, ...]:
        steps = []
        if self.deactivate_first and self.controllers:
            steps.append(Step.DEACTIVATE_CONTROLLERS)
        if self.error_recovery:
            steps.append(Step.ERROR_RECOVERY)
        if self.hardware_component:
            steps.append(Step.HARDWARE_ACTIVE)
        if self.controllers:
            steps.append(Step.ACTIVATE_CONTROLLERS)
        return tuple(steps)


class RobotErrorMonitor:
    """Latches robot errors; clears them only through a requested, fully successful recovery."""

    def __init__(self, config: RecoveryConfig) -> None:
        if not config.steps():
            raise ValueError("a recovery needs at least one step (error recovery, hardware or controllers)")
        self.config = config
        self.state = "ok"  # ok | error | recovering
        self.reason = ""  # the latched cause (and a failed recovery step)
        self.mode: RobotMode | int | None = None  # the last robot mode taken into account
        self.counters = {"robot_errors": 0, "recoveries": 0, "failed_recoveries": 0, "refused_recoveries": 0}
        self.steps_done: list[str] = []  # the lines of the last recovery
        self._ignore_before: float | None = None  # robot modes stamped before the last recovery

    @property
    def blocked(self) -> bool:
        return self.state != "ok"

    def _latch(self, reason: str) -> str:
        if self.state != "ok":  # one error at a time: the first cause stays the reason
            return ""
        self.state, self.reason = "error", reason
        self.counters["robot_errors"] += 1
        return reason

    # ----------------------------------------------------------------------------------- inputs
    def on_robot_mode(self, mode: int, stamp: float | None = None) -> str:
        """A robot mode report; returns the reason when it latched a new error, else ''.

        Reports stamped before the end of the last recovery are ignored (in flight from before it); so
        are all reports during a recovery (the mode is REFLEX until ErrorRecovery has run).
        """
        if self._ignore_before is not None and stamp is not None and stamp <= self._ignore_before:
            return ""
        try:
            mode = RobotMode(int(mode))
        except ValueError:
            mode = int(mode)
        self.mode = mode
        if self.state == "recovering":
            return ""
        if isinstance(mode, RobotMode) and mode not in ERROR_MODES:
            return ""
        return self._latch(ERROR_MODES.get(mode, f"unknown robot mode {mode}"))

    def on_goal_aborted(self, source: str, detail: str = "") -> str:
        """An aborted trajectory / gripper goal; returns the reason when it latched a new error."""
        if self.state == "recovering":
            return ""
        return self._latch(f"{source} goal aborted" + (f" ({detail})" if detail else ""))

    def on_controller_state(self, name: str, state: str) -> str:
        """A recovery controller's lifecycle state ('active', 'inactive', ...); not active = error."""
        if name not in self.config.controllers or state == "active" or self.state == "recovering":
            return ""
        return self._latch(f"controller {name} is {state or 'unknown'}")

    # ----------------------------------------------------------------------------------- recovery
    def persisting_cause(self) -> str:
        """Why a recovery cannot work now ('' when nothing known stands in its way)."""
        return PERSISTING_MODES.get(self.mode, "") if isinstance(self.mode, RobotMode) else ""

    def start_recovery(self) -> tuple[str, tuple[Step, ...]]:
        """('', steps to run in order) or (why not, ()). Nothing is run on a refusal."""
        problem = ""
        if self.state == "ok":
            problem = "no robot error is latched: nothing to recover"
        elif self.state == "recovering":
            problem = "a recovery is already running"
        elif self.persisting_cause():
            problem = f"{self.persisting_cause()} ({self.reason})"
        if problem:
            self.counters["refused_recoveries"] += 1
            return problem, ()
        self.state = "recovering"
        self.steps_done = []
        self.reason = self.reason.split("; recovery failed")[0]  # a new attempt: only the cause
        return "", self.config.steps()

    def step_result(self, step: Step, ok: bool, detail: str = "") -> str:
        """Record one step's outcome; a failure ends the recovery (the error stays). Returns the line."""
        if self.state != "recovering":
            raise RuntimeError("no recovery is running")
        line = f"{step.value}: ok" if ok else f"{step.value}: failed ({detail or 'no reason given'})"
        if ok and detail:
            line = f"{line} ({detail})"
        self.steps_done.append(line)
        if not ok:
            self.state = "error"
            self.reason = f"{self.reason}; recovery failed at {line}"
            self.counters["failed_recoveries"] += 1
        return line

    def finish(self, now: float | None = None) -> None:
        """Every step succeeded: clear the error. Robot modes stamped up to ``now`` are ignored."""
        if self.state != "recovering":
            raise RuntimeError("no recovery is running")
        if len(self.steps_done) != len(self.config.steps()):
            raise RuntimeError("finish before every step reported success")
        self.state, self.reason, self.mode = "ok", "", None
        self._ignore_before = now
        self.counters["recoveries"] += 1

    def report(self) -> tuple[str, str, dict[str, str]]:
        """(level 'ok' | 'error', message, key values) for /diagnostics."""
        values = {
            "robot_error_state": self.state,
            "robot_error": self.reason,
            "robot_mode": "" if self.mode is None else getattr(self.mode, "name", str(self.mode)),
            "recovery_steps": "; ".join(self.steps_done),
            **{k: str(v) for k, v in self.counters.items()},
        }
        if self.state == "ok":
            return "ok", "", values
        prefix = "recovering" if self.state == "recovering" else "robot error"
        return "error", f"{prefix}: {self.reason} (~/recover)", values
