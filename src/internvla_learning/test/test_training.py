"""internvla-train at toy size: stage 1 then stage 2 on a tiny synthetic LeRobot v3.0 dataset, the run loads
with internvla_core's loader, exact resume, and the core pieces it relies on (batched preprocessing, the
DiT diffusion loss, the QFormer's training path)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from internvla_learning.lerobot_v3 import LeRobotV3Writer
from internvla_learning.training.data import (
    chunk_indices,
    load_training_data,
    normalize_chunk_actions,
    pause_frames,
)
from internvla_learning.training.train import TINY_PRESETS, TrainConfig, load_model, main, train
from learning_synthetic import JOINTS, make_episode
from PIL import Image

from internvla_core.model.tiny import TinySpec, build_tiny_checkpoint

TOY = TinySpec(**TINY_PRESETS["toy"])


def _moving_average(values, n=8):
    return float(np.mean(values[:n])), float(np.mean(values[-n:]))


def _losses(run, key):
    return [json.loads(line)[key] for line in (run / "metrics.jsonl").read_text().splitlines()]


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


def _interrupted_then_resumed(dataset, run, kw, at_step):
    """Train ``kw`` into ``run``, interrupted (Ctrl-C) after ``at_step``, then --resume to the end; returns
    the final checkpoint's state dict."""

    def interrupt(step):
        if step == at_step:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(dataset, run, **kw), on_step=interrupt)
    return torch.load(train(_cfg(dataset, run, **kw), resume=True), weights_only=True)


@pytest.fixture(scope="module")
def stage1(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "stage1"
    train(_cfg(dataset, run, stage=1, tiny="toy", steps=30, lr_vlm=2e-3))
    return run


# --------------------------------------------------------------------------------------------- end to end


def test_stage1_then_stage2_losses_fall_and_the_run_loads(dataset, stage1, tmp_path):
    first, last = _moving_average(_losses(stage1, "vlm_loss"))
    assert last < 0.8 * first, (first, last)

    run = tmp_path / "stage2"
    final = train(_cfg(dataset, run, stage=2, init=str(stage1), steps=30, lr_action=2e-3, lr_base=2e-3))
    first, last = _moving_average(_losses(run, "action_loss"))
    assert last < 0.9 * first, (first, last)
    assert all(r is not None for r in _losses(run, "vlm_loss"))  # the 0.1 co-training loss ran

    # released run layout
    for name in ("config.yaml", "config.json", "dataset_statistics.json", "loss_curve.png", "metrics.csv"):
        assert (run / name).is_file(), name
    assert [json.loads(x) for x in (run / "summary.jsonl").read_text().splitlines()] == [
        {"steps": 10},
        {"steps": 20},
        {"steps": 30},
    ]
    state = torch.load(run / "checkpoints" / "steps_30_pytorch_model.pt", weights_only=True)
    assert torch.equal(state["dino_pro.weight"], torch.load(final, weights_only=True)["dino_pro.weight"])
    stats = json.loads((run / "dataset_statistics.json").read_text())
    assert list(stats) == ["franka"] and stats["franka"]["action"]["mask"] == [True] * 6 + [False]

    from internvla_core.model import load_policy

    policy = load_policy(run)
    frame = np.zeros((64, 64, 3), np.uint8)
    pred = policy.predict_action([frame], "pick up the green cube", unnorm_key="franka", seed=0)
    assert pred.actions.shape == (16, 7) and np.all(np.isfinite(pred.actions))
    # the trained DiT head is no longer zero (zero-initialised as upstream), so the output moved
    assert state["action_model.net.final_layer.linear.weight"].abs().sum() > 0


def test_resume_after_interrupt_equals_an_uninterrupted_run(dataset, stage1, tmp_path):
    kw = dict(stage=2, init=str(stage1), steps=6, batch_size=2, save_every=4, lr_action=1e-3)
    whole = train(_cfg(dataset, tmp_path / "whole", **kw))

    def interrupt(step):
        if step == 3:
            raise KeyboardInterrupt

    run = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(dataset, run, **kw), on_step=interrupt)
    assert (run / "checkpoints" / "steps_3_pytorch_model.pt").is_file()
    assert not (run / "final_model").exists()
    resumed = train(_cfg(dataset, run, **kw), resume=True)
    a, b = torch.load(whole, weights_only=True), torch.load(resumed, weights_only=True)
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, changed[:5]
    assert _losses(run, "loss") == _losses(tmp_path / "whole", "loss")


def test_freeze_vlm_trains_only_the_head_from_cached_features(dataset, stage1, tmp_path):
    run = tmp_path / "frozen"
    final = train(_cfg(dataset, run, stage=2, init=str(stage1), steps=20, freeze_vlm=True, lr_action=2e-3))
    assert (run / "feature_cache.pt").is_file()
    before = torch.load(next((stage1 / "checkpoints").glob("steps_30_*")), weights_only=True)
    after = torch.load(final, weights_only=True)
    moved = {k.split(".")[0] for k in after if not torch.equal(before[k], after[k])}
    assert moved == {"layer_qformer", "action_model", "dino_pro"}
    assert all(r is None for r in _losses(run, "vlm_loss"))


def test_a_float16_feature_cache_takes_half_the_memory_and_trains_like_float32(dataset, stage1, tmp_path):
    kw = dict(stage=2, init=str(stage1), steps=4, freeze_vlm=True, lr_action=2e-3)
    wide = train(_cfg(dataset, tmp_path / "f32", **kw))
    half = train(_cfg(dataset, tmp_path / "f16", feature_cache_dtype="float16", **kw))
    c32 = torch.load(tmp_path / "f32" / "feature_cache.pt", weights_only=False)
    c16 = torch.load(tmp_path / "f16" / "feature_cache.pt", weights_only=False)
    assert c16["dino"].dtype == torch.float16 and all(h.dtype == torch.float16 for h in c16["hidden"])
    assert c16["dino"].element_size() * 2 == c32["dino"].element_size()
    torch.testing.assert_close(c16["dino"].float(), c32["dino"], rtol=1e-3, atol=1e-3)
    assert c16["key"] != c32["key"]  # a float32 run never reloads a float16 cache
    a, b = torch.load(wide, weights_only=True), torch.load(half, weights_only=True)
    diffs = [float((a[k].float() - b[k].float()).abs().max()) for k in a if k.startswith("action_model")]
    assert 0 < max(diffs) < 1e-2  # rounding of the inputs only


