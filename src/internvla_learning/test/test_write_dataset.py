"""The internvla-write-dataset command: staged .npz episodes -> datasets, errors with file and seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from internvla_learning.episode import save_episode
from internvla_learning.lerobot_read import read_lerobot_v3
from learning_synthetic import make_episode

import internvla_core
import internvla_learning


def run_cli(*args: str) -> subprocess.CompletedProcess:
    paths = [str(Path(m.__file__).resolve().parents[1]) for m in (internvla_learning, internvla_core)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "internvla_learning.write_dataset", *args],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip


@pytest.fixture
def staging(tmp_path):
    d = tmp_path / "staging"
    d.mkdir()
    # written out of order: the command sorts by file name
    for seed in (2, 0, 1):
        save_episode(make_episode(seed, length=12), d / f"ep_{seed:03d}.npz")
    return d


def test_both_formats_in_name_order_and_refusal(staging, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("--staging", str(staging), "--out", str(out), "--format", "both")
    assert proc.returncode == 0, proc.stderr
    assert "episodes" in proc.stderr  # the tqdm bar
    assert [e.seed for e in read_lerobot_v3(out / "lerobot_v3")] == [0, 1, 2]
    eps = [json.loads(x) for x in (out / "m1" / "meta" / "episodes.jsonl").read_text().splitlines()]
    assert [e["seed"] for e in eps] == [0, 1, 2]
    assert (out / "m1" / "dataset_statistics.json").is_file()

    again = run_cli("--staging", str(staging), "--out", str(out), "--format", "v3")
    assert again.returncode == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr
    forced = run_cli("--staging", str(staging), "--out", str(out / "lerobot_v3"), "--format", "v3", "--overwrite",
                     "--cameras", "wrist", "--no-progress")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    info = json.loads((out / "lerobot_v3" / "meta" / "info.json").read_text())
    assert [k for k, f in info["features"].items() if f["dtype"] == "video"] == ["observation.images.wrist"]


def test_bad_episode_is_named_with_its_seed_and_nothing_is_left(staging, tmp_path):
    bad = make_episode(42, length=12)
    bad.state_joint[4, 1] = np.nan
    save_episode(bad, staging / "ep_100.npz")
    out = tmp_path / "out"
    proc = run_cli("--staging", str(staging), "--out", str(out), "--format", "both", "--no-progress")
    assert proc.returncode == 2
    assert "ep_100.npz" in proc.stderr and "seed=42" in proc.stderr and "state_joint has NaN" in proc.stderr
    assert not (out / "lerobot_v3").exists() and not (out / "m1").exists()
    assert not (out / "lerobot_v3.partial").exists() and not (out / "m1.partial").exists()


def test_empty_staging_is_an_error(tmp_path):
    proc = run_cli("--staging", str(tmp_path), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "no staged episodes" in proc.stderr


def test_view_labels_round_trip_through_the_staging_file(tmp_path):
    from internvla_learning.episode import ViewLabels, load_episode, save_episode
    from learning_synthetic import make_episode

    ep = make_episode(0, length=6, size=16, cameras=("third_person", "wrist"))
    n = ep.length
    ep.view_labels = {
        "wrist": ViewLabels(
            target_box=np.tile(np.array([1, 2, 9, 10], np.float32), (n, 1)),
            target_visible=np.linspace(0, 1, n).astype(np.float32),
            gripper_point=np.full((n, 2), np.nan, np.float32),
        )
    }
    ep.validate()
    save_episode(ep, tmp_path / "e.npz")
    back = load_episode(tmp_path / "e.npz").view_labels["wrist"]
    for name in ViewLabels.FIELDS:
        np.testing.assert_array_equal(getattr(back, name), getattr(ep.view_labels["wrist"], name))
    ep.view_labels = {"third_person": ep.view_labels["wrist"]}  # the annotation camera has its own labels
    with pytest.raises(ValueError, match="view_labels"):
        ep.validate()
