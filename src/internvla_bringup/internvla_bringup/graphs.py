"""One description of the node graph per setup, read by the launch files and by ``internvla-run``.

A setup (``sim_franka``, ``sim_widowx``, ``franka``, ``widowx``) names which of our nodes run, with which
parameter file (``config/<setup>.yaml``), which per-node parameter overrides (the launch arguments:
namespace, checkpoint, device, dry_run, ...), which topic remappings onto the robot's drivers, and which
driver launch files of other packages a full ROS install brings up beside them (franka_ros2, Interbotix,
RealSense). Nothing here imports rclpy or launch: the description is plain data, so the same object is
turned into ``launch_ros`` actions by :mod:`internvla_bringup.launch_support` and into in-process nodes by
:mod:`internvla_bringup.run`, and tests can compare the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from internvla_core.policy_setup import (
    WRIST_VIEW,
    card_node_parameters,
    local_checkpoint_views,
    local_model_card,
)
from internvla_sim.tasks import TASKS

from .calibration import StaticTransform, load_calibration

PACKAGE = "internvla_bringup"
SETUPS = ("sim_franka", "sim_widowx", "franka", "widowx")
SIM_SETUPS = ("sim_franka", "sim_widowx")
REAL_SETUPS = ("franka", "widowx")
CLOCK_MODES = ("lockstep", "realtime")
HARDWARE_TYPES = ("actual", "fake", "gz_classic")


@dataclass(frozen=True)
class NodeSpec:
    """One of our nodes: how ``ros2 launch`` starts it (package/executable) and how the runner builds it."""

    name: str
    package: str
    executable: str
    plugin: str  # "module:Class", constructed in-process by internvla-run
    lifecycle: bool
    control_loop: bool = False  # the runner gives it an executor (thread) of its own
    clock_source: bool = False  # publishes /clock (the simulator): started after every other node
    parameters: Mapping[str, Any] = field(default_factory=dict)  # on top of the setup's YAML
    remappings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IncludeSpec:
    """A driver launch file of another package (full ROS installs only), with its arguments."""

    package: str
    launch_file: str  # relative to share/<package>/
    arguments: Mapping[str, str]
    why: str

    def command(self) -> str:
        args = " ".join(f"{k}:={v}" for k, v in self.arguments.items())
        return f"ros2 launch {self.package} {Path(self.launch_file).name} {args}".strip()


@dataclass(frozen=True)
class GraphOptions:
    """The launch arguments shared by ``ros2 launch`` and ``internvla-run``."""

    namespace: str = ""
    checkpoint: str = ""  # empty: the nodes' default (the untrained tiny factory model, with a warning)
    device: str = ""  # empty: the YAML's device (cpu)
    model_card: bool = True  # the checkpoint's model card sets cfg_scale and the executor settings
    dry_run: bool | None = None  # None: the setup's default (true on real robots, false in simulation)
    rviz: bool = False
    # simulation
    task: str = "red_on_plate"
    seed: int = 0
    clock_mode: str = "lockstep"  # lockstep | realtime
    # real robots
    robot_ip: str = ""  # Franka control box address
    use_fake_hardware: bool = False  # franka_ros2's mock hardware (no arm needed)
    hardware_type: str = "actual"  # Interbotix: actual | fake | gz_classic
    camera_prefix: str = "/camera/camera"  # RealSense topics (realsense2_camera >= 4.55.1 default)
    calibration: str = ""  # hand-eye calibration file -> static TF robot <-> camera ("" = none: no 3D)
    # lifecycle: how far the launch files / the runner drive our lifecycle nodes
    configure: bool = True
    activate: bool = True


@dataclass(frozen=True)
class Argument:
    """One launch argument: a field of :class:`GraphOptions`, declared by ``<setup>.launch.py``, offered
    by ``internvla-run`` as ``--<name-with-dashes>`` (or ``flag``) and listed in the bringup README."""

    name: str
    description: str
    setups: tuple[str, ...] = SETUPS
    choices: tuple[str, ...] = ()
    setup_defaults: Mapping[str, str] = field(default_factory=dict)  # launch default where it differs
    runner: bool = True  # False: launch only (internvla-run cannot start RViz)
    flag: str = ""  # the runner's option, when not --<name-with-dashes>

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def default(self, setup: str | None = None) -> str:
        """The default as launch-argument text ('' = the setup's own default, for dry_run)."""
        if setup in self.setup_defaults:
            return self.setup_defaults[setup]
        value = GraphOptions.__dataclass_fields__[self.name].default
        return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


ARGUMENTS: tuple[Argument, ...] = (
    Argument("namespace", "namespace of our nodes (drivers keep their own names: the remaps are absolute)"),
    Argument(
        "checkpoint",
        "InternVLA-M1 checkpoint (.pt or run dir); empty = the untrained tiny factory model. In simulation a "
        "model trained on the wrist camera too gets it (the sim renders it, the policy sends it)",
    ),
    Argument("device", "torch device for grounding and policy (cpu, cuda, cuda:1); empty = the YAML's"),
    Argument(
        "model_card",
        "run the checkpoint with the settings its model card (model_card.json) was evaluated with: policy "
        "cfg_scale and chunk_executor settings such as gripper_commit_steps; false = the YAML's",
        choices=("true", "false"),
    ),
    Argument(
        "dry_run",
        "executor (and gripper bridge) publish previews only; empty = true on real robots, false in sim",
        choices=("true", "false"),
    ),
    Argument(
        "task",
        f"simulation task: {', '.join(TASKS)}; `family` (the seed's procedural task) or a family template "
        "id / skill such as pick/3, put_in (internvla_sim.task_family)",
        SIM_SETUPS,
    ),
    Argument("seed", "layout seed of the task", SIM_SETUPS),
    Argument(
        "clock_mode",
        "lockstep (sim time advances when the executor answered each step) or realtime",
        SIM_SETUPS,
        choices=CLOCK_MODES,
        flag="--clock",
    ),
    Argument("robot_ip", "address of the Franka control box", ("franka",)),
    Argument(
        "use_fake_hardware",
        "franka_ros2 mock hardware instead of the arm",
        ("franka",),
        choices=("true", "false"),
    ),
    Argument(
        "hardware_type", "Interbotix hardware_type (actual, fake, gz_classic)", ("widowx",), HARDWARE_TYPES
    ),
    Argument(
        "camera_prefix",
        "RealSense topics /<camera_namespace>/<camera_name>: /camera/camera (realsense2_camera >= 4.55.1) "
        "or /camera (4.51/4.54); passed to rs_launch.py and used by the remaps",
        REAL_SETUPS,
    ),
    Argument(
        "calibration",
        "hand-eye calibration YAML (easy_handeye2 layout, see config/calibration/) published as the static "
        "TF robot -> camera; empty = none, and grounding publishes 2D only",
        REAL_SETUPS,
    ),
    Argument(
        "rviz",
        "start RViz with the internvla config",
        choices=("true", "false"),
        setup_defaults={"franka": "true", "widowx": "true"},
        runner=False,
    ),
    Argument(
        "configure",
        "configure our lifecycle nodes once started (false: they wait unconfigured for a manager)",
        choices=("true", "false"),
    ),
    Argument(
        "activate",
        "activate our lifecycle nodes once configured (false: they wait inactive)",
        choices=("true", "false"),
    ),
)
"""Every launch argument, once: the launch files, ``internvla-run`` and the README table read it."""


def arguments_for(setup: str) -> tuple[Argument, ...]:
    return tuple(argument for argument in ARGUMENTS if setup in argument.setups)


@dataclass(frozen=True)
class Graph:
    setup: str
    description: str
    robot: str  # "franka" | "widowx"
    simulated: bool
    params_file: str  # file name under share/internvla_bringup/config/
    namespace: str
    base_frame: str  # RViz fixed frame
    nodes: tuple[NodeSpec, ...]
    includes: tuple[IncludeSpec, ...] = ()
    rviz: bool = False
    static_transforms: tuple[StaticTransform, ...] = ()  # the hand-eye calibration (real robots)

    def node(self, name: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise KeyError(f"graph {self.setup} has no node '{name}'; nodes: {[n.name for n in self.nodes]}")

    def params_path(self) -> Path:
        return config_dir() / self.params_file


def config_dir() -> Path:
    """The parameter files beside the running code: the source tree's when run from a checkout (so an
    edited YAML takes effect without a rebuild), else the installed share directory."""
    source = Path(__file__).resolve().parent.parent / "config"
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE)) / "config"


