"""The data loop at toy size, with tools no one here wrote: engine -> staging -> LeRobot v3.0 and the
M1 v2.1 layout -> ``lerobot-doctor`` passes both -> read back -> the answers parse to the labels."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from internvla_learning.episode import load_episode
from internvla_learning.lerobot_read import read_lerobot_v3
from internvla_learning.write_dataset import write_dataset

from internvla_core.grounding import parse_grounding_text
from internvla_sim.data_engine import generate

DOCTOR = shutil.which("lerobot-doctor") or str(Path(sys.executable).with_name("lerobot-doctor"))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    generate(root / "staging", "franka", episodes=3, seed_start=0, workers=1, image_size=(64, 64))
    staged = sorted((root / "staging" / "episodes").glob("*.npz"))
    assert len(staged) >= 2, "the expert solves most draws"
    outs = write_dataset(root / "staging", root / "out", "both", progress=False)
    return staged, outs


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["v3", "m1"])
def test_lerobot_doctor_finds_no_failure_in_engine_datasets(datasets, layout):
    _, outs = datasets
    run = subprocess.run([DOCTOR, "check", "--ci", "--fail-on", "fail", str(outs[layout])],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


@pytest.mark.slow
def test_the_v3_dataset_reads_back_the_engine_episodes_and_their_answers_parse_to_the_labels(datasets):
    staged, outs = datasets
    for path, episode in zip(staged, read_lerobot_v3(outs["v3"]), strict=True):
        original = load_episode(path)
        assert episode.instruction == original.instruction and episode.seed == original.seed
        np.testing.assert_allclose(episode.action_ee_delta, original.action_ee_delta, atol=1e-6)
        np.testing.assert_allclose(episode.action_joint, original.action_joint, atol=1e-6)
        frames = episode.images["third_person"].astype(np.int16)
        assert np.abs(frames - original.images["third_person"]).mean() < 6  # H.264 at crf 23
        labels = original.grounding
        for t in range(original.length):
            parsed = parse_grounding_text(episode.grounding.box_answer[t], "box")
            if labels.target_visible[t] > 0:  # integer pixels, the Qwen2.5-VL convention
                ((_label, box),) = parsed.boxes
                np.testing.assert_allclose(box, labels.target_box[t], atol=0.5 + 1e-6)
            else:
                assert parsed.boxes == []
