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
from torch import nn


class CrossAttentionBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
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
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("the QFormer needs at least one layer")
        self.num_layers = num_layers
        self.proj = nn.Linear(input_dim, output_dim)
        self.query_tokens = nn.Parameter(torch.randn(num_query_tokens, output_dim))
        self.layers = nn.ModuleList(
            [CrossAttentionBlock(output_dim, num_heads, dropout=dropout) for _ in range(num_layers)]
        )

    def forward(
        self, hidden_states: Sequence[torch.Tensor], dino_features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """hidden_states: one [B, T, D] per selected LLM layer; dino_features [B, N, D] appended to each.

        Returns the query tokens [B, Q, output_dim] (the DiT's condition).
        """
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} hidden-state layers, got {len(hidden_states)}")
        if dino_features is not None:
            hidden_states = [torch.cat((h, dino_features.to(h.dtype)), dim=1) for h in hidden_states]
        projected = self.proj(torch.stack(list(hidden_states), dim=1)).unbind(dim=1)
        query = self.query_tokens.unsqueeze(0).expand(projected[0].shape[0], -1, -1)
        for block, kv in zip(self.layers, projected):
            query = block(query, kv)
        return query
