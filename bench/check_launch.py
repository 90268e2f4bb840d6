"""Start ``<setup>.launch.py`` through the real launch / launch_ros and time each lifecycle node to active.

The unit tests run the launch files against recording stand-ins (launch is not on PyPI); this check runs
them for real: LaunchService includes the installed launch file, the nodes start as processes, the
launch events drive configure / activate, and a probe node polls each node's ``get_state`` until all
are active (the simulator last, once the models are loaded). It prints when each node reached each
state and exits 0 when all are active within ``--wait``, 1 otherwise.

Needs a full ROS 2 install (the Docker image), or launch, launch_ros and composition_interfaces built
from source next to this workspace (see README, "Launch files").

    python bench/check_launch.py sim_franka task:=pick_green
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("setup", help="sim_franka, sim_widowx, franka or widowx")
    p.add_argument("launch_arguments", nargs="*", help="name:=value, as for ros2 launch")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for every node to be active")
    args = p.parse_args(argv)
    bad = [a for a in args.launch_arguments if ":=" not in a]
    if bad:
        p.error(f"launch arguments are name:=value, got {bad}")
    return args


def lifecycle_node_names(setup: str, arguments: dict[str, str]) -> list[str]:
    """The lifecycle nodes the launch file starts: from the same graph description it uses."""
    from internvla_bringup.graphs import build_graph, options_from_arguments
    from internvla_bringup.launch_support import ARGUMENTS

    values = {a.name: arguments.get(a.name, a.default) for a in ARGUMENTS[setup]}
    return [n.name for n in build_graph(setup, options_from_arguments(values)).nodes if n.lifecycle]


def probe_until_active(names: list[str], wait: float, t0: float, on_done) -> dict[str, str]:
    """Poll ``/<name>/get_state`` until every node is active or ``wait`` passes; returns the last states."""
    import rclpy
    from lifecycle_msgs.srv import GetState
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    context = Context()
    rclpy.init(args=[], context=context)
    node = Node("launch_check", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    clients = {name: node.create_client(GetState, f"/{name}/get_state") for name in names}
    states: dict[str, str] = {}
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline and any(states.get(n) != "active" for n in names):
            for name, client in clients.items():
                if not client.service_is_ready():
                    continue
                future = client.call_async(GetState.Request())
                executor.spin_until_future_complete(future, timeout_sec=5.0)
                if future.done() and future.result() is not None:
                    label = future.result().current_state.label
                    if states.get(name) != label:
                        print(f"{time.monotonic() - t0:7.1f} s  {name}: {label}", flush=True)
                    states[name] = label
            executor.spin_once(timeout_sec=0.2)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        on_done()
    return states


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    try:
        from ament_index_python.packages import get_package_share_directory
        from launch import LaunchDescription, LaunchService
        from launch.actions import IncludeLaunchDescription
        from launch.launch_description_sources import PythonLaunchDescriptionSource
    except ImportError as exc:
        print(f"check_launch: {exc}: needs launch and launch_ros (a full ROS 2 install)", file=sys.stderr)
        return 2
    arguments = dict(a.split(":=", 1) for a in args.launch_arguments)
    names = lifecycle_node_names(args.setup, arguments)
    path = os.path.join(get_package_share_directory("internvla_bringup"), "launch", f"{args.setup}.launch.py")
    service = LaunchService(argv=[])  # runs only on the main thread; the probe runs beside it
    service.include_launch_description(
        LaunchDescription(
            [
                IncludeLaunchDescription(
                    PythonLaunchDescriptionSource(path), launch_arguments=arguments.items()
                )
            ]
        )
    )
    t0, states = time.monotonic(), {}
    probe = threading.Thread(
        target=lambda: states.update(probe_until_active(names, args.wait, t0, service.shutdown)), daemon=True
    )
    probe.start()
    launch_rc = service.run(shutdown_when_idle=False)
    probe.join(timeout=30)
    missing = {n: states.get(n, "unreachable") for n in names if states.get(n) != "active"}
    if missing:
        print(f"not active within {args.wait:.0f} s: {missing}", flush=True)
        return 1
    print(f"all {len(names)} lifecycle nodes active; launch exited {launch_rc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
