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
import time
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


class ChunkTrajectoryPlanner:
    """Plans the trajectory that starts with ``first`` (the command ``core.tick`` just returned), a few
    points at a time if need be.

    ``previous_joints``: the joint setpoint before that tick (``core.last_commanded_joints`` read before
    it, or the measured joints when there was none): the point before the first, for its velocity.

    Continues on a twin of the core with the steps after ``first.step`` (measured state = the planned
    setpoint, so no re-synchronisation) until a step would hold. ``core`` itself is not changed: its own
    ticks later reach the same setpoints (deterministic pipeline), so the next chunk plans from where
    this trajectory is at that step. Each point costs one IK solve (~0.7 ms here): at 100 Hz a whole
    chunk at once would stall the control thread for several periods, so ``extend`` takes a point budget
    or a deadline and the executor adds the rest on the next ticks (the plan grows faster than the
    controller consumes it).
    """

    def __init__(self, core: ExecutorCore, first: Command, previous_joints: np.ndarray | None) -> None:
        self._twin = _twin(core)
        self._dt = core.config.control_period
        self.start_step = first.step
        self._step = first.step
        self._positions = [np.array(first.joint_targets)]
        self._poses, self._grippers = [first.target_pose], [first.gripper_opening]
        self._before = None if previous_joints is None else np.asarray(previous_joints, dtype=np.float64)
        self.end_reason = ""  # set when a step would hold: the plan is complete

    @property
    def done(self) -> bool:
        return bool(self.end_reason)

    def __len__(self) -> int:
        return len(self._positions)

    def extend(self, max_points: int | None = None, deadline: float | None = None) -> int:
        """Plan until done, ``max_points`` in all, or ``time.perf_counter() >= deadline`` (checked after
        each point, so at least one is added). Returns how many points were added."""
        added = 0
        twin = self._twin
        while not self.done and (max_points is None or len(self._positions) < max_points):
            if deadline is not None and added and time.perf_counter() >= deadline:
                break
            self._step += 1
            joints = twin.last_commanded_joints
            command = twin.tick(twin.start_time + self._step * self._dt, twin.ik.fk(joints), joints)
            if command.hold or command.joint_targets is None:
                self.end_reason = command.reason or "no joint targets"
                break
            self._positions.append(np.array(command.joint_targets))
            self._poses.append(command.target_pose)
            self._grippers.append(command.gripper_opening)
            added += 1
        return added

    def trajectory(self) -> PlannedTrajectory:
        """The points planned so far (``end_reason`` "planning" while more may follow)."""
        positions = np.vstack(self._positions)
        before = positions[0] if self._before is None else self._before
        return PlannedTrajectory(
            start_step=self.start_step,
            times=self._dt * np.arange(1, len(positions) + 1, dtype=np.float64),
            positions=positions,
            velocities=finite_difference_velocities(before, positions, self._dt),
            poses=tuple(self._poses),
            grippers=tuple(self._grippers),
            end_reason=self.end_reason or "planning",
        )


def can_plan(core: ExecutorCore, first: Command) -> bool:
    """A trajectory needs IK (joint targets), a moving command and a setpoint to start from."""
    return not (
        first.hold or first.joint_targets is None or core.ik is None or core.last_commanded_joints is None
    )


def plan_chunk_trajectory(
    core: ExecutorCore, first: Command, previous_joints: np.ndarray | None, max_points: int | None = None
) -> PlannedTrajectory | None:
    """The whole trajectory (or its first ``max_points``) at once; None when ``can_plan`` is false.

    ``end_reason``: the hold reason the next tick would give (end of the chunk, the watchdog horizon
    ``last chunk time + watchdog_timeout``, a limit that refuses the row), or "planning" when
    ``max_points`` cut it short.
    """
    if not can_plan(core, first):
        return None
    planner = ChunkTrajectoryPlanner(core, first, previous_joints)
    planner.extend(max_points=max_points)
    return planner.trajectory()


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
