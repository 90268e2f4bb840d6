"""chunk_executor: action chunks in, bounded robot commands out, at a fixed rate.

Parameters: params/chunk_executor.yaml (the README's table is generated from it); ``dry_run`` (default
true) publishes only executor/preview*. Decisions: ``internvla_core.executor_core`` (ensembling or chunk
streaming, limits, IK, watchdog, e-stop) and ``internvla_core.execution`` (settings, robot model, lock-step
gate, chunk trajectory plan, recovery, status content). This node converts, calls them and publishes.
Configure builds the core and the lifecycle publishers; activate subscribes and starts the control thread
(``tick_source`` state: one tick per joint_states stamp instead); deactivate sends the hold first. A hold
repeats the last *commanded* setpoint, never the measured one (re-commanded, an arm sags under gravity).
Backends ``joint_trajectory`` (chunk modes: ONE multi-point trajectory per chunk) and ``servo``
(``executor_servo``); gripper/command: std_msgs/Float64 opening. Robot errors (``executor_recovery``) latch
ROBOT_ERROR until ~/recover ran every step. ~/status each tick and event, /diagnostics each second.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String

from internvla_core.execution.chunk_input import add_chunk_message, end_of_goal, release_estop
from internvla_core.execution.chunk_plan import ChunkPlanFollower
from internvla_core.execution.lockstep import LockstepGate
from internvla_core.execution.report import ExecutorReport
from internvla_core.execution.robot_model import build_core, ik_from_urdf, install_ik, needs_description_topic
from internvla_core.execution.settings import build_settings
from internvla_core.executor_core import Command, ExecutorCore
from internvla_core.input_checks import Stamp
from internvla_core.latency import RateMeter
from internvla_core.robot_errors import RobotErrorMonitor
from internvla_core.status import StatusCode
from internvla_msgs.msg import ActionChunk
from internvla_msgs.srv import ReleaseEstop
from internvla_ros_common import qos
from internvla_ros_common.conversions import stamp_seconds
from internvla_ros_common.diagnostics import Updater
from internvla_ros_common.lifecycle import ManagedNode

from .executor_output import ExecutorOutput, diagnose
from .executor_recovery import ErrorRecovery, RecoveryLink  # noqa: F401 - tests ask which interfaces exist
from .executor_ros import lower_gil_switch_interval, start_control_loop, stop_control_loop
from .executor_servo import ServoCommandType, ServoLink, tf2_ros
from .executor_state import RobotState

SCHEMA_PATH = Path(__file__).with_name("params") / "chunk_executor.yaml"


class ChunkExecutorNode(ManagedNode):
    """Executes action chunks on a robot arm: bounded joint trajectories or MoveIt Servo commands."""

    SCHEMA_PATH = SCHEMA_PATH  # main()'s --help reads it

    def __init__(self, node_name: str = "chunk_executor", **kwargs) -> None:
        super().__init__(node_name, SCHEMA_PATH, **kwargs)
        self.core: ExecutorCore | None = None
        self.settings = self.servo = self.output = self.control_loop = self.gate = self.plan_follower = None
        self.robot_errors: RobotErrorMonitor | None = None
        self.report, self.rate_meter = ExecutorReport(), RateMeter()
        self.state = RobotState(lambda text: self.get_logger().warning(text, throttle_duration_sec=5.0))
        self.estop_input = False  # the estop topic's last value; the core latches it (core.estop_latched)
        # one command at a time: a tick on the control thread must not publish after the hold that
        # deactivate / e-stop / a stop chunk publishes from another thread
        self.command_lock = threading.Lock()
        # ~/recover, ~/release_estop and the recovery clients once per node (their names are read-only):
        # they answer "not configured" until configure, and never die with a cycle of the executor
        self.recovery = RecoveryLink(self, self.param_listener.get_params())
        self.create_service(ReleaseEstop, "~/release_estop", self._on_release_estop)
        self.diagnostics = Updater(self, period=1.0, hardware_id="internvla")  # also while unconfigured
        self.diagnostics.add("executor", lambda stat: diagnose(self, stat))

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ----------------------------------------------------------------------------------- lifecycle
    def setup(self, p) -> None:
        lower_gil_switch_interval(self, p.gil_switch_interval)
        distro = os.environ.get("ROS_DISTRO", "")
        settings = build_settings(p, distro, ServoCommandType is not None, tf2_ros is not None)
        for warning in settings.warnings:
            self.get_logger().warning(warning)
        self.joint_limits = (p.joint_lower or (), p.joint_upper or ())  # empty = the IK model's
        core, settings = build_core(settings, p.urdf_path, p.robot_description, *self.joint_limits)
        self.robot_errors = self.recovery.monitor(p, distro)
        self.settings, self.core, self.report = settings, core, ExecutorReport()
        self.plan_follower = ChunkPlanFollower(core, settings.period, settings.plan_budget, settings.lockstep)
        self.gate = LockstepGate(settings.mode) if settings.lockstep else None
        self.rate_meter = RateMeter(expected_period=settings.period)
        self.output = ExecutorOutput(self, p.controller_name)
        self.servo = ServoLink(self, settings) if settings.backend == "servo" else None
        if settings.dry_run:
            self.get_logger().warning("dry_run is true: commands go to executor/preview only")

    def activate(self) -> None:
        p, subscribe = self.params, self.managed_subscription
        self.core.reset(self.now_s())
        self.plan_follower.reset()
        subscribe(ActionChunk, "action_chunk", self._on_chunk, qos.COMMAND)
        subscribe(JointState, "joint_states", self._on_joints, 10)
        subscribe(PoseStamped, "ee_pose", self.state.on_pose, qos.SENSOR)  # best effort: any publisher
        subscribe(Bool, "estop", self._on_estop, 10)
        if needs_description_topic(self.settings, p.urdf_path, p.robot_description):
            subscribe(String, "robot_description", self._on_description, qos.STATUS_LATCHED)
            self.get_logger().info("waiting for the URDF on robot_description before commanding")
        if self.servo is not None:
            self.servo.activate()
        self.recovery.subscribe(p.robot_state_topic, p.error_watch_actions)
        if not self.settings.lockstep:
            period, priority = self.settings.period, p.thread_priority
            self.control_loop = start_control_loop(self, period, self._tick, priority)

    def deactivate(self) -> None:
        with self.command_lock:  # the base marked the node inactive: no tick publishes after this hold
            self.publish_hold("deactivated")
        stop_control_loop(self, self.control_loop)
        self.control_loop = None

    def teardown(self) -> None:
        stop_control_loop(self, self.control_loop)
        if self.servo is not None:
            self.servo.destroy()
        self.control_loop = self.servo = self.output = self.core = self.robot_errors = None

    # ----------------------------------------------------------------------------------- inputs
    def _on_chunk(self, msg: ActionChunk) -> None:
        if self.core is None or not self.is_active:
            return
        name = self.settings.embodiment.name
        if msg.embodiment and msg.embodiment != name:
            warning = f"chunk for embodiment '{msg.embodiment}' ignored: this executor runs '{name}'"
            return self.get_logger().warning(warning, throttle_duration_sec=5.0)
        with self.command_lock:  # counters and status in one piece with the ticks
            ended = end_of_goal(msg.command, msg.reason)
            if ended is not None:  # the policy ended its goal: hold now
                self.core.stop(ended[0])
                return self.publish_hold(*ended)
            stamps = Stamp.of(msg.observation_stamp), self.now_s(), Stamp.of(msg.header.stamp)
            reason = add_chunk_message(self.core, msg.command, msg.rows, msg.cols, msg.data, *stamps)
            if reason:
                self.get_logger().warning(
                    f"chunk {msg.sequence} refused: {reason}", throttle_duration_sec=5.0
                )
                return self.output.status(StatusCode.REJECTED_INPUT, f"chunk {msg.sequence}: {reason}")
        if self.gate is not None and self.gate.on_chunk(stamp_seconds(msg.observation_stamp)):
            self._tick()  # lock-step: the answer for the current observation is here

    def _on_joints(self, msg: JointState) -> None:
        self.state.on_joints(msg)
        if self.gate is None or not self.is_active:
            return
        stamp = stamp_seconds(msg.header.stamp)
        with self.command_lock:
            due = self.core.chunk_due(stamp)
        if self.gate.on_state(stamp, chunk_due=due):
            self._tick()

    def _on_description(self, msg: String) -> None:
        try:
            ik = ik_from_urdf(self.settings, msg.data)
            install_ik(self.core, ik, *self.joint_limits)
        except Exception as exc:  # a URDF without our frame/joints: say which parameter to fix
            self.get_logger().error(f"robot_description unusable for IK: {exc} (check ee_frame / arm_joints)")
            return
        self.get_logger().info(f"IK ready from robot_description ({len(ik.arm_joints)} joints)")

    def _on_estop(self, msg: Bool) -> None:
        """True latches the e-stop (hold at once); false alone releases nothing: ~/release_estop does."""
        self.estop_input = bool(msg.data)
        if self.estop_input and self.core is not None:
            with self.command_lock:
                if self.core.latch_estop():
                    self.get_logger().error("e-stop: holding position until released (~/release_estop)")
                    self.publish_hold("e-stop", StatusCode.ESTOP)

    def _on_release_estop(self, request, response):
        if self.core is None:
            response.success, response.message = False, "the executor is not configured"
            return response
        with self.command_lock:
            problem, message, released = release_estop(self.core, self.estop_input)
            if released:
                self.output.status(StatusCode.HOLDING, self.core.stop_reason)
        response.success, response.message = not problem, message
        if problem:  # one severity per call site (rclpy)
            self.get_logger().warning(f"release_estop refused: {problem}")
        else:
            self.get_logger().info(f"release_estop: {message}")
        return response

    # ----------------------------------------------------------------------------------- control
    def _measured_pose(self, joints):
        """FK of the joints with an IK model, else (backend servo) TF or the ee_pose topic."""
        tf_pose = self.servo.tf_pose if self.servo is not None and self.servo.tf_buffer is not None else None
        return self.state.measured_pose(joints, self.core.ik, tf_pose)

    def _tick(self) -> None:
        if self.is_active:
            self.rate_meter.tick()  # at wake-up: the period jitter of the loop itself
        with self.command_lock:
            self._tick_locked()

    def _tick_locked(self) -> None:
        core, s = self.core, self.settings
        if not self.is_active or core is None:
            return
        if self.robot_errors.blocked:  # the driver refuses commands: send nothing, say why
            return self.output.status(StatusCode.ROBOT_ERROR, self.robot_errors.reason)
        joints = self.state.arm_positions(s.arm_joints)
        if s.backend == "joint_trajectory" and core.ik is None:
            return self._not_ready("no IK model yet (waiting for robot_description)")
        pose = self._measured_pose(joints)
        if pose is None or (s.backend == "joint_trajectory" and joints is None):
            return self._not_ready("no robot state yet (joint_states / ee_pose)")
        now = self.gate.tick_time(self.now_s()) if self.gate is not None else self.now_s()
        if s.chunk_trajectory:
            self.plan_follower.follow(now)
        previous, previous_pose = core.last_commanded_joints, core.last_commanded
        stamps = self.state.stamps(joints, core.ik, uses_tf=s.pose_source == "tf" and self.servo is not None)
        command = core.tick(now, pose, joints, estop=self.estop_input, **stamps)
        out = (
            self.plan_follower.after_tick(command, previous, previous_pose, joints)
            if s.chunk_trajectory
            else None
        )
        if out is None:
            return self._publish(command, now)
        trajectory = self.output.trajectory(now, out.times, out.positions, out.velocities)
        self._publish(command, now, trajectory=trajectory, send_arm=out.send)

    def _not_ready(self, why: str) -> None:
        self.get_logger().warning(f"{why}: not commanding", throttle_duration_sec=5.0)
        self.output.status(StatusCode.NOT_READY, why)

    def publish_hold(self, reason: str, status: StatusCode = StatusCode.HOLDING) -> None:
        """The last *commanded* setpoint again, never the measured one (re-commanding it lets the arm sag)."""
        if self.core is None:
            return
        self.plan_follower.reset()  # motion after a hold starts a new trajectory
        joints = self.state.arm_positions(self.settings.arm_joints)
        pose = self._measured_pose(joints)
        if pose is not None:
            self._publish(self.core.hold_command(reason, pose, joints, status), self.now_s())

    def _publish(self, command: Command, stamp_s: float, trajectory=None, send_arm: bool = True) -> None:
        """Preview and (unless dry_run) send one command; ``trajectory`` replaces the single-point one."""
        measured = lambda: self._measured_pose(self.state.arm_positions(self.settings.arm_joints))  # noqa: E731
        self.output.command(command, stamp_s, trajectory, send_arm, measured)


def main(args=None) -> None:
    from .executor_ros import run_standalone

    run_standalone(ChunkExecutorNode, args)


if __name__ == "__main__":
    main()
