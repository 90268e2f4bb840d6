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
import importlib
import json
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .graphs import SETUPS, SIM_TASKS, Graph, GraphOptions, NodeSpec, build_graph


def node_cli_args(graph: Graph, spec: NodeSpec) -> list[str]:
    """The ``--ros-args`` a launch_ros Node action would give this node: parameter file and remaps."""
    args = ["--ros-args", "--params-file", str(graph.params_path())]
    for source, target in spec.remappings:
        args += ["-r", f"{source}:={target}"]
    return args


def build_node(graph: Graph, spec: NodeSpec, context, extra_parameters: Mapping[str, Any] | None = None):
    """Construct one node of the graph in this process."""
    from rclpy.parameter import Parameter

    module_name, class_name = spec.plugin.split(":")
    node_class = getattr(importlib.import_module(module_name), class_name)
    values = {**spec.parameters, **(extra_parameters or {})}
    return node_class(
        node_name=spec.name,
        namespace=graph.namespace,
        context=context,
        cli_args=node_cli_args(graph, spec),
        parameter_overrides=[Parameter(name, value=value) for name, value in values.items()],
    )


def _yaml_value(value: Any) -> str:
    """A parameter value as ``-p name:=value`` text (YAML, as rcl parses it)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text[: -len("\n...")] if text.endswith("\n...") else text


def standalone_command(
    graph: Graph, spec: NodeSpec, extra_parameters: Mapping[str, Any] | None = None
) -> list[str]:
    """argv running one node of the graph in a process of its own, configured as ``build_node`` does."""
    module = spec.plugin.split(":")[0]
    args = [sys.executable, "-m", module, *node_cli_args(graph, spec), "-r", f"__node:={spec.name}"]
    if graph.namespace:
        args += ["-r", f"__ns:=/{graph.namespace.strip('/')}"]
    for name, value in {**spec.parameters, **(extra_parameters or {})}.items():
        args += ["-p", f"{name}:={_yaml_value(value)}"]
    return args


def stop_process(process, timeout: float = 10.0) -> int | None:
    """SIGINT (the node holds and is destroyed, as on Ctrl-C), then SIGTERM, then SIGKILL."""
    import subprocess

    for send in (lambda: process.send_signal(signal.SIGINT), process.terminate, process.kill):
        if process.poll() is not None:
            break
        send()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
    return process.poll()


@dataclass
class Composition:
    """The graph's nodes on one rclpy context, with their executors and spin threads."""

    graph: Graph
    context: Any
    nodes: dict[str, Any] = field(default_factory=dict)
    executors: list[Any] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    _stop_spinning: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(
        cls,
        graph: Graph,
        context,
        extra_parameters: Mapping[str, Mapping[str, Any]] | None = None,
        skip: tuple[str, ...] = (),
    ) -> Composition:
        composition = cls(graph, context)
        unknown = set(skip) - {spec.name for spec in graph.nodes}
        if unknown:
            raise ValueError(f"--skip {sorted(unknown)}: not nodes of {graph.setup}")
        try:
            for spec in graph.nodes:
                if spec.name in skip:
                    continue
                extra = (extra_parameters or {}).get(spec.name)
                composition.nodes[spec.name] = build_node(graph, spec, context, extra)
        except BaseException:
            composition.destroy()
            raise
        return composition

    def add_executors(self, extra_nodes: tuple = ()) -> None:
        """Control-loop nodes on executors of their own; everything else (and extra_nodes) shared."""
        from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

        shared = MultiThreadedExecutor(num_threads=4, context=self.context)
        for spec in self.graph.nodes:
            node = self.nodes.get(spec.name)
            if node is None:
                continue
            if spec.control_loop:
                own = SingleThreadedExecutor(context=self.context)
                own.add_node(node)
                self.executors.append(own)
            else:
                shared.add_node(node)
        for node in extra_nodes:
            shared.add_node(node)
        self.executors.append(shared)

    def spin_in_background(self) -> None:
        for executor in self.executors:
            thread = threading.Thread(
                target=self._spin, args=(executor,), daemon=True, name="internvla_run_spin"
            )
            thread.start()
            self.threads.append(thread)

    def _spin(self, executor) -> None:
        """``executor.spin()`` that a flag can end between two waits: rclpy's spin loop may still submit
        work after another thread shut the executor down ("cannot schedule new futures after shutdown")."""
        from rclpy.exceptions import InvalidHandle

        while not self._stop_spinning.is_set() and self.context.ok():
            try:
                executor.spin_once(timeout_sec=0.1)
            except InvalidHandle:  # an entity destroyed by another thread while rclpy built its wait set
                continue  # the next wait set is built without it

    def activate(self) -> list[str]:
        """Configure and activate the lifecycle nodes in graph order; returns the failures (empty = ok)."""
        from rclpy.lifecycle import TransitionCallbackReturn

        failures = []
        for spec in self.graph.nodes:
            node = self.nodes.get(spec.name)
            if node is None or not spec.lifecycle:
                continue
            for transition in ("configure", "activate"):
                result = getattr(node, f"trigger_{transition}")()
                if result != TransitionCallbackReturn.SUCCESS:
                    failures.append(f"{spec.name}: {transition} failed (see its log above)")
                    break
        return failures

    def deactivate(self) -> None:
        """Deactivate the active lifecycle nodes, last first: the executor holds, then a running goal
        ends. A goal's loop occupies an executor thread, and an executor's shutdown waits for its
        threads: without this, stopping during a goal (Ctrl-C, SIGTERM, a timeout) hung for good."""
        for spec in reversed(self.graph.nodes):
            node = self.nodes.get(spec.name)
            # rclpy has no public getter for the current state
            if node is not None and spec.lifecycle and node._state_machine.current_state[1] == "active":
                node.trigger_deactivate()

    def shutdown_executors(self) -> None:
        """Stop the nodes' work (``deactivate``), then the spin threads, then the executors (which wait
        for the callbacks still running)."""
        self.deactivate()
        self._stop_spinning.set()
        for thread in self.threads:
            thread.join(timeout=5.0)
        for executor in self.executors:
            executor.shutdown()

    def destroy(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.destroy_node()
        self.nodes.clear()


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
    from internvla_msgs.action import ExecuteInstruction

    graph = composition.graph
    if not client.wait_for_server(timeout_sec=30):
        raise RuntimeError("policy_node's execute_instruction action server did not appear within 30 s")
    t0 = time.perf_counter()
    goal_future = client.send_goal_async(
        ExecuteInstruction.Goal(instruction=instruction, max_steps=args.steps or 0)
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
        "checkpoint": args.checkpoint or "tiny factory model (untrained: actions are noise)",
    }
    sim = composition.nodes.get("sim")
    if sim is not None:
        summary.update(
            {
                "task": args.task,
                "seed": args.seed,
                "task_success": bool(monitor.success),
                "sim_steps": sim.steps,
                "sim_time_s": round(sim.env.time, 3),
            }
        )
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="internvla-run", description="Compose an internvla_ros node graph in one process."
    )
    parser.add_argument("setup", choices=SETUPS)
    parser.add_argument("--namespace", default="", help="namespace for all our nodes (e.g. arm1)")
    parser.add_argument("--checkpoint", default="", help="InternVLA-M1 checkpoint (.pt or run dir)")
    parser.add_argument("--device", default="", help="torch device for the models (cpu, cuda, cuda:1)")
    parser.add_argument(
        "--dry-run",
        choices=["true", "false"],
        default=None,
        help="executor dry run (default: true on real robots, false in simulation)",
    )
    parser.add_argument("--task", default="red_on_plate", choices=SIM_TASKS, help="simulation task")
    parser.add_argument("--seed", type=int, default=0, help="simulation layout seed")
    parser.add_argument("--clock", default="lockstep", choices=["lockstep", "realtime"])
    parser.add_argument("--robot-ip", default="", help="Franka control box address (franka setup)")
    parser.add_argument("--hardware-type", default="actual", help="Interbotix hardware_type (widowx setup)")
    parser.add_argument("--instruction", default="", help="run one goal with this instruction, then exit")
    parser.add_argument("--steps", type=int, default=0, help="run one goal of at most this many model steps")
    parser.add_argument("--timeout", type=float, default=600.0, help="wall-clock limit of that goal [s]")
    parser.add_argument("--summary", default="", help="write the goal's summary JSON here")
    parser.add_argument(
        "--skip", action="append", default=[], help="a node of the graph not to start (repeatable)"
    )
    parser.add_argument(
        "--executor-process",
        choices=["shared", "separate"],
        default="shared",
        help="chunk_executor in this process (own executor thread) or in a process of its own (no GIL "
        "shared with the model's inference)",
    )
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NODE:NAME:=VALUE",
        help="override one parameter of one node (YAML value syntax), e.g. -p sim:width:=640",
    )
    return parser.parse_args(argv)


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
    return GraphOptions(
        namespace=args.namespace,
        checkpoint=args.checkpoint,
        device=args.device,
        dry_run=None if args.dry_run is None else args.dry_run == "true",
        task=args.task,
        seed=args.seed,
        clock_mode=args.clock,
        robot_ip=args.robot_ip,
        hardware_type=args.hardware_type,
    )


