"""A setup's node graph composed in one process: the nodes on one rclpy context, their executors and
spin threads, and their lifecycle driven through the public ``trigger_*`` methods.

Used by ``internvla-run`` (:mod:`internvla_bringup.run`) and the demo. Nodes are built and brought up
in :func:`~internvla_bringup.lifecycle_plan.startup_order` (the clock source, the simulator, last, once
every model is loaded) and stopped in the reverse order; a node that cannot be built or a transition
that fails raises :class:`StartError` with one line naming the node and the reason.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .graphs import Graph, GraphOptions, NodeSpec
from .lifecycle_plan import node_parameters, runner_transitions, startup_order


def node_cli_args(graph: Graph, spec: NodeSpec) -> list[str]:
    """The ``--ros-args`` a launch_ros Node action would give this node: parameter file and remaps."""
    args = ["--ros-args", "--params-file", str(graph.params_path())]
    for source, target in spec.remappings:
        args += ["-r", f"{source}:={target}"]
    return args


def build_node(graph: Graph, spec: NodeSpec, context, extra_parameters: Mapping[str, Any] | None = None):
    """Construct one node of the graph in this process (lifecycle nodes with autostart:=false)."""
    from rclpy.parameter import Parameter

    module_name, class_name = spec.plugin.split(":")
    node_class = getattr(importlib.import_module(module_name), class_name)
    values = {**node_parameters(spec), **(extra_parameters or {})}
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
    autostart = {"autostart": True} if spec.lifecycle else {}  # no starter: the node's main brings it up
    for name, value in {**spec.parameters, **autostart, **(extra_parameters or {})}.items():
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


def draining_executor(context, num_threads: int = 4):
    """The shared executor: internvla_ros_common.executors.DrainingExecutor (no "never retrieved" lines)."""
    from internvla_ros_common.executors import DrainingExecutor

    return DrainingExecutor(num_threads=num_threads, context=context)


class StartError(RuntimeError):
    """A node could not be built or a transition failed: one line naming the node and the reason."""


def _one_line(exc: BaseException) -> str:
    from internvla_ros_common.errors import one_line  # "device:=cuda but this torch has no CUDA: ..."

    return one_line(exc)


@dataclass
class Composition:
    """The graph's nodes on one rclpy context, with their executors and spin threads.

    Nodes are built and brought up in :func:`~internvla_bringup.lifecycle_plan.startup_order`: the
    clock source (the simulator) is built and started last, once every model is loaded. Lifecycle
    transitions go through the nodes' public ``trigger_*`` methods; ``states`` records where each
    lifecycle node is, from those results, so that stopping deactivates exactly the active ones."""

    graph: Graph
    context: Any
    extra_parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    nodes: dict[str, Any] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    executors: list[Any] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    _shared: Any = None
    _stop_spinning: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(
        cls,
        graph: Graph,
        context,
        extra_parameters: Mapping[str, Mapping[str, Any]] | None = None,
        skip: tuple[str, ...] = (),
    ) -> Composition:
        """Build every node but the clock source (built by :meth:`activate`, after the others)."""
        composition = cls(graph, context, dict(extra_parameters or {}), tuple(skip))
        unknown = set(skip) - {spec.name for spec in graph.nodes}
        if unknown:
            raise ValueError(f"--skip {sorted(unknown)}: not nodes of {graph.setup}")
        try:
            for spec in startup_order(graph):
                if spec.name not in skip and not spec.clock_source:
                    composition._build(spec)
        except BaseException:
            composition.destroy()
            raise
        return composition

    def _build(self, spec: NodeSpec) -> Any:
        try:
            node = build_node(self.graph, spec, self.context, self.extra_parameters.get(spec.name))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            raise StartError(f"{spec.name}: cannot start: {_one_line(exc)}") from exc
        self.nodes[spec.name] = node
        if spec.lifecycle:
            self.states[spec.name] = "unconfigured"
        return node

    def add_executors(self, extra_nodes: tuple = ()) -> None:
        """Control-loop nodes on executors of their own; everything else (and extra_nodes) shared."""
        self._shared = draining_executor(self.context)
        for spec in self.graph.nodes:
            if spec.name in self.nodes:
                self._add_to_executor(spec, self.nodes[spec.name])
        for node in extra_nodes:
            self._shared.add_node(node)
        self.executors.append(self._shared)

    def _add_to_executor(self, spec: NodeSpec, node) -> None:
        from rclpy.executors import SingleThreadedExecutor

        if not spec.control_loop:
            self._shared.add_node(node)
            return
        own = SingleThreadedExecutor(context=self.context)
        own.add_node(node)
        self.executors.insert(0, own)
        if self.threads:  # already spinning: this one too
            self._start_thread(own)

    def spin_in_background(self) -> None:
        for executor in self.executors:
            self._start_thread(executor)

    def _start_thread(self, executor) -> None:
        thread = threading.Thread(target=self._spin, args=(executor,), daemon=True, name="internvla_run_spin")
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

    def _transition(self, name: str, transition: str) -> None:
        """One ``trigger_<transition>()``; a result other than SUCCESS raises StartError."""
        from rclpy.lifecycle import TransitionCallbackReturn

        result = getattr(self.nodes[name], f"trigger_{transition}")()
        if result != TransitionCallbackReturn.SUCCESS:
            self.states[name] = "failed"
            raise StartError(f"{name}: {transition} failed ({result.name.lower()}; its log above says why)")
        self.states[name] = {"configure": "inactive", "activate": "active", "deactivate": "inactive"}[
            transition
        ]

    def activate(self, options: GraphOptions | None = None) -> None:
        """Bring the nodes up in startup order (configure, then activate, as ``options`` allow), the
        clock source last (built here). Raises StartError naming the node and the reason."""
        transitions = runner_transitions(options or GraphOptions())
        for spec in startup_order(self.graph):
            if spec.name in self.skip:
                continue
            node = self.nodes.get(spec.name)
            if node is None:  # the clock source
                node = self._build(spec)
                if self._shared is not None:
                    self._add_to_executor(spec, node)
            if spec.lifecycle:
                for transition in transitions:
                    self._transition(spec.name, transition)

    def deactivate(self) -> None:
        """Deactivate the active lifecycle nodes in reverse startup order (the clock first, then the
        executor holds, then a running goal ends). A goal's loop occupies an executor thread, and an
        executor's shutdown waits for its threads: without this, stopping during a goal hung for good."""
        for spec in reversed(startup_order(self.graph)):
            if self.states.get(spec.name) == "active":
                try:
                    self._transition(spec.name, "deactivate")
                except StartError as exc:  # keep stopping the others
                    print(f"internvla-run: {exc}", file=sys.stderr)

    def shutdown_executors(self) -> None:
        """Stop the nodes' work (``deactivate``), then the spin threads, then the executors (which wait
        for the callbacks still running)."""
        try:
            self.deactivate()
        finally:
            self._stop_spinning.set()
            for thread in self.threads:
                thread.join(timeout=5.0)
            for executor in self.executors:
                executor.shutdown()

    def destroy(self) -> None:
        """Destroy the nodes in reverse startup order."""
        for spec in reversed(startup_order(self.graph)):
            node = self.nodes.pop(spec.name, None)
            if node is not None:
                node.destroy_node()
        self.nodes.clear()
