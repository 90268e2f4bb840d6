"""Graph descriptions: every setup builds, names real executables, and its parameter file only sets
parameters its nodes declare (with values inside their ranges)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from internvla_bringup.graphs import (
    SETUPS,
    GraphOptions,
    build_graph,
    config_dir,
    options_from_arguments,
    rviz_config_path,
)

SRC = Path(__file__).resolve().parents[2]
REAL = {"franka": GraphOptions(robot_ip="172.16.0.2"), "widowx": GraphOptions()}


def graph_of(setup: str, **changes):
    options = REAL.get(setup, GraphOptions())
    return build_graph(setup, GraphOptions(**{**options.__dict__, **changes}))


def console_scripts(package: str) -> set[str]:
    text = (SRC / package / "setup.py").read_text()
    return set(re.findall(r'"([\w-]+) = [\w.]+:main"', text))


@pytest.mark.parametrize("setup", SETUPS)
def test_every_node_names_an_installed_executable_and_an_importable_class(setup):
    graph = graph_of(setup)
    assert graph.params_path().is_file()
    for spec in graph.nodes:
        assert spec.executable in console_scripts(spec.package), (spec.package, spec.executable)
        module, cls = spec.plugin.split(":")
        node_class = getattr(importlib.import_module(module), cls)
        # the starters drive transitions of exactly the nodes that are lifecycle nodes
        lifecycle = pytest.importorskip("rclpy.lifecycle")
        assert issubclass(node_class, lifecycle.LifecycleNode) == spec.lifecycle, spec.name
    assert sum(spec.control_loop for spec in graph.nodes) == 1  # the chunk executor


@pytest.mark.parametrize("setup", SETUPS)
def test_parameter_files_hold_a_wildcard_section_for_each_node(setup):
    graph = graph_of(setup)
    data = yaml.safe_load(graph.params_path().read_text())
    sections = {key.removeprefix("/**/") for key in data}
    assert all(key.startswith("/**/") for key in data), "keys must be /**/<node> so namespaces still match"
    ours = {spec.name for spec in graph.nodes}
    assert sections <= ours, sections - ours  # a node with nothing to change has no section


def schema_path(spec) -> Path:
    """Where a node's schema lives: ``<its module's directory>/params/<node name>.yaml``."""
    module = importlib.util.find_spec(spec.plugin.split(":")[0])
    return Path(module.origin).parent / "params" / f"{spec.name}.yaml"


@pytest.mark.parametrize("setup", SETUPS)
def test_parameter_files_only_override_parameters_of_each_nodes_schema(setup):
    """Defaults live in the schema: a key that is no parameter (a typo) or that repeats the schema's
    default fails here."""
    from internvla_ros_common.schema import load_schema

    graph = graph_of(setup)
    sections = yaml.safe_load(graph.params_path().read_text())
    for spec in graph.nodes:
        schema = load_schema(schema_path(spec))  # every node of ours has one
        defaults = schema.defaults()
        configured = flatten(sections.get(f"/**/{spec.name}", {"ros__parameters": {}})["ros__parameters"])
        assert schema.unknown_messages(configured) == [], (setup, spec.name)
        repeated = {k: v for k, v in configured.items() if k in defaults and defaults[k] == v}
        assert repeated == {}, f"{setup}: {spec.name} repeats its schema's defaults {repeated}"
        assert schema.validate({**defaults, **configured}) == [], (setup, spec.name)


def test_dry_run_is_on_for_real_robots_and_off_in_simulation_unless_asked():
    assert graph_of("franka").node("chunk_executor").parameters["dry_run"] is True
    assert graph_of("widowx").node("gripper_bridge").parameters["dry_run"] is True
    assert graph_of("sim_franka").node("chunk_executor").parameters["dry_run"] is False
    assert graph_of("franka", dry_run=False).node("chunk_executor").parameters["dry_run"] is False
    assert graph_of("sim_widowx", dry_run=True).node("chunk_executor").parameters["dry_run"] is True


def test_launch_arguments_reach_the_nodes():
    graph = graph_of("sim_widowx", checkpoint="/m/ckpt.pt", device="cuda:1", task="pick_green", seed=7)
    for name in ("grounding_node", "policy_node"):
        assert graph.node(name).parameters["checkpoint"] == "/m/ckpt.pt"
        assert graph.node(name).parameters["device"] == "cuda:1"
    sim = graph.node("sim").parameters
    assert (sim["robot"], sim["task"], sim["seed"]) == ("widowx", "pick_green", 7)
    assert graph.node("chunk_executor").parameters["tick_source"] == "state"
    realtime = graph_of("sim_franka", clock_mode="realtime")
    assert realtime.node("chunk_executor").parameters["tick_source"] == "timer"
    assert "checkpoint" not in graph_of("sim_franka").node("policy_node").parameters  # YAML's default


def test_real_graphs_remap_onto_the_drivers_topics():
    franka = graph_of("franka")
    assert ("arm_controller/joint_trajectory", "/fr3_arm_controller/joint_trajectory") in franka.node(
        "chunk_executor"
    ).remappings
    # realsense2_camera >= 4.55.1 defaults (camera_prefix); 4.51/4.54: camera_prefix:=/camera
    assert ("camera/image_raw", "/camera/camera/color/image_raw") in franka.node("policy_node").remappings
    assert ("camera/image_raw", "/camera/color/image_raw") in graph_of(
        "franka", camera_prefix="/camera"
    ).node("policy_node").remappings
    assert [inc.package for inc in franka.includes] == ["franka_fr3_moveit_config", "realsense2_camera"]
    assert franka.includes[0].arguments["robot_ip"] == "172.16.0.2"
    widowx = graph_of("widowx")
    assert ("joint_states", "/wx250s/joint_states") in widowx.node("chunk_executor").remappings
    assert widowx.node("gripper_bridge").remappings == (
        ("gripper_controller/joint_trajectory", "/wx250s/gripper_controller/joint_trajectory"),
    )
    assert "ros2 launch interbotix_xsarm_moveit xsarm_moveit.launch.py robot_model:=wx250s" in (
        widowx.includes[0].command()
    )


@pytest.mark.parametrize(
    ("setup", "options", "message"),
    [
        ("franka", GraphOptions(), "robot_ip"),
        ("sim_franka", GraphOptions(task="fly"), "unknown task"),
        ("sim_franka", GraphOptions(clock_mode="fast"), "clock_mode"),
        ("widowx", GraphOptions(hardware_type="real"), "hardware_type"),
        ("sim_franka", GraphOptions(namespace="arm 1"), "namespace"),
        ("ur5", GraphOptions(), "unknown setup"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(setup, options, message):
    with pytest.raises(ValueError, match=message):
        build_graph(setup, options)


def test_launch_argument_strings_become_typed_options():
    options = options_from_arguments(
        {"seed": "4", "dry_run": "", "rviz": "True", "use_fake_hardware": "false", "namespace": "arm1"}
    )
    assert (options.seed, options.dry_run, options.rviz, options.use_fake_hardware) == (4, None, True, False)
    assert options_from_arguments({"dry_run": "false"}).dry_run is False
    with pytest.raises(ValueError, match="true or false"):
        options_from_arguments({"rviz": "maybe"})
    with pytest.raises(ValueError, match="unknown launch arguments"):
        options_from_arguments({"robot": "ur5"})


def test_the_rviz_config_and_the_launch_files_ship_beside_the_configs():
    assert rviz_config_path().is_file()
    launch_dir = config_dir().parent / "launch"
    for setup in SETUPS:
        tree = ast.parse((launch_dir / f"{setup}.launch.py").read_text())
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert names == ["generate_launch_description"]


def flatten(parameters: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in parameters.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.mark.ros
@pytest.mark.parametrize("setup", SETUPS)
def test_nodes_built_from_the_graph_declare_every_configured_parameter_with_its_value(setup):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    from internvla_bringup.composition import build_node

    graph = graph_of(setup, checkpoint="/models/m1.pt", namespace="arm1")
    sections = yaml.safe_load(graph.params_path().read_text())
    context = Context()
    rclpy.init(context=context)
    try:
        for spec in graph.nodes:
            if spec.name == "gripper_bridge":  # needs control_msgs (full ROS installs): checked below
                continue
            node = build_node(graph, spec, context)
            try:
                assert node.get_namespace() == "/arm1"
                section = sections.get(f"/**/{spec.name}", {"ros__parameters": {}})
                configured = flatten(section["ros__parameters"])
                configured.update(spec.parameters)
                for name, value in configured.items():
                    assert node.has_parameter(name), f"{setup}: {spec.name} has no parameter '{name}'"
                    actual = node.get_parameter(name).value
                    expected = value if not isinstance(value, list) else list(value)
                    assert (list(actual) if isinstance(actual, (list, tuple)) else actual) == expected, name
            finally:
                node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize("setup", SETUPS)
def test_graph_overrides_are_parameters_of_each_nodes_schema(setup):
    """The per-node overrides of the graph (launch arguments, dry_run, tick_source, ...) are parameters
    the node's schema declares (use_sim_time is rclpy's own)."""
    from internvla_ros_common.schema import load_schema

    graph = graph_of(setup, checkpoint="/m/c.pt", device="cpu")
    for spec in graph.nodes:
        names = set(spec.parameters) - {"use_sim_time"}
        assert load_schema(schema_path(spec)).unknown_messages(names) == [], (setup, spec.name)


@pytest.mark.parametrize("task", ["family", "pick/3", "put_in", "pick_green"])
def test_sim_graphs_accept_the_procedural_family_as_the_sim_node_does(task):
    graph = build_graph("sim_widowx", GraphOptions(task=task, seed=4))
    assert graph.node("sim").parameters["task"] == task


def test_a_checkpoint_trained_on_the_wrist_camera_gets_it_rendered_and_sent_in_simulation(tmp_path):
    from internvla_core.model import tiny_checkpoint
    from internvla_core.model.policy import run_dir_of

    one_view = str(tiny_checkpoint())
    config = yaml.safe_load((run_dir_of(Path(one_view)) / "config.yaml").read_text())
    config.setdefault("datasets", {}).setdefault("vla_data", {})["cameras"] = ["third_person", "wrist"]
    two_view = tmp_path / "two_view_run"
    two_view.mkdir()
    (two_view / "config.yaml").write_text(yaml.safe_dump(config))

    graph = graph_of("sim_franka", checkpoint=str(two_view))
    assert graph.node("sim").parameters["render_wrist"] is True
    assert graph.node("policy_node").parameters["wrist_view"] is True
    for checkpoint in (one_view, "", "some-org/some-hub-run"):  # hub ids are not read: no download
        graph = graph_of("sim_franka", checkpoint=checkpoint)
        assert "render_wrist" not in graph.node("sim").parameters
        assert "wrist_view" not in graph.node("policy_node").parameters


def test_the_shipped_model_launches_with_the_settings_its_card_was_evaluated_with():
    """``checkpoint:=<shipped model>`` runs it at its card's guidance scale and gripper commitment (the
    rate in its card holds only there); ``model_card:=false`` leaves the YAML's defaults."""
    from internvla_bringup.graphs import shipped_model
    from internvla_core.policy_setup import card_node_parameters, local_model_card

    model = shipped_model("franka", "pick_green")
    assert model is not None
    card = card_node_parameters(local_model_card(str(model)))
    assert card["policy_node"]["cfg_scale"] > 0 and "gripper_commit_steps" in card["chunk_executor"]
    graph = graph_of("sim_franka", checkpoint=str(model))
    assert graph.node("policy_node").parameters["cfg_scale"] == card["policy_node"]["cfg_scale"]
    executor = graph.node("chunk_executor").parameters
    assert executor["gripper_commit_steps"] == card["chunk_executor"]["gripper_commit_steps"]
    assert executor["tick_source"] == "state"  # the graph's own settings stay
    plain = graph_of("sim_franka", checkpoint=str(model), model_card=False)
    assert "cfg_scale" not in plain.node("policy_node").parameters
    assert "gripper_commit_steps" not in plain.node("chunk_executor").parameters
    assert options_from_arguments({"model_card": "false"}).model_card is False


def test_a_shipped_model_is_offered_only_for_the_task_it_was_trained_on(tmp_path, monkeypatch):
    """Each model trained here learned one task: the demo must not hand pick_green's model a push."""
    from internvla_bringup import graphs

    monkeypatch.setattr(graphs, "models_dir", lambda: tmp_path)
    push = tmp_path / graphs.shipped_model_name("franka", "push_blue_left")
    push.mkdir()
    assert graphs.shipped_model("franka", "push_blue_left") is None  # a directory without its config
    (push / "config.yaml").write_text("framework: {}\n")
    assert graphs.shipped_model("franka", "push_blue_left") == push
    assert graphs.shipped_model("franka", "pick_green") is None
    assert graphs.shipped_model("widowx", "push_blue_left") is None