def test_a_feature_beyond_the_cache_dtype_stops_the_run_with_what_to_do(
    dataset, stage1, tmp_path, monkeypatch
):
    from internvla_learning.training.train import TrainingError

    from internvla_core.model.framework import InternVLAM1

    def huge_hidden_states(self, inputs):
        return tuple(h * 1e6 for h in original(self, inputs))

    original = InternVLAM1.vlm_hidden_states
    monkeypatch.setattr(InternVLAM1, "vlm_hidden_states", huge_hidden_states)
    with pytest.raises(TrainingError, match="--feature-cache-dtype float32"):
        train(_cfg(dataset, tmp_path / "f16", stage=2, init=str(stage1), steps=2, freeze_vlm=True,
                   feature_cache_dtype="float16"))  # fmt: skip


def test_train_dino_trains_dino_from_the_frames_while_the_vlm_stays_cached(dataset, stage1, tmp_path):
    run = tmp_path / "dino"
    final = train(
        _cfg(
            dataset, run, stage=2, init=str(stage1), steps=20, freeze_vlm=True, train_dino=True, lr_base=2e-3
        )
    )
    before = torch.load(next((stage1 / "checkpoints").glob("steps_30_*")), weights_only=True)
    after = torch.load(final, weights_only=True)
    moved = {k.split(".")[0] for k in after if not torch.equal(before[k], after[k])}
    assert moved == {"layer_qformer", "action_model", "dino_pro", "dino_encoder"}
    assert json.loads((run / "train_args.json").read_text())["train_dino"] is True


def test_action_expert_resizes_only_the_expert_and_the_run_loads_at_its_new_size(dataset, stage1, tmp_path):
    from internvla_learning.training.train import TrainingError

    from internvla_core.model.policy import load_policy

    run = tmp_path / "wide"
    kw = dict(stage=2, init=str(stage1), steps=4, save_every=2, freeze_vlm=True, action_expert=(32, 3, 4))
    final = train(_cfg(dataset, run, **kw))
    before = torch.load(next((stage1 / "checkpoints").glob("steps_30_*")), weights_only=True)
    after = torch.load(final, weights_only=True)
    dino_and_vlm = [k for k in before if k.startswith(("dino_encoder.", "qwen_vl_interface."))]
    assert dino_and_vlm and all(torch.equal(before[k], after[k]) for k in dino_and_vlm)  # the stage-1 run's
    blocks = {k.split(".")[3] for k in after if k.startswith("action_model.net.blocks.")}
    assert blocks == {"0", "1", "2"}
    assert after["action_model.net.final_layer.linear.weight"].shape[1] == 32
    raw = json.loads((run / "config.json").read_text())["framework"]
    assert (raw["action_model"]["token_size"], raw["action_model"]["depth"]) == (32, 3)
    assert raw["layer_qformer"]["ouptput_dim"] == 32
    policy = load_policy(str(run))  # the resized run loads as any other
    assert policy.model.action_model.net.final_layer.linear.in_features == 32
    resumed = _interrupted_then_resumed(dataset, tmp_path / "cut", kw, at_step=3)  # resume keeps the size
    assert not [k for k in after if not torch.equal(after[k], resumed[k])]
    for bad in [dict(action_expert=(30, 2, 4)), dict(action_expert=(32, 2, 4), stage=1, freeze_vlm=False)]:
        with pytest.raises(TrainingError, match="--action-expert"):
            train(_cfg(dataset, tmp_path / f"bad{len(str(bad))}", **{**kw, **bad}))


def test_train_dino_needs_frozen_vlm_features(dataset, stage1, tmp_path):
    from internvla_learning.training.train import TrainingError

    with pytest.raises(TrainingError, match="--train-dino goes with --freeze-vlm"):
        train(_cfg(dataset, tmp_path / "x", stage=2, init=str(stage1), steps=1, train_dino=True))


def test_query_token_std_redraws_the_queries_seeded_and_resume_keeps_them(dataset, stage1, tmp_path):
    from internvla_learning.training.train import TrainingError

    runs = []
    for name in ("q1", "q2"):
        run = tmp_path / name
        init = train(
            _cfg(dataset, run, stage=2, init=str(stage1), steps=1, freeze_vlm=True, query_token_std=0.02)
        )
        runs.append(torch.load(init, weights_only=True)["layer_qformer.query_tokens"])
    stage1_queries = torch.load(next((stage1 / "checkpoints").glob("steps_30_*")), weights_only=True)[
        "layer_qformer.query_tokens"
    ]
    assert stage1_queries.std() > 0.5  # upstream's draw: std 1
    assert 0.01 < runs[0].std() < 0.04  # one step of AdamW moves each entry by at most ~lr
    assert torch.equal(runs[0], runs[1])  # seeded
    with pytest.raises(TrainingError, match="--query-token-std must be positive"):
        train(_cfg(dataset, tmp_path / "bad", stage=2, init=str(stage1), steps=1, query_token_std=0.0))


