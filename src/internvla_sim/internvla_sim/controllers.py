"""What the simulated arms' controllers do with a command: the drivers' semantics, without ROS.

``JointTrajectoryControllerEmulation`` behaves like ros2_control's JointTrajectoryController (JTC,
Humble/Jazzy, ``doc/trajectory.rst`` and ``trajectory.cpp``) as far as a client can tell:

- a trajectory names all of the controller's joints (any order), has strictly increasing
  ``time_from_start``, finite positions for every joint, and velocities for none or all points;
  otherwise it is rejected with the reason (``submit`` returns it);
- ``stamp`` 0 means "now" (the arrival time); a trajectory whose last point lies in the past is rejected;
- a new trajectory **replaces** the running one (no splicing: that is Rolling 6.8+ only);
- on its first sample the controller records the state at that moment (measured positions and
  velocities; the last setpoint with ``open_loop``, JTC's ``open_loop_control``) and interpolates from it
  to the first point; a trajectory that started in the past is sampled in the segment containing now;
- segments are linear when either end lacks velocities (positions only: constant speed, then an abrupt
  stop at the last point) and cubic Hermite when both have them; after the last point it holds that
  point;
- a non-zero velocity at the last point is refused unless ``allow_nonzero_velocity_at_trajectory_end``
  (Jazzy's default is false, Humble's true).

``update(t, q, dq)`` is called at every physics substep (500 Hz in our scenes) and returns the position
setpoint the joints' servos get. ``submit`` may be called from another thread: it only validates and
parks the trajectory; the next ``update`` activates it (like JTC's realtime buffer).

Not emulated: accelerations (quintic), goal/path tolerances and the action interface, ``cmd_timeout``,
partial-joint goals, angle wrap-around.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointTrajectory:
    """A validated trajectory in the controller's joint order; ``start`` is absolute (stamp or arrival)."""

    start: float
    times: np.ndarray  # [N] time_from_start
    positions: np.ndarray  # [N, J]
    velocities: np.ndarray | None  # [N, J] or None (positions only)


def _interpolate(t0, q0, v0, t1, q1, v1, t):
    """Setpoint (position, velocity) at t on the segment (t0, q0, v0) -> (t1, q1, v1)."""
    h = t1 - t0
    if h <= 0.0:
        return q1.copy(), (np.zeros_like(q1) if v1 is None else v1.copy())
    s = min(1.0, max(0.0, (t - t0) / h))
    if v0 is None or v1 is None:  # linear: constant velocity over the segment
        return q0 + s * (q1 - q0), (q1 - q0) / h
    s2, s3 = s * s, s * s * s
    position = (
        (2 * s3 - 3 * s2 + 1) * q0 + (s3 - 2 * s2 + s) * h * v0 + (-2 * s3 + 3 * s2) * q1 + (s3 - s2) * h * v1
    )
    velocity = (
        (6 * s2 - 6 * s) / h * q0
        + (3 * s2 - 4 * s + 1) * v0
        + (6 * s - 6 * s2) / h * q1
        + (3 * s2 - 2 * s) * v1
    )
    return position, velocity


