"""internvla-run: compose a setup's node graph in one process (no ``launch`` package needed).

    internvla-run sim_franka                         # run until Ctrl-C; send goals to execute_instruction
    internvla-run sim_widowx --task pick_green --seed 3 --steps 30 --summary out/summary.json
    internvla-run franka --robot-ip 172.16.0.2       # our nodes only: start the drivers first (printed)

The nodes, their parameter file (``config/<setup>.yaml``), per-node overrides and remappings come from
:mod:`internvla_bringup.graphs`, the same description the ``ros2 launch`` files use; parameter files and
remappings are applied through each node's ``--ros-args`` exactly as ``launch_ros`` passes them. The
control-loop node (chunk_executor) gets a single-threaded executor of its own; the others share a
multi-threaded one. Lifecycle nodes are configured and activated in graph order; a failure is reported
with the node's reason and the runner exits with status 1.

``--executor-process separate`` runs chunk_executor in a process of its own (``python -m
internvla_policy.chunk_executor_node`` with the same parameter file, remappings, name, namespace and
overrides, see ``standalone_command``), as ros2_control runs its loop apart from the planners: the
model's inference then shares no interpreter (GIL) with the 100 Hz control loop. ``ros2 launch`` already
starts every node in its own process.

With ``--steps`` (or ``--instruction``) the runner runs one ExecuteInstruction goal, prints a summary
(and writes it with ``--summary``) and exits: status 0 when the goal ran, whatever the task outcome.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .composition import Composition, StartError, standalone_command, stop_process
from .graphs import ARGUMENTS, SETUPS, Graph, GraphOptions, build_graph, options_from_arguments

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class EpisodeMonitor:
    """Counts what flows during a goal: chunks, trajectories, joint motion, the sim's success flag."""

    def __init__(self, node) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool
        from trajectory_msgs.msg import JointTrajectory

        from internvla_msgs.msg import ActionChunk

        self._lock = threading.Lock()
        self.chunks = 0
        self.stop_chunks = 0
        self.trajectories = 0
        self.first_joints: dict[str, float] | None = None
        self.last_joints: dict[str, float] | None = None
        self.success: bool | None = None
        self.inference: list[float] = []
        node.create_subscription(ActionChunk, "action_chunk", self._on_chunk, 50)
        node.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", self._on_traj, 50)
        node.create_subscription(JointState, "joint_states", self._on_joints, 50)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(Bool, "task/success", self._on_success, latched)

    def _on_chunk(self, msg) -> None:
        with self._lock:
            if msg.rows:
                self.chunks += 1
                self.inference.append(float(msg.inference_latency))
            else:
                self.stop_chunks += 1

    def _on_traj(self, msg) -> None:
        with self._lock:
            self.trajectories += 1

    def _on_joints(self, msg) -> None:
        joints = dict(zip(msg.name, msg.position))
        with self._lock:
            if self.first_joints is None:
                self.first_joints = joints
            self.last_joints = joints

    def _on_success(self, msg) -> None:
        with self._lock:
            self.success = bool(msg.data)

    def joint_motion(self, joints: list[str]) -> float:
        """Largest absolute change of the given joints between the first and last joint_states [rad]."""
        with self._lock:
            if not self.first_joints or not self.last_joints:
                return 0.0
            changes = [
                abs(self.last_joints[j] - self.first_joints[j])
                for j in joints
                if j in self.first_joints and j in self.last_joints
            ]
        return float(max(changes, default=0.0))


