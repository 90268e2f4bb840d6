"""Fuzz: malformed chunks, states and stamps into the executor core and the chunk trajectory planner.

A seeded numpy loop (reproducible, no shrinking needed: every failure prints its seed and iteration)
feeds NaN, inf, huge, negative, future and invalid-nanosec stamps, wrong sizes and absurd poses and
joints, mixed with well-formed traffic so the executor really moves. After every call it asserts that
nothing non-finite leaves the core and that every moving command keeps the safety invariants relative
to the setpoint it was built on: per-step translation / rotation, never further outside the workspace,
joint steps within max_joint_velocity * dt, never further outside the joint limits, gripper in range;
and that every hold repeats the last commanded setpoint exactly.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from internvla_core.embodiments import get_embodiment
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.input_checks import Stamp
from internvla_core.kinematics import IKSolver
from internvla_core.rotations import rpy_to_matrix
from internvla_core.safety import SafetyFilter, SafetyLimits
from internvla_core.status import StatusCode
from internvla_core.trajectory import anchored_points, plan_chunk_trajectory

LIMITS = SafetyLimits(
    workspace_min=(0.2, -0.4, 0.05),
    workspace_max=(0.7, 0.4, 0.7),
    max_translation_per_step=0.02,
    max_rotation_per_step=0.1,
    gripper_min=0.1,
    gripper_max=0.9,
)
PERIOD = 0.1
PANDA_HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
NASTY = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e6, -1e6, -5.0, 0.0, 1e-300])


def nasty_values(rng: np.random.Generator, shape) -> np.ndarray:
    """Mostly plausible actions, with a random fraction of the entries replaced by nasty values."""
    values = rng.normal(0.0, 0.02, size=shape) if rng.random() < 0.8 else rng.uniform(-10, 10, size=shape)
    if rng.random() < 0.5:
        mask = rng.random(shape) < rng.choice([0.01, 0.1, 1.0])
        values[mask] = rng.choice(NASTY, size=int(mask.sum()))
    return values


def nasty_chunk(rng: np.random.Generator, dim: int):
    kind = rng.random()
    if kind < 0.1:  # wrong sizes and ranks
        shapes = [(0, dim), (5, dim + 1), (5, dim - 1), (dim,), (2, 3, dim), (1, 1)]
        return nasty_values(rng, shapes[int(rng.integers(len(shapes)))])
    return nasty_values(rng, (int(rng.integers(1, 20)), dim))


def nasty_stamp(rng: np.random.Generator, now: float):
    kind = rng.integers(0, 10)
    if kind == 0:
        return float(rng.choice(NASTY))
    if kind == 1:  # a ROS stamp with an out-of-range nanosec or a negative sec
        return Stamp(
            int(rng.integers(-5, int(now) + 2)), int(rng.choice([1_000_000_000, 2**32 - 1, 999_999_999]))
        )
    if kind == 2:
        return now + float(rng.uniform(0.5, 1e4))  # the future
    if kind == 3:
        return now - float(rng.uniform(0.0, 1e4))  # the distant past
    sec, nanosec = divmod(int(round((now - rng.uniform(0, 0.3)) * 1e9)), 1_000_000_000)
    return Stamp(sec, nanosec) if kind < 6 else now - float(rng.uniform(0, 0.3))


def nasty_pose(rng: np.random.Generator) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = rpy_to_matrix(math.pi + rng.normal(0, 0.2), rng.normal(0, 0.2), rng.normal(0, 0.5))
    pose[:3, 3] = [0.45, 0.0, 0.4] + rng.normal(0, 0.05, 3) * rng.choice([1.0, 10.0])
    kind = rng.random()
    if kind < 0.05:
        pose[rng.integers(0, 4), rng.integers(0, 4)] = rng.choice(NASTY)
    elif kind < 0.08:
        pose[:3, :3] *= rng.choice([-1.0, 2.0])
    elif kind < 0.1:
        return pose[:3, :3]
    return pose


def nasty_joints(rng: np.random.Generator, setpoint: np.ndarray | None) -> np.ndarray:
    base = PANDA_HOME if setpoint is None or rng.random() < 0.2 else setpoint
    joints = base + rng.normal(0, 0.01, size=7)
    kind = rng.random()
    if kind < 0.05:
        joints[rng.integers(0, 7)] = rng.choice(NASTY)
    elif kind < 0.08:
        return joints[: int(rng.integers(0, 7))]
    elif kind < 0.1:
        joints = joints + rng.choice([-3.0, 3.0])
    return joints


def out_of(value: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.maximum(lo - value, 0.0) + np.maximum(value - hi, 0.0)


class Checker:
    """Asserts the invariants of each command against the setpoint it was built on."""

    def __init__(self, core: ExecutorCore) -> None:
        self.core = core
        self.safety = SafetyFilter(core.config.limits)
        self.moves = 0

    def measured(self, pose, joints) -> np.ndarray:
        core = self.core
        return core.ik.fk(np.asarray(joints, float)) if core.ik is not None else np.asarray(pose, float)

    def tick(self, now, pose, joints=None, **kw):
        core = self.core
        setpoint = None if core.last_commanded is None else core.last_commanded.copy()
        setpoint_joints = None if core.last_commanded_joints is None else core.last_commanded_joints.copy()
        core_was_fresh = core._resync_on_next_motion or setpoint is None
        cmd = core.tick(now, pose, joints, **kw)
        assert cmd.target_pose is None or (
            cmd.target_pose.shape == (4, 4) and np.all(np.isfinite(cmd.target_pose))
        )
        assert cmd.joint_targets is None or np.all(np.isfinite(cmd.joint_targets))
        assert cmd.gripper_opening is None or (
            LIMITS.gripper_min <= cmd.gripper_opening <= LIMITS.gripper_max
        )
        assert isinstance(cmd.status, StatusCode)
        if cmd.hold:
            assert cmd.gripper_opening is None
            if setpoint is not None and not np.array_equal(core.last_commanded, setpoint):
                # this tick re-synchronised to the measured state, then a limit refused the motion:
                # the hold is the new setpoint (the arm is there: holding the old one would pull it back)
                setpoint, setpoint_joints = self.measured(pose, joints), None if joints is None else joints
            if setpoint is not None:
                np.testing.assert_array_equal(cmd.target_pose, setpoint, err_msg=cmd.reason)
                if setpoint_joints is None:
                    assert cmd.joint_targets is None
                else:
                    np.testing.assert_array_equal(cmd.joint_targets, setpoint_joints)
            else:
                assert cmd.joint_targets is None
            return cmd
        self.moves += 1
        measured = self.measured(pose, joints)
        assert cmd.from_measured == (cmd.resynced or core_was_fresh), "from_measured"
        reference = measured if cmd.from_measured else setpoint
        assert self.safety.violations(reference, cmd.target_pose) == [], (reference, cmd.target_pose)
        if core.ik is not None:
            ref_q = np.asarray(joints, float) if cmd.from_measured else setpoint_joints
            step = np.abs(cmd.joint_targets - ref_q)
            assert np.all(step <= np.asarray(LIMITS.max_joint_velocity) * PERIOD + 1e-9)
            lo, hi = np.array(core.config.limits.joint_lower), np.array(core.config.limits.joint_upper)
            assert np.all(out_of(cmd.joint_targets, lo, hi) <= out_of(ref_q, lo, hi) + 1e-12)
            np.testing.assert_allclose(core.ik.fk(cmd.joint_targets), cmd.target_pose, atol=1e-9)
        return cmd


def fuzz(core: ExecutorCore, rng: np.random.Generator, iterations: int, with_ik: bool, plan: bool = False):
    checker = Checker(core)
    dim = core.embodiment.action_dim
    now, chunks = 0.0, 0
    for i in range(iterations):
        try:
            op = rng.random()
            if op < 0.45:  # a chunk: malformed, or well-formed now and then so the arm moves
                if rng.random() < 0.3:
                    chunk, stamp, header = rng.normal(0, 0.01, (10, dim)), now, None
                else:
                    chunk, stamp = nasty_chunk(rng, dim), nasty_stamp(rng, now)
                    header = None if rng.random() < 0.5 else nasty_stamp(rng, now)
                reason = core.add_chunk(chunk, stamp, now, header)
                chunks += 1
                assert isinstance(reason, str)
                continue
            if op < 0.47:
                core.stop("stop: fuzz")
                continue
            if op < 0.48:
                core.release_estop(input_active=bool(rng.random() < 0.3))
                continue
            if rng.random() < 0.9:
                now += PERIOD
            else:  # clock jitter, a jump, or a broken clock
                now += float(rng.choice([-PERIOD, 0.0, 5.0]))
            tick_now = now if rng.random() > 0.01 else float(rng.choice(NASTY[:3]))
            stamps = {}
            if rng.random() < 0.5:
                stamps["joints_stamp" if with_ik else "pose_stamp"] = nasty_stamp(rng, now)
            estop = bool(rng.random() < 0.01)
            if with_ik:
                joints = nasty_joints(rng, core.last_commanded_joints)
                good = joints.shape == (7,) and np.all(np.isfinite(joints))
                pose = core.ik.fk(joints) if good else np.eye(4)
                previous = core.last_commanded_joints
                cmd = checker.tick(tick_now, pose, joints, estop=estop, **stamps)
                if plan and not cmd.hold and cmd.joint_targets is not None:
                    check_plan(core, cmd, joints if cmd.from_measured else previous)
            else:
                checker.tick(tick_now, nasty_pose(rng), estop=estop, **stamps)
        except AssertionError as exc:
            raise AssertionError(f"iteration {i}: {exc}") from exc
    return checker.moves, chunks


def check_plan(core: ExecutorCore, first, previous) -> None:
    """The planner's trajectory keeps the same per-point limits and is finite everywhere."""
    safety = SafetyFilter(core.config.limits)
    trajectory = plan_chunk_trajectory(core, first, previous, max_points=12)
    assert trajectory is not None
    for array in (trajectory.positions, trajectory.velocities, trajectory.times):
        assert np.all(np.isfinite(array))
    vmax = np.asarray(LIMITS.max_joint_velocity) * PERIOD + 1e-9
    assert np.all(np.abs(np.diff(trajectory.positions, axis=0)) <= vmax)
    assert np.all(np.abs(trajectory.velocities) <= np.asarray(LIMITS.max_joint_velocity) + 1e-9)
    for a, b in zip(trajectory.poses, trajectory.poses[1:]):
        assert safety.violations(a, b) == []
    assert all(g is None or LIMITS.gripper_min <= g <= LIMITS.gripper_max for g in trajectory.grippers)
    _times, positions, velocities = anchored_points(trajectory, previous, None, PERIOD)
    assert np.all(np.isfinite(positions)) and np.all(np.isfinite(velocities))