def shipped_model_name(robot: str, task: str) -> str:
    """The directory name of the model trained here for ``task`` on ``robot`` (``models/<name>/``, a run
    directory written by ``scripts/train_task.sh``): one model per task, since each is trained on one."""
    return f"m1_tiny_{robot}_{task}"


def models_dir() -> Path:
    """The shipped models beside the running code (source tree, else the installed share directory)."""
    return config_dir().parent / "models"


def shipped_model(robot: str, task: str) -> Path | None:
    """The run directory of the model trained here for ``task`` on ``robot``, or None when there is none
    yet (a model trained on another task is not offered: it never saw this instruction)."""
    run = models_dir() / shipped_model_name(robot, task)
    return run if (run / "config.yaml").is_file() else None


def rviz_config_path() -> Path:
    return config_dir().parent / "rviz" / "internvla.rviz"


def _model_overrides(options: GraphOptions) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if options.checkpoint:
        overrides["checkpoint"] = options.checkpoint
    if options.device:
        overrides["device"] = options.device
    return overrides


def _our_nodes(
    options: GraphOptions,
    *,
    sim_time: bool,
    dry_run: bool,
    executor_extra: Mapping[str, Any] | None = None,
    policy_extra: Mapping[str, Any] | None = None,
    remap_camera: tuple[tuple[str, str], ...] = (),
    remap_state: tuple[tuple[str, str], ...] = (),
    remap_commands: tuple[tuple[str, str], ...] = (),
) -> list[NodeSpec]:
    common = {"use_sim_time": True} if sim_time else {}
    model = _model_overrides(options)
    card = card_node_parameters(local_model_card(options.checkpoint)) if options.model_card else {}
    policy_extra = {**card.get("policy_node", {}), **(policy_extra or {})}
    executor_extra = {**card.get("chunk_executor", {}), **(executor_extra or {})}
    return [
        NodeSpec(
            "grounding_node",
            "internvla_perception",
            "grounding_node",
            "internvla_perception.grounding_node:GroundingNode",
            lifecycle=True,
            parameters={**common, **model},
            remappings=remap_camera,
        ),
        NodeSpec(
            "policy_node",
            "internvla_policy",
            "policy_node",
            "internvla_policy.policy_node:PolicyNode",
            lifecycle=True,
            parameters={**common, **model, **policy_extra},
            remappings=remap_camera + remap_state,
        ),
        NodeSpec(
            "chunk_executor",
            "internvla_policy",
            "chunk_executor",
            "internvla_policy.chunk_executor_node:ChunkExecutorNode",
            lifecycle=True,
            control_loop=True,
            parameters={**common, "dry_run": dry_run, **executor_extra},
            remappings=remap_state + remap_commands,
        ),
    ]


