"""MoveIt Servo (moveit_servo's ROS API on Jazzy/Kilted) as plain data: no rclpy, no moveit_msgs.

What the executor's ``servo`` backend must get right, decided here and tested without ROS:

- **Command type.** Servo executes only the input type selected with its ``~/switch_command_type``
  service (``moveit_msgs/srv/ServoCommandType``: JOINT_JOG 0, TWIST 1, POSE 2); commands of another
  type are dropped ("Command type has not been set"). :class:`ServoSession` sends commands only after
  Servo answered ``success`` for our type, and asks again after every (re)activation.
- **Stamped commands in the planning frame.** PoseStamped on ``~/pose_target_cmds`` or TwistStamped on
  ``~/delta_twist_cmds``; ``header.frame_id`` is the planning frame (the base frame of the move
  group's IK solver; other frames need a TF lookup inside Servo, an unknown one makes the command
  INVALID). The pose is the target of the IK *tip* frame, so our end-effector frame must be that tip.
- **Timeout.** Servo drops a command when ``now - header.stamp >= incoming_command_timeout`` (default
  0.1 s) and halts: an unstamped command is always stale, and the timeout must exceed our command
  period with room for jitter (:func:`timeout_problem`). A stream that stops (our node dies or is
  deactivated) therefore stops the arm within that timeout.
- **Units.** ``command_in_type: speed_units`` twists are m/s and rad/s; ``unitless`` ones are fractions
  of ``scale.linear`` / ``scale.rotational`` in [-1, 1]. Pose tracking moves at most ``scale.linear``
  m/s and ``scale.rotational`` rad/s (Jazzy's parameter description).
- **Status.** ``~/status`` (``moveit_msgs/msg/ServoStatus {code, message}``): :func:`interpret_status`.

Humble's Servo is a different API (start/stop services, std_msgs/Int8 status with other numbers, pose
tracking as a separate class): this module does not claim it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .rotations import matrix_to_quaternion, matrix_to_rotvec

JOINT_JOG, TWIST, POSE = 0, 1, 2
COMMAND_TYPES = {"twist": TWIST, "pose": POSE}  # the ones a Cartesian executor can stream
COMMAND_TOPICS = {"pose": "pose_target_cmds", "twist": "delta_twist_cmds"}  # under the Servo node
SWITCH_SERVICE = "switch_command_type"
STATUS_TOPIC = "status"
DEFAULT_INCOMING_COMMAND_TIMEOUT = 0.1  # moveit_servo's default [s]
TIMEOUT_MARGIN = 2.0  # the timeout must cover this many command periods (one late tick is not a halt)


@dataclass(frozen=True)
class StatusInfo:
    code: int
    name: str
    level: str  # "ok" | "warn" | "error"
    halted: bool  # Servo is not moving the arm toward our commands
    meaning: str


_STATUS = {
    -1: ("INVALID", "error", True, "command rejected (wrong frame, NaN, IK failure)"),
    0: ("NO_WARNING", "ok", False, "following commands"),
    1: ("DECELERATE_FOR_APPROACHING_SINGULARITY", "warn", False, "slowing down near a singularity"),
    2: ("HALT_FOR_SINGULARITY", "error", True, "stopped at a singularity"),
    3: ("DECELERATE_FOR_LEAVING_SINGULARITY", "warn", False, "slowing down leaving a singularity"),
    4: ("DECELERATE_FOR_COLLISION", "warn", False, "slowing down near a collision"),
    5: ("HALT_FOR_COLLISION", "error", True, "stopped: collision"),
    6: ("JOINT_BOUND", "error", True, "halting at a joint position or velocity bound"),
}


def interpret_status(code: int, message: str = "") -> StatusInfo:
    """What a ``ServoStatus`` code means for us (unknown codes are errors: never assume it moves)."""
    name, level, halted, meaning = _STATUS.get(
        int(code), (f"UNKNOWN({code})", "error", True, "unknown Servo status code")
    )
    if message:
        meaning = f"{meaning}: {message}"
    return StatusInfo(int(code), name, level, halted, meaning)


SUPPORTED_DISTROS = ("jazzy", "kilted", "rolling")  # moveit_servo with switch_command_type + ServoStatus


def distro_problem(distro: str) -> str:
    """Why this ROS distribution's Servo is not the API we speak (empty: it is, or unknown)."""
    if distro and distro.lower() not in SUPPORTED_DISTROS:
        return (
            f"ROS_DISTRO {distro}: MoveIt Servo there is a different API (Humble: start/stop services, "
            f"std_msgs/Int8 status); the servo backend speaks {', '.join(SUPPORTED_DISTROS)} Servo only"
        )
    return ""


