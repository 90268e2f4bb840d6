"""The public inference API: ``load_policy`` -> ``InternVLAPolicy.predict_action`` / ``ground``.

One object owns one loaded InternVLA-M1 and answers single-sample queries (one list of camera views + one
instruction), which is what every robot client sends. Differences from upstream, on purpose:

* ``predict_action`` always runs DDIM (upstream's default ``use_ddim=False`` crashes: there is no DDPM
  path) and builds the DDIM schedule for the requested ``num_ddim_steps`` on every call (upstream caches
  the first call's sampler and silently ignores a later step count).
* reproducibility: pass ``initial_noise`` ([T, A] or [1, T, A]) or ``seed`` (a private CPU generator, so
  the global RNG is untouched); with either, two calls on CPU give bit-identical actions.
* numpy ``HxWx3`` uint8 RGB arrays are accepted as well as PIL images.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..grounding import GROUNDING_KINDS, GroundingResult, build_grounding_result, grounding_prompt
from ..latency import StageTimer
from ..normalization import action_stats, load_dataset_statistics, resolve_unnorm_key, unnormalize_actions
from .checkpoint import load_checkpoint_into
from .config import load_run_config, resolve_base_vlm, run_dir_of

ImageLike = Image.Image | np.ndarray


@dataclass
class ActionPrediction:
    """One action chunk. ``normalized`` is the model output, ``actions`` the un-normalised chunk."""

    normalized: np.ndarray  # [T, A] float32, roughly [-1, 1]
    actions: np.ndarray  # [T, A] float64, dataset units (gripper 0 = close, 1 = open)
    stages: dict[str, float] = field(default_factory=dict)  # seconds: preprocess/vlm/dino/qformer/dit/total
    unnorm_key: str | None = None
    prompt: str = ""


def to_pil(image: ImageLike) -> Image.Image:
    """PIL RGB from a PIL image or an ``HxWx3`` uint8 RGB array (a clear error for anything else)."""
    if isinstance(image, Image.Image):
        return image
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"image must be HxWx3 RGB, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB, got dtype {array.dtype} (scale float images to 0..255)")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise ValueError(f"image is too small: {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array[..., :3]), mode="RGB")


def resolve_checkpoint(path_or_hub_id: str | Path) -> Path:
    """The ``.pt``/``.safetensors`` file for: the file itself, a run dir (newest ``checkpoints/steps_N``),
    or a hub id (downloaded when HF_HUB_OFFLINE is unset, else taken from the local cache)."""
    path = Path(os.path.expanduser(str(path_or_hub_id)))
    if path.is_file():
        return path
    if path.is_dir():
        return _newest_checkpoint(path)
    text = str(path_or_hub_id)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return _newest_checkpoint(_download_run(text))
    raise FileNotFoundError(
        f"checkpoint not found: {path_or_hub_id} (give a .pt file, its run dir or a hub id)"
    )


def _newest_checkpoint(run_dir: Path) -> Path:
    ckpt_dir = run_dir / "checkpoints"
    files = sorted(
        [p for p in ckpt_dir.glob("*") if p.suffix in (".pt", ".safetensors")] if ckpt_dir.is_dir() else [],
        key=lambda p: (_step_of(p), p.name),
    )
    if not files:
        raise FileNotFoundError(f"no checkpoints/*.pt in run dir {run_dir}")
    return files[-1]


def _step_of(path: Path) -> int:
    parts = path.stem.split("_")
    for i, part in enumerate(parts[:-1]):
        if part == "steps" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return -1


def _download_run(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    from .config import _hub_offline

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as exc:
        if _hub_offline():
            raise FileNotFoundError(
                f"hub checkpoint '{repo_id}' is not in the local cache and HF_HUB_OFFLINE is set; unset it to "
                "download (about 9 GB for the released runs)"
            ) from exc
    return Path(snapshot_download(repo_id))


class InternVLAPolicy:
    """A loaded InternVLA-M1 with its normalisation statistics; thread-safe (one inference at a time)."""

    def __init__(
        self, model: Any, norm_stats: dict[str, Any], checkpoint_path: Path, dtype: torch.dtype
    ) -> None:
        self.model = model
        self._norm_stats = norm_stats
        self._checkpoint_path = checkpoint_path
        self._dtype = dtype
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------------- properties
    @property
    def action_horizon(self) -> int:
        return self._require().action_horizon

    @property
    def action_dim(self) -> int:
        return self._require().action_dim

    @property
    def unnorm_keys(self) -> list[str]:
        return list(self._norm_stats)

    @property
    def norm_stats(self) -> dict[str, Any]:
        return self._norm_stats

    @property
    def device(self) -> torch.device:
        return self._require().device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def checkpoint_path(self) -> Path:
        return self._checkpoint_path

    @property
    def config(self) -> Any:
        return self._require().config

    @property
    def closed(self) -> bool:
        return self.model is None

    def _require(self) -> Any:
        if self.model is None:
            raise RuntimeError("this policy was closed; load it again")
        return self.model

    # ---------------------------------------------------------------------------------------- inference
    def predict_action(
        self,
        images: Sequence[ImageLike] | ImageLike,
        instruction: str,
        unnorm_key: str | None = None,
        cfg_scale: float = 1.5,
        num_ddim_steps: int = 10,
        initial_noise: np.ndarray | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        spatial_prompt: bool = True,
        record: dict[str, Any] | None = None,
        prefix: np.ndarray | None = None,
        prefix_weights: np.ndarray | None = None,
    ) -> ActionPrediction:
        """Predict one action chunk for one observation.

        Args:
            images: one image per camera view (np.uint8 HxWx3 RGB or PIL), in the training view order.
            instruction: the task in natural language (lowercased internally, as upstream).
            unnorm_key: statistics key; may be omitted when the checkpoint has exactly one.
            cfg_scale: classifier-free guidance scale (> 1 enables CFG; upstream clients use 1.5).
            num_ddim_steps: DDIM steps (upstream clients use 10); honoured on every call.
            initial_noise: fixed starting noise [T, A] / [1, T, A] for exact reproducibility.
            generator / seed: alternatively, the RNG for the noise (seed makes a private CPU generator).
            spatial_prompt: False feeds the bare instruction instead of the CoT spatial prompt (ablation).
            record: optional dict filled with intermediates (see ``InternVLAM1.predict_action``).
            prefix / prefix_weights: real-time chunking (``internvla_core.rtc``): normalised target rows
                [P, A] for the start of the chunk and their weights [P] in [0, 1] (1 = frozen: the chunk's
                row equals the prefix row); None = the plain sampler.
        """
        model = self._require()
        if isinstance(images, (Image.Image, np.ndarray)):
            images = [images]
        if not images:
            raise ValueError("predict_action needs at least one image")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction must be a non-empty string")
        if num_ddim_steps < 1 or num_ddim_steps > 100:
            raise ValueError(f"num_ddim_steps must be in 1..100, got {num_ddim_steps}")
        key = resolve_unnorm_key(self._norm_stats, unnorm_key)
        stats = action_stats(self._norm_stats, key)
        views = [to_pil(img) for img in images]
        if initial_noise is not None:
            noise = (
                torch.as_tensor(np.asarray(initial_noise, dtype=np.float32))
                if not torch.is_tensor(initial_noise)
                else initial_noise
            )
            if noise.ndim == 2:
                noise = noise.unsqueeze(0)
            initial_noise = noise
        elif seed is not None and generator is None:
            generator = torch.Generator(device="cpu").manual_seed(int(seed))
        if generator is not None and initial_noise is None:
            shape = (1, model.action_horizon, model.action_dim)
            initial_noise = torch.randn(
                shape, generator=generator, device=generator.device, dtype=torch.float32
            )
        if prefix is not None:
            if prefix_weights is None:
                raise ValueError("prefix needs prefix_weights (one weight in [0, 1] per prefix row)")
            prefix = np.asarray(prefix, dtype=np.float32)
            prefix = prefix[None] if prefix.ndim == 2 else prefix
            prefix_weights = np.asarray(prefix_weights, dtype=np.float32)
            if (
                prefix.shape[0] != 1
                or prefix.shape[2] != model.action_dim
                or prefix.shape[1] > model.action_horizon
            ):
                raise ValueError(
                    f"prefix must be [P <= {model.action_horizon}, {model.action_dim}], got {prefix.shape}"
                )
        timer = StageTimer()
        start = time.perf_counter()
        with self._lock:
            normalized = model.predict_action(
                [views],
                [instruction],
                cfg_scale=cfg_scale,
                num_ddim_steps=num_ddim_steps,
                initial_noise=initial_noise,
                spatial_prompt=spatial_prompt,
                timer=timer,
                record=record,
                prefix=prefix,
                prefix_weights=prefix_weights,
            )[0]
        actions = unnormalize_actions(normalized, stats)
        stages = dict(timer.stages)
        stages["total"] = time.perf_counter() - start
        return ActionPrediction(
            normalized=normalized.astype(np.float32, copy=False),
            actions=actions,
            stages=stages,
            unnorm_key=key,
            prompt=model.prompt_for(instruction, spatial_prompt),
        )

    def predict_normalized_batch(
        self,
        batch_views: Sequence[Sequence[ImageLike]],
        instructions: Sequence[str],
        cfg_scale: float,
        num_ddim_steps: int,
        initial_noise: torch.Tensor,
        timer: StageTimer | None = None,
    ) -> np.ndarray:
        """Normalised chunks [B, T, A] for B queries in one forward pass (the serving batcher's call).

        Each row equals what :meth:`predict_action` gives for that query alone with the same noise
        (``batch_invariant``: the left padding of shorter prompts is kept out of the QFormer and the DiT
        embeds the timestep as for a batch of one). Every query needs the same number of views;
        ``initial_noise`` is [B, T, A]. Validation of the inputs is the caller's (``serving.protocol``).
        """
        model = self._require()
        views = [[to_pil(img) for img in sample] for sample in batch_views]
        with self._lock:
            return model.predict_action(
                views,
                list(instructions),
                cfg_scale=cfg_scale,
                num_ddim_steps=num_ddim_steps,
                initial_noise=initial_noise,
                timer=timer,
                batch_invariant=True,
            )

    def ground(
        self,
        image: ImageLike,
        instruction: str,
        kinds: Sequence[str] = ("box",),
        max_new_tokens: int = 128,
        prompts: dict[str, str] | None = None,
    ) -> GroundingResult:
        """Ask the VLM for boxes / points / traces of ``instruction`` in ``image``; coordinates come back in
        SOURCE image pixels. Greedy generation as upstream's ``chat_with_M1``; unparseable answers give an
        empty result with ``raw_text`` and ``error`` set (never an exception for model output)."""
        model = self._require()
        kinds = tuple(kinds)
        bad = [k for k in kinds if k not in GROUNDING_KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {GROUNDING_KINDS}, got {kinds}")
        pil = to_pil(image)
        raw: dict[str, str] = {}
        model_size = (0, 0)
        start = time.perf_counter()
        with self._lock:
            for kind in kinds:
                text, inputs, _ = model.chat(
                    pil, grounding_prompt(kind, instruction, prompts), max_new_tokens
                )
                raw[kind] = text
                model_size = inputs.model_input_sizes[0]
        return build_grounding_result(
            instruction, kinds, raw, pil.size, model_size, inference_time=time.perf_counter() - start
        )

    def close(self) -> None:
        """Drop the model and free its memory (GPU memory too); the object is unusable afterwards."""
        with self._lock:
            if self.model is None:
                return
            on_cuda = self.model.device.type == "cuda"
            self.model = None
        gc.collect()
        if on_cuda:
            torch.cuda.empty_cache()


def load_policy(
    path_or_hub_id: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    *,
    base_vlm: str | None = None,
    attn_implementation: str = "sdpa",
) -> InternVLAPolicy:
    """Build InternVLA-M1 from a run's config (no network for a local run) and load its checkpoint.

    Args:
        path_or_hub_id: the checkpoint file, its run dir, or a hub repo id.
        device: "cpu", "cuda", "cuda:1", ...
        dtype: None = upstream's policy: on CPU everything float32; on CUDA the VLM in its config's dtype
            (bf16 for Qwen2.5-VL-3B, as ``torch_dtype="auto"``), DINO/QFormer/DiT float32, bf16 autocast
            for VLM and DINO. torch.bfloat16 casts the whole model (upstream servers' ``--use_bf16``).
        base_vlm: overrides config.yaml's ``framework.qwenvl.base_vlm`` (dir or hub id).
        attn_implementation: Qwen attention backend ("sdpa" or "eager"). With a left-padded batch only
            "eager" reproduces upstream's values at padded positions (they reach the QFormer); for the
            single-sample API both are equivalent.
    """
    from .framework import InternVLAM1

    checkpoint = resolve_checkpoint(path_or_hub_id)
    run_dir = run_dir_of(checkpoint)
    config = load_run_config(run_dir)
    norm_stats = load_dataset_statistics(run_dir)
    vlm_dir = resolve_base_vlm(base_vlm or config.base_vlm, run_dir)
    model = InternVLAM1(config, vlm_dir, attn_implementation=attn_implementation, init_weights=False)
    load_checkpoint_into(model, checkpoint)
    target = torch.device(device)
    target_dtype = dtype or torch.float32
    model.to(device=target, dtype=target_dtype)
    if dtype is None and target.type == "cuda":
        # Upstream loads Qwen with torch_dtype="auto" (its config's dtype: bf16 for the 3B model) and keeps
        # DINO/QFormer/DiT in float32; on CUDA we do the same (also halves the VLM's memory).
        vlm_dtype = getattr(model.qwen_vl_interface.model.config, "dtype", None)
        if isinstance(vlm_dtype, torch.dtype) and vlm_dtype in (torch.bfloat16, torch.float16):
            model.qwen_vl_interface.model.to(vlm_dtype)
    model.eval()
    return InternVLAPolicy(model, norm_stats, checkpoint, target_dtype)
