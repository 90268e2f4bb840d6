"""Stage 0 (vision pre-training of the DINO encoder on dense maps): the targets mean what they say, only
DINO moves, the loss falls, the run resumes exactly, keeps upstream's keys and serves as --init."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from internvla_learning.lerobot_v3 import LeRobotV3Writer
from internvla_learning.training.data import load_training_data
from internvla_learning.training.train import TINY_PRESETS, TrainConfig, TrainingError, train
from internvla_learning.training.vision import (
    OUTPUTS,
    box_coverage,
    dense_loss,
    dense_targets,
    head_outputs,
    patch_centres,
)
from learning_synthetic import JOINTS, make_episode

from internvla_core.model.tiny import TinySpec


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "ds"
    with LeRobotV3Writer(root, 10, "franka", {"third_person": (64, 64)}, JOINTS) as writer:
        for seed in range(2):
            writer.add_episode(make_episode(seed, length=20, size=64, cameras=("third_person",)))
    return root


def _cfg(data, out, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), batch_size=4, save_every=10, progress=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _losses(run, key):
    return [json.loads(line)[key] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_patch_centres_are_row_major_like_vit_tokens():
    c = patch_centres(4, 2)
    assert c.shape == (8, 2)
    np.testing.assert_allclose(c[0], [0.125, 0.25])
    np.testing.assert_allclose(c[1], [0.375, 0.25])  # the next token is to the right
    np.testing.assert_allclose(c[4], [0.125, 0.75])  # the fifth starts the second row


def test_box_coverage_is_the_covered_fraction_of_each_patch():
    cover = box_coverage(np.array([[0.0, 0.0, 0.5, 0.5], [0.125, 0.0, 0.375, 0.25], [np.nan] * 4]), 4, 4)
    grid = cover.reshape(3, 4, 4)
    np.testing.assert_allclose(grid[0, :2, :2], 1.0)  # the top-left quarter, whole patches
    assert grid[0].sum() == pytest.approx(4.0) and grid[0, 2:, :].sum() == 0
    np.testing.assert_allclose(grid[1, 0, :2], 0.5)  # half of each of two patches
    assert grid[1].sum() == pytest.approx(1.0)  # area 1/16 of the image = one patch
    assert grid[2].sum() == 0  # no box: nothing to find


def test_dense_targets_point_from_every_patch_to_the_target_and_the_gripper():
    t = dense_targets(np.array([[0.5, 0.5, 0.75, 0.75]]), np.array([[0.1, 0.9]]), 2, 2)
    centres = patch_centres(2, 2)
    np.testing.assert_allclose(t["to_target"][0] + centres, np.tile([0.625, 0.625], (4, 1)), atol=1e-6)
    np.testing.assert_allclose(t["to_gripper"][0] + centres, np.tile([0.1, 0.9], (4, 1)), atol=1e-6)
    assert t["target_ok"].tolist() == [True] and t["gripper_ok"].tolist() == [True]
    assert "gripper_state" not in t
    with_state = dense_targets(
        np.array([[0.5, 0.5, 0.75, 0.75]]), np.array([[0.1, 0.9]]), 2, 2, np.array([[0.3, -1.0]])
    )
    np.testing.assert_allclose(with_state["gripper_state"], [[0.3, -1.0]])
    none = dense_targets(np.full((1, 4), np.nan), np.full((1, 2), np.nan), 2, 2)
    assert none["target_ok"].tolist() == [False] and none["mask"].sum() == 0


def test_dense_loss_is_least_for_the_true_maps_and_skips_unknown_vectors():
    t = dense_targets(
        np.array([[0.5, 0.5, 1.0, 1.0], [np.nan] * 4]), np.array([[0.2, 0.3], [np.nan, np.nan]]), 2, 2
    )
    perfect = torch.zeros(2, 4, 5)
    perfect[..., 0] = torch.from_numpy(t["mask"]) * 40 - 20  # logits of 0 / 1 masks
    perfect[0, :, 1:3] = torch.from_numpy(t["to_target"][0])
    perfect[0, :, 3:5] = torch.from_numpy(t["to_gripper"][0])
    perfect[1, :, 1:] = 123.0  # the second frame has neither point: its vectors must not count
    loss, parts = dense_loss(perfect, t)
    assert float(loss) < 1e-6 and float(parts["to_target"]) == 0.0
    worse, _ = dense_loss(perfect + torch.tensor([0.0, 0.1, 0.0, 0.0, 0.0]), t)
    assert float(worse) > float(loss)

    # the gripper's state is the same target at every patch
    t["gripper_state"] = np.array([[0.5, -1.0], [2.0, 0.0]], dtype=np.float32)
    seven = torch.cat([perfect, torch.zeros(2, 4, 2)], dim=2)
    seven[0, :, 5:7] = torch.tensor([0.5, -1.0])
    seven[1, :, 5:7] = torch.tensor([2.0, 0.0])
    loss, parts = dense_loss(seven, t)
    assert float(parts["gripper_state"]) == 0.0
    seven[1, 2, 5] = 3.0  # one patch wrong
    assert float(dense_loss(seven, t)[1]["gripper_state"]) > 0


def test_container_vectors_point_to_the_plate_and_count_only_where_it_is_seen():
    boxes = np.array([[0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0]])
    grippers = np.array([[0.2, 0.3], [0.2, 0.3]])
    plates = np.array([[0.0, 0.0, 0.5, 0.25], [np.nan] * 4])  # the second frame: the plate is hidden
    t = dense_targets(boxes, grippers, 2, 2, containers=plates)
    centres = patch_centres(2, 2)
    np.testing.assert_allclose(t["to_container"][0] + centres, np.tile([0.25, 0.125], (4, 1)), atol=1e-6)
    assert t["container_ok"].tolist() == [True, False]
    assert "to_container" not in dense_targets(boxes, grippers, 2, 2)  # a task without a container
    assert head_outputs(False) == OUTPUTS and head_outputs(True) == OUTPUTS + 2

    perfect = torch.zeros(2, 4, head_outputs(True))
    perfect[..., 0] = torch.from_numpy(t["mask"]) * 40 - 20
    perfect[:, :, 1:3] = torch.from_numpy(t["to_target"])
    perfect[:, :, 3:5] = torch.from_numpy(t["to_gripper"])
    perfect[0, :, 7:9] = torch.from_numpy(t["to_container"][0])
    perfect[1, :, 7:9] = 55.0  # the hidden plate's vectors must not count
    loss, parts = dense_loss(perfect, t)
    assert float(loss) < 1e-6 and float(parts["to_container"]) == 0.0
    perfect[0, 1, 8] += 0.1
    assert float(dense_loss(perfect, t)[1]["to_container"]) > 0
    with pytest.raises(ValueError, match="head of 9 outputs"):
        dense_loss(perfect[..., :OUTPUTS], t)


def test_stage0_learns_where_the_container_is_when_the_task_has_one(tmp_path):
    root = tmp_path / "plates"
    with LeRobotV3Writer(root, 10, "franka", {"third_person": (64, 64)}, JOINTS) as writer:
        for seed in range(2):
            writer.add_episode(
                make_episode(seed, length=20, size=64, cameras=("third_person",), container=True)
            )
    data = load_training_data(root, horizon=4, action_dim=7, image_size=(56, 56), grounding=False)
    plates = data.container_boxes
    assert plates.shape == (len(data), 4)
    hidden = ~np.isfinite(plates).all(axis=1)
    assert hidden.sum() == 2 * 3  # the last 3 frames of each episode
    np.testing.assert_allclose(plates[0], (np.array([30, 40, 50, 56]) + 0) / 64, atol=1e-6)

    run = tmp_path / "s0"
    train(_cfg(root, run, stage=0, tiny="toy", steps=30, lr_base=3e-3))
    losses = _losses(run, "vision_to_container")
    assert np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6]), (losses[:6], losses[-6:])
    state = torch.load(next((run / "train_state").glob("steps_*.pt")), weights_only=False)
    assert state["vision_head"]["weight"].shape[0] == OUTPUTS + 2
    held = [make_episode(9, length=20, size=64, cameras=("third_person",), container=True)]
    out = _probe(run, tmp_path / "held", held)
    assert "(dino)" in out and "container centre (vectors): error x" in out


def test_stage0_on_the_vlm_vision_tower_trains_only_it_and_its_loss_falls(dataset, tmp_path):
    """--vision-encoder qwen: the dense maps teach the VLM's own vision tower (what grounding answers are
    decoded from); nothing else moves, the checkpoint keeps upstream's keys."""
    run = tmp_path / "s0q"
    kw = dict(stage=0, tiny="toy", steps=40, lr_vlm=3e-3, save_every=20, vision_encoder="qwen")
    final = train(_cfg(dataset, run, **kw))
    losses = _losses(run, "vision_loss")
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), (losses[:8], losses[-8:])
    init = torch.load(next((run / "init_model" / "checkpoints").glob("*.pt")), weights_only=True)
    trained = torch.load(final, weights_only=True)
    assert trained.keys() == init.keys()
    moved = [k for k in init if not torch.equal(init[k], trained[k])]
    assert moved and all(".visual." in k for k in moved), [k for k in moved if ".visual." not in k]
    state = torch.load(next((run / "train_state").glob("steps_*.pt")), weights_only=False)
    assert (
        state["vision_head"]["weight"].shape[1] == TinySpec(**TINY_PRESETS["toy"]).text_hidden
    )  # merger out
    with pytest.raises(TrainingError, match="stage 0 only"):
        train(_cfg(dataset, tmp_path / "bad", stage=1, tiny="toy", steps=1, vision_encoder="qwen"))
    out = _probe(run, tmp_path / "held", [make_episode(7, length=20, size=64, cameras=("third_person",))])
    assert "(qwen)" in out and "target centre (vectors): error x" in out


