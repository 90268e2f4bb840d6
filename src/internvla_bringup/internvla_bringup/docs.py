"""Generated documentation blocks: the launch-argument table of the bringup README and the node table
of docs/graph-contract.md, both from the graph description (:mod:`internvla_bringup.graphs`).

    python -m internvla_bringup.docs           # rewrite the blocks
    python -m internvla_bringup.docs --check   # exit 1 naming each block that drifted

Each block sits between ``<!-- <name> begin -->`` and ``<!-- <name> end -->``; the text around it is
written by hand. A test runs the check, so an argument or node added to the graphs without its
documentation fails.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from .graphs import ARGUMENTS, SETUPS, GraphOptions, build_graph

REPO = Path(__file__).resolve().parents[3]
BRINGUP_README = REPO / "src" / "internvla_bringup" / "README.md"
GRAPH_CONTRACT = REPO / "docs" / "graph-contract.md"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _setups(setups: tuple[str, ...]) -> str:
    return "all" if setups == SETUPS else ", ".join(setups)


def arguments_markdown() -> str:
    """One row per launch argument: its runner option, the setups that take it, default, meaning."""
    rows = [
        "| argument | `internvla-run` | setups | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for argument in ARGUMENTS:
        defaults = {argument.default(setup) for setup in argument.setups}
        default = (
            argument.default()
            if len(defaults) == 1
            else ", ".join(f"{s}: {argument.default(s)}" for s in argument.setups)
        )
        option = f"`{argument.option}`" if argument.runner else "(launch only)"
        rows.append(
            f"| `{argument.name}` | {option} | {_setups(argument.setups)} | "
            f"{f'`{default}`' if default else 'empty'} | {_cell(argument.description)} |"
        )
    return "\n".join(rows) + "\n"


def all_graphs():
    """Every setup's graph with the arguments that make it buildable (the Franka needs an address)."""
    return [build_graph(setup, GraphOptions(robot_ip="172.16.0.2")) for setup in SETUPS]


def nodes_markdown() -> str:
    """One row per node of any setup: name, module:class, executable, lifecycle or plain, setups."""
    seen: dict[str, tuple] = {}
    for graph in all_graphs():
        for spec in graph.nodes:
            entry = seen.setdefault(spec.name, (spec, []))
            entry[1].append(graph.setup)
    rows = [
        "| node (default name) | module:class | `ros2 run` | kind | setups |",
        "|---|---|---|---|---|",
    ]
    for spec, setups in seen.values():
        kind = "lifecycle" if spec.lifecycle else "plain node"
        if spec.clock_source:
            kind += ", clock source (started last)"
        if spec.control_loop:
            kind += ", control loop (executor of its own in `internvla-run`)"
        rows.append(
            f"| `{spec.name}` | `{spec.plugin}` | `{spec.package} {spec.executable}` | {kind} | "
            f"{_setups(tuple(setups))} |"
        )
    return "\n".join(rows) + "\n"


BLOCKS: dict[str, tuple[Path, Callable[[], str]]] = {
    "launch-args": (BRINGUP_README, arguments_markdown),
    "graph-nodes": (GRAPH_CONTRACT, nodes_markdown),
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {re.escape(name)} begin -->\n)(.*?)(<!-- {re.escape(name)} end -->)", re.S)


def render(name: str, text: str) -> str:
    """``text`` with the block ``name`` regenerated (ValueError when its markers are missing)."""
    path, make = BLOCKS[name]
    pattern = _pattern(name)
    if not pattern.search(text):
        raise ValueError(f"{path}: no <!-- {name} begin --> ... <!-- {name} end --> block")
    return pattern.sub(lambda m: m.group(1) + make() + m.group(3), text, count=1)


def drift() -> list[str]:
    """One line per block whose file differs from what the graphs generate."""
    problems = []
    for name, (path, _make) in BLOCKS.items():
        text = path.read_text()
        if render(name, text) != text:
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            problems.append(f"{shown}: block '{name}' is out of date")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m internvla_bringup.docs",
        description="Regenerate (or check) the launch-argument and node tables from the graph description.",
        epilog="Exit status: 0 up to date / rewritten, 1 drift found with --check, 2 usage.",
    )
    parser.add_argument("--check", action="store_true", help="only report blocks that drifted (exit 1)")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    for name, (path, _make) in BLOCKS.items():
        path.write_text(render(name, path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
