"""Layer-wise QFormer: learnable queries cross-attend to selected VLM layers (+ DINO tokens).

Facts (spec 1.3, upstream ``projector/QFormer.py``): one shared ``proj`` Linear(input→output) applied
to each selected layer's keys/values; ``query_tokens`` [Q, out]; one cross-attention block per
selected layer, in order: q ← q + MHA(LN1(q), kv, kv); q ← q + Dropout(MLP(LN2(q))) with exact GELU.
K/V are not normalised; there is no final norm. In M1 each layer's K/V is the concatenation of that
layer's hidden states and the projected DINO tokens along the sequence, unmasked (padding included,
as upstream; batching therefore changes left-padded samples).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale`` on the way back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged, its gradient times ``scale`` (1.0: plain ``x``, no autograd node)."""
    if scale == 1.0 or not x.requires_grad:
        return x
    return _ScaleGrad.apply(x, scale)


class CrossAttentionBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.dropout = nn.Dropout(dropout)

    def _train_attention(
        self, q: torch.Tensor, kv: torch.Tensor, key_padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``cross_attn`` with its own weights through fused SDPA and attention dropout (training mode:
        ``nn.MultiheadAttention`` leaves its fast path whenever it trains)."""
        mha = self.cross_attn
        heads, dim = mha.num_heads, mha.embed_dim
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None,) * 3

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(x.shape[0], x.shape[1], heads, dim // heads).transpose(1, 2)

        mask = None
        if key_padding_mask is not None:  # True = padding (ignored), as nn.MultiheadAttention
            mask = (~key_padding_mask.bool())[:, None, None, :]
        out = F.scaled_dot_product_attention(
            split(F.linear(q, w_q, b_q)),
            split(F.linear(kv, w_k, b_k)),
            split(F.linear(kv, w_v, b_v)),
            attn_mask=mask,
            dropout_p=mha.dropout if self.training else 0.0,
        )
        return mha.out_proj(out.transpose(1, 2).reshape(q.shape[0], q.shape[1], dim))

    def forward(
        self, query: torch.Tensor, kv: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.training or key_padding_mask is not None:
            attended = self._train_attention(self.norm1(query), kv, key_padding_mask)
        else:  # inference: upstream's module call, unchanged
            attended, _ = self.cross_attn(self.norm1(query), kv, kv, need_weights=False)
        query = query + attended
        return query + self.dropout(self.mlp(self.norm2(query)))


class LayerwiseQFormer(nn.Module):
    """Parameters: ``proj``, ``query_tokens``, ``layers.i.{norm1,cross_attn,norm2,mlp.0,mlp.2}``."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        num_query_tokens: int = 64,
        num_layers: int = 1,
        num_heads: int = 8,
        dropout: float = 0.1,
        grad_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("the QFormer needs at least one layer")
        self.num_layers = num_layers
        # Multiplies the gradient flowing from the QFormer back into the VLM hidden states (and the DINO
        # tokens); forward values are unchanged. Upstream's config carries grad_scale 0.5 but its hook is
        # disabled (no effect), so 1.0 reproduces upstream training.
        self.grad_scale = float(grad_scale)
        self.proj = nn.Linear(input_dim, output_dim)
        self.query_tokens = nn.Parameter(torch.randn(num_query_tokens, output_dim))
        self.layers = nn.ModuleList(
            [CrossAttentionBlock(output_dim, num_heads, dropout=dropout) for _ in range(num_layers)]
        )

    def forward(
        self,
        hidden_states: Sequence[torch.Tensor],
        dino_features: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states: one [B, T, D] per selected LLM layer; dino_features [B, N, D] appended to each.
        ``key_padding_mask`` [B, T (+N)] (True = ignore) masks padded positions (None: upstream, unmasked).

        Returns the query tokens [B, Q, output_dim] (the DiT's condition).
        """
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} hidden-state layers, got {len(hidden_states)}")
        if self.grad_scale != 1.0:
            hidden_states = [scale_grad(h, self.grad_scale) for h in hidden_states]
            if dino_features is not None:
                dino_features = scale_grad(dino_features, self.grad_scale)
        if dino_features is not None:
            hidden_states = [torch.cat((h, dino_features.to(h.dtype)), dim=1) for h in hidden_states]
            if key_padding_mask is not None and key_padding_mask.shape[1] != hidden_states[0].shape[1]:
                pad = key_padding_mask.new_zeros(key_padding_mask.shape[0], dino_features.shape[1])
                key_padding_mask = torch.cat((key_padding_mask, pad), dim=1)
        projected = self.proj(torch.stack(list(hidden_states), dim=1)).unbind(dim=1)
        query = self.query_tokens.unsqueeze(0).expand(projected[0].shape[0], -1, -1)
        for block, kv in zip(self.layers, projected):
            query = block(query, kv, key_padding_mask)
        return query
