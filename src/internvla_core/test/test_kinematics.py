"""pinocchio IK: FK/IK round trips on the bundled Panda and on a URDF, joint limits, clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from internvla_core.kinematics import IKSolver, panda_mjcf_path, pose_error
from internvla_core.rotations import rpy_to_matrix

PANDA_HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])

# planar-ish 3-joint arm: base yaw, shoulder pitch, elbow pitch; tool 0.3 m beyond the elbow
THREE_LINK_URDF = """<robot name="three_link">
  <link name="base_link"/>
  <link name="l1"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="l2"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="l3"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="tool0"/>
  <joint name="yaw" type="revolute"><parent link="base_link"/><child link="l1"/><origin xyz="0 0 0.1"/>
    <axis xyz="0 0 1"/><limit lower="-2" upper="2" effort="10" velocity="2"/></joint>
  <joint name="shoulder" type="revolute"><parent link="l1"/><child link="l2"/><origin xyz="0 0 0.2"/>
    <axis xyz="0 1 0"/><limit lower="-1.5" upper="1.5" effort="10" velocity="2"/></joint>
  <joint name="elbow" type="revolute"><parent link="l2"/><child link="l3"/><origin xyz="0.3 0 0"/>
    <axis xyz="0 1 0"/><limit lower="-2.5" upper="0.1" effort="10" velocity="2"/></joint>
  <joint name="tool" type="fixed"><parent link="l3"/><child link="tool0"/><origin xyz="0.3 0 0"/></joint>
</robot>"""


@pytest.fixture(scope="module")
def panda() -> IKSolver:
    return IKSolver.panda()


def test_panda_fk_at_home_is_a_plausible_hand_pose(panda):
    home = panda.fk(PANDA_HOME)
    assert 0.25 < home[0, 3] < 0.45 and abs(home[1, 3]) < 1e-3 and 0.35 < home[2, 3] < 0.65
    assert home[2, 2] < -0.99  # the hand points down


@pytest.mark.parametrize(
    ("offset", "rpy"),
    [
        ((0.03, -0.02, 0.02), (0.0, 0.0, 0.1)),
        ((-0.1, 0.1, -0.1), (0.2, -0.1, 0.0)),
        ((0.0, 0.0, 0.0), (0, 0, 0)),
    ],
)
def test_panda_ik_round_trip_reaches_reachable_targets_within_joint_limits(panda, offset, rpy):
    start = panda.fk(PANDA_HOME)
    target = start.copy()
    target[:3, 3] += offset
    target[:3, :3] = rpy_to_matrix(*rpy) @ start[:3, :3]
    result = panda.solve(PANDA_HOME, target)
    assert result.converged
    dp, dr = pose_error(panda.fk(result.q), target)
    assert dp < 1e-3 and dr < 1e-2
    assert np.all(result.q >= panda.lower) and np.all(result.q <= panda.upper)
    q, converged, error = result  # unpacks as (q, converged, error)
    np.testing.assert_array_equal(q, result.q)
    assert converged and error == pytest.approx(result.position_error + result.rotation_error)


def test_panda_ik_from_random_reachable_configurations(panda):
    rng = np.random.default_rng(3)
    for _ in range(5):
        q_goal = np.clip(PANDA_HOME + rng.uniform(-0.3, 0.3, 7), panda.lower, panda.upper)
        result = panda.solve(PANDA_HOME, panda.fk(q_goal), max_iters=200)
        assert result.converged
        dp, dr = pose_error(panda.fk(result.q), panda.fk(q_goal))
        assert dp < 1e-3 and dr < 1e-2


def test_unreachable_targets_do_not_converge_and_stay_within_joint_limits(panda):
    target = panda.fk(PANDA_HOME)
    target[:3, 3] = [2.0, 0.0, 0.5]  # 2 m away: beyond the Panda's reach
    result = panda.solve(PANDA_HOME, target, max_iters=50)
    assert not result.converged and result.position_error > 0.5
    assert np.all(result.q >= panda.lower) and np.all(result.q <= panda.upper)


def test_urdf_string_ik_round_trip_with_limits_from_the_urdf():
    ik = IKSolver.from_urdf_string(THREE_LINK_URDF, "tool0", ["yaw", "shoulder", "elbow"])
    np.testing.assert_allclose(ik.lower, [-2.0, -1.5, -2.5])
    np.testing.assert_allclose(ik.upper, [2.0, 1.5, 0.1])
    np.testing.assert_allclose(ik.fk(np.zeros(3))[:3, 3], [0.6, 0.0, 0.3], atol=1e-12)  # by hand
    q_goal = np.array([0.4, -0.3, -0.8])
    target = ik.fk(q_goal)
    # a 3-joint arm reaches positions, not full 6-D poses: the round trip must still find q_goal's pose
    result = ik.solve(np.array([0.0, 0.0, -0.2]), target, max_iters=300)
    assert result.converged
    np.testing.assert_allclose(ik.fk(result.q), target, atol=1e-3)


@dataclass(frozen=True)
class Description:
    """The fields IKSolver.from_description reads (robot_assets.RobotDescription provides them)."""

    path: Path
    format: str
    ee_frame: str
    arm_joints: tuple[str, ...]


def test_from_description_builds_mjcf_and_urdf_models(tmp_path):
    panda = IKSolver.from_description(
        Description(panda_mjcf_path(), "mjcf", "hand", tuple(f"joint{i}" for i in range(1, 8)))
    )
    assert panda.fk(PANDA_HOME)[2, 2] < -0.99
    urdf = tmp_path / "three_link.urdf"
    urdf.write_text(THREE_LINK_URDF)
    arm = IKSolver.from_description(Description(urdf, "urdf", "tool0", ("yaw", "shoulder", "elbow")))
    assert arm.arm_joints == ["yaw", "shoulder", "elbow"]
    with pytest.raises(ValueError, match="format"):
        IKSolver.from_description(Description(urdf, "sdf", "tool0", ("yaw",)))


def test_missing_frames_and_joints_are_named_with_the_alternatives():
    with pytest.raises(ValueError, match=r"frame 'tool9'.*tool0"):
        IKSolver.from_urdf_string(THREE_LINK_URDF, "tool9", ["yaw"])
    with pytest.raises(ValueError, match=r"joints \['wrist'\].*shoulder"):
        IKSolver.from_urdf_string(THREE_LINK_URDF, "tool0", ["yaw", "wrist"])


def test_only_the_arm_joints_move_the_fingers_stay_locked(panda):
    result = panda.solve(PANDA_HOME, panda.fk(PANDA_HOME + 0.05))
    assert len(result.q) == 7 and panda.model.nq > 7  # fingers exist in the model, not in the solution
