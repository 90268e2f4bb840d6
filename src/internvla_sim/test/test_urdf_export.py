"""The Panda URDF exported from the simulator's MJCF has the simulator's kinematics and real link names."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")
pytest.importorskip("pinocchio")

from internvla_core.kinematics import IKSolver  # noqa: E402
from internvla_core.robot_assets import robot_description  # noqa: E402
from internvla_sim.env import SimEnv  # noqa: E402
from internvla_sim.scene import FRANKA  # noqa: E402
from internvla_sim.urdf_export import _rpy, urdf_from_mjcf  # noqa: E402


@pytest.fixture(scope="module")
def panda_urdf() -> str:
    return urdf_from_mjcf(robot_description("panda").path, FRANKA.base_body, FRANKA.tf_frame, "panda")


def test_exported_urdf_moves_the_hand_exactly_like_the_simulator(panda_urdf):
    ik = IKSolver.from_urdf_string(panda_urdf, "panda_hand", list(FRANKA.arm_joints))
    env = SimEnv("red_on_plate", seed=0, width=64, height=48, wrist=False, robot="franka")
    rng = np.random.default_rng(4)
    for _ in range(5):
        q = np.array(FRANKA.home) + rng.uniform(-0.6, 0.6, len(FRANKA.arm_joints))
        env.data.qpos[env._arm_qpos] = q
        mujoco.mj_forward(env.model, env.data)
        np.testing.assert_allclose(ik.fk(q), env.hand_pose(), atol=1e-7)
    env.close()


def test_exported_urdf_names_links_like_franka_description_and_joints_like_joint_states(panda_urdf):
    robot = ET.fromstring(panda_urdf)
    links = {link.get("name") for link in robot.iter("link")}
    joints = {j.get("name"): j for j in robot.iter("joint")}
    assert {f"panda_link{i}" for i in range(8)} | {
        "panda_hand",
        "panda_leftfinger",
        "panda_rightfinger",
    } == links
    assert all(joints[name].get("type") == "revolute" for name in FRANKA.arm_joints)
    assert joints["finger_joint1"].get("type") == "prismatic"
    limit = joints["joint1"].find("limit")
    assert float(limit.get("lower")) == pytest.approx(-2.8973) and float(limit.get("upper")) == pytest.approx(
        2.8973
    )
    meshes = [m.get("filename") for m in robot.iter("mesh")]
    assert meshes and all(m.startswith("file://") and Path(m[len("file://") :]).is_file() for m in meshes)


def _urdf_rotation(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF's rpy: fixed axes, roll about x first, then pitch about y, then yaw about z."""
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.mark.parametrize("seed", range(20))
def test_rpy_of_a_quaternion_rebuilds_the_same_rotation(seed):
    quat = np.random.default_rng(seed).normal(size=4)  # any unnormalised quaternion (w, x, y, z)
    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, quat / np.linalg.norm(quat))
    np.testing.assert_allclose(_urdf_rotation(*_rpy(quat)), matrix.reshape(3, 3), atol=1e-9)