def _probe(run, staging, episodes) -> str:
    """bench/probe_vision.py's report on ``episodes`` saved as a data engine staging dir."""
    import contextlib
    import io

    from bench_scripts import load_bench
    from internvla_learning.episode import save_episode

    (staging / "episodes").mkdir(parents=True)
    for ep in episodes:
        save_episode(ep, staging / "episodes" / f"franka_seed_{ep.seed:07d}.npz")
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        assert (
            load_bench("probe_vision").main(["--run", str(run), "--staging", str(staging), "--every", "4"])
            == 0
        )
    return report.getvalue()


def test_gripper_points_come_from_the_trace_and_follow_the_frame_stride(dataset):
    full = load_training_data(dataset, horizon=4, action_dim=7, image_size=(56, 56), grounding=False)
    assert full.gripper_points.shape == (len(full), 2)
    known = np.isfinite(full.gripper_points).all(axis=1)
    assert known.all() and ((full.gripper_points >= 0) & (full.gripper_points <= 1)).all()
    np.testing.assert_array_equal(
        full.gripper_states[:, 1], np.concatenate([e.state_ee[:, 6] for e in _episodes(dataset)])
    )
    half = load_training_data(
        dataset, horizon=4, action_dim=7, image_size=(56, 56), grounding=False, frame_stride=2
    )
    keep = [i for e in np.unique(full.episode_index) for i in np.flatnonzero(full.episode_index == e)[::2]]
    np.testing.assert_array_equal(half.gripper_points, full.gripper_points[keep])
    np.testing.assert_array_equal(half.gripper_states, full.gripper_states[keep])


