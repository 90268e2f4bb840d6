"""InternVLA-M1 model core: the network, checkpoint loading, the policy API and a tiny-model factory.

Public API (imported lazily so ``import internvla_core.model`` does not pull in torch/transformers)::

    from internvla_core.model import load_policy, tiny_checkpoint
    policy = load_policy(tiny_checkpoint())            # .pt file, its run dir, or a hub id
    pred = policy.predict_action([rgb], "put the carrot on the plate", unnorm_key="oxe_bridge", seed=0)
    boxes = policy.ground(rgb, "the carrot", kinds=("box", "point"))

Modules: ``config`` (run-dir config.yaml), ``vlm`` (Qwen2.5-VL + input packing), ``framework`` (the full
``InternVLAM1`` network), ``checkpoint`` (safe loading, key remap, strict check), ``policy`` (load_policy,
InternVLAPolicy, ActionPrediction), ``registry`` (process-wide sharing), ``tiny`` (test-model factory);
``dino``, ``qformer``, ``dit``, ``diffusion`` are the action-head building blocks.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "load_policy": "policy",
    "InternVLAPolicy": "policy",
    "ActionPrediction": "policy",
    "resolve_checkpoint": "policy",
    "InternVLAM1": "framework",
    "M1Config": "config",
    "load_run_config": "config",
    "ConfigError": "config",
    "CheckpointError": "checkpoint",
    "CheckpointMismatchError": "checkpoint",
    "build_tiny_checkpoint": "tiny",
    "tiny_checkpoint": "tiny",
    "acquire": "registry",
    "release": "registry",
    "PolicyRegistry": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
