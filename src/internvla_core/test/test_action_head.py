"""DINOv2, QFormer, DiT and DDIM/CFG of the action head against the spec's formulas and names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from internvla_core.model.diffusion import (
    base_alphas_cumprod,
    cfg_combine,
    ddim_schedule,
    ddim_step,
    ddim_timesteps,
)
from internvla_core.model.dino import DinoEncoder
from internvla_core.model.dit import ActionModel, DiT, timestep_embedding
from internvla_core.model.qformer import LayerwiseQFormer


@pytest.mark.parametrize(
    ("steps", "expected"),
    [(1, [50]), (5, [0, 20, 40, 60, 80]), (10, list(range(0, 100, 10))), (20, list(range(0, 100, 5)))],
)
def test_ddim_timesteps_follow_the_smallest_integer_stride_rule(steps, expected):
    assert ddim_timesteps(steps) == expected


def test_ddim_timesteps_reject_impossible_counts():
    with pytest.raises(ValueError):
        ddim_timesteps(0)
    with pytest.raises(ValueError):
        ddim_timesteps(101)


def test_cosine_schedule_matches_the_closed_form():
    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    ac = base_alphas_cumprod()
    assert ac.dtype == np.float64 and ac.shape == (100,)
    # cumprod of (1 - beta_i) telescopes to alpha_bar((t+1)/100) / alpha_bar(0) while no beta is capped
    for t in (0, 10, 50, 90):
        assert ac[t] == pytest.approx(alpha_bar((t + 1) / 100) / alpha_bar(0), rel=1e-12)
    schedule = ddim_schedule(10)
    assert list(schedule.timesteps) == list(range(0, 100, 10))
    np.testing.assert_allclose(schedule.alphas_cumprod, ac[::10], rtol=1e-12)
    assert schedule.alphas_cumprod_prev[0] == 1.0
    np.testing.assert_allclose(schedule.alphas_cumprod_prev[1:], ac[::10][:-1], rtol=1e-12)


def test_one_ddim_step_matches_hand_computation():
    x = torch.tensor([[[1.0, -2.0]]])
    eps = torch.tensor([[[0.5, 0.25]]])
    a_t, a_prev = 0.64, 0.81
    x_prev, x0 = ddim_step(x, eps, a_t, a_prev)
    hand_x0 = x / 0.8 - math.sqrt(1 / 0.64 - 1) * eps  # sqrt(1/a)=1.25, sqrt(1/a-1)=0.75
    torch.testing.assert_close(x0, hand_x0)
    torch.testing.assert_close(x_prev, 0.9 * hand_x0 + math.sqrt(1 - 0.81) * eps)
    _, final = ddim_step(x, eps, a_t, 1.0)
    torch.testing.assert_close(final, hand_x0)


def test_cfg_combines_every_channel():
    cond, uncond = torch.tensor([2.0, 4.0, -1.0]), torch.tensor([1.0, 1.0, 1.0])
    torch.testing.assert_close(cfg_combine(cond, uncond, 1.5), torch.tensor([2.5, 5.5, -2.0]))


def test_timestep_embedding_puts_cosines_first():
    emb = timestep_embedding(torch.tensor([0, 7]))
    assert emb.shape == (2, 256)
    torch.testing.assert_close(emb[0, :128], torch.ones(128))
    torch.testing.assert_close(emb[0, 128:], torch.zeros(128))
    freqs = torch.exp(-math.log(10000) * torch.arange(128) / 128)
    torch.testing.assert_close(emb[1, :128], torch.cos(7 * freqs))


def tiny_dit(horizon: int = 4) -> DiT:
    torch.manual_seed(0)
    net = DiT(action_dim=7, token_size=32, depth=2, num_heads=4, horizon=horizon, num_condition_tokens=8)
    torch.nn.init.normal_(net.final_layer.linear.weight, std=0.2)
    return net.eval()


def test_dit_parameter_names_are_upstreams():
    names = set(tiny_dit().state_dict())
    for key in (
        "x_embedder.linear.weight",
        "history_embedder.linear.weight",
        "t_embedder.mlp.0.weight",
        "t_embedder.mlp.2.weight",
        "z_embedder.linear.weight",
        "z_embedder.uncondition",
        "positional_embedding",
        "blocks.1.attn.qkv.weight",
        "blocks.1.attn.proj.bias",
        "blocks.1.mlp.fc1.weight",
        "blocks.1.mlp.fc2.weight",
        "final_layer.linear.weight",
    ):
        assert key in names
    assert not any("norm" in k for k in names), "DiT LayerNorms are affine-free"


def test_cfg_pass_writes_the_guided_eps_to_both_halves_and_matches_two_plain_passes():
    net = tiny_dit()
    x = torch.randn(1, 4, 7)
    t = torch.tensor([30, 30])
    cond, uncond = torch.randn(1, 8, 32), net.z_embedder.uncondition.unsqueeze(0)
    out = net.forward_with_cfg(torch.cat([x, torch.zeros_like(x)]), t, torch.cat([cond, uncond]), 2.0)
    torch.testing.assert_close(out[0], out[1])
    e_c, e_u = net(x, t[:1], cond), net(x, t[:1], uncond)
    torch.testing.assert_close(out[:1], e_u + 2.0 * (e_c - e_u), rtol=1e-5, atol=1e-6)


def test_sampling_is_deterministic_with_fixed_noise_and_depends_on_the_step_count():
    model = ActionModel(tiny_dit())
    cond, noise = torch.randn(2, 8, 32), torch.randn(2, 4, 7)
    a = model.sample(cond, cfg_scale=1.5, num_ddim_steps=10, initial_noise=noise)
    b = model.sample(cond, cfg_scale=1.5, num_ddim_steps=10, initial_noise=noise)
    assert torch.equal(a, b) and a.shape == (2, 4, 7)
    # upstream cached its sampler and ignored a changed step count; here the count is honoured
    c = model.sample(cond, cfg_scale=1.5, num_ddim_steps=5, initial_noise=noise)
    assert not torch.allclose(a, c)
    record: list = []
    model.sample(cond, cfg_scale=1.5, num_ddim_steps=5, initial_noise=noise, record=record)
    assert [int(r["t"][0]) for r in record] == [80, 60, 40, 20, 0]
    assert record[0]["x_in"].shape == (4, 4, 7)  # CFG doubles the batch


def test_qformer_appends_dino_tokens_to_every_layer_and_is_deterministic_in_eval():
    torch.manual_seed(0)
    qf = LayerwiseQFormer(input_dim=16, output_dim=32, num_query_tokens=8, num_layers=2, num_heads=4).eval()
    hidden = [torch.randn(1, 5, 16), torch.randn(1, 5, 16)]
    dino = torch.randn(1, 3, 16)
    out = qf(hidden, dino)
    assert out.shape == (1, 8, 32)
    torch.testing.assert_close(out, qf(hidden, dino))
    joined = qf([torch.cat([h, dino], 1) for h in hidden])
    torch.testing.assert_close(out, joined)
    with pytest.raises(ValueError, match="expected 2"):
        qf(hidden[:1], dino)


def test_dino_patch_tokens_for_a_224_view_and_hub_names():
    enc = DinoEncoder.from_dims(32, 2, 4).eval()
    assert {"cls_token", "pos_embed", "mask_token", "blocks.0.ls1.gamma", "norm.weight"} <= {
        k.removeprefix("body.") for k in enc.state_dict()
    }
    assert enc.body.pos_embed.shape == (1, 1370, 32)
    tokens = enc(torch.randn(2, 3, 224, 224))
    assert tokens.shape == (2, 256, 32)


def test_dino_preprocess_resizes_the_shorter_side_like_torchvision():
    enc = DinoEncoder.from_dims(32, 1, 4)
    assert DinoEncoder.resized_size(640, 480) == (298, 224)
    assert DinoEncoder.resized_size(224, 300) == (224, 300)
    image = Image.fromarray(np.full((480, 640, 3), 255, dtype=np.uint8))
    pixels = enc.preprocess([image])
    assert pixels.shape == (1, 3, 224, 298)
    expected_white = (1.0 - 0.485) / 0.229
    assert float(pixels[0, 0, 10, 10]) == pytest.approx(expected_white, rel=1e-5)
    with pytest.raises(ValueError, match="share one size"):
        enc.preprocess([image, Image.fromarray(np.zeros((224, 224, 3), dtype=np.uint8))])
