"""Load an InternVLA-M1 state dict safely and check it against the model, with errors that say what to do.

* ``.pt`` files are read with ``torch.load(weights_only=True)`` (no pickle code execution); ``.safetensors``
  with safetensors.
* Checkpoints written with transformers < 4.52 name the Qwen modules differently (spec section 7):
  ``qwen_vl_interface.model.visual.*`` and ``qwen_vl_interface.model.model.<layer keys>``. They are detected
  by inspecting the keys and remapped to the current ``model.visual`` / ``model.language_model`` layout.
* ``lm_head.weight`` is tied to ``embed_tokens`` on the 3B model: a checkpoint without it is accepted when
  the model ties them, and an extra copy is dropped when the model's state dict does not list it.
* Anything else missing, unexpected or of the wrong shape raises :class:`CheckpointMismatchError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

QWEN_PREFIX = "qwen_vl_interface.model."
LM_HEAD_KEY = QWEN_PREFIX + "lm_head.weight"
EMBED_KEY = QWEN_PREFIX + "model.language_model.embed_tokens.weight"
SHOW_KEYS = 12


class CheckpointError(RuntimeError):
    """The checkpoint file cannot be read."""


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's keys or shapes do not fit the model built from config.yaml."""

    def __init__(
        self,
        path: str | Path | None,
        missing: list[str],
        unexpected: list[str],
        shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.missing, self.unexpected, self.shape_mismatches = missing, unexpected, shape_mismatches
        lines = [f"checkpoint {path or '<state dict>'} does not match the model built from its config.yaml:"]
        if missing:
            lines.append(
                f"  {len(missing)} missing keys (in the model, not in the file): " + _preview(missing)
            )
        if unexpected:
            lines.append(
                f"  {len(unexpected)} unexpected keys (in the file, not in the model): "
                + _preview(unexpected)
            )
        if shape_mismatches:
            shown = ", ".join(
                f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in shape_mismatches[:SHOW_KEYS]
            )
            more = (
                f" (+{len(shape_mismatches) - SHOW_KEYS} more)" if len(shape_mismatches) > SHOW_KEYS else ""
            )
            lines.append(f"  {len(shape_mismatches)} shape mismatches: {shown}{more}")
        lines.append(
            "  What to do: make sure config.yaml (and the base_vlm config.json it names) is the one this "
            "checkpoint was trained with: dino_backbone, action_model_type, layer_qformer dims and the Qwen "
            "size decide these keys. A checkpoint of another framework (not InternVLA-M1) cannot be loaded."
        )
        super().__init__("\n".join(lines))


def _preview(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOW_KEYS])
    return shown + (f", ... (+{len(keys) - SHOW_KEYS} more)" if len(keys) > SHOW_KEYS else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict from ``.pt``/``.bin`` (weights_only) or ``.safetensors``; clear errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for damaged files (zip, pickle, EOF)
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): {type(exc).__name__}: {exc}. The file "
            "is corrupted or truncated (interrupted download?) or not a PyTorch/safetensors state dict; "
            "download it again."
        ) from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} does not hold a flat state dict of tensors (got {type(state).__name__})"
        )
    return dict(state)


def is_legacy_qwen_layout(keys: list[str] | set[str]) -> bool:
    """True for transformers < 4.52 key names (visual at top level, LLM layers directly under model.)."""
    for key in keys:
        if key.startswith(QWEN_PREFIX + "visual."):
            return True
        if key.startswith(QWEN_PREFIX + "model.") and not key.startswith(
            (QWEN_PREFIX + "model.language_model.", QWEN_PREFIX + "model.visual.")
        ):
            return True
    return False


def remap_legacy_qwen_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename pre-4.52 Qwen2.5-VL keys to the 4.52+/5.x layout; other keys are kept as they are."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        if key.startswith(QWEN_PREFIX + "visual."):
            new = QWEN_PREFIX + "model.visual." + key[len(QWEN_PREFIX + "visual.") :]
        elif key.startswith(QWEN_PREFIX + "model.") and not key.startswith(
            (QWEN_PREFIX + "model.language_model.", QWEN_PREFIX + "model.visual.")
        ):
            new = QWEN_PREFIX + "model.language_model." + key[len(QWEN_PREFIX + "model.") :]
        out[new] = value
    return out


def _ties_lm_head(model: nn.Module) -> bool:
    cfg = getattr(getattr(getattr(model, "qwen_vl_interface", None), "model", None), "config", None)
    if cfg is None:
        return False
    text_cfg = getattr(cfg, "text_config", None)
    return bool(getattr(cfg, "tie_word_embeddings", False) or getattr(text_cfg, "tie_word_embeddings", False))


def prepare_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """Remap, reconcile the tied LM head, and strictly compare keys and shapes with ``model``."""
    state = dict(state)
    if is_legacy_qwen_layout(list(state)):
        state = remap_legacy_qwen_keys(state)
    expected = model.state_dict()
    if LM_HEAD_KEY in expected and LM_HEAD_KEY not in state and _ties_lm_head(model) and EMBED_KEY in state:
        state[LM_HEAD_KEY] = state[EMBED_KEY]
    if LM_HEAD_KEY in state and LM_HEAD_KEY not in expected:
        state.pop(LM_HEAD_KEY)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        (k, tuple(state[k].shape), tuple(expected[k].shape))
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(path, missing, unexpected, shapes)
    return state


def load_checkpoint_into(model: nn.Module, path: str | Path) -> None:
    """Read ``path`` and load it into ``model`` with the strict check (dtype follows the model)."""
    state = prepare_state_dict(model, read_state_dict(path), path)
    model.load_state_dict(state, strict=True)
    _retie(model)


def _retie(model: nn.Module) -> None:
    """Re-share lm_head with embed_tokens after loading when the config ties them."""
    qwen = getattr(getattr(model, "qwen_vl_interface", None), "model", None)
    if qwen is not None and _ties_lm_head(model) and hasattr(qwen, "tie_weights"):
        qwen.tie_weights()
