"""Real-time chunking: the sampler's inpainting, the policy side's prefix, the executor's ``rtc`` mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from internvla_core.embodiments import get_embodiment
from internvla_core.executor_core import ExecutorConfig, ExecutorCore
from internvla_core.model.diffusion import ddim_sample, ddim_schedule, ddim_step
from internvla_core.model.dit import ActionModel, DiT
from internvla_core.rtc import DelayEstimator, RealTimeChunking, SmoothChunkPrior, soft_weights

HORIZON, DIM = 16, 7


def tiny_model(seed: int = 0) -> ActionModel:
    torch.manual_seed(seed)
    net = DiT(action_dim=DIM, token_size=32, depth=2, num_heads=4, horizon=HORIZON, num_condition_tokens=8)
    return ActionModel(net.eval())


def draw(seed: int, shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def reference_sample(model: ActionModel, cond, noise, cfg_scale: float, steps: int) -> torch.Tensor:
    """The plain DDIM(+CFG) loop written out from the spec, independently of ``ddim_sample``."""
    net = model.net
    x, z = noise, cond
    guided = cfg_scale > 1
    if guided:
        uncond = net.z_embedder.uncondition.unsqueeze(0).expand(len(cond), -1, -1)
        x, z = torch.cat([noise, noise]), torch.cat([cond, uncond])
    schedule = ddim_schedule(steps)
    with torch.no_grad():
        for i in reversed(range(schedule.num_steps)):
            t = torch.full((len(x),), int(schedule.timesteps[i]), dtype=torch.long)
            eps = net.forward_with_cfg(x, t, z, cfg_scale) if guided else net(x, t, z)
            x_prev, x0 = ddim_step(
                x, eps, float(schedule.alphas_cumprod[i]), float(schedule.alphas_cumprod_prev[i])
            )
            x = x_prev if i > 0 else x0
    return x[: len(cond)]


@pytest.mark.parametrize("cfg_scale", [1.0, 1.5])
def test_without_a_prefix_the_sampler_is_the_plain_one_bit_for_bit(model, cfg_scale):
    cond, noise = draw(1, (2, 8, 32)), draw(2, (2, HORIZON, DIM))
    plain = model.sample(cond, cfg_scale=cfg_scale, num_ddim_steps=10, initial_noise=noise)
    expected = reference_sample(model, cond, noise, cfg_scale, 10)
    assert torch.equal(plain, expected)
    # a prefix whose weights are all 0 changes nothing either
    zero = model.sample(
        cond,
        cfg_scale=cfg_scale,
        num_ddim_steps=10,
        initial_noise=noise,
        prefix=draw(3, (2, 6, DIM)),
        prefix_weights=torch.zeros(6),
    )
    assert torch.equal(zero, plain)


@pytest.mark.parametrize("cfg_scale", [1.0, 1.5])
def test_hard_rows_equal_the_committed_rows_and_the_rest_is_free(model, cfg_scale):
    cond, committed = draw(1, (1, 8, 32)), draw(4, (1, 8, DIM))
    weights = torch.as_tensor(soft_weights(3, 8), dtype=torch.float32)
    outs = [
        model.sample(
            cond,
            cfg_scale=cfg_scale,
            num_ddim_steps=10,
            initial_noise=draw(seed, (1, HORIZON, DIM)),
            prefix=committed,
            prefix_weights=weights,
        )
        for seed in (10, 11)
    ]
    plain = model.sample(
        cond, cfg_scale=cfg_scale, num_ddim_steps=10, initial_noise=draw(10, (1, HORIZON, DIM))
    )
    for out in outs:
        assert torch.equal(out[:, :3], committed[:, :3])  # hard part: exactly the committed actions
        assert not torch.allclose(out[:, 3:8], committed[:, 3:8], atol=1e-3)  # soft part: guided, not pinned
    # free rows: another noise draw gives other rows (hard rows stay), and the guidance changed them
    assert not torch.allclose(outs[0][:, 8:], outs[1][:, 8:], atol=1e-3)
    assert not torch.allclose(outs[0][:, 3:], plain[:, 3:], atol=1e-4)
    # the soft rows moved toward the committed ones compared with the unguided sample
    guided_gap = (outs[0][:, 3:6] - committed[:, 3:6]).abs().mean()
    plain_gap = (plain[:, 3:6] - committed[:, 3:6]).abs().mean()
    assert guided_gap < plain_gap


def test_the_inpainted_sampler_is_deterministic_and_checks_its_arguments(model):
    cond, committed = draw(1, (1, 8, 32)), draw(4, (1, 5, DIM))
    weights = torch.as_tensor(soft_weights(2, 5), dtype=torch.float32)

    def run():
        return model.sample(
            cond,
            num_ddim_steps=10,
            generator=torch.Generator().manual_seed(7),
            prefix=committed,
            prefix_weights=weights,
        )

    assert torch.equal(run(), run())
    x = draw(0, (1, HORIZON, DIM))
    with pytest.raises(ValueError, match="prefix_weights"):
        ddim_sample(lambda x, t: x, x, 10, prefix=committed)
    with pytest.raises(ValueError, match="weights"):
        ddim_sample(lambda x, t: x, x, 10, prefix=committed, prefix_weights=torch.ones(4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ddim_sample(lambda x, t: x, x, 10, prefix=committed, prefix_weights=torch.full((5,), 1.5))
    with pytest.raises(ValueError, match="at most"):
        ddim_sample(
            lambda x, t: x,
            x,
            10,
            prefix=draw(0, (1, HORIZON + 1, DIM)),
            prefix_weights=torch.ones(HORIZON + 1),
        )


def test_soft_weights_are_hard_then_decay_to_zero():
    w = soft_weights(3, 10)
    assert w.shape == (10,) and np.all(w[:3] == 1.0)
    assert np.all(np.diff(w[3:]) < 0) and np.all((w[3:] > 0) & (w[3:] < 1))
    c = 7 / 8  # first soft row: c = (overlap - delay) / (overlap - delay + 1)
    assert w[3] == pytest.approx(c * math.expm1(c) / math.expm1(1.0))
    assert np.all(soft_weights(5, 4) == 1.0) and soft_weights(0, 0).shape == (0,)
    with pytest.raises(ValueError):
        soft_weights(-1, 3)


def test_delay_is_the_ceiling_of_a_high_latency_quantile_in_control_steps():
    est = DelayEstimator(0.1, window=10, quantile=90)
    assert est.steps() is None
    for latency in [0.21] * 9 + [0.5]:
        est.add(latency)
    est.add(float("nan"))  # ignored
    assert est.steps() == math.ceil(np.percentile([0.21] * 9 + [0.5], 90) / 0.1)
    assert DelayEstimator(0.1, quantile=50).steps() is None
    exact = DelayEstimator(0.1)
    exact.add(0.3)
    assert exact.steps() == 3  # 0.3 / 0.1 is 3 steps, not 4, despite rounding


def test_the_prefix_is_the_previous_chunk_from_the_new_observation_on():
    rtc = RealTimeChunking(0.1)
    assert rtc.prefix(0.0) is None  # nothing published yet
    previous = np.arange(16 * 2, dtype=np.float64).reshape(16, 2)
    rtc.record(previous, obs_time=1.0, latency=0.25)
    prefix = rtc.prefix(1.4)  # observation 4 steps later, delay ceil(0.25 / 0.1) = 3
    assert prefix.offset == 4 and prefix.delay == 3
    np.testing.assert_array_equal(prefix.actions, previous[4:])
    np.testing.assert_array_equal(prefix.weights, soft_weights(3, 12))
    capped = RealTimeChunking(0.1, delay_steps=2, overlap_steps=5)
    capped.record(previous, 1.0)
    p = capped.prefix(1.1)
    assert p.delay == 2 and len(p.actions) == 5
    assert rtc.prefix(2.7) is None  # the previous chunk ended before that step
    assert rtc.prefix(0.5) is None  # an observation older than the previous chunk's
    rtc.reset()
    assert rtc.prefix(1.4) is None


def test_policy_predict_action_freezes_the_prefix_and_is_unchanged_without_it():
    from internvla_core.model import load_policy, tiny_checkpoint

    policy = load_policy(tiny_checkpoint())
    try:
        image = np.random.default_rng(0).integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
        plain = policy.predict_action(image, "pick the block", unnorm_key="franka", seed=3)
        again = policy.predict_action(image, "pick the block", unnorm_key="franka", seed=3)
        assert np.array_equal(plain.normalized, again.normalized)
        horizon, dim = policy.action_horizon, policy.action_dim
        committed = np.random.default_rng(1).uniform(-1, 1, (horizon // 2, dim)).astype(np.float32)
        weights = soft_weights(3, len(committed))
        rtc = policy.predict_action(
            image, "pick the block", unnorm_key="franka", seed=3, prefix=committed, prefix_weights=weights
        )
        np.testing.assert_array_equal(rtc.normalized[:3], committed[:3])
        assert not np.allclose(rtc.normalized[3:], plain.normalized[3:])
        zero = policy.predict_action(
            image,
            "pick the block",
            unnorm_key="franka",
            seed=3,
            prefix=committed,
            prefix_weights=np.zeros(len(committed)),
        )
        assert np.array_equal(zero.normalized, plain.normalized)
        with pytest.raises(ValueError, match="prefix"):
            policy.predict_action(
                image,
                "x",
                unnorm_key="franka",
                prefix=np.zeros((horizon + 1, dim)),
                prefix_weights=np.ones(horizon + 1),
            )
    finally:
        policy.close()


def executed(mode: str, chunks: list[tuple[np.ndarray, int, int]], steps: int) -> np.ndarray:
    """Actions an executor core emits (no IK) when each chunk (rows, obs step, arrival step) comes in."""
    core = ExecutorCore(
        get_embodiment("franka_real"),
        ExecutorConfig(mode=mode, control_period=0.1, watchdog_timeout=100.0, warmup=False, blend_steps=3),
    )
    pose = np.eye(4)
    pose[:3, 3] = [0.4, 0.0, 0.4]
    out = []
    for k in range(steps):
        for rows, obs, arrival in chunks:
            if arrival == k:
                assert core.add_chunk(rows, obs * 0.1, k * 0.1) == ""
        command = core.tick(k * 0.1, pose)
        assert not command.hold, command.reason
        out.append(command.action)
    return np.array(out)


def test_executor_rtc_mode_switches_at_the_seam_without_blending():
    first = np.zeros((16, 7))
    first[:, -1] = 1.0
    second = first.copy()
    second[:, 0] = 0.004  # a different plan from observation step 4, arriving at step 6
    chunks = [(first, 0, 0), (second, 4, 6)]
    rtc = executed("rtc", chunks, 12)
    np.testing.assert_array_equal(rtc[:6], first[:6])
    np.testing.assert_array_equal(rtc[6:], second[2:8])  # rows 0-1 of the new chunk are in the past
    blended = executed("chunk", chunks, 12)
    assert 0 < blended[6, 0] < 0.004  # chunk mode cross-fades the seam instead
    with pytest.raises(ValueError, match="rtc"):
        ExecutorConfig(mode="rtx")


def smooth_timeline(use_rtc: bool, delay: int = 3, every: int = 3, chunks: int = 12) -> tuple[float, float]:
    """A synthetic smooth policy (Gaussian chunks around a slow reference, exact denoiser): chunk j is
    computed from observation step 3j, arrives ``delay`` steps later and runs until the next arrives.
    Returns (mean largest |Δaction| at the seams, mean largest |Δaction| elsewhere)."""
    prior = SmoothChunkPrior(HORIZON, sigma=0.3, length_scale=4.0)
    rtc = RealTimeChunking(1.0, delay_steps=delay)
    made = []
    for j in range(chunks):
        obs = every * j
        steps = np.arange(obs, obs + HORIZON)[:, None]
        mean = np.sin(0.05 * steps + np.arange(DIM)[None])  # the observation's "right" motion
        prefix = rtc.prefix(float(obs)) if use_rtc else None
        kwargs = {}
        if prefix is not None:
            kwargs = {
                "prefix": torch.as_tensor(prefix.actions[None], dtype=torch.float32),
                "prefix_weights": torch.as_tensor(prefix.weights, dtype=torch.float32),
            }
        chunk = ddim_sample(prior.eps_fn(mean), draw(300 + j, (1, HORIZON, DIM)), 10, **kwargs)[0].numpy()
        rtc.record(chunk, float(obs))
        made.append((obs, chunk))
    seq, seams = [], []
    for step in range(delay, every * (chunks - 1) + delay):
        obs, chunk = made[(step - delay) // every]
        if step == obs + delay and obs > 0:
            seams.append(len(seq) - 1)  # the jump from the previous step into this one
        seq.append(chunk[step - obs])
    jumps = np.abs(np.diff(np.array(seq), axis=0)).max(axis=1)
    return float(jumps[seams].mean()), float(np.delete(jumps, seams).mean())


def test_closed_loop_rtc_removes_the_seam_jump_of_naive_switching():
    naive_seam, naive_inside = smooth_timeline(False)
    rtc_seam, rtc_inside = smooth_timeline(True)
    print(
        f"seam jump naive {naive_seam:.3f} (inside {naive_inside:.3f}), rtc {rtc_seam:.3f} (inside {rtc_inside:.3f})"
    )
    assert naive_seam > 3 * naive_inside  # switching to an independent draw jumps
    assert rtc_seam < 2 * rtc_inside  # the frozen + guided rows continue the executed ones
    assert rtc_seam < 0.5 * naive_seam
