"""The IK model the executor commands with, and the joint limits it enforces (never wider than the model's).

Sources, in the order the ``robot`` parameter chooses them: the bundled Panda; a URDF (``urdf_path``, the
``robot_description`` parameter, else the ``robot_description`` topic later); or a robot known to
``internvla_core.robot_assets`` (which also names the arm joints and the end-effector frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..executor_core import ExecutorCore
from ..safety import SafetyFilter
from .settings import ExecutorSettings


def needs_description_topic(settings: ExecutorSettings, urdf_path: str, robot_description: str) -> bool:
    """IK waits for the URDF on the robot_description topic (nothing to build it from on configure)."""
    return (
        settings.backend == "joint_trajectory"
        and settings.robot == "urdf"
        and not urdf_path
        and not robot_description
    )


def make_ik(settings: ExecutorSettings, urdf_path: str = "", robot_description: str = ""):
    """(IK model or None, settings): None when the URDF comes from the topic later (or backend servo).

    A ``robot_assets`` robot replaces ``arm_joints`` and ``ee_frame`` with those its description names.
    """
    if settings.backend != "joint_trajectory":
        return None, settings
    from ..kinematics import IKSolver

    robot, joints, frame = settings.robot, list(settings.arm_joints), settings.ee_frame
    if robot == "panda":
        return IKSolver.panda(), settings
    if robot == "urdf":
        if urdf_path:
            return IKSolver.from_urdf_file(urdf_path, frame, joints), settings
        if robot_description:
            return IKSolver.from_urdf_string(robot_description, frame, joints), settings
        return None, settings
    try:
        from ..robot_assets import robot_description as described
    except ImportError as exc:
        raise ValueError(
            f"robot '{robot}' needs internvla_core.robot_assets ({exc}); use robot:=panda or robot:=urdf"
        ) from None
    desc = described(robot)
    settings = replace(settings, arm_joints=tuple(desc.arm_joints), ee_frame=desc.ee_frame)
    return IKSolver.from_description(desc), settings


def build_core(
    settings: ExecutorSettings,
    urdf_path: str = "",
    robot_description: str = "",
    lower: Sequence[float] = (),
    upper: Sequence[float] = (),
) -> tuple[ExecutorCore, ExecutorSettings]:
    """The executor core for ``settings``, with its IK model when one can be built now."""
    core = ExecutorCore(settings.embodiment, settings.config, None)
    ik, settings = make_ik(settings, urdf_path, robot_description)
    if ik is not None:
        install_ik(core, ik, lower, upper)
    return core, settings


def ik_from_urdf(settings: ExecutorSettings, urdf: str):
    """IK from URDF text (the robot_description topic) for the configured frame and joints."""
    from ..kinematics import IKSolver

    return IKSolver.from_urdf_string(urdf, settings.ee_frame, list(settings.arm_joints))


def narrowed_joint_limits(
    model_lower: Sequence[float],
    model_upper: Sequence[float],
    lower: Sequence[float] = (),
    upper: Sequence[float] = (),
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The limits enforced: the configured ones, never wider than the model's; empty = the model's.

    ValueError when a configured list does not have one value per arm joint.
    """
    result = []
    for name, model, configured, tighter in (
        ("joint_lower", model_lower, lower, max),
        ("joint_upper", model_upper, upper, min),
    ):
        model, configured = tuple(float(v) for v in model), list(configured)
        if not configured:
            result.append(model)
            continue
        if len(configured) != len(model):
            raise ValueError(f"{name} needs {len(model)} values (one per arm joint)")
        result.append(tuple(tighter(float(a), b) for a, b in zip(configured, model)))
    return result[0], result[1]


def install_ik(core: ExecutorCore, ik, lower: Sequence[float] = (), upper: Sequence[float] = ()) -> None:
    """From now on ``core`` commands through ``ik`` within its (narrowed) joint position limits."""
    joint_lower, joint_upper = narrowed_joint_limits(ik.lower, ik.upper, lower, upper)
    limits = replace(core.config.limits, joint_lower=joint_lower, joint_upper=joint_upper)
    core.config = replace(core.config, limits=limits)
    core.safety = SafetyFilter(limits)
    core.ik = ik
