"""Turn a graph description (:mod:`internvla_bringup.graphs`) into ``ros2 launch`` actions.

Only full ROS installs have ``launch`` / ``launch_ros`` (not on PyPI), so they are imported inside the
functions. Launch arguments are read when the launch runs (OpaqueFunction) and go through the same
``build_graph`` as ``internvla-run``: one description, two ways of starting it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .graphs import Graph, build_graph, options_from_arguments, rviz_config_path


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


COMMON_ARGUMENTS = (
    LaunchArgument("namespace", "", "namespace of our nodes (drivers keep their own names)"),
    LaunchArgument(
        "checkpoint", "", "InternVLA-M1 checkpoint (.pt or run dir); empty = untrained tiny model"
    ),
    LaunchArgument("device", "", "torch device for grounding and policy (cpu, cuda, cuda:1); empty = YAML"),
    LaunchArgument("dry_run", "", "executor dry run: true/false; empty = true on real robots, false in sim"),
)
REAL_CAMERA_ARGUMENTS = (
    LaunchArgument(
        "camera_prefix",
        "/camera/camera",
        "RealSense topic prefix /<camera_namespace>/<camera_name>: /camera/camera for realsense2_camera "
        ">= 4.55.1, /camera for 4.51/4.54",
    ),
    LaunchArgument(
        "calibration",
        "",
        "hand-eye calibration YAML (easy_handeye2 layout, see config/calibration/) published as the static "
        "TF robot -> camera; empty = none, and grounding refuses 3D output",
    ),
)
SIM_ARGUMENTS = (
    LaunchArgument("task", "red_on_plate", "red_on_plate | pick_green | push_blue_left"),
    LaunchArgument("seed", "0", "layout seed of the task"),
    LaunchArgument("clock_mode", "lockstep", "lockstep (sim waits for each command) | realtime"),
    LaunchArgument("rviz", "false", "start RViz with the internvla config"),
)
ARGUMENTS = {
    "sim_franka": COMMON_ARGUMENTS + SIM_ARGUMENTS,
    "sim_widowx": COMMON_ARGUMENTS + SIM_ARGUMENTS,
    "franka": COMMON_ARGUMENTS
    + (
        LaunchArgument("robot_ip", "", "address of the Franka control box"),
        LaunchArgument("use_fake_hardware", "false", "franka_ros2 mock hardware instead of the arm"),
        LaunchArgument("rviz", "true", "start RViz with the internvla config"),
    )
    + REAL_CAMERA_ARGUMENTS,
    "widowx": COMMON_ARGUMENTS
    + (
        LaunchArgument("hardware_type", "actual", "Interbotix hardware_type: actual | fake | gz_classic"),
        LaunchArgument("rviz", "true", "start RViz with the internvla config"),
    )
    + REAL_CAMERA_ARGUMENTS,
}


def generate(setup: str):
    """The LaunchDescription of ``<setup>.launch.py``."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [
        DeclareLaunchArgument(arg.name, default_value=arg.default, description=arg.description)
        for arg in ARGUMENTS[setup]
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_resolve, args=[setup])])


def _resolve(context, setup: str):
    from launch.substitutions import LaunchConfiguration

    values = {arg.name: LaunchConfiguration(arg.name).perform(context) for arg in ARGUMENTS[setup]}
    return graph_actions(build_graph(setup, options_from_arguments(values)))


def _share(package: str) -> str:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return get_package_share_directory(package)
    except PackageNotFoundError:
        raise RuntimeError(
            f"package '{package}' is not installed: build the robot's driver workspace and source it "
            "before launching (see docker/README.md, 'Real robots')"
        ) from None


def graph_actions(graph: Graph) -> list:
    """Driver includes, our nodes (YAML + overrides + remaps), the calibration's static TF, RViz if asked."""
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import Node

    actions = []
    for include in graph.includes:
        path = os.path.join(_share(include.package), include.launch_file)
        actions.append(
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(path), launch_arguments=list(include.arguments.items())
            )
        )
    for spec in graph.nodes:
        actions.append(
            Node(
                package=spec.package,
                executable=spec.executable,
                name=spec.name,
                namespace=graph.namespace,
                parameters=[str(graph.params_path()), dict(spec.parameters)],
                remappings=list(spec.remappings),
                output="screen",
                emulate_tty=True,
            )
        )
    for index, transform in enumerate(graph.static_transforms):  # the hand-eye calibration
        actions.append(
            Node(
                package="tf2_ros",
                executable="static_transform_publisher",
                name=f"calibration_tf_{index}",
                arguments=transform.arguments(),
                output="screen",
            )
        )
    if graph.rviz:
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=graph.namespace,
                arguments=["-d", str(rviz_config_path()), "-f", graph.base_frame],
                output="screen",
            )
        )
    return actions
