"""Checkpoint loading: strict key/shape check with useful messages, legacy key remap, corrupted files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from internvla_core.model import CheckpointError, CheckpointMismatchError, load_policy, tiny_checkpoint
from internvla_core.model.checkpoint import (
    EMBED_KEY,
    LM_HEAD_KEY,
    is_legacy_qwen_layout,
    read_state_dict,
    remap_legacy_qwen_keys,
)


@pytest.fixture(scope="module")
def ckpt():
    return tiny_checkpoint()


@pytest.fixture(scope="module")
def state(ckpt):
    return torch.load(ckpt, weights_only=True)


@pytest.fixture
def run_copy(tmp_path, ckpt):
    run = tmp_path / "run"
    shutil.copytree(ckpt.parents[1], run)
    return run


def _to_legacy(state: dict) -> dict:
    """Write keys the way transformers < 4.52 named them (spec section 7)."""
    out = {}
    for k, v in state.items():
        if k.startswith("qwen_vl_interface.model.model.visual."):
            k = "qwen_vl_interface.model.visual." + k[len("qwen_vl_interface.model.model.visual.") :]
        elif k.startswith("qwen_vl_interface.model.model.language_model."):
            k = "qwen_vl_interface.model.model." + k[len("qwen_vl_interface.model.model.language_model.") :]
        out[k] = v
    return out


def _predict(policy, seed=0):
    img = np.random.default_rng(seed).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
    return policy.predict_action(img, "pick up the cup", unnorm_key="oxe_rt1", seed=seed).normalized


def test_legacy_layout_is_detected_and_remapped(state):
    legacy = _to_legacy(state)
    assert not is_legacy_qwen_layout(list(state))
    assert is_legacy_qwen_layout(list(legacy))
    assert "qwen_vl_interface.model.visual.patch_embed.proj.weight" in legacy
    assert "qwen_vl_interface.model.model.layers.0.self_attn.q_proj.weight" in legacy
    remapped = remap_legacy_qwen_keys(legacy)
    assert set(remapped) == set(state)


def test_legacy_checkpoint_loads_to_identical_outputs(run_copy, state, ckpt):
    torch.save(_to_legacy(state), run_copy / "checkpoints" / "steps_0_pytorch_model.pt")
    legacy_policy = load_policy(run_copy)
    original = load_policy(ckpt)
    np.testing.assert_array_equal(_predict(legacy_policy), _predict(original))
    legacy_policy.close()
    original.close()


def test_missing_and_unexpected_keys_are_listed_with_advice(run_copy, state):
    broken = dict(state)
    broken.pop("layer_qformer.query_tokens")
    broken.pop("dino_pro.bias")
    broken["action_model.net.extra_head.weight"] = torch.zeros(3)
    path = run_copy / "checkpoints" / "steps_0_pytorch_model.pt"
    torch.save(broken, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_policy(path)
    msg = str(info.value)
    assert "2 missing keys" in msg and "layer_qformer.query_tokens" in msg and "dino_pro.bias" in msg
    assert "1 unexpected keys" in msg and "action_model.net.extra_head.weight" in msg
    assert str(path) in msg and "What to do" in msg
    assert info.value.missing == ["dino_pro.bias", "layer_qformer.query_tokens"]


def test_shape_mismatch_is_listed(run_copy, state):
    broken = dict(state)
    broken["dino_pro.weight"] = torch.zeros(5, 5)
    torch.save(broken, run_copy / "checkpoints" / "steps_0_pytorch_model.pt")
    with pytest.raises(CheckpointMismatchError, match=r"1 shape mismatches: dino_pro.weight: file \(5, 5\)"):
        load_policy(run_copy)


def test_long_key_lists_are_truncated_with_counts(run_copy, state):
    only_qwen = {k: v for k, v in state.items() if k.startswith("qwen_vl_interface.")}
    torch.save(only_qwen, run_copy / "checkpoints" / "steps_0_pytorch_model.pt")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys .*\(\+\d+ more\)"):
        load_policy(run_copy)


def test_corrupted_file_gives_a_clear_error_naming_it(run_copy, ckpt):
    path = run_copy / "checkpoints" / "steps_0_pytorch_model.pt"
    data = ckpt.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(
        CheckpointError, match=r"cannot read checkpoint .*steps_0_pytorch_model.pt.*corrupted"
    ):
        load_policy(path)
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        read_state_dict(path)


def test_tied_lm_head_may_be_absent(run_copy, state, ckpt):
    without_head = {k: v for k, v in state.items() if k != LM_HEAD_KEY}
    torch.save(without_head, run_copy / "checkpoints" / "steps_0_pytorch_model.pt")
    policy = load_policy(run_copy)
    qwen = policy.model.qwen_vl_interface.model
    assert torch.equal(qwen.lm_head.weight, state[EMBED_KEY])
    policy.close()


def test_safetensors_checkpoints_load_too(run_copy, state, ckpt):
    from safetensors.torch import save_file

    (run_copy / "checkpoints" / "steps_0_pytorch_model.pt").unlink()
    tensors = {k: v.clone().contiguous() for k, v in state.items()}
    save_file(tensors, str(run_copy / "checkpoints" / "steps_0_model.safetensors"))
    a = load_policy(run_copy)
    b = load_policy(ckpt)
    np.testing.assert_array_equal(_predict(a, 1), _predict(b, 1))
    a.close()
    b.close()


def test_missing_run_files_are_reported(tmp_path, ckpt):
    run = tmp_path / "run"
    shutil.copytree(ckpt.parents[1], run)
    (run / "dataset_statistics.json").unlink()
    with pytest.raises(FileNotFoundError, match="dataset statistics not found"):
        load_policy(run)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_policy(tmp_path / "nowhere" / "x.pt")
