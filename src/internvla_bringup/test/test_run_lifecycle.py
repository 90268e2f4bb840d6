"""The runner drives lifecycle nodes through their public trigger_* methods: in startup order with the
clock source built and started last, autostart:=false, one line naming the node when a transition fails,
and deactivation of exactly the active nodes in the reverse order."""

from __future__ import annotations

import sys
import textwrap

import pytest

from internvla_bringup.graphs import Graph, GraphOptions, NodeSpec
from internvla_bringup.lifecycle_plan import (
    ClockGate,
    launch_transitions,
    runner_transitions,
    startup_order,
)

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

PROBES = """
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node

EVENTS = []


class Probe(LifecycleNode):
    def __init__(self, node_name, **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare_parameter("autostart", True)
        self.declare_parameter("fail_on", "")
        EVENTS.append((self.get_name(), "built"))

    def _hook(self, name, state, parent):
        EVENTS.append((self.get_name(), name))
        if self.get_parameter("fail_on").value == name:
            return TransitionCallbackReturn.FAILURE
        return parent(state)

    def on_configure(self, state):
        return self._hook("configure", state, super().on_configure)

    def on_activate(self, state):
        return self._hook("activate", state, super().on_activate)

    def on_deactivate(self, state):
        return self._hook("deactivate", state, super().on_deactivate)


class Clock(Node):
    def __init__(self, node_name, **kwargs):
        super().__init__(node_name, **kwargs)
        EVENTS.append((self.get_name(), "built"))
"""


@pytest.fixture
def probes(tmp_path, monkeypatch):
    (tmp_path / "runner_probes.py").write_text(textwrap.dedent(PROBES))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("runner_probes", None)
    import runner_probes

    runner_probes.EVENTS.clear()
    yield runner_probes
    sys.modules.pop("runner_probes", None)


def probe_graph(tmp_path) -> Graph:
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")

    def node(name: str, **kw) -> NodeSpec:
        return NodeSpec(name, "pkg", name, "runner_probes:Probe", lifecycle=True, **kw)

    sim = NodeSpec("sim", "pkg", "sim", "runner_probes:Clock", lifecycle=False, clock_source=True)
    return Graph(
        setup="probe",
        description="probes",
        robot="franka",
        simulated=True,
        params_file=str(params),  # absolute: Path / absolute = absolute
        namespace="",
        base_frame="base",
        nodes=(sim, node("first"), node("second")),
    )


def test_the_clock_source_starts_last_and_the_plans_follow_the_arguments(tmp_path):
    graph = probe_graph(tmp_path)
    assert [spec.name for spec in startup_order(graph)] == ["first", "second", "sim"]
    assert runner_transitions(GraphOptions()) == ("configure", "activate")
    assert runner_transitions(GraphOptions(activate=False)) == ("configure",)
    assert runner_transitions(GraphOptions(configure=False)) == ()
    assert [t.after_state for t in launch_transitions(GraphOptions())] == [None, "inactive"]


@pytest.mark.parametrize(
    "events",
    [
        [("sim", "inactive"), ("a", "active"), ("b", "active")],
        [("a", "active"), ("b", "active"), ("sim", "inactive")],
        [("a", "active"), ("sim", "inactive"), ("b", "active")],
    ],
)
def test_the_clock_gate_opens_once_with_the_last_of_its_conditions(events):
    gate = ClockGate("sim", ["a", "b"])
    answers = [gate.record(node, state) for node, state in events]
    assert answers == [False] * (len(events) - 1) + [True]
    assert gate.record("a", "active") is False  # once


def test_runner_brings_nodes_up_in_order_and_stops_them_in_reverse(probes, tmp_path, context):
    from internvla_bringup.composition import Composition

    composition = Composition.create(probe_graph(tmp_path), context)
    try:
        assert "sim" not in composition.nodes  # built by activate(), after every other node is up
        assert composition.nodes["first"].get_parameter("autostart").value is False
        composition.activate(GraphOptions())
        assert composition.states == {"first": "active", "second": "active"}
        composition.deactivate()
    finally:
        composition.destroy()
    assert probes.EVENTS == [
        ("first", "built"),
        ("second", "built"),
        ("first", "configure"),
        ("first", "activate"),
        ("second", "configure"),
        ("second", "activate"),
        ("sim", "built"),
        ("second", "deactivate"),
        ("first", "deactivate"),
    ]


def test_a_failed_transition_names_the_node_and_only_active_nodes_are_deactivated(probes, tmp_path, context):
    from internvla_bringup.composition import Composition, StartError

    composition = Composition.create(probe_graph(tmp_path), context, {"second": {"fail_on": "activate"}})
    try:
        with pytest.raises(StartError, match=r"^second: activate failed"):
            composition.activate(GraphOptions())
        assert "sim" not in composition.nodes  # the clock never started
        composition.deactivate()
    finally:
        composition.destroy()
    assert [e for e in probes.EVENTS if e[1] == "deactivate"] == [("first", "deactivate")]