def _episodes(root):
    from internvla_learning.lerobot_read import LeRobotV3Reader

    return list(LeRobotV3Reader(root))


def test_stage0_trains_only_dino_its_loss_falls_it_resumes_exactly_and_inits_stage2(dataset, tmp_path):
    kw = dict(stage=0, tiny="toy", steps=40, lr_base=3e-3, save_every=20)
    run = tmp_path / "s0"
    final = train(_cfg(dataset, run, **kw))
    losses = _losses(run, "vision_loss")
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), (losses[:8], losses[-8:])

    init = torch.load(next((run / "init_model" / "checkpoints").glob("*.pt")), weights_only=True)
    trained = torch.load(final, weights_only=True)
    assert trained.keys() == init.keys()  # upstream's keys, no head
    moved = {k.split(".")[0] for k in init if not torch.equal(init[k], trained[k])}
    assert moved == {"dino_encoder"}

    cut = tmp_path / "cut"

    def interrupt(step):
        if step == 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(dataset, cut, **kw), on_step=interrupt)
    resumed = torch.load(train(_cfg(dataset, cut, **kw), resume=True), weights_only=True)
    assert not [k for k in trained if not torch.equal(trained[k], resumed[k])]

    s2 = tmp_path / "s2"
    kw2 = dict(stage=2, init=str(run), steps=2, freeze_vlm=True, spatial_aux_weight=1.0)
    train(_cfg(dataset, s2, spatial_aux_readout="tokens", spatial_aux_gripper=True, **kw2))
    assert [v for v in _losses(s2, "spatial_loss") if v is not None]
    # the learned read-out has one output per auxiliary value: box 4, gripper point 2, height and opening 2
    for extra, dims in (({}, 6), ({"spatial_aux_gripper_state": True}, 8)):
        run_dims = tmp_path / f"s2_{dims}"
        train(_cfg(dataset, run_dims, spatial_aux_gripper=True, **extra, **kw2))
        state = torch.load(run_dims / "train_state" / "steps_2.pt", weights_only=False)
        assert state["spatial_head"]["weight"].shape[0] == dims
    s2_init = torch.load(next((s2 / "checkpoints").glob("*.pt")), weights_only=True)
    assert torch.equal(s2_init["dino_encoder.body.pos_embed"], trained["dino_encoder.body.pos_embed"])