def test_spatial_aux_loss_reads_the_target_box_resumes_exactly_and_leaves_the_checkpoint_as_upstream(
    dataset, stage1, tmp_path
):
    from internvla_learning.training.train import TrainingError

    kw = dict(stage=2, init=str(stage1), steps=6, batch_size=2, save_every=3, freeze_vlm=True)
    kw.update(spatial_aux_weight=1.0, lr_base=1e-3)
    whole = train(_cfg(dataset, tmp_path / "whole", **kw))
    spatial = _losses(tmp_path / "whole", "spatial_loss")  # None: no visible target in that batch
    assert [v for v in spatial if v is not None] and all(math.isfinite(v) for v in spatial if v is not None)
    stage1_keys = torch.load(next((stage1 / "checkpoints").glob("steps_30_*")), weights_only=True).keys()
    assert torch.load(whole, weights_only=True).keys() == stage1_keys  # no head in the checkpoint

    run = tmp_path / "cut"
    a, b = torch.load(whole, weights_only=True), _interrupted_then_resumed(dataset, run, kw, at_step=4)
    assert not [k for k in a if not torch.equal(a[k], b[k])]
    assert _losses(run, "spatial_loss") == spatial  # the head's weights came back with the train state
    with pytest.raises(TrainingError, match="stage 2 only"):
        train(_cfg(dataset, tmp_path / "s1", stage=1, tiny="toy", steps=1, spatial_aux_weight=1.0))


def test_a_run_without_the_spatial_prompt_is_prompted_without_it_at_inference(dataset, stage1, tmp_path):
    from internvla_core.model.config import load_run_config

    run = tmp_path / "bare"
    train(_cfg(dataset, run, stage=2, init=str(stage1), steps=1, freeze_vlm=True, spatial_prompt=False))
    assert load_run_config(stage1).cot_prompt  # the stage-1 run prompts with the CoT prompt
    assert load_run_config(run).cot_prompt is None
    model, _, _ = load_model(run)
    assert model.prompt_for("Pick up the green block") == "pick up the green block"


def test_channel_readout_asks_the_condition_itself_to_carry_the_box(dataset, stage1, tmp_path):
    from internvla_learning.training.train import _channel_readout, _token_channel_readout

    cond = torch.zeros(2, 3, 8)
    cond[0, :, :4] = torch.tensor([0.1, -0.2, 0.3, 0.4])
    cond[1, 0, 4:] = 5.0  # other channels do not count
    assert torch.allclose(_channel_readout(cond), torch.tensor([[0.1, -0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0]]))
    assert torch.equal(_token_channel_readout(cond), cond[:, :, :4])  # every token, its own channels 0-3
    run = tmp_path / "chan"
    kw = dict(stage=2, init=str(stage1), steps=3, freeze_vlm=True, spatial_aux_weight=1.0)
    train(_cfg(dataset, run, spatial_aux_readout="channels", **kw))
    assert [v for v in _losses(run, "spatial_loss") if v is not None]
    state = torch.load(next((run / "train_state").glob("steps_*.pt")), weights_only=False)
    assert "spatial_head" not in state  # nothing learned outside the model
    train(_cfg(dataset, tmp_path / "tok", spatial_aux_readout="tokens", **kw))
    assert [v for v in _losses(tmp_path / "tok", "spatial_loss") if v is not None]


def test_condition_norm_folds_into_upstream_keys_and_resumes_exactly(dataset, stage1, tmp_path):
    from internvla_learning.training.train import ConditionNorm

    from internvla_core.model.dit import DiT

    torch.manual_seed(0)
    net = DiT(action_dim=7, token_size=16, depth=1, num_heads=2, horizon=4, num_condition_tokens=5)
    norm = ConditionNorm(net)
    for _ in range(3):
        norm.update(torch.randn(8, 5, 16) * 3 + torch.linspace(-4, 4, 16))
    x, t, z = torch.randn(6, 4, 7), torch.tensor([0, 10, 50, 90, 99, 3]), torch.randn(6, 5, 16) * 3
    z[0] = net.z_embedder.uncondition  # the null condition goes through the same map
    with torch.no_grad():
        trained = net(x, t, z)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        norm.fold_into(state, prefix="")
        plain = DiT(action_dim=7, token_size=16, depth=1, num_heads=2, horizon=4, num_condition_tokens=5)
        plain.load_state_dict(state)
        assert torch.allclose(plain(x, t, z), trained, atol=1e-5)  # upstream's forward, folded weights
        assert state.keys() == net.state_dict().keys()

    kw = dict(
        stage=2, init=str(stage1), steps=6, batch_size=2, save_every=3, freeze_vlm=True, condition_norm=True
    )
    whole = train(_cfg(dataset, tmp_path / "whole", **kw))

    run = tmp_path / "cut"
    a, b = torch.load(whole, weights_only=True), _interrupted_then_resumed(dataset, run, kw, at_step=4)
    assert not [k for k in a if not torch.equal(a[k], b[k])]


def test_target_boxes_follow_the_grounding_labels(dataset):
    full = load_training_data(dataset, horizon=4, action_dim=7, image_size=(56, 56), grounding=False)
    assert full.target_boxes.shape == (len(full), 4)
    seen = np.isfinite(full.target_boxes).all(axis=1)
    assert seen.any()
    inside = full.target_boxes[seen]
    assert ((inside >= 0) & (inside <= 1)).all() and (inside[:, 2:] > inside[:, :2]).all()
    half = load_training_data(dataset, horizon=4, action_dim=7, image_size=None, frame_stride=2)
    keep = [i for e in np.unique(full.episode_index) for i in np.flatnonzero(full.episode_index == e)[::2]]
    np.testing.assert_array_equal(half.target_boxes, full.target_boxes[keep])


def test_training_data_holds_one_decoded_episode_at_a_time(dataset, monkeypatch):
    """Every episode's video is decoded once, after a pass without the videos, and released before the
    next: 700 two-view episodes decoded at once (14 GB) killed a stage-0 run on this 24 GB machine."""
    import gc
    import weakref

    from internvla_learning.lerobot_read import LeRobotV3Reader

    original = LeRobotV3Reader.episode
    calls, decoded, alive = [], [], []

    def spy(self, i, images=True):
        ep = original(self, i, images=images)
        calls.append((i, images))
        if images:
            gc.collect()
            alive.append(sum(ref() is not None for ref in decoded))  # earlier decoded episodes still held
            decoded.append(weakref.ref(ep))
        else:
            assert ep.images == {}
        return ep

    monkeypatch.setattr(LeRobotV3Reader, "episode", spy)
    data = load_training_data(dataset, horizon=4, action_dim=7, image_size=(56, 56), grounding=False)
    assert calls == [(0, False), (1, False), (0, True), (1, True)]
    assert max(alive) <= 1  # at most the previous one, while the next is being decoded
    assert len(data) == 40 and data.vlm_views.shape[0] == 40