def known_sim_task(task: str) -> bool:
    """A named task, ``family`` (the seed's procedural task) or a family template id / skill."""
    if task in TASKS or task == "family":
        return True
    from internvla_sim.task_family import SKILLS, TEMPLATES

    return task in TEMPLATES or task in SKILLS


def _sim_graph(setup: str, robot: str, options: GraphOptions) -> Graph:
    if not known_sim_task(options.task):
        raise ValueError(
            f"unknown task '{options.task}'; known: {list(TASKS)}, 'family' (the seed's procedural task) "
            "or a family template id / skill (internvla_sim.task_family)"
        )
    if options.clock_mode not in CLOCK_MODES:
        raise ValueError(f"clock_mode must be lockstep or realtime, got '{options.clock_mode}'")
    lockstep = options.clock_mode == "lockstep"
    # a model trained on the wrist camera too gets it: the sim renders it and the policy sends it
    wrist = WRIST_VIEW in (local_checkpoint_views(options.checkpoint) or [])
    sim = NodeSpec(
        "sim",
        "internvla_sim",
        "sim_node",
        "internvla_sim.sim_node:SimNode",
        lifecycle=True,  # configure builds the scene; activate starts sim time
        clock_source=True,
        parameters={
            "use_sim_time": False,  # the sim owns /clock
            "robot": robot,
            "task": options.task,
            "seed": options.seed,
            "clock_mode": options.clock_mode,
            **({"render_wrist": True} if wrist else {}),
        },
    )
    dry_run = False if options.dry_run is None else options.dry_run
    nodes = _our_nodes(
        options,
        sim_time=True,
        dry_run=dry_run,
        executor_extra={"tick_source": "state" if lockstep else "timer"},
        policy_extra={"wrist_view": True} if wrist else None,
    )
    if robot == "widowx":  # the sim's WidowX gripper is a JointTrajectoryController, as Interbotix's
        nodes.append(
            NodeSpec(
                "gripper_bridge",
                "internvla_policy",
                "gripper_bridge",
                "internvla_policy.gripper_bridge_node:GripperBridgeNode",
                lifecycle=True,
                parameters={"dry_run": dry_run, "interface": "joint_trajectory"},
            )
        )
    arm = "Franka Panda" if robot == "franka" else "WidowX 250 6DOF"
    return Graph(
        setup=setup,
        description=f"MuJoCo {arm} (sim_node) -> grounding -> policy -> chunk executor -> simulated arm",
        robot=robot,
        simulated=True,
        params_file=f"{setup}.yaml",
        namespace=options.namespace,
        base_frame="panda_link0" if robot == "franka" else "wx250s/base_link",
        nodes=(sim, *nodes),
        rviz=options.rviz,
    )