def recommended_timeout(period: float) -> float:
    """An ``incoming_command_timeout`` for a stream with this period: 2.5 periods, rounded up to 10 ms."""
    return math.ceil(2.5 * period * 100.0 - 1e-9) / 100.0


def timeout_problem(timeout: float, period: float) -> str:
    """Why Servo's ``incoming_command_timeout`` does not fit a command period (empty: it fits)."""
    if timeout <= 0.0:
        return (
            f"incoming_command_timeout {timeout} s: Servo treats every command as stale (now - stamp >= "
            f"timeout); set it to about {recommended_timeout(period)} s"
        )
    if timeout < TIMEOUT_MARGIN * period:
        return (
            f"incoming_command_timeout {timeout} s is under {TIMEOUT_MARGIN:g} command periods "
            f"({period} s each): Servo would halt between our commands; set it to about "
            f"{recommended_timeout(period)} s in Servo's parameters and here"
        )
    return ""


@dataclass(frozen=True)
class ServoConfig:
    command: str = "pose"  # pose | twist
    planning_frame: str = ""  # the move group's IK base frame: header.frame_id of every command
    ee_frame: str = ""  # the move group's IK tip frame: the frame our target poses are about
    incoming_command_timeout: float = DEFAULT_INCOMING_COMMAND_TIMEOUT  # as configured in Servo
    command_in_type: str = "speed_units"  # speed_units | unitless (twist commands only)
    scale_linear: float = 0.4  # Servo's scale.linear [m/s]
    scale_rotational: float = 0.8  # Servo's scale.rotational [rad/s]

    @property
    def command_type(self) -> int:
        return COMMAND_TYPES[self.command]

    @property
    def topic(self) -> str:
        return COMMAND_TOPICS[self.command]

    def problems(self, period: float) -> list[str]:
        """Everything that would make Servo refuse or halt our stream (empty: usable)."""
        out = []
        if self.command not in COMMAND_TYPES:
            out.append(f"servo command must be one of {sorted(COMMAND_TYPES)}, got '{self.command}'")
        if not self.planning_frame:
            out.append("the planning frame (Servo's IK base frame) is empty: commands need header.frame_id")
        if not self.ee_frame:
            out.append("the end-effector frame (Servo's IK tip frame) is empty")
        if self.command_in_type not in ("speed_units", "unitless"):
            out.append(f"command_in_type must be speed_units or unitless, got '{self.command_in_type}'")
        if self.scale_linear <= 0.0 or self.scale_rotational <= 0.0:
            out.append("scale.linear and scale.rotational must be positive")
        problem = timeout_problem(self.incoming_command_timeout, period)
        if problem:
            out.append(problem)
        return out

    def speed_warning(
        self, max_translation_per_step: float, max_rotation_per_step: float, period: float
    ) -> str:
        """Servo caps speed at scale.linear / scale.rotational: say when our limits allow more."""
        linear, angular = max_translation_per_step / period, max_rotation_per_step / period
        if linear > self.scale_linear or angular > self.scale_rotational:
            return (
                f"the executor may ask {linear:.3f} m/s and {angular:.3f} rad/s but Servo caps at "
                f"scale.linear {self.scale_linear} m/s, scale.rotational {self.scale_rotational} rad/s: "
                "the arm will lag the commands"
            )
        return ""


@dataclass(frozen=True)
class PoseCommand:
    frame_id: str
    stamp: float
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]  # x y z w


@dataclass(frozen=True)
class TwistCommand:
    frame_id: str
    stamp: float
    linear: tuple[float, float, float]
    angular: tuple[float, float, float]


