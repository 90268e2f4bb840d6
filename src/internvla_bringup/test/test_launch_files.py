"""The ros2 launch files, run against recording stand-ins of launch / launch_ros (not on PyPI): they
declare the documented arguments and start exactly the nodes, parameter files, overrides and remaps
that internvla-run composes from the same graph description; lifecycle nodes are LifecycleNode actions
with autostart:=false whose configure / activate are driven by launch events."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from internvla_bringup.composition import node_cli_args
from internvla_bringup.graphs import SETUPS, GraphOptions, build_graph
from internvla_bringup.launch_support import ARGUMENTS
from internvla_bringup.lifecycle_plan import node_parameters

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "launch"


class Action:
    """Stands in for any launch action: remembers how it was built."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class LifecycleNode(Action):
    pass


class LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict) -> str:
        return context[self.name]


class PackageNotFoundError(KeyError):
    pass


@pytest.fixture
def fake_launch(monkeypatch):
    installed: set[str] = set()

    def share(package: str) -> str:
        if package not in installed:
            raise PackageNotFoundError(package)
        return f"/opt/ros/fake/share/{package}"

    modules = {
        "launch": {"LaunchDescription": Action},
        "launch.actions": {
            "DeclareLaunchArgument": Action,
            "OpaqueFunction": Action,
            "IncludeLaunchDescription": Action,
            "EmitEvent": Action,
            "RegisterEventHandler": Action,
        },
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch.launch_description_sources": {"PythonLaunchDescriptionSource": Action},
        "launch.event_handlers": {"OnProcessStart": Action},
        "launch.events": {"matches_action": lambda action: ("matches", action)},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Action, "LifecycleNode": LifecycleNode},
        "launch_ros.event_handlers": {"OnStateTransition": Action},
        "launch_ros.events": {},
        "launch_ros.events.lifecycle": {"ChangeState": Action},
        "ament_index_python": {},
        "ament_index_python.packages": {
            "get_package_share_directory": share,
            "PackageNotFoundError": PackageNotFoundError,
        },
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        for key, value in attributes.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)
    return installed


