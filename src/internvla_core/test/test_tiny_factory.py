"""The tiny-model factory writes upstream's released layout and loads through the normal path."""

from __future__ import annotations

import json
import threading

import pytest
import torch
import yaml

from internvla_core.model import load_policy
from internvla_core.model.tiny import QWEN_SPECIAL_TOKENS, TinySpec, build_tiny_checkpoint, tiny_checkpoint


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "run", seed=1)


def test_layout_matches_the_released_run_dirs(built):
    run = built.parents[1]
    assert built == run / "checkpoints" / "steps_0_pytorch_model.pt"
    for name in ("config.yaml", "config.json", "dataset_statistics.json"):
        assert (run / name).is_file()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg == json.loads((run / "config.json").read_text())
    assert cfg["framework"]["qwenvl"]["base_vlm"] == "tiny_qwen25vl"  # relative to the run dir
    assert "{instruction}" in cfg["datasets"]["vla_data"]["CoT_prompt"]
    stats = json.loads((run / "dataset_statistics.json").read_text())
    assert list(stats) == ["oxe_bridge", "oxe_rt1", "franka"]
    assert stats["franka"]["action"]["mask"] == [True] * 6 + [False]
    vlm = run / "tiny_qwen25vl"
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        assert (vlm / name).is_file()
    assert not list(vlm.glob("*.safetensors"))  # weights live in the VLA checkpoint only


def test_checkpoint_keys_use_upstream_prefixes_and_dit_head_is_not_zero(built):
    state = torch.load(built, weights_only=True)
    prefixes = {k.split(".")[0] for k in state}
    assert prefixes == {"qwen_vl_interface", "layer_qformer", "action_model", "dino_encoder", "dino_pro"}
    assert any(k.startswith("qwen_vl_interface.model.model.language_model.") for k in state)
    assert any(k.startswith("qwen_vl_interface.model.model.visual.") for k in state)
    assert "dino_encoder.body.pos_embed" in state and "action_model.net.z_embedder.uncondition" in state
    assert state["action_model.net.final_layer.linear.weight"].abs().sum() > 0


def test_tokenizer_has_qwens_special_tokens_in_qwens_order(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(built.parents[1] / "tiny_qwen25vl"))
    ids = tok.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS))
    assert ids == list(range(ids[0], ids[0] + len(QWEN_SPECIAL_TOKENS)))
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>pick<|im_end|>"
    enc = tok(text)["input_ids"]
    assert ids[1] in enc and ids[12] in enc and tok.decode(enc) == text


def test_same_seed_gives_the_same_weights(tmp_path, built):
    again = build_tiny_checkpoint(tmp_path / "again", seed=1)
    a, b = torch.load(built, weights_only=True), torch.load(again, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = torch.load(build_tiny_checkpoint(tmp_path / "other", seed=2), weights_only=True)
    assert not torch.equal(a["layer_qformer.query_tokens"], other["layer_qformer.query_tokens"])


def test_factory_checkpoint_loads_with_load_policy(built):
    policy = load_policy(built.parents[1])
    assert policy.action_horizon == 16 and policy.unnorm_keys == ["oxe_bridge", "oxe_rt1", "franka"]
    policy.close()


def test_other_horizon_and_action_dim(tmp_path):
    ckpt = build_tiny_checkpoint(tmp_path / "h8", seed=0, action_horizon=8, action_dim=8)
    policy = load_policy(ckpt)
    assert (policy.action_horizon, policy.action_dim) == (8, 8)
    import numpy as np

    pred = policy.predict_action(np.zeros((32, 32, 3), np.uint8), "go", unnorm_key="franka", seed=0)
    assert pred.actions.shape == (8, 8)
    policy.close()


def test_refuses_to_overwrite_a_non_empty_dir(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file").write_text("keep me")
    with pytest.raises(FileExistsError):
        build_tiny_checkpoint(tmp_path / "x")


def test_cache_builds_once_and_is_safe_under_concurrency(tmp_path):
    spec = TinySpec(seed=5)
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(tiny_checkpoint(tmp_path, spec))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 2 and results[0] == results[1] and results[0].is_file()
    assert (results[0].parents[1] / "BUILD_OK").is_file()
    mtime = results[0].stat().st_mtime_ns
    assert tiny_checkpoint(tmp_path, spec) == results[0] and results[0].stat().st_mtime_ns == mtime
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".building-")]
    assert leftovers == []
