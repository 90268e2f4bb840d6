"""sim_node: the MuJoCo scene behind the interfaces real drivers and controllers expose.

Robots (parameter ``robot``): ``franka`` (Panda, base frame panda_link0) and ``widowx`` (WidowX 250
6DOF, base frame wx250s/base_link). Publishes camera/image_raw, camera/depth/image_raw, camera/camera_info,
wrist_camera/* (render_wrist), joint_states, ee_pose, task/success and task/instruction (latched),
robot_description (latched URDF), /clock, and /tf + /tf_static where tf2_msgs is installed. Accepts
what the real drivers accept (internvla_sim.controllers): JointTrajectoryController trajectories on
<controller_name>/joint_trajectory; the WidowX gripper as a second JTC, the Franka gripper on
gripper/command (Float64 opening) and franka_gripper's Grasp/Move (internvla_sim.franka_gripper_server).

Lifecycle (the demo starts the simulated clock only once every model is loaded): configure builds the
scene and publishes /clock at its current time once a second (paused); activate publishes the latched
topics and starts stepping; deactivate pauses (sim time stays, /clock paused again); cleanup drops the
scene. ``lockstep`` advances only when a command stamped >= t_k arrived or after lockstep_timeout
(internvla_core.sim_stepping); ``realtime`` steps on the wall clock. Physics and rendering run on a
worker thread, never in a subscription callback. Parameters: params/sim.yaml.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Bool, Float64, String
from trajectory_msgs.msg import JointTrajectory

from internvla_core.sim_stepping import LockstepClock
from internvla_ros_common import qos
from internvla_ros_common.conversions import to_stamp as sim_stamp
from internvla_ros_common.lifecycle import ManagedNode
from internvla_ros_common.node_main import main_for
from internvla_ros_common.params import Params

from .controllers import JointTrajectoryControllerEmulation, SimServos
from .env import SimEnv
from .franka_gripper_server import FrankaGripperServer
from .sim_messages import (
    ObservationPublisher,
    robot_description_xml,
    tf_message_type,
    trajectory_fields,
    transform_messages,
)
from .tasks import TASKS

SCHEMA = Path(__file__).parent / "params" / "sim.yaml"


class SimNode(ManagedNode):
    """A simulated arm, gripper and RGB-D camera; stepping only while active."""

    def __init__(self, node_name: str = "sim", **kwargs) -> None:
        super().__init__(node_name, SCHEMA, **kwargs)
        self.env: SimEnv | None = None
        self.clock: LockstepClock | None = None
        self.pub: dict = {}
        self._worker: threading.Thread | None = None
        self.servos: SimServos | None = None
        self.observation: ObservationPublisher | None = None
        self._tf_message = self._clock_pub = self._paused_timer = None
        params = self.param_listener.get_params()
        self.gripper_server = None
        if params.robot == "franka" and FrankaGripperServer.available():
            self.gripper_server = FrankaGripperServer(
                self, params.grasp_action, params.move_action, self._grip
            )
        elif params.robot == "franka":
            self.get_logger().info(
                "franka_msgs is not installed: the gripper listens on gripper/command only"
            )

    # ------------------------------------------------------------------------------- lifecycle
    def check_params(self, params: Params) -> list[str]:
        from .task_family import SKILLS, TEMPLATES

        if params.task in TASKS or params.task in ("family", *TEMPLATES, *SKILLS):
            return []
        return [
            f"Parameter 'task' with the value '{params.task}' must be one of {sorted(TASKS)}, 'family', "
            "a template id or a skill of internvla_sim.task_family"
        ]

    @property
    def steps(self) -> int:
        """Control steps simulated since configure."""
        return self.clock.steps if self.clock is not None else 0

    @property
    def lockstep_timeouts(self) -> int:
        """Steps that advanced without a command (lockstep_timeout passed)."""
        return self.clock.timeouts if self.clock is not None else 0

    def setup(self, params: Params) -> None:
        rate, size = params.control_rate_hz, (params.width, params.height)
        self.env = SimEnv(
            params.task, params.seed, 1.0 / rate, *size, params.render_wrist, robot=params.robot
        )
        robot = self.env.robot
        self.arm_joints, self.finger_joints = list(robot.arm_joints), list(robot.finger_joints)
        self.clock = LockstepClock(params.lockstep_timeout)
        latched, lifecycle = qos.STATUS_LATCHED, self.create_lifecycle_publisher
        self.pub = {
            "image": lifecycle(Image, "camera/image_raw", 2),
            "depth": lifecycle(Image, "camera/depth/image_raw", 2),
            "info": lifecycle(CameraInfo, "camera/camera_info", 2),
            "wrist": lifecycle(Image, "wrist_camera/image_raw", 2),
            "wrist_info": lifecycle(CameraInfo, "wrist_camera/camera_info", 2),
            "joints": lifecycle(JointState, "joint_states", 10),
            "pose": lifecycle(PoseStamped, "ee_pose", 10),
            "success": lifecycle(Bool, "task/success", latched),
            "instruction": lifecycle(String, "task/instruction", latched),
            "description": lifecycle(String, "robot_description", latched),
        }
        self._tf_message = tf_message_type() if params.publish_tf else None
        if params.publish_tf and self._tf_message is None:
            self.get_logger().info(
                "tf2_msgs is not installed (pip setups): no /tf; RViz needs a full ROS install"
            )
        if self._tf_message is not None:
            self.pub["tf"] = lifecycle(self._tf_message, "/tf", 100)
            self.pub["tf_static"] = lifecycle(self._tf_message, "/tf_static", latched)
        # /clock is a plain publisher: while inactive the sim is paused and says at which time
        self._clock_pub = self.create_publisher(Clock, "/clock", 10)
        self._paused_timer = self.create_timer(1.0, self._publish_paused_clock)
        self.servos = SimServos(
            robot,
            params.gripper_joint,
            params.allow_nonzero_velocity_at_trajectory_end,
            params.open_loop_control,
        )
        joint_names = self.arm_joints + self.finger_joints
        self.observation = ObservationPublisher(
            self.pub, self._clock_pub, params, joint_names, self._tf_message
        )

    def activate(self) -> None:
        params, env = self.params, self.env
        self.pub["instruction"].publish(String(data=env.task.instruction))
        if params.publish_robot_description:
            self.pub["description"].publish(String(data=robot_description_xml(env.robot)))
        if self._tf_message is not None:
            static = transform_messages([t for t in env.frame_transforms() if t.static], sim_stamp(0.0))
            self.pub["tf_static"].publish(self._tf_message(transforms=static))
        topic = f"{params.controller_name}/joint_trajectory"
        self.managed_subscription(JointTrajectory, topic, self._on_trajectory, qos.COMMAND)
        if self.servos.gripper is not None:
            topic = f"{params.gripper_controller_name}/joint_trajectory"
            self.managed_subscription(JointTrajectory, topic, self._on_gripper_trajectory, qos.COMMAND)
        else:
            self.managed_subscription(Float64, "gripper/command", self._on_gripper, qos.COMMAND)
        self.clock.start()
        self._worker = threading.Thread(target=self._run, name="sim_worker", daemon=True)
        self._worker.start()

    def deactivate(self) -> None:
        if self.clock is not None:
            self.clock.stop()
        if self._worker is not None:
            self._worker.join(timeout=10)
            self._worker = None

    def teardown(self) -> None:
        self.deactivate()
        if self._paused_timer is not None:
            self.destroy_timer(self._paused_timer)
        if self._clock_pub is not None:
            self.destroy_publisher(self._clock_pub)
        if self.env is not None:
            self.env.close()
        self._paused_timer = self._clock_pub = self.env = self.servos = self.observation = None
        self.pub = {}

    # ------------------------------------------------------------------------------- commands
    def _submit(
        self, controller: JointTrajectoryControllerEmulation, msg: JointTrajectory, name: str
    ) -> float:
        """Hand a trajectory to a controller emulation (it says why if it refuses); returns its stamp."""
        now, fields = self.env.time, trajectory_fields(msg)
        reason = controller.submit(*fields, now)
        if reason:
            self.get_logger().warning(f"{name} trajectory rejected: {reason}", throttle_duration_sec=5.0)
        return now if fields[1] == 0.0 else fields[1]

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        self.clock.command(self._submit(self.servos.arm, msg, "arm"))

    def _on_gripper_trajectory(self, msg: JointTrajectory) -> None:
        self._submit(self.servos.gripper, msg, "gripper")

    def _on_gripper(self, msg: Float64) -> None:
        if not np.isfinite(msg.data):
            self.get_logger().warning("gripper command ignored: not finite", throttle_duration_sec=5.0)
            return
        self._grip(float(msg.data))

    def _grip(self, opening: float) -> None:
        """The gripper opening (0 closed .. 1 open) from gripper/command or franka_gripper's actions."""
        if self.servos is not None:
            self.servos.set_opening(opening)

    # ------------------------------------------------------------------------------- stepping
    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.env.close()  # the renderer's GL context belongs to this thread (a new one next time)

    def _loop(self) -> None:
        last_success, clock = None, self.clock
        while not clock.stopped and rclpy.ok(context=self.context):
            t_k = self.env.time
            self.observation.publish(self.env, t_k)
            if (success := self.env.success()) != last_success:
                self.pub["success"].publish(Bool(data=success))
                last_success = success
            wall_start = time.monotonic()
            if self.params.clock_mode == "lockstep":
                answered = clock.wait_for_command(
                    t_k, lambda t_k=t_k: self.observation.publish(self.env, t_k)
                )
                if not answered and clock.timeouts == 1 and not clock.stopped:
                    self.get_logger().warning(
                        f"lockstep: no command for step {clock.steps} within {clock.timeout} s; holding and advancing"
                    )
            if clock.stopped:
                return
            self.env.step(self.servos.control)
            clock.stepped(float(np.sum(self.env.finger_positions())))
            if self.params.clock_mode == "realtime":
                time.sleep(max(0.0, self.env.control_dt - (time.monotonic() - wall_start)))

    def _publish_paused_clock(self) -> None:
        if not self.is_active and self.env is not None:
            self._clock_pub.publish(Clock(clock=sim_stamp(self.env.time)))


main = main_for(SimNode, threads=2)

if __name__ == "__main__":
    main()
