"""The bringup command lines: --help describes every option and exits 0, usage errors exit 2 with
the reason, a node that cannot start exits 1 with one line naming it (README: exit codes)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from internvla_bringup import demo, docs, run

SRC = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {  # module -> its parser
    "internvla_bringup.run": run.build_parser,
    "internvla_bringup.demo": demo.build_parser,
}


def invoke(module: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    source_paths = [str(p) for p in sorted(SRC.iterdir()) if p.is_dir()]
    env["PYTHONPATH"] = os.pathsep.join([*source_paths, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def options_without_help(parser: argparse.ArgumentParser) -> list[str]:
    return [
        action.dest
        for action in parser._actions  # argparse has no public list of its actions
        if not (action.help and action.help.strip()) and action.help != argparse.SUPPRESS
    ]


@pytest.mark.parametrize("module", [*ENTRY_POINTS, "internvla_bringup.docs"])
def test_help_exits_0_and_names_the_exit_codes(module):
    done = invoke(module, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "Exit status" in done.stdout


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_option_has_a_help_text(module):
    assert options_without_help(ENTRY_POINTS[module]()) == []


def test_the_clock_option_is_described_in_both_entry_points():
    for make in ENTRY_POINTS.values():
        clock = next(a for a in make()._actions if "--clock" in a.option_strings)
        assert "lockstep" in clock.help and "realtime" in clock.help


@pytest.mark.parametrize(
    "module, args, reason",
    [
        ("internvla_bringup.run", ["franka"], "robot_ip"),
        ("internvla_bringup.run", ["sim_franka", "-p", "sim:width"], "NODE:NAME:=VALUE"),
        ("internvla_bringup.run", ["widowx", "--robot-ip", "10.0.0.2"], "--robot-ip applies to franka"),
        ("internvla_bringup.run", ["sim_franka", "--clock", "fast"], "invalid choice"),
        ("internvla_bringup.run", ["sim_franka", "--task", "fly"], "unknown task"),
        ("internvla_bringup.run", ["widowx", "--steps", "3"], "--instruction is required"),
        ("internvla_bringup.demo", ["--robot", "ur5"], "invalid choice"),
        ("internvla_bringup.docs", ["--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(module, args, reason):
    done = invoke(module, *args)
    assert done.returncode == 2, done.stderr
    assert reason in done.stderr


def test_docs_check_exits_1_on_drift_and_0_when_current(tmp_path, monkeypatch):
    assert docs.main(["--check"]) == 0
    stale = tmp_path / "README.md"
    stale.write_text("<!-- launch-args begin -->\n<!-- launch-args end -->\n")
    monkeypatch.setitem(docs.BLOCKS, "launch-args", (stale, docs.arguments_markdown))
    assert docs.main(["--check"]) == 1


@pytest.mark.ros
def test_a_node_that_fails_to_configure_exits_1_with_one_line_naming_it(tmp_path):
    pytest.importorskip("rclpy")
    missing = tmp_path / "no_such_checkpoint.pt"
    done = invoke(
        "internvla_bringup.run",
        "sim_franka",
        "--checkpoint",
        str(missing),
        *("--skip", "sim", "--skip", "policy_node", "--skip", "chunk_executor"),
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("internvla-run: grounding_node:") and "configure failed" in last, last
    assert "never retrieved" not in done.stderr and "Traceback" not in done.stderr
