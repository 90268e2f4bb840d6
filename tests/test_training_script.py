"""scripts/train_task.sh: the recipe each demo task is trained with, read from its dry run (DRY_RUN=1 prints
every command instead of running it), so that a variable the shell cannot expand or a task-specific
argument that went missing fails here, not an hour into a run."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dry_run(tmp_path: Path, script: str = "train_task.sh", **env: str) -> list[list[str]]:
    """The commands of a dry run (each split into its arguments); runs go to ``tmp_path`` (none are
    finished there, so every training step is printed)."""
    full = {**os.environ, "DRY_RUN": "1", "RUNS": str(tmp_path / "runs"), **env}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / script)],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [shlex.split(line[2:]) for line in done.stdout.splitlines() if line.startswith("+ ")]


def command(commands: list[list[str]], *words: str) -> list[str]:
    """The one command holding all ``words`` in order of appearance anywhere."""
    found = [c for c in commands if all(w in c for w in words)]
    assert len(found) == 1, (words, found)
    return found[0]


def value(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def stage(commands: list[list[str]], number: int) -> list[str]:
    """The one training command of ``--stage number``."""
    found = [c for c in commands if "--stage" in c and value(c, "--stage") == str(number)]
    assert len(found) == 1, (number, found)
    return found[0]


@pytest.mark.parametrize(
    ("task", "short", "max_steps", "container", "pauses"),
    [
        ("pick_green", "pg", "120", False, "grasp"),
        ("push_blue_left", "pb", "120", False, "settle"),  # no grasp to keep the settled frames for
        ("red_on_plate", "rp", "180", True, "grasp"),
    ],
)
def test_each_task_is_recorded_trained_evaluated_and_exported_under_its_own_names(
    tmp_path, task, short, max_steps, container, pauses
):
    commands = dry_run(tmp_path, TASK=task)
    engines = [c for c in commands if "internvla_sim.data_engine" in c]
    assert engines and all(value(c, "--templates") == task for c in engines)
    stage2 = stage(commands, 2)
    assert Path(value(stage2, "--out")).name.startswith(f"{short}_s2")
    assert ("--spatial-aux-container" in stage2) is container  # only a put_on task has a plate to find
    assert value(stage2, "--drop-pauses") == pauses and f"_drop{pauses}_" in value(stage2, "--out")
    assert value(stage(commands, 0), "--data") == value(stage2, "--data")
    evaluation = command(commands, "bench/eval_sim.py")
    assert value(evaluation, "--tasks") == task and value(evaluation, "--max-steps") == max_steps
    assert int(value(evaluation, "--seed-start")) >= 1_000_000  # never a training seed
    assert value(evaluation, "--checkpoint") == value(stage2, "--out")


def test_the_widowx_gets_its_own_data_runs_and_model_and_the_franka_keeps_its_names(tmp_path):
    widowx, franka = dry_run(tmp_path, ROBOT="widowx"), dry_run(tmp_path)
    assert all(value(c, "--robot") == "widowx" for c in widowx if "internvla_sim.data_engine" in c)
    for cmd in (stage(widowx, 2), stage(widowx, 0)):
        assert "widowx" in Path(value(cmd, "--out")).name and "widowx" in value(cmd, "--data")
    assert Path(value(stage(franka, 2), "--out")).name == "pg_s2_dart_descent_dropgrasp_wrist"  # as before
    evaluation = command(widowx, "bench/eval_sim.py")
    assert value(evaluation, "--robot") == "widowx"
    # the Franka's 12-step (1.2 s) gripper commitment, at the WidowX's 5 Hz
    assert value(evaluation, "--gripper-commit-steps") == "6"
    assert value(command(franka, "bench/eval_sim.py"), "--gripper-commit-steps") == "12"
    assert "m1_tiny_widowx_pick_green" in next(line for line in widowx if line[0] == "export")[3]


def test_train_pick_green_sh_is_train_task_sh_for_pick_green(tmp_path):
    assert dry_run(tmp_path, "train_pick_green.sh") == dry_run(tmp_path, TASK="pick_green")


def test_stage1_trains_on_the_dataset_that_is_written(tmp_path):
    """With DART (the default) only the mixed dataset is written: stage 1 must read it, not the clean
    episodes' name, which no step writes."""
    commands = dry_run(tmp_path, STAGE1="1")
    stage1 = stage(commands, 1)
    assert value(stage1, "--data") == value(stage(commands, 2), "--data")
    assert value(stage(commands, 0), "--init") == value(stage1, "--out")


def test_an_unknown_task_stops_before_anything_runs():
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "train_task.sh")],
        cwd=ROOT,
        env={**os.environ, "DRY_RUN": "1", "TASK": "stack_cups"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "TASK must be" in done.stderr and not done.stdout
