"""Robot descriptions from the wheels: the WidowX xacro expands offline into a usable, cached URDF."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pinocchio")
pytest.importorskip("xacrodoc")

from internvla_core.kinematics import IKSolver
from internvla_core.robot_assets import (
    cached_interbotix_urdf,
    canonical_name,
    robot_description,
)

WX_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")


@pytest.fixture
def wx(tmp_path):
    return robot_description("widowx", cache_dir=tmp_path)


def test_the_widowx_urdf_expands_with_its_joints_frames_and_local_meshes(wx):
    urdf = wx.urdf_xml()
    joints = dict(re.findall(r'<joint name="([^"]+)" type="([^"]+)"', urdf))
    assert all(joints[j] == "revolute" for j in WX_JOINTS)
    assert joints["left_finger"] == joints["right_finger"] == "prismatic"
    assert '<link name="wx250s/ee_gripper_link"' in urdf and '<link name="wx250s/base_link"' in urdf
    assert "package://" not in urdf and "$(arg" not in urdf
    meshes = re.findall(r'filename="([^"]+)"', urdf)
    assert meshes and all(Path(m).is_file() for m in meshes)
    assert wx.arm_joints == WX_JOINTS and wx.format == "urdf"


def test_the_expansion_is_cached_and_reused(tmp_path):
    first = cached_interbotix_urdf("wx250s", tmp_path)
    stamp = first.stat().st_mtime_ns
    second = cached_interbotix_urdf("wx250s", tmp_path)
    assert second == first and second.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary file left behind


@pytest.mark.parametrize("name", ["panda", "wx250s"])
def test_ik_from_each_description_reaches_small_deltas_from_home(name, tmp_path):
    desc = robot_description(name, cache_dir=tmp_path)
    ik = IKSolver.from_description(desc)
    home = np.array(desc.home)
    start = ik.fk(home)
    assert 0.15 < start[0, 3] < 0.7 and start[2, 3] > 0.05  # in front of the base, above the table
    rng = np.random.default_rng(0)
    for _ in range(10):
        target = start.copy()
        target[:3, 3] += rng.uniform(-0.03, 0.03, 3)
        result = ik.solve(home, target, max_iters=100)
        assert result.converged and result.error < 1e-3
        np.testing.assert_allclose(ik.fk(result.q)[:3, 3], target[:3, 3], atol=1e-3)


def test_names_and_aliases():
    assert canonical_name("franka") == "panda" and canonical_name("widowx") == "wx250s"
    with pytest.raises(KeyError, match="unknown robot 'ur5'"):
        robot_description("ur5")
    with pytest.raises(ValueError, match="MJCF"):
        robot_description("panda").urdf_xml()
