"""The ros2 launch files, run against recording stand-ins of launch / launch_ros (not on PyPI): they
declare the documented arguments and start exactly the nodes, parameter files, overrides and remaps
that internvla-run composes from the same graph description."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from internvla_bringup.graphs import SETUPS, GraphOptions, build_graph
from internvla_bringup.launch_support import ARGUMENTS
from internvla_bringup.run import node_cli_args

LAUNCH_DIR = Path(__file__).resolve().parents[1] / "launch"


class Action:
    """Stands in for any launch action: remembers how it was built."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


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
        },
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch.launch_description_sources": {"PythonLaunchDescriptionSource": Action},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Action},
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
    nodes = [a.kwargs for a in actions]
    assert [n["name"] for n in nodes] == [spec.name for spec in graph.nodes]
    for launched, spec in zip(nodes, graph.nodes):
        assert (launched["package"], launched["executable"]) == (spec.package, spec.executable)
        assert launched["namespace"] == "arm1"
        params_file, overrides = launched["parameters"]
        assert Path(params_file).is_file() and overrides == dict(spec.parameters)
        # the runner passes the same file and remaps through --ros-args
        cli = node_cli_args(graph, spec)
        assert cli[cli.index("--params-file") + 1] == params_file
        assert [f"{a}:={b}" for a, b in launched["remappings"]] == cli[4::2]
    assert nodes[0]["parameters"][1]["seed"] == 5


def test_real_robot_launch_includes_the_drivers_and_rviz_on_the_robot_base_frame(fake_launch):
    fake_launch.update({"franka_fr3_moveit_config", "realsense2_camera"})
    actions = resolve(load_launch("franka"), robot_ip="172.16.0.2")
    includes = [a for a in actions if a.args and isinstance(a.args[0], Action)]
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
