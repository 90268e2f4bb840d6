"""Real-time chunking (RTC): which rows of the next chunk are frozen, and to what (no ROS, no torch).

While chunk k executes, chunk k+1 is computed from a newer observation (step s_{k+1}); by the time it
reaches the executor, ``delay`` more control steps have passed and chunk k's rows for those steps have
already been executed. RTC (Black, Galliker, Levine 2025, arXiv 2506.07339) generates chunk k+1 with those
rows frozen to what was executed and the rest of the overlap with chunk k softly guided toward it, so the
executor (``mode: rtc``) can switch to the new chunk without any blending. Here the guidance is our DDIM
inpainting (``model.diffusion.ddim_sample``), in normalised model space, not the paper's ΠGDM guidance.

``RealTimeChunking`` keeps the policy side's bookkeeping: the previous chunk (normalised) with its
observation time, and the measured observation-to-publish latency. ``prefix(obs_time)`` gives, for a chunk
about to be computed from the observation at ``obs_time``: the previous chunk's rows from that step on
(``actions``) and one weight per row (``weights``): 1 for the first ``delay`` rows (hard: they will have
executed by the time the new chunk arrives), then decaying from 1 toward 0 over the rest of the overlap
(soft), 0 beyond it (free). ``delay`` = ceil(a high quantile of the measured latencies / control period).
Over-estimating it is harmless (frozen rows repeat what the executor does anyway); under-estimating it
leaves an executed row only softly guided.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .latency import percentile


def soft_weights(delay: int, overlap: int) -> np.ndarray:
    """Weights [overlap]: 1 for rows < ``delay``, then an exponential decay toward 0 over the rest.

    For delay <= i < overlap, with c = (overlap − i) / (overlap − delay + 1): w = c·(e^c − 1)/(e − 1)
    (the paper's soft mask shape, over the overlap with the previous chunk). Strictly between 0 and 1 there.
    """
    if overlap < 0 or delay < 0:
        raise ValueError("delay and overlap must be >= 0")
    delay = min(delay, overlap)
    weights = np.zeros(overlap, dtype=np.float64)
    weights[:delay] = 1.0
    i = np.arange(delay, overlap, dtype=np.float64)
    c = (overlap - i) / (overlap - delay + 1)
    weights[delay:] = c * np.expm1(c) / math.expm1(1.0)
    return weights


@dataclass(frozen=True)
class RTCPrefix:
    """What the sampler freezes/guides: row 0 is the new chunk's row 0 (the action for its observation)."""

    actions: np.ndarray  # [P, A] normalised rows of the previous chunk
    weights: np.ndarray  # [P] in [0, 1]
    delay: int  # rows with weight 1 (hard)
    offset: int  # rows of the previous chunk before the new observation's step


class DelayEstimator:
    """Inference delay in control steps from measured latencies (observation -> chunk published)."""

    def __init__(
        self, control_period: float, window: int = 20, quantile: float = 90.0, margin: int = 0
    ) -> None:
        if not control_period > 0:
            raise ValueError("control_period must be > 0")
        if window < 1 or not 0 <= quantile <= 100 or margin < 0:
            raise ValueError("window >= 1, quantile in [0, 100] and margin >= 0 are required")
        self.control_period = float(control_period)
        self.quantile = float(quantile)
        self.margin = int(margin)
        self.latencies: deque[float] = deque(maxlen=window)

    def add(self, latency: float) -> None:
        if math.isfinite(latency) and latency >= 0:
            self.latencies.append(float(latency))

    def seconds(self) -> float | None:
        return percentile(list(self.latencies), self.quantile) if self.latencies else None

    def steps(self) -> int | None:
        """ceil(quantile latency / period) + margin; None before any measurement."""
        seconds = self.seconds()
        if seconds is None:
            return None
        return int(math.ceil(seconds / self.control_period - 1e-9)) + self.margin


class RealTimeChunking:
    """The policy side of RTC: remember each published chunk; give the prefix for the next one.

    ``delay_steps``: a fixed delay (>= 0) instead of the estimate; ``overlap_steps``: how many rows of
    the previous chunk guide the new one at most (0 = all it still has).
    """

    def __init__(
        self,
        control_period: float,
        delay_steps: int | None = None,
        overlap_steps: int = 0,
        window: int = 20,
        quantile: float = 90.0,
    ) -> None:
        if delay_steps is not None and delay_steps < 0:
            raise ValueError("delay_steps must be >= 0 (None = estimate from the measured latency)")
        if overlap_steps < 0:
            raise ValueError("overlap_steps must be >= 0 (0 = the whole overlap)")
        self.control_period = float(control_period)
        self.delay_steps = delay_steps
        self.overlap_steps = int(overlap_steps)
        self.estimator = DelayEstimator(control_period, window, quantile)
        self.reset()

    def reset(self) -> None:
        """Forget the previous chunk (a new goal starts from rest); the latency history is kept."""
        self.previous: np.ndarray | None = None
        self.previous_time: float | None = None

    def delay(self) -> int | None:
        return self.delay_steps if self.delay_steps is not None else self.estimator.steps()

    def prefix(self, obs_time: float) -> RTCPrefix | None:
        """The guidance for a chunk computed from the observation at ``obs_time``; None = sample freely
        (no previous chunk, no delay estimate yet, or the previous chunk ends before that step)."""
        delay = self.delay()
        if self.previous is None or self.previous_time is None or delay is None:
            return None
        offset = int(round((obs_time - self.previous_time) / self.control_period))
        if offset < 0:
            return None
        available = len(self.previous) - offset
        if available <= 0:
            return None
        rows = available if self.overlap_steps == 0 else min(available, max(self.overlap_steps, delay))
        actions = self.previous[offset : offset + rows]
        weights = soft_weights(delay, rows)
        return RTCPrefix(actions.copy(), weights, min(delay, rows), offset)

    def record(self, normalized: np.ndarray, obs_time: float, latency: float | None = None) -> None:
        """After publishing a chunk: keep it (normalised) and the observation -> publish latency [s]."""
        chunk = np.asarray(normalized, dtype=np.float64)
        if chunk.ndim != 2:
            raise ValueError(f"a chunk must be T x A, got shape {chunk.shape}")
        self.previous, self.previous_time = chunk, float(obs_time)
        if latency is not None:
            self.estimator.add(latency)


class SmoothChunkPrior:
    """A synthetic smooth "policy" for tests and benchmarks (not a model of any robot data).

    Chunks are Gaussian: per action dimension, N(mean, σ²·exp(−(i−j)²/(2ℓ²))) over the T rows, so two
    draws for the same observation differ (like a diffusion policy's samples) while each one is smooth.
    ``eps_fn(mean)`` is the exact ε-prediction of that distribution (posterior mean of x0 given x_t) for
    ``model.diffusion.ddim_sample``, so inpainting acts through the covariance as it would through a
    trained network's attention.
    """

    def __init__(self, horizon: int, sigma: float = 0.3, length_scale: float = 4.0) -> None:
        i = np.arange(horizon, dtype=np.float64)
        self.horizon = horizon
        self.covariance = sigma**2 * np.exp(-((i[:, None] - i[None]) ** 2) / (2 * length_scale**2))
        self.covariance += 1e-9 * np.eye(horizon)

    def eps_fn(self, mean):
        """mean [T, A] (torch or numpy) -> eps_fn(x_t [N, T, A], t [N]) -> ε̂ [N, T, A]."""
        import torch

        from .model.diffusion import base_alphas_cumprod

        alphas = base_alphas_cumprod()
        mu = torch.as_tensor(np.asarray(mean, dtype=np.float64))
        cov = torch.as_tensor(self.covariance)
        eye = torch.eye(self.horizon, dtype=torch.float64)

        def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            a = float(alphas[int(t[0])])
            gain = math.sqrt(a) * cov @ torch.linalg.inv(a * cov + (1 - a) * eye)
            xd = x.to(torch.float64)
            x0 = mu + torch.einsum("ij,nja->nia", gain, xd - math.sqrt(a) * mu)
            return ((xd - math.sqrt(a) * x0) / math.sqrt(1 - a)).to(x.dtype)

        return eps
