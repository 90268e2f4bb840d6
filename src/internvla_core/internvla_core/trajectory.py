"""A chunk as ONE time-parameterised joint trajectory for a JointTrajectoryController (chunk mode).

Why: a ros2_control JointTrajectoryController (JTC) drops the running trajectory when a new one
arrives, interpolates from the state at that moment to the first point and stops at the last point.
Streaming one point per control step therefore only moves without pausing when every point arrives
exactly as the previous one is reached; whatever latency or jitter there is shows up as a stop. A
whole chunk sent as one multi-point trajectory (row i at ``(i + 1)·dt``, velocities on the inner
points, zero at the end), replaced by the next chunk before it ends, keeps the arm moving.

How: the points are the commands the executor core would give at the coming control steps, computed
on a twin of the core (its chunk streamer, embodiment adapter and setpoint copied; IK and limits
shared): each row goes through the same pipeline as a tick (adapter, delta on the previous point's
setpoint, workspace and per-step translation/rotation limits, IK from the previous point's joints,
joint position and velocity limits, FK re-check). So every point keeps the per-step guarantees relative
to the point before it, the first one relative to the current setpoint, and the trajectory is exactly
what the per-tick stream would command step by step (``tests``: test_trajectory.py). The plan ends where
a tick would hold: end of the chunk, the watchdog horizon (``last chunk time + watchdog_timeout``; the
controller must not play motion the watchdog would stop), or a limit that refuses the row.

Velocities: central finite differences ``(q[i+1] - q[i-1]) / 2dt`` (the point before the first is the
current setpoint), zero at the last point: valid on Jazzy's JTC (which refuses a non-zero end velocity
unless ``allow_nonzero_velocity_at_trajectory_end``) and on Humble. Each listed velocity is at most the
joint velocity limit, because every |Δq| is at most ``max_joint_velocity · dt``; the cubic a JTC puts
through positions and velocities can exceed it *between* points (by up to 1.5x on a rest-to-rest or
zig-zag segment: ``hermite_peak_speed`` tells by how much).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from .executor_core import Command, ExecutorCore


@dataclass(frozen=True)
class PlannedTrajectory:
    """Points after the stamp time t0 (the tick that planned them): point i is reached at ``times[i]``."""

    start_step: int  # control step of the first point's row
    times: np.ndarray  # [N] time_from_start [s] relative to the stamp: (i + 1) * dt
    positions: np.ndarray  # [N, J] joint setpoints
    velocities: np.ndarray  # [N, J]; the last row is zero
    poses: tuple[np.ndarray, ...]  # [N] 4x4 setpoints (base frame)
    grippers: tuple[float | None, ...]  # gripper opening per point
    end_reason: str  # why no further point: the hold reason the next tick would give

    def __len__(self) -> int:
        return len(self.times)


def finite_difference_velocities(start: np.ndarray, positions: np.ndarray, dt: float) -> np.ndarray:
    """Central differences on the inner points, ``start`` as the point before the first, zero at the end."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or len(positions) == 0:
        raise ValueError(f"positions must be N x J with N >= 1, got shape {positions.shape}")
    if not dt > 0:
        raise ValueError("dt must be > 0")
    padded = np.vstack([np.asarray(start, dtype=np.float64)[None, :], positions])
    velocities = np.zeros_like(positions)
    if len(positions) > 1:
        velocities[:-1] = (padded[2:] - padded[:-2]) / (2.0 * dt)
    return velocities