def test_released_frames_are_freed_and_the_fingerprint_is_the_hash_of_all_bytes(dataset):
    import hashlib

    data = load_training_data(dataset, horizon=4, action_dim=7, image_size=(56, 56), grounding=False)
    whole = hashlib.sha256()
    for arr in (data.vlm_views, data.dino_views):
        whole.update(np.ascontiguousarray(arr).tobytes())
    whole.update(json.dumps(data.instructions).encode())
    assert data.fingerprint() == whole.hexdigest()[:16]  # the key of caches written before stays valid
    shape = data.vlm_views.shape
    data.release_images()
    # an owning empty array: a [:0] view would keep every frame alive through its base
    assert data.vlm_views.base is None and data.dino_views.base is None
    assert data.vlm_views.shape == (0, *shape[1:]) and data.dino_views.size == 0


def test_cached_features_give_the_condition_of_the_live_forward(dataset, stage1, tmp_path):
    """The stacked feature cache (left-padded rows, lengths, masked padding) reproduces the condition the
    frozen VLM and DINO give when run on the frames, for frames of different prompts in one batch."""
    from internvla_learning.training.train import Trainer

    trainer = Trainer(
        _cfg(
            dataset,
            tmp_path / "cached",
            stage=2,
            init=str(stage1),
            steps=1,
            freeze_vlm=True,
            qformer_attn_dropout=0.0,
        )
    )
    trainer.setup()
    m = trainer.model
    assert all(
        mod.dropout == 0.0
        for mod in m.layer_qformer.modules()
        if isinstance(mod, torch.nn.MultiheadAttention)
    )
    assert trainer.data.vlm_views.shape[0] == 0  # the frames were released once cached
    live = load_training_data(
        dataset,
        horizon=m.config.action_horizon,
        action_dim=m.config.action_dim,
        image_size=m.config.image_size,
        grounding=False,
    )
    assert len(set(live.instructions)) == 2
    frames = [0, 1, len(live) - 1]
    m.eval()
    with torch.no_grad():
        cached = trainer._cached_condition(frames)
        for row, f in enumerate(frames):
            trainer.data = live  # the live path needs the frames back
            prompt = m.train_prompt(live.instructions[f], True)
            one = m.train_condition(trainer._vlm_inputs([f], [prompt]), trainer._dino_pixels([f]))
            torch.testing.assert_close(cached[row : row + 1], one, atol=1e-5, rtol=1e-4)


def test_export_writes_a_small_run_dir_that_loads_and_names_its_lineage(dataset, stage1, tmp_path):
    import hashlib

    from internvla_learning.evaluation import EpisodeResult, write_csv
    from internvla_learning.export_model import ExportError, export_run

    from internvla_core.model.policy import load_policy

    run = tmp_path / "s2"
    train(_cfg(dataset, run, stage=2, init=str(stage1), steps=4, freeze_vlm=True, save_every=2))
    results = [
        EpisodeResult(index=i, robot="franka", task="pick_green", seed=1_000_000 + i, success=i < 3)
        for i in range(4)
    ]
    csv_path = write_csv(results, tmp_path / "results.csv")
    out = tmp_path / "shipped"
    weights = export_run(run, out, step=2, summary="toy", eval_csv=csv_path)
    assert weights == out / "checkpoints" / "steps_2_pytorch_model.pt"
    assert not (out / "feature_cache.pt").exists() and not (out / "train_state").exists()
    card = json.loads((out / "model_card.json").read_text())
    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert [st["stage"] for st in card["stages"]] == [1, 2] and card["training_steps"] == 2
    assert card["evaluation"]["overall"]["successes"] == 3 and card["evaluation"]["overall"]["episodes"] == 4
    assert card["evaluation"]["seeds"] == [1_000_000, 1_000_003]
    assert (out / "train_args.stage1.json").is_file()
    policy = load_policy(str(out))
    exported = torch.load(weights, weights_only=True)
    assert all(torch.equal(policy.model.state_dict()[k].cpu(), v) for k, v in exported.items())
    with pytest.raises(ExportError, match="no checkpoint of step 3"):
        export_run(run, tmp_path / "bad", step=3)
    # a re-export replaces everything but the hand-written README; the card records the guidance scale
    (out / "README.md").write_text("# shipped\nhow it was made\n")
    (out / "stale.txt").write_text("from before")
    export_run(run, out, step=4, cfg_scale=3.0, executor={"gripper_commit_steps": 8})
    card = json.loads((out / "model_card.json").read_text())
    assert card["cfg_scale"] == 3.0 and card["training_steps"] == 4 and "evaluation" not in card
    assert card["executor"] == {"gripper_commit_steps": 8}  # what the demo runs the executor with
    assert (out / "README.md").read_text() == "# shipped\nhow it was made\n" and not (
        out / "stale.txt"
    ).exists()
    # the average of checkpoints 2 and 4: named after step 4, listed in the card, loads like any other
    averaged = export_run(run, tmp_path / "averaged", average_steps=[4, 2])
    assert averaged.name == "steps_4_pytorch_model.pt"
    card = json.loads((tmp_path / "averaged" / "model_card.json").read_text())
    assert card["averaged_steps"] == [2, 4] and card["training_steps"] == 4
    two, four, mean = (
        torch.load(p, weights_only=True)
        for p in (
            run / "checkpoints" / "steps_2_pytorch_model.pt",
            run / "checkpoints" / "steps_4_pytorch_model.pt",
            averaged,
        )
    )
    moved = [k for k, v in two.items() if v.is_floating_point() and not torch.equal(v, four[k])]
    assert moved  # training changed weights between the two saves
    for k in moved:
        torch.testing.assert_close(mean[k], (two[k].double() + four[k].double()).div(2).to(two[k].dtype))
    load_policy(str(tmp_path / "averaged"))
    with pytest.raises(ExportError, match="either a step"):
        export_run(run, tmp_path / "bad", step=2, average_steps=[2, 4])
    with pytest.raises(ExportError, match="no checkpoint of step 3"):
        export_run(run, tmp_path / "bad", average_steps=[2, 3])


