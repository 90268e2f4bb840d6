"""Table-top scenes for the Franka Panda and the WidowX 250 6DOF, assembled in code with ``mujoco.MjSpec``.

The robots come from the files :mod:`internvla_core.robot_assets` locates inside PyPI wheels (never
imported or downloaded; the same files the executor's IK reads, so joint names and kinematics agree):
the MuJoCo Menagerie Panda MJCF, and the Interbotix wx250s URDF expanded from its xacro. MuJoCo's URDF
import adds no actuators, so the WidowX gets position actuators for its six arm joints and its two
finger joints here. Added to both: a floor, a table top, lights, a third-person camera, a wrist camera
and the objects: the named tasks' plate and coloured blocks (free joints, placed at reset), or a family
task's :class:`SceneObject` list with its :class:`SceneLook` (:mod:`internvla_sim.task_family`).
Shadows and reflections are off: on 2 CPU cores rendering dominates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK_HALF = 0.02  # 4 cm cubes (both robots: the WidowX fingers open to ~7 cm)
PLATE_RADIUS = 0.07
TABLE_HEIGHT = 0.0  # the table top is the z = 0 plane of the robot base
TABLE_FRICTION = 0.8
BLOCK_COLOURS = {
    "red": (0.85, 0.12, 0.1, 1.0),
    "green": (0.1, 0.7, 0.2, 1.0),
    "blue": (0.12, 0.3, 0.85, 1.0),
}
# Franka names kept for the existing callers
ARM_JOINTS = [f"joint{i}" for i in range(1, 8)]
HOME_Q = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785])
GRIPPER_OPEN_CTRL = 255.0  # Menagerie tendon actuator: 0 closed .. 255 open


@dataclass(frozen=True)
class Primitive:
    """One geom of a scene object: MuJoCo type name and size, position in the object's body frame."""

    kind: str  # "box" (size = half extents) | "cylinder" (radius, half height) | "sphere" (radius)
    size: tuple[float, float, float]
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SceneObject:
    """A body placed on the table: a movable object (free joint) or a static container."""

    name: str  # MuJoCo body name (the free joint is ``<name>_joint``)
    primitives: tuple[Primitive, ...]
    rgba: tuple[float, float, float, float]
    pos: tuple[float, float, float]  # body origin in the base frame at reset
    yaw: float = 0.0
    movable: bool = True
    mass: float = 0.05  # kg, movable objects only


@dataclass(frozen=True)
class SceneLook:
    """Appearance randomisation of a scene: table colour, lights, third-person camera."""

    table_rgba: tuple[float, float, float, float]
    light_diffuse: float  # top light
    fill_diffuse: float  # side light
    light_offset: tuple[float, float]  # top light xy offset from the table centre [m]
    camera_pos: tuple[float, float, float]
    camera_xyaxes: tuple[float, ...]
    camera_fovy: float


@dataclass(frozen=True)
class CameraSpec:
    name: str
    width: int
    height: int
    fovy: float


@dataclass(frozen=True)
class RobotScene:
    """What the environment needs to know about a robot in its scene."""

    robot: str  # "franka" | "widowx"
    description: str  # internvla_core.robot_assets name
    arm_joints: tuple[str, ...]
    finger_joints: tuple[str, ...]
    ee_body: str  # body whose pose is published as ee_pose
    tcp_offset: tuple[float, float, float]  # ee_body origin -> point between the fingertips, ee frame [m]
    base_frame: str
    base_body: str  # MuJoCo body of base_frame (the root of the robot's kinematic tree)
    home: tuple[float, ...]
    finger_closed: tuple[float, ...]  # finger joint positions (one per finger joint)
    finger_open: tuple[float, ...]
    layout_x: tuple[float, float]  # where objects are placed [m], robot base frame
    layout_y: tuple[float, float]
    table_centre: tuple[float, float]
    table_half: tuple[float, float]
    camera_pos: tuple[float, float, float]
    camera_xyaxes: tuple[float, ...]
    camera_fovy: float
    frame_prefix: str = ""  # TF frame = prefix + MuJoCo body name, unless renamed below
    frame_renames: tuple[tuple[str, str], ...] = ()  # (body, TF frame) where the real robot differs

    def tf_frame(self, body: str) -> str:
        """The TF frame name of a robot body: the link name the real robot's URDF gives it."""
        return dict(self.frame_renames).get(body, self.frame_prefix + body)


