"""Sanity checks on what reaches the executor: chunk stamps and shapes, robot state values and ages.

Pure functions (no ROS) that say what is wrong with an input, so the executor core can refuse it with
the right diagnosis instead of acting on it:

- chunks: a size or value that is not a finite ``T x D`` array, an invalid stamp (``nanosec`` >= 1e9,
  negative seconds, NaN), a stamp further in the future than ``max_future_stamp`` (a clock mismatch or a
  forged stamp: such a chunk used to become the chunk being executed, so every later chunk looked older
  and was dropped while the watchdog was fed), or an observation stamp after the chunk's header stamp
  (the chunk claims to have been computed before its observation was taken). Each refusal has a
  ``reason`` key, counted per key by the core.
- state: NaN / inf / wrong size joint positions or end-effector pose, absurd values (a pose that is not
  a rigid transform or lies more than 10 m from the base, joints far outside their limits), a stamp
  older than
  ``max_state_age`` (or from the future) name the input (``joint_states`` / ``ee_pose``) that is bad.

Stamps are either float seconds or :class:`Stamp` (the ``sec``/``nanosec`` pair of a ROS message, kept
as is so an invalid ``nanosec`` is seen, not silently carried into the seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NANOSECONDS = 1_000_000_000

# reasons a chunk is refused: the counter of each is ``rejected_<reason>``
CHUNK_REJECTIONS = (
    "shape",
    "not_finite",
    "invalid_stamp",
    "future_stamp",
    "observation_after_header",
    "out_of_order",
    "unknown_command",
)


@dataclass(frozen=True)
class Stamp:
    """A ROS ``builtin_interfaces/Time`` as received: ``sec`` and ``nanosec`` unchecked."""

    sec: int
    nanosec: int

    @classmethod
    def of(cls, msg) -> Stamp:
        return cls(int(msg.sec), int(msg.nanosec))

    def problem(self) -> str:
        if not 0 <= self.nanosec < NANOSECONDS:
            return f"nanosec {self.nanosec} is not in [0, 1e9)"
        if self.sec < 0:
            return f"sec {self.sec} is negative"
        return ""

    def is_zero(self) -> bool:
        return self.sec == 0 and self.nanosec == 0


StampLike = float | int | Stamp


def stamp_seconds(stamp: StampLike) -> tuple[float, str]:
    """(seconds, '') for a valid stamp; (nan, what is wrong) otherwise."""
    if isinstance(stamp, Stamp):
        problem = stamp.problem()
        if problem:
            return math.nan, problem
        return stamp.sec + stamp.nanosec / NANOSECONDS, ""
    try:
        seconds = float(stamp)
    except (TypeError, ValueError):
        return math.nan, f"stamp {stamp!r} is not a number"
    if not math.isfinite(seconds):
        return math.nan, f"stamp {seconds} is not finite"
    return seconds, ""


@dataclass(frozen=True)
class ChunkCheck:
    """The verdict on a chunk: ``reason`` '' = accepted; ``observation_time`` in seconds when valid."""

    reason: str = ""  # one of CHUNK_REJECTIONS, or ''
    message: str = ""
    chunk: np.ndarray | None = None
    observation_time: float = math.nan

    @property
    def ok(self) -> bool:
        return not self.reason


def _refuse(reason: str, message: str) -> ChunkCheck:
    return ChunkCheck(reason, message)


def check_chunk(
    chunk,
    action_dim: int,
    observation_stamp: StampLike,
    now: float,
    max_future_stamp: float,
    header_stamp: StampLike | None = None,
) -> ChunkCheck:
    """Is this chunk fit to execute? ``header_stamp`` None or zero = not given (the order check is skipped).

    ``now`` is the executor's clock; stamps later than ``now + max_future_stamp`` are refused.
    """
    try:
        array = np.asarray(chunk, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        return _refuse("shape", f"chunk is not numeric: {exc}")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != action_dim:
        return _refuse("shape", f"chunk shape {array.shape} is not T x {action_dim}")
    if not np.all(np.isfinite(array)):
        return _refuse("not_finite", "chunk contains NaN or inf")
    observation_time, problem = stamp_seconds(observation_stamp)
    if problem:
        return _refuse("invalid_stamp", f"observation stamp: {problem}")
    header_time = None
    if header_stamp is not None and not (isinstance(header_stamp, Stamp) and header_stamp.is_zero()):
        header_time, problem = stamp_seconds(header_stamp)
        if problem:
            return _refuse("invalid_stamp", f"header stamp: {problem}")
    if not math.isfinite(float(now)):
        return _refuse("invalid_stamp", f"the executor clock reads {now}")
    horizon = float(now) + max_future_stamp
    for name, t in (("observation", observation_time), ("header", header_time)):
        if t is not None and t > horizon:
            return _refuse(
                "future_stamp",
                f"{name} stamp is {t - float(now):.3f} s in the future (max_future_stamp {max_future_stamp} s)",
            )
    if header_time is not None and observation_time > header_time:
        return _refuse(
            "observation_after_header",
            f"observation stamp is {observation_time - header_time:.3f} s after the chunk's header stamp",
        )
    return ChunkCheck("", "", array, observation_time)


@dataclass(frozen=True)
class StateCheck:
    """The verdict on the robot state: ``code`` '' = fine, else 'invalid_state' or 'stale_state'."""

    code: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return not self.code


MAX_POSE_DISTANCE = 10.0  # metres from the robot base: a measured pose further away is a bug
JOINT_LIMIT_MARGIN = 0.5  # rad beyond the joint limits: a measured joint further out is a bug
MAX_JOINT_MAGNITUDE = 1000.0  # rad, for joints without limits (continuous)


def _values_problem(name: str, values, shape: tuple[int, ...] | None) -> str:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return f"{name} is not numeric"
    if shape is not None and array.shape != shape:
        return f"{name} has shape {array.shape}, expected {shape}"
    if array.ndim != (1 if shape is None else len(shape)):
        return f"{name} has shape {array.shape}"
    if not np.all(np.isfinite(array)):
        return f"{name} contains NaN or inf"
    return ""


def _pose_problem(pose: np.ndarray) -> str:
    """A rigid transform (rotation block orthonormal with det +1, last row 0 0 0 1) near the base."""
    rotation = pose[:3, :3]
    with np.errstate(all="ignore"):
        gram = rotation @ rotation.T
        if not np.all(np.isfinite(gram)) or np.abs(gram - np.eye(3)).max() > 1e-3:
            return "ee_pose orientation is not a rotation"
        if not np.linalg.det(rotation) > 0:
            return "ee_pose orientation is not a rotation"
    if not np.array_equal(pose[3], [0.0, 0.0, 0.0, 1.0]):
        return "ee_pose is not a homogeneous transform"
    with np.errstate(over="ignore"):  # 1e300 overflows to inf: refused just below
        distance = float(np.linalg.norm(pose[:3, 3]))
    if distance > MAX_POSE_DISTANCE:
        return f"ee_pose is {distance:.3g} m from the base (more than {MAX_POSE_DISTANCE} m)"
    return ""


def _joint_range_problem(joints: np.ndarray, bounds) -> str:
    if np.abs(joints).max(initial=0.0) > MAX_JOINT_MAGNITUDE:
        return f"joint_states has a position beyond {MAX_JOINT_MAGNITUDE} rad"
    if bounds is None:
        return ""
    lower, upper = (np.asarray(b, dtype=np.float64) for b in bounds)
    if lower.shape != joints.shape or upper.shape != joints.shape:
        return ""
    outside = (joints < lower - JOINT_LIMIT_MARGIN) | (joints > upper + JOINT_LIMIT_MARGIN)
    if np.any(outside):
        index = int(np.argmax(outside))
        return (
            f"joint_states position {index} ({joints[index]:.3g} rad) is more than {JOINT_LIMIT_MARGIN} rad "
            "outside the joint limits"
        )
    return ""


def _age_problem(
    name: str, stamp: StampLike, now: float, max_age: float, max_future: float
) -> tuple[str, str]:
    seconds, problem = stamp_seconds(stamp)
    if problem:
        return "invalid_state", f"{name} stamp is invalid: {problem}"
    age = float(now) - seconds
    if age > max_age:
        return "stale_state", f"{name} is stale: {age:.3f} s old (max_state_age {max_age} s)"
    if -age > max_future:
        return "invalid_state", f"{name} stamp is {-age:.3f} s in the future (clock mismatch?)"
    return "", ""


def check_state(
    now: float,
    pose,
    joints=None,
    joint_count: int | None = None,
    joint_bounds: tuple | None = None,
    joints_stamp: StampLike | None = None,
    pose_stamp: StampLike | None = None,
    max_state_age: float = math.inf,
    max_future_stamp: float = math.inf,
) -> StateCheck:
    """Values first (NaN / inf / wrong size), then ages; stamps left None are not age-checked.

    ``joint_count``: how many arm positions the IK model needs (None = any size); ``joint_bounds``
    (lower, upper): measured joints more than ``JOINT_LIMIT_MARGIN`` outside them are refused.
    """
    if joints is not None:
        problem = _values_problem("joint_states", joints, None if joint_count is None else (joint_count,))
        problem = problem or _joint_range_problem(np.asarray(joints, dtype=np.float64), joint_bounds)
        if problem:
            return StateCheck("invalid_state", problem)
    problem = _values_problem("ee_pose", pose, (4, 4)) or _pose_problem(np.asarray(pose, dtype=np.float64))
    if problem:
        return StateCheck("invalid_state", problem)
    if not math.isfinite(float(now)):
        return StateCheck("invalid_state", f"the executor clock reads {now}")
    for name, stamp in (("joint_states", joints_stamp), ("ee_pose", pose_stamp)):
        if stamp is None:
            continue
        code, message = _age_problem(name, stamp, now, max_state_age, max_future_stamp)
        if code:
            return StateCheck(code, message)
    return StateCheck()