def test_an_evaluation_rerun_replaces_only_the_cards_evaluation(tmp_path):
    """``export_model --evaluation-only``: after a simulator fix the same weights are evaluated again and
    the card takes the new numbers; the rest of the card stays, and an evaluation of other weights is
    refused."""
    from internvla_learning.evaluation import EpisodeResult, write_csv
    from internvla_learning.export_model import ExportError, main, refresh_evaluation

    out = tmp_path / "shipped"
    out.mkdir()
    card = {"name": "shipped", "weights": "checkpoints/steps_4_pytorch_model.pt", "cfg_scale": 3.0}
    (out / "model_card.json").write_text(json.dumps(card))

    def results(weights: str, successes: int):
        return [
            EpisodeResult(index=i, robot="franka", task="pick_green", seed=1_000_200 + i, success=i < successes,
                          loaded_checkpoint=f"/somewhere/{out.name}/checkpoints/{weights}")
            for i in range(5)
        ]  # fmt: skip

    rerun = write_csv(results("steps_4_pytorch_model.pt", 4), tmp_path / "rerun.csv")
    assert main(["--out", str(out), "--eval", str(rerun), "--evaluation-only"]) == 0
    written = json.loads((out / "model_card.json").read_text())
    assert written["evaluation"]["overall"]["successes"] == 4 and written["evaluation"]["seeds"] == [
        1_000_200,
        1_000_204,
    ]
    assert {k: v for k, v in written.items() if k != "evaluation"} == card
    # a rerun at another executor setting records it with the evaluation
    assert (
        main(["--out", str(out), "--eval", str(rerun), "--evaluation-only", "--gripper-commit-steps", "12"])
        == 0
    )
    written = json.loads((out / "model_card.json").read_text())
    assert written["executor"] == {"gripper_commit_steps": 12} and written["cfg_scale"] == 3.0
    # another executor setting joins the ones the card already names
    assert (
        main(["--out", str(out), "--eval", str(rerun), "--evaluation-only", "--ensemble-horizon", "8"]) == 0
    )
    written = json.loads((out / "model_card.json").read_text())
    assert written["executor"] == {"gripper_commit_steps": 12, "ensemble_horizon": 8}
    other = write_csv(results("steps_2_pytorch_model.pt", 5), tmp_path / "other.csv")
    with pytest.raises(ExportError, match=r"not this model.s steps_4_pytorch_model\.pt"):
        refresh_evaluation(out, other)
    assert main(["--out", str(out), "--eval", str(other), "--evaluation-only"]) == 2
    assert json.loads((out / "model_card.json").read_text()) == written


# ----------------------------------------------------------------------------------------------- bad input


def test_dataset_mismatches_give_clear_errors(dataset, tmp_path):
    from internvla_learning.training.data import DatasetError

    kw = dict(horizon=16, image_size=(56, 56))
    with pytest.raises(DatasetError, match=r"action dimension 7 .* action_dim 8"):
        load_training_data(dataset, action_dim=8, **kw)
    with pytest.raises(DatasetError, match=r"'franka_real' episodes but the run was configured for .*widowx"):
        load_training_data(dataset, action_dim=7, embodiment="widowx_bridge", **kw)
    with pytest.raises(DatasetError, match=r"lacks the columns \['observation.images.wrist'\]"):
        load_training_data(dataset, action_dim=7, cameras=("wrist",), **kw)

    import shutil

    broken = tmp_path / "no_action"
    shutil.copytree(dataset, broken)
    info = json.loads((broken / "meta" / "info.json").read_text())
    del info["features"]["action"]
    (broken / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"lacks the columns \['action'\]"):
        load_training_data(broken, action_dim=7, **kw)

    empty = tmp_path / "empty"
    shutil.copytree(dataset, empty)
    shutil.rmtree(empty / "meta" / "episodes")
    with pytest.raises(DatasetError, match="holds no episodes"):
        load_training_data(empty, action_dim=7, **kw)

    with pytest.raises(DatasetError, match=r"no meta/info\.json"):
        load_training_data(tmp_path, action_dim=7, **kw)


def test_exploding_loss_stops_and_keeps_the_last_good_checkpoint(dataset, stage1, tmp_path, capsys):
    run = tmp_path / "boom"
    code = main(
        ["--data", str(dataset), "--out", str(run), "--init", str(stage1), "--freeze-vlm", "--steps", "30",
         "--save-every", "1", "--lr-action", "50", "--lr-base", "50", "--warmup-steps", "0", "--max-loss",
         "5", "--no-progress"]
    )  # fmt: skip
    assert code == 3
    err = capsys.readouterr().err
    assert "diverged" in err and "above --max-loss 5" in err and "last good checkpoint" in err
    losses = _losses(run, "loss")
    assert all(math.isfinite(v) and v <= 5 for v in losses)
    last = run / "checkpoints" / f"steps_{len(losses)}_pytorch_model.pt"
    assert str(last) in err
    assert not (run / "checkpoints" / f"steps_{len(losses) + 1}_pytorch_model.pt").exists()
    load_model(last)  # the kept checkpoint loads