def realsense(prefix: str) -> IncludeSpec:
    """rs_launch.py with its topics under ``prefix`` = /<camera_namespace>/<camera_name>.

    realsense2_camera 4.55.1 added ``camera_namespace`` and defaults to /camera/camera/...; 4.51/4.54
    publish /camera/... (prefix ``/camera``; their rs_launch.py ignores camera_namespace).
    """
    parts = [part for part in prefix.strip("/").split("/") if part]
    if not 1 <= len(parts) <= 2 or not all(part.isidentifier() for part in parts):
        raise ValueError(f"camera_prefix must be /<name> or /<namespace>/<name>, got '{prefix}'")
    namespace, name = ("", parts[0]) if len(parts) == 1 else tuple(parts)
    return IncludeSpec(
        "realsense2_camera",
        "launch/rs_launch.py",
        {
            "camera_namespace": namespace,
            "camera_name": name,
            "align_depth.enable": "true",
            "rgb_camera.color_profile": "640x480x30",
            "depth_module.depth_profile": "640x480x30",
        },
        "third-person RGB-D camera (RealSense D4xx); depth aligned to colour for 3D grounding",
    )


def realsense_remaps(prefix: str) -> tuple[tuple[str, str], ...]:
    """Our camera inputs onto rs_launch.py's colour, aligned depth and camera_info under ``prefix``."""
    prefix = "/" + prefix.strip("/")
    return (
        ("camera/image_raw", f"{prefix}/color/image_raw"),
        ("camera/depth/image_raw", f"{prefix}/aligned_depth_to_color/image_raw"),
        ("camera/camera_info", f"{prefix}/color/camera_info"),
    )


# MoveIt Servo on Jazzy/Kilted (moveit_servo's servo_node under its default name): the executor's
# servo/* names (backend servo) onto the node's private topics and service
SERVO_REMAPS = (
    ("servo/pose_target_cmds", "/servo_node/pose_target_cmds"),
    ("servo/delta_twist_cmds", "/servo_node/delta_twist_cmds"),
    ("servo/switch_command_type", "/servo_node/switch_command_type"),
    ("servo/status", "/servo_node/status"),
)


@dataclass(frozen=True)
class RealRobot:
    """Where a real arm's drivers put their topics, and which launch file starts them."""

    robot: str
    description: str
    base_frame: str
    driver: IncludeSpec
    driver_prefix: str  # namespace of the driver's topics ("" or "/wx250s")
    controller: str  # the JointTrajectoryController's name
    gripper_remaps: tuple[tuple[str, str], ...]  # gripper_bridge's outputs onto the gripper driver
    pose_remaps: tuple[tuple[str, str], ...] = ()  # the executor's ee_pose onto the driver's pose topic


def _real_graph(setup: str, real: RealRobot, options: GraphOptions) -> Graph:
    dry_run = True if options.dry_run is None else options.dry_run
    prefix = real.driver_prefix
    state = (("joint_states", f"{prefix}/joint_states"), ("robot_description", f"{prefix}/robot_description"))
    commands = (
        ("arm_controller/joint_trajectory", f"{prefix}/{real.controller}/joint_trajectory"),
        *SERVO_REMAPS,
        *real.pose_remaps,
    )
    nodes = _our_nodes(
        options,
        sim_time=False,
        dry_run=dry_run,
        remap_camera=realsense_remaps(options.camera_prefix),
        remap_state=state,
        remap_commands=commands,
    )
    gripper = NodeSpec(
        "gripper_bridge",
        "internvla_policy",
        "gripper_bridge",
        "internvla_policy.gripper_bridge_node:GripperBridgeNode",
        lifecycle=True,
        parameters={"dry_run": dry_run},
        remappings=real.gripper_remaps,
    )
    return Graph(
        setup=setup,
        description=real.description,
        robot=real.robot,
        simulated=False,
        params_file=f"{setup}.yaml",
        namespace=options.namespace,
        base_frame=real.base_frame,
        nodes=(*nodes, gripper),
        includes=(real.driver, realsense(options.camera_prefix)),
        rviz=options.rviz,
        static_transforms=(load_calibration(options.calibration),) if options.calibration else (),
    )


