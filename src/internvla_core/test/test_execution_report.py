"""What ~/status and /diagnostics say: refusals raise the level once, Servo and robot errors on top."""

from __future__ import annotations

import numpy as np
from test_execution_settings import defaults

from internvla_core.execution.report import STATUS_COUNTERS, ExecutorReport, status_counters
from internvla_core.execution.settings import build_settings
from internvla_core.executor_core import Command, ExecutorCore
from internvla_core.latency import RateMeter
from internvla_core.status import ERROR_LEVEL, WARN_LEVEL, StatusCode


def setup(**change):
    settings = build_settings({**defaults(), "embodiment": "franka_real", "mode": "chunk", **change})
    return ExecutorCore(settings.embodiment, settings.config), settings, ExecutorReport()


def test_status_counters_are_the_message_fields():
    core, _, _ = setup()
    core.counters["chunks"] = 3
    counters = status_counters(core)
    assert tuple(counters) == STATUS_COUNTERS and counters["chunks"] == 3


def test_a_status_change_is_reported_a_repeat_is_not():
    report = ExecutorReport()
    assert report.set_status(StatusCode.HOLDING, "waiting")
    assert not report.set_status(StatusCode.HOLDING, "still waiting")
    assert report.set_status(StatusCode.OK, "")


def test_refused_chunks_warn_once_and_name_the_last_rejection():
    core, settings, report = setup()
    report.set_status(StatusCode.OK, "")
    core.reject_chunk("shape", "rows x cols = 2 x 7 but 3 values")
    first = report.diagnostic(core, settings, RateMeter(), estop_input=False)
    assert first.level == WARN_LEVEL and "shape: rows x cols" in first.message
    assert first.values["rejected_chunks"] == "1" and first.values["last_rejection"].startswith("shape")
    assert report.diagnostic(core, settings, RateMeter(), estop_input=False).level == 0


def test_holds_are_remembered_with_their_reason_and_limit_hits_with_the_last_command():
    core, settings, report = setup()
    hold = Command(4, True, "watchdog: no chunk for 1.2 s", np.eye(4), None, None, status=StatusCode.WATCHDOG)
    assert report.commanded(hold) == (StatusCode.WATCHDOG, "watchdog: no chunk for 1.2 s")
    move = Command(5, False, "", np.eye(4), None, 1.0, hits=["workspace"], status=StatusCode.LIMIT_CLIPPED)
    assert report.commanded(move) == (StatusCode.LIMIT_CLIPPED, "workspace")
    report.set_status(*report.commanded(move))
    values = report.diagnostic(core, settings, RateMeter(), estop_input=True).values
    assert values["last_hold_reason"] == "watchdog: no chunk for 1.2 s"
    assert values["last_limit_hits"] == "workspace" and values["estop_input"] == "True"
    assert values["mode"] == "chunk" and values["status"] == "LIMIT_CLIPPED"


def test_servo_trouble_counts_unless_dry_run_and_a_robot_error_is_always_error():
    core, settings, report = setup(dry_run=False)
    report.set_status(StatusCode.OK, "")
    servo = ("error", "Servo HALT_FOR_COLLISION", {"servo_status": "HALT_FOR_COLLISION"})
    diagnostic = report.diagnostic(core, settings, RateMeter(), False, servo=servo)
    assert diagnostic.level == ERROR_LEVEL and "servo: Servo HALT" in diagnostic.message
    _, dry, _ = setup(dry_run=True)
    assert report.diagnostic(core, dry, RateMeter(), False, servo=servo).level == 0
    error = ("error", "robot error: REFLEX (~/recover)", {"robot_error_state": "error"})
    diagnostic = report.diagnostic(core, dry, RateMeter(), False, robot_errors=error)
    assert diagnostic.level == ERROR_LEVEL and diagnostic.message.endswith("REFLEX (~/recover)")
    assert diagnostic.values["robot_error_state"] == "error"
