"""Every name is written once: the launch arguments (graphs.ARGUMENTS) make the launch files'
declarations, internvla-run's options and the README table; the task list is the sim's registry; the
node table of docs/graph-contract.md is generated from the graphs and every remapped topic is documented."""

from __future__ import annotations

import dataclasses
import re

import pytest

from internvla_bringup import docs
from internvla_bringup.graphs import ARGUMENTS, SETUPS, GraphOptions, arguments_for, build_graph
from internvla_bringup.launch_support import ARGUMENTS as LAUNCH_ARGUMENTS
from internvla_bringup.run import build_parser, options_from_args
from internvla_sim.tasks import TASKS


def test_the_launch_arguments_are_exactly_the_graph_options():
    assert {a.name for a in ARGUMENTS} == {f.name for f in dataclasses.fields(GraphOptions)}
    assert len({a.name for a in ARGUMENTS}) == len(ARGUMENTS)


@pytest.mark.parametrize("setup", SETUPS)
def test_each_launch_file_declares_the_arguments_of_its_setup(setup):
    assert [a.name for a in LAUNCH_ARGUMENTS[setup]] == [a.name for a in arguments_for(setup)]
    assert all(a.description for a in LAUNCH_ARGUMENTS[setup])


def test_the_runner_offers_every_launch_argument_it_can_honour():
    options = {
        action.dest: action.option_strings for action in build_parser()._actions if action.option_strings
    }
    for argument in ARGUMENTS:
        if argument.runner:
            assert options[argument.name] == [argument.option], argument.name
        else:
            assert argument.name not in options
    assert options["use_fake_hardware"] == ["--use-fake-hardware"]  # was missing from internvla-run


def test_the_runner_refuses_an_option_its_setup_does_not_take():
    args = build_parser().parse_args(["franka", "--robot-ip", "10.0.0.2", "--task", "pick_green"])
    with pytest.raises(ValueError, match="--task applies to sim_franka, sim_widowx, not franka"):
        options_from_args(args)
    args = build_parser().parse_args(["franka", "--use-fake-hardware", "true"])
    assert options_from_args(args).use_fake_hardware is True
    build_graph("franka", options_from_args(args))  # no robot_ip needed with the mock hardware


def test_the_task_list_is_the_sims_registry():
    task = next(a for a in ARGUMENTS if a.name == "task")
    assert all(name in task.description for name in TASKS)
    for name in TASKS:  # every registered task builds, through the runner's options too
        args = build_parser().parse_args(["sim_franka", "--task", name])
        assert build_graph("sim_franka", options_from_args(args)).node("sim").parameters["task"] == name
    from internvla_bringup.demo import build_parser as demo_parser

    demo_task = next(a for a in demo_parser()._actions if a.dest == "task")
    assert list(demo_task.choices) == list(TASKS)


def test_the_generated_tables_match_the_graphs():
    assert docs.drift() == [], "run: python -m internvla_bringup.docs"


def test_a_stale_table_is_reported(tmp_path, monkeypatch):
    stale = tmp_path / "README.md"
    stale.write_text("intro\n<!-- launch-args begin -->\n| old |\n<!-- launch-args end -->\nrest\n")
    monkeypatch.setitem(docs.BLOCKS, "launch-args", (stale, docs.arguments_markdown))
    assert any("launch-args" in line for line in docs.drift())
    stale.write_text(docs.render("launch-args", stale.read_text()))
    assert "`--use-fake-hardware`" in stale.read_text() and stale.read_text().endswith("rest\n")


def test_every_topic_a_graph_remaps_is_in_the_graph_contract():
    contract = docs.GRAPH_CONTRACT.read_text()
    documented = set(re.findall(r"^\| `([^`]+)`", contract, re.M))
    remapped = {
        source for graph in docs.all_graphs() for spec in graph.nodes for source, _ in spec.remappings
    }
    assert remapped and remapped <= documented, sorted(remapped - documented)
