"""Turn a graph description (:mod:`internvla_bringup.graphs`) into ``ros2 launch`` actions.

Only full ROS installs have ``launch`` / ``launch_ros`` (not on PyPI), so they are imported inside the
functions. Launch arguments are read when the launch runs (OpaqueFunction) and go through the same
``build_graph`` as ``internvla-run``: one description, two ways of starting it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .graphs import SETUPS, Graph, arguments_for, build_graph, options_from_arguments, rviz_config_path
from .lifecycle_plan import ClockGate, LaunchTransition, launch_transitions, node_parameters


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


ARGUMENTS = {
    setup: tuple(LaunchArgument(a.name, a.default(setup), a.description) for a in arguments_for(setup))
    for setup in SETUPS
}
"""The declared arguments of each ``<setup>.launch.py``, from :data:`internvla_bringup.graphs.ARGUMENTS`."""


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
    options = options_from_arguments(values)
    return graph_actions(build_graph(setup, options), launch_transitions(options))


def _share(package: str) -> str:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return get_package_share_directory(package)
    except PackageNotFoundError:
        raise RuntimeError(
            f"package '{package}' is not installed: build the robot's driver workspace and source it "
            "before launching (see docker/README.md, 'Real robots')"
        ) from None


def _change_state(node, transition: str):
    import lifecycle_msgs.msg
    from launch.actions import EmitEvent
    from launch.events import matches_action
    from launch_ros.events.lifecycle import ChangeState

    return EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=getattr(lifecycle_msgs.msg.Transition, transition),
        )
    )


def lifecycle_events(node, transitions: tuple[LaunchTransition, ...]) -> list:
    """The event chain that drives one LifecycleNode (launch_ros's lifecycle_pub_sub example): each
    transition is emitted when its trigger happens (process started, or the node reached a state);
    an ACTIVATE sent before the node is inactive would be dropped, so it waits for 'inactive'."""
    from launch.actions import RegisterEventHandler
    from launch.event_handlers import OnProcessStart
    from launch_ros.event_handlers import OnStateTransition

    handlers = []
    for step in transitions:
        change = _change_state(node, step.transition)
        if step.after_state is None:
            handlers.append(RegisterEventHandler(OnProcessStart(target_action=node, on_start=[change])))
        else:
            handlers.append(
                RegisterEventHandler(
                    OnStateTransition(
                        target_lifecycle_node=node, goal_state=step.after_state, entities=[change]
                    )
                )
            )
    return handlers


def clock_gate_events(clock_node, clock_name: str, others: dict[str, object]) -> list:
    """Activate the clock source (the simulator) only once it is configured and every other lifecycle
    node is active (:class:`~internvla_bringup.lifecycle_plan.ClockGate`): sim time starts after every
    model is loaded, as in ``internvla-run``."""
    from launch.actions import OpaqueFunction, RegisterEventHandler
    from launch_ros.event_handlers import OnStateTransition

    gate = ClockGate(clock_name, others)

    def on_state(context, name: str, state: str) -> list:
        return [_change_state(clock_node, "TRANSITION_ACTIVATE")] if gate.record(name, state) else []

    watched = [(clock_node, clock_name, "inactive")] + [
        (node, name, "active") for name, node in others.items()
    ]
    return [
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                goal_state=state,
                entities=[OpaqueFunction(function=on_state, args=[name, state])],
            )
        )
        for node, name, state in watched
    ]


def graph_actions(graph: Graph, transitions: tuple[LaunchTransition, ...] = ()) -> list:
    """Driver includes, our nodes (YAML + overrides + remaps; LifecycleNode for lifecycle nodes, with
    autostart:=false and the ``transitions`` driven by launch events), the calibration's static TF, RViz."""
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch_ros.actions import LifecycleNode, Node

    actions = []
    for include in graph.includes:
        path = os.path.join(_share(include.package), include.launch_file)
        actions.append(
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(path), launch_arguments=list(include.arguments.items())
            )
        )
    managed: dict[str, object] = {}
    clock = None
    for spec in graph.nodes:
        node = (LifecycleNode if spec.lifecycle else Node)(
            package=spec.package,
            executable=spec.executable,
            name=spec.name,
            namespace=graph.namespace,
            parameters=[str(graph.params_path()), node_parameters(spec)],
            remappings=list(spec.remappings),
            output="screen",
            emulate_tty=True,
        )
        actions.append(node)
        if not spec.lifecycle:
            continue
        if spec.clock_source:  # configured like the others, activated by the gate below
            clock = (spec.name, node)
            actions += lifecycle_events(node, tuple(t for t in transitions if t.after_state is None))
        else:
            managed[spec.name] = node
            actions += lifecycle_events(node, transitions)
    if clock is not None and any(t.transition == "TRANSITION_ACTIVATE" for t in transitions):
        actions += clock_gate_events(clock[1], clock[0], managed)
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