def run_goal(composition: Composition, client, monitor: EpisodeMonitor, args, instruction: str) -> dict:
    """One ExecuteInstruction goal of at most ``args.steps`` steps within ``args.timeout`` seconds; the
    summary names the checkpoint, task and seed the graph was built with."""
    from internvla_msgs.action import ExecuteInstruction
    from internvla_ros_common.action_goals import send_goal

    graph = composition.graph
    if not client.wait_for_server(timeout_sec=30):
        raise RuntimeError("policy_node's execute_instruction action server did not appear within 30 s")
    t0 = time.perf_counter()
    goal_future = send_goal(  # survives rclpy 9.1.2's lost goal answer (internvla_ros_common.action_goals)
        client,
        ExecuteInstruction,
        ExecuteInstruction.Goal(instruction=instruction, max_steps=args.steps or 0),
    )
    deadline = time.monotonic() + args.timeout
    while not goal_future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not goal_future.done() or not goal_future.result().accepted:
        raise RuntimeError("the goal was not accepted (see policy_node's log)")
    result_future = goal_future.result().get_result_async()
    while not result_future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    result = result_future.result().result if result_future.done() else None
    time.sleep(0.3)  # the last commands reach the simulated arm and the monitor
    executor_node = composition.nodes.get("chunk_executor")
    # chunk_executor in its own process: every joint the monitor saw
    arm_joints = (
        list(executor_node.settings.arm_joints)
        if executor_node is not None
        else sorted(monitor.first_joints or {})
    )
    summary: dict[str, Any] = {
        "setup": graph.setup,
        "robot": graph.robot,
        "instruction": instruction,
        "goal_result": result.reason if result is not None else f"runner timeout ({args.timeout} s)",
        "goal_finished": bool(result.success) if result is not None else False,
        "policy_chunks": monitor.chunks,
        "stop_chunks": monitor.stop_chunks,
        "trajectories": monitor.trajectories,
        "max_joint_motion_rad": round(monitor.joint_motion(arm_joints), 5),
        "wall_time_s": round(wall, 3),
        "inference_p50_s": round(float(np.median(monitor.inference)), 5) if monitor.inference else None,
        "checkpoint": graph.node("policy_node").parameters.get("checkpoint")
        or "tiny factory model (untrained: actions are noise)",
    }
    sim = composition.nodes.get("sim")
    if sim is not None:
        summary.update(
            {
                "task": graph.node("sim").parameters["task"],
                "seed": graph.node("sim").parameters["seed"],
                "task_success": bool(monitor.success),
                "sim_steps": sim.steps,
                "sim_time_s": round(sim.env.time, 3),
            }
        )
    return summary


def _setups_text(setups: tuple[str, ...]) -> str:
    return "all setups" if setups == SETUPS else ", ".join(setups) + " only"


def build_parser() -> argparse.ArgumentParser:
    """The runner's command line: the graph's launch arguments (from graphs.ARGUMENTS) plus its own."""
    parser = argparse.ArgumentParser(
        prog="internvla-run",
        description="Compose an internvla_ros node graph in one process (no launch package needed).",
        epilog="Exit status: 0 success (a goal ran, whatever the task outcome; or stopped with Ctrl-C), "
        "1 failure (a node failed to start or to configure/activate: one line names it and why), "
        "2 usage (bad arguments).",
    )
    parser.add_argument("setup", choices=SETUPS, help="which node graph: " + ", ".join(SETUPS))
    graph = parser.add_argument_group("graph (the launch arguments of <setup>.launch.py)")
    for argument in ARGUMENTS:
        if not argument.runner:
            continue
        graph.add_argument(
            argument.option,
            dest=argument.name,
            default=None,  # None = not given: the setup's default, and no check that it applies
            choices=argument.choices or None,
            metavar=None if argument.choices else argument.name.upper(),
            help=f"{argument.description} ({_setups_text(argument.setups)}; default: "
            f"{argument.default() or 'empty'})",
        )
    own = parser.add_argument_group("runner")
    own.add_argument("--instruction", default="", help="run one goal with this instruction, then exit")
    own.add_argument(
        "--steps", type=int, default=0, help="run one goal of at most this many model steps, then exit"
    )
    own.add_argument("--timeout", type=float, default=600.0, help="wall-clock limit of that goal [s]")
    own.add_argument("--summary", default="", help="write the goal's summary JSON to this path")
    own.add_argument(
        "--skip", action="append", default=[], help="a node of the graph not to start (repeatable)"
    )
    own.add_argument(
        "--executor-process",
        choices=["shared", "separate"],
        default="shared",
        help="chunk_executor in this process (own executor thread) or in a process of its own (no GIL "
        "shared with the model's inference)",
    )
    own.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NODE:NAME:=VALUE",
        help="override one parameter of one node (YAML value syntax), e.g. -p sim:width:=640",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def parse_param_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    import yaml

    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        node, sep, rest = item.partition(":")
        name, sep2, text = rest.partition(":=")
        if not (sep and sep2 and node and name):
            raise ValueError(f"parameter override '{item}' is not NODE:NAME:=VALUE")
        overrides.setdefault(node, {})[name] = yaml.safe_load(text)
    return overrides