FRANKA = RobotScene(
    robot="franka",
    description="panda",
    arm_joints=tuple(ARM_JOINTS),
    finger_joints=("finger_joint1", "finger_joint2"),
    ee_body="hand",
    tcp_offset=(0.0, 0.0, 0.1034),
    base_frame="panda_link0",
    base_body="link0",
    home=tuple(HOME_Q),
    finger_closed=(0.0, 0.0),
    finger_open=(0.04, 0.04),
    layout_x=(0.42, 0.65),
    layout_y=(-0.22, 0.22),
    table_centre=(0.55, 0.0),
    table_half=(0.35, 0.45),
    camera_pos=(1.35, 0.0, 0.75),
    camera_xyaxes=(0, 1, 0, -0.5, 0, 0.86),
    camera_fovy=50.0,
    # Menagerie's bodies (link0..link7, hand, fingers) carry franka_description's panda_* link names on TF
    frame_prefix="panda_",
    frame_renames=(("left_finger", "panda_leftfinger"), ("right_finger", "panda_rightfinger")),
)
WIDOWX = RobotScene(
    robot="widowx",
    description="wx250s",
    arm_joints=("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"),
    finger_joints=("left_finger", "right_finger"),
    ee_body="wx250s/ee_gripper_link",
    tcp_offset=(0.0, 0.0, 0.0),  # ee_gripper_link already sits between the fingertips
    base_frame="wx250s/base_link",
    base_body="wx250s/base_link",  # bodies are the URDF's links, so TF frames are their names
    home=(0.0, -0.196, 0.224, 0.0, 1.543, 0.0),
    finger_closed=(0.015, -0.015),
    finger_open=(0.037, -0.037),
    layout_x=(0.2, 0.4),
    layout_y=(-0.2, 0.2),
    table_centre=(0.3, 0.0),
    table_half=(0.3, 0.4),
    camera_pos=(0.8, 0.0, 0.55),
    camera_xyaxes=(0, 1, 0, -0.6, 0, 0.8),
    camera_fovy=55.0,
)
ROBOT_SCENES = {"franka": FRANKA, "widowx": WIDOWX}


def robot_scene(robot: str) -> RobotScene:
    try:
        return ROBOT_SCENES[robot]
    except KeyError:
        raise ValueError(f"unknown robot '{robot}'; known: {sorted(ROBOT_SCENES)}") from None


def _franka_spec():
    import mujoco

    from internvla_core.robot_assets import robot_description

    spec = mujoco.MjSpec.from_file(str(robot_description("panda").path))
    # The Menagerie gripper squeezes with at most ~4 N (kp 100 on the tendon): enough to hold, not to
    # lift at expert speed. Eight times stiffer (still inside its 100 N force range) grasps reliably.
    gripper = next(a for a in spec.actuators if a.name == "actuator8")
    gripper.gainprm[0] *= 8
    gripper.biasprm[1] *= 8
    # Closed on nothing, the stiffer drive drove the two finger meshes 6-8 mm into each other, and the
    # contact then held them there: the gripper never opened again (a real Franka Hand stops its fingers at
    # width 0 and reopens). The fingers do not collide with each other; their joint limit (0) stops them.
    spec.add_exclude(bodyname1="left_finger", bodyname2="right_finger")
    return spec, next(b for b in spec.bodies if b.name == "hand"), FRANKA_WRIST_POS, FRANKA_WRIST_XYAXES


# The Franka wrist camera, in the hand frame (z along the fingers, towards the fingertips; the TCP at
# z = 0.1034): 6 cm beside the flange, looking down the fingers and tilted 19 degrees towards their axis,
# at the point 20 cm out, so that the fingertips sit at the top of the image and an object between them at
# its centre, as a hand-mounted camera (DROID's, for one) sees a grasp. A MuJoCo camera looks along -z of
# its frame, z = x cross y. Until 2026-12-06 the axes were (0, -1, 0, 1, 0, 0): that camera looked back up the
# arm and never saw the table, and every wrist-view dataset recorded before then shows the hand's underside.
FRANKA_WRIST_POS = (0.06, 0.0, 0.03)
FRANKA_WRIST_XYAXES = (0.0, -1.0, 0.0, -0.17, 0.0, -0.06)


# Position-servo gains of the WidowX (kp [N m/rad or N/m], joint damping, force limit): stiff enough
# that gravity sag stays below ~1 cm with a block in the gripper, damped so a 5 Hz step does not ring.
WIDOWX_SERVOS = {
    "waist": (60.0, 3.0, 10.0),
    "shoulder": (150.0, 6.0, 20.0),
    "elbow": (120.0, 5.0, 15.0),
    "forearm_roll": (30.0, 1.0, 5.0),
    "wrist_angle": (40.0, 1.5, 5.0),
    "wrist_rotate": (15.0, 0.5, 2.0),
    "left_finger": (300.0, 5.0, 10.0),
    "right_finger": (300.0, 5.0, 10.0),
}