def load_launch(setup: str):
    spec = importlib.util.spec_from_file_location(f"launch_{setup}", LAUNCH_DIR / f"{setup}.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def resolve(description, **arguments) -> list[Action]:
    actions = description.args[0]
    declared = {a.args[0]: a.kwargs["default_value"] for a in actions if "default_value" in a.kwargs}
    opaque = actions[-1]
    return opaque.kwargs["function"]({**declared, **arguments}, *opaque.kwargs["args"])


@pytest.mark.parametrize("setup", SETUPS)
def test_each_launch_file_declares_its_documented_arguments(fake_launch, setup):
    description = load_launch(setup)
    declared = [a.args[0] for a in description.args[0][:-1]]
    assert declared == [arg.name for arg in ARGUMENTS[setup]]
    assert {"namespace", "checkpoint", "device", "dry_run"} <= set(declared)
    assert all(a.kwargs["description"] for a in description.args[0][:-1])


def test_sim_launch_starts_the_same_nodes_as_the_runner(fake_launch):
    actions = resolve(load_launch("sim_widowx"), checkpoint="/m/c.pt", seed="5", namespace="arm1")
    graph = build_graph("sim_widowx", GraphOptions(checkpoint="/m/c.pt", seed=5, namespace="arm1"))
    nodes = [a.kwargs for a in actions if "executable" in a.kwargs]
    assert [n["name"] for n in nodes] == [spec.name for spec in graph.nodes]
    for launched, spec in zip(nodes, graph.nodes):
        assert (launched["package"], launched["executable"]) == (spec.package, spec.executable)
        assert launched["namespace"] == "arm1"
        params_file, overrides = launched["parameters"]
        assert Path(params_file).is_file() and overrides == node_parameters(spec)
        # the runner passes the same file and remaps through --ros-args
        cli = node_cli_args(graph, spec)
        assert cli[cli.index("--params-file") + 1] == params_file
        assert [f"{a}:={b}" for a, b in launched["remappings"]] == cli[4::2]
    assert nodes[0]["parameters"][1]["seed"] == 5


def test_real_robot_launch_includes_the_drivers_and_rviz_on_the_robot_base_frame(fake_launch):
    fake_launch.update({"franka_fr3_moveit_config", "realsense2_camera"})
    actions = resolve(load_launch("franka"), robot_ip="172.16.0.2")
    includes = [a for a in actions if "launch_arguments" in a.kwargs]
    paths = [inc.args[0].args[0] for inc in includes]
    assert paths == [
        "/opt/ros/fake/share/franka_fr3_moveit_config/launch/moveit.launch.py",
        "/opt/ros/fake/share/realsense2_camera/launch/rs_launch.py",
    ]
    assert ("robot_ip", "172.16.0.2") in includes[0].kwargs["launch_arguments"]
    nodes = [a.kwargs for a in actions if "executable" in a.kwargs]
    executor = next(n for n in nodes if n["name"] == "chunk_executor")
    assert executor["parameters"][1]["dry_run"] is True  # real robots start in dry run
    rviz = next(n for n in nodes if n["executable"] == "rviz2")
    assert rviz["arguments"][-2:] == ["-f", "fr3_link0"] and Path(rviz["arguments"][1]).is_file()


def test_missing_driver_package_says_what_to_build(fake_launch):
    with pytest.raises(RuntimeError, match=r"interbotix_xsarm_moveit.*not installed"):
        resolve(load_launch("widowx"))


def test_dry_run_argument_reaches_the_executor(fake_launch):
    fake_launch.update({"interbotix_xsarm_moveit", "realsense2_camera"})
    actions = resolve(load_launch("widowx"), dry_run="false", rviz="false")
    executor = next(a.kwargs for a in actions if a.kwargs.get("name") == "chunk_executor")
    assert executor["parameters"][1]["dry_run"] is False
    assert not any(a.kwargs.get("executable") == "rviz2" for a in actions)


def _executor_and_grounding(actions):
    nodes = {a.kwargs["name"]: a.kwargs for a in actions if "executable" in a.kwargs}
    return nodes["chunk_executor"], nodes["grounding_node"]


@pytest.mark.parametrize(
    "prefix, namespace, name",
    [("/camera/camera", "camera", "camera"), ("/camera", "", "camera"), ("/cams/front", "cams", "front")],
)
def test_realsense_topic_prefix_is_a_launch_argument(fake_launch, prefix, namespace, name):
    fake_launch.update({"franka_fr3_moveit_config", "realsense2_camera"})
    assert dict((a.name, a.default) for a in ARGUMENTS["franka"])["camera_prefix"] == "/camera/camera"
    actions = resolve(load_launch("franka"), robot_ip="172.16.0.2", camera_prefix=prefix)
    camera = next(
        a for a in actions if "launch_arguments" in a.kwargs and "rs_launch.py" in a.args[0].args[0]
    )
    arguments = dict(camera.kwargs["launch_arguments"])
    assert (arguments["camera_namespace"], arguments["camera_name"]) == (namespace, name)
    _, grounding = _executor_and_grounding(actions)
    remaps = dict(grounding["remappings"])
    assert remaps["camera/image_raw"] == f"{prefix}/color/image_raw"
    assert remaps["camera/depth/image_raw"] == f"{prefix}/aligned_depth_to_color/image_raw"
    assert remaps["camera/camera_info"] == f"{prefix}/color/camera_info"


def test_a_bad_camera_prefix_is_refused(fake_launch):
    fake_launch.update({"interbotix_xsarm_moveit", "realsense2_camera"})
    with pytest.raises(ValueError, match="camera_prefix"):
        resolve(load_launch("widowx"), camera_prefix="/a/b/c")


@pytest.mark.parametrize(
    "setup, extra, parent",
    [("franka", {"robot_ip": "172.16.0.2"}, "fr3_link0"), ("widowx", {}, "wx250s/base_link")],
)
def test_calibration_file_becomes_the_static_tf_from_the_robot_base_to_the_camera(
    fake_launch, setup, extra, parent
):
    fake_launch.update({"franka_fr3_moveit_config", "interbotix_xsarm_moveit", "realsense2_camera"})
    example = LAUNCH_DIR.parent / "config" / "calibration" / f"{setup}_camera.example.yaml"
    actions = resolve(load_launch(setup), calibration=str(example), **extra)
    static = [a.kwargs for a in actions if a.kwargs.get("executable") == "static_transform_publisher"]
    assert len(static) == 1 and static[0]["package"] == "tf2_ros"
    args = static[0]["arguments"]
    assert args[args.index("--frame-id") + 1] == parent
    assert args[args.index("--child-frame-id") + 1] == "camera_link"
    quaternion = [float(args[args.index(f"--q{k}") + 1]) for k in "xyzw"]
    assert abs(sum(q * q for q in quaternion) - 1.0) < 1e-9
    # without a calibration: no static TF (and the grounding node refuses 3D, see its tests)
    plain = resolve(load_launch(setup), **extra)
    assert not [a for a in plain if a.kwargs.get("executable") == "static_transform_publisher"]


def test_a_broken_calibration_file_fails_the_launch_with_the_reason(fake_launch, tmp_path):
    fake_launch.update({"franka_fr3_moveit_config", "realsense2_camera"})
    bad = tmp_path / "bad.calib"
    bad.write_text("parameters: {calibration_type: eye_on_base}\ntransform: {}\n")
    with pytest.raises(ValueError, match="robot_base_frame"):
        resolve(load_launch("franka"), robot_ip="172.16.0.2", calibration=str(bad))
    with pytest.raises(ValueError, match="does not exist"):
        resolve(load_launch("franka"), robot_ip="172.16.0.2", calibration=str(tmp_path / "none.calib"))
    bad.write_text(
        "parameters: {calibration_type: eye_on_base, robot_base_frame: fr3_link0, tracking_base_frame: cam}\n"
        "transform: {translation: {x: 0, y: 0, z: 0}, rotation: {x: 0, y: 0, z: 0, w: 2}}\n"
    )
    with pytest.raises(ValueError, match="unit quaternion"):
        resolve(load_launch("franka"), robot_ip="172.16.0.2", calibration=str(bad))


def test_servo_and_pose_topics_are_wired_onto_the_drivers(fake_launch):
    fake_launch.update({"franka_fr3_moveit_config", "interbotix_xsarm_moveit", "realsense2_camera"})
    franka, _ = _executor_and_grounding(resolve(load_launch("franka"), robot_ip="172.16.0.2"))
    remaps = dict(franka["remappings"])
    assert remaps["servo/pose_target_cmds"] == "/servo_node/pose_target_cmds"
    assert remaps["servo/delta_twist_cmds"] == "/servo_node/delta_twist_cmds"
    assert remaps["servo/switch_command_type"] == "/servo_node/switch_command_type"
    assert remaps["servo/status"] == "/servo_node/status"
    assert remaps["ee_pose"] == "/franka_robot_state_broadcaster/current_pose"
    widowx, _ = _executor_and_grounding(resolve(load_launch("widowx")))
    assert "ee_pose" not in dict(widowx["remappings"])  # no pose topic: TF


def test_one_stated_end_effector_frame_per_robot():
    import yaml

    config = LAUNCH_DIR.parent / "config"
    expected = {"franka": "fr3_hand_tcp", "widowx": "wx250s/ee_gripper_link"}
    for robot, frame in expected.items():
        params = yaml.safe_load((config / f"{robot}.yaml").read_text())["/**/chunk_executor"][
            "ros__parameters"
        ]
        assert params["ee_frame"] == frame
        example = yaml.safe_load((config / "calibration" / f"{robot}_camera.example.yaml").read_text())
        assert example["parameters"]["robot_effector_frame"] == frame
    franka = yaml.safe_load((config / "franka.yaml").read_text())["/**/chunk_executor"]["ros__parameters"]
    assert franka["servo_planning_frame"] == "fr3_link0" and franka["servo_incoming_command_timeout"] >= 0.2


def _transitions_of(actions, node) -> list[tuple[str, int]]:
    """(trigger, transition id) of each event handler aimed at ``node``: 'start' or the goal state."""
    found = []
    for handler in (a.args[0] for a in actions if a.args and isinstance(a.args[0], Action)):
        if handler.kwargs.get("target_action") is node:
            (emit,) = handler.kwargs["on_start"]
            found.append(("start", emit.kwargs["event"].kwargs["transition_id"]))
        elif handler.kwargs.get("target_lifecycle_node") is node:
            (emit,) = handler.kwargs["entities"]
            if "function" in emit.kwargs:  # the clock gate's handlers: see the test below
                continue
            found.append((handler.kwargs["goal_state"], emit.kwargs["event"].kwargs["transition_id"]))
        else:
            continue
        assert emit.kwargs["event"].kwargs["lifecycle_node_matcher"] == ("matches", node)
    return found


def test_lifecycle_nodes_are_configured_on_start_and_activated_once_inactive(fake_launch):
    from lifecycle_msgs.msg import Transition

    actions = resolve(load_launch("sim_franka"))
    graph = build_graph("sim_franka")
    for spec in graph.nodes:
        node = next(a for a in actions if a.kwargs.get("name") == spec.name)
        assert isinstance(node, LifecycleNode) == spec.lifecycle, spec.name
        if spec.clock_source:  # configured on start; activated by the gate (next test)
            assert _transitions_of(actions, node) == [("start", Transition.TRANSITION_CONFIGURE)]
        elif spec.lifecycle:
            assert node.kwargs["parameters"][1]["autostart"] is False  # launch drives the transitions
            assert _transitions_of(actions, node) == [
                ("start", Transition.TRANSITION_CONFIGURE),
                ("inactive", Transition.TRANSITION_ACTIVATE),
            ]
        else:
            assert "autostart" not in node.kwargs["parameters"][1]
            assert _transitions_of(actions, node) == []


@pytest.mark.parametrize(
    "arguments, expected", [({"activate": "false"}, ["start"]), ({"configure": "false"}, [])]
)
def test_configure_and_activate_arguments_gate_the_transitions(fake_launch, arguments, expected):
    actions = resolve(load_launch("sim_widowx"), **arguments)
    policy = next(a for a in actions if a.kwargs.get("name") == "policy_node")
    assert [trigger for trigger, _ in _transitions_of(actions, policy)] == expected


def test_the_simulator_is_activated_once_every_model_node_is_active(fake_launch):
    """The launch events of the clock gate, replayed: the sim's ACTIVATE comes with the last of
    'sim inactive' and 'every other lifecycle node active', and only once."""
    from lifecycle_msgs.msg import Transition

    actions = resolve(load_launch("sim_franka"))
    nodes = {a.kwargs["name"]: a for a in actions if "executable" in a.kwargs}
    gate = {}  # (node name, state) -> the OpaqueFunction its event runs
    for handler in (a.args[0] for a in actions if a.args and isinstance(a.args[0], Action)):
        entities = handler.kwargs.get("entities", ())
        if entities and "function" in entities[0].kwargs:
            opaque = entities[0]
            name, state = opaque.kwargs["args"]
            assert nodes[name] is handler.kwargs["target_lifecycle_node"]
            assert state == handler.kwargs["goal_state"]
            gate[(name, state)] = opaque
    assert set(gate) == {
        ("sim", "inactive"),
        ("grounding_node", "active"),
        ("policy_node", "active"),
        ("chunk_executor", "active"),
    }

    def fire(name, state):
        opaque = gate[(name, state)]
        return opaque.kwargs["function"]({}, *opaque.kwargs["args"])

    assert fire("sim", "inactive") == []
    assert fire("grounding_node", "active") == [] and fire("policy_node", "active") == []
    (emit,) = fire("chunk_executor", "active")
    change = emit.kwargs["event"].kwargs
    assert change["transition_id"] == Transition.TRANSITION_ACTIVATE
    assert change["lifecycle_node_matcher"] == ("matches", nodes["sim"])
    assert fire("policy_node", "active") == []  # once


def test_without_activate_the_simulator_is_only_configured(fake_launch):
    actions = resolve(load_launch("sim_franka"), activate="false")
    assert not [
        a
        for a in actions
        if a.args and isinstance(a.args[0], Action) and "function" in str(a.args[0].kwargs.get("entities"))
    ]