def options_from_args(args: argparse.Namespace) -> GraphOptions:
    """GraphOptions from the graph options given; ValueError for one the setup does not take."""
    given = {
        a.name: getattr(args, a.name) for a in ARGUMENTS if a.runner and getattr(args, a.name) is not None
    }
    for argument in ARGUMENTS:
        if argument.name in given and args.setup not in argument.setups:
            raise ValueError(f"{argument.option} applies to {', '.join(argument.setups)}, not {args.setup}")
    return options_from_arguments(given)


def _interrupt(signum, frame) -> None:
    """SIGTERM (ros2 launch, docker stop) ends the runner like Ctrl-C: nodes hold and are destroyed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    episode = bool(args.steps or args.instruction)
    try:
        options = options_from_args(args)
        graph = build_graph(args.setup, options)
        overrides = parse_param_overrides(args.param)
        if episode and not args.instruction and not graph.simulated:
            raise ValueError("--instruction is required outside simulation")
        if episode and not (options.configure and options.activate):
            raise ValueError("a goal (--steps / --instruction) needs --configure true and --activate true")
    except ValueError as exc:
        print(f"internvla-run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if graph.includes:
        print("internvla-run starts our nodes only; the robot's drivers must already run:", file=sys.stderr)
        for include in graph.includes:
            print(f"  {include.command()}    # {include.why}", file=sys.stderr)
    for transform in graph.static_transforms:  # no tf2_ros on PyPI: the launch files start it
        arguments = " ".join(transform.arguments())
        print(f"  ros2 run tf2_ros static_transform_publisher {arguments}    # calibration", file=sys.stderr)
    return _run(args, options, graph, overrides, episode)


def _run(args, options: GraphOptions, graph: Graph, overrides: dict, episode: bool) -> int:
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.context import Context
    from rclpy.node import Node

    from internvla_msgs.action import ExecuteInstruction

    signal.signal(signal.SIGTERM, _interrupt)
    context = Context()
    rclpy.init(args=[], context=context)
    composition = None
    runner = None
    executor_process = None
    status = EXIT_OK
    separate = args.executor_process == "separate" and "chunk_executor" not in args.skip
    try:
        skip = tuple(args.skip) + (("chunk_executor",) if separate else ())
        composition = Composition.create(graph, context, overrides, skip)
        runner = Node("internvla_run", namespace=graph.namespace, context=context)
        monitor = EpisodeMonitor(runner) if episode else None
        # built before spinning: rclpy's ActionClient registers itself before it creates its lock
        client = ActionClient(runner, ExecuteInstruction, "execute_instruction") if episode else None
        composition.add_executors(extra_nodes=(runner,))
        composition.spin_in_background()
        if separate:  # configures and activates itself (its main, autostart:=true)
            import subprocess

            command = standalone_command(graph, graph.node("chunk_executor"), overrides.get("chunk_executor"))
            executor_process = subprocess.Popen(command)
            print(
                f"internvla-run: chunk_executor in its own process (pid {executor_process.pid})",
                file=sys.stderr,
            )
        composition.activate(options)
        if executor_process is not None and executor_process.poll() is not None:
            raise StartError(f"chunk_executor: its process exited with status {executor_process.returncode}")
        names = ", ".join(composition.nodes)
        print(f"internvla-run: {graph.setup} running ({names}); Ctrl-C to stop", file=sys.stderr)
        if not episode:
            while True:
                time.sleep(1.0)
        sim = composition.nodes.get("sim")
        instruction = args.instruction or sim.env.task.instruction
        summary = run_goal(composition, client, monitor, args, instruction)
        text = json.dumps(summary, indent=2)
        print(text)
        if args.summary:
            Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
            Path(args.summary).write_text(text)
    except KeyboardInterrupt:
        print("internvla-run: stopping", file=sys.stderr)
    except (RuntimeError, ValueError) as exc:  # StartError included: one line, the node and why
        print(f"internvla-run: {exc}", file=sys.stderr)
        status = EXIT_FAILURE
    finally:
        if executor_process is not None:  # first: the arm holds before the goal's node goes away
            stop_process(executor_process)
        if composition is not None:
            composition.shutdown_executors()
            composition.destroy()
        if runner is not None:
            runner.destroy_node()
        rclpy.try_shutdown(context=context)
    return status


if __name__ == "__main__":
    sys.exit(main())
