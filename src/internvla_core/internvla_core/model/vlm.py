"""Qwen2.5-VL backbone: built from its config (never downloading weights) plus upstream's input packing.

Upstream (``QWen2_5.py``) loads the VLM with ``from_pretrained`` and packs inputs with
``qwen_vl_utils.process_vision_info`` + ``AutoProcessor``. Here:

* the network comes from ``config.json`` only (``Qwen2_5_VLForConditionalGeneration(config)``); its
  weights arrive with the VLA checkpoint;
* the processor is assembled from the tokenizer, the *PIL* image processor and the chat template, because
  transformers 5.x's ``AutoProcessor`` insists on a torchvision video processor we do not need (and
  torchvision is not installed). The PIL image processor is the same algorithm upstream used (transformers
  4.52's slow ``Qwen2VLImageProcessor``); the parity tool checks ``pixel_values`` against upstream's;
* ``process_vision_info``'s step (RGB conversion, resize to multiples of 28 with PIL's default bicubic) is
  reproduced by :func:`qwen_fetch_image`;
* the processor's own work on text (expanding each ``<|image_pad|>`` to one token per 2x2 merged patch,
  left padding) is done by :meth:`QwenInputBuilder.__call__`, which also returns ``mm_token_type_ids``:
  transformers 5.x needs them to compute Qwen2.5-VL's 3-D (M-RoPE) positions.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

IMAGE_FACTOR = 28
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16384 * 28 * 28
MAX_RATIO = 200
IMAGE_PAD = "<|image_pad|>"


def _round_by(n: float, f: int) -> int:
    return round(n / f) * f


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:
    """qwen_vl_utils' rule: sides multiple of ``factor``, area within [min, max], aspect kept. -> (h, w)."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"image aspect ratio must be below {MAX_RATIO}, got {width}x{height}")
    h_bar = max(factor, _round_by(height, factor))
    w_bar = max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen_fetch_image(image: Image.Image) -> Image.Image:
    """``qwen_vl_utils.fetch_image`` for a PIL image: RGBA composited on white, RGB, resized (PIL default
    resample) so both sides are multiples of 28."""
    if image.mode == "RGBA":
        rgb = Image.new("RGB", image.size, (255, 255, 255))
        rgb.paste(image, mask=image.split()[3])
    else:
        rgb = image.convert("RGB")
    width, height = rgb.size
    new_h, new_w = smart_resize(height, width)
    return rgb.resize((new_w, new_h))


def _pil_image_processor_class() -> type:
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil
    except ImportError:  # transformers 4.x: the slow processor is the PIL one
        from transformers import Qwen2VLImageProcessor

        return Qwen2VLImageProcessor


def _read_chat_template(vlm_dir: Path, tokenizer: Any) -> str:
    jinja = vlm_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    as_json = vlm_dir / "chat_template.json"
    if as_json.is_file():
        return json.loads(as_json.read_text())["chat_template"]
    template = getattr(tokenizer, "chat_template", None)
    if template:
        return template
    raise FileNotFoundError(f"no chat template in {vlm_dir} (chat_template.jinja / chat_template.json)")


