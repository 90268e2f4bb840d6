"""The chunk executor's logic without ROS: chunks in, one bounded command per control step out.

Per control step (``tick``): pick the action for this step (``ensemble``: adaptive ensemble over the
chunks of the last H observation steps, upstream's way; ``chunk``: stream the newest chunk, skipping
stale rows and blending the seam; ``rtc``: stream the newest chunk, skipping stale rows, with no blending
nor seam rate limit, for chunks made with real-time chunking, ``internvla_core.rtc``), convert it with the embodiment's adapter, apply the delta to the
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

Input sanity (``input_checks``): a robot state that is NaN / inf / absurd / of the wrong size, or whose
stamp is older than ``max_state_age``, holds with the input named (status INVALID_STATE / STALE_STATE);
a chunk with a bad shape or values, an invalid stamp, a stamp more than ``max_future_stamp`` ahead of the
clock, an observation stamp after its header stamp, or (chunk mode) older than the chunk being executed
is refused and counted per reason (``rejected_<reason>``). A refused chunk changes nothing: it neither
feeds the watchdog nor displaces the chunk being executed. Every command carries a ``status`` code
(``status.StatusCode``). The e-stop latches: ``tick(estop=True)`` or ``latch_estop`` hold until
``release_estop`` (not when the e-stop input turns false), and the next motion starts from a new chunk.

Time is in seconds on whatever clock the node uses (sim time in simulation); control steps are
counted from ``reset(start_time)`` so chunk rows line up with steps across inference latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .embodiments import Embodiment, compose_delta
from .ensemble import TimedEnsembler
from .input_checks import CHUNK_REJECTIONS, StampLike, check_chunk, check_state
from .rotations import matrix_to_axis_angle
from .safety import SafetyFilter, SafetyLimits
from .scheduling import ChunkStreamer, GripperCommitment
from .status import StatusCode

STEP_TOLERANCE = 1e-6  # of a control period: float noise in stamps never changes a step (see step_of)


@dataclass(frozen=True)
class ExecutorConfig:
    mode: str = "ensemble"  # "ensemble" (upstream), "chunk" or "rtc" (chunk streaming, no blending)
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
    # robot state older than this [s] holds (only where the caller gives its stamps)
    max_state_age: float = 0.5
    # chunk (and state) stamps further than this [s] ahead of the clock are refused
    max_future_stamp: float = 0.5
    # control steps the arm holds its setpoint after the gripper command changes (open <-> closed), the
    # fingers moving meanwhile, as a blocking gripper action makes an arm wait; 0 = off (on the simulated
    # pick_green it did not raise success: TRAINING.md, eighth round)
    gripper_settle_steps: int = 0
    # chunk mode: rows of a chunk executed before a newer chunk may replace it (the action horizon of
    # Diffusion Policy / ACT); 0 = switch to each new chunk at once. Lock-step waits for a fresh chunk
    # only where the switch is due (scheduling.ChunkStreamer)
    execute_steps: int = 0
    # ensemble mode: after a change of the gripper decision, this many actions come from the chunk that
    # made it, un-ensembled (scheduling.GripperCommitment); 0 = off
    gripper_commit_steps: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("ensemble", "chunk", "rtc"):
            raise ValueError(f"mode must be 'ensemble', 'chunk' or 'rtc', got '{self.mode}'")
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
        if not (self.max_state_age > 0 and self.max_future_stamp >= 0):
            raise ValueError("max_state_age must be > 0 and max_future_stamp >= 0")
        if self.gripper_settle_steps < 0:
            raise ValueError("gripper_settle_steps must be >= 0 (0 = off)")
        if self.execute_steps < 0:
            raise ValueError("execute_steps must be >= 0 (0 = switch to each new chunk at once)")
        if self.gripper_commit_steps < 0:
            raise ValueError("gripper_commit_steps must be >= 0 (0 = off)")
        if self.gripper_commit_steps > 0 and self.mode != "ensemble":
            raise ValueError(
                f"gripper_commit_steps applies to mode 'ensemble' only (mode is '{self.mode}'); chunk mode "
                "commits to whole chunks with execute_steps"
            )
        if self.execute_steps > 0 and self.mode != "chunk":
            raise ValueError(
                f"execute_steps applies to mode 'chunk' only (mode is '{self.mode}'): ensemble re-plans "
                "every step by design and rtc's frozen rows assume each chunk takes over at once"
            )


@dataclass
class Command:
    step: int
    hold: bool
    reason: str
    # 4x4, base frame; None only on a hold before any command while the measured pose is invalid
    target_pose: np.ndarray | None
    joint_targets: np.ndarray | None  # arm joints, or None without IK
    gripper_opening: float | None  # 0..1, None = leave as is
    hits: list[str] = field(default_factory=list)
    action: np.ndarray | None = None  # the model action executed (un-normalised)
    resynced: bool = False  # the setpoint was re-taken from the measured state on this step
    status: StatusCode = StatusCode.OK
    # built on the measured state (first command, goal start, re-sync), not on the previous setpoint
    from_measured: bool = False


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
            "stale_state_holds": 0,
            "invalid_state_holds": 0,
            "estops": 0,
            **{f"rejected_{reason}": 0 for reason in CHUNK_REJECTIONS},
        }
        self.estop_latched = False  # survives reset (re-activation): only release_estop clears it
        self.last_rejection = ""
        self.reset(0.0)

    def reset(self, start_time: float) -> None:
        self.start_time = float(start_time)
        self.adapter = self.embodiment.make_adapter(warmup=self.config.warmup)
        horizon = self.config.ensemble_horizon or self.embodiment.ensemble_horizon
        self.ensembler = TimedEnsembler(horizon, self.config.alpha)
        self.streamer = self._make_streamer()
        gripper = self.embodiment.dimension_names.index("gripper")
        self.commitment = GripperCommitment(self.config.gripper_commit_steps, gripper)
        self.last_chunk_time: float | None = None
        self.last_commanded: np.ndarray | None = None  # setpoint pose (4x4, base frame)
        self.last_commanded_joints: np.ndarray | None = None  # setpoint joint targets (with IK)
        self.last_reason = ""
        self.stop_reason = ""
        self._resync_on_next_motion = True
        self._gripper_closed: bool | None = None  # the last gripper command sent, as closed (< 0.5) or not
        self._settle_left = 0  # ticks the arm still holds after a gripper change (gripper_settle_steps)

    def latch_estop(self) -> bool:
        """Latch the e-stop (every tick holds until ``release_estop``); True when it was not latched."""
        if self.estop_latched:
            return False
        self.estop_latched = True
        self.counters["estops"] += 1
        return True

    def release_estop(self, input_active: bool = False) -> str:
        """Release a latched e-stop; returns '' or why not (the e-stop input still asserted).

        Buffered chunks are dropped: motion resumes only with a chunk that arrives after the release,
        from the measured pose.
        """
        if input_active:
            return "the estop input is still true: release it first"
        if self.estop_latched:
            self.estop_latched = False
            self.stop("e-stop released: waiting for a new chunk")
        return ""

    def stop(self, reason: str) -> None:
        """Drop every buffered chunk: the next ticks hold until a new chunk arrives (goal ended)."""
        horizon = self.config.ensemble_horizon or self.embodiment.ensemble_horizon
        self.ensembler = TimedEnsembler(horizon, self.config.alpha)
        self.streamer = self._make_streamer()
        self.commitment.reset()
        self.last_chunk_time = None
        self.stop_reason = reason
        self._resync_on_next_motion = True  # the next goal starts from where the arm is

    def _gripper_settling(self, opening: float | None) -> bool:
        """True while the arm holds after a change of the gripper command (``gripper_settle_steps``): the
        change itself starts the count, and each call during it uses one step."""
        if opening is not None:
            closed = opening < 0.5
            if self._gripper_closed is not None and closed != self._gripper_closed:
                self._settle_left = self.config.gripper_settle_steps
            self._gripper_closed = closed
        if self._settle_left > 0:
            self._settle_left -= 1
            return True
        return False

    def _make_streamer(self) -> ChunkStreamer:
        gripper = self.embodiment.dimension_names.index("gripper")
        if self.config.mode == "rtc":  # the policy froze the rows executed while it inferred: trust them
            return ChunkStreamer(0, None, discrete_dims=(gripper,))
        limit = None
        if self.config.seam_max_change > 0:
            limit = np.full(self.embodiment.action_dim, self.config.seam_max_change)
            limit[gripper] = np.inf
        return ChunkStreamer(
            self.config.blend_steps, limit, discrete_dims=(gripper,), execute_steps=self.config.execute_steps
        )

    def chunk_due(self, t: float) -> bool:
        """True when the action for the step of time ``t`` needs a chunk newer than the running one: every
        step in ensemble mode; in chunk mode with ``execute_steps`` once the running chunk's commitment
        ended or with none running; never in the chunk modes without it (they stream what arrived).
        Lock-step waits for the chunk of that observation where this holds."""
        if self.config.mode == "ensemble":
            return True
        # without a commitment the chunk modes stream whatever arrived: they never wait
        return self.config.execute_steps > 0 and self.streamer.switch_due(self.step_of(t))

    def step_of(self, t: float) -> int:
        """The control step of time ``t``: the nearest multiple of the period after ``start_time``.

        Stamps that lie half a period off the start (5 Hz steps at 0.1, 0.3, 0.5 s after an activation at
        0.0) sit exactly on the rounding boundary, where the same instant reached through different float
        paths (a message stamp vs. a clock reading: 0.3 vs 0.30000000000000004) rounded to different
        steps: the chunk of observation 0.3 then covered step 1 while the tick at 0.3 asked for step 2,
        and every other action of a 5 Hz episode was lost. A tolerance far below any real time
        difference puts both on the same side.
        """
        return int(math.floor((t - self.start_time) / self.config.control_period + 0.5 + STEP_TOLERANCE))

    def reject_chunk(self, reason: str, message: str) -> str:
        """Count a refused chunk under ``rejected_<reason>`` (``input_checks.CHUNK_REJECTIONS``)."""
        if reason not in CHUNK_REJECTIONS:
            raise ValueError(f"unknown rejection reason '{reason}'")
        self.counters["rejected_chunks"] += 1
        self.counters[f"rejected_{reason}"] += 1
        self.last_rejection = f"{reason}: {message}"
        return message

    def add_chunk(
        self,
        chunk: np.ndarray,
        observation_time: StampLike,
        now: float,
        header_time: StampLike | None = None,
    ) -> str:
        """Store a chunk computed from the observation at ``observation_time``; returns '' or why it was refused.

        ``header_time``: when the chunk was produced (its header stamp; None or a zero Stamp = not given).
        A refused chunk changes nothing but the counters.
        """
        check = check_chunk(
            chunk,
            self.embodiment.action_dim,
            observation_time,
            now,
            self.config.max_future_stamp,
            header_time,
        )
        if not check.ok:
            return self.reject_chunk(check.reason, check.message)
        chunk = check.chunk
        obs_step, now_step = self.step_of(check.observation_time), self.step_of(now)
        current = self.streamer.current_start if self.streamer.current is not None else None
        if self.config.mode != "ensemble" and current is not None and obs_step < current:
            return self.reject_chunk(
                "out_of_order", f"observation step {obs_step} is older than the executed chunk's ({current})"
            )
        if self.config.mode == "ensemble":
            self.ensembler.add(chunk, obs_step)
        else:
            self.streamer.add(chunk, obs_step, now_step)
        self.last_chunk_time = now
        self.stop_reason = ""
        self.counters["chunks"] += 1
        return ""

    def _hold(
        self,
        step: int,
        reason: str,
        pose: np.ndarray,
        joints: np.ndarray | None,
        status: StatusCode = StatusCode.HOLDING,
    ) -> Command:
        """Hold the last commanded setpoint; with none yet, command nothing at all.

        Never re-commands what is measured: a position-controlled arm sits a little below its target
        under gravity, so each re-commanded measurement lets it sink further (0.20 m in 22 s in our
        simulator). Before this executor has commanded anything the controller still holds its own
        setpoint, so the hold sends no joint targets (``joint_targets`` None; ``target_pose`` is the
        measured pose, for previews only).
        """
        self.counters["holds"] += 1
        self.last_reason = reason
        if self.last_commanded is not None:
            target = np.array(self.last_commanded, dtype=np.float64)
        else:  # measured pose, for previews only: none when it is not a finite 4x4
            target = np.array(pose, dtype=np.float64) if _finite_pose(pose) else None
        held_joints = self.last_commanded_joints if self.last_commanded is not None else None
        return Command(
            step,
            True,
            reason,
            target,
            None if held_joints is None else np.array(held_joints, dtype=np.float64),
            None,
            status=status,
        )

    def hold_command(
        self,
        reason: str,
        pose: np.ndarray,
        joints: np.ndarray | None = None,
        status: StatusCode = StatusCode.HOLDING,
    ) -> Command:
        """A hold outside the control step (goal ended, deactivation, e-stop edge): the same setpoint."""
        return self._hold(-1, reason, pose, joints, status)

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

    def _joint_bounds(self) -> tuple | None:
        limits = self.config.limits
        if limits.joint_lower:
            return limits.joint_lower, limits.joint_upper
        if self.ik is not None:
            return self.ik.lower, self.ik.upper
        return None

    def tick(
        self,
        now: float,
        measured_pose: np.ndarray,
        joints: np.ndarray | None = None,
        estop: bool = False,
        joints_stamp: StampLike | None = None,
        pose_stamp: StampLike | None = None,
    ) -> Command:
        """One control step. ``joints_stamp`` / ``pose_stamp``: the stamps of the state used (None = not
        age-checked); ``estop`` True latches the e-stop (see ``release_estop``)."""
        step = self.step_of(now) if math.isfinite(now) else -1
        if estop:
            self.latch_estop()
        if self.estop_latched:
            return self._hold(step, "e-stop", measured_pose, joints, StatusCode.ESTOP)
        state = check_state(
            now,
            measured_pose,
            joints,
            joint_count=None if self.ik is None or joints is None else len(self.ik.arm_joints),
            joint_bounds=self._joint_bounds() if joints is not None else None,
            joints_stamp=joints_stamp,
            pose_stamp=pose_stamp,
            max_state_age=self.config.max_state_age,
            max_future_stamp=self.config.max_future_stamp,
        )
        if not state.ok:
            stale = state.code == "stale_state"
            self.counters["stale_state_holds" if stale else "invalid_state_holds"] += 1
            code = StatusCode.STALE_STATE if stale else StatusCode.INVALID_STATE
            return self._hold(step, state.message, measured_pose, joints, code)
        measured_pose = np.asarray(measured_pose, dtype=np.float64)
        if joints is not None:
            joints = np.asarray(joints, dtype=np.float64)
        if self.ik is not None and joints is not None:
            # one frame for everything: the IK model's FK of the measured joints is the measured pose
            measured_pose = self.ik.fk(joints)
        if self.last_chunk_time is None:
            code = StatusCode.ABORTED if self.stop_reason.startswith("abort") else StatusCode.HOLDING
            reason = self.stop_reason or "waiting for the first chunk"
            return self._hold(step, reason, measured_pose, joints, code)
        if now - self.last_chunk_time > self.config.watchdog_timeout:
            if not self.last_reason.startswith("watchdog"):
                self.counters["watchdog_trips"] += 1
            self.counters["watchdog_holds"] += 1
            return self._hold(
                step,
                f"watchdog: no fresh chunk for {now - self.last_chunk_time:.3f} s",
                measured_pose,
                joints,
                StatusCode.WATCHDOG,
            )
        if self.config.mode == "ensemble":
            action = self.commitment.action(step, self.ensembler.action(step), self.ensembler.newest())
        else:
            action = self.streamer.action(step)
        if action is None:
            return self._hold(
                step, "no chunk covers this step (model too slow for the chunk length)", measured_pose, joints
            )
        try:
            robot_action = self.adapter.convert(action)
        except ValueError as exc:
            return self._hold(step, f"bad action: {exc}", measured_pose, joints, StatusCode.LIMIT_HOLD)
        resynced = from_measured = False
        translation_error, rotation_error = self.tracking_error(measured_pose)
        if (
            self._resync_on_next_motion
            or self.last_commanded is None
            or translation_error > self.config.max_tracking_error
            or rotation_error > self.config.max_tracking_rotation
        ):
            resynced = not self._resync_on_next_motion and self.last_commanded is not None
            from_measured = True
            if resynced:
                self.counters["resyncs"] += 1
            self._resync(measured_pose, joints)
            self._resync_on_next_motion = False
        reference = self.last_commanded
        reference_joints = self.last_commanded_joints if self.last_commanded_joints is not None else joints
        if self._gripper_settling(robot_action.gripper_opening):
            # the setpoint again with the new gripper command: not a HOLD, which leaves the gripper as is
            gripper, _ = self.safety.limit_gripper(robot_action.gripper_opening)
            self.last_reason = ""  # a command, not a hold: the next watchdog hold is a new trip
            return Command(
                step, False, "gripper settling", reference, reference_joints, gripper, [], action,
                resynced, StatusCode.OK, from_measured,
            )  # fmt: skip
        target = compose_delta(reference, robot_action)
        safe_pose, report = self.safety.limit_pose(reference, target)
        if report.held:
            return self._hold(step, report.hold_reason, measured_pose, joints, StatusCode.LIMIT_HOLD)
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
                return self._hold(
                    step, joint_report.hold_reason, measured_pose, joints, StatusCode.LIMIT_HOLD
                )
            hits += joint_report.hits
            joint_targets, safe_pose = self._within_cartesian_limits(
                reference, reference_joints, joint_targets
            )
            if joint_targets is None:
                return self._hold(
                    step,
                    "IK solution leaves the Cartesian limits",
                    measured_pose,
                    joints,
                    StatusCode.LIMIT_HOLD,
                )
        gripper, gripper_report = self.safety.limit_gripper(robot_action.gripper_opening)
        hits += gripper_report.hits
        if hits:
            self.counters["limit_hits"] += 1
        self.last_commanded = safe_pose
        if joint_targets is not None:
            self.last_commanded_joints = joint_targets
        self.last_reason = ""
        status = StatusCode.OK
        if resynced:
            status = StatusCode.RESYNCED
        elif hits:
            status = StatusCode.LIMIT_CLIPPED
        return Command(
            step, False, "", safe_pose, joint_targets, gripper, hits, action, resynced, status, from_measured
        )


def _finite_pose(pose) -> bool:
    try:
        array = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return array.shape == (4, 4) and bool(np.all(np.isfinite(array)))
