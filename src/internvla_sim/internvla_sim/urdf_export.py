"""A URDF of a robot described only by an MJCF, for RViz's RobotModel and robot_state_publisher.

The simulated Franka is MuJoCo Menagerie's Panda MJCF: no URDF ships with it on PyPI, so without this
RViz has no robot to draw in simulation. The kinematic tree is exported as MuJoCo compiles it (body
poses relative to their parent, hinge joints as ``revolute``, slide joints as ``prismatic``, limits
from the joint ranges), links named as the real robot's URDF names them (``link_name``, e.g.
``panda_link3``) and joints as the simulator names them (so ``joint_states`` drive it). Visuals are the
MJCF's visual meshes (geom group 2, Menagerie's convention) at their authored poses (MuJoCo's compiler
recentres mesh geoms; the files on disk are not), with ``file://`` paths and each geom's colour.
No inertias or collisions: the file is for display and kinematics, not for another simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from .scene import bodies_below

VISUAL_GROUP = 2


def _rpy(quat_wxyz) -> tuple[float, float, float]:
    """URDF roll-pitch-yaw (fixed-axis XYZ) of a MuJoCo quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(quat_wxyz, dtype=float) / np.linalg.norm(quat_wxyz)
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return float(roll), float(pitch), float(yaw)


def _origin(parent: ET.Element, pos, quat) -> None:
    ET.SubElement(
        parent,
        "origin",
        xyz=" ".join(f"{v:.9g}" for v in pos),
        rpy=" ".join(f"{v:.9g}" for v in _rpy(quat)),
    )


def urdf_from_mjcf(mjcf: str | Path, root_body: str, link_name: Callable[[str], str], robot_name: str) -> str:
    """URDF text of the subtree of ``root_body`` in the MJCF file ``mjcf`` (see the module docstring)."""
    import mujoco

    mjcf = Path(mjcf)
    spec = mujoco.MjSpec.from_file(str(mjcf))
    model = spec.compile()  # normalised body quaternions, resolved defaults
    mesh_dir = mjcf.parent / (spec.meshdir or "")
    mesh_files = {m.name: (mesh_dir / m.file).resolve() for m in spec.meshes}
    root = model.body(root_body).id
    robot = ET.Element("robot", name=robot_name)
    for body in [root, *bodies_below(model, root)]:
        parent = int(model.body_parentid[body])
        name = model.body(body).name
        link = ET.SubElement(robot, "link", name=link_name(name))
        for geom in spec.body(name).geoms:
            if geom.type != mujoco.mjtGeom.mjGEOM_MESH or geom.group != VISUAL_GROUP:
                continue
            visual = ET.SubElement(link, "visual")
            _origin(visual, geom.pos, geom.quat)
            shape = ET.SubElement(visual, "geometry")
            ET.SubElement(shape, "mesh", filename=f"file://{mesh_files[geom.meshname]}")
            rgba = _geom_rgba(model, geom)
            material = ET.SubElement(visual, "material", name=f"{link_name(name)}_{len(link)}")
            ET.SubElement(material, "color", rgba=" ".join(f"{v:.3g}" for v in rgba))
        if body == root:
            continue
        joints = [j for j in range(model.njnt) if model.jnt_bodyid[j] == body]
        if len(joints) > 1:
            raise ValueError(f"body '{name}' has {len(joints)} joints; URDF allows one per link")
        joint = ET.SubElement(robot, "joint")
        if joints:
            j = joints[0]
            kind = {mujoco.mjtJoint.mjJNT_HINGE: "revolute", mujoco.mjtJoint.mjJNT_SLIDE: "prismatic"}.get(
                mujoco.mjtJoint(model.jnt_type[j])
            )
            if kind is None:
                raise ValueError(f"joint '{model.joint(j).name}' is neither a hinge nor a slide")
            if np.linalg.norm(model.jnt_pos[j]) > 1e-12:
                raise ValueError(f"joint '{model.joint(j).name}' is not at its body's origin")
            joint.set("name", model.joint(j).name)
            joint.set("type", kind)
            low, high = model.jnt_range[j] if model.jnt_limited[j] else (-np.pi, np.pi)
        else:
            joint.set("name", f"{link_name(model.body(parent).name)}_to_{link_name(name)}")
            joint.set("type", "fixed")
        _origin(joint, model.body_pos[body], model.body_quat[body])
        ET.SubElement(joint, "parent", link=link_name(model.body(parent).name))
        ET.SubElement(joint, "child", link=link_name(name))
        if joints:
            ET.SubElement(joint, "axis", xyz=" ".join(f"{v:.9g}" for v in model.jnt_axis[j]))
            ET.SubElement(
                joint, "limit", lower=f"{low:.9g}", upper=f"{high:.9g}", effort="100", velocity="10"
            )
    ET.indent(robot)
    return '<?xml version="1.0"?>\n' + ET.tostring(robot, encoding="unicode") + "\n"


def _geom_rgba(model, geom) -> np.ndarray:
    """The colour MuJoCo draws a geom with: its material's when it has one, else its own."""
    if geom.material:
        return model.material(geom.material).rgba
    return np.asarray(geom.rgba, dtype=float)
