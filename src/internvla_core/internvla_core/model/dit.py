"""The DiT diffusion action expert of InternVLA-M1 and its sampler.

Facts (spec 1.4; upstream ``DiT_modules/models.py``): the condition is 64 tokens (the QFormer output)
passed through ``z_embedder.linear`` plus the timestep embedding broadcast over them; the noisy action
tokens (``x_embedder``) follow; learned positional embedding over [64 + T]; pre-LN blocks with full
self-attention (timm ``Attention`` with qkv bias, tanh-GELU MLP) and affine-free LayerNorms (eps 1e-6);
no adaLN. The output is read at positions 64.. . ``history_embedder`` exists in checkpoints but is
unused. The null condition for classifier-free guidance (``z_embedder.uncondition``) lives in the
space *before* ``z_embedder.linear``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .diffusion import NUM_TRAIN_TIMESTEPS, base_alphas_cumprod, cfg_combine, ddim_sample

DIT_PRESETS: dict[str, dict[str, int]] = {
    "DiT-S": {"depth": 6, "token_size": 384, "num_heads": 4},
    "DiT-B": {"depth": 12, "token_size": 768, "num_heads": 12},
    "DiT-L": {"depth": 24, "token_size": 1024, "num_heads": 16},
}
FREQUENCY_EMBEDDING_SIZE = 256


class _Linear(nn.Module):
    """Holds a ``linear`` attribute so keys read ``x_embedder.linear.*`` like upstream."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class ConditionEmbedder(nn.Module):
    """``z_embedder``: a Linear over the condition tokens plus the learned null condition."""

    def __init__(self, width: int, num_tokens: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.uncondition = nn.Parameter(torch.randn(num_tokens, width) * 0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)


def timestep_embedding(
    t: torch.Tensor, dim: int = FREQUENCY_EMBEDDING_SIZE, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal features laid out [cos(t·f), sin(t·f)] (cos first), f_k = exp(−ln(P)·k/(dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(FREQUENCY_EMBEDDING_SIZE, width), nn.SiLU(), nn.Linear(width, width)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t).to(self.mlp[0].weight.dtype))


class _Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"DiT width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # timm's fused path, scale 1/sqrt(head_dim)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm_final(x))


class DiT(nn.Module):
    """ε-prediction transformer over [64 condition tokens | T action tokens]."""

    def __init__(
        self,
        action_dim: int,
        token_size: int,
        depth: int,
        num_heads: int,
        horizon: int,
        num_condition_tokens: int = 64,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.horizon = horizon
        self.num_condition_tokens = num_condition_tokens
        self.x_embedder = _Linear(action_dim, token_size)
        self.history_embedder = _Linear(action_dim, token_size)  # in every checkpoint, never used
        self.t_embedder = TimestepEmbedder(token_size)
        self.z_embedder = ConditionEmbedder(token_size, num_condition_tokens)
        self.positional_embedding = nn.Parameter(
            token_size**-0.5 * torch.randn(num_condition_tokens + horizon, token_size)
        )
        self.blocks = nn.ModuleList([DiTBlock(token_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(token_size, action_dim)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor, shared_t_rows: int | None = None
    ) -> torch.Tensor:
        """x [N, T, A] noisy actions, t [N] original timestep indices, z [N, 64, W] -> ε̂ [N, T, A].

        ``shared_t_rows`` (only when every entry of t is equal, as in the DDIM loop): embed the timestep
        from the first k entries and broadcast it. A k-row matmul and an N-row one round differently
        (~1e-7), which ten DDIM steps grow to ~1e-5; the serving batcher passes a single query's row
        count so each sample of a batch gets exactly the embedding it would get alone."""
        if shared_t_rows is None:
            t_emb = self.t_embedder(t)
        else:
            t_emb = self.t_embedder(t[:shared_t_rows])[:1].expand(len(t), -1)
        c = t_emb.unsqueeze(1) + self.z_embedder(z)
        tokens = torch.cat((c, self.x_embedder(x)), dim=1) + self.positional_embedding
        for block in self.blocks:
            tokens = block(tokens)
        return self.final_layer(tokens)[:, self.num_condition_tokens :]

    def forward_with_cfg(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        z: torch.Tensor,
        cfg_scale: float,
        shared_t_rows: int | None = None,
    ) -> torch.Tensor:
        """Upstream's CFG pass: the first half of x is duplicated, the guided ε is written to both halves."""
        half = x[: len(x) // 2]
        eps = self.forward(
            torch.cat([half, half]).to(self.x_embedder.linear.weight.dtype), t, z, shared_t_rows
        )
        cond_eps, uncond_eps = eps.split(len(eps) // 2)
        guided = cfg_combine(cond_eps, uncond_eps, cfg_scale)
        return torch.cat([guided, guided])


class ActionModel(nn.Module):
    """Holds the DiT as ``net`` (keys ``action_model.net.*``) and samples actions with DDIM (+CFG)."""

    def __init__(self, net: DiT) -> None:
        super().__init__()
        self.net = net

    # ------------------------------------------------------------------------------------- training
    @staticmethod
    def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Upstream ``q_sample``: x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε (float64 tables, cast per step)."""
        alphas = base_alphas_cumprod()
        sqrt_ab = torch.from_numpy(alphas**0.5).to(t.device)[t].float()
        sqrt_1mab = torch.from_numpy((1.0 - alphas) ** 0.5).to(t.device)[t].float()
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return sqrt_ab.view(shape).to(x0.dtype) * x0 + sqrt_1mab.view(shape).to(x0.dtype) * noise

    def training_loss(
        self,
        actions: torch.Tensor,
        cond: torch.Tensor,
        repeats: int = 4,
        cond_drop_prob: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Upstream's diffusion training objective (``M1.forward`` + ``ActionModel.forward/loss``).

        actions [B, T, A] normalised chunk, cond [B, Q, W]. Both are repeated ``repeats`` times along the
        batch (``actions.repeat(r, 1, 1)``); each of the r·B rows gets its own timestep in [0, 100) and
        noise; with probability ``cond_drop_prob`` a row's whole condition is replaced by the learned null
        condition ``z_embedder.uncondition`` (before ``z_embedder.linear``, as upstream's ``token_drop``);
        the DiT predicts the noise; loss = MSE over every element. Random draws come from ``generator``
        (CPU) when given, else the global RNG, and are moved to the condition's device.
        """
        net = self.net
        if actions.dim() != 3 or tuple(actions.shape[1:]) != (net.horizon, net.action_dim):
            raise ValueError(
                f"actions must be [B, {net.horizon}, {net.action_dim}], got {tuple(actions.shape)}"
            )
        if cond.shape[0] != actions.shape[0]:
            raise ValueError(f"{cond.shape[0]} conditions for {actions.shape[0]} action chunks")
        device = cond.device
        x0 = actions.to(device, cond.dtype).repeat(repeats, 1, 1)
        z = cond.repeat(repeats, 1, 1)
        n = x0.shape[0]
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(device)
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (n,), generator=generator).to(device)
        if cond_drop_prob > 0:
            drop = (torch.rand(n, generator=generator) < cond_drop_prob).to(device)
            null = net.z_embedder.uncondition.to(z.dtype).unsqueeze(0).expand_as(z)
            z = torch.where(drop.view(-1, 1, 1), null, z)
        eps = net(self.add_noise(x0, noise, t), t, z)
        return ((eps.float() - noise.float()) ** 2).mean()

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor,
        cfg_scale: float = 1.5,
        num_ddim_steps: int = 10,
        initial_noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        record: list[dict[str, Any]] | None = None,
        prefix: torch.Tensor | None = None,
        prefix_weights: torch.Tensor | None = None,
        batch_invariant: bool = False,
    ) -> torch.Tensor:
        """cond [B, 64, W] -> normalised actions [B, T, A].

        ``batch_invariant``: every sample gets bit-for-bit the timestep embedding of a batch of one
        (``DiT.forward``'s ``shared_t_rows``), so a batch's chunks equal one-at-a-time chunks.

        One noise draw [B, T, A] at the start (``initial_noise`` when given). With cfg_scale > 1 the batch
        is [noise; noise] with z = [cond; uncondition] as upstream. ``record`` receives one dict per
        step: original timestep ``t`` [C], DiT input ``x_in`` [C, T, A] and the (guided) ``eps``.
        ``prefix`` [B, P, A] (normalised) with ``prefix_weights`` [P] or [B, P]: real-time chunking's
        inpainting (``diffusion.ddim_sample``); None = upstream's sampler unchanged.
        """
        net = self.net
        b = cond.shape[0]
        dtype = net.x_embedder.linear.weight.dtype
        shape = (b, net.horizon, net.action_dim)
        if initial_noise is None:
            x = torch.randn(shape, generator=generator, dtype=dtype, device="cpu").to(cond.device)
        else:
            if tuple(initial_noise.shape) != shape:
                raise ValueError(f"initial_noise must have shape {shape}, got {tuple(initial_noise.shape)}")
            x = initial_noise.to(cond.device, dtype)
        guided = cfg_scale > 1.0
        if prefix is not None:
            prefix = prefix.to(x.device, dtype)
            prefix_weights = None if prefix_weights is None else prefix_weights.to(x.device, dtype)
        if guided:
            uncond = net.z_embedder.uncondition.unsqueeze(0).expand(b, -1, -1).to(cond.dtype)
            z = torch.cat([cond, uncond])
            x = torch.cat([x, x])
            if prefix is not None:  # both halves see the same guided rows
                prefix = torch.cat([prefix, prefix])
                if prefix_weights is not None and prefix_weights.ndim == 2:
                    prefix_weights = torch.cat([prefix_weights, prefix_weights])
        else:
            z = cond

        rows = (2 if guided else 1) if batch_invariant else None  # a single query's DiT batch

        def eps_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if guided:
                return net.forward_with_cfg(x_t, t, z, cfg_scale, rows)
            return net(x_t, t, z, rows)

        x = ddim_sample(
            eps_fn, x, num_ddim_steps, prefix=prefix, prefix_weights=prefix_weights, record=record
        )
        return x[:b]
