"""sim_node: the MuJoCo scene behind the interfaces real drivers and controllers expose.

Robots (parameter ``robot``): ``franka`` (Panda; joints joint1..7, base frame panda_link0, ee_pose of
the hand) and ``widowx`` (WidowX 250 6DOF; joints waist .. wrist_rotate, base frame wx250s/base_link,
ee_pose of wx250s/ee_gripper_link).
Publishes (relative names): camera/image_raw (rgb8), camera/depth/image_raw (32FC1 m),
camera/camera_info, wrist_camera/image_raw + camera_info (when render_wrist), joint_states (arm and
finger joints), ee_pose (PoseStamped in the base frame), task/success and task/instruction (latched),
/clock; where ``tf2_msgs`` is installed (full ROS installs) /tf (every link, relative to its parent link,
named as the real robot's URDF names it: panda_link0.., wx250s/..) and /tf_static (the third-person
camera's optical frame on the base); robot_description (latched URDF: the WidowX's own, the Panda's
exported from its MJCF by ``urdf_export``).
Accepts what the real drivers accept, with their semantics (:mod:`internvla_sim.controllers`, sampled at
every 2 ms physics substep): the arm's JointTrajectoryController on <controller_name>/joint_trajectory
(whole trajectories: replaced by the next, stamp 0 = now, a trajectory ending in the past rejected,
interpolated from the measured state at its arrival, linear or cubic, holding the last point); on the
WidowX the gripper as Interbotix runs it, a second JTC on <gripper_controller_name>/joint_trajectory with
the single joint ``left_finger`` (0.015 m closed .. 0.037 m open; the right finger mirrors it); on the
Franka the gripper as std_msgs/Float64 on gripper/command (opening 0..1, what the sim graphs use) and,
where franka_msgs is importable (it has no wheels for pip setups), as franka_gripper serves it:
franka_msgs/action/Grasp on ``grasp_action`` and Move on ``move_action`` (default franka_gripper/grasp,
franka_gripper/move). The fingers go to the goal's width (the Franka hand opens 0 .. 0.08 m) until they
stop moving; a Grasp then succeeds only if the final width lies within [width - epsilon.inner,
width + epsilon.outer], else the goal aborts (franka_gripper's rule: the default epsilons, 0.005 m, abort
when closing to 0 on a 4 cm block); a Move succeeds within ``MOVE_TOLERANCE`` of its width (our choice).
Speed and force are not emulated: the simulated fingers close at their own speed and force.

Clocks (docs/graph-contract.md): ``lockstep`` publishes the observation of step k and advances only
when a command stamped >= t_k arrived (or after ``lockstep_timeout`` wall seconds, holding the last
command and saying so once); ``realtime`` steps on the wall clock whatever the controllers do. Physics
and rendering run on a worker thread, never in a subscription callback.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TransformStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64, Header, String
from trajectory_msgs.msg import JointTrajectory

from internvla_core.gripper import grasp_succeeds
from internvla_core.image_conversion import depth_to_image_fields, rgb_to_image_fields
from internvla_core.rotations import matrix_to_quaternion
from internvla_core.stamps import split_seconds

from .controllers import JointTrajectoryControllerEmulation
from .env import OPTICAL_FRAMES, FrameTransform, SimEnv
from .scene import ROBOT_SCENES
from .tasks import TASKS

MOVE_TOLERANCE = 0.005  # [m] a Move ends within this of its width (franka_gripper does not say)
SETTLED_STEPS = 3  # control steps with the finger width changing by less than SETTLED_CHANGE: stopped
SETTLED_CHANGE = 2e-4  # [m]


def sim_stamp(seconds: float) -> Time:
    sec, nanosec = split_seconds(seconds)  # keeps the carry: 2.9999999 is 3 s, not 2 s
    return Time(sec=sec, nanosec=nanosec)


def transform_messages(transforms: list[FrameTransform], stamp: Time) -> list[TransformStamped]:
    """geometry_msgs/TransformStamped for each TF edge (header = parent frame, child_frame_id = child)."""
    messages = []
    for edge in transforms:
        msg = TransformStamped(header=Header(stamp=stamp, frame_id=edge.parent), child_frame_id=edge.child)
        t = msg.transform.translation
        t.x, t.y, t.z = (float(v) for v in edge.pose[:3, 3])
        r = msg.transform.rotation
        r.x, r.y, r.z, r.w = (float(v) for v in matrix_to_quaternion(edge.pose[:3, :3]))
        messages.append(msg)
    return messages


class SimNode(Node):
    def __init__(self, node_name: str = "sim", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

        def declare(name, default, text, low=None, high=None):
            descriptor = ParameterDescriptor(description=text, read_only=True)  # all read at start
            if isinstance(default, float) and low is not None:
                descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
            elif isinstance(default, int) and not isinstance(default, bool) and low is not None:
                descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
            self.declare_parameter(name, default, descriptor)

        declare("robot", "franka", f"simulated arm, one of {sorted(ROBOT_SCENES)}")
        declare(
            "task",
            "red_on_plate",
            f"a named task {sorted(TASKS)}, 'family' (the seed's procedural task, as the data engine draws"
            " it), or a family template id / skill (internvla_sim.task_family.TEMPLATES / SKILLS)",
        )
        declare("seed", 0, "layout seed", 0, 2**31 - 1)
        declare("clock_mode", "lockstep", "lockstep (advance when the controller answered) or realtime")
        declare("control_rate_hz", 10.0, "control steps per simulated second", 1.0, 500.0)
        declare("width", 320, "camera image width [px]", 16, 1920)
        declare("height", 240, "camera image height [px]", 16, 1080)
        declare("render_wrist", False, "also render the wrist camera (costs one more frame per step)")
        declare("publish_depth", True, "publish camera/depth/image_raw (32FC1 metres)")
        declare(
            "lockstep_timeout",
            10.0,
            "wall seconds to wait for a command before advancing anyway",
            0.1,
            3600.0,
        )
        declare(
            "controller_name",
            "arm_controller",
            "trajectories are read from <controller_name>/joint_trajectory",
        )
        declare(
            "gripper_controller_name",
            "gripper_controller",
            "WidowX: gripper trajectories are read from <gripper_controller_name>/joint_trajectory",
        )
        declare("gripper_joint", "left_finger", "WidowX: the gripper controller's joint")
        declare("grasp_action", "franka_gripper/grasp", "Franka: franka_msgs/action/Grasp (where installed)")
        declare("move_action", "franka_gripper/move", "Franka: franka_msgs/action/Move (where installed)")
        declare("gripper_action_timeout", 30.0, "Franka: wall seconds a Grasp / Move may take", 0.1, 3600.0)
        declare(
            "open_loop_control",
            False,
            "JTC emulation: start new trajectories from the last setpoint instead of the measured state",
        )
        declare(
            "allow_nonzero_velocity_at_trajectory_end",
            False,
            "JTC emulation: accept a moving last point (Humble's default true, Jazzy's false)",
        )
        declare("publish_tf", True, "publish /tf and /tf_static (only where tf2_msgs is installed)")
        declare("publish_robot_description", True, "latch the robot's URDF on robot_description")
        p = lambda name: self.get_parameter(name).value  # noqa: E731
        self.clock_mode = p("clock_mode")
        if self.clock_mode not in ("lockstep", "realtime"):
            raise ValueError(f"clock_mode must be lockstep or realtime, got '{self.clock_mode}'")
        if p("robot") not in ROBOT_SCENES:
            raise ValueError(f"robot must be one of {sorted(ROBOT_SCENES)}, got '{p('robot')}'")
        self.env = SimEnv(
            p("task"),
            p("seed"),
            1.0 / p("control_rate_hz"),
            p("width"),
            p("height"),
            p("render_wrist"),
            robot=p("robot"),
        )
        self.arm_joints = list(self.env.robot.arm_joints)
        self.finger_joints = list(self.env.robot.finger_joints)
        self.base_frame = self.env.robot.base_frame
        self.render_wrist, self.publish_depth = p("render_wrist"), p("publish_depth")
        self.lockstep_timeout = p("lockstep_timeout")
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub = {
            "image": self.create_publisher(Image, "camera/image_raw", 2),
            "depth": self.create_publisher(Image, "camera/depth/image_raw", 2),
            "info": self.create_publisher(CameraInfo, "camera/camera_info", 2),
            "wrist": self.create_publisher(Image, "wrist_camera/image_raw", 2),
            "wrist_info": self.create_publisher(CameraInfo, "wrist_camera/camera_info", 2),
            "joints": self.create_publisher(JointState, "joint_states", 10),
            "pose": self.create_publisher(PoseStamped, "ee_pose", 10),
            "clock": self.create_publisher(Clock, "/clock", 10),
            "success": self.create_publisher(Bool, "task/success", latched),
            "instruction": self.create_publisher(String, "task/instruction", latched),
        }
        self._tf_message = self._tf_message_type() if p("publish_tf") else None
        self._last_tf_time: float | None = None
        if self._tf_message is not None:
            self.pub["tf"] = self.create_publisher(self._tf_message, "/tf", 100)
            self.pub["tf_static"] = self.create_publisher(self._tf_message, "/tf_static", latched)
            static = [t for t in self.env.frame_transforms() if t.static]
            self.pub["tf_static"].publish(self._tf_message(transforms=transform_messages(static, Time())))
        if p("publish_robot_description"):
            self._publish_robot_description(latched)
        jtc_options = {
            "allow_nonzero_velocity_at_trajectory_end": p("allow_nonzero_velocity_at_trajectory_end"),
            "open_loop": p("open_loop_control"),
        }
        self.arm_controller = JointTrajectoryControllerEmulation(
            self.arm_joints, self.env.robot.home, **jtc_options
        )
        self.create_subscription(
            JointTrajectory, f"{p('controller_name')}/joint_trajectory", self._on_trajectory, 10
        )
        self.gripper_controller: JointTrajectoryControllerEmulation | None = None
        if self.env.robot.robot == "widowx":  # Interbotix: the gripper is a JTC on one finger joint
            robot = self.env.robot
            self._finger_range = (robot.finger_closed[0], robot.finger_open[0])
            self.gripper_controller = JointTrajectoryControllerEmulation(
                [p("gripper_joint")], [robot.finger_open[0]], **jtc_options
            )
            self.create_subscription(
                JointTrajectory,
                f"{p('gripper_controller_name')}/joint_trajectory",
                self._on_gripper_trajectory,
                10,
            )
        else:
            self.create_subscription(Float64, "gripper/command", self._on_gripper, 10)
        self._finger_width = float(np.sum(self.env.finger_positions()))
        self.gripper_servers: dict = {}
        if self.env.robot.robot == "franka":
            self._serve_franka_gripper(p("grasp_action"), p("move_action"), p("gripper_action_timeout"))
        self._arm_dofs: tuple[int, list[int]] | None = None
        self._lock = threading.Condition()
        self._pending_gripper: float | None = None
        self._command_stamp = -1.0
        self.steps = 0
        self.lockstep_timeouts = 0
        self._stop = threading.Event()
        self.pub["instruction"].publish(String(data=self.env.task.instruction))
        self._worker = threading.Thread(target=self._run, name="sim_worker", daemon=True)
        self._worker.start()

    def _tf_message_type(self):
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.get_logger().info(
                "tf2_msgs is not installed (pip setups): no /tf; RViz needs a full ROS install anyway"
            )
            return None
        return TFMessage

    def _publish_robot_description(self, qos: QoSProfile) -> None:
        from internvla_core.robot_assets import robot_description

        from .urdf_export import urdf_from_mjcf

        scene = self.env.robot
        description = robot_description(scene.description)
        if description.format == "urdf":
            xml = description.urdf_xml()
        else:  # the Menagerie Panda: exported with panda_* link names and the simulator's joint names
            xml = urdf_from_mjcf(description.path, scene.base_body, scene.tf_frame, scene.description)
        self.pub["description"] = self.create_publisher(String, "robot_description", qos)
        self.pub["description"].publish(String(data=xml))

    # ----------------------------------------------------------------------------------- commands
    def _submit(
        self, controller: JointTrajectoryControllerEmulation, msg: JointTrajectory, name: str
    ) -> float:
        """Hand a trajectory to a controller emulation (it says why if it refuses); returns its stamp."""
        now = self.env.time
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        reason = controller.submit(
            list(msg.joint_names),
            stamp,
            [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points],
            [list(p.positions) for p in msg.points],
            [list(p.velocities) for p in msg.points],
            now,
        )
        if reason:
            self.get_logger().warning(f"{name} trajectory rejected: {reason}", throttle_duration_sec=5.0)
        return now if stamp == 0.0 else stamp

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        stamp = self._submit(self.arm_controller, msg, "arm")
        with self._lock:  # lock-step: any answer stamped for this step lets the sim advance
            self._command_stamp = max(self._command_stamp, stamp)
            self._lock.notify_all()

    def _on_gripper_trajectory(self, msg: JointTrajectory) -> None:
        self._submit(self.gripper_controller, msg, "gripper")

    def _control(self, env: SimEnv) -> None:
        """Every physics substep: the controllers' setpoints to the simulated servos."""
        if self._arm_dofs is None or self._arm_dofs[0] != id(env.model):
            self._arm_dofs = (id(env.model), [int(env.model.joint(j).dofadr[0]) for j in self.arm_joints])
        q = env.arm_positions()
        dq = env.data.qvel[self._arm_dofs[1]].copy()
        target = self.arm_controller.update(env.time, q, dq)
        opening = self._pending_gripper
        if self.gripper_controller is not None:
            finger = float(env.finger_positions()[0])
            closed, opened = self._finger_range
            position = self.gripper_controller.update(env.time, [finger])[0]
            opening = (position - closed) / (opened - closed)
        env.apply_joint_targets(target, None if opening is None else float(np.clip(opening, 0.0, 1.0)))

    def _serve_franka_gripper(self, grasp_name: str, move_name: str, timeout: float) -> None:
        """franka_gripper's Grasp and Move action servers, where franka_msgs is installed."""
        try:
            from franka_msgs.action import Grasp, Move
        except ImportError:
            self.get_logger().info(
                "franka_msgs is not installed: the gripper listens on gripper/command only"
            )
            return
        from rclpy.action import ActionServer
        from rclpy.callback_groups import ReentrantCallbackGroup

        self._gripper_timeout = timeout
        group = ReentrantCallbackGroup()  # an execution waits for the simulation, others still answer
        for kind, action, name in (("grasp", Grasp, grasp_name), ("move", Move, move_name)):
            self.gripper_servers[kind] = ActionServer(
                self,
                action,
                name,
                lambda handle, kind=kind, action=action: self._execute_gripper(handle, kind, action),
                callback_group=group,
            )

    def _execute_gripper(self, goal_handle, kind: str, action):
        """Fingers to the goal's width until they stop; success by franka_gripper's rule (see the top)."""
        goal, result = goal_handle.request, action.Result()
        max_width = float(np.sum(self.env.robot.finger_open))
        if not (np.isfinite(goal.width) and 0.0 <= goal.width <= max_width + 1e-9):
            result.success, result.error = False, f"width {goal.width} outside [0, {max_width:.3f}] m"
            goal_handle.abort()
            return result
        with self._lock:
            self._pending_gripper = float(goal.width / max_width)
        final = self._wait_fingers_settled()
        if final is not None:  # the hand measures 0 .. max (simulated fingers squeezed shut read below 0)
            final = min(max(final, 0.0), max_width)
        if final is None:
            result.success, result.error = (
                False,
                "the fingers did not settle in time (or the simulator stopped)",
            )
        elif kind == "grasp":
            inner, outer = goal.epsilon.inner, goal.epsilon.outer
            result.success = grasp_succeeds(goal.width, inner, outer, final)
            if not result.success:
                result.error = f"final width {final:.4f} m outside [{goal.width - inner:.4f}, {goal.width + outer:.4f}] m"
        else:
            result.success = abs(final - goal.width) <= MOVE_TOLERANCE
            if not result.success:
                result.error = f"final width {final:.4f} m, asked {goal.width:.4f} m (blocked?)"
        if final is not None:
            goal_handle.publish_feedback(action.Feedback(current_width=final))
        if result.success:
            goal_handle.succeed()
        else:
            self.get_logger().warning(f"gripper {kind} aborted: {result.error}")
            goal_handle.abort()
        return result

    def _wait_fingers_settled(self) -> float | None:
        """The finger width once it changed by < SETTLED_CHANGE for SETTLED_STEPS steps; None on timeout."""
        deadline = time.monotonic() + self._gripper_timeout
        last, stable = None, 0
        with self._lock:
            seen = self.steps
            while stable < SETTLED_STEPS:
                remaining = deadline - time.monotonic()
                changed = self._lock.wait_for(
                    lambda seen=seen: self.steps > seen or self._stop.is_set(), timeout=max(0.0, remaining)
                )
                if not changed or self._stop.is_set():
                    return None
                seen, width = self.steps, self._finger_width
                stable = stable + 1 if last is not None and abs(width - last) < SETTLED_CHANGE else 0
                last = width
        return last

    def _on_gripper(self, msg: Float64) -> None:
        if not np.isfinite(msg.data):
            self.get_logger().warning("gripper command ignored: not finite", throttle_duration_sec=5.0)
            return
        with self._lock:
            self._pending_gripper = float(msg.data)

    # ----------------------------------------------------------------------------------- loop
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.env.close()  # the renderer's GL context belongs to this thread

    def _loop(self) -> None:
        last_success = None
        while not self._stop.is_set() and rclpy.ok(context=self.context):
            t_k = self.env.time
            self._publish_observation(t_k)
            success = self.env.success()
            if success != last_success:
                self.pub["success"].publish(Bool(data=success))
                last_success = success
            wall_start = time.monotonic()
            with self._lock:
                if self.clock_mode == "lockstep":
                    answered = False
                    while not answered and time.monotonic() - wall_start < self.lockstep_timeout:
                        answered = self._lock.wait_for(
                            lambda t_k=t_k: self._stop.is_set() or self._command_stamp >= t_k - 1e-9,
                            timeout=1.0,
                        )
                        if not answered:  # late joiners get the current observation again (same stamp)
                            self._lock.release()
                            try:
                                self._publish_observation(t_k)
                            finally:
                                self._lock.acquire()
                    if not answered:
                        self.lockstep_timeouts += 1
                        if self.lockstep_timeouts == 1:
                            self.get_logger().warning(
                                f"lockstep: no command for step {self.steps} within {self.lockstep_timeout} s; "
                                "holding and advancing"
                            )
            if self._stop.is_set():
                return
            self.env.step(self._control)
            with self._lock:  # the gripper actions wait for the fingers to settle
                self.steps += 1
                self._finger_width = float(np.sum(self.env.finger_positions()))
                self._lock.notify_all()
            if self.clock_mode == "realtime":
                time.sleep(max(0.0, self.env.control_dt - (time.monotonic() - wall_start)))

    def _camera_info(self, header: Header, camera: str) -> CameraInfo:
        k = self.env.camera_intrinsics(camera)
        spec = next(c for c in self.env.cameras if c.name == camera)
        info = CameraInfo(header=header, width=spec.width, height=spec.height, distortion_model="plumb_bob")
        info.d = [0.0] * 5
        info.k = k.ravel().tolist()
        info.r = np.eye(3).ravel().tolist()
        info.p = np.hstack([k, np.zeros((3, 1))]).ravel().tolist()
        return info

    def _publish_observation(self, t: float) -> None:
        stamp = sim_stamp(t)
        self.pub["clock"].publish(Clock(clock=stamp))
        env = self.env
        header = Header(stamp=stamp, frame_id=OPTICAL_FRAMES["third_person"])
        self.pub["image"].publish(Image(header=header, **rgb_to_image_fields(env.render("third_person"))))
        if self.publish_depth:
            self.pub["depth"].publish(
                Image(header=header, **depth_to_image_fields(env.render("third_person", depth=True)))
            )
        self.pub["info"].publish(self._camera_info(header, "third_person"))
        if self.render_wrist:
            wrist_header = Header(stamp=stamp, frame_id=OPTICAL_FRAMES["wrist"])
            self.pub["wrist"].publish(Image(header=wrist_header, **rgb_to_image_fields(env.render("wrist"))))
            self.pub["wrist_info"].publish(self._camera_info(wrist_header, "wrist"))
        pose = env.hand_pose()
        pose_msg = PoseStamped(header=Header(stamp=stamp, frame_id=self.base_frame))
        pose_msg.pose.position.x, pose_msg.pose.position.y, pose_msg.pose.position.z = (
            float(v) for v in pose[:3, 3]
        )
        q = matrix_to_quaternion(pose[:3, :3])
        o = pose_msg.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in q)
        self.pub["pose"].publish(pose_msg)
        joints = JointState(
            header=Header(stamp=stamp, frame_id=self.base_frame), name=self.arm_joints + self.finger_joints
        )
        joints.position = [float(v) for v in np.concatenate([env.arm_positions(), env.finger_positions()])]
        self.pub["joints"].publish(joints)
        if self._tf_message is not None and t != self._last_tf_time:  # tf2 warns on a repeated stamp
            self._last_tf_time = t
            moving = [edge for edge in env.frame_transforms() if not edge.static]
            self.pub["tf"].publish(self._tf_message(transforms=transform_messages(moving, stamp)))

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._worker.join(timeout=10)

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def main(args=None) -> None:
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init(args=args)
    node = SimNode()
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
