"""lerobot-doctor (a validator no one here wrote) passes both of our layouts with no failure."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from internvla_learning.episode import save_episode
from internvla_learning.lerobot_v3 import LeRobotV3Writer
from internvla_learning.write_dataset import write_dataset
from learning_synthetic import make_episode

DOCTOR = Path(sys.executable).parent / "lerobot-doctor"
# a pinned test dependency (requirements/python.txt): missing is a broken setup, not a reason to skip
assert DOCTOR.exists(), f"lerobot-doctor not found at {DOCTOR}: run make setup"


def doctor(root: Path) -> tuple[int, dict]:
    proc = subprocess.run([str(DOCTOR), "check", "--ci", "--fail-on", "fail", str(root)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    return proc.returncode, json.loads(proc.stdout)


def failures(report: dict) -> list[str]:
    return [
        f"{c['name']}: {m['message']}"
        for c in report["checks"]
        for m in c["messages"]
        if m["severity"] == "FAIL"
    ]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("doctor")
    staging = base / "staging"
    staging.mkdir()
    for seed in range(5):
        save_episode(make_episode(seed, length=30 + 4 * seed), staging / f"episode_{seed:05d}.npz")
    roots = write_dataset(staging, base / "out", "both", progress=False)
    # v3 with several data and video files (tiny size limits), many episodes in some of them
    rotated = base / "rotated"
    with LeRobotV3Writer(rotated, 10, "franka", {"third_person": (64, 64)}, make_episode(0).joint_names,
                         data_files_size_in_mb=0.02, video_files_size_in_mb=0.004, chunks_size=2) as writer:  # fmt: skip
        for seed in range(5):
            writer.add_episode(make_episode(seed, length=30 + 4 * seed, cameras=("third_person",)))
    assert (
        len(list((rotated / "videos").rglob("*.mp4"))) > 1
        and len(list((rotated / "data").rglob("*.parquet"))) > 1
    )
    return {**roots, "v3-rotated": rotated}


@pytest.mark.parametrize("kind", ["v3", "m1", "v3-rotated"])
def test_doctor_reports_no_failure(datasets, kind):
    rc, report = doctor(datasets[kind])
    assert failures(report) == []
    assert report["summary"]["FAIL"] == 0
    assert rc == 0
    assert report["format_version"] == ("v2" if kind == "m1" else "v3")
    assert report["total_episodes"] == 5
    checks = {c["name"]: c for c in report["checks"]}
    # the structural checks pass outright (the remaining warnings are about the synthetic data's content)
    for name in ("Metadata & Format Compliance", "Temporal Consistency", "Video Integrity", "Feature Consistency",
                 "Training Readiness", "Portability"):  # fmt: skip
        assert checks[name]["severity"] == "PASS", checks[name]


def test_doctor_harness_detects_a_broken_dataset(datasets, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(datasets["v3"], broken)
    info = json.loads((broken / "meta" / "info.json").read_text())
    info["total_episodes"] += 1
    (broken / "meta" / "info.json").write_text(json.dumps(info))
    rc, report = doctor(broken)
    assert rc != 0 and any("total_episodes" in f for f in failures(report))
