"""The full InternVLA-M1 network, wired as upstream's ``InternVLA_M1`` (``M1.py``) does at inference.

Attribute names are the checkpoint key prefixes (spec section 1): ``qwen_vl_interface.model``,
``layer_qformer``, ``action_model.net``, ``dino_encoder.body``, ``dino_pro``.

Inference path (upstream ``predict_action``), per sample of one or more camera views:

1. resize every view to ``datasets.vla_data.image_size`` with PIL's default (bicubic) resize, if set;
2. lowercase the instruction and, with spatial prompting on, substitute it into ``CoT_prompt`` by plain
   string replacement (so "... cup." becomes "... cup.. To identify ...": upstream's double period);
3. one user chat turn: one image item per view (in the given order) then the text, Qwen's default system
   turn, generation prompt appended, left padding;
4. Qwen2.5-VL forward with all hidden states; DINOv2 patch tokens of every view, reshaped to
   ``[B, V*P, C]`` and projected by ``dino_pro`` to the LLM width;
5. the QFormer reads ``hidden_states[start:end]`` (each concatenated with the DINO tokens, no attention
   mask: padded positions of a left-padded batch do reach it, exactly as upstream);
6. DDIM (+ classifier-free guidance) sampling in the DiT gives normalised actions ``[B, T, A]``.

dtype policy: on CPU everything runs in float32 (upstream's CUDA autocast blocks are no-ops there). On
CUDA the VLM, DINO and ``dino_pro`` run under bf16 autocast as upstream; the QFormer and the DiT run in
float32. ``model.to(torch.bfloat16)`` (upstream servers' ``--use_bf16``) is also supported: the noise is
then drawn in the DiT's dtype, as upstream does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..latency import StageTimer
from .config import M1Config
from .dino import DinoEncoder
from .dit import DIT_PRESETS, ActionModel, DiT
from .qformer import LayerwiseQFormer
from .vlm import QwenInputs, QwenVLInterface, skip_weight_init


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class InternVLAM1(nn.Module):
    """Qwen2.5-VL + DINOv2 -> layer-wise QFormer -> DiT diffusion action head."""

    def __init__(
        self,
        config: M1Config,
        vlm_dir: str | Path,
        *,
        attn_implementation: str = "sdpa",
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        # Skipping random init matters for the 3B/300M parts when a checkpoint overwrites every weight.
        with contextlib.nullcontext() if init_weights else skip_weight_init():
            self._build(vlm_dir, attn_implementation, init_weights)
        self.eval()

    def _build(self, vlm_dir: str | Path, attn_implementation: str, init_weights: bool) -> None:
        """Create the parts in upstream's order (so state-dict keys come out in upstream's order too)."""
        config = self.config
        self.qwen_vl_interface = QwenVLInterface(
            vlm_dir, attn_implementation=attn_implementation, init_weights=init_weights
        )
        hidden = self.qwen_vl_interface.hidden_size
        if config.qformer_end_layer <= config.qformer_start_layer:
            raise ValueError(
                f"layer_qformer: qformer_end_layer ({config.qformer_end_layer}) must exceed qformer_start_layer "
                f"({config.qformer_start_layer})"
            )
        n_states = self.qwen_vl_interface.num_layers + 1
        if config.qformer_end_layer > n_states:
            raise ValueError(
                f"layer_qformer range [{config.qformer_start_layer}:{config.qformer_end_layer}] exceeds the "
                f"{n_states} hidden states of the {n_states - 1}-layer LLM"
            )
        token_size, depth, num_heads = _dit_dims(config)
        out_dim = config.qformer_output_dim or token_size
        if out_dim != token_size:
            raise ValueError(f"QFormer output dim {out_dim} must equal the DiT width {token_size}")
        self.layer_qformer = LayerwiseQFormer(
            input_dim=config.qformer_input_dim or hidden,
            output_dim=out_dim,
            num_query_tokens=config.num_query_tokens,
            num_layers=config.qformer_end_layer - config.qformer_start_layer,
        )
        net = DiT(
            action_dim=config.action_dim,
            token_size=token_size,
            depth=depth,
            num_heads=num_heads,
            horizon=config.action_horizon,
            num_condition_tokens=config.num_query_tokens,
        )
        self.action_model = ActionModel(net)
        if config.dino_dims is not None:
            self.dino_encoder = DinoEncoder.from_dims(*config.dino_dims)
        else:
            self.dino_encoder = DinoEncoder.from_preset(config.dino_backbone)
        self.dino_pro = nn.Linear(self.dino_encoder.num_channels, hidden)

    # ------------------------------------------------------------------------------------------ basics
    @property
    def device(self) -> torch.device:
        return self.dino_pro.weight.device

    @property
    def action_horizon(self) -> int:
        return self.config.action_horizon

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    def _vision_autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _head_autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float32)
        return contextlib.nullcontext()

    # ---------------------------------------------------------------------------------------- preprocess
    def prompt_for(self, instruction: str, spatial_prompt: bool = True) -> str:
        """Lowercased instruction inside the CoT (spatial) prompt; ``spatial_prompt=False`` is the bare
        lowercased instruction (the ablation without spatial guidance)."""
        instruction = instruction.lower()
        if spatial_prompt and self.config.cot_prompt is not None:
            return self.config.cot_prompt.replace("{instruction}", instruction)
        return instruction

    def resize_views(self, views: Sequence[Image.Image]) -> list[Image.Image]:
        """Upstream ``resize_images``: PIL ``resize`` (default resample) to (w, h) = image_size, if set."""
        size = self.config.image_size
        return [v.resize(size) if size else v for v in views]

    def build_vlm_inputs(
        self, batch_views: Sequence[Sequence[Image.Image]], prompts: Sequence[str]
    ) -> QwenInputs:
        processor = self.qwen_vl_interface.processor
        texts = [processor.chat_text(len(views), prompt) for views, prompt in zip(batch_views, prompts)]
        flat = [img for views in batch_views for img in views]
        return processor(texts, flat)

    # ------------------------------------------------------------------------------------------- stages
    def vlm_hidden_states(self, inputs: QwenInputs) -> tuple[torch.Tensor, ...]:
        with self._vision_autocast():
            return self.qwen_vl_interface.hidden_states(inputs)

    def dino_tokens(self, batch_views: Sequence[Sequence[Image.Image]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw DINO patch tokens [B, V*P, C], projected tokens [B, V*P, hidden]) for all views."""
        n_views = {len(v) for v in batch_views}
        if len(n_views) != 1:
            raise ValueError(f"every sample must have the same number of views, got {sorted(n_views)}")
        flat = [img for views in batch_views for img in views]
        dino_dtype = next(self.dino_encoder.parameters()).dtype
        pixels = self.dino_encoder.preprocess(flat).to(self.device, dino_dtype)
        with self._vision_autocast():
            features = self.dino_encoder(pixels)
            features = features.reshape(len(batch_views), -1, features.shape[-1])
            projected = self.dino_pro(features)
        return features, projected

    def condition(
        self,
        hidden_states: Sequence[torch.Tensor],
        dino_projected: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """QFormer over ``hidden_states[start:end]`` and the projected DINO tokens -> [B, Q, W].
        ``key_padding_mask`` [B, L] (True = padded text position) keeps padding out of the QFormer."""
        start, end = self.config.qformer_start_layer, self.config.qformer_end_layer
        with self._head_autocast():
            if key_padding_mask is None:
                return self.layer_qformer(list(hidden_states[start:end]), dino_projected)
            return self.layer_qformer(
                list(hidden_states[start:end]), dino_projected, key_padding_mask.to(self.device)
            )

    def sample(
        self,
        cond: torch.Tensor,
        cfg_scale: float = 1.5,
        num_ddim_steps: int = 10,
        initial_noise: torch.Tensor | np.ndarray | None = None,
        generator: torch.Generator | None = None,
        record: list[dict[str, Any]] | None = None,
        prefix: torch.Tensor | np.ndarray | None = None,
        prefix_weights: torch.Tensor | np.ndarray | None = None,
        batch_invariant: bool = False,
    ) -> torch.Tensor:
        """DDIM (eta 0) with CFG when ``cfg_scale > 1``. The schedule is built for *this* call's step count
        (upstream caches the first call's sampler and silently ignores later step counts: fixed here).
        ``prefix`` [B, P, A] / ``prefix_weights`` [P]: real-time chunking's inpainting (None = off)."""
        if initial_noise is not None:
            initial_noise = torch.as_tensor(
                np.asarray(initial_noise) if not torch.is_tensor(initial_noise) else initial_noise
            )
            expected = (cond.shape[0], self.action_horizon, self.action_dim)
            if tuple(initial_noise.shape) != expected:
                raise ValueError(
                    f"initial_noise must have shape {expected}, got {tuple(initial_noise.shape)}"
                )
        dtype = next(self.action_model.net.parameters()).dtype
        with self._head_autocast():
            return self.action_model.sample(
                cond.to(dtype),
                cfg_scale=cfg_scale,
                num_ddim_steps=num_ddim_steps,
                initial_noise=None if initial_noise is None else initial_noise.to(cond.device, dtype),
                generator=generator,
                record=record,
                prefix=None if prefix is None else torch.as_tensor(np.asarray(prefix, dtype=np.float32)),
                prefix_weights=None
                if prefix_weights is None
                else torch.as_tensor(np.asarray(prefix_weights, dtype=np.float32)),
                batch_invariant=batch_invariant,
            )

    # ------------------------------------------------------------------------------------------ training
    # Upstream ``InternVLA_M1.forward``: the same stages as inference but with gradients, in whatever mode
    # the caller set (``model.train()`` for dropout in the QFormer and condition dropout in the DiT
    # loss). Inputs come pre-packed (batched tensor preprocessing, ``QwenInputBuilder.pixels_from_tensor``
    # and ``DinoEncoder.preprocess_tensor``) so a training step does no per-image PIL work.
    def train_prompt(self, instruction: str, spatial_prompt: bool = True) -> str:
        """Training's prompt: like :meth:`prompt_for` but the instruction is NOT lowercased (upstream)."""
        if spatial_prompt and self.config.cot_prompt is not None:
            return self.config.cot_prompt.replace("{instruction}", instruction)
        return instruction

    def dino_tokens_from_pixels(self, pixels: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw DINO tokens [B, V*P, C], projected [B, V*P, hidden]) from preprocessed [B*V, 3, h, w]."""
        dino_dtype = next(self.dino_encoder.parameters()).dtype
        with self._vision_autocast():
            features = self.dino_encoder(pixels.to(self.device, dino_dtype))
            features = features.reshape(batch, -1, features.shape[-1])
        return features, self.project_dino(features)

    def project_dino(self, features: torch.Tensor) -> torch.Tensor:
        with self._vision_autocast():
            return self.dino_pro(features.to(self.device, self.dino_pro.weight.dtype))

    def train_condition(self, inputs: QwenInputs, dino_pixels: torch.Tensor) -> torch.Tensor:
        """VLM hidden states + DINO -> QFormer condition [B, Q, W], with gradients (upstream's forward)."""
        hidden_states = self.vlm_hidden_states(inputs)
        _, projected = self.dino_tokens_from_pixels(dino_pixels, inputs.input_ids.shape[0])
        return self.condition(hidden_states, projected)

    def condition_from_features(
        self,
        hidden_states: Sequence[torch.Tensor],
        dino_features: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """QFormer condition from cached VLM hidden states (the ``[start:end]`` layers) and cached raw
        DINO tokens (frozen VLM/DINO training); ``key_padding_mask`` [B, L] marks padded text positions."""
        projected = self.project_dino(dino_features)
        dev = self.device
        with self._head_autocast():
            return self.layer_qformer(
                [h.to(dev) for h in hidden_states],
                projected,
                None if key_padding_mask is None else key_padding_mask.to(dev),
            )

    def action_loss(
        self,
        cond: torch.Tensor,
        actions: torch.Tensor,
        repeats: int = 4,
        cond_drop_prob: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """DiT diffusion loss (float32 head) for normalised chunks ``actions`` [B, T, A]."""
        dtype = next(self.action_model.net.parameters()).dtype
        with self._head_autocast():
            return self.action_model.training_loss(
                actions.to(cond.device, dtype), cond.to(dtype), repeats, cond_drop_prob, generator
            )

    def vlm_loss(self, inputs: QwenInputs, labels: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy of the Qwen LM on ``labels`` (-100 = ignored), the co-training loss."""
        qwen = self.qwen_vl_interface.model
        with self._vision_autocast():
            out = qwen(**inputs.model_kwargs(self.device), labels=labels.to(self.device), use_cache=False)
        return out.loss

    # ---------------------------------------------------------------------------------------- full pass
    @torch.inference_mode()
    def predict_action(
        self,
        batch_views: Sequence[Sequence[Image.Image]],
        instructions: Sequence[str],
        cfg_scale: float = 1.5,
        num_ddim_steps: int = 10,
        initial_noise: torch.Tensor | np.ndarray | None = None,
        generator: torch.Generator | None = None,
        spatial_prompt: bool = True,
        timer: StageTimer | None = None,
        record: dict[str, Any] | None = None,
        prefix: torch.Tensor | np.ndarray | None = None,
        prefix_weights: torch.Tensor | np.ndarray | None = None,
        batch_invariant: bool = False,
    ) -> np.ndarray:
        """Normalised action chunks ``[B, T, A]`` (float32) for B samples of PIL views + instructions.

        ``batch_invariant=True`` gives each sample of a batch the actions it would get alone (the serving
        batcher needs that): the left padding is kept out of the QFormer and the DiT embeds the timestep
        as for a batch of one. The default (False) is upstream's behaviour: padded positions reach the
        QFormer, so a padded sample's actions depend on the longest prompt of its batch (by up to ~0.75).
        A batch of one computes the same values either way.

        ``record`` (optional dict) receives the intermediates (inputs, hidden states, DINO tokens, QFormer
        output, per-step DiT tensors) for parity checks and debugging.
        """
        if len(batch_views) != len(instructions):
            raise ValueError(f"{len(batch_views)} image lists but {len(instructions)} instructions")
        timer = timer if timer is not None else StageTimer()
        device = self.device
        with timer.stage("preprocess"):
            batch_views = [self.resize_views(views) for views in batch_views]
            prompts = [self.prompt_for(text, spatial_prompt) for text in instructions]
            inputs = self.build_vlm_inputs(batch_views, prompts)
        with timer.stage("vlm"):
            hidden_states = self.vlm_hidden_states(inputs)
            _sync(device)
        with timer.stage("dino"):
            dino_features, dino_projected = self.dino_tokens(batch_views)
            _sync(device)
        padding = None
        if batch_invariant and not bool(inputs.attention_mask.all()):
            padding = ~inputs.attention_mask.bool()
        with timer.stage("qformer"):
            cond = self.condition(hidden_states, dino_projected, padding)
            _sync(device)
        steps: list[dict[str, Any]] | None = [] if record is not None else None
        with timer.stage("dit"):
            actions = self.sample(
                cond,
                cfg_scale,
                num_ddim_steps,
                initial_noise,
                generator,
                steps,
                prefix,
                prefix_weights,
                batch_invariant=batch_invariant,
            )
            out = actions.float().cpu().numpy()
        if record is not None:
            record.update(
                prompts=prompts,
                inputs=inputs,
                hidden_states=hidden_states,
                dino_features=dino_features,
                dino_projected=dino_projected,
                qformer_out=cond,
                dit_steps=steps,
                normalized_actions=out,
            )
        return out

    @torch.inference_mode()
    def chat(
        self, image: Image.Image, text: str, max_new_tokens: int = 128
    ) -> tuple[str, QwenInputs, torch.Tensor]:
        """Upstream ``chat_with_M1``: one image + text, greedy generation (the base VLM's generation
        config), decoded without special tokens. Returns (text, packed inputs, new token ids)."""
        processor = self.qwen_vl_interface.processor
        inputs = processor([processor.chat_text(1, text)], [image])
        qwen = self.qwen_vl_interface.model
        with self._vision_autocast():
            generated = qwen.generate(
                **inputs.model_kwargs(self.device), max_new_tokens=max_new_tokens, do_sample=False
            )
        new_tokens = generated[:, inputs.input_ids.shape[1] :]
        decoded = processor.tokenizer.batch_decode(
            new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return decoded[0], inputs, new_tokens


def _dit_dims(config: M1Config) -> tuple[int, int, int]:
    """(token_size, depth, num_heads): explicit config keys, else the named preset (DiT-S/B/L)."""
    if config.dit_dims is not None:
        return config.dit_dims
    if config.action_model_type not in DIT_PRESETS:
        raise ValueError(
            f"action_model_type '{config.action_model_type}' unknown; presets: {sorted(DIT_PRESETS)} "
            "(or give framework.action_model.token_size/depth/num_heads)"
        )
    preset = DIT_PRESETS[config.action_model_type]
    return int(preset["token_size"]), int(preset["depth"]), int(preset["num_heads"])
