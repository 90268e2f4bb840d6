"""DINOv2 ViT image encoder with torch.hub's parameter names, written without torch.hub or timm.

Why our own: upstream builds DINOv2 with ``torch.hub.load("facebookresearch/dinov2", ...)`` (network
at construction), and timm needs torchvision, which does not import beside the CPU torch wheel. The
checkpoint stores the hub model under ``dino_encoder.body.*``; the names here are the hub's
(spec section 1.2), so those weights load directly.

Hub architecture facts kept: patch 14, img_size 518 (pos_embed has 1 + 37*37 rows), LayerScale, plain
MLP FFN (exact GELU), no registers, final LayerNorm eps 1e-6, and the hub's positional-embedding
interpolation (bicubic, antialias off, scale factor (w0 + 0.1) / 37).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

DINO_PRESETS: dict[str, dict[str, int]] = {
    "dinov2_vits14": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "dinov2_vitb14": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "dinov2_vitl14": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
    # vitg14 uses a SwiGLU FFN with different parameter names; not implemented (no released M1 uses it).
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_RESIZE = 224


class _Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (hub names ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # explicit, as the hub's non-xformers path
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.ls1 = _LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = _LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoVisionTransformer(nn.Module):
    """The DINOv2 backbone (hub parameter names). ``forward_features`` returns the hub's dict."""

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        patch_size: int = 14,
        img_size: int = 518,
        mlp_ratio: float = 4.0,
        interpolate_offset: float = 0.1,
        interpolate_antialias: bool = False,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.interpolate_offset = interpolate_offset
        self.interpolate_antialias = interpolate_antialias
        grid = img_size // patch_size
        self.patch_embed = _PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))  # unused at inference, kept for the keys
        self.blocks = nn.ModuleList([_Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def interpolate_pos_encoding(self, x: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """The hub's bicubic pos-embed resize: scale factor (grid + offset) / M, antialias off."""
        previous_dtype = x.dtype
        n_patches = x.shape[1] - 1
        n_pos = self.pos_embed.shape[1] - 1
        pos = self.pos_embed.float()
        w0, h0 = width // self.patch_size, height // self.patch_size
        if n_patches == n_pos and w0 == h0:
            return self.pos_embed
        m = int(math.sqrt(n_pos))
        if m * m != n_pos:
            raise ValueError(f"pos_embed has {n_pos} patch rows, not a square grid")
        dim = x.shape[-1]
        patch_pos = F.interpolate(
            pos[:, 1:].reshape(1, m, m, dim).permute(0, 3, 1, 2),
            scale_factor=((w0 + self.interpolate_offset) / m, (h0 + self.interpolate_offset) / m),
            mode="bicubic",
            antialias=self.interpolate_antialias,
        )
        if (patch_pos.shape[-2], patch_pos.shape[-1]) != (w0, h0):
            raise RuntimeError(
                f"pos-embed interpolation gave {tuple(patch_pos.shape[-2:])}, expected {(w0, h0)}"
            )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((pos[:, 0].unsqueeze(0), patch_pos), dim=1).to(previous_dtype)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        _, _, width, height = x.shape  # the hub names dims 2 and 3 (w, h) in this order
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + self.interpolate_pos_encoding(tokens, width, height)
        for block in self.blocks:
            tokens = block(tokens)
        normed = self.norm(tokens)
        return {"x_norm_clstoken": normed[:, 0], "x_norm_patchtokens": normed[:, 1:], "x_prenorm": tokens}


class DinoEncoder(nn.Module):
    """Wrapper whose ``body`` is the backbone (checkpoint keys ``dino_encoder.body.*``).

    ``preprocess`` reproduces upstream's DINO transform without torchvision: resize the shorter side to
    224 (torchvision ``Resize(224)`` on a PIL image is PIL bilinear resampling, which antialiases,
    with the long side ``int(224 * long / short)``), then to-tensor and ImageNet normalisation.
    """

    def __init__(self, body: DinoVisionTransformer) -> None:
        super().__init__()
        self.body = body

    @classmethod
    def from_preset(cls, name: str) -> DinoEncoder:
        if name not in DINO_PRESETS:
            if name == "dinov2_vitg14":
                raise NotImplementedError(
                    "dinov2_vitg14 (SwiGLU FFN) is not supported; released M1 models use vits14/vitl14"
                )
            raise ValueError(f"unknown DINOv2 backbone '{name}'; known: {sorted(DINO_PRESETS)}")
        return cls(DinoVisionTransformer(**DINO_PRESETS[name]))

    @classmethod
    def from_dims(cls, embed_dim: int, depth: int, num_heads: int) -> DinoEncoder:
        """A DINOv2-shaped backbone of any size (tiny test models)."""
        return cls(DinoVisionTransformer(embed_dim=embed_dim, depth=depth, num_heads=num_heads))

    @property
    def num_channels(self) -> int:
        return self.body.embed_dim

    @staticmethod
    def resized_size(width: int, height: int, short: int = DINO_RESIZE) -> tuple[int, int]:
        """(w, h) after torchvision's Resize(short) rule: shorter side = short, long side truncated."""
        if width <= height:
            return short, int(short * height / width)
        return int(short * width / height), short

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images (all views of a batch must end up the same size) -> [V, 3, H, W] float32."""
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        out = []
        for image in images:
            rgb = image.convert("RGB")
            size = self.resized_size(*rgb.size)
            if size != rgb.size:
                rgb = rgb.resize(size, Image.BILINEAR)
            array = np.asarray(rgb, dtype=np.float32) / 255.0
            out.append((torch.from_numpy(array).permute(2, 0, 1) - mean) / std)
        shapes = {tuple(t.shape) for t in out}
        if len(shapes) > 1:
            raise ValueError(f"all DINO views must share one size after resizing, got {sorted(shapes)}")
        return torch.stack(out)

    def preprocess_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """Batched :meth:`preprocess` for uint8 RGB ``[N, H, W, 3]`` (one size for all) -> [N, 3, h, w].

        Equal to the per-image path when the images already have the resized size (``resized_size``;
        training caches frames resized once with PIL). Otherwise they are resized here with torch's
        uint8 bilinear antialiased kernel, which differs from PIL's by at most a few uint8 levels.
        """
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2)
        height, width = int(x.shape[2]), int(x.shape[3])
        new_w, new_h = self.resized_size(width, height)
        if (new_w, new_h) != (width, height):
            x = F.interpolate(
                x.contiguous(memory_format=torch.channels_last),
                size=(new_h, new_w),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((x.float() / 255.0) - mean) / std

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> patch tokens after the final norm, without CLS: [N, (H/14)*(W/14), C]."""
        return self.body.forward_features(pixel_values)["x_norm_patchtokens"]