def _interrupt(signum, frame) -> None:
    """SIGTERM (ros2 launch, docker stop) ends the runner like Ctrl-C: nodes hold and are destroyed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        graph = build_graph(args.setup, options_from_args(args))
        overrides = parse_param_overrides(args.param)
    except ValueError as exc:
        print(f"internvla-run: {exc}", file=sys.stderr)
        return 2
    if graph.includes:
        print("internvla-run starts our nodes only; the robot's drivers must already run:", file=sys.stderr)
        for include in graph.includes:
            print(f"  {include.command()}    # {include.why}", file=sys.stderr)

    import rclpy
    from rclpy.action import ActionClient
    from rclpy.context import Context
    from rclpy.node import Node

    from internvla_msgs.action import ExecuteInstruction

    signal.signal(signal.SIGTERM, _interrupt)
    context = Context()
    rclpy.init(context=context)
    composition = None
    runner = None
    executor_process = None
    status = 0
    separate = args.executor_process == "separate" and "chunk_executor" not in args.skip
    try:
        skip = tuple(args.skip) + (("chunk_executor",) if separate else ())
        composition = Composition.create(graph, context, overrides, skip)
        episode = bool(args.steps or args.instruction)
        runner = Node("internvla_run", namespace=graph.namespace, context=context)
        monitor = EpisodeMonitor(runner) if episode else None
        # built before spinning: rclpy's ActionClient registers itself before it creates its lock
        client = ActionClient(runner, ExecuteInstruction, "execute_instruction") if episode else None
        composition.add_executors(extra_nodes=(runner,))
        composition.spin_in_background()
        if separate:  # configures and activates itself (its main)
            import subprocess

            command = standalone_command(graph, graph.node("chunk_executor"), overrides.get("chunk_executor"))
            executor_process = subprocess.Popen(command)
            print(
                f"internvla-run: chunk_executor in its own process (pid {executor_process.pid})",
                file=sys.stderr,
            )
        failures = composition.activate()
        if executor_process is not None and executor_process.poll() is not None:
            failures.append(f"chunk_executor: its process exited with status {executor_process.returncode}")
        if failures:
            for failure in failures:
                print(f"internvla-run: {failure}", file=sys.stderr)
            return 1
        names = ", ".join(composition.nodes)
        print(f"internvla-run: {graph.setup} running ({names}); Ctrl-C to stop", file=sys.stderr)
        if not episode:
            while True:
                time.sleep(1.0)
        sim = composition.nodes.get("sim")
        instruction = args.instruction or (sim.env.task.instruction if sim is not None else "")
        if not instruction:
            print("internvla-run: --instruction is required outside simulation", file=sys.stderr)
            return 2
        summary = run_goal(composition, client, monitor, args, instruction)
        text = json.dumps(summary, indent=2)
        print(text)
        if args.summary:
            Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
            Path(args.summary).write_text(text)
    except KeyboardInterrupt:
        print("internvla-run: stopping", file=sys.stderr)
    except (RuntimeError, ValueError) as exc:
        print(f"internvla-run: {exc}", file=sys.stderr)
        status = 1
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
