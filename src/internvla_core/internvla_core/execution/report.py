"""What ~/status and /diagnostics say: one status per tick or event, one diagnostic per second or change.

The node fills internvla_msgs/ExecutorStatus and diagnostic_msgs/DiagnosticStatus from these; levels are
DiagnosticStatus's (OK 0, WARN 1, ERROR 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..executor_core import Command, ExecutorCore
from ..latency import RateMeter
from ..status import ERROR_LEVEL, WARN_LEVEL, StatusCode
from ..status import level as status_level
from ..status import text as status_text
from .settings import ExecutorSettings

# ExecutorStatus fields carrying the core's counter of the same name
STATUS_COUNTERS = (
    "chunks",
    "rejected_chunks",
    "holds",
    "watchdog_trips",
    "limit_hits",
    "resyncs",
    "stale_state_holds",
    "invalid_state_holds",
)
LEVELS = {"ok": 0, "warn": WARN_LEVEL, "error": ERROR_LEVEL}


def status_counters(core: ExecutorCore) -> dict[str, int]:
    return {name: int(core.counters[name]) for name in STATUS_COUNTERS}


@dataclass
class Diagnostic:
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


class ExecutorReport:
    """The executor's state as reported: the current status, the last command, refusals not yet reported."""

    def __init__(self) -> None:
        self.code, self.detail = StatusCode.NOT_READY, ""
        self.last_command: Command | None = None
        self.last_hold_reason = ""
        self._rejections_reported = 0

    def set_status(self, code: StatusCode, detail: str) -> bool:
        """Record the status; True when the code changed (the node then sends /diagnostics at once)."""
        changed = code != self.code
        self.code, self.detail = StatusCode(code), detail
        return changed

    def commanded(self, command: Command) -> tuple[StatusCode, str]:
        """A command went out (or was previewed): remember it; returns the status it reports."""
        self.last_command = command
        if command.hold:
            self.last_hold_reason = command.reason
        return command.status, command.reason or ",".join(command.hits)

    def diagnostic(
        self,
        core: ExecutorCore,
        settings: ExecutorSettings,
        rate_meter: RateMeter,
        estop_input: bool,
        servo: tuple[str, str, dict[str, str]] | None = None,
        robot_errors: tuple[str, str, dict[str, str]] | None = None,
    ) -> Diagnostic:
        """Level, message and values. Chunks refused since the last report make it at least WARN; Servo
        trouble counts unless dry_run; a latched robot error is ERROR whatever the last command said."""
        code, detail = self.code, self.detail
        level = status_level(code)
        rejected = core.counters["rejected_chunks"]
        if rejected > self._rejections_reported:
            level = max(level, WARN_LEVEL)
            detail = f"{detail}; chunks refused ({core.last_rejection})" if detail else core.last_rejection
            self._rejections_reported = rejected
        message = f"{status_text(code)}: {detail}" if detail else status_text(code)
        jitter = rate_meter.jitter()
        last = self.last_command
        values = {
            "mode": settings.mode,
            "backend": settings.backend,
            "embodiment": settings.embodiment.name,
            "dry_run": str(settings.dry_run),
            "status": code.name,
            "estop": str(core.estop_latched),
            "estop_input": str(estop_input),
            "last_rejection": core.last_rejection,
            "control_rate_hz": f"{rate_meter.rate():.2f}",
            "jitter_p50_ms": f"{1e3 * jitter['p50']:.2f}",
            "jitter_p99_ms": f"{1e3 * jitter['p99']:.2f}",
            "last_hold_reason": self.last_hold_reason,
            "last_limit_hits": ",".join(last.hits) if last is not None else "",
            **{k: str(v) for k, v in core.counters.items()},
        }
        if servo is not None:
            servo_level, servo_message, servo_values = servo
            values.update(servo_values)
            if servo_level != "ok" and not settings.dry_run:
                level = max(level, LEVELS[servo_level])
                message = f"{message}; servo: {servo_message}"
        if robot_errors is not None:
            error_level, error_message, error_values = robot_errors
            values.update(error_values)
            if error_level == "error":
                level = ERROR_LEVEL
                message = f"{message}; {error_message}"
        return Diagnostic(level, message, values)