def test_checkpoint_of_another_architecture_names_the_keys(dataset, stage1, tmp_path, capsys):
    other = build_tiny_checkpoint(
        tmp_path / "other", spec=TinySpec(**{**TINY_PRESETS["toy"], "dit_dims": (32, 2, 2)})
    )
    import shutil

    run = tmp_path / "mixed"
    shutil.copytree(stage1, run)
    shutil.copyfile(other, run / "checkpoints" / "steps_999_pytorch_model.pt")
    code = main(["--data", str(dataset), "--out", str(tmp_path / "x"), "--init", str(run), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not match the model" in err and "action_model.net.blocks.1." in err


def test_cli_help_and_refusals(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--freeze-vlm" in capsys.readouterr().out
    assert main(["--data", str(dataset), "--out", str(tmp_path / "a"), "--tiny", "toy", "--lora"]) == 2
    assert "peft" in capsys.readouterr().err
    assert main(["--data", str(dataset), "--out", str(tmp_path / "b")]) == 2  # no model source
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "f").write_text("x")
    assert main(["--data", str(dataset), "--out", str(tmp_path / "c"), "--tiny", "toy"]) == 2
    assert "not empty" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ data and core


def test_chunks_pad_with_the_last_action_and_normalise_like_upstream():
    idx = chunk_indices(5, 4)
    assert idx[0].tolist() == [0, 1, 2, 3] and idx[3].tolist() == [3, 4, 4, 4] and idx[4].tolist() == [4] * 4
    stats = {"action": {"q01": [-1.0, 0.0], "q99": [1.0, 1.0], "mask": [True, False]}}
    out = normalize_chunk_actions(np.array([[0.5, 0.7], [3.0, 0.2]]), stats)
    assert out.tolist() == [[0.5, 1.0], [1.0, 0.0]]  # clamp to [-1, 1]; gripper binarised x > 0.5


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    model, _, _ = load_model(build_tiny_checkpoint(tmp_path_factory.mktemp("toy") / "run", spec=TOY))
    return model


def test_frame_stride_keeps_every_kth_start_with_full_rate_chunks(dataset):
    full = load_training_data(dataset, horizon=4, action_dim=7, image_size=(56, 56), grounding=True)
    half = load_training_data(
        dataset, horizon=4, action_dim=7, image_size=(56, 56), grounding=True, frame_stride=2
    )
    keep = [i for e in np.unique(full.episode_index) for i in np.flatnonzero(full.episode_index == e)[::2]]
    np.testing.assert_array_equal(half.chunks, full.chunks[keep])
    np.testing.assert_array_equal(half.vlm_views, full.vlm_views[keep])
    assert half.statistics == full.statistics  # statistics still see every frame
    assert {q.frame for q in half.qa} <= set(range(len(half))) and len(half.qa) < len(full.qa)
    with pytest.raises(ValueError, match="frame_stride"):
        load_training_data(dataset, horizon=4, action_dim=7, image_size=None, frame_stride=0)


def _grasp_with_pauses():
    """A pick as the scripted expert records it (frames 0-13): move down (0-2), settle (3-4, the arm still
    sinking at 3), close (5) while the fingers take two frames to stop (6), hold (7-9), lift (10-11), then
    stay at the top (12-13). Returns (actions [14, 7], state_ee [14, 7])."""
    n = 14
    actions = np.zeros((n, 7))
    actions[:, 6] = 1.0
    actions[0:3, 2] = -0.02  # descend 2 cm per step
    actions[5:, 6] = 0.0  # close from frame 5 on
    actions[10:12, 2] = 0.03  # lift
    z = np.array([0.20, 0.18, 0.16, 0.147, 0.1445, 0.1445, 0.1445, 0.1445, 0.1445, 0.1445, 0.1445, 0.17,
                  0.20, 0.20])  # fmt: skip
    opening = np.array([1.0] * 6 + [0.45, 0.49, 0.49, 0.49, 0.49, 0.49, 0.49, 0.49])
    state = np.zeros((n, 7))
    state[:, 2], state[:, 6] = z, opening
    return actions, state


def test_pause_frames_are_the_held_still_frames_inside_an_episode_not_its_end():
    actions, state = _grasp_with_pauses()
    # frame 3: no command but the arm still sinks 2.5 mm; 5: the close command; 6: the fingers still move;
    # 7-9: all at rest (the aliased hold); 12-13: the task is done, a trailing rest that is kept
    assert np.flatnonzero(pause_frames(actions, state)).tolist() == [4, 7, 8, 9]
    moving = actions.copy()
    moving[8, 0] = 2e-4  # a commanded 0.2 mm is motion, not a pause
    assert np.flatnonzero(pause_frames(moving, state)).tolist() == [4, 7, 9]
    assert pause_frames(np.zeros((0, 7)), np.zeros((0, 7))).shape == (0,)
    # "grasp": only the hold with the gripper closed, after its first still frame
    assert np.flatnonzero(pause_frames(actions, state, "grasp")).tolist() == [8, 9]
    with pytest.raises(ValueError, match="which"):
        pause_frames(actions, state, "some")


def test_settle_pauses_are_the_still_and_tiny_commands_at_the_end_of_a_move_even_while_the_arm_sinks():
    """A push as the scripted expert records it, the gripper closed throughout: descend (0-2), zero
    commands while the arm still sinks (3-4), corrections against the sag of 4.8 and 2.7 mm (5-6), the
    stroke (7-8), then stay (9-10)."""
    actions = np.zeros((11, 7))
    actions[0:3, 2] = -0.022
    actions[5:7, 2] = [0.0048, 0.0027]
    actions[7:9, 1] = 0.017
    state = np.zeros((11, 7))
    state[:, 2] = [0.2, 0.18, 0.16, 0.145, 0.141, 0.139, 0.141, 0.143, 0.143, 0.143, 0.143]
    # the zero commands drop although the arm still moves (the other kinds keep them), and so does the
    # 2.7 mm correction; the 4.8 mm one stays; the trailing stay is the end of the task, kept
    assert np.flatnonzero(pause_frames(actions, state, "settle")).tolist() == [3, 4, 6]
    assert np.flatnonzero(pause_frames(actions, state, "all")).tolist() == []
    closing = actions.copy()
    closing[4:, 6] = 1.0  # a gripper change is never a settle frame, even without motion
    assert np.flatnonzero(pause_frames(closing, state, "settle")).tolist() == [3, 6]


def test_carry_pauses_are_the_settle_frames_while_the_target_is_carried_not_the_hold_at_the_grasp():
    """A put-on as the scripted expert records it: descend (0-1), settle at the block (2-3), close with a
    last 1 cm correction (4), hold (5-7, the fingers stopping at 5), lift (8-9), settle at the top (10-11),
    travel (12-13), settle above the container (14-15, a 2.4 mm correction at 15), open (16), settle with
    the gripper open (17-18), rise (19) and stay (20-21)."""
    actions = np.zeros((22, 7))
    actions[:, 6] = 1.0
    actions[0:2, 2] = -0.02
    actions[4, 2] = -0.01
    actions[4:16, 6] = 0.0
    actions[8:10, 2] = 0.03
    actions[12:14, 0] = 0.02
    actions[15, 2] = 0.0024
    actions[19, 2] = 0.03
    state = np.zeros((22, 7))
    state[:, 2] = [0.2, 0.18, 0.16, 0.155] + [0.15] * 4 + [0.15, 0.18] + [0.21] * 6 + [0.212] * 3 + [0.24] * 3
    state[:, 6] = [1.0] * 5 + [0.6] + [0.49] * 11 + [1.0] * 5
    carried = np.flatnonzero(pause_frames(actions, state, "carry")).tolist()
    # the hold at the grasp as "grasp" leaves it (7: the first frame at rest, 6, stays; at 5 the fingers
    # still move), the two settle frames at the top of the lift and the two above the container; the
    # approach's (2-3) and the open hand's (17-18) stay, and so does the trailing stay (20-21)
    assert carried == [7, 10, 11, 14, 15]
    assert np.flatnonzero(pause_frames(actions, state, "grasp")).tolist() == [7, 11]
    assert set(np.flatnonzero(pause_frames(actions, state, "settle"))) >= {2, 3, 5, 17, 18}


def test_drop_pauses_leaves_out_the_held_frames_and_their_actions(tmp_path):
    """With ``drop_pauses`` the held frames are neither samples nor rows of any chunk: the chunk of the
    frame before a hold runs on into the lift, so the policy learns to lift once the fingers rest."""
    actions, state = _grasp_with_pauses()
    ep = make_episode(0, length=len(actions), size=64, cameras=("third_person",))
    ep.action_ee_delta, ep.state_ee = actions.astype(np.float32), state.astype(np.float32)
    root = tmp_path / "ds"
    with LeRobotV3Writer(root, 10, "franka", {"third_person": (64, 64)}, JOINTS) as writer:
        writer.add_episode(ep)
    kw = dict(horizon=4, action_dim=7, image_size=(56, 56), grounding=True)
    full = load_training_data(root, **kw)
    kept = load_training_data(root, **kw, drop_pauses="all")
    keep = [0, 1, 2, 3, 5, 6, 10, 11, 12, 13]
    assert len(full) == 14 and len(kept) == len(keep)
    np.testing.assert_array_equal(kept.vlm_views, full.vlm_views[keep])
    np.testing.assert_array_equal(kept.gripper_states, full.gripper_states[keep])
    block = kept.statistics[kept.unnorm_key]
    np.testing.assert_array_equal(
        kept.chunks, normalize_chunk_actions(actions[keep], block)[chunk_indices(len(keep), 4)]
    )
    # frame 6 (fingers just stopped): its chunk is [hold, lift, lift, stay]; without dropping, [hold x 4]
    rises = np.sign(kept.chunks[5, :, 2] - kept.chunks[5, 0, 2])
    assert rises.tolist() == [0, 1, 1, 0]
    assert np.all(full.chunks[6, :, 2] == full.chunks[6, 0, 2])
    assert {q.frame for q in kept.qa} == set(range(len(keep)))  # grounding QA follows the kept frames
    with_stride = load_training_data(root, **kw, drop_pauses="all", frame_stride=3)
    np.testing.assert_array_equal(with_stride.chunks, kept.chunks[::3])


def test_spatial_qa_asks_the_cot_prompt_for_the_target_box(dataset, tmp_path):
    from internvla_core.model.tiny import COT_PROMPT

    plain = load_training_data(dataset, horizon=4, action_dim=7, image_size=(56, 56))
    spatial = load_training_data(
        dataset, horizon=4, action_dim=7, image_size=(56, 56), spatial_question=COT_PROMPT
    )
    boxes = [q for q in plain.qa if q.kind == "box"]
    asked = [q for q in spatial.qa if q.kind == "spatial"]
    assert boxes and [(q.frame, q.answer) for q in asked] == [(q.frame, q.answer) for q in boxes]
    assert asked[0].question == COT_PROMPT.replace("{instruction}", spatial.instructions[asked[0].frame])
    assert "{instruction}" not in asked[0].question
    assert [q for q in spatial.qa if q.kind != "spatial"] == plain.qa  # the other pairs are unchanged
    run = tmp_path / "s1"
    train(_cfg(dataset, run, stage=1, tiny="toy", steps=2, spatial_qa=True))
    assert json.loads((run / "train_args.json").read_text())["spatial_qa"] is True


def test_batched_preprocessing_equals_the_per_image_path(toy_model):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (56, 56, 3), dtype=np.uint8) for _ in range(3)]
    proc = toy_model.qwen_vl_interface.processor
    texts = [proc.chat_text(1, f"pick the cube {i}") for i in range(3)]
    per_image = proc(texts, [Image.fromarray(f) for f in frames])
    batched = proc(texts, torch.from_numpy(np.stack(frames)))
    assert torch.equal(per_image.pixel_values, batched.pixel_values)
    assert torch.equal(per_image.image_grid_thw, batched.image_grid_thw)
    assert torch.equal(per_image.input_ids, batched.input_ids)

    dino = toy_model.dino_encoder
    big = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(3)]
    assert torch.equal(
        dino.preprocess([Image.fromarray(f) for f in big]),
        dino.preprocess_tensor(torch.from_numpy(np.stack(big))),
    )
    # small frames: torch's resize kernel is within a few uint8 levels of PIL's (training caches PIL-resized)
    diff = dino.preprocess([Image.fromarray(f) for f in frames]) - dino.preprocess_tensor(
        torch.from_numpy(np.stack(frames))
    )
    assert diff.abs().max() < 4 / 255 / 0.224


