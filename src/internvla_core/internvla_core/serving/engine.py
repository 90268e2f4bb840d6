"""Batched inference for the server: many queries, one forward pass, the same chunks as one at a time.

Queries can share a forward pass when their tensors stack: the same number of views, the same view sizes
once the model resizes them (all of them when the config sets ``image_size``), and the same
``cfg_scale``/``num_ddim_steps`` (one DDIM loop). :meth:`BatchEngine.batch_key` says which queries
may go together; :meth:`BatchEngine.run` runs them and splits the result per request.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence

import numpy as np
import torch

from ..latency import StageTimer
from ..normalization import action_stats, resolve_unnorm_key, unnormalize_actions
from .protocol import STARVLA, InferRequest, RequestError


class BatchEngine:
    """Wraps a loaded ``InternVLAPolicy`` (local model) for the serving batcher."""

    def __init__(self, policy, seed: int | None = None) -> None:
        self.policy = policy
        self._rng = torch.Generator(device="cpu")
        if seed is None:
            self._rng.seed()
        else:
            self._rng.manual_seed(seed)
        self._rng_lock = threading.Lock()
        self.stage_seconds: dict[str, float] = {}  # summed per stage over all batches (benchmarks read it)

    def compile_action_head(self, mode: str = "default") -> None:
        """``torch.compile`` the DiT in place (its parameter names stay; ``mode="reduce-overhead"`` adds
        CUDA graphs). The DiT runs ``num_ddim_steps`` times per query, so on a GPU its per-step kernel
        launches, not its arithmetic, dominate the action head; the VLM prefill runs once per query.
        ``dynamic=True``: one graph for every batch size instead of a recompile per size. The bound
        ``forward`` is replaced (not ``Module.compile``) because the CFG path calls ``self.forward``
        directly, which would bypass a compiled ``__call__``."""
        net = self.policy.model.action_model.net
        net.forward = torch.compile(net.forward, dynamic=True, mode=mode)

    @property
    def action_horizon(self) -> int:
        return self.policy.action_horizon

    @property
    def action_dim(self) -> int:
        return self.policy.action_dim

    def resolve_key(self, request: InferRequest) -> str | None:
        """The statistics key the request names (checked for both dialects, so a typo fails loudly);
        None for an M1 request without a key (its client un-normalises and needs none from us)."""
        if request.unnorm_key is None and request.dialect != STARVLA:
            return None
        try:
            return resolve_unnorm_key(self.policy.norm_stats, request.unnorm_key)
        except KeyError as exc:
            raise RequestError(str(exc)) from exc

    def batch_key(self, request: InferRequest) -> Hashable:
        n_views = len(request.samples[0].views)
        sizes = None
        if not self.policy.config.image_size:  # views keep their own size: shapes must match to stack
            sizes = tuple(tuple(v.shape[:2]) for v in request.samples[0].views)
            for sample in request.samples[1:]:
                if tuple(tuple(v.shape[:2]) for v in sample.views) != sizes:
                    raise RequestError(
                        "this model keeps the image size: every sample of a request needs views of the "
                        "same sizes"
                    )
        return (n_views, sizes, request.cfg_scale, request.num_ddim_steps)

    def noise_for(self, request: InferRequest) -> torch.Tensor:
        """[B, T, A] float32 starting noise: from the request's seed (as ``predict_action(seed=...)``
        draws it for one sample) or from the server's generator."""
        shape = (len(request.samples), self.action_horizon, self.action_dim)
        if request.seed is not None:
            generator = torch.Generator(device="cpu").manual_seed(request.seed)
            return torch.randn(shape, generator=generator, dtype=torch.float32)
        with self._rng_lock:
            return torch.randn(shape, generator=self._rng, dtype=torch.float32)

    def run(self, requests: Sequence[InferRequest]) -> list[np.ndarray]:
        """Normalised chunks [B_i, T, A] per request, from one forward pass over all their samples."""
        first = requests[0]
        views = [s.views for r in requests for s in r.samples]
        instructions = [s.instruction for r in requests for s in r.samples]
        noise = torch.cat([self.noise_for(r) for r in requests])
        timer = StageTimer()
        out = self.policy.predict_normalized_batch(
            views, instructions, first.cfg_scale, first.num_ddim_steps, noise, timer=timer
        )
        for stage, seconds in timer.stages.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds
        results, start = [], 0
        for request in requests:
            results.append(out[start : start + len(request.samples)].astype(np.float32, copy=False))
            start += len(request.samples)
        return results

    def unnormalize(self, normalized: np.ndarray, key: str) -> np.ndarray:
        """Dataset-unit chunks [B, T, D] (starVLA's clients expect the server to un-normalise)."""
        stats = action_stats(self.policy.norm_stats, key)
        return np.stack([unnormalize_actions(chunk, stats) for chunk in normalized])