class JointTrajectoryControllerEmulation:
    def __init__(
        self,
        joints: list[str] | tuple[str, ...],
        initial_positions,
        allow_nonzero_velocity_at_trajectory_end: bool = False,
        open_loop: bool = False,
    ) -> None:
        self.joints = list(joints)
        initial = np.asarray(initial_positions, dtype=np.float64)
        if initial.shape != (len(self.joints),):
            raise ValueError(f"initial_positions needs {len(self.joints)} values")
        self.allow_nonzero_end_velocity = allow_nonzero_velocity_at_trajectory_end
        self.open_loop = open_loop
        self.setpoint = initial.copy()  # held until the first trajectory (JTC holds on activation)
        self.setpoint_velocity = np.zeros_like(initial)
        self._pending: JointTrajectory | None = None
        self._active: JointTrajectory | None = None
        self._before: tuple[float, np.ndarray, np.ndarray | None] | None = None
        self._lock = threading.Lock()
        self.accepted = 0
        self.rejected = 0
        self.last_rejection = ""

    # ------------------------------------------------------------------------------------ commands
    def submit(self, joint_names, stamp: float, times, positions, velocities, now: float) -> str:
        """Validate and queue a trajectory (replaces the running one at the next update); '' or why not.

        ``positions`` / ``velocities``: one sequence per point (``velocities`` entries may be empty).
        """
        reason, trajectory = self._validate(joint_names, stamp, times, positions, velocities, now)
        with self._lock:
            if reason:
                self.rejected += 1
                self.last_rejection = reason
                return reason
            self._pending = trajectory
            self.accepted += 1
        return ""

    def _validate(self, joint_names, stamp, times, positions, velocities, now):
        names = list(joint_names)
        if len(set(names)) != len(names) or set(names) != set(self.joints):
            return f"joints {names} do not match the controller's {self.joints}", None
        if len(times) == 0:
            return "empty trajectory", None
        order = [names.index(j) for j in self.joints]
        times = np.asarray(times, dtype=np.float64)
        if not np.all(np.isfinite(times)) or times[0] < 0.0 or np.any(np.diff(times) <= 0.0):
            return "time_from_start must be >= 0 and strictly increasing", None
        try:
            q = np.asarray([list(p) for p in positions], dtype=np.float64)
        except ValueError:
            return "every point needs one position per joint", None
        if q.shape != (len(times), len(names)) or not np.all(np.isfinite(q)):
            return "every point needs one finite position per joint", None
        v = None
        lengths = {len(vel) for vel in velocities} if velocities is not None else {0}
        if lengths != {0}:
            if lengths != {len(names)}:
                return "velocities must be given for all points and joints or for none", None
            v = np.asarray([list(vel) for vel in velocities], dtype=np.float64)[:, order]
            if not np.all(np.isfinite(v)):
                return "velocities must be finite", None
            if not self.allow_nonzero_end_velocity and np.any(v[-1] != 0.0):
                return (
                    "non-zero velocity at the last point (allow_nonzero_velocity_at_trajectory_end is false)",
                    None,
                )
        start = now if stamp == 0.0 else float(stamp)
        if start + times[-1] < now:
            return f"trajectory ends in the past ({start + times[-1]:.3f} s < now {now:.3f} s)", None
        return "", JointTrajectory(start, times, q[:, order], v)

    # ------------------------------------------------------------------------------------ control
    def update(self, t: float, measured_positions=None, measured_velocities=None) -> np.ndarray:
        """The position setpoint at time ``t`` (call at the controller rate, t increasing)."""
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None:  # replaces the running one; remember where we are now
            self._active = pending
            if self.open_loop or measured_positions is None:
                self._before = (t, self.setpoint.copy(), self.setpoint_velocity.copy())
            else:
                q = np.asarray(measured_positions, dtype=np.float64)
                dq = (
                    None if measured_velocities is None else np.asarray(measured_velocities, dtype=np.float64)
                )
                self._before = (t, q.copy(), dq)
        trajectory = self._active
        if trajectory is None:
            return self.setpoint.copy()
        absolute = trajectory.start + trajectory.times
        v = trajectory.velocities
        if t < absolute[0]:
            t0, q0, v0 = self._before
            if t >= t0:
                self.setpoint, self.setpoint_velocity = _interpolate(
                    t0, q0, v0, absolute[0], trajectory.positions[0], None if v is None else v[0], t
                )
        elif t >= absolute[-1]:
            self.setpoint = trajectory.positions[-1].copy()
            self.setpoint_velocity = np.zeros_like(self.setpoint)
            self._active = None  # done: hold the last point
        else:
            i = int(np.searchsorted(absolute, t, side="right")) - 1
            self.setpoint, self.setpoint_velocity = _interpolate(
                absolute[i],
                trajectory.positions[i],
                None if v is None else v[i],
                absolute[i + 1],
                trajectory.positions[i + 1],
                None if v is None else v[i + 1],
                t,
            )
        return self.setpoint.copy()

    @property
    def active(self) -> bool:
        return self._active is not None or self._pending is not None


class SimServos:
    """The controllers a robot's driver runs, wired to the simulated joints.

    The arm is a JTC on its arm joints. The WidowX gripper is a second JTC on one finger joint
    (Interbotix); the Franka gripper takes an opening 0 (closed) .. 1 (open) from gripper/command or
    franka_gripper's actions (``set_opening``). ``control`` runs at every physics substep.
    """

    def __init__(
        self, robot, gripper_joint: str, allow_nonzero_velocity_at_end: bool, open_loop: bool
    ) -> None:
        jtc = {
            "allow_nonzero_velocity_at_trajectory_end": allow_nonzero_velocity_at_end,
            "open_loop": open_loop,
        }
        self.arm_joints = list(robot.arm_joints)
        self.arm = JointTrajectoryControllerEmulation(self.arm_joints, robot.home, **jtc)
        self.gripper: JointTrajectoryControllerEmulation | None = None
        if robot.robot == "widowx":
            self._finger_range = (robot.finger_closed[0], robot.finger_open[0])
            self.gripper = JointTrajectoryControllerEmulation([gripper_joint], [robot.finger_open[0]], **jtc)
        self._opening: float | None = None  # the last commanded opening (None: none yet)
        self._arm_dofs: tuple[int, list[int]] | None = None  # (model id, dof addresses)

    def set_opening(self, opening: float) -> None:
        """The gripper opening the simulated fingers go to from the next substep."""
        self._opening = opening

    def control(self, env) -> None:
        """One physics substep: each controller's setpoint to the simulated servos."""
        if self._arm_dofs is None or self._arm_dofs[0] != id(env.model):
            self._arm_dofs = (id(env.model), [int(env.model.joint(j).dofadr[0]) for j in self.arm_joints])
        target = self.arm.update(env.time, env.arm_positions(), env.data.qvel[self._arm_dofs[1]].copy())
        opening = self._opening
        if self.gripper is not None:
            closed, opened = self._finger_range
            position = self.gripper.update(env.time, [float(env.finger_positions()[0])])[0]
            opening = (position - closed) / (opened - closed)
        env.apply_joint_targets(target, None if opening is None else float(np.clip(opening, 0.0, 1.0)))