def hermite_peak_speed(q0, v0, q1, v1, dt: float) -> np.ndarray:
    """Largest |velocity| per joint on the cubic Hermite segment (q0, v0) -> (q1, v1) of length dt."""
    q0, v0, q1, v1 = (np.asarray(a, dtype=np.float64) for a in (q0, v0, q1, v1))
    m = (q1 - q0) / dt
    # velocity(s) = 6 s (1 - s) m + (1 - 4 s + 3 s^2) v0 + (3 s^2 - 2 s) v1, s in [0, 1]: a quadratic
    a = -6.0 * m + 3.0 * v0 + 3.0 * v1
    b = 6.0 * m - 4.0 * v0 - 2.0 * v1
    peak = np.maximum(np.abs(v0), np.abs(v1))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(np.abs(a) > 1e-12, -b / (2.0 * a), -1.0)
    inside = (s > 0.0) & (s < 1.0)
    vertex = np.abs(a * s * s + b * s + v0)
    return np.where(inside, np.maximum(peak, vertex), peak)


def _twin(core: ExecutorCore) -> ExecutorCore:
    """A copy whose ticks do not touch ``core``: mutable state copied, IK / limits / config shared."""
    twin = copy.copy(core)
    twin.streamer = copy.deepcopy(core.streamer)
    twin.adapter = copy.deepcopy(core.adapter)
    twin.counters = dict(core.counters)
    return twin


def plan_chunk_trajectory(
    core: ExecutorCore, first: Command, previous_joints: np.ndarray | None, max_points: int | None = None
) -> PlannedTrajectory | None:
    """The trajectory that starts with ``first`` (the command ``core.tick`` just returned).

    ``previous_joints``: the joint setpoint before that tick (``core.last_commanded_joints`` read before
    it, or the measured joints when there was none): the point before the first, for its velocity.

    Continues on a twin of the core with the steps after ``first.step`` (measured state = the planned
    setpoint, so no re-synchronisation) until a step would hold or ``max_points`` are planned. Needs IK
    (joint targets) and a moving command; returns None otherwise. ``core`` itself is not changed: its
    own ticks later reach the same setpoints (deterministic pipeline), so the next chunk plans from where
    this trajectory is at that step.
    """
    if first.hold or first.joint_targets is None or core.ik is None or core.last_commanded_joints is None:
        return None
    twin = _twin(core)
    dt = core.config.control_period
    positions, poses, grippers = [np.array(first.joint_targets)], [first.target_pose], [first.gripper_opening]
    end_reason = "max_points"
    step = first.step
    while max_points is None or len(positions) < max_points:
        step += 1
        now = twin.start_time + step * dt
        joints = twin.last_commanded_joints
        command = twin.tick(now, twin.ik.fk(joints), joints)
        if command.hold or command.joint_targets is None:
            end_reason = command.reason or "no joint targets"
            break
        positions.append(np.array(command.joint_targets))
        poses.append(command.target_pose)
        grippers.append(command.gripper_opening)
    positions_array = np.vstack(positions)
    before = positions_array[0] if previous_joints is None else np.asarray(previous_joints, dtype=np.float64)
    return PlannedTrajectory(
        start_step=first.step,
        times=dt * np.arange(1, len(positions) + 1, dtype=np.float64),
        positions=positions_array,
        velocities=finite_difference_velocities(before, positions_array, dt),
        poses=tuple(poses),
        grippers=tuple(grippers),
        end_reason=end_reason,
    )


def anchored_points(
    plan: PlannedTrajectory, anchor: np.ndarray, before_anchor: np.ndarray | None, dt: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, positions, velocities) for the controller: the current setpoint ``anchor`` at time 0, then
    the plan. ``before_anchor`` is the setpoint one step earlier (None: the arm was at rest there).

    The anchor at the stamp makes a JTC sample the first segment from the commanded setpoint (the point
    is already "now" when the message arrives) instead of interpolating from the measured state, which
    lags the setpoint under load: no setpoint snap back at every new chunk.
    """
    anchor = np.asarray(anchor, dtype=np.float64)
    positions = np.vstack([anchor[None, :], plan.positions])
    times = np.concatenate([[0.0], plan.times])
    start = anchor if before_anchor is None else np.asarray(before_anchor, dtype=np.float64)
    velocities = finite_difference_velocities(start, positions, dt)
    if before_anchor is None:
        velocities[0] = 0.0
    return times, positions, velocities
