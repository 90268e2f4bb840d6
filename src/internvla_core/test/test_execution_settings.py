"""Executor settings from parameter values: derived values, and every refusal naming what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from internvla_core.execution.settings import build_settings

SCHEMA = Path(__file__).resolve().parents[2] / "internvla_policy/internvla_policy/params/chunk_executor.yaml"


def defaults() -> dict:
    """The executor's schema defaults (its single source), flat."""
    spec = yaml.safe_load(SCHEMA.read_text())["chunk_executor"]
    return {name: leaf["default_value"] for name, leaf in spec.items()}


SERVO = {
    "embodiment": "franka_real",
    "mode": "chunk",
    "backend": "servo",
    "servo_planning_frame": "fr3_link0",
    "ee_frame": "fr3_hand_tcp",
    "servo_incoming_command_timeout": 0.25,
    "dry_run": True,
}


def test_schema_defaults_give_the_embodiment_rate_and_one_period_points():
    settings = build_settings(defaults())
    assert settings.embodiment.name == "widowx_bridge"
    assert settings.period == pytest.approx(1.0 / settings.embodiment.control_rate_hz)
    assert settings.time_from_start == settings.period and settings.dry_run
    assert not settings.chunk_trajectory  # ensemble mode streams one command per tick
    assert settings.arm_joints == tuple(f"joint{i}" for i in range(1, 8))
    assert settings.config.gripper_settle_steps == 0  # off unless asked for
    assert build_settings({**defaults(), "gripper_settle_steps": 6}).config.gripper_settle_steps == 6
    assert settings.config.execute_steps == 0  # chunk mode switches to each new chunk unless asked
    committed = build_settings({**defaults(), "mode": "chunk", "execute_steps": 8})
    assert committed.config.execute_steps == 8
    assert settings.config.ensemble_horizon is None  # 0: the embodiment's H
    assert build_settings({**defaults(), "ensemble_horizon": 8}).config.ensemble_horizon == 8


def test_chunk_trajectory_only_in_chunk_modes_with_the_joint_trajectory_backend():
    base = {**defaults(), "embodiment": "franka_real", "control_rate_hz": 20.0}
    assert build_settings({**base, "mode": "chunk"}).chunk_trajectory
    assert build_settings({**base, "mode": "rtc"}).chunk_trajectory
    assert not build_settings({**base, "mode": "chunk", "chunk_trajectory": False}).chunk_trajectory
    servo = build_settings({**base, **SERVO, "control_rate_hz": 10.0}, ros_distro="jazzy")
    assert not servo.chunk_trajectory and servo.servo.planning_frame == "fr3_link0"


@pytest.mark.parametrize(
    "change, words",
    [
        ({"backend": "moveit"}, "backend must be"),
        ({"tick_source": "clock"}, "tick_source must be"),
        ({"embodiment": "ur5"}, "ur5"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(change, words):
    with pytest.raises(ValueError, match=words):
        build_settings({**defaults(), **change})


@pytest.mark.parametrize(
    "change, distro, interfaces, words",
    [
        ({"servo_incoming_command_timeout": 0.1}, "jazzy", True, "incoming_command_timeout"),
        ({"servo_planning_frame": ""}, "jazzy", True, "planning"),
        ({"pose_source": "odometry"}, "jazzy", True, "pose_source must be"),
        ({}, "humble", True, "umble"),
        ({"dry_run": False}, "jazzy", False, "moveit_msgs is not installed"),
    ],
)
def test_servo_refuses_what_servo_would_refuse_or_halt_on(change, distro, interfaces, words):
    with pytest.raises(ValueError, match=words):
        build_settings({**defaults(), **SERVO, **change}, ros_distro=distro, servo_interfaces=interfaces)


def test_servo_dry_run_needs_no_moveit_msgs_and_tf_needs_tf2():
    assert build_settings({**defaults(), **SERVO}, ros_distro="jazzy", servo_interfaces=False).servo
    with pytest.raises(ValueError, match="tf2_ros"):
        build_settings({**defaults(), **SERVO, "pose_source": "tf"}, ros_distro="jazzy", tf_available=False)
