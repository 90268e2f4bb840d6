"""Executor settings from the node's parameter values: checked once on configure, read by every tick."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..embodiments import Embodiment, get_embodiment
from ..executor_core import ExecutorConfig
from ..safety import SafetyLimits
from ..servo import ServoConfig, distro_problem

BACKENDS = ("joint_trajectory", "servo")
TICK_SOURCES = ("timer", "state")
POSE_SOURCES = ("ee_pose", "tf")


@dataclass(frozen=True)
class ExecutorSettings:
    """What the node needs each tick, so the control tick does no parameter lookups."""

    embodiment: Embodiment
    config: ExecutorConfig
    backend: str
    tick_source: str
    dry_run: bool
    time_from_start: float  # single-point trajectories: the point's time [s]
    chunk_trajectory: bool  # chunk/rtc mode + joint_trajectory: one multi-point trajectory per chunk
    plan_budget: float  # share of a control period that planning a chunk trajectory may take per tick
    robot: str
    ee_frame: str
    arm_joints: tuple[str, ...]
    servo: ServoConfig | None = None  # backend servo: what MoveIt Servo expects
    pose_source: str = "ee_pose"  # measured pose without an IK model: ee_pose topic | tf
    warnings: tuple[str, ...] = ()  # to log once on configure

    @property
    def period(self) -> float:
        return self.config.control_period

    @property
    def mode(self) -> str:
        return self.config.mode

    @property
    def lockstep(self) -> bool:
        return self.tick_source == "state"


def build_settings(
    p: Mapping[str, Any],
    ros_distro: str = "",
    servo_interfaces: bool = True,
    tf_available: bool = True,
) -> ExecutorSettings:
    """Settings from the flat parameter values ``p``; ValueError naming every problem.

    ``servo_interfaces``: moveit_msgs is installed (Servo's command type can be switched);
    ``tf_available``: tf2_ros is installed (pose_source tf).
    """
    try:
        embodiment = get_embodiment(p["embodiment"])
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    backend, tick_source = p["backend"], p["tick_source"]
    if backend not in BACKENDS:
        raise ValueError(f"backend must be joint_trajectory or servo, got '{backend}'")
    if tick_source not in TICK_SOURCES:
        raise ValueError(f"tick_source must be timer or state, got '{tick_source}'")
    limits = SafetyLimits(
        workspace_min=tuple(p["workspace_min"]),
        workspace_max=tuple(p["workspace_max"]),
        max_translation_per_step=p["max_translation_per_step"],
        max_rotation_per_step=p["max_rotation_per_step"],
        max_joint_velocity=p["max_joint_velocity"],
        gripper_min=p["gripper_min"],
        gripper_max=p["gripper_max"],
    )
    config = ExecutorConfig(
        mode=p["mode"],
        control_period=1.0 / (p["control_rate_hz"] or embodiment.control_rate_hz),
        watchdog_timeout=p["watchdog_timeout"],
        blend_steps=p["seam_blend_steps"],
        seam_max_change=p["seam_max_change"],
        gripper_settle_steps=p["gripper_settle_steps"],
        execute_steps=p["execute_steps"],
        gripper_commit_steps=p["gripper_commit_steps"],
        ensemble_horizon=p["ensemble_horizon"] or None,
        warmup=p["embodiment_warmup"],
        limits=limits,
        max_state_age=p["max_state_age"],
        max_future_stamp=p["max_future_stamp"],
    )
    servo, warnings = None, ()
    if backend == "servo":
        servo, warnings = _servo_config(p, config, ros_distro, servo_interfaces, tf_available)
    return ExecutorSettings(
        embodiment=embodiment,
        config=config,
        backend=backend,
        tick_source=tick_source,
        dry_run=bool(p["dry_run"]),
        time_from_start=p["time_from_start"] or config.control_period,
        chunk_trajectory=bool(p["chunk_trajectory"])
        and config.mode in ("chunk", "rtc")
        and backend == "joint_trajectory",
        plan_budget=p["plan_budget"],
        robot=p["robot"],
        ee_frame=p["ee_frame"],
        arm_joints=tuple(p["arm_joints"]),
        servo=servo,
        pose_source=p["pose_source"],
        warnings=warnings,
    )


def _servo_config(
    p: Mapping[str, Any], config: ExecutorConfig, distro: str, interfaces: bool, tf_available: bool
) -> tuple[ServoConfig, tuple[str, ...]]:
    """Check what MoveIt Servo needs before anything is sent (ValueError says what to fix)."""
    servo = ServoConfig(
        command=p["servo_command"],
        planning_frame=p["servo_planning_frame"],
        ee_frame=p["ee_frame"],
        incoming_command_timeout=p["servo_incoming_command_timeout"],
        command_in_type=p["servo_command_in_type"],
        scale_linear=p["servo_scale_linear"],
        scale_rotational=p["servo_scale_rotational"],
    )
    problems = servo.problems(config.control_period)
    if distro_problem(distro):
        problems.append(distro_problem(distro))
    pose_source = p["pose_source"]
    if pose_source not in POSE_SOURCES:
        problems.append(f"pose_source must be ee_pose or tf, got '{pose_source}'")
    if pose_source == "tf" and not tf_available:
        problems.append("pose_source tf needs tf2_ros (a full ROS install); use ee_pose")
    if not interfaces and not p["dry_run"]:
        problems.append(
            "moveit_msgs is not installed: cannot switch Servo's command type nor read its status "
            "(use the Docker image, or dry_run:=true)"
        )
    if problems:
        raise ValueError("backend servo: " + "; ".join(problems))
    limits = config.limits
    warning = servo.speed_warning(
        limits.max_translation_per_step, limits.max_rotation_per_step, config.control_period
    )
    return servo, (warning,) if warning else ()
