"""The assembled InternVLA-M1 on a tiny checkpoint: reproducibility, sampling options, prompts, views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from internvla_core.model import load_policy, tiny_checkpoint
from internvla_core.model.config import load_run_config
from internvla_core.model.framework import InternVLAM1

INSTRUCTION = "Put the purple can on the orange cup."


@pytest.fixture(scope="module")
def ckpt():
    return tiny_checkpoint()


@pytest.fixture(scope="module")
def policy(ckpt):
    p = load_policy(ckpt)
    yield p
    p.close()


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)


def _noise(policy, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(policy.action_horizon, policy.action_dim, generator=g).numpy()


def test_saved_then_loaded_model_gives_identical_actions(tmp_path, ckpt, image):
    """A freshly initialised network saved with torch.save loads back to bit-identical predictions."""
    import shutil

    from PIL import Image

    run_dir = tmp_path / "run"
    shutil.copytree(ckpt.parents[1], run_dir)
    torch.manual_seed(11)
    model = InternVLAM1(load_run_config(run_dir), run_dir / "tiny_qwen25vl")
    with torch.no_grad():  # upstream zero-inits this layer; give it weights so outputs depend on them
        model.action_model.net.final_layer.linear.weight.normal_(0.0, 0.1)
    saved = run_dir / "checkpoints" / "steps_11_pytorch_model.pt"
    torch.save(model.state_dict(), saved)
    loaded = load_policy(run_dir)  # newest step in the run dir
    assert loaded.checkpoint_path == saved
    noise = torch.from_numpy(_noise(loaded))[None]
    direct = model.predict_action([[Image.fromarray(image)]], [INSTRUCTION], initial_noise=noise)[0]
    via_policy = loaded.predict_action(image, INSTRUCTION, unnorm_key="oxe_bridge", initial_noise=noise)
    np.testing.assert_array_equal(direct, via_policy.normalized)
    loaded.close()


def test_same_noise_or_seed_is_bit_identical_on_cpu(policy, image):
    noise = _noise(policy, 1)
    a = policy.predict_action(image, INSTRUCTION, unnorm_key="oxe_bridge", initial_noise=noise)
    b = policy.predict_action(image, INSTRUCTION, unnorm_key="oxe_bridge", initial_noise=noise)
    np.testing.assert_array_equal(a.normalized, b.normalized)
    np.testing.assert_array_equal(a.actions, b.actions)
    s1 = policy.predict_action(image, INSTRUCTION, unnorm_key="oxe_bridge", seed=7)
    s2 = policy.predict_action(image, INSTRUCTION, unnorm_key="oxe_bridge", seed=7)
    s3 = policy.predict_action(image, INSTRUCTION, unnorm_key="oxe_bridge", seed=8)
    np.testing.assert_array_equal(s1.normalized, s2.normalized)
    assert not np.array_equal(s1.normalized, s3.normalized)


def test_changing_ddim_steps_between_calls_is_honoured(policy, image):
    """Upstream caches the first call's DDIM sampler; here every call uses its own step count."""
    noise = _noise(policy, 2)
    ten_first = policy.predict_action(
        image, INSTRUCTION, "oxe_bridge", num_ddim_steps=10, initial_noise=noise
    )
    five = policy.predict_action(image, INSTRUCTION, "oxe_bridge", num_ddim_steps=5, initial_noise=noise)
    ten_again = policy.predict_action(
        image, INSTRUCTION, "oxe_bridge", num_ddim_steps=10, initial_noise=noise
    )
    assert not np.allclose(ten_first.normalized, five.normalized)
    np.testing.assert_array_equal(ten_first.normalized, ten_again.normalized)


def test_cfg_scale_one_and_one_and_a_half_differ(policy, image):
    noise = _noise(policy, 3)
    plain = policy.predict_action(image, INSTRUCTION, "oxe_bridge", cfg_scale=1.0, initial_noise=noise)
    guided = policy.predict_action(image, INSTRUCTION, "oxe_bridge", cfg_scale=1.5, initial_noise=noise)
    assert np.abs(plain.normalized - guided.normalized).max() > 1e-4