def test_stage0_teaches_the_gripper_state_only_when_asked(dataset, tmp_path):
    dino = {}
    for asked in (False, True):
        run = tmp_path / f"s0_{asked}"
        final = train(
            _cfg(dataset, run, stage=0, tiny="toy", steps=2, save_every=2, vision_gripper_state=asked)
        )
        state = torch.load(run / "train_state" / "steps_2.pt", weights_only=False)
        # probe_vision scores the gripper state only where the run saved its standardisation
        assert ("gripper_state_norm" in state) is asked
        dino[asked] = torch.load(final, weights_only=True)["dino_encoder.body.pos_embed"]
    assert not torch.equal(dino[False], dino[True])  # the same seed and batches: only the loss differs


def test_stage0_refuses_what_it_cannot_train(dataset, tmp_path):
    with pytest.raises(TrainingError, match="nothing to train in stage 0"):
        train(_cfg(dataset, tmp_path / "a", stage=0, tiny="toy", steps=1, freeze_vlm=True))
    with pytest.raises(TrainingError, match="--spatial-aux-gripper goes with"):
        train(_cfg(dataset, tmp_path / "b", stage=2, tiny="toy", steps=1, spatial_aux_gripper=True))
    with pytest.raises(TrainingError, match="--spatial-aux-gripper-state goes with --spatial-aux-gripper"):
        train(_cfg(dataset, tmp_path / "c", stage=2, tiny="toy", steps=1, spatial_aux_weight=1.0,
                   spatial_aux_gripper_state=True))  # fmt: skip


def _with_wrist_labels(ep):
    """The synthetic episode with wrist-camera view labels: a box that moves the other way, a fixed TCP."""
    from internvla_learning.episode import ViewLabels

    n = ep.length
    t = np.arange(n, dtype=np.float32)
    box = np.stack([40 - t, 30 + 0 * t, 52 - t, 42 + 0 * t], 1).astype(np.float32)
    box[-3:] = np.nan  # out of view at the end
    visible = np.where(np.isfinite(box).all(axis=1), 1.0, 0.0).astype(np.float32)
    ep.view_labels = {"wrist": ViewLabels(box, visible, np.tile(np.float32([32, 10]), (n, 1)))}
    return ep


def test_wrist_view_labels_survive_the_v3_dataset_and_stage0_teaches_both_views(tmp_path):
    root = tmp_path / "two_view"
    cams = {"third_person": (64, 64), "wrist": (64, 64)}
    episodes = [_with_wrist_labels(make_episode(s, length=20, size=64)) for s in range(2)]
    with LeRobotV3Writer(root, 10, "franka", cams, JOINTS) as writer:
        for ep in episodes:
            writer.add_episode(ep)
    from internvla_learning.lerobot_read import read_lerobot_v3

    back = list(read_lerobot_v3(root))
    for ep, read in zip(episodes, back, strict=True):
        for name in ("target_box", "target_visible", "gripper_point"):
            np.testing.assert_array_equal(
                getattr(read.view_labels["wrist"], name), getattr(ep.view_labels["wrist"], name)
            )

    data = load_training_data(
        root, horizon=4, action_dim=7, image_size=(64, 64), cameras=("third_person", "wrist"), grounding=False
    )
    wrist = data.view_target_boxes["wrist"]
    np.testing.assert_allclose(wrist[0], np.float32([40, 30, 52, 42]) / 64)  # normalised by the wrist image
    assert np.isnan(wrist[17:20]).all() and np.array_equal(
        data.target_boxes, data.view_target_boxes["third_person"], equal_nan=True
    )
    np.testing.assert_allclose(data.view_gripper_points["wrist"], np.tile([0.5, 10 / 64], (len(data), 1)))

    run = tmp_path / "s0"
    train(_cfg(root, run, stage=0, tiny="toy", steps=2, cameras=["third_person", "wrist"], lr_base=1e-3))
    from internvla_learning.training.train import Trainer

    trainer = Trainer(
        _cfg(root, run, stage=0, tiny="toy", steps=2, cameras=["third_person", "wrist"]), resume=True
    )
    trainer.setup()
    assert [c for _, c in trainer.vision_views] == ["third_person", "wrist"]
    one = Trainer(_cfg(root, tmp_path / "s0_one", stage=0, tiny="toy", steps=2))
    one.setup()
    assert [c for _, c in one.vision_views] == ["third_person"]  # a one-camera run teaches that camera
