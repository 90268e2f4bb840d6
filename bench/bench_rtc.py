"""Seam smoothness of real-time chunking vs naive switching, cross-fading and ensembling (no robot).

    source scripts/env.sh && python bench/bench_rtc.py [--delay 3] [--chunks 40] [--seeds 5]

A chunk j is computed from the observation of control step j·delay (the policy starts the next inference
as soon as it publishes) and reaches the executor ``delay`` steps later. What the executor runs:
  naive     the newest chunk from its arrival on (``ChunkStreamer`` without blending),
  chunk     the same with the 3-step cross-fade of ``mode: chunk``,
  ensemble  ``TimedEnsembler`` (horizon 3) over the chunks that have arrived,
  rtc       chunks sampled with the previous chunk's executed rows frozen and its overlap guided
            (``internvla_core.rtc`` + ``diffusion.ddim_sample``), streamed without blending (``mode: rtc``).
Policies: ``smooth`` = ``rtc.SmoothChunkPrior`` (Gaussian chunks around a slow reference, exact denoiser:
a stand-in for a trained policy whose samples differ from call to call), ``tiny`` = the untrained tiny
factory model's DiT with a random condition per observation (its rows are noise: only the frozen rows
mean anything there). Actions are normalised model units, all 7 dimensions. Printed per mode: the seam
jump (largest |Δa| over dimensions at the step a new chunk takes over; mean and max over seams), the same
inside chunks, and the RMS second difference of the executed actions (actions are per-step deltas, so
this is the jerk of the commanded path, in units per step³). Numbers are printed, never asserted.
Task success can only be compared with a trained checkpoint: this measures smoothness, not success.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from internvla_core.ensemble import TimedEnsembler
from internvla_core.model.diffusion import ddim_sample
from internvla_core.rtc import RealTimeChunking, SmoothChunkPrior
from internvla_core.scheduling import ChunkStreamer

MODES = ("naive", "chunk", "ensemble", "rtc")


def smooth_sampler(horizon: int, dim: int):
    prior = SmoothChunkPrior(horizon, sigma=0.3, length_scale=4.0)

    def sample(obs_step: int, noise: torch.Tensor, prefix, weights) -> np.ndarray:
        steps = np.arange(obs_step, obs_step + horizon)[:, None]
        mean = np.sin(0.05 * steps + np.arange(dim)[None])
        return ddim_sample(prior.eps_fn(mean), noise, 10, prefix=prefix, prefix_weights=weights)[0].numpy()

    return sample


def tiny_sampler():
    from internvla_core.model import load_policy, tiny_checkpoint

    policy = load_policy(tiny_checkpoint())
    head = policy.model.action_model
    width = head.net.z_embedder.linear.in_features
    tokens = head.net.num_condition_tokens

    def sample(obs_step: int, noise: torch.Tensor, prefix, weights) -> np.ndarray:
        cond = torch.randn((1, tokens, width), generator=torch.Generator().manual_seed(10_000 + obs_step))
        out = head.sample(cond, 1.5, 10, initial_noise=noise, prefix=prefix, prefix_weights=weights)
        return out[0].float().numpy()

    return sample, policy.action_horizon, policy.action_dim


def executed(mode: str, sample, horizon: int, dim: int, delay: int, chunks: int, seed: int) -> np.ndarray:
    rtc = RealTimeChunking(1.0, delay_steps=delay)
    streamer = ChunkStreamer(3 if mode == "chunk" else 0)
    ensembler = TimedEnsembler(3)
    arrivals: dict[int, tuple[np.ndarray, int]] = {}
    for j in range(chunks):
        obs = j * delay
        noise = torch.randn((1, horizon, dim), generator=torch.Generator().manual_seed(seed * 100_000 + j))
        prefix = rtc.prefix(float(obs)) if mode == "rtc" else None
        guide = (None, None)
        if prefix is not None:
            guide = (
                torch.as_tensor(prefix.actions[None], dtype=torch.float32),
                torch.as_tensor(prefix.weights, dtype=torch.float32),
            )
        chunk = sample(obs, noise, *guide)
        rtc.record(chunk, float(obs))
        arrivals[obs + delay] = (chunk, obs)
    out = []
    for step in range(delay, (chunks - 1) * delay + delay):
        if step in arrivals:
            chunk, obs = arrivals[step]
            streamer.add(chunk, obs, step)
            ensembler.add(chunk, obs)
        action = ensembler.action(step) if mode == "ensemble" else streamer.action(step)
        out.append(action)
    return np.array(out)


def metrics(actions: np.ndarray, delay: int) -> dict[str, float]:
    jumps = np.abs(np.diff(actions, axis=0)).max(axis=1)
    seams = np.arange(delay - 1, len(jumps), delay)  # jump into the first step of each new chunk
    inside = np.delete(jumps, seams)
    second = np.diff(actions, n=2, axis=0)
    return {
        "seam_mean": float(jumps[seams].mean()),
        "seam_max": float(jumps[seams].max()),
        "inside_mean": float(inside.mean()),
        "jerk_rms": float(np.sqrt(np.mean(np.sum(second**2, axis=1)))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=int, default=3, help="inference delay = chunk period [control steps]")
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--policy", choices=["smooth", "tiny", "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(1)
    policies = []
    if args.policy in ("smooth", "both"):
        policies.append(("smooth", smooth_sampler(16, 7), 16, 7))
    if args.policy in ("tiny", "both"):
        sample, horizon, dim = tiny_sampler()
        policies.append(("tiny", sample, horizon, dim))
    for name, sample, horizon, dim in policies:
        print(
            f"policy {name}: horizon {horizon}, delay {args.delay} steps, {args.chunks} chunks x {args.seeds} seeds"
        )
        for mode in MODES:
            runs = [
                metrics(executed(mode, sample, horizon, dim, args.delay, args.chunks, seed), args.delay)
                for seed in range(args.seeds)
            ]
            mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
            print(
                f"  {mode:8s} seam jump mean {mean['seam_mean']:7.3f} max {mean['seam_max']:7.3f} | inside chunks "
                f"{mean['inside_mean']:7.3f} | RMS 2nd difference {mean['jerk_rms']:7.3f}"
            )


if __name__ == "__main__":
    main()
