"""The executor's status codes, in the style of MoveIt Servo's ``StatusCode``: a fixed text per code.

Each command of the executor core carries one code (``Command.status``); the node publishes it with
the command's own reason (``detail``) on ``~/status`` (internvla_msgs/ExecutorStatus, whose constants
have the same numbers: a test checks it) and in /diagnostics at the code's level.
"""

from __future__ import annotations

from enum import IntEnum


class StatusCode(IntEnum):
    NOT_READY = -1  # no robot state or IK model yet: nothing commanded
    OK = 0  # moving on a chunk, no limit touched
    HOLDING = 1  # holding the setpoint: no chunk yet, the goal ended, the chunk ran out
    ESTOP = 2  # e-stop latched: holding until ~/release_estop
    WATCHDOG = 3  # no fresh chunk within watchdog_timeout: holding
    LIMIT_CLIPPED = 4  # moving, but a safety limit changed the command
    STALE_STATE = 5  # joint_states / ee_pose older than max_state_age: holding
    INVALID_STATE = 6  # joint_states / ee_pose NaN, inf, wrong size or with an invalid stamp: holding
    REJECTED_INPUT = 7  # a chunk was refused (reason in the detail and per-reason counters)
    RESYNCED = 8  # moving; the setpoint was re-taken from the measured pose (tracking error)
    LIMIT_HOLD = 9  # a safety limit refused the command: holding
    ABORTED = 10  # the policy aborted its goal: holding
    ROBOT_ERROR = 11  # the robot reported an error (robot_errors): nothing sent until ~/recover


TEXTS = {
    StatusCode.NOT_READY: "Not ready: no robot state or IK model yet",
    StatusCode.OK: "Commanding",
    StatusCode.HOLDING: "Holding the setpoint",
    StatusCode.ESTOP: "E-stop latched: holding until released",
    StatusCode.WATCHDOG: "Watchdog: no fresh chunk, holding",
    StatusCode.LIMIT_CLIPPED: "Commanding, clipped by a safety limit",
    StatusCode.STALE_STATE: "Robot state is stale: holding",
    StatusCode.INVALID_STATE: "Robot state is invalid: holding",
    StatusCode.REJECTED_INPUT: "Chunk rejected",
    StatusCode.RESYNCED: "Commanding, setpoint re-synchronised to the measured pose",
    StatusCode.LIMIT_HOLD: "A safety limit refused the command: holding",
    StatusCode.ABORTED: "The policy aborted its goal: holding",
    StatusCode.ROBOT_ERROR: "Robot error: sending nothing until recovered (~/recover)",
}

# diagnostic_msgs/DiagnosticStatus levels (OK 0, WARN 1, ERROR 2)
OK_LEVEL, WARN_LEVEL, ERROR_LEVEL = 0, 1, 2
LEVELS = {
    StatusCode.NOT_READY: WARN_LEVEL,
    StatusCode.OK: OK_LEVEL,
    StatusCode.HOLDING: WARN_LEVEL,
    StatusCode.ESTOP: ERROR_LEVEL,
    StatusCode.WATCHDOG: ERROR_LEVEL,
    StatusCode.LIMIT_CLIPPED: WARN_LEVEL,
    StatusCode.STALE_STATE: ERROR_LEVEL,
    StatusCode.INVALID_STATE: ERROR_LEVEL,
    StatusCode.REJECTED_INPUT: WARN_LEVEL,
    StatusCode.RESYNCED: WARN_LEVEL,
    StatusCode.LIMIT_HOLD: ERROR_LEVEL,
    StatusCode.ABORTED: ERROR_LEVEL,
    StatusCode.ROBOT_ERROR: ERROR_LEVEL,
}


def text(code: StatusCode) -> str:
    return TEXTS[StatusCode(code)]


def level(code: StatusCode) -> int:
    return LEVELS[StatusCode(code)]
