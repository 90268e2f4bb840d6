"""How a graph's lifecycle nodes are brought up and down: the plan both starters follow.

Plain data, no rclpy and no launch, so it is tested here and read by the two starters:
:mod:`internvla_bringup.launch_support` turns :func:`launch_transitions` into launch_ros event
handlers; :mod:`internvla_bringup.run` calls the nodes' ``trigger_*`` methods in :func:`startup_order`
and stops them in the reverse order. Nodes started by either get ``autostart:=false``: the starter, not
the node, decides when it configures and activates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .graphs import Graph, GraphOptions, NodeSpec


@dataclass(frozen=True)
class LaunchTransition:
    """One transition of a LifecycleNode in a launch file, and the event that sends it."""

    transition: str  # the lifecycle_msgs/msg/Transition constant, e.g. TRANSITION_CONFIGURE
    after_state: str | None  # None: once the node's process started; else the state it must reach first


def launch_transitions(options: GraphOptions) -> tuple[LaunchTransition, ...]:
    """CONFIGURE when the process starts, ACTIVATE once it is inactive (sent earlier it would be
    dropped), as far as the ``configure`` / ``activate`` arguments allow."""
    if not options.configure:
        return ()
    configure = LaunchTransition("TRANSITION_CONFIGURE", None)
    if not options.activate:
        return (configure,)
    return (configure, LaunchTransition("TRANSITION_ACTIVATE", "inactive"))


def runner_transitions(options: GraphOptions) -> tuple[str, ...]:
    """The ``trigger_*`` transitions the in-process runner drives each lifecycle node through."""
    if not options.configure:
        return ()
    return ("configure", "activate") if options.activate else ("configure",)


def node_parameters(spec: NodeSpec) -> dict[str, Any]:
    """The node's overrides as a starter passes them: lifecycle nodes wait for their starter."""
    return {**spec.parameters, **({"autostart": False} if spec.lifecycle else {})}


def startup_order(graph: Graph) -> tuple[NodeSpec, ...]:
    """Graph order, the clock source (the simulator) last: sim time starts once every model is loaded
    and every consumer listens, so the first lock-step observation is not waited on or missed."""
    return tuple(
        sorted(graph.nodes, key=lambda spec: spec.clock_source)  # stable: graph order otherwise
    )


class ClockGate:
    """When ``ros2 launch`` may activate the clock source: once it is inactive (configured) and every
    other lifecycle node of the graph is active, whichever comes last. Fed by the launch file's state
    transition events; says yes exactly once."""

    def __init__(self, clock: str, waits_for: Iterable[str]) -> None:
        self.clock = clock
        self.waiting = set(waits_for)
        self.clock_ready = False
        self.opened = False

    def record(self, node: str, state: str) -> bool:
        """Note that ``node`` reached ``state``; True when the clock source is to be activated now."""
        if node == self.clock and state == "inactive":
            self.clock_ready = True
        elif state == "active":
            self.waiting.discard(node)
        if self.opened or not self.clock_ready or self.waiting:
            return False
        self.opened = True
        return True