def _widowx_spec():
    import mujoco

    from internvla_core.robot_assets import robot_description

    urdf = robot_description("wx250s").urdf_xml()
    compiler = (
        '<mujoco><compiler discardvisual="false" strippath="false" fusestatic="false" '
        'balanceinertia="true"/></mujoco>'
    )
    start = urdf.index("<robot")
    urdf = urdf[: urdf.index(">", start) + 1] + compiler + urdf[urdf.index(">", start) + 1 :]
    spec = mujoco.MjSpec.from_string(urdf)
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.timestep = 0.002
    joints = {j.name: j for j in spec.joints}
    for name, (kp, damping, force) in WIDOWX_SERVOS.items():
        joint = joints[name]
        joint.damping = [damping, 0.0, 0.0]  # MuJoCo 4: linear coefficient first
        joint.armature = 0.005
        actuator = spec.add_actuator(name=f"{name}_servo", target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        actuator.set_to_position(kp=kp)
        actuator.ctrlrange = list(joint.range) if joint.range[0] < joint.range[1] else [-np.pi, np.pi]
        actuator.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        actuator.forcerange = [-force, force]
        actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    # The base is welded to the world, so MuJoCo's parent filter does not exclude base/shoulder contacts
    # and their overlapping meshes lock the waist: no arm-arm contacts at all (contype 2 never meets
    # conaffinity 1 of another arm geom), arm-world contacts kept (world geoms have contype 1).
    for body in spec.bodies:
        if not body.name.startswith("wx250s/"):
            continue
        for geom in body.geoms:
            if not (geom.contype or geom.conaffinity):
                continue  # visual-only geoms stay out of collisions
            geom.contype, geom.conaffinity = 2, 1
            if body.name.endswith("finger_link"):  # grippy finger pads (collision meshes = visual ones)
                geom.friction = [2.5, 0.05, 0.001]
                geom.condim = 4
    gripper_bar = next(b for b in spec.bodies if b.name == "wx250s/ee_arm_link")
    return spec, gripper_bar, (0.0, 0.0, 0.06), (0, -1, 0, 0, 0, 1)


def build_model(
    width: int = 320,
    height: int = 240,
    wrist: bool = True,
    robot: str = "franka",
    objects: tuple[SceneObject, ...] | None = None,
    look: SceneLook | None = None,
):
    """Compile the scene of ``robot``; returns (model, cameras).

    Without ``objects`` the scene is the fixed one of the named tasks (a plate and the red, green and
    blue blocks, placed by ``SimEnv.reset``); with them, those objects at their positions (the
    procedural task family, :mod:`internvla_sim.task_family`). ``look`` overrides the table colour,
    lights and third-person camera (None: the fixed look).
    """
    import mujoco

    scene = robot_scene(robot)
    camera_pos = look.camera_pos if look else scene.camera_pos
    camera_xyaxes = look.camera_xyaxes if look else scene.camera_xyaxes
    camera_fovy = look.camera_fovy if look else scene.camera_fovy
    spec, wrist_body, wrist_pos, wrist_xyaxes = _franka_spec() if robot == "franka" else _widowx_spec()
    # Elliptic friction cones with impratio 10: without them a held object creeps down between the pads
    # (~1 cm/s) and drops within a few seconds of a 5 Hz episode
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.visual.global_.offwidth = max(width, 640)
    spec.visual.global_.offheight = max(height, 480)
    spec.visual.quality.shadowsize = 0
    world = spec.worldbody
    cx, cy = scene.table_centre
    top, fill = (look.light_diffuse, look.fill_diffuse) if look else (0.8, 0.4)
    ox, oy = look.light_offset if look else (0.0, 0.0)
    world.add_light(pos=[cx + ox, cy + oy, 2.0], dir=[0, 0, -1], diffuse=[top] * 3, castshadow=False)
    world.add_light(pos=[1.5, 1.0, 1.5], dir=[-1, -0.6, -1], diffuse=[fill] * 3, castshadow=False)
    world.add_geom(
        type=mujoco.mjtGeom.mjGEOM_PLANE, size=[2, 2, 0.1], pos=[0, 0, -0.4], rgba=[0.3, 0.3, 0.32, 1]
    )
    table = world.add_body(name="table", pos=[cx, cy, TABLE_HEIGHT])
    table.add_geom(
        type=mujoco.mjtGeom.mjGEOM_BOX,
        size=[*scene.table_half, 0.02],
        pos=[0, 0, -0.02],
        rgba=list(look.table_rgba) if look else [0.62, 0.5, 0.38, 1],
        # the table's own friction for everything on it (priority 1 beats the objects' grippy 2.5, kept
        # for the fingers): pushed objects slide instead of tumbling
        priority=1,
        friction=[TABLE_FRICTION, 0.005, 0.001],  # rolling friction: a released ball stays put
        condim=6,
    )
    if objects is None:
        _add_named_task_objects(world, cx)
    else:
        for obj in objects:
            _add_object(world, obj)
    world.add_camera(name="third_person", pos=list(camera_pos), xyaxes=list(camera_xyaxes), fovy=camera_fovy)
    if wrist:
        wrist_body.add_camera(name="wrist", pos=list(wrist_pos), xyaxes=list(wrist_xyaxes), fovy=70)
    model = spec.compile()
    cameras = [CameraSpec("third_person", width, height, camera_fovy)]
    if wrist:
        cameras.append(CameraSpec("wrist", width, height, 70.0))
    return model, cameras


def _add_named_task_objects(world, cx: float) -> None:
    """The fixed objects of the named tasks: a plate and three 4 cm blocks (placed at reset)."""
    import mujoco

    plate = world.add_body(name="plate", pos=[cx, 0.2, 0.0])
    plate.add_geom(
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=[PLATE_RADIUS, 0.004, 0],
        pos=[0, 0, 0.004],
        rgba=[0.95, 0.95, 0.95, 1],
    )
    for colour, rgba in BLOCK_COLOURS.items():
        body = world.add_body(name=f"{colour}_block", pos=[cx, 0.0, BLOCK_HALF])
        body.add_freejoint(name=f"{colour}_block_joint")
        body.add_geom(
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[BLOCK_HALF] * 3,
            rgba=rgba,
            mass=0.05,
            friction=[2.5, 0.05, 0.001],
            condim=4,
        )


GEOM_TYPES = {"box": "mjGEOM_BOX", "cylinder": "mjGEOM_CYLINDER", "sphere": "mjGEOM_SPHERE"}


def _add_object(world, obj: SceneObject) -> None:
    import mujoco

    half_yaw = obj.yaw / 2
    body = world.add_body(
        name=obj.name, pos=list(obj.pos), quat=[np.cos(half_yaw), 0.0, 0.0, np.sin(half_yaw)]
    )
    if obj.movable:
        body.add_freejoint(name=f"{obj.name}_joint")
    mass = obj.mass / len(obj.primitives)
    for prim in obj.primitives:
        kind = getattr(mujoco.mjtGeom, GEOM_TYPES[prim.kind])
        geom = body.add_geom(type=kind, size=list(prim.size), pos=list(prim.pos), quat=list(prim.quat))
        geom.rgba = list(obj.rgba)
        if obj.movable:
            geom.mass = mass
            geom.friction = [2.5, 0.05, 0.002]
            # rolling friction keeps balls where the expert left them
            geom.condim = 6 if prim.kind == "sphere" else 4


def bodies_below(model, root: int) -> list[int]:
    """Ids of the bodies in ``root``'s subtree of a compiled MuJoCo model, ``root`` excluded, parents
    before children (MuJoCo numbers a parent before its children)."""
    inside = {root}
    for body in range(root + 1, model.nbody):
        if model.body_parentid[body] in inside:
            inside.add(body)
    return sorted(inside - {root})


def intrinsics(camera: CameraSpec) -> np.ndarray:
    """Pinhole K of a MuJoCo camera (vertical field of view, square pixels, centre at the middle)."""
    fy = 0.5 * camera.height / np.tan(np.deg2rad(camera.fovy) / 2)
    return np.array([[fy, 0, (camera.width - 1) / 2], [0, fy, (camera.height - 1) / 2], [0, 0, 1.0]])


def look_at_xyaxes(pos, target) -> tuple[float, ...]:
    """MuJoCo camera ``xyaxes`` (image right, image up) of a camera at ``pos`` looking at ``target``,
    level (no roll about the viewing axis)."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(pos, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return (*right.tolist(), *up.tolist())


def camera_look_at(scene: RobotScene) -> np.ndarray:
    """Where the fixed third-person camera of ``scene`` looks: its optical axis meets the table plane."""
    x, y = np.array(scene.camera_xyaxes[:3]), np.array(scene.camera_xyaxes[3:])
    forward = -np.cross(x, y)
    forward /= np.linalg.norm(forward)
    pos = np.array(scene.camera_pos)
    return pos + forward * (TABLE_HEIGHT - pos[2]) / forward[2]
