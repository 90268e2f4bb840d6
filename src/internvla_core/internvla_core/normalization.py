"""Action (un)normalisation with the statistics a run directory ships in ``dataset_statistics.json``.

The file maps a dataset key (``oxe_bridge``, ``oxe_rt1``, ``franka`` ...) to per-dimension statistics::

    {key: {"action": {"mean", "std", "max", "min", "q01", "q99", "mask"}, "state": {...},
           "num_transitions": int, "num_trajectories": int}}

The model predicts actions in the q01/q99 ("q99 mode") normalised space. ``unnormalize_actions`` reproduces
upstream's ``baseframework.unnormalize_actions`` exactly (clip to [-1, 1]; channel 6 thresholded at 0.5 to
{0, 1}; affine map only where ``mask`` is true; a missing mask means *all* dimensions are mapped, so the
gripper 0/1 gets rescaled too, as upstream does). Pure numpy: importable without torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GRIPPER_CHANNEL = 6
"""Upstream hard-codes the gripper at index 6 of the 7-D end-effector action when un-normalising."""


class UnnormKeyError(KeyError):
    """The requested statistics key is missing or ambiguous; the message lists the available keys."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ActionStats:
    """Per-dimension action statistics of one dataset key (float64 arrays, mask as bool)."""

    key: str
    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    has_explicit_mask: bool = True

    @property
    def action_dim(self) -> int:
        return int(self.q01.shape[0])

    @classmethod
    def from_dict(cls, key: str, action: Mapping[str, Any]) -> ActionStats:
        try:
            q01 = np.asarray(action["q01"], dtype=np.float64)
            q99 = np.asarray(action["q99"], dtype=np.float64)
        except KeyError as exc:
            raise ValueError(
                f"statistics '{key}' lack action.{exc.args[0]} (needed for q99 normalisation)"
            ) from exc
        if q01.shape != q99.shape or q01.ndim != 1:
            raise ValueError(
                f"statistics '{key}': q01 {q01.shape} and q99 {q99.shape} must be equal 1-D shapes"
            )
        has_mask = action.get("mask") is not None
        mask = np.asarray(action["mask"], dtype=bool) if has_mask else np.ones_like(q01, dtype=bool)
        if mask.shape != q01.shape:
            raise ValueError(f"statistics '{key}': mask {mask.shape} does not match q01 {q01.shape}")
        mean = np.asarray(action["mean"], dtype=np.float64) if "mean" in action else None
        std = np.asarray(action["std"], dtype=np.float64) if "std" in action else None
        return cls(key=key, q01=q01, q99=q99, mask=mask, mean=mean, std=std, has_explicit_mask=has_mask)


def load_dataset_statistics(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read ``dataset_statistics.json`` (a run dir or the file itself); clear errors for missing/bad files."""
    path = Path(path)
    if path.is_dir():
        path = path / "dataset_statistics.json"
    if not path.is_file():
        raise FileNotFoundError(f"dataset statistics not found: {path} (every released run dir ships one)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path} must map dataset keys to statistics; got {type(data).__name__}")
    for key, block in data.items():
        if not isinstance(block, dict) or "action" not in block:
            raise ValueError(f"{path}: entry '{key}' has no 'action' statistics")
    return data


def resolve_unnorm_key(norm_stats: Mapping[str, Any], unnorm_key: str | None) -> str:
    """Pick the statistics key: explicit key must exist; ``None`` is allowed only with exactly one key."""
    keys = list(norm_stats.keys())
    if unnorm_key is None:
        if len(keys) != 1:
            raise UnnormKeyError(
                f"this checkpoint has statistics for {len(keys)} datasets {keys}; pass unnorm_key=<one of them> "
                "to choose how actions are un-normalised"
            )
        return keys[0]
    if unnorm_key not in norm_stats:
        raise UnnormKeyError(f"unnorm_key '{unnorm_key}' not in dataset statistics; available keys: {keys}")
    return unnorm_key


def action_stats(norm_stats: Mapping[str, Any], unnorm_key: str | None = None) -> ActionStats:
    key = resolve_unnorm_key(norm_stats, unnorm_key)
    return ActionStats.from_dict(key, norm_stats[key]["action"])


def normalize_actions(actions: np.ndarray, stats: ActionStats) -> np.ndarray:
    """Training-side q99 normalisation: n = clip(2(x - q01)/(q99 - q01) - 1, -1, 1) where mask is true.

    Dimensions with q01 == q99 pass through unchanged (no division by zero), as do unmasked dimensions
    (the gripper, which training binarises separately).
    """
    x = np.asarray(actions, dtype=np.float64)
    span = stats.q99 - stats.q01
    degenerate = span == 0
    safe_span = np.where(degenerate, 1.0, span)
    n = np.clip(2.0 * (x - stats.q01) / safe_span - 1.0, -1.0, 1.0)
    return np.where(stats.mask & ~degenerate, n, x)


def unnormalize_actions(normalized: np.ndarray, stats: ActionStats) -> np.ndarray:
    """Upstream ``unnormalize_actions`` for a [T, A] (or [B, T, A]) chunk; returns float64, input untouched."""
    # Keep the input dtype through clip and (n + 1) * 0.5 as upstream does (float32 model output), so the
    # result matches upstream bit for bit; the affine map with the float64 statistics yields float64.
    n = np.clip(np.asarray(normalized), -1, 1)
    if not np.issubdtype(n.dtype, np.floating):
        n = n.astype(np.float64)
    if n.shape[-1] != stats.action_dim:
        raise ValueError(
            f"action dim {n.shape[-1]} does not match statistics '{stats.key}' ({stats.action_dim})"
        )
    if n.shape[-1] > GRIPPER_CHANNEL:
        n[..., GRIPPER_CHANNEL] = np.where(n[..., GRIPPER_CHANNEL] < 0.5, 0, 1)
    out = np.where(stats.mask, 0.5 * (n + 1) * (stats.q99 - stats.q01) + stats.q01, n)
    return out.astype(np.float64, copy=False)