def _franka(options: GraphOptions) -> RealRobot:
    if not options.robot_ip and not options.use_fake_hardware:
        raise ValueError(
            "the franka setup needs robot_ip:=<control box address> (or use_fake_hardware:=true)"
        )
    driver = IncludeSpec(
        "franka_fr3_moveit_config",
        "launch/moveit.launch.py",
        {
            "robot_ip": options.robot_ip or "dont-care",
            "use_fake_hardware": str(options.use_fake_hardware).lower(),
            "load_gripper": "true",
        },
        "franka_ros2: FR3 hardware interface, fr3_arm_controller (JointTrajectoryController), "
        "franka_gripper, robot_state_publisher and MoveIt",
    )
    return RealRobot(
        robot="franka",
        description="Franka FR3 (franka_ros2 + MoveIt) with a RealSense: grounding -> policy -> "
        "chunk executor -> fr3_arm_controller and franka_gripper",
        base_frame="fr3_link0",
        driver=driver,
        driver_prefix="",
        controller="fr3_arm_controller",
        gripper_remaps=(),  # franka_gripper's Grasp/Move action names are parameters (config/franka.yaml)
        # measured TCP pose (PoseStamped, best-effort QoS) for the servo backend; the WidowX has none (TF)
        pose_remaps=(("ee_pose", "/franka_robot_state_broadcaster/current_pose"),),
    )


def _widowx(options: GraphOptions) -> RealRobot:
    if options.hardware_type not in HARDWARE_TYPES:
        raise ValueError(f"hardware_type must be actual, fake or gz_classic, got '{options.hardware_type}'")
    driver = IncludeSpec(
        "interbotix_xsarm_moveit",
        "launch/xsarm_moveit.launch.py",
        {"robot_model": "wx250s", "hardware_type": options.hardware_type, "use_moveit_rviz": "false"},
        "Interbotix xsarm: wx250s ros2_control (arm_controller, gripper_controller), "
        "robot_state_publisher and MoveIt, all under /wx250s",
    )
    return RealRobot(
        robot="widowx",
        description="WidowX 250 6DOF (Interbotix xsarm + MoveIt) with a RealSense: grounding -> policy -> "
        "chunk executor -> arm_controller and gripper_controller",
        base_frame="wx250s/base_link",
        driver=driver,
        driver_prefix="/wx250s",
        controller="arm_controller",
        # Interbotix runs the gripper as a second JointTrajectoryController on left_finger
        gripper_remaps=(
            ("gripper_controller/joint_trajectory", "/wx250s/gripper_controller/joint_trajectory"),
        ),
    )


def build_graph(setup: str, options: GraphOptions | None = None) -> Graph:
    """The node graph of ``setup`` with the given launch arguments (ValueError on a bad one)."""
    options = options or GraphOptions()
    if options.namespace and not all(part.isidentifier() for part in options.namespace.strip("/").split("/")):
        raise ValueError(f"namespace '{options.namespace}' is not a valid ROS namespace")
    if setup == "sim_franka":
        return _sim_graph(setup, "franka", options)
    if setup == "sim_widowx":
        return _sim_graph(setup, "widowx", options)
    if setup == "franka":
        return _real_graph(setup, _franka(options), options)
    if setup == "widowx":
        return _real_graph(setup, _widowx(options), options)
    raise ValueError(f"unknown setup '{setup}'; known: {list(SETUPS)}")


def parse_bool(text: str | bool) -> bool:
    """Launch-argument booleans as ``ros2 launch`` users type them."""
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got '{text}'")


def options_from_arguments(arguments: Mapping[str, str]) -> GraphOptions:
    """GraphOptions from launch-argument strings (``dry_run: ''`` keeps the setup's default)."""
    known = GraphOptions.__dataclass_fields__
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ValueError(f"unknown launch arguments {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for name, text in arguments.items():
        default = known[name].default
        if name == "dry_run":
            values[name] = None if str(text).strip() == "" else parse_bool(text)
        elif isinstance(default, bool):
            values[name] = parse_bool(text)
        elif isinstance(default, int):
            values[name] = int(text)
        else:
            values[name] = str(text)
    return GraphOptions(**values)