@dataclass
class QwenInputs:
    """Packed model inputs plus what was used to make them (for debugging and grounding rescale)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    mm_token_type_ids: torch.Tensor
    texts: list[str]
    model_input_sizes: list[tuple[int, int]]  # (w, h) of each image as the vision tower saw it

    def model_kwargs(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        names = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids")
        return {n: getattr(self, n).to(device) if device is not None else getattr(self, n) for n in names}


class QwenInputBuilder:
    """Tokenizer + PIL image processor + chat template: what upstream's ``AutoProcessor`` did for M1."""

    def __init__(self, tokenizer: Any, image_processor: Any, chat_template: str) -> None:
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"  # upstream forces left padding
        self.image_processor = image_processor
        self.chat_template = chat_template
        self.image_token_id = int(tokenizer.convert_tokens_to_ids(IMAGE_PAD))
        self.merge_size = int(getattr(image_processor, "merge_size", 2))

    @classmethod
    def from_dir(cls, vlm_dir: str | Path) -> QwenInputBuilder:
        from transformers import AutoTokenizer

        vlm_dir = Path(vlm_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(vlm_dir))
        image_processor = _pil_image_processor_class().from_pretrained(str(vlm_dir))
        return cls(tokenizer, image_processor, _read_chat_template(vlm_dir, tokenizer))

    def chat_text(self, num_images: int, prompt: str) -> str:
        """One user turn: ``num_images`` image items then the text, generation prompt appended."""
        content: list[dict[str, Any]] = [{"type": "image", "image": None} for _ in range(num_images)]
        content.append({"type": "text", "text": prompt})
        messages = [{"role": "user", "content": content}]
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )

    def pixels_from_tensor(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batched image processing of uint8 RGB ``[N, H, W, 3]`` whose sides are already multiples of 28
        within the pixel limits (what ``qwen_fetch_image`` returns, e.g. frames resized once to 224):
        the PIL image processor's rescale (float64 then float32), normalisation and patchify, in torch.
        Returns ``pixel_values`` [N·gh·gw, C·tp·p·p] and ``image_grid_thw`` [N, 3], equal to the per-image
        path's."""
        proc = self.image_processor
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {tuple(images.shape)}")
        n, height, width, channels = (int(v) for v in images.shape)
        patch = int(getattr(proc, "patch_size", 14))
        merge = self.merge_size
        temporal = int(getattr(proc, "temporal_patch_size", 2))
        if smart_resize(height, width) != (height, width):
            raise ValueError(
                f"{width}x{height} images need qwen_fetch_image's resize first (sides multiples of "
                f"{IMAGE_FACTOR}); use the per-image path or resize the frames once"
            )
        mean = torch.tensor(list(proc.image_mean), dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(list(proc.image_std), dtype=torch.float32).view(1, 3, 1, 1)
        x = (images.permute(0, 3, 1, 2).double() * float(proc.rescale_factor)).float()
        x = (x - mean) / std
        gh, gw = height // patch, width // patch
        x = x.reshape(n, channels, gh // merge, merge, patch, gw // merge, merge, patch)
        x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (n, gh/m, gw/m, mh, mw, C, ph, pw)
        x = x.unsqueeze(6).expand(*x.shape[:6], temporal, patch, patch)
        pixel_values = x.reshape(n * gh * gw, channels * temporal * patch * patch)
        grid = torch.tensor([[1, gh, gw]] * n, dtype=torch.int64)
        return {"pixel_values": pixel_values, "image_grid_thw": grid}

    def __call__(self, texts: Sequence[str], images: Sequence[Image.Image] | torch.Tensor) -> QwenInputs:
        """Pack chat texts (each with as many image pads as it has images, in order) and all images
        (PIL images, or a uint8 ``[N, H, W, 3]`` tensor for the batched path :meth:`pixels_from_tensor`)."""
        if isinstance(images, torch.Tensor):
            vision = self.pixels_from_tensor(images)
        else:
            fetched = [qwen_fetch_image(img) for img in images]
            vision = self.image_processor(images=fetched, return_tensors="pt")
        grid = vision["image_grid_thw"]
        per_image_tokens = [int(g.prod().item()) // (self.merge_size**2) for g in grid]
        expanded: list[str] = []
        index = 0
        for text in texts:
            parts = text.split(IMAGE_PAD)
            out = parts[0]
            for part in parts[1:]:
                if index >= len(per_image_tokens):
                    raise ValueError("more image placeholders in the text than images given")
                out += IMAGE_PAD * per_image_tokens[index] + part
                index += 1
            expanded.append(out)
        if index != len(per_image_tokens):
            raise ValueError(
                f"{len(per_image_tokens)} images given but {index} image placeholders in the text"
            )
        tok = self.tokenizer(expanded, padding=True, padding_side="left", return_tensors="pt")
        input_ids = tok["input_ids"]
        sizes = []
        patch = int(getattr(self.image_processor, "patch_size", 14))
        for g in grid:
            sizes.append((int(g[2]) * patch, int(g[1]) * patch))
        return QwenInputs(
            input_ids=input_ids,
            attention_mask=tok["attention_mask"],
            pixel_values=vision["pixel_values"],
            image_grid_thw=grid,
            mm_token_type_ids=(input_ids == self.image_token_id).to(torch.int32),
            texts=list(texts),
            model_input_sizes=sizes,
        )


def load_qwen_config(vlm_dir: str | Path) -> Any:
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig.from_pretrained(str(vlm_dir))


def text_hidden_size(config: Any) -> int:
    """transformers 5.x keeps the LLM width in ``text_config`` (top-level ``hidden_size`` may be absent)."""
    text_config = getattr(config, "text_config", None)
    if text_config is not None and getattr(text_config, "hidden_size", None):
        return int(text_config.hidden_size)
    return int(config.hidden_size)


def text_num_layers(config: Any) -> int:
    text_config = getattr(config, "text_config", None) or config
    return int(text_config.num_hidden_layers)


class QwenVLInterface(nn.Module):
    """Holds ``model`` (so checkpoint keys read ``qwen_vl_interface.model.*``) and the input builder."""

    def __init__(
        self,
        vlm_dir: str | Path,
        attn_implementation: str = "sdpa",
        init_weights: bool = True,
        config: Any | None = None,
    ) -> None:
        super().__init__()
        from transformers import Qwen2_5_VLForConditionalGeneration

        self.vlm_dir = Path(vlm_dir)
        config = config if config is not None else load_qwen_config(self.vlm_dir)
        ctx = contextlib.nullcontext() if init_weights else skip_weight_init()
        with ctx:
            self.model = Qwen2_5_VLForConditionalGeneration._from_config(
                config, attn_implementation=attn_implementation, dtype=torch.float32
            )
        self.model.eval()
        # Upstream's from_pretrained also picked up generation_config.json (eos ids, pad id, sampling
        # settings); chat_with_M1 generates with it, so load it too.
        if (self.vlm_dir / "generation_config.json").is_file():
            from transformers import GenerationConfig

            self.model.generation_config = GenerationConfig.from_pretrained(str(self.vlm_dir))
        self.processor = QwenInputBuilder.from_dir(self.vlm_dir)

    @property
    def hidden_size(self) -> int:
        return text_hidden_size(self.model.config)

    @property
    def num_layers(self) -> int:
        return text_num_layers(self.model.config)

    def hidden_states(self, inputs: QwenInputs) -> tuple[torch.Tensor, ...]:
        """All LLM hidden states (embeddings first, last = after the final RMSNorm), no LM head."""
        device = self.model.device
        out = self.model.model(
            **inputs.model_kwargs(device), output_hidden_states=True, use_cache=False, return_dict=True
        )
        return tuple(out.hidden_states)


@contextlib.contextmanager
def skip_weight_init():
    """Skip random init of a network whose every weight is about to be overwritten by a checkpoint
    (seconds for the 3B model). Falls back to normal init where transformers has no such switch."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            no_init_weights = None
    if no_init_weights is None:
        yield
        return
    with no_init_weights():
        yield
