"""The IK safety rule: configured joint limits narrow the model's, never widen them; where IK comes from."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from test_execution_settings import defaults

from internvla_core.embodiments import get_embodiment
from internvla_core.execution.robot_model import (
    build_core,
    install_ik,
    make_ik,
    narrowed_joint_limits,
    needs_description_topic,
)
from internvla_core.execution.settings import build_settings
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.kinematics import IKSolver


def test_configured_limits_narrow_but_never_widen_the_model_limits():
    lower, upper = narrowed_joint_limits([-1.0, -2.0], [1.0, 2.0], [-0.5, -3.0], [0.5, 3.0])
    assert lower == (-0.5, -2.0) and upper == (0.5, 2.0)


def test_empty_configured_limits_are_the_model_limits():
    assert narrowed_joint_limits([-1.0], [1.0]) == ((-1.0,), (1.0,))


def test_a_limit_list_of_the_wrong_length_is_refused_naming_it():
    with pytest.raises(ValueError, match="joint_lower needs 2 values"):
        narrowed_joint_limits([-1.0, -2.0], [1.0, 2.0], [0.0])


def test_installing_ik_makes_the_core_enforce_the_narrowed_limits():
    ik = IKSolver.panda()
    core = ExecutorCore(get_embodiment("franka_real"), ExecutorConfig(mode="chunk", control_period=0.05))
    upper = [0.001, *ik.upper[1:]]
    install_ik(core, ik, upper=upper)
    assert core.ik is ik and core.config.limits.joint_upper[0] == 0.001
    assert core.config.limits.joint_lower == tuple(ik.lower)
    home = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
    limited, report = core.safety.limit_joints(home, home + 0.01, dt=1.0)
    assert limited[0] == 0.001 and "joint_position" in report.hits  # the filter in use enforces them


def test_ik_sources_follow_the_robot_parameter():
    settings = build_settings({**defaults(), "embodiment": "franka_real"})
    ik, same = make_ik(settings)
    assert isinstance(ik, IKSolver) and same is settings
    urdf = replace(settings, robot="urdf")
    assert make_ik(urdf) == (None, urdf)  # the topic delivers it later
    assert needs_description_topic(urdf, "", "") and not needs_description_topic(urdf, "/x.urdf", "")
    assert make_ik(replace(settings, backend="servo")) == (None, replace(settings, backend="servo"))


def test_the_core_gets_the_ik_model_and_the_narrowed_limits_when_it_can_have_them_now():
    settings = build_settings({**defaults(), "embodiment": "franka_real"})
    core, _ = build_core(settings, upper=[0.001, 2.0, 2.0, 0.0, 2.0, 3.0, 2.0])
    assert isinstance(core.ik, IKSolver) and core.config.limits.joint_upper[0] == 0.001
    waiting, _ = build_core(replace(settings, robot="urdf"))  # the URDF comes with the topic
    assert waiting.ik is None and waiting.config.limits.joint_upper == ()


def test_a_robot_assets_robot_names_its_arm_joints_and_end_effector():
    settings = build_settings({**defaults(), "robot": "wx250s"})
    ik, described = make_ik(settings)
    assert described.arm_joints[0] == "waist" and len(described.arm_joints) == len(ik.lower)