def pose_command(target: np.ndarray, config: ServoConfig, stamp: float) -> PoseCommand:
    """The PoseStamped content for a 4x4 target of the IK tip frame, in the planning frame."""
    target = np.asarray(target, dtype=np.float64)
    if target.shape != (4, 4) or not np.all(np.isfinite(target)):
        raise ValueError("pose target must be a finite 4x4 matrix")
    x, y, z, w = (float(v) for v in matrix_to_quaternion(target[:3, :3]))
    return PoseCommand(config.planning_frame, stamp, tuple(float(v) for v in target[:3, 3]), (x, y, z, w))


def twist_command(
    target: np.ndarray | None,
    measured: np.ndarray | None,
    period: float,
    config: ServoConfig,
    stamp: float,
) -> TwistCommand:
    """The TwistStamped content that reaches ``target`` from ``measured`` in one period.

    Linear: velocity of the tip frame's origin; angular: rotation vector of target * measured^T over
    the period; both in the planning frame (so Servo does not re-express them). Zero when either pose
    is missing (a hold). ``unitless``: divided by scale.linear / scale.rotational and shortened to norm 1.
    """
    zero = (0.0, 0.0, 0.0)
    if target is None or measured is None:
        return TwistCommand(config.planning_frame, stamp, zero, zero)
    target, measured = np.asarray(target, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    linear = (target[:3, 3] - measured[:3, 3]) / period
    angular = matrix_to_rotvec(target[:3, :3] @ measured[:3, :3].T) / period
    if config.command_in_type == "unitless":
        linear, angular = linear / config.scale_linear, angular / config.scale_rotational
        for vector in (linear, angular):
            norm = float(np.linalg.norm(vector))
            if norm > 1.0:
                vector /= norm
    if not (np.all(np.isfinite(linear)) and np.all(np.isfinite(angular))):
        return TwistCommand(config.planning_frame, stamp, zero, zero)
    return TwistCommand(
        config.planning_frame, stamp, tuple(float(v) for v in linear), tuple(float(v) for v in angular)
    )


class ServoSession:
    """Our side of one Servo connection: has Servo accepted our command type, what did it last report.

    Commands may go out only while :attr:`accepted`. The switch is requested on :meth:`reset`
    (activation) and retried every ``retry_period`` while unanswered or refused.
    """

    def __init__(self, config: ServoConfig, retry_period: float = 1.0, status_timeout: float = 2.0) -> None:
        self.config = config
        self.retry_period = retry_period
        self.status_timeout = status_timeout
        self.reset()

    def reset(self) -> None:
        self.accepted = False
        self.in_flight = False
        self.last_request: float | None = None
        self.refusals = 0
        self.status: StatusInfo | None = None
        self.status_time: float | None = None
        self.last_problem = ""

    def wants_switch(self, now: float) -> bool:
        if self.accepted or self.in_flight:
            return False
        return self.last_request is None or now - self.last_request >= self.retry_period

    def request_sent(self, now: float) -> None:
        self.in_flight, self.last_request = True, now

    def response(self, success: bool | None, error: str = "") -> None:
        """Servo's answer (``None``: the call failed, e.g. no service)."""
        self.in_flight = False
        self.accepted = bool(success)
        if not self.accepted:
            self.refusals += 1
            self.last_problem = error or (
                f"Servo refused command type {self.config.command} ({self.config.command_type})"
            )

    def on_status(self, code: int, message: str, now: float) -> StatusInfo:
        self.status, self.status_time = interpret_status(code, message), now
        return self.status

    def report(self, now: float) -> tuple[str, str, dict[str, str]]:
        """(level, message, key/values) for diagnostics."""
        values = {
            "servo_command": self.config.command,
            "servo_command_type_accepted": str(self.accepted),
            "servo_switch_refusals": str(self.refusals),
            "servo_planning_frame": self.config.planning_frame,
            "servo_incoming_command_timeout": f"{self.config.incoming_command_timeout:g}",
        }
        if self.status is not None:
            values["servo_status"] = self.status.name
            values["servo_status_code"] = str(self.status.code)
            values["servo_status_age_s"] = f"{now - self.status_time:.2f}"
        if not self.accepted:
            why = self.last_problem or "waiting for Servo to accept the command type"
            return "warn", f"not commanding: {why}", values
        if self.status is None or now - self.status_time > self.status_timeout:
            return "warn", "no ~/status from Servo (is servo_node running?)", values
        if self.status.level != "ok":
            return self.status.level, f"Servo {self.status.name}: {self.status.meaning}", values
        return "ok", "Servo following", values
