"""Diffusion maths of InternVLA-M1's action head: the cosine schedule and DDIM sampling with CFG.

Facts (model spec section 3): 100 training steps, ``squaredcos_cap_v2`` betas, epsilon prediction,
DDIM with eta = 0 and no clipping, the network sees the *original* timestep index. Schedule buffers
are float64 and are cast to float32 per step, as upstream's ``_extract_into_tensor`` does.

Real-time chunking (``ddim_sample`` with ``prefix``): an optional inpainting of the first rows, off by
default; without it the sampler's arithmetic is the plain one, bit for bit.

Upstream defect not reproduced: its sampler object is created once at the first call and silently
reused even when a later call asks for a different number of DDIM steps. Here the (cheap) schedule is
derived from the requested step count on every call (with a small cache keyed by that count).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 100


def cosine_alpha_bar(s: float) -> float:
    """ᾱ(s) of the squaredcos_cap_v2 schedule, s in [0, 1]."""
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


def squaredcos_cap_v2_betas(num_train: int = NUM_TRAIN_TIMESTEPS, max_beta: float = 0.999) -> np.ndarray:
    """β_i = min(1 - ᾱ((i+1)/N) / ᾱ(i/N), max_beta), float64."""
    return np.array(
        [
            min(1 - cosine_alpha_bar((i + 1) / num_train) / cosine_alpha_bar(i / num_train), max_beta)
            for i in range(num_train)
        ],
        dtype=np.float64,
    )


def base_alphas_cumprod(num_train: int = NUM_TRAIN_TIMESTEPS) -> np.ndarray:
    """ᾱ_t = Π (1 - β_i) for t = 0..num_train-1, float64."""
    return np.cumprod(1.0 - squaredcos_cap_v2_betas(num_train))


def ddim_timesteps(num_steps: int, num_train: int = NUM_TRAIN_TIMESTEPS) -> list[int]:
    """The retained original timesteps for ``num_steps`` DDIM steps, ascending.

    Rule (upstream ``space_timesteps`` with a "ddimN" spec): the smallest integer stride s with
    ``len(range(0, num_train, s)) == num_steps``; N=1 is the special case {num_train // 2}.
    """
    if not 1 <= num_steps <= num_train:
        raise ValueError(f"num_ddim_steps must be in [1, {num_train}], got {num_steps}")
    if num_steps == 1:
        return [num_train // 2]
    for stride in range(1, num_train):
        if len(range(0, num_train, stride)) == num_steps:
            return list(range(0, num_train, stride))
    raise ValueError(f"cannot create exactly {num_steps} DDIM steps from {num_train} with an integer stride")


@dataclass(frozen=True)
class DDIMSchedule:
    """ᾱ at the retained timesteps (ascending) and ᾱ of the previous retained step (1 for the lowest)."""

    timesteps: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)


@lru_cache(maxsize=32)
def ddim_schedule(num_steps: int, num_train: int = NUM_TRAIN_TIMESTEPS) -> DDIMSchedule:
    kept = ddim_timesteps(num_steps, num_train)
    full = base_alphas_cumprod(num_train)
    # The respaced process recomputes betas from the kept ᾱ and multiplies them back: in float64
    # this reproduces ᾱ at the kept steps (to the last bit for these magnitudes).
    last = 1.0
    new_betas = []
    for t in kept:
        new_betas.append(1.0 - full[t] / last)
        last = full[t]
    alphas_cumprod = np.cumprod(1.0 - np.array(new_betas, dtype=np.float64))
    prev = np.append(1.0, alphas_cumprod[:-1])
    return DDIMSchedule(np.array(kept, dtype=np.int64), alphas_cumprod, prev)


def cfg_combine(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: ε = ε_u + s·(ε_c − ε_u), on every channel."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def ddim_step(
    x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: float, alpha_bar_prev: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (eta = 0). Returns (x_prev, x̂0).

    x̂0 = √(1/ᾱ_t)·x_t − √(1/ᾱ_t − 1)·ε ;  x_prev = √ᾱ_prev·x̂0 + √(1−ᾱ_prev)·ε'
    where ε' is ε re-derived from x̂0, as upstream's ``ddim_sample`` does (equal up to rounding).
    The square roots of the schedule are taken in float64 and cast to the sample dtype, like upstream.
    """
    dtype = x_t.dtype
    sqrt_recip = torch.tensor(math.sqrt(1.0 / alpha_bar), dtype=torch.float64).to(dtype)
    sqrt_recipm1 = torch.tensor(math.sqrt(1.0 / alpha_bar - 1.0), dtype=torch.float64).to(dtype)
    x0 = sqrt_recip * x_t - sqrt_recipm1 * eps
    eps_from_x0 = (sqrt_recip * x_t - x0) / sqrt_recipm1
    a_prev = torch.tensor(alpha_bar_prev, dtype=torch.float64).to(dtype)
    x_prev = x0 * torch.sqrt(a_prev) + torch.sqrt(1 - a_prev) * eps_from_x0
    return x_prev, x0


def forward_noise(x0: torch.Tensor, noise: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """q(x_t | x0) with a given ε: √ᾱ·x0 + √(1−ᾱ)·ε (float64 roots cast to the sample dtype)."""
    dtype = x0.dtype
    root = torch.tensor(math.sqrt(alpha_bar), dtype=torch.float64).to(dtype)
    root_rest = torch.tensor(math.sqrt(max(0.0, 1.0 - alpha_bar)), dtype=torch.float64).to(dtype)
    return root * x0 + root_rest * noise


def inpaint_rows(
    x: torch.Tensor, prefix: torch.Tensor, weights: torch.Tensor, noise: torch.Tensor, alpha_bar: float
) -> torch.Tensor:
    """Real-time chunking's inpainting at the noise level ᾱ (see ``ddim_sample``).

    x [N, T, A] (the sample at that level); prefix [N, P, A] clean target rows (P <= T, normalised);
    weights [N, P] or [P] in [0, 1]; noise [N, P, A] the ε used to noise the prefix. Rows i < P become
    w_i·q(prefix_i) + (1 − w_i)·x_i: weight 1 replaces a row exactly (at ᾱ = 1 by the prefix row itself),
    weight 0 leaves it exactly as it was; rows >= P are untouched.
    """
    rows = prefix.shape[1]
    w = weights.to(x.dtype)
    w = (w.unsqueeze(0) if w.ndim == 1 else w).unsqueeze(-1)
    target = forward_noise(prefix.to(x.dtype), noise, alpha_bar)
    head = w * target + (1 - w) * x[:, :rows]
    return torch.cat([head, x[:, rows:]], dim=1)


def ddim_sample(
    eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    num_ddim_steps: int,
    *,
    prefix: torch.Tensor | None = None,
    prefix_weights: torch.Tensor | None = None,
    record: list[dict[str, Any]] | None = None,
) -> torch.Tensor:
    """DDIM (eta 0) from x_T = ``x`` [N, T, A]; ``eps_fn(x_t, t)`` gives ε̂ for original timesteps t [N].

    Without ``prefix`` this is exactly the plain sampler. With ``prefix`` [N, P, A] and ``prefix_weights``
    (real-time chunking, our DDIM form of Black et al. 2025's inpainting): before every denoising step the
    first P rows of x_t are pulled toward the prefix forward-noised to that step's ᾱ with the rows' own
    initial noise (the DDIM path of those clean rows, deterministic), by ``inpaint_rows``; the returned x̂0
    gets the same treatment at ᾱ = 1. Rows of weight 1 (the actions that execute while this chunk is
    computed) therefore come out equal to the prefix; weight 0 rows are free (only attention to the
    guided rows shapes them).
    """
    noise = None
    if prefix is not None:
        if prefix_weights is None:
            raise ValueError("prefix needs prefix_weights")
        rows = prefix.shape[1]
        if prefix.ndim != 3 or prefix.shape[0] != x.shape[0] or prefix.shape[2] != x.shape[2]:
            raise ValueError(f"prefix must be [{x.shape[0]}, P, {x.shape[2]}], got {tuple(prefix.shape)}")
        if rows > x.shape[1] or prefix_weights.shape[-1] != rows:
            raise ValueError(
                f"prefix has {rows} rows (at most {x.shape[1]}) and needs as many weights, "
                f"got {tuple(prefix_weights.shape)}"
            )
        if not bool(torch.all((prefix_weights >= 0) & (prefix_weights <= 1))):
            raise ValueError("prefix_weights must lie in [0, 1]")
        noise = x[:, :rows].clone()
    schedule = ddim_schedule(num_ddim_steps)
    for i in reversed(range(schedule.num_steps)):
        alpha_bar = float(schedule.alphas_cumprod[i])
        if noise is not None:
            x = inpaint_rows(x, prefix, prefix_weights, noise, alpha_bar)
        t = torch.full((x.shape[0],), int(schedule.timesteps[i]), dtype=torch.long, device=x.device)
        eps = eps_fn(x, t)
        if record is not None:
            record.append({"t": t.detach().cpu(), "x_in": x.detach().cpu(), "eps": eps.detach().cpu()})
        x_prev, x0 = ddim_step(x, eps, alpha_bar, float(schedule.alphas_cumprod_prev[i]))
        x = x_prev if i > 0 else x0
    if noise is not None:
        x = inpaint_rows(x, prefix, prefix_weights, noise, 1.0)
    return x