def test_dit_training_loss_repeats_drops_the_condition_and_predicts_the_noise(toy_model):
    am = toy_model.action_model
    net = am.net
    actions = torch.rand(2, net.horizon, net.action_dim) * 2 - 1
    cond = torch.randn(2, net.num_condition_tokens, net.z_embedder.linear.in_features)
    loss = am.training_loss(
        actions, cond, repeats=3, cond_drop_prob=1.0, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)
    x0 = actions.repeat(3, 1, 1)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, 100, (6,), generator=g)
    torch.rand(6, generator=g)
    z = net.z_embedder.uncondition.unsqueeze(0).expand(6, -1, -1)  # every condition dropped
    with torch.no_grad():
        expected = ((net(am.add_noise(x0, noise, t), t, z) - noise) ** 2).mean()
    torch.testing.assert_close(loss.detach(), expected)
    # the noising follows the cosine schedule: t = 0 keeps almost all signal, t = 99 almost only noise
    from internvla_core.model.diffusion import base_alphas_cumprod

    ab = base_alphas_cumprod()
    t = torch.tensor([0, 99])
    xt = am.add_noise(torch.ones(2, 1, 1), torch.zeros(2, 1, 1), t)
    torch.testing.assert_close(xt.flatten(), torch.tensor(ab[[0, 99]] ** 0.5, dtype=torch.float32))


