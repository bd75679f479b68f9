"""Masked Modality Projection: estimate a missing modality's tokens from the others.

For every target modality ``m`` the module holds a learned query. At each cell of a
coarse query grid the query is the masked mean of the available modalities' pooled
tokens plus ``m``'s query vector; it attends (cross-attention) to the aggregated
tokens of every modality, pooled to an even coarser key grid and tagged with a
modality embedding, with the keys of unavailable modalities masked out. A per-target
linear head maps the result to ``m``'s token width; the segmenter upsamples it to
``m``'s token grid, or composes the head with its fusion and upsamples once.

Everything runs at low resolution (query and key grids at stride 32 by default), so
the cost stays small next to the encoders; the detail of the scene still reaches the
decoder through the modalities that are present.
All targets are computed at once, for every sample, whatever the mask: one graph.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from mmp_ros.model.layers import pool_to_grid


class MaskedModalityProjection(nn.Module):
    """Projected tokens for every modality from the available ones.

    ``forward(tokens, available, image_size)`` takes each modality's tokens
    ``(B, C_m, h_m, w_m)`` (widths and token grids may differ), ``available`` ``(B, M)``
    bool and the input ``(H, W)``; it returns the normalized projection features
    ``(B, M, G, D)`` on the coarse query grid (``G = gh * gw`` cells) and that grid.
    :meth:`to_tokens` turns them into each modality's tokens ``(B, C_m, gh, gw)``; the
    segmenter may instead compose the linear heads with its fusion (cheaper).
    A projected token never depends on an unavailable modality's tokens.
    """

    def __init__(self, *, modalities: tuple[str, ...], widths: dict[str, int], dim: int,
                 heads: int, query_stride: int, key_stride: int) -> None:
        super().__init__()
        self.modalities = modalities
        self.heads = heads
        self.query_stride = query_stride
        self.key_stride = key_stride  # 0: one aggregated token per modality
        self.sources = nn.ModuleDict({m: nn.Conv2d(widths[m], dim, 1) for m in modalities})
        self.modality_embedding = nn.Parameter(torch.zeros(len(modalities), dim))
        self.queries = nn.Parameter(torch.zeros(len(modalities), dim))
        nn.init.trunc_normal_(self.modality_embedding, std=0.02)
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.query_norm = nn.LayerNorm(dim)
        self.key_norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.out_norm = nn.LayerNorm(dim)
        # Per-target linear heads to each modality's width. Being linear after a shared
        # norm, a head composes with the fusion's 1x1 convolution into one matrix.
        self.heads_out = nn.ModuleDict({m: nn.Linear(dim, widths[m]) for m in modalities})

    @staticmethod
    def _grid(image_size: tuple[int, int], stride: int) -> tuple[int, int]:
        if stride == 0:
            return (1, 1)
        return (max(1, image_size[0] // stride), max(1, image_size[1] // stride))

    def forward(self, tokens: dict[str, torch.Tensor], available: torch.Tensor,
                image_size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        query_grid = self._grid(image_size, self.query_stride)
        key_grid = self._grid(image_size, self.key_stride)
        # Every modality onto the query grid, in the shared width.
        pooled = torch.stack(
            [self.sources[m](pool_to_grid(tokens[m], query_grid)) for m in self.modalities], 1
        )  # (B, M, D, gh, gw)
        weight = available.to(pooled.dtype)[:, :, None, None, None]  # (B, M, 1, 1, 1)
        # where(), not a product: a NaN-filled dead sensor must not leak through 0 * NaN.
        pooled = torch.where(weight > 0, pooled, 0.0)
        content = pooled.sum(1) / weight.sum(1).clamp(min=1.0)  # (B, D, gh, gw)

        keys = pool_to_grid(rearrange(pooled, 'b m d h w -> (b m) d h w'), key_grid)
        keys = rearrange(keys, '(b m) d h w -> b m (h w) d', m=len(self.modalities))
        keys = keys + self.modality_embedding[None, :, None, :]  # (B, M, Gk, D)
        key_available = available[:, :, None].expand(-1, -1, keys.shape[2]).flatten(1)
        keys = self.key_norm(keys.flatten(1, 2))  # (B, M*Gk, D)

        content = rearrange(content, 'b d h w -> b (h w) d')  # (B, Gq, D)
        queries = content[:, None] + self.queries[None, :, None, :]  # (B, M, Gq, D)
        queries = queries.flatten(1, 2)  # (B, M*Gq, D): every target at once
        attended = self._attend(self.query_norm(queries), keys, key_available)
        x = queries + attended
        x = x + self.mlp(self.mlp_norm(x))
        x = self.out_norm(rearrange(x, 'b (m g) d -> b m g d', m=len(self.modalities)))
        return x, query_grid

    def to_tokens(self, features: torch.Tensor,
                  grid: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Each modality's projected tokens ``(B, C_m, gh, gw)`` from :meth:`forward`'s output."""
        return {
            m: rearrange(self.heads_out[m](features[:, index]), 'b (h w) c -> b c h w',
                         h=grid[0], w=grid[1])
            for index, m in enumerate(self.modalities)
        }

    def _attend(self, queries: torch.Tensor, keys: torch.Tensor,
                key_available: torch.Tensor) -> torch.Tensor:
        """Multi-head cross-attention with unavailable keys masked out.

        The softmax is written out so that masked keys get a weight of exactly zero by a
        product after the exponential: filling their logits with a huge negative number
        instead sends ONNX Runtime's exp down a slow underflow path (measured 6x slower).
        Keys are layer-normed, so ``logits - max`` stays far from exp's underflow.
        """
        q = rearrange(self.to_q(queries), 'b n (h c) -> b h n c', h=self.heads)
        k, v = rearrange(self.to_kv(keys), 'b n (two h c) -> two b h n c', two=2, h=self.heads)
        logits = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, h, Nq, Nk)
        weights = torch.exp(logits - logits.amax(dim=-1, keepdim=True))
        weights = weights * key_available[:, None, None, :].to(weights.dtype)
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-6)
        out = torch.matmul(weights, v)  # (B, h, Nq, c)
        return self.to_out(rearrange(out, 'b h n c -> b n (h c)'))
