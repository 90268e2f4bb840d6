"""The chunk executor's logic without ROS: chunks in, one bounded command per control step out.

Per control step (``tick``): pick the action for this step (``ensemble``: adaptive ensemble over the
chunks of the last H observation steps, upstream's way; ``chunk``: stream the newest chunk, skipping
stale rows and blending the seam), convert it with the embodiment's adapter, apply the delta to the
reference pose (measured pose in the base frame; last commanded pose for tool-frame embodiments),
limit it (workspace, per-step translation/rotation), solve IK and limit the joints (position,
velocity), then check the FK of the joint targets against the Cartesian limits again (shrinking the
joint step if needed), so no command moves the end effector more than the per-step limits. Anything wrong — e-stop, no fresh chunk within the watchdog timeout, NaN, a chunk that ran
out — yields a HOLD command at the measured state with the reason.

Time is in seconds on whatever clock the node uses (sim time in simulation); control steps are
counted from ``reset(start_time)`` so chunk rows line up with steps across inference latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .embodiments import Embodiment, compose_delta
from .ensemble import TimedEnsembler
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
        }
        self.reset(0.0)

    def reset(self, start_time: float) -> None:
        self.start_time = float(start_time)
        self.adapter = self.embodiment.make_adapter(warmup=self.config.warmup)
        horizon = self.config.ensemble_horizon or self.embodiment.ensemble_horizon
        self.ensembler = TimedEnsembler(horizon, self.config.alpha)
        self.streamer = self._make_streamer()
        self.last_chunk_time: float | None = None
        self.last_commanded: np.ndarray | None = None
        self.last_reason = ""
        self.stop_reason = ""

    def stop(self, reason: str) -> None:
        """Drop every buffered chunk: the next ticks hold until a new chunk arrives (goal ended)."""
        horizon = self.config.ensemble_horizon or self.embodiment.ensemble_horizon
        self.ensembler = TimedEnsembler(horizon, self.config.alpha)
        self.streamer = self._make_streamer()
        self.last_chunk_time = None
        self.stop_reason = reason

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
        self.counters["holds"] += 1
        self.last_reason = reason
        self.last_commanded = None  # after a hold, tool-frame deltas start again from the measured pose
        return Command(
            step,
            True,
            reason,
            np.array(pose, dtype=np.float64),
            None if joints is None else np.array(joints),
            None,
        )

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
        if estop:
            return self._hold(step, "e-stop", measured_pose, joints)
        if not np.all(np.isfinite(measured_pose)) or (joints is not None and not np.all(np.isfinite(joints))):
            return self._hold(step, "robot state is not finite", measured_pose, joints)
        if self.ik is not None and joints is not None:
            # one frame for everything: the IK model's FK of the measured joints is the measured pose
            measured_pose = self.ik.fk(joints)
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
        reference = measured_pose
        if robot_action.frame == "tool" and self.last_commanded is not None:
            reference = self.last_commanded
        target = compose_delta(reference, robot_action)
        safe_pose, report = self.safety.limit_pose(measured_pose, target)
        if report.held:
            return self._hold(step, report.hold_reason, measured_pose, joints)
        hits = list(report.hits)
        joint_targets = None
        if self.ik is not None and joints is not None:
            solution = self.ik.solve(joints, safe_pose)
            if not solution.converged:
                hits.append("ik_not_converged")
            joint_targets, joint_report = self.safety.limit_joints(
                joints, solution.q, self.config.control_period
            )
            if joint_report.held:
                return self._hold(step, joint_report.hold_reason, measured_pose, joints)
            hits += joint_report.hits
            joint_targets, safe_pose = self._within_cartesian_limits(measured_pose, joints, joint_targets)
            if joint_targets is None:
                return self._hold(step, "IK solution leaves the Cartesian limits", measured_pose, joints)
        gripper, gripper_report = self.safety.limit_gripper(robot_action.gripper_opening)
        hits += gripper_report.hits
        if hits:
            self.counters["limit_hits"] += 1
        self.last_commanded = safe_pose
        self.last_reason = ""
        return Command(step, False, "", safe_pose, joint_targets, gripper, hits, action)