def test_qformer_training_attention_and_grad_scale(toy_model):
    qf = toy_model.layer_qformer
    block = qf.layers[0]
    dim = qf.proj.out_features
    q, kv = torch.randn(2, 5, dim), torch.randn(2, 7, dim)
    block.eval()
    with torch.no_grad():
        reference, _ = block.cross_attn(q, kv, kv, need_weights=False)
        torch.testing.assert_close(block._train_attention(q, kv, None), reference)
        # a key padding mask equals dropping the padded keys
        mask = torch.zeros(2, 7, dtype=torch.bool)
        mask[:, :2] = True
        torch.testing.assert_close(
            block._train_attention(q, kv, mask), block._train_attention(q, kv[:, 2:], None)
        )
    hidden = torch.randn(1, 4, qf.proj.in_features, requires_grad=True)
    grads = []
    for scale in (1.0, 0.25):
        qf.grad_scale = scale
        hidden.grad = None
        qf([hidden]).sum().backward()
        grads.append(hidden.grad.clone())
    qf.grad_scale = 1.0
    torch.testing.assert_close(grads[1], 0.25 * grads[0])


def test_average_checkpoints_means_floats_and_refuses_what_cannot_be_averaged(tmp_path):
    from internvla_learning.export_model import ExportError, average_checkpoints

    def save(name, **tensors):
        torch.save(tensors, tmp_path / name)
        return tmp_path / name

    a = save(
        "a.pt", w=torch.tensor([1.0, 2.0]), h=torch.tensor([1.0], dtype=torch.float16), n=torch.tensor([3])
    )
    b = save(
        "b.pt", w=torch.tensor([3.0, 6.0]), h=torch.tensor([2.0], dtype=torch.float16), n=torch.tensor([3])
    )
    mean = average_checkpoints([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0])) and mean["h"].dtype == torch.float16
    assert torch.equal(mean["n"], torch.tensor([3]))
    with pytest.raises(ExportError, match="differs between"):
        average_checkpoints(
            [a, save("c.pt", w=torch.zeros(2), h=torch.zeros(1, dtype=torch.float16), n=torch.tensor([4]))]
        )
    with pytest.raises(ExportError, match="different shapes"):
        average_checkpoints(
            [a, save("d.pt", w=torch.zeros(3), h=torch.zeros(1, dtype=torch.float16), n=torch.tensor([3]))]
        )
    with pytest.raises(ExportError, match="different weights"):
        average_checkpoints([a, save("e.pt", w=torch.zeros(2))])
    with pytest.raises(ExportError, match="nothing"):
        average_checkpoints([])


def test_spatial_aux_container_also_reads_where_the_plate_is_and_needs_a_task_with_one(
    dataset, stage1, tmp_path
):
    from internvla_learning.training.train import TrainingError

    plates = tmp_path / "plates"
    with LeRobotV3Writer(plates, 10, "franka", {"third_person": (64, 64)}, JOINTS) as writer:
        for seed in range(2):
            writer.add_episode(
                make_episode(seed, length=20, size=64, cameras=("third_person",), container=True)
            )
    kw = dict(stage=2, init=str(stage1), steps=4, batch_size=4, freeze_vlm=True, spatial_aux_weight=1.0)
    kw.update(spatial_aux_readout="tokens", spatial_aux_gripper=True, spatial_aux_container=True)
    run = tmp_path / "plate_run"
    train(_cfg(plates, run, **kw))
    spatial = [v for v in _losses(run, "spatial_loss") if v is not None]
    assert spatial and all(math.isfinite(v) for v in spatial)  # hidden plates (NaN) left out, not NaN
    with pytest.raises(TrainingError, match="has no container"):
        train(_cfg(dataset, tmp_path / "no_plate", **kw))
    with pytest.raises(TrainingError, match="goes with --spatial-aux-weight"):
        train(_cfg(plates, tmp_path / "bare", stage=2, init=str(stage1), steps=1, spatial_aux_container=True))
