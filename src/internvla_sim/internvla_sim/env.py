"""The simulator without ROS: reset a seeded task, command joints and gripper, step, observe, check success.

Robots: ``franka`` (Panda, 7 arm joints, Menagerie actuators) and ``widowx`` (WidowX 250 6DOF, position
servos added by the scene). Control: arm joint position targets and a gripper opening 0..1
(``apply_joint_targets``); ``step`` advances one control period (physics at 2 ms). Observations are
what real drivers publish: RGB (and depth in metres) of a third-person and a wrist camera, joint
positions, the end-effector pose in the base frame, and the sim time.

Tasks: a named task (``red_on_plate``, ``pick_green``, ``push_blue_left``: a fixed scene, layout by
seed), ``"family"`` (the procedural task of the seed, :mod:`internvla_sim.task_family`: the scene is
rebuilt for it, ~0.1 s), a family template id or skill (the seed's task among those), or a ready
``FamilyTask``.

Cameras: ``camera_intrinsics`` is the pinhole K with pixel centres at integer coordinates (u right, v
down, principal point at ((W-1)/2, (H-1)/2)); ``camera_pose`` is the optical frame (x right, y down, z
forward) in the base frame, so a base-frame point p projects to K (R^T (p - t)) / z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import GRIPPER_OPEN_CTRL, bodies_below, build_model, intrinsics, robot_scene
from .task_family import NAMED_OBJECTS, FamilyTask, resolve_task

OBJECTS = list(NAMED_OBJECTS)  # the objects of the named tasks' scene
OPTICAL_FRAMES = {"third_person": "third_person_camera_optical_frame", "wrist": "wrist_camera_optical_frame"}


@dataclass(frozen=True)
class FrameTransform:
    """One TF edge: ``pose`` is the child frame in the parent frame (4x4)."""

    parent: str
    child: str
    pose: np.ndarray
    static: bool  # never changes (the base is welded to the world): goes on /tf_static


class SimEnv:
    def __init__(
        self,
        task: str | FamilyTask = "red_on_plate",
        seed: int = 0,
        control_dt: float = 0.1,
        width: int = 320,
        height: int = 240,
        wrist: bool = True,
        robot: str = "franka",
    ) -> None:
        import mujoco

        self.mujoco = mujoco
        self.robot = robot_scene(robot)
        self.control_dt = control_dt
        self._size = (width, height, wrist)
        self._task_spec = task
        self._renderer = None
        self._scene_key = None
        self.reset(seed)

    def _build(self, task: FamilyTask) -> None:
        """(Re)compile the model for ``task``'s scene; the named tasks share one scene, built once."""
        key = "named" if task.named else task
        if key is self._scene_key:
            return
        self.close()
        width, height, wrist = self._size
        objects = None if task.named else task.objects
        self.model, self.cameras = build_model(width, height, wrist, self.robot.robot, objects, task.look)
        self.data = self.mujoco.MjData(self.model)
        self.substeps = max(1, round(self.control_dt / self.model.opt.timestep))
        self._arm_qpos = [self.model.joint(j).qposadr[0] for j in self.robot.arm_joints]
        self._finger_qpos = [self.model.joint(j).qposadr[0] for j in self.robot.finger_joints]
        self._hand = self.model.body(self.robot.ee_body).id
        self._n_arm = len(self.robot.arm_joints)
        self._base = self.model.body(self.robot.base_body).id
        self._robot_bodies = bodies_below(self.model, self._base)
        self._scene_key = key

    # ----------------------------------------------------------------------------------------- episode
    def reset(self, seed: int | None = None, task: str | FamilyTask | None = None) -> None:
        """Start an episode: ``task`` (default: the one given before) with the layout of ``seed``."""
        mujoco = self.mujoco
        if task is not None:
            self._task_spec = task
        self.task = resolve_task(self._task_spec, self.robot.robot, seed)
        self._build(self.task)
        self.object_names = [o.name for o in self.task.objects]
        mujoco.mj_resetData(self.model, self.data)
        robot = self.robot
        self.data.qpos[self._arm_qpos] = robot.home
        self.data.qpos[self._finger_qpos] = robot.finger_open
        if self.task.named:  # one compiled scene for all seeds: place its objects here
            for obj in self.task.objects:
                if obj.movable:
                    adr = self.model.joint(f"{obj.name}_joint").qposadr[0]
                    self.data.qpos[adr : adr + 3] = obj.pos
                    self.data.qpos[adr + 3 : adr + 7] = [1, 0, 0, 0]
                else:
                    self.model.body(obj.name).pos[:2] = obj.pos[:2]
        self.data.ctrl[: self._n_arm] = robot.home
        self._set_gripper(1.0)
        mujoco.mj_forward(self.model, self.data)
        for _ in range(50):  # let the objects settle
            mujoco.mj_step(self.model, self.data)
        self.steps = 0
        self.start_positions = self.object_positions()

    # ----------------------------------------------------------------------------------------- control
    def apply_joint_targets(self, q: np.ndarray | None = None, gripper_opening: float | None = None) -> None:
        """Arm joint position targets and/or gripper opening 0 (closed) .. 1 (open). NaN is refused."""
        n = self._n_arm
        if q is not None:
            q = np.asarray(q, dtype=np.float64)
            if q.shape != (n,) or not np.all(np.isfinite(q)):
                raise ValueError(f"joint targets must be {n} finite values, got {q}")
            low, high = self.model.actuator_ctrlrange[:n, 0], self.model.actuator_ctrlrange[:n, 1]
            self.data.ctrl[:n] = np.clip(q, low, high)
        if gripper_opening is not None:
            if not np.isfinite(gripper_opening):
                raise ValueError("gripper opening must be finite")
            self._set_gripper(float(np.clip(gripper_opening, 0.0, 1.0)))

    def _set_gripper(self, opening: float) -> None:
        n = self._n_arm
        if self.robot.robot == "franka":  # one tendon actuator, 0 closed .. 255 open
            self.data.ctrl[n] = opening * GRIPPER_OPEN_CTRL
        else:  # one position servo per finger
            closed, opened = np.array(self.robot.finger_closed), np.array(self.robot.finger_open)
            self.data.ctrl[n : n + len(closed)] = closed + opening * (opened - closed)

    def step(self, on_substep=None) -> None:
        """One control period. ``on_substep(env)``, if given, runs before every physics substep (2 ms):
        a controller emulation sets its targets there (``apply_joint_targets``) at the physics rate."""
        for _ in range(self.substeps):
            if on_substep is not None:
                on_substep(self)
            self.mujoco.mj_step(self.model, self.data)
        self.steps += 1

    # ----------------------------------------------------------------------------------------- state
    @property
    def time(self) -> float:
        return float(self.data.time)

    def arm_positions(self) -> np.ndarray:
        return self.data.qpos[self._arm_qpos].copy()

    def finger_positions(self) -> np.ndarray:
        return self.data.qpos[self._finger_qpos].copy()

    def finger_opening(self) -> float:
        """Where the fingers are: 0 (closed) .. 1 (open), measured. Closed on an object it stays at the
        object's width over the full opening (a 4 cm block in the Franka's 8 cm: 0.49), closed on nothing
        it goes to 0 (0.14 before the eleventh round, when the Franka's fingers jammed 6 mm past it): what
        the recorded state and an evaluation trace report."""
        closed, opened = np.abs(self.robot.finger_closed), np.abs(self.robot.finger_open)
        fingers = np.abs(self.finger_positions())
        return float(np.clip(np.mean((fingers - closed) / (opened - closed)), 0.0, 1.0))

    def commanded_gripper_opening(self) -> float:
        """The opening 0 (closed) .. 1 (open) the gripper is commanded to now (its actuator targets), not
        where the fingers are: an evaluation can see the policy's open / close decisions."""
        n = self._n_arm
        if self.robot.robot == "franka":
            return float(self.data.ctrl[n] / GRIPPER_OPEN_CTRL)
        closed, opened = np.array(self.robot.finger_closed), np.array(self.robot.finger_open)
        ctrl = self.data.ctrl[n : n + len(closed)]
        return float(np.mean((ctrl - closed) / (opened - closed)))

    def hand_pose(self) -> np.ndarray:
        """Pose of the end-effector body (Franka: hand, WidowX: ee_gripper_link) in the base frame."""
        return np.linalg.inv(self._body_pose(self._base)) @ self._body_pose(self._hand)

    def tcp_position(self) -> np.ndarray:
        """The point between the fingertips (the TCP) in the base frame."""
        hand = self.hand_pose()
        return hand[:3, 3] + hand[:3, :3] @ np.array(self.robot.tcp_offset)

    def world_to_base(self) -> np.ndarray:
        """4x4 transform of MuJoCo world coordinates into the base frame."""
        return np.linalg.inv(self._body_pose(self._base))

    def _body_pose(self, body: int) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3] = self.data.xmat[body].reshape(3, 3)
        pose[:3, 3] = self.data.xpos[body]
        return pose

    def frame_transforms(self) -> list[FrameTransform]:
        """The robot's links and the cameras' optical frames as a TF tree rooted at the base frame.

        Each robot body is given relative to its parent body (the URDF's parent link), named as the
        real robot's URDF names it (``RobotScene.tf_frame``), so RViz's RobotModel and a real robot's
        tools see the frames they expect. The third-person camera hangs off the base (static); the wrist
        camera off the body it is mounted on.
        """
        robot, model = self.robot, self.model
        transforms = []
        for body in self._robot_bodies:
            parent = int(model.body_parentid[body])
            pose = np.linalg.inv(self._body_pose(parent)) @ self._body_pose(body)
            name, parent_name = model.body(body).name, model.body(parent).name
            transforms.append(FrameTransform(robot.tf_frame(parent_name), robot.tf_frame(name), pose, False))
        for camera in self.cameras:
            mount = int(model.cam_bodyid[model.camera(camera.name).id])
            on_robot = mount in self._robot_bodies
            parent = mount if on_robot else self._base
            pose = np.linalg.inv(self._body_pose(parent)) @ self._optical_pose_in_world(camera.name)
            parent_name = robot.tf_frame(model.body(parent).name)
            transforms.append(FrameTransform(parent_name, OPTICAL_FRAMES[camera.name], pose, not on_robot))
        return transforms

    def object_positions(self) -> dict[str, np.ndarray]:
        """Body origins of the task's objects in the base frame (the base sits at the world origin)."""
        return {name: self.data.xpos[self.model.body(name).id].copy() for name in self.object_names}

    def body_geoms(self, name: str) -> list[int]:
        """Geom ids of a body (for segmentation masks)."""
        body = self.model.body(name).id
        return [g for g in range(self.model.ngeom) if self.model.geom_bodyid[g] == body]

    def success(self) -> bool:
        return self.task.success(self.object_positions(), self.start_positions)

    # ----------------------------------------------------------------------------------------- sensors
    def render(
        self, camera: str = "third_person", depth: bool = False, segmentation: bool = False
    ) -> np.ndarray:
        """RGB uint8 [H, W, 3], depth float32 metres [H, W], or segmentation: int32 [H, W] geom id per
        pixel (-1 where no geom is seen) of a named camera."""
        spec = next(c for c in self.cameras if c.name == camera)
        if self._renderer is None:
            self._renderer = self.mujoco.Renderer(self.model, spec.height, spec.width)
        if depth:
            self._renderer.enable_depth_rendering()
        elif segmentation:
            self._renderer.enable_segmentation_rendering()
        self._renderer.update_scene(self.data, camera=camera)
        image = self._renderer.render()
        if depth:
            self._renderer.disable_depth_rendering()
            return image.astype(np.float32)
        if segmentation:
            self._renderer.disable_segmentation_rendering()
            ids = image[..., 0].astype(np.int32)
            return np.where(image[..., 1] == int(self.mujoco.mjtObj.mjOBJ_GEOM), ids, -1)
        return image

    def camera_intrinsics(self, camera: str = "third_person") -> np.ndarray:
        return intrinsics(next(c for c in self.cameras if c.name == camera))

    def camera_pose(self, camera: str = "third_person") -> np.ndarray:
        """Optical-frame pose in the base frame (x right, y down, z forward, REP 103 '_optical')."""
        return np.linalg.inv(self._body_pose(self._base)) @ self._optical_pose_in_world(camera)

    def _optical_pose_in_world(self, camera: str) -> np.ndarray:
        cam = self.model.camera(camera).id
        pose = np.eye(4)
        # MuJoCo cameras look along -z with y up; the optical frame flips y and z
        pose[:3, :3] = self.data.cam_xmat[cam].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
        pose[:3, 3] = self.data.cam_xpos[cam]
        return pose

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