def make(mode: str, embodiment: str, ik=None, limits: SafetyLimits = LIMITS) -> ExecutorCore:
    config = ExecutorConfig(
        mode=mode, control_period=PERIOD, watchdog_timeout=0.35, limits=limits, max_state_age=0.2
    )
    return ExecutorCore(get_embodiment(embodiment), config, ik)


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_without_ik_nothing_non_finite_or_outside_the_limits_leaves_the_core(seed):
    rng = np.random.default_rng(seed)
    start, total_moves, total_chunks = time.monotonic(), 0, 0
    for mode in ("chunk", "ensemble"):
        for embodiment in ("widowx_bridge", "franka_real", "google_robot"):
            moves, chunks = fuzz(make(mode, embodiment), rng, 2000, with_ik=False)
            total_moves, total_chunks = total_moves + moves, total_chunks + chunks
    assert total_chunks >= 5000 and total_moves > 500  # malformed traffic, and the arm still moved
    assert time.monotonic() - start < 30


def test_fuzz_with_ik_and_the_trajectory_planner():
    panda = IKSolver.panda()
    limits = SafetyLimits(
        workspace_min=LIMITS.workspace_min,
        workspace_max=LIMITS.workspace_max,
        max_translation_per_step=LIMITS.max_translation_per_step,
        max_rotation_per_step=LIMITS.max_rotation_per_step,
        gripper_min=LIMITS.gripper_min,
        gripper_max=LIMITS.gripper_max,
        joint_lower=tuple(panda.lower),
        joint_upper=tuple(panda.upper),
    )
    rng = np.random.default_rng(7)
    start = time.monotonic()
    moves, chunks = fuzz(make("chunk", "franka_real", panda, limits), rng, 1500, with_ik=True, plan=True)
    more, more_chunks = fuzz(make("ensemble", "franka_real", panda, limits), rng, 800, with_ik=True)
    assert chunks + more_chunks >= 900 and moves + more > 100
    assert time.monotonic() - start < 40
