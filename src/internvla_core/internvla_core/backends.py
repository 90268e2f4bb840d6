"""Where the policy node gets its actions: the model in this process, or upstream's server.

Both return the same ``Prediction`` (normalised and un-normalised chunk plus per-stage seconds), so the
node publishes identical ActionChunk messages either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .normalization import action_stats, load_dataset_statistics, normalize_actions, unnormalize_actions


@dataclass
class Prediction:
    normalized: np.ndarray
    actions: np.ndarray
    stages: dict[str, float] = field(default_factory=dict)
    unnorm_key: str | None = None


class PolicyBackend(Protocol):
    unnorm_keys: list[str]

    def predict(
        self,
        images: list[np.ndarray],
        instruction: str,
        *,
        unnorm_key: str,
        cfg_scale: float,
        num_ddim_steps: int,
        seed: int | None,
    ) -> Prediction: ...

    def close(self) -> None: ...


class LocalBackend:
    """The model in this process, shared through the registry (the node acquires and releases it)."""

    def __init__(self, policy, spatial_prompt: bool = True) -> None:
        self.policy = policy
        self.spatial_prompt = spatial_prompt
        self.unnorm_keys = list(policy.unnorm_keys)

    def predict(
        self,
        images,
        instruction,
        *,
        unnorm_key,
        cfg_scale,
        num_ddim_steps,
        seed=None,
        prefix=None,
        prefix_weights=None,
    ) -> Prediction:
        """``prefix`` / ``prefix_weights``: real-time chunking's inpainting (``internvla_core.rtc``)."""
        pred = self.policy.predict_action(
            images,
            instruction,
            unnorm_key=unnorm_key,
            cfg_scale=cfg_scale,
            num_ddim_steps=num_ddim_steps,
            seed=seed,
            spatial_prompt=self.spatial_prompt,
            prefix=prefix,
            prefix_weights=prefix_weights,
        )
        return Prediction(pred.normalized, pred.actions, dict(pred.stages), pred.unnorm_key)

    def close(self) -> None:
        """Nothing here: the node releases the shared policy through the registry."""


class RemoteBackend:
    """A websocket policy server: ``internvla-serve``, upstream InternVLA-M1's or starVLA's.

    M1-dialect servers return normalised chunks, un-normalised here with the checkpoint's statistics
    file; starVLA servers un-normalise themselves, and the normalised chunk (for the ActionChunk message
    and real-time chunking) is recomputed from their actions with the same statistics."""

    def __init__(self, client, dataset_statistics: str | Path) -> None:
        self.client = client
        self.norm_stats = load_dataset_statistics(dataset_statistics)
        self.unnorm_keys = list(self.norm_stats)

    def predict(self, images, instruction, *, unnorm_key, cfg_scale, num_ddim_steps, seed=None) -> Prediction:
        stats = action_stats(self.norm_stats, unnorm_key)
        start = time.perf_counter()
        chunk = self.client.infer_chunk(images, instruction, stats.key, cfg_scale, num_ddim_steps, seed=seed)
        remote = time.perf_counter() - start
        if chunk.normalized is not None:
            normalized = chunk.normalized
            actions = unnormalize_actions(normalized, stats)
        else:
            actions = np.asarray(chunk.actions, dtype=np.float64)
            normalized = normalize_actions(actions, stats).astype(np.float32)
        return Prediction(
            normalized, actions, {"remote": remote, "total": time.perf_counter() - start}, stats.key
        )

    def close(self) -> None:
        self.client.close()
