"""The whole learning loop at toy size: the data engine records 2 Franka pick_green expert episodes at
64 px, they are written as a LeRobot v3.0 dataset, internvla-train runs stage 1 (grounding) then stage 2
(actions) on the toy model, and bench/eval_sim.py's episode runner drives one closed-loop episode through
the sim node graph with that run loaded by policy_node."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from bench_scripts import load_bench

pytestmark = [pytest.mark.slow, pytest.mark.ros]


def _eval_sim():
    return load_bench("eval_sim")


def _losses(run: Path, key: str) -> list[float]:
    return [json.loads(line)[key] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _falls(values: list[float], n: int = 4, factor: float = 0.95) -> bool:
    return float(np.mean(values[-n:])) < factor * float(np.mean(values[:n]))


def test_engine_dataset_train_stages_and_one_evaluation_episode(tmp_path):
    from internvla_learning.evaluation import (
        domain_for,
        evaluate_grounding,
        read_csv,
        training_seeds,
        write_reports,
    )
    from internvla_learning.lerobot_read import LeRobotV3Reader
    from internvla_learning.training.train import TrainConfig, train
    from internvla_learning.write_dataset import write_dataset

    from internvla_sim.data_engine import generate

    # data: 2 expert episodes of the named task, seeds 0 and 1 (the training range)
    stats = generate(
        tmp_path / "staging", "franka", 2, 0, 1, (64, 64), templates=["pick_green"], progress=False
    )
    assert stats["written"] == 2, stats
    data = write_dataset(tmp_path / "staging", tmp_path / "ds", "v3", progress=False)["v3"]
    reader = LeRobotV3Reader(data)
    first = reader.episode(0)
    assert first.task_template == "pick_green" and first.instruction == "pick up the green block"
    assert first.images["third_person"].shape[1:] == (64, 64, 3) and first.grounding is not None

    # training: stage 1 (VLM on the grounding answers), then stage 2 from it
    common = dict(data=str(data), batch_size=4, save_every=100, progress=False, seed=0)
    s1 = tmp_path / "s1"
    train(TrainConfig(out=str(s1), stage=1, tiny="toy", steps=15, lr_vlm=2e-3, **common))
    assert _falls(_losses(s1, "vlm_loss")), _losses(s1, "vlm_loss")
    s2 = tmp_path / "s2"
    train(TrainConfig(out=str(s2), stage=2, init=str(s1), steps=16, lr_action=3e-3, lr_base=3e-3, **common))
    assert _falls(_losses(s2, "action_loss")), _losses(s2, "action_loss")
    assert (s2 / "final_model" / "pytorch_model.pt").is_file()
    assert training_seeds(s2) == {0, 1}

    # grounding evaluation path (real chat + parser) on one frame; the training seeds are excluded
    from internvla_core.model import load_policy

    policy = load_policy(s1)
    scores, rows = evaluate_grounding(policy, data, frame_stride=1000, kinds=("box",), max_new_tokens=24)
    assert scores.box_n == 2 and len(rows) == 2 and 0.0 <= scores.summary()["box_mean_iou"] <= 1.0
    scores, rows = evaluate_grounding(policy, data, exclude_seeds=training_seeds(s2))
    assert scores.box_n == 0 and rows == []
    policy.close()

    # one evaluation episode through sim node, policy_node (with the stage-2 run) and chunk_executor
    eval_sim = _eval_sim()
    domain = domain_for(0, os.getpid() % 50, 1)
    result = eval_sim.run_episode(
        "franka", "pick_green", 1_000_000, checkpoint=str(s2), max_steps=4, skip_grounding=True,
        image_size=(64, 64), domain_id=domain, timeout=120.0,
    )  # fmt: skip
    assert result.error == "", result.error
    # policy_node loaded the stage-2 run (its newest checkpoint), not the untrained factory model
    assert Path(result.loaded_checkpoint) == s2 / "checkpoints" / "steps_16_pytorch_model.pt"
    assert result.goal_result == "finished" and result.instruction == "pick up the green block"
    assert result.policy_chunks >= 1 and result.sim_steps >= 1 and result.domain_id == domain
    assert result.inference_p50_s is not None and result.inference_p50_s > 0
    assert len(result.latency["inference"]) == result.policy_chunks and "dit" in result.latency
    paths = write_reports([result], tmp_path / "eval")
    with open(paths["csv"]) as f:
        row = next(csv.DictReader(f))
    assert row["task"] == "pick_green" and row["seed"] == "1000000" and row["success"] in ("True", "False")
    back = read_csv(paths["csv"])[0]
    assert (back.policy_chunks, back.sim_steps, back.loaded_checkpoint) == (
        result.policy_chunks,
        result.sim_steps,
        result.loaded_checkpoint,
    )


def test_a_two_view_run_is_evaluated_with_the_wrist_camera_and_refused_without_it(tmp_path):
    from internvla_learning.evaluation import domain_for
    from internvla_learning.training.train import TrainConfig, train
    from internvla_learning.write_dataset import write_dataset

    from internvla_sim.data_engine import generate

    stats = generate(tmp_path / "staging", "franka", 1, 0, 1, (64, 64), wrist=True, templates=["pick_green"],
                     progress=False)  # fmt: skip
    assert stats["written"] == 1, stats
    data = write_dataset(tmp_path / "staging", tmp_path / "ds", "v3", progress=False)["v3"]
    run = tmp_path / "s2"
    train(TrainConfig(out=str(run), data=str(data), stage=2, tiny="toy", steps=2, batch_size=2, save_every=100,
                      progress=False, seed=0, cameras=["third_person", "wrist"]))  # fmt: skip

    eval_sim = _eval_sim()
    assert eval_sim.checkpoint_views(str(run)) == ["third_person", "wrist"]
    assert eval_sim.parse_args(["--checkpoint", str(run)]).wrist == "auto"
    common = dict(checkpoint=str(run), max_steps=2, skip_grounding=True, image_size=(64, 64), timeout=120.0)
    domain = domain_for(0, os.getpid() % 50, 1)
    with_wrist = eval_sim.run_episode(
        "franka", "pick_green", 1_000_000, wrist=True, trace=True, domain_id=domain, **common
    )
    assert with_wrist.error == "" and with_wrist.goal_result == "finished", with_wrist.error
    assert with_wrist.policy_chunks >= 1
    # --trace: TCP - target, the gripper command, the finger opening and the target's rise per sim step,
    # from the start to where the episode ended
    steps = [row[0] for row in with_wrist.trace]
    assert steps[0] == 0 and steps[-1] == with_wrist.sim_steps and steps == sorted(set(steps))
    start = np.linalg.norm(with_wrist.trace[0][1:4])
    assert start == pytest.approx(with_wrist.start_tcp_to_target_m, abs=1e-3)
    assert all(0.0 <= row[4] <= 1.0 for row in with_wrist.trace) and with_wrist.trace[0][4] == pytest.approx(
        1.0
    )
    assert all(len(row) == 7 and 0.0 <= row[5] <= 1.0 for row in with_wrist.trace)
    assert with_wrist.trace[0][5] == pytest.approx(1.0, abs=0.02)  # the fingers start open
    assert with_wrist.trace[0][6] == pytest.approx(0.0, abs=1e-3)  # the target at its start height
    assert with_wrist.trace[-1][6] == pytest.approx(with_wrist.target_rise_m, abs=1e-4)
    # one view for a two-view model: policy_node refuses to configure instead of acting on half a scene
    without = eval_sim.run_episode("franka", "pick_green", 1_000_000, wrist=False, domain_id=domain, **common)
    assert without.policy_chunks == 0 and "policy_node: configure failed" in without.error, without.error
