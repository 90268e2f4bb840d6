"""Table-top scene for the Franka Panda, assembled in code with ``mujoco.MjSpec``.

The robot is the MuJoCo Menagerie Panda shipped inside the genesis-world wheel (located, never
imported or downloaded; the same file the executor's IK reads, so joint names and kinematics agree).
Added: a floor, a table top, a plate, coloured blocks with free joints, lights, a third-person camera
and a wrist camera on the hand. Shadows and reflections are off: on 2 CPU cores rendering dominates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK_HALF = 0.02  # 4 cm cubes
PLATE_RADIUS = 0.07
TABLE_HEIGHT = 0.0  # the table top is the z = 0 plane of the robot base
BLOCK_COLOURS = {
    "red": (0.85, 0.12, 0.1, 1.0),
    "green": (0.1, 0.7, 0.2, 1.0),
    "blue": (0.12, 0.3, 0.85, 1.0),
}
ARM_JOINTS = [f"joint{i}" for i in range(1, 8)]
HOME_Q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])
GRIPPER_OPEN_CTRL = 255.0  # Menagerie tendon actuator: 0 closed .. 255 open


@dataclass(frozen=True)
class CameraSpec:
    name: str
    width: int
    height: int
    fovy: float


def build_model(width: int = 320, height: int = 240, wrist: bool = True):
    """Compile the scene; returns (model, cameras)."""
    import mujoco

    from internvla_core.kinematics import panda_mjcf_path

    spec = mujoco.MjSpec.from_file(str(panda_mjcf_path()))
    spec.visual.global_.offwidth = max(width, 640)
    spec.visual.global_.offheight = max(height, 480)
    spec.visual.quality.shadowsize = 0
    world = spec.worldbody
    world.add_light(pos=[0.5, 0.0, 2.0], dir=[0, 0, -1], diffuse=[0.8, 0.8, 0.8], castshadow=False)
    world.add_light(pos=[1.5, 1.0, 1.5], dir=[-1, -0.6, -1], diffuse=[0.4, 0.4, 0.4], castshadow=False)
    world.add_geom(
        type=mujoco.mjtGeom.mjGEOM_PLANE, size=[2, 2, 0.1], pos=[0, 0, -0.4], rgba=[0.3, 0.3, 0.32, 1]
    )
    table = world.add_body(name="table", pos=[0.55, 0.0, TABLE_HEIGHT])
    table.add_geom(
        type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.35, 0.45, 0.02], pos=[0, 0, -0.02], rgba=[0.62, 0.5, 0.38, 1]
    )
    plate = world.add_body(name="plate", pos=[0.55, 0.2, 0.0])
    plate.add_geom(
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[PLATE_RADIUS, 0.004, 0],
        pos=[0, 0, 0.004],
        rgba=[0.95, 0.95, 0.95, 1],
    )
    for colour, rgba in BLOCK_COLOURS.items():
        body = world.add_body(name=f"{colour}_block", pos=[0.5, 0.0, BLOCK_HALF])
        body.add_freejoint(name=f"{colour}_block_joint")
        body.add_geom(
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[BLOCK_HALF] * 3,
            rgba=rgba,
            mass=0.05,
            friction=[2.5, 0.05, 0.001],
            condim=4,
        )
    # The Menagerie gripper squeezes with at most ~4 N (kp 100 on the tendon): enough to hold, not to
    # lift at expert speed. Eight times stiffer (still inside its 100 N force range) grasps reliably.
    gripper = next(a for a in spec.actuators if a.name == "actuator8")
    gripper.gainprm[0] *= 8
    gripper.biasprm[1] *= 8
    world.add_camera(name="third_person", pos=[1.35, 0.0, 0.75], xyaxes=[0, 1, 0, -0.5, 0, 0.86], fovy=50)
    if wrist:
        hand = next(b for b in spec.bodies if b.name == "hand")
        hand.add_camera(name="wrist", pos=[0.06, 0.0, 0.03], xyaxes=[0, -1, 0, 1, 0, 0], fovy=70)
    model = spec.compile()
    cameras = [CameraSpec("third_person", width, height, 50.0)]
    if wrist:
        cameras.append(CameraSpec("wrist", width, height, 70.0))
    return model, cameras


def intrinsics(camera: CameraSpec) -> np.ndarray:
    """Pinhole K of a MuJoCo camera (vertical field of view, square pixels, centre at the middle)."""
    fy = 0.5 * camera.height / np.tan(np.deg2rad(camera.fovy) / 2)
    return np.array([[fy, 0, (camera.width - 1) / 2], [0, fy, (camera.height - 1) / 2], [0, 0, 1.0]])
