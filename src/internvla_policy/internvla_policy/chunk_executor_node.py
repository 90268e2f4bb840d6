"""chunk_executor: action chunks in, bounded robot commands out, at a fixed rate.

All decisions are in ``internvla_core.executor_core`` (ensembling or chunk streaming, embodiment
conversion, safety limits, IK, watchdog, e-stop); this node converts messages, runs the control
loop on a thread of its own (``internvla_core.control_loop``: absolute deadlines, SCHED_FIFO at
``thread_priority`` when granted, as ros2_control's update loop) and publishes. ``dry_run`` (default true) publishes only the preview
topics: nothing reaches the robot until you set it false.

Backends: ``joint_trajectory`` (IK -> trajectory_msgs/JointTrajectory for a joint_trajectory_controller)
and ``servo`` (MoveIt Servo on Jazzy/Kilted, decisions in ``internvla_core.servo``: after Servo accepted
``servo_command`` through ``servo/switch_command_type``, one stamped PoseStamped on
``servo/pose_target_cmds`` or TwistStamped on ``servo/delta_twist_cmds`` per tick, header.frame_id =
``servo_planning_frame``; on hold the last commanded pose again, or a zero twist; ``servo/status`` is
read back into /diagnostics; configure refuses an ``servo_incoming_command_timeout`` under two control
periods, and, unless dry_run, a missing moveit_msgs). The gripper gets a
std_msgs/Float64 opening fraction (0 closed, 1 open) on ``gripper/command``.

Chunk mode with the joint_trajectory backend (``chunk_trajectory``, default true): each new chunk goes to
the controller as ONE multi-point trajectory (``internvla_core.trajectory``): the current setpoint at
time 0, then the limited IK setpoints of the rows from the one for "now" at the control period,
central-difference velocities, zero at the last point; the next chunk replaces it before it ends. Between
chunks the ticks still run (watchdog, e-stop, limits, setpoint bookkeeping) but send nothing to the arm
unless they hold or the plan must change (a new chunk, a re-synchronisation, a hold before). In lock-step
simulation every tick must answer, so it re-sends the rest of the running trajectory from the knot of
"now" (same knots, same times: the controller's motion does not change). Ensemble mode and the servo
backend stream one command per tick.

``tick_source``: ``timer`` (realtime: the control thread) or ``state`` (lock-step simulation: one tick per new
joint_states stamp; in ensemble mode the tick waits for the chunk of that observation, see
docs/graph-contract.md).

Robot errors (``internvla_core.robot_errors``): the Franka's robot mode (``robot_state_topic``,
franka_msgs/FrankaRobotState, where franka_msgs is installed), aborted goals on the actions named in
``error_watch_actions`` (their ``_action/status`` topics) and the recovery controllers' states latch
ROBOT_ERROR: the executor then sends nothing (no trajectory, no hold, no gripper command) and reports
the reason on ~/status and /diagnostics. ``~/recover`` (internvla_msgs/Recover) runs the recovery steps
in order (Humble driver: deactivate ``controller_name`` + ``recovery_controllers`` first; then
franka_msgs/action/ErrorRecovery on ``error_recovery_action``, ``hardware_component`` active through
``controller_manager``/set_hardware_component_state, the controllers active through
``controller_manager``/switch_controller), answers with each step's outcome, and is refused while the
cause persists; after a success the executor holds (sending nothing) until a new chunk arrives, from the
measured pose.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
import rclpy
from action_msgs.msg import GoalStatus, GoalStatusArray
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, TwistStamped
from lifecycle_msgs.msg import State as LifecycleStateMsg
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64, Header, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from internvla_core.control_loop import ControlLoop, set_thread_realtime
from internvla_core.embodiments import EMBODIMENTS, get_embodiment
from internvla_core.executor_core import Command, ExecutorConfig, ExecutorCore
from internvla_core.input_checks import Stamp
from internvla_core.latency import RateMeter
from internvla_core.robot_errors import RecoveryConfig, RobotErrorMonitor, Step
from internvla_core.rotations import matrix_to_quaternion, quaternion_to_matrix
from internvla_core.safety import SafetyFilter, SafetyLimits
from internvla_core.servo import ServoConfig, ServoSession, distro_problem, pose_command, twist_command
from internvla_core.stamps import split_seconds
from internvla_core.status import StatusCode
from internvla_core.status import level as status_level
from internvla_core.status import text as status_text
from internvla_core.trajectory import ChunkTrajectoryPlanner, anchored_points, can_plan
from internvla_msgs.msg import ActionChunk, ExecutorStatus
from internvla_msgs.srv import Recover, ReleaseEstop

from .params import declare

try:  # MoveIt Servo's interfaces: full ROS installs with MoveIt only (not on PyPI)
    from moveit_msgs.msg import ServoStatus
    from moveit_msgs.srv import ServoCommandType
except ImportError:  # pragma: no cover - depends on the install
    ServoStatus = ServoCommandType = None

try:  # the Franka's robot mode and error recovery: franka_ros2 installs only (not on PyPI)
    from franka_msgs.action import ErrorRecovery
    from franka_msgs.msg import FrankaRobotState
except ImportError:  # pragma: no cover - depends on the install
    ErrorRecovery = FrankaRobotState = None

try:  # controller_manager's services (hardware component state, controller switch): ros2_control installs
    from controller_manager_msgs.srv import SetHardwareComponentState, SwitchController
except ImportError:  # pragma: no cover - depends on the install
    SetHardwareComponentState = SwitchController = None

try:  # the end-effector pose from TF (WidowX: no pose topic); full ROS installs only
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the install
    tf2_ros = None

PANDA_JOINTS = [f"joint{i}" for i in range(1, 8)]


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def pose_msg_to_matrix(msg: PoseStamped) -> np.ndarray:
    p, q = msg.pose.position, msg.pose.orientation
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix([q.x, q.y, q.z, q.w])
    out[:3, 3] = [p.x, p.y, p.z]
    return out


def matrix_to_pose_msg(matrix: np.ndarray, header: Header) -> PoseStamped:
    msg = PoseStamped(header=header)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in matrix[:3, 3])
    qx, qy, qz, qw = matrix_to_quaternion(matrix[:3, :3])
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = (
        float(qx),
        float(qy),
        float(qz),
        float(qw),
    )
    return msg


@dataclass(frozen=True)
class Settings:
    """Parameters read once on configure, so the control tick does no parameter lookups."""

    mode: str
    backend: str
    tick_source: str
    dry_run: bool
    time_from_start: float
    chunk_trajectory: bool  # chunk mode + joint_trajectory: one multi-point trajectory per chunk
    plan_budget: float  # share of a control period that planning a chunk trajectory may take per tick
    robot: str
    ee_frame: str
    arm_joints: tuple[str, ...]
    servo: ServoConfig | None = None  # backend servo: what MoveIt Servo expects
    pose_source: str = "ee_pose"  # measured pose without an IK model: ee_pose topic | tf


class ChunkExecutorNode(LifecycleNode):
    def __init__(self, node_name: str = "chunk_executor", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self.core: ExecutorCore | None = None
        self.settings: Settings | None = None
        self.rate_meter = RateMeter()
        self._joints: JointState | None = None
        self._joint_index: dict[str, int] = {}
        self._pose: PoseStamped | None = None
        self._estop = False  # the estop topic's last value; the core latches it (core.estop_latched)
        self._status: tuple[StatusCode, str] = (StatusCode.NOT_READY, "")
        self._rejections_reported = 0
        self._active = False
        self._last_state_stamp: float | None = None
        self._last_command: Command | None = None
        self._last_hold_reason = ""
        self._plan: dict | None = None  # the running chunk trajectory (chunk_trajectory)
        self._before_anchor: np.ndarray | None = None
        self._entities: list = []
        self.control_loop: ControlLoop | None = None
        # one command at a time: a tick running on the control thread must not publish after the hold
        # that deactivate / e-stop / a stop chunk publishes from another thread
        self._command_lock = threading.Lock()
        self.servo_session: ServoSession | None = None  # backend servo: command type accepted, status
        self._switch_client = None
        self._tf_buffer = None
        self.robot_errors: RobotErrorMonitor | None = None  # robot mode / aborted goals -> ROBOT_ERROR
        self._seen_aborts: set[bytes] = set()
        self._recovery_clients: dict = {}

    def _declare_parameters(self) -> None:
        declare(
            self,
            "embodiment",
            "widowx_bridge",
            "how model actions map to the robot: " + ", ".join(EMBODIMENTS),
        )
        declare(
            self,
            "mode",
            "ensemble",
            "ensemble (upstream: re-query every step, adaptive ensemble), chunk (stream chunks, blend the seams) "
            "or rtc (stream chunks made with policy_node rtc:=true, no blending)",
        )
        declare(
            self,
            "backend",
            "joint_trajectory",
            "joint_trajectory (IK -> JointTrajectory) or servo (PoseStamped + TwistStamped to MoveIt Servo)",
        )
        declare(self, "control_rate_hz", 0.0, "control rate [Hz]; 0 = the embodiment's rate", 0.0, 1000.0)
        declare(
            self,
            "thread_priority",
            0,
            "SCHED_FIFO priority (1-99) of the control thread (tick_source timer); 0 = normal scheduling. "
            "Real robots: 50, as ros2_control's controller_manager; needs CAP_SYS_NICE or an rtprio limit",
            0,
            99,
        )
        declare(
            self,
            "gil_switch_interval",
            0.0002,
            "lowers the process-wide sys.setswitchinterval to this [s] on configure (0 = leave it): the control "
            "thread waits up to this long for the GIL held by another thread; measured with the executor "
            "in its own process at 100 Hz, |period - 10 ms| p99 0.74 ms at Python's 5 ms, 0.24 ms at 0.2 ms",
            0.0,
            0.01,
        )
        declare(
            self,
            "tick_source",
            "timer",
            "timer (realtime) or state (one tick per joint_states stamp: lock-step simulation)",
        )
        declare(
            self,
            "robot",
            "panda",
            "IK model: 'panda' (bundled Menagerie Panda), 'urdf' (urdf_path, robot_description parameter, "
            "else the robot_description topic), or a name known to internvla_core.robot_assets",
        )
        declare(self, "urdf_path", "", "URDF file for IK when robot is 'urdf' (takes precedence)")
        declare(
            self,
            "robot_description",
            "",
            "URDF XML for IK when robot is 'urdf' and urdf_path is empty; empty = wait for the topic",
        )
        declare(self, "ee_frame", "hand", "end-effector frame of the IK model ('panda': hand)")
        declare(self, "arm_joints", PANDA_JOINTS, "arm joint names in command order")
        declare(
            self, "controller_name", "arm_controller", "commands go to <controller_name>/joint_trajectory"
        )
        declare(self, "workspace_min", [0.1, -0.6, 0.02], "workspace box lower corner, robot base frame [m]")
        declare(self, "workspace_max", [0.8, 0.6, 0.9], "workspace box upper corner, robot base frame [m]")
        declare(
            self,
            "max_translation_per_step",
            0.03,
            "largest end-effector translation per control step [m]",
            0.0001,
            0.5,
        )
        declare(
            self,
            "max_rotation_per_step",
            0.15,
            "largest end-effector rotation per control step [rad]",
            0.0001,
            3.14,
        )
        declare(self, "max_joint_velocity", 1.0, "joint speed limit applied to IK output [rad/s]", 0.01, 10.0)
        for name, side in (("joint_lower", "lower"), ("joint_upper", "upper")):
            # no default: unset = the IK model's limits; set = one value per arm joint (never wider)
            self.declare_parameter(
                name,
                Parameter.Type.DOUBLE_ARRAY,
                ParameterDescriptor(
                    type=ParameterType.PARAMETER_DOUBLE_ARRAY,
                    description=f"joint position {side} limits [rad], one per arm joint; unset = the IK model's",
                ),
            )
        declare(self, "gripper_min", 0.0, "smallest gripper opening sent (0 = fully closed)", 0.0, 1.0)
        declare(self, "gripper_max", 1.0, "largest gripper opening sent (1 = fully open)", 0.0, 1.0)
        declare(
            self, "watchdog_timeout", 1.0, "hold when no fresh chunk arrived for this long [s]", 0.01, 60.0
        )
        declare(
            self,
            "max_state_age",
            0.5,
            "hold (STALE_STATE, ERROR diagnostic) when the joint_states / ee_pose used is older than this [s]",
            0.01,
            10.0,
        )
        declare(
            self,
            "max_future_stamp",
            0.5,
            "refuse chunks (and states) stamped further than this ahead of the executor clock [s]",
            0.0,
            60.0,
        )
        declare(
            self, "seam_blend_steps", 3, "chunk mode: steps of cross-fade between consecutive chunks", 0, 50
        )
        declare(
            self,
            "seam_max_change",
            0.0,
            "chunk mode: largest change of a motion action dimension per step after a chunk switch "
            "(model units); 0 = off",
            0.0,
            10.0,
        )
        declare(
            self,
            "embodiment_warmup",
            True,
            "send the embodiment's warm-up action first, as upstream's client (LIBERO: 10 still steps)",
        )
        declare(
            self,
            "dry_run",
            True,
            "publish only executor/preview*: send nothing to the robot (default true: safe)",
        )
        declare(
            self, "time_from_start", 0.0, "JointTrajectory point time [s]; 0 = one control period", 0.0, 10.0
        )
        declare(
            self,
            "chunk_trajectory",
            True,
            "chunk mode, joint_trajectory backend: send each chunk as one multi-point trajectory "
            "(false: one single-point trajectory per tick, which a JTC executes stop-and-go)",
        )
        declare(
            self,
            "plan_budget",
            0.3,
            "chunk_trajectory: share of a control period that planning may take per tick (one IK solve per "
            "point, ~0.7 ms); the rest of the chunk is planned on the next ticks and the trajectory re-sent "
            "each time the plan doubles (at 10 Hz a 16-row chunk fits at once; at 100 Hz it takes a few ticks)",
            0.05,
            1.0,
        )
        declare(
            self,
            "servo_command",
            "pose",
            "backend servo: pose (PoseStamped on servo/pose_target_cmds) or twist (TwistStamped on "
            "servo/delta_twist_cmds); selected on Servo through servo/switch_command_type",
        )
        declare(
            self,
            "servo_planning_frame",
            "",
            "backend servo: Servo's planning frame (the move group's IK base frame), header.frame_id of "
            "every command and the frame of the measured pose",
        )
        declare(
            self,
            "servo_incoming_command_timeout",
            0.1,
            "backend servo: the incoming_command_timeout Servo runs with [s] (moveit_servo default 0.1); "
            "must cover 2 control periods or Servo halts between commands",
            0.0,
            10.0,
        )
        declare(
            self,
            "servo_command_in_type",
            "speed_units",
            "backend servo, twist: Servo's command_in_type (speed_units: m/s, rad/s; unitless: [-1, 1])",
        )
        declare(self, "servo_scale_linear", 0.4, "backend servo: Servo's scale.linear [m/s]", 0.001, 10.0)
        declare(
            self,
            "servo_scale_rotational",
            0.8,
            "backend servo: Servo's scale.rotational [rad/s]",
            0.001,
            10.0,
        )
        declare(
            self,
            "pose_source",
            "ee_pose",
            "measured end-effector pose without an IK model (backend servo): ee_pose (PoseStamped topic, "
            "best-effort QoS; Franka: /franka_robot_state_broadcaster/current_pose) or tf (servo_planning_frame "
            "-> ee_frame; WidowX, which publishes no pose topic)",
        )
        declare(
            self,
            "robot_state_topic",
            "/franka_robot_state_broadcaster/robot_state",
            "franka_msgs/FrankaRobotState whose robot_mode latches ROBOT_ERROR (REFLEX, USER_STOPPED, GUIDING, "
            "OTHER); '' = not watched; needs franka_msgs",
        )
        declare(
            self,
            "error_watch_actions",
            ["franka_gripper/grasp", "franka_gripper/move"],
            "actions whose aborted goals (read from <action>/_action/status) latch ROBOT_ERROR; [''] = none",
        )
        declare(
            self,
            "error_recovery_action",
            "/action_server/error_recovery",
            "~/recover: franka_msgs/action/ErrorRecovery action; '' = skip that step",
        )
        declare(self, "controller_manager", "/controller_manager", "~/recover: the controller_manager's name")
        declare(
            self,
            "hardware_component",
            "FrankaHardwareInterface",
            "~/recover: the ros2_control hardware component set active again (franka_ros2 whose hardware "
            "goes unconfigured on an FCI error); '' = skip that step",
        )
        declare(
            self,
            "recovery_controllers",
            ["joint_state_broadcaster", "franka_robot_state_broadcaster"],
            "~/recover: controllers re-activated with controller_name (Humble: deactivated first); [''] = none",
        )
        declare(
            self,
            "driver_distro",
            "",
            "~/recover: the ROS distro the driver runs ('' = ROS_DISTRO); humble: deactivate the controllers first",
        )
        declare(self, "recovery_step_timeout", 10.0, "~/recover: seconds each step may take", 0.1, 120.0)

    def p(self, name: str):
        return self.get_parameter(name).value

    # ----------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        interval = self.p("gil_switch_interval")
        if 0 < interval < sys.getswitchinterval():
            sys.setswitchinterval(interval)
            self.get_logger().info(
                f"Python GIL switch interval lowered to {interval * 1e3:.2f} ms (process-wide)"
            )
        try:
            self.embodiment = get_embodiment(self.p("embodiment"))
            backend, tick_source = self.p("backend"), self.p("tick_source")
            if backend not in ("joint_trajectory", "servo"):
                raise ValueError(f"backend must be joint_trajectory or servo, got '{backend}'")
            if tick_source not in ("timer", "state"):
                raise ValueError(f"tick_source must be timer or state, got '{tick_source}'")
            rate = self.p("control_rate_hz") or self.embodiment.control_rate_hz
            limits = SafetyLimits(
                workspace_min=tuple(self.p("workspace_min")),
                workspace_max=tuple(self.p("workspace_max")),
                max_translation_per_step=self.p("max_translation_per_step"),
                max_rotation_per_step=self.p("max_rotation_per_step"),
                max_joint_velocity=self.p("max_joint_velocity"),
                gripper_min=self.p("gripper_min"),
                gripper_max=self.p("gripper_max"),
            )
            config = ExecutorConfig(
                mode=self.p("mode"),
                control_period=1.0 / rate,
                watchdog_timeout=self.p("watchdog_timeout"),
                blend_steps=self.p("seam_blend_steps"),
                seam_max_change=self.p("seam_max_change"),
                warmup=self.p("embodiment_warmup"),
                limits=limits,
                max_state_age=self.p("max_state_age"),
                max_future_stamp=self.p("max_future_stamp"),
            )
            self.settings = Settings(
                mode=config.mode,
                backend=backend,
                tick_source=tick_source,
                dry_run=self.p("dry_run"),
                time_from_start=self.p("time_from_start") or config.control_period,
                chunk_trajectory=bool(self.p("chunk_trajectory"))
                and config.mode in ("chunk", "rtc")
                and backend == "joint_trajectory",
                plan_budget=self.p("plan_budget"),
                robot=self.p("robot"),
                ee_frame=self.p("ee_frame"),
                arm_joints=tuple(self.p("arm_joints")),
            )
            if backend == "servo":
                self._configure_servo(config.control_period, limits)
            self.core = ExecutorCore(self.embodiment, config, None)
            ik = self._make_ik() if backend == "joint_trajectory" else None
            if ik is not None:
                self._install_ik(ik)
        except Exception as exc:  # bad parameters / robot model: refuse the transition, say why
            self.get_logger().error(f"cannot configure the executor: {exc}")
            self.core = None
            return TransitionCallbackReturn.FAILURE
        self.period = config.control_period
        self.rate_meter = RateMeter(expected_period=self.period)
        self._entities = [
            self.create_subscription(ActionChunk, "action_chunk", self._on_chunk, 10),
            self.create_subscription(JointState, "joint_states", self._on_joints, 10),
            # best effort: matches reliable and best-effort publishers (franka_robot_state_broadcaster's)
            self.create_subscription(
                PoseStamped,
                "ee_pose",
                self._on_pose,
                QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT),
            ),
            self.create_subscription(Bool, "estop", self._on_estop, 10),
        ]
        if self._wants_description_topic():
            latched = QoSProfile(
                depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
            )
            self._entities.append(
                self.create_subscription(String, "robot_description", self._on_description, latched)
            )
            self.get_logger().info("waiting for the URDF on robot_description before commanding")
        self.traj_pub = self.create_publisher(
            JointTrajectory, f"{self.p('controller_name')}/joint_trajectory", 10
        )
        self.gripper_pub = self.create_publisher(Float64, "gripper/command", 10)
        self.servo_pub = self.create_publisher(PoseStamped, "servo/pose_target_cmds", 10)
        self.twist_pub = self.create_publisher(TwistStamped, "servo/delta_twist_cmds", 10)
        self._servo_interfaces()
        self.preview_pub = self.create_publisher(JointTrajectory, "executor/preview", 10)
        self.preview_pose_pub = self.create_publisher(PoseStamped, "executor/preview_pose", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.status_pub = self.create_publisher(ExecutorStatus, "~/status", 10)
        self.release_srv = self.create_service(ReleaseEstop, "~/release_estop", self._on_release_estop)
        self._configure_robot_errors()
        self.diag_timer = self.create_timer(
            1.0, self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup()
        )
        if self.settings.dry_run:
            self.get_logger().warning(
                "dry_run is true: commands go to executor/preview only (set dry_run:=false to move the robot)"
            )
        return TransitionCallbackReturn.SUCCESS

    def _configure_servo(self, period: float, limits: SafetyLimits) -> None:
        """Check what MoveIt Servo needs before anything is sent (ValueError says what to fix)."""
        servo = ServoConfig(
            command=self.p("servo_command"),
            planning_frame=self.p("servo_planning_frame"),
            ee_frame=self.p("ee_frame"),
            incoming_command_timeout=self.p("servo_incoming_command_timeout"),
            command_in_type=self.p("servo_command_in_type"),
            scale_linear=self.p("servo_scale_linear"),
            scale_rotational=self.p("servo_scale_rotational"),
        )
        problems = servo.problems(period)
        if distro_problem(os.environ.get("ROS_DISTRO", "")):
            problems.append(distro_problem(os.environ.get("ROS_DISTRO", "")))
        pose_source = self.p("pose_source")
        if pose_source not in ("ee_pose", "tf"):
            problems.append(f"pose_source must be ee_pose or tf, got '{pose_source}'")
        if pose_source == "tf" and tf2_ros is None:
            problems.append("pose_source tf needs tf2_ros (a full ROS install); use ee_pose")
        if ServoCommandType is None and not self.settings.dry_run:
            problems.append(
                "moveit_msgs is not installed: cannot switch Servo's command type nor read its status "
                "(use the Docker image, or dry_run:=true)"
            )
        if problems:
            raise ValueError("backend servo: " + "; ".join(problems))
        warning = servo.speed_warning(limits.max_translation_per_step, limits.max_rotation_per_step, period)
        if warning:
            self.get_logger().warning(warning)
        self.settings = replace(self.settings, servo=servo, pose_source=pose_source)
        self.servo_session = ServoSession(servo)

    def _servo_interfaces(self) -> None:
        """Servo's switch service and status (where moveit_msgs exists) and TF for the measured pose."""
        if self.servo_session is None:
            return
        if ServoCommandType is not None:
            self._switch_client = self.create_client(ServoCommandType, "servo/switch_command_type")
            self._entities.append(
                self.create_subscription(ServoStatus, "servo/status", self._on_servo_status, 10)
            )
        if self.settings.pose_source == "tf":
            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)

    def _configure_robot_errors(self) -> None:
        """Robot mode and aborted goals in, ROBOT_ERROR out; ~/recover and its clients (robot_errors)."""
        names = lambda name: [n for n in self.p(name) if n]  # noqa: E731 - [''] declares an empty list
        controllers = tuple(dict.fromkeys([self.p("controller_name"), *names("recovery_controllers")]))
        distro = self.p("driver_distro") or os.environ.get("ROS_DISTRO", "")
        manager = self.p("controller_manager")
        config = RecoveryConfig(
            error_recovery=bool(self.p("error_recovery_action")),
            hardware_component=self.p("hardware_component") if manager else "",
            controllers=controllers if manager else (),
            deactivate_first=RecoveryConfig.humble(distro),
        )
        self.robot_errors = RobotErrorMonitor(config)
        self._seen_aborts = set()
        topic = self.p("robot_state_topic")
        if topic and FrankaRobotState is not None:  # best effort: matches either publisher QoS
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
            self._entities.append(
                self.create_subscription(FrankaRobotState, topic, self._on_robot_state, qos)
            )
        elif topic:
            self.get_logger().info(f"franka_msgs is not installed: {topic} (robot mode) is not watched")
        for action in names("error_watch_actions"):
            self._entities.append(
                self.create_subscription(
                    GoalStatusArray,
                    f"{action}/_action/status",
                    lambda msg, action=action: self._on_goal_status(action, msg),
                    10,
                )
            )
        group = ReentrantCallbackGroup()  # answers to the recovery calls, while ~/recover waits for them
        self._recovery_clients = {}
        if config.error_recovery and ErrorRecovery is not None:
            from rclpy.action import ActionClient

            self._recovery_clients[Step.ERROR_RECOVERY] = ActionClient(
                self, ErrorRecovery, self.p("error_recovery_action"), callback_group=group
            )
        if manager and SetHardwareComponentState is not None:
            self._recovery_clients[Step.HARDWARE_ACTIVE] = self.create_client(
                SetHardwareComponentState, f"{manager}/set_hardware_component_state", callback_group=group
            )
            self._recovery_clients["switch"] = self.create_client(
                SwitchController, f"{manager}/switch_controller", callback_group=group
            )
        self.recover_srv = self.create_service(
            Recover, "~/recover", self._on_recover, callback_group=MutuallyExclusiveCallbackGroup()
        )

    def _wants_description_topic(self) -> bool:
        return (
            self.settings.backend == "joint_trajectory"
            and self.settings.robot == "urdf"
            and not self.p("urdf_path")
            and not self.p("robot_description")
        )

    def _make_ik(self):
        """IK from the bundled Panda, a URDF (file, parameter, later the topic) or robot_assets."""
        from internvla_core.kinematics import IKSolver

        robot, joints, frame = self.settings.robot, list(self.settings.arm_joints), self.settings.ee_frame
        if robot == "panda":
            return IKSolver.panda()
        if robot == "urdf":
            if self.p("urdf_path"):
                return IKSolver.from_urdf_file(self.p("urdf_path"), frame, joints)
            if self.p("robot_description"):
                return IKSolver.from_urdf_string(self.p("robot_description"), frame, joints)
            return None  # built when the robot_description topic delivers the URDF
        try:
            from internvla_core.robot_assets import robot_description
        except ImportError as exc:
            raise ValueError(
                f"robot '{robot}' needs internvla_core.robot_assets ({exc}); use robot:=panda or robot:=urdf"
            ) from None
        desc = robot_description(robot)
        ik = IKSolver.from_description(desc)
        # the description names the arm joints and the end effector: use them for commands too
        self.settings = replace(self.settings, arm_joints=tuple(desc.arm_joints), ee_frame=desc.ee_frame)
        return ik

    def _install_ik(self, ik) -> None:
        """Use this IK model and its joint position limits (or the configured ones) from now on."""
        lower, upper = tuple(ik.lower), tuple(ik.upper)
        for name, model_limits in (("joint_lower", lower), ("joint_upper", upper)):
            try:
                configured = list(self.p(name))
            except ParameterUninitializedException:
                continue
            if len(configured) != len(model_limits):
                raise ValueError(f"{name} needs {len(model_limits)} values (one per arm joint)")
            if name == "joint_lower":  # never wider than the robot model allows
                lower = tuple(max(a, b) for a, b in zip(configured, model_limits))
            else:
                upper = tuple(min(a, b) for a, b in zip(configured, model_limits))
        limits = replace(self.core.config.limits, joint_lower=lower, joint_upper=upper)
        self.core.config = replace(self.core.config, limits=limits)
        self.core.safety = SafetyFilter(limits)
        self.core.ik = ik

    def _on_description(self, msg: String) -> None:
        from internvla_core.kinematics import IKSolver

        if self.core is None:
            return
        try:
            ik = IKSolver.from_urdf_string(msg.data, self.settings.ee_frame, list(self.settings.arm_joints))
            self._install_ik(ik)
        except Exception as exc:  # a URDF without our frame/joints: say which parameter to fix
            self.get_logger().error(
                f"robot_description unusable for IK: {exc} (check ee_frame / arm_joints / joint limits)"
            )
            return
        self.get_logger().info(
            f"IK ready from robot_description ({len(ik.arm_joints)} joints, frame {self.settings.ee_frame})"
        )

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core.reset(self._now())
        self._plan = None
        if self.servo_session is not None:  # ask Servo for our command type again on every activation
            self.servo_session.reset()
        self._active = True
        self.control_loop = None
        if self.settings.tick_source == "timer":  # a thread of its own, not an rclpy timer (control_loop.py)
            self.control_loop = ControlLoop(
                self.period,
                self._tick,
                priority=self.p("thread_priority"),
                name="chunk_executor_control",
                on_error=self._on_tick_error,
            ).start()
            if self.control_loop.priority_error:
                self.get_logger().warning(
                    f"thread_priority {self.p('thread_priority')}: {self.control_loop.priority_error}; "
                    "the control thread runs at normal scheduling (period jitter of several ms under load)"
                )
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._command_lock:
            self._active = False
            self._publish_hold("deactivated")
        self._stop_control_loop()
        return super().on_deactivate(state)

    def _stop_control_loop(self) -> None:
        loop, self.control_loop = self.control_loop, None
        if loop is not None and not loop.stop(timeout=5.0):
            self.get_logger().error("the control thread did not stop within 5 s (a tick is stuck)")

    def _on_tick_error(self, exc: BaseException) -> None:
        """A tick raised: say so (once per 5 s) and command the hold; the loop keeps its period."""
        self.get_logger().error(
            f"control tick failed: {exc!r}; holding the last commanded setpoint", throttle_duration_sec=5.0
        )
        try:
            with self._command_lock:
                self._publish_hold(f"tick failed: {exc!r}")
        except Exception as hold_exc:  # the hold itself failed: nothing more to do than say it
            self.get_logger().error(
                f"hold after a failed tick failed too: {hold_exc!r}", throttle_duration_sec=5.0
            )

    def destroy_node(self) -> None:
        self._stop_control_loop()
        super().destroy_node()

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for entity in self._entities:
            self.destroy_subscription(entity)
        self._entities = []
        for publisher in (
            self.traj_pub,
            self.gripper_pub,
            self.servo_pub,
            self.twist_pub,
            self.preview_pub,
            self.preview_pose_pub,
            self.diag_pub,
            self.status_pub,
        ):
            self.destroy_publisher(publisher)
        self.destroy_timer(self.diag_timer)
        self.destroy_service(self.release_srv)
        self.destroy_service(self.recover_srv)
        for key, client in self._recovery_clients.items():
            if key == Step.ERROR_RECOVERY:
                client.destroy()  # an ActionClient
            else:
                self.destroy_client(client)
        self._recovery_clients, self.robot_errors = {}, None
        if self._switch_client is not None:
            self.destroy_client(self._switch_client)
            self._switch_client = None
        self.servo_session, self._tf_buffer = None, None
        self.core = None
        return TransitionCallbackReturn.SUCCESS

    # ----------------------------------------------------------------------------------- inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_chunk(self, msg: ActionChunk) -> None:
        if self.core is None or not self._active:
            return
        if msg.embodiment and msg.embodiment != self.embodiment.name:
            self.get_logger().warning(
                f"chunk for embodiment '{msg.embodiment}' ignored: this executor runs '{self.embodiment.name}'",
                throttle_duration_sec=5.0,
            )
            return
        if msg.command in (ActionChunk.STOP, ActionChunk.ABORT):  # the policy ended its goal: hold now
            aborted = msg.command == ActionChunk.ABORT
            reason = f"{'abort' if aborted else 'stop'}: {msg.reason or 'goal ended'}"
            with self._command_lock:
                self.core.stop(reason)
                self._publish_hold(reason, StatusCode.ABORTED if aborted else StatusCode.HOLDING)
            return
        with self._command_lock:  # counters and status in one piece with the ticks
            if msg.command != ActionChunk.CHUNK:
                reason = self.core.reject_chunk("unknown_command", f"unknown command {msg.command}")
            elif msg.rows * msg.cols != len(msg.data):
                reason = self.core.reject_chunk(
                    "shape", f"rows x cols = {msg.rows} x {msg.cols} but {len(msg.data)} values"
                )
            else:
                chunk = np.asarray(msg.data, dtype=np.float64).reshape(msg.rows, msg.cols)
                observation, header = Stamp.of(msg.observation_stamp), Stamp.of(msg.header.stamp)
                reason = self.core.add_chunk(chunk, observation, self._now(), header)
            if reason:
                self.get_logger().warning(
                    f"chunk {msg.sequence} refused: {reason}", throttle_duration_sec=5.0
                )
                self._publish_status(StatusCode.REJECTED_INPUT, f"chunk {msg.sequence}: {reason}")
                return
        self._last_chunk_obs_stamp = stamp_seconds(msg.observation_stamp)
        self._lockstep_tick_if_answered()  # lock-step: the answer for the current observation is here

    def _lockstep_tick_if_answered(self) -> None:
        """Lock-step ensemble mode: tick once when both the state and the chunk of one observation arrived.

        The chunk can overtake that observation's joint_states (the image is published first and the
        model can be fast), so both callbacks check; each observation stamp is ticked at most once.
        """
        state = self._last_state_stamp
        chunk = getattr(self, "_last_chunk_obs_stamp", None)
        if self.settings.tick_source != "state" or state is None or chunk is None:
            return
        if abs(chunk - state) < 1e-6 and getattr(self, "_last_ticked_stamp", None) != state:
            self._last_ticked_stamp = state
            self._tick()

    def _on_joints(self, msg: JointState) -> None:
        if self._joints is None or list(msg.name) != list(self._joints.name):
            self._joint_index = {name: i for i, name in enumerate(msg.name)}
        self._joints = msg
        if self.settings is not None and self.settings.tick_source == "state" and self._active:
            stamp = stamp_seconds(msg.header.stamp)
            if stamp != self._last_state_stamp:
                self._last_state_stamp = stamp
                if self.settings.mode in ("chunk", "rtc"):
                    self._tick()
                else:
                    self._lockstep_tick_if_answered()

    def _on_pose(self, msg: PoseStamped) -> None:
        self._pose = msg

    def _on_servo_status(self, msg) -> None:
        session = self.servo_session
        if session is None:
            return
        before = session.status.name if session.status is not None else None
        info = session.on_status(msg.code, msg.message, self._now())
        if info.name != before and info.level != "ok":
            log = self.get_logger().error if info.level == "error" else self.get_logger().warning
            log(f"MoveIt Servo: {info.name} ({info.meaning})")

    def _on_estop(self, msg: Bool) -> None:
        """True latches the e-stop (hold at once); false alone releases nothing: ~/release_estop does."""
        self._estop = bool(msg.data)
        if not self._estop or self.core is None:
            return
        with self._command_lock:
            if self.core.latch_estop():
                self.get_logger().error("e-stop: holding position until released (~/release_estop)")
                self._publish_hold("e-stop", StatusCode.ESTOP)

    def _on_release_estop(self, request, response):
        if self.core is None:
            response.success, response.message = False, "the executor is not configured"
            return response
        with self._command_lock:
            latched = self.core.estop_latched
            problem = self.core.release_estop(input_active=self._estop)
            if not problem and latched:
                self._publish_status(StatusCode.HOLDING, self.core.stop_reason)
        response.success = not problem
        response.message = problem or (
            "e-stop released: holding until a new chunk arrives" if latched else "no e-stop was latched"
        )
        if problem:  # one severity per call site (rclpy)
            self.get_logger().warning(f"release_estop refused: {problem}")
        else:
            self.get_logger().info(f"release_estop: {response.message}")
        return response

    # ----------------------------------------------------------------------------------- robot errors
    def _on_robot_state(self, msg) -> None:
        monitor = self.robot_errors
        if monitor is None:
            return
        stamp = stamp_seconds(msg.header.stamp) if msg.header.stamp.sec or msg.header.stamp.nanosec else None
        with self._command_lock:
            self._robot_error(monitor.on_robot_mode(msg.robot_mode, stamp))

    def _on_goal_status(self, action: str, msg: GoalStatusArray) -> None:
        """Each goal of ``action`` seen ABORTED latches once (the status lists goals until they expire)."""
        monitor = self.robot_errors
        if monitor is None:
            return
        for status in msg.status_list:
            goal = bytes(status.goal_info.goal_id.uuid)
            if status.status != GoalStatus.STATUS_ABORTED or goal in self._seen_aborts:
                continue
            if len(self._seen_aborts) > 1000:
                self._seen_aborts.clear()
            self._seen_aborts.add(goal)
            with self._command_lock:
                self._robot_error(monitor.on_goal_aborted(action, f"goal {goal.hex()[:8]}"))

    def _robot_error(self, reason: str) -> None:
        """A newly latched robot error (command lock held): stop, forget the setpoint, report."""
        if not reason or self.core is None:
            return
        self.get_logger().error(f"robot error: {reason}; sending nothing until ~/recover")
        self.core.stop(f"robot error: {reason}")
        # the arm stopped wherever the reflex left it: a hold of the old setpoint must never be sent
        self.core.last_commanded = self.core.last_commanded_joints = None
        self._plan = None
        self._publish_status(StatusCode.ROBOT_ERROR, reason)

    def _robot_blocked(self) -> bool:
        return self.robot_errors is not None and self.robot_errors.blocked

    def _on_recover(self, request, response):
        """Run the recovery steps in order (each waits for its answer); stop at the first failure."""
        monitor = self.robot_errors
        if monitor is None or self.core is None:
            response.success, response.message = False, "the executor is not configured"
            return response
        with self._command_lock:
            missing = self._recovery_missing()
            problem, steps = ("", ()) if missing else monitor.start_recovery()
        problem = missing or problem
        if problem:
            response.success, response.message = False, f"recovery refused: {problem}"
            self.get_logger().warning(response.message)
            return response
        self.get_logger().warning(f"recovering from: {monitor.reason} ({', '.join(s.value for s in steps)})")
        for step in steps:
            ok, detail = self._run_recovery_step(step)
            with self._command_lock:
                line = monitor.step_result(step, ok, detail)
                self._publish_status(StatusCode.ROBOT_ERROR, f"recovery: {line}")
            response.steps.append(line)
            if ok:  # one severity per call site (rclpy)
                self.get_logger().info(f"recovery step {line}")
            else:
                self.get_logger().error(f"recovery step {line}")
            if not ok:
                response.success, response.message = False, f"recovery failed: {monitor.reason}"
                return response
        with self._command_lock:
            monitor.finish(self._now())
            self.core.stop("robot error recovered: waiting for a new chunk")
            self.core.last_commanded = self.core.last_commanded_joints = None
            self._publish_status(StatusCode.HOLDING, self.core.stop_reason)
        response.success = True
        response.message = "recovered: holding (sending nothing) until a new chunk arrives"
        self.get_logger().info(response.message)
        return response

    def _recovery_missing(self) -> str:
        """What this install lacks for the configured steps ('' = nothing)."""
        steps = self.robot_errors.config.steps()
        missing = []
        if Step.ERROR_RECOVERY in steps and Step.ERROR_RECOVERY not in self._recovery_clients:
            missing.append("franka_msgs (ErrorRecovery)")
        needs_manager = Step.HARDWARE_ACTIVE in steps or Step.ACTIVATE_CONTROLLERS in steps
        if needs_manager and "switch" not in self._recovery_clients:
            missing.append("controller_manager_msgs")
        return f"not installed: {', '.join(missing)}" if missing else ""

    def _wait(self, future, timeout: float):
        """The future's result within ``timeout`` s (another executor thread completes it), else None."""
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            return None
        return future.result()

    def _run_recovery_step(self, step: Step) -> tuple[bool, str]:
        timeout = float(self.p("recovery_step_timeout"))
        config = self.robot_errors.config
        try:
            if step == Step.ERROR_RECOVERY:
                client = self._recovery_clients[step]
                if not client.wait_for_server(timeout_sec=timeout):
                    return False, f"no action server {self.p('error_recovery_action')}"
                handle = self._wait(client.send_goal_async(ErrorRecovery.Goal()), timeout)
                if handle is None or not handle.accepted:
                    return False, "goal not accepted" if handle is not None else "no answer to the goal"
                result = self._wait(handle.get_result_async(), timeout)
                if result is None:
                    return False, f"no result within {timeout:.1f} s"
                if result.status != GoalStatus.STATUS_SUCCEEDED:
                    return False, f"goal ended with status {result.status}: the driver could not clear it"
                return True, ""
            if step == Step.HARDWARE_ACTIVE:
                client = self._recovery_clients[step]
                if not client.wait_for_service(timeout_sec=timeout):
                    return False, f"no service {client.srv_name}"
                target = LifecycleStateMsg(id=LifecycleStateMsg.PRIMARY_STATE_ACTIVE, label="active")
                request = SetHardwareComponentState.Request(
                    name=config.hardware_component, target_state=target
                )
                answer = self._wait(client.call_async(request), timeout)
                if answer is None:
                    return False, f"no answer within {timeout:.1f} s"
                state = f"{config.hardware_component} is {answer.state.label or answer.state.id}"
                return bool(answer.ok), state
            client = self._recovery_clients["switch"]
            if not client.wait_for_service(timeout_sec=timeout):
                return False, f"no service {client.srv_name}"
            activate = step == Step.ACTIVATE_CONTROLLERS
            request = SwitchController.Request(
                activate_controllers=list(config.controllers) if activate else [],
                deactivate_controllers=[] if activate else list(config.controllers),
                # activating: all or nothing; deactivating: the ones still active
                strictness=SwitchController.Request.STRICT
                if activate
                else SwitchController.Request.BEST_EFFORT,
            )
            request.timeout.sec = int(timeout)
            answer = self._wait(client.call_async(request), timeout + 1.0)
            if answer is None:
                return False, f"no answer within {timeout:.1f} s"
            detail = getattr(answer, "message", "")  # Humble's response has no message
            if answer.ok and activate:
                for name in config.controllers:
                    self.robot_errors.on_controller_state(name, "active")
            return bool(answer.ok), detail or ", ".join(config.controllers)
        except Exception as exc:  # a call that failed outright: reported as the step's failure
            return False, f"{type(exc).__name__}: {exc}"

    # ----------------------------------------------------------------------------------- control
    def _arm_positions(self) -> np.ndarray | None:
        if self._joints is None or self.settings is None:
            return None
        try:
            index = [self._joint_index[name] for name in self.settings.arm_joints]
            return np.array([self._joints.position[i] for i in index], dtype=np.float64)
        except (KeyError, IndexError):
            self.get_logger().warning(
                f"joint_states lacks some of {list(self.settings.arm_joints)} (check arm_joints)",
                throttle_duration_sec=5.0,
            )
            return None

    def _measured_pose(self, joints: np.ndarray | None) -> np.ndarray | None:
        """The IK model's FK of the joints when there is one (one frame for all), else ee_pose."""
        if joints is not None and self.core is not None and self.core.ik is not None:
            return self.core.ik.fk(joints)
        if self._tf_buffer is not None:  # pose_source tf: the IK tip in Servo's planning frame
            return self._tf_pose()
        if self._pose is not None:
            return pose_msg_to_matrix(self._pose)
        return None

    def _tick(self) -> None:
        if self._active:
            self.rate_meter.tick()  # at wake-up: the period jitter of the loop itself
        with self._command_lock:
            self._tick_locked()

    def _tick_locked(self) -> None:
        if not self._active or self.core is None:
            return
        if self._robot_blocked():  # the driver refuses commands: send nothing, say why
            self._publish_status(StatusCode.ROBOT_ERROR, self.robot_errors.reason)
            return
        joints = self._arm_positions()
        if self.settings.backend == "joint_trajectory" and self.core.ik is None:
            self.get_logger().warning(
                "no IK model yet (waiting for robot_description): not commanding", throttle_duration_sec=5.0
            )
            self._publish_status(StatusCode.NOT_READY, "no IK model yet (waiting for robot_description)")
            return
        pose = self._measured_pose(joints)
        if pose is None or (self.settings.backend == "joint_trajectory" and joints is None):
            self.get_logger().warning(
                "no robot state yet (joint_states / ee_pose): not commanding", throttle_duration_sec=5.0
            )
            self._publish_status(StatusCode.NOT_READY, "no robot state yet (joint_states / ee_pose)")
            return
        now = (
            self._last_state_stamp
            if self.settings.tick_source == "state" and self._last_state_stamp is not None
            else self._now()
        )
        if self.settings.chunk_trajectory:
            self._follow_plan(now)
        previous = self.core.last_commanded_joints
        previous_pose = self.core.last_commanded
        command = self.core.tick(now, pose, joints, estop=self._estop, **self._state_stamps(joints))
        if self.settings.chunk_trajectory:
            self._publish_chunk_trajectory(command, now, previous, previous_pose, joints)
        else:
            self._publish(command, now)

    def _state_stamps(self, joints) -> dict:
        """The stamp of the state the tick uses, for the core's age check (TF poses: none)."""
        if joints is not None and self.core.ik is not None and self._joints is not None:
            return {"joints_stamp": Stamp.of(self._joints.header.stamp)}
        if self._tf_buffer is None and self._pose is not None:
            return {"pose_stamp": Stamp.of(self._pose.header.stamp)}
        return {}

    # ------------------------------------------------------------------------------ chunk trajectory
    def _follow_plan(self, now: float) -> None:
        """The controller plays the trajectory by time, ticks or not: a late tick (a skipped step) takes
        the setpoint the trajectory has reached at this step, so the core integrates on from there."""
        plan = self._plan
        if plan is None:
            return
        knot = self.core.step_of(now) - plan["step"]
        if 0 < knot < len(plan["times"]) and self.core.last_commanded_joints is not None:
            self.core.last_commanded_joints = np.array(plan["positions"][knot])
            self.core.last_commanded = np.array(plan["poses"][knot])

    def _publish_chunk_trajectory(
        self, command: Command, now: float, previous, previous_pose, joints
    ) -> None:
        """Chunk mode: plan one trajectory per chunk; send it, or the hold, or (lock-step) its rest."""
        if not can_plan(self.core, command):  # a hold (or nothing to plan with): one command
            self._plan = None
            self._publish(command, now)
            return
        index = self._plan_index(command)
        budget_end = time.perf_counter() + self.settings.plan_budget * self.period
        if index is None:  # a new chunk, a re-sync, a hold before, or the plan ran out / diverged
            # the controller's setpoint now: what we last commanded (the measured joints if nothing yet)
            fresh = previous is None or command.from_measured  # built on the measured joints
            anchor = joints if fresh else previous
            planner = ChunkTrajectoryPlanner(self.core, command, anchor)
            planner.extend(deadline=budget_end)  # the rest on the next ticks if the budget ran out
            self._plan = {
                "step": command.step,
                "chunks": self.core.counters["chunks"],
                "planner": planner,
                "anchor": anchor,
                "before": None if fresh else self._before_anchor,
                "anchor_pose": self.core.ik.fk(anchor) if previous_pose is None or fresh else previous_pose,
                "sent": 0,  # planned points when the trajectory was last sent
            }
            self._anchor_plan()
            self.core.counters["trajectories"] = self.core.counters.get("trajectories", 0) + 1
            index, send = 0, True
        else:
            send = self.settings.tick_source == "state"  # lock-step: every step needs an answer
            planner = self._plan["planner"]
            if not planner.done and planner.extend(deadline=budget_end):
                self._anchor_plan()
            # the controller's trajectory grows with the plan (the rest, from "now"): when the plan is
            # complete or has doubled since the last send, so a long chunk costs a few messages, not one
            # per tick, and what was sent stays ahead of the controller (planning outpaces the ticks)
            if len(planner) != self._plan["sent"] and (
                planner.done or len(planner) >= 2 * self._plan["sent"]
            ):
                send = True
        if send:
            self._plan["sent"] = len(self._plan["planner"])
        self._before_anchor = None if previous is None else np.array(previous)
        plan = self._plan
        trajectory = self._trajectory_msg(
            now,
            plan["times"][index:] - plan["times"][index],
            plan["positions"][index:],
            plan["velocities"][index:],
        )
        self._publish(command, now, trajectory=trajectory, send_arm=send)

    def _anchor_plan(self) -> None:
        """The running plan's points for the controller: the anchor (setpoint at the plan's tick) at 0."""
        plan = self._plan
        planned = plan["planner"].trajectory()
        times, positions, velocities = anchored_points(planned, plan["anchor"], plan["before"], self.period)
        plan.update(times=times, positions=positions, velocities=velocities)
        plan["poses"] = [plan["anchor_pose"], *planned.poses]

    def _plan_index(self, command: Command) -> int | None:
        """Knot of the running plan at this tick (the command is its next point), or None to re-plan."""
        plan = self._plan
        if plan is None or command.from_measured or plan["chunks"] != self.core.counters["chunks"]:
            return None
        index = command.step - plan["step"]
        if not 0 < index < len(plan["times"]) - 1:
            return None
        if not np.allclose(plan["positions"][index + 1], command.joint_targets, rtol=0.0, atol=1e-9):
            return None
        return index

    def _trajectory_msg(self, stamp_s: float, times, positions, velocities) -> JointTrajectory:
        header = Header(frame_id=self.embodiment.reference_frame)
        header.stamp.sec, header.stamp.nanosec = split_seconds(stamp_s)
        trajectory = JointTrajectory(header=header, joint_names=list(self.settings.arm_joints))
        for t, q, v in zip(times, positions, velocities):
            sec, nanosec = split_seconds(float(t))
            trajectory.points.append(
                JointTrajectoryPoint(
                    positions=[float(x) for x in q],
                    velocities=[float(x) for x in v],
                    time_from_start=Duration(sec=sec, nanosec=nanosec),
                )
            )
        return trajectory

    def _publish_hold(self, reason: str, status: StatusCode = StatusCode.HOLDING) -> None:
        if self.core is None:
            return
        self._plan = None  # motion after a hold starts a new trajectory
        joints = self._arm_positions()
        pose = self._measured_pose(joints)
        if pose is None:
            return
        # the last commanded setpoint again (never the measured joints: re-commanding them lets the arm sag)
        self._publish(self.core.hold_command(reason, pose, joints, status), self._now())

    def _publish(
        self,
        command: Command,
        stamp_s: float,
        trajectory: JointTrajectory | None = None,
        send_arm: bool = True,
    ) -> None:
        """Preview and (unless dry_run) send one command; ``trajectory`` replaces the single-point one."""
        self._last_command = command
        if command.hold:
            self._last_hold_reason = command.reason
        self._publish_status(command.status, command.reason or ",".join(command.hits), stamp_s)
        if command.target_pose is None:  # a hold before any command, without a valid measured pose
            return
        header = Header(frame_id=self.embodiment.reference_frame)
        header.stamp.sec, header.stamp.nanosec = split_seconds(stamp_s)
        pose_msg = matrix_to_pose_msg(command.target_pose, header)
        self.preview_pose_pub.publish(pose_msg)
        if trajectory is not None:
            self.preview_pub.publish(trajectory)
        elif command.joint_targets is not None:
            trajectory = JointTrajectory(header=header, joint_names=list(self.settings.arm_joints))
            seconds = self.settings.time_from_start
            point = JointTrajectoryPoint(positions=[float(q) for q in command.joint_targets])
            sec, nanosec = split_seconds(seconds)
            point.time_from_start = Duration(sec=sec, nanosec=nanosec)
            trajectory.points = [point]
            self.preview_pub.publish(trajectory)
        if self.settings.dry_run or self._robot_blocked():
            return
        if self.settings.backend == "servo":
            self._send_servo(command, stamp_s)
        elif trajectory is not None and send_arm:
            self.traj_pub.publish(trajectory)
        if command.gripper_opening is not None:
            self.gripper_pub.publish(Float64(data=float(command.gripper_opening)))

    def _send_servo(self, command: Command, stamp_s: float) -> None:
        """One stamped command in Servo's planning frame, once Servo accepted our command type."""
        session, servo = self.servo_session, self.settings.servo
        if not session.accepted:
            self._request_switch()
            self.get_logger().warning(
                f"not commanding: MoveIt Servo has not accepted command type {servo.command} yet "
                f"({session.last_problem or 'asking'})",
                throttle_duration_sec=5.0,
            )
            return
        header = Header(frame_id=servo.planning_frame)
        header.stamp.sec, header.stamp.nanosec = split_seconds(stamp_s)
        if servo.command == "pose":  # the last commanded target again on a hold: Servo stays there
            content = pose_command(command.target_pose, servo, stamp_s)
            msg = PoseStamped(header=header)
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = content.position
            o = msg.pose.orientation
            o.x, o.y, o.z, o.w = content.orientation
            self.servo_pub.publish(msg)
            return
        measured = None if command.hold else self._measured_pose(self._arm_positions())
        content = twist_command(command.target_pose, measured, self.period, servo, stamp_s)
        twist = TwistStamped(header=header)
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = content.linear
        twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z = content.angular
        self.twist_pub.publish(twist)

    def _request_switch(self) -> None:
        """Ask Servo (servo/switch_command_type) for our command type; the answer arrives asynchronously."""
        session, now = self.servo_session, self._now()
        if self._switch_client is None or not session.wants_switch(now):
            return
        session.request_sent(now)
        if not self._switch_client.service_is_ready():
            session.response(None, "no servo/switch_command_type service (is MoveIt Servo running?)")
            return
        request = ServoCommandType.Request(command_type=self.settings.servo.command_type)
        self._switch_client.call_async(request).add_done_callback(self._on_switch_answer)

    def _on_switch_answer(self, future) -> None:
        session = self.servo_session
        if session is None:
            return
        try:
            success = bool(future.result().success)
        except Exception as exc:  # the call itself failed
            session.response(None, f"switch_command_type failed: {exc}")
            return
        session.response(success)
        if success:
            self.get_logger().info(f"MoveIt Servo accepts command type {self.settings.servo.command}")
        else:
            self.get_logger().error(session.last_problem)

    def _tf_pose(self) -> np.ndarray | None:
        """ee_frame in servo_planning_frame from TF (latest), or None (logged) while unavailable."""
        servo = self.settings.servo
        try:
            tf = self._tf_buffer.lookup_transform(
                servo.planning_frame, servo.ee_frame, rclpy.time.Time()
            ).transform
        except Exception as exc:  # tf2 raises several lookup exception types
            self.get_logger().warning(
                f"no TF {servo.planning_frame} -> {servo.ee_frame} ({exc})", throttle_duration_sec=5.0
            )
            return None
        out = np.eye(4)
        r = tf.rotation
        out[:3, :3] = quaternion_to_matrix([r.x, r.y, r.z, r.w])
        out[:3, 3] = [tf.translation.x, tf.translation.y, tf.translation.z]
        return out

    def _publish_status(self, code: StatusCode, detail: str, stamp_s: float | None = None) -> None:
        """~/status now (every tick and event); /diagnostics at once when the code changes."""
        changed = code != self._status[0]
        self._status = (StatusCode(code), detail)
        if self.core is None:
            return
        msg = ExecutorStatus(code=int(code), message=status_text(code), detail=detail)
        msg.header.stamp.sec, msg.header.stamp.nanosec = split_seconds(
            self._now() if stamp_s is None else stamp_s
        )
        msg.estop_latched, msg.dry_run = self.core.estop_latched, bool(self.settings.dry_run)
        counters = self.core.counters
        for name in (
            "chunks",
            "rejected_chunks",
            "holds",
            "watchdog_trips",
            "limit_hits",
            "resyncs",
            "stale_state_holds",
            "invalid_state_holds",
        ):
            setattr(msg, name, int(counters[name]))
        self.status_pub.publish(msg)
        if changed:
            self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        if self.core is None:
            return
        status = DiagnosticStatus(name=f"{self.get_name()}: executor", hardware_id="internvla")
        last = self._last_command
        code, detail = self._status
        status.level = bytes([status_level(code)])
        rejected = self.core.counters["rejected_chunks"]
        if rejected > self._rejections_reported:  # refused chunks since the last report: at least WARN
            status.level = max(status.level, DiagnosticStatus.WARN)
            detail = (
                f"{detail}; chunks refused ({self.core.last_rejection})"
                if detail
                else self.core.last_rejection
            )
            self._rejections_reported = rejected
        status.message = f"{status_text(code)}: {detail}" if detail else status_text(code)
        jitter = self.rate_meter.jitter()
        values = {
            "mode": self.settings.mode,
            "backend": self.settings.backend,
            "embodiment": self.embodiment.name,
            "dry_run": str(self.settings.dry_run),
            "status": code.name,
            "estop": str(self.core.estop_latched),
            "estop_input": str(self._estop),
            "last_rejection": self.core.last_rejection,
            "control_rate_hz": f"{self.rate_meter.rate():.2f}",
            "jitter_p50_ms": f"{1e3 * jitter['p50']:.2f}",
            "jitter_p99_ms": f"{1e3 * jitter['p99']:.2f}",
            "last_hold_reason": self._last_hold_reason,
            "last_limit_hits": ",".join(last.hits) if last is not None else "",
            **{k: str(v) for k, v in self.core.counters.items()},
        }
        if self.servo_session is not None:  # Servo's acceptance and ~/status, read back
            level, message, servo_values = self.servo_session.report(self._now())
            values.update(servo_values)
            if level != "ok" and not self.settings.dry_run:
                worse = DiagnosticStatus.ERROR if level == "error" else DiagnosticStatus.WARN
                status.level = max(status.level, worse)
                status.message = f"{status.message}; servo: {message}"
        if self.robot_errors is not None:  # a latched robot error: ERROR, whatever the last command said
            level, message, error_values = self.robot_errors.report()
            values.update(error_values)
            if level == "error":
                status.level = DiagnosticStatus.ERROR
                status.message = f"{status.message}; {message}"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        self.diag_pub.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
        )


def realtime_spin_threads(thread_priority: int) -> str:
    """SCHED_FIFO one below ``thread_priority`` for the calling thread and the threads it creates after.

    Call it on the thread that builds the rclpy executor, before it spins. Why: the control thread needs
    the GIL, and a callback thread holding it but preempted by normal-priority work (the model, on the
    same cores) makes the control thread wait however high its own priority (priority inversion;
    bench/bench_executor.py: p99 5.5 ms with only the control thread at SCHED_FIFO, under 1 ms with the
    callback threads too). Returns "" when granted or not asked (priority 0 or 1), else why not.
    """
    if thread_priority <= 1:
        return ""
    return set_thread_realtime(thread_priority - 1)


def main(args=None) -> None:
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init(args=args)
    node = ChunkExecutorNode()
    problem = realtime_spin_threads(node.get_parameter("thread_priority").value)
    if problem:
        node.get_logger().warning(f"callback threads at normal scheduling: {problem}")
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    node.trigger_configure()
    node.trigger_activate()
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
