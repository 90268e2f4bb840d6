"""The chunk executor's logic without ROS: chunks in, one bounded command per control step out.

Per control step (``tick``): pick the action for this step (``ensemble``: adaptive ensemble over the
chunks of the last H observation steps, upstream's way; ``chunk``: stream the newest chunk, skipping
stale rows and blending the seam), convert it with the embodiment's adapter, apply the delta to the
**last commanded target** (the setpoint), limit it (workspace, per-step translation/rotation relative to
that setpoint), solve IK from the last commanded joint targets and limit the joints (position,
velocity), then check the FK of the joint targets against the Cartesian limits again (shrinking the
joint step if needed), so no command moves the setpoint more than the per-step limits.

Why the commanded target and not the measured pose: a position-controlled arm lags and sags under
gravity (about 1 cm on our simulated arms); a delta applied to the measured pose loses that error at
every step and it accumulates (the scripted expert's own actions replayed that way solved 0 of 10
episodes), and a hold that re-commands the measured joints lets the arm sink a little further each
cycle. Datasets record deltas between successive commanded targets (``embodiments.delta_between``), and
upstream's real-robot client integrates them on its last commanded pose; so does this core. The
setpoint is taken from the measured state only when there is none (first tick after ``reset``), at the
start of a new goal (first chunk after ``stop``), and when the measured pose is further than
``max_tracking_error`` / ``max_tracking_rotation`` from it (the arm was pushed, blocked or re-homed by
someone else): that re-synchronisation is counted (``resyncs``) and reported on the command.

Anything wrong — e-stop, no fresh chunk within the watchdog timeout, NaN, a chunk that ran out — yields
a HOLD command: the last commanded setpoint (joint targets and pose) again, with the reason; before the
first command, no joint targets at all (the controller keeps holding its own setpoint).

Time is in seconds on whatever clock the node uses (sim time in simulation); control steps are
counted from ``reset(start_time)`` so chunk rows line up with steps across inference latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .embodiments import Embodiment, compose_delta
from .ensemble import TimedEnsembler
from .rotations import matrix_to_axis_angle
from .safety import SafetyFilter, SafetyLimits
from .scheduling import ChunkStreamer


@dataclass(frozen=True)
class ExecutorConfig:
    mode: str = "ensemble"  # "ensemble" (upstream) or "chunk"
    control_period: float = 0.2
    watchdog_timeout: float = 1.0  # seconds without a fresh chunk before holding
    blend_steps: int = 3
    # chunk mode: largest change of a motion dimension (model units) between consecutive actions after a
    # chunk switch; 0 = off. The gripper dimension is never rate-limited (it is a 0/1 decision).
    seam_max_change: float = 0.0
    alpha: float = 0.1
    ensemble_horizon: int | None = None  # None = the embodiment's
    warmup: bool = True  # send the embodiment's warm-up action first (LIBERO: 10 steps), as upstream
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    # re-synchronise the setpoint to the measured pose beyond this tracking error [m] / [rad]
    max_tracking_error: float = 0.05
    max_tracking_rotation: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in ("ensemble", "chunk"):
            raise ValueError(f"mode must be 'ensemble' or 'chunk', got '{self.mode}'")
        if not self.control_period > 0:
            raise ValueError("control_period must be > 0")
        if not self.watchdog_timeout > 0:
            raise ValueError("watchdog_timeout must be > 0")
        if self.blend_steps < 0:
            raise ValueError("blend_steps must be >= 0")
        if not self.seam_max_change >= 0:
            raise ValueError("seam_max_change must be >= 0 (0 = off)")
        if not (self.max_tracking_error > 0 and self.max_tracking_rotation > 0):
            raise ValueError("max_tracking_error and max_tracking_rotation must be > 0")


@dataclass
class Command:
    step: int
    hold: bool
    reason: str
    target_pose: np.ndarray  # 4x4, base frame
    joint_targets: np.ndarray | None  # arm joints, or None without IK
    gripper_opening: float | None  # 0..1, None = leave as is
    hits: list[str] = field(default_factory=list)
    action: np.ndarray | None = None  # the model action executed (un-normalised)
    resynced: bool = False  # the setpoint was re-taken from the measured state on this step


class ExecutorCore:
    def __init__(self, embodiment: Embodiment, config: ExecutorConfig, ik=None) -> None:
        self.embodiment = embodiment
        self.config = config
        self.ik = ik
        self.safety = SafetyFilter(config.limits)
        self.counters = {
            "chunks": 0,
            "rejected_chunks": 0,
            "watchdog_holds": 0,
            "watchdog_trips": 0,
            "limit_hits": 0,
            "holds": 0,
            "resyncs": 0,
        }
        self.reset(0.0)

    def reset(self, start_time: float) -> None:
        self.start_time = float(start_time)
        self.adapter = self.embodiment.make_adapter(warmup=self.config.warmup)
        horizon = self.config.ensemble_horizon or self.embodiment.ensemble_horizon
        self.ensembler = TimedEnsembler(horizon, self.config.alpha)
        self.streamer = self._make_streamer()
        self.last_chunk_time: float | None = None
        self.last_commanded: np.ndarray | None = None  # setpoint pose (4x4, base frame)
        self.last_commanded_joints: np.ndarray | None = None  # setpoint joint targets (with IK)
        self.last_reason = ""
        self.stop_reason = ""
        self._resync_on_next_motion = True

    def stop(self, reason: str) -> None:
        """Drop every buffered chunk: the next ticks hold until a new chunk arrives (goal ended)."""
        horizon = self.config.ensemble_horizon or self.embodiment.ensemble_horizon
        self.ensembler = TimedEnsembler(horizon, self.config.alpha)
        self.streamer = self._make_streamer()
        self.last_chunk_time = None
        self.stop_reason = reason
        self._resync_on_next_motion = True  # the next goal starts from where the arm is

    def _make_streamer(self) -> ChunkStreamer:
        gripper = self.embodiment.dimension_names.index("gripper")
        limit = None
        if self.config.seam_max_change > 0:
            limit = np.full(self.embodiment.action_dim, self.config.seam_max_change)
            limit[gripper] = np.inf
        return ChunkStreamer(self.config.blend_steps, limit, discrete_dims=(gripper,))

    def step_of(self, t: float) -> int:
        return int(math.floor((t - self.start_time) / self.config.control_period + 0.5))

    def add_chunk(self, chunk: np.ndarray, observation_time: float, now: float) -> str:
        """Store a chunk computed from the observation at ``observation_time``; returns '' or why it was refused."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[0] == 0 or chunk.shape[1] != self.embodiment.action_dim:
            self.counters["rejected_chunks"] += 1
            return f"chunk shape {chunk.shape} is not T x {self.embodiment.action_dim}"
        if not np.all(np.isfinite(chunk)):
            self.counters["rejected_chunks"] += 1
            return "chunk contains NaN or inf"
        obs_step, now_step = self.step_of(observation_time), self.step_of(now)
        if self.config.mode == "ensemble":
            self.ensembler.add(chunk, obs_step)
        else:
            self.streamer.add(chunk, obs_step, now_step)
        self.last_chunk_time = now
        self.stop_reason = ""
        self.counters["chunks"] += 1
        return ""

    def _hold(self, step: int, reason: str, pose: np.ndarray, joints: np.ndarray | None) -> Command:
        """Hold the last commanded setpoint; with none yet, command nothing at all.

        Never re-commands what is measured: a position-controlled arm sits a little below its target
        under gravity, so each re-commanded measurement lets it sink further (0.20 m in 22 s in our
        simulator). Before this executor has commanded anything the controller still holds its own
        setpoint, so the hold sends no joint targets (``joint_targets`` None; ``target_pose`` is the
        measured pose, for previews only).
        """
        self.counters["holds"] += 1
        self.last_reason = reason
        target = self.last_commanded if self.last_commanded is not None else pose
        held_joints = self.last_commanded_joints if self.last_commanded is not None else None
        return Command(
            step,
            True,
            reason,
            np.array(target, dtype=np.float64),
            None if held_joints is None else np.array(held_joints, dtype=np.float64),
            None,
        )

    def hold_command(self, reason: str, pose: np.ndarray, joints: np.ndarray | None = None) -> Command:
        """A hold outside the control step (goal ended, deactivation, e-stop edge): the same setpoint."""
        return self._hold(-1, reason, pose, joints)

    def _resync(self, measured_pose: np.ndarray, joints: np.ndarray | None) -> None:
        self.last_commanded = np.array(measured_pose, dtype=np.float64)
        self.last_commanded_joints = None if joints is None else np.array(joints, dtype=np.float64)

    def tracking_error(self, measured_pose: np.ndarray) -> tuple[float, float]:
        """(metres, radians) between the setpoint and the measured pose; (0, 0) without a setpoint."""
        if self.last_commanded is None:
            return 0.0, 0.0
        translation = float(np.linalg.norm(measured_pose[:3, 3] - self.last_commanded[:3, 3]))
        _, angle = matrix_to_axis_angle(measured_pose[:3, :3] @ self.last_commanded[:3, :3].T)
        return translation, float(angle)

    def _within_cartesian_limits(
        self, measured_pose: np.ndarray, joints: np.ndarray, joint_targets: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray]:
        """Joint targets whose forward kinematics keeps the per-step and workspace limits.

        Clamping joints one by one (velocity) or an unconverged IK can move the end effector off the
        limited Cartesian target; the step toward the joint targets is halved until the resulting pose
        passes ``limit_pose`` unchanged. Returns (None, measured) when even a tiny step does not.
        """
        fraction = 1.0
        for _ in range(12):
            candidate = joints + fraction * (joint_targets - joints)
            pose = self.ik.fk(candidate)
            if not self.safety.violations(measured_pose, pose):
                return candidate, pose
            fraction *= 0.5
        return None, measured_pose

    def tick(
        self, now: float, measured_pose: np.ndarray, joints: np.ndarray | None = None, estop: bool = False
    ) -> Command:
        step = self.step_of(now)
        finite = bool(np.all(np.isfinite(measured_pose))) and (
            joints is None or bool(np.all(np.isfinite(joints)))
        )
        if finite and self.ik is not None and joints is not None:
            # one frame for everything: the IK model's FK of the measured joints is the measured pose
            measured_pose = self.ik.fk(joints)
        if estop:
            return self._hold(step, "e-stop", measured_pose, joints)
        if not finite:
            return self._hold(step, "robot state is not finite", measured_pose, joints)
        if self.last_chunk_time is None:
            return self._hold(step, self.stop_reason or "waiting for the first chunk", measured_pose, joints)
        if now - self.last_chunk_time > self.config.watchdog_timeout:
            if not self.last_reason.startswith("watchdog"):
                self.counters["watchdog_trips"] += 1
            self.counters["watchdog_holds"] += 1
            return self._hold(
                step,
                f"watchdog: no fresh chunk for {now - self.last_chunk_time:.3f} s",
                measured_pose,
                joints,
            )
        if self.config.mode == "ensemble":
            action = self.ensembler.action(step)
        else:
            action = self.streamer.action(step)
        if action is None:
            return self._hold(
                step, "no chunk covers this step (model too slow for the chunk length)", measured_pose, joints
            )
        try:
            robot_action = self.adapter.convert(action)
        except ValueError as exc:
            return self._hold(step, f"bad action: {exc}", measured_pose, joints)
        resynced = False
        translation_error, rotation_error = self.tracking_error(measured_pose)
        if (
            self._resync_on_next_motion
            or self.last_commanded is None
            or translation_error > self.config.max_tracking_error
            or rotation_error > self.config.max_tracking_rotation
        ):
            resynced = not self._resync_on_next_motion and self.last_commanded is not None
            if resynced:
                self.counters["resyncs"] += 1
            self._resync(measured_pose, joints)
            self._resync_on_next_motion = False
        reference = self.last_commanded
        reference_joints = self.last_commanded_joints if self.last_commanded_joints is not None else joints
        target = compose_delta(reference, robot_action)
        safe_pose, report = self.safety.limit_pose(reference, target)
        if report.held:
            return self._hold(step, report.hold_reason, measured_pose, joints)
        hits = list(report.hits)
        if resynced:
            hits.append("resync_tracking_error")
        joint_targets = None
        if self.ik is not None and joints is not None:
            solution = self.ik.solve(reference_joints, safe_pose)
            if not solution.converged:
                hits.append("ik_not_converged")
            joint_targets, joint_report = self.safety.limit_joints(
                reference_joints, solution.q, self.config.control_period
            )
            if joint_report.held:
                return self._hold(step, joint_report.hold_reason, measured_pose, joints)
            hits += joint_report.hits
            joint_targets, safe_pose = self._within_cartesian_limits(
                reference, reference_joints, joint_targets
            )
            if joint_targets is None:
                return self._hold(step, "IK solution leaves the Cartesian limits", measured_pose, joints)
        gripper, gripper_report = self.safety.limit_gripper(robot_action.gripper_opening)
        hits += gripper_report.hits
        if hits:
            self.counters["limit_hits"] += 1
        self.last_commanded = safe_pose
        if joint_targets is not None:
            self.last_commanded_joints = joint_targets
        self.last_reason = ""
        return Command(step, False, "", safe_pose, joint_targets, gripper, hits, action, resynced)