def test_spatial_prompt_flag_changes_the_text_fed_to_the_vlm(policy, image):
    noise = _noise(policy, 4)
    rec_on: dict = {}
    rec_off: dict = {}
    on = policy.predict_action(image, INSTRUCTION, "oxe_bridge", initial_noise=noise, record=rec_on)
    off = policy.predict_action(
        image, INSTRUCTION, "oxe_bridge", initial_noise=noise, spatial_prompt=False, record=rec_off
    )
    # upstream: lowercase, plain replace into CoT_prompt -> the double period
    assert on.prompt == (
        "Your task is put the purple can on the orange cup.. To identify the key objects for your task. "
        "Locate their bounding boxes in [x1,y1,x2,y2] format."
    )
    assert off.prompt == "put the purple can on the orange cup."
    assert rec_on["inputs"].input_ids.shape[1] > rec_off["inputs"].input_ids.shape[1]
    assert "To identify the key objects" in rec_on["inputs"].texts[0]
    assert "To identify" not in rec_off["inputs"].texts[0]
    assert not np.allclose(on.normalized, off.normalized)


def test_chat_turn_has_one_image_item_per_view_in_order(policy, image):
    other = np.ascontiguousarray(image[::-1])
    rec: dict = {}
    noise = _noise(policy, 5)
    ab = policy.predict_action([image, other], INSTRUCTION, "oxe_bridge", initial_noise=noise, record=rec)
    ba = policy.predict_action([other, image], INSTRUCTION, "oxe_bridge", initial_noise=noise)
    text = rec["inputs"].texts[0]
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert text.index("<|vision_end|>") < text.index("Your task is")
    # two views -> two sets of DINO patch tokens, concatenated per sample
    assert rec["dino_features"].shape[1] == 2 * 256
    assert not np.allclose(ab.normalized, ba.normalized)


def test_numpy_and_pil_inputs_are_equivalent(policy, image):
    from PIL import Image

    noise = _noise(policy, 6)
    a = policy.predict_action(image, INSTRUCTION, "oxe_bridge", initial_noise=noise)
    b = policy.predict_action(Image.fromarray(image), INSTRUCTION, "oxe_bridge", initial_noise=noise)
    np.testing.assert_array_equal(a.normalized, b.normalized)


def test_images_are_resized_to_the_training_size_first(policy, image):
    from PIL import Image

    big = np.asarray(Image.fromarray(image).resize((448, 336)))
    rec: dict = {}
    policy.predict_action(big, INSTRUCTION, "oxe_bridge", seed=0, record=rec)
    assert rec["inputs"].model_input_sizes == [(224, 224)]
    assert tuple(rec["inputs"].image_grid_thw[0].tolist()) == (1, 16, 16)


def test_qformer_condition_and_action_shapes(policy, image):
    rec: dict = {}
    pred = policy.predict_action(image, INSTRUCTION, "oxe_bridge", seed=0, record=rec)
    cfg = policy.config
    assert len(rec["hidden_states"]) == policy.model.qwen_vl_interface.num_layers + 1
    assert rec["qformer_out"].shape[:2] == (1, cfg.num_query_tokens)
    assert pred.normalized.shape == (16, 7) and pred.normalized.dtype == np.float32
    assert len(rec["dit_steps"]) == 10


def test_qformer_reads_the_configured_hidden_state_slice_and_projected_dino_tokens(
    policy, image, monkeypatch
):
    seen: dict = {}
    qformer = policy.model.layer_qformer
    real_forward = qformer.forward

    def capture(hidden_states, dino_features):
        seen["hidden"], seen["dino"] = list(hidden_states), dino_features
        return real_forward(hidden_states, dino_features)

    monkeypatch.setattr(qformer, "forward", capture)
    rec: dict = {}
    policy.predict_action(image, INSTRUCTION, "oxe_bridge", seed=0, record=rec)
    cfg = policy.config
    expected = rec["hidden_states"][cfg.qformer_start_layer : cfg.qformer_end_layer]
    assert len(seen["hidden"]) == cfg.qformer_end_layer - cfg.qformer_start_layer == 2
    assert all(a is b for a, b in zip(seen["hidden"], expected))
    assert seen["dino"] is rec["dino_projected"]
    hidden = policy.model.qwen_vl_interface.hidden_size
    assert rec["dino_projected"].shape == (1, 256, hidden)
