"""Masked Modality Projection: estimate a missing modality's tokens from the others.

Two ways to compute them (``ModelConfig.projection_kind``), with one interface:

``attention`` (the paper's): for every target modality ``m`` the module holds a learned
query. At each cell of a coarse query grid the query is the masked mean of the available
modalities' pooled tokens plus ``m``'s query vector; it attends (cross-attention) to the
aggregated tokens of every modality, pooled to an even coarser key grid and tagged with a
modality embedding, with the keys of unavailable modalities masked out.

``conv``: at each cell of a grid, the masked mean of the available modalities' pooled
tokens plus an embedding of which modalities are available goes through a few residual
3x3 convolution blocks: a local estimate, where the attention's is global. It is what
label-free adaptation (``mmp_adapt``) uses: there the model is frozen, and the local
estimate serves it better (docs/robustness.md).

Either way a per-target linear head maps the features to ``m``'s token width; the
segmenter upsamples the result to ``m``'s token grid, or composes the head with its
fusion and upsamples once. Everything runs at low resolution (stride 32 or 16), so the
cost stays small next to the encoders; the detail of the scene still reaches the decoder
through the modalities that are present. All targets are computed at once, for every
sample, whatever the mask: one graph.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from mmp_ros.model.layers import pool_to_grid


def grid_of(image_size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Cells of a grid of ``stride`` input pixels over ``image_size`` (one cell for 0)."""
    if stride == 0:
        return (1, 1)
    return (max(1, image_size[0] // stride), max(1, image_size[1] // stride))


def masked_sources(sources: nn.ModuleDict, modalities: tuple[str, ...],
                   tokens: dict[str, torch.Tensor], available: torch.Tensor,
                   grid: tuple[int, int]) -> torch.Tensor:
    """(B, M, D, gh, gw): every modality pooled onto ``grid`` and mapped to the shared
    width, zero where unavailable.

    ``where()``, not a product: a NaN-filled dead sensor must not leak through 0 * NaN.
    """
    pooled = torch.stack([sources[m](pool_to_grid(tokens[m], grid)) for m in modalities], 1)
    return torch.where(available[:, :, None, None, None], pooled, 0.0)


class _ProjectionHeads(nn.Module):
    """The per-target linear heads shared by both kinds of projection.

    Being linear after the features, a head composes with the fusion's 1x1 convolution
    into one matrix (the segmenter's cheap path).
    """

    def __init__(self, modalities: tuple[str, ...], widths: dict[str, int], dim: int) -> None:
        super().__init__()
        self.modalities = modalities
        self.heads_out = nn.ModuleDict({m: nn.Linear(dim, widths[m]) for m in modalities})

    def to_tokens(self, features: torch.Tensor,
                  grid: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Each modality's projected tokens ``(B, C_m, gh, gw)`` from ``forward``'s output."""
        return {
            m: rearrange(self.heads_out[m](features[:, index]), 'b (h w) c -> b c h w',
                         h=grid[0], w=grid[1])
            for index, m in enumerate(self.modalities)
        }


class MaskedModalityProjection(_ProjectionHeads):
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
        super().__init__(modalities, widths, dim)
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

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The query grid: where ``forward``'s features are, and what it pools tokens to."""
        return grid_of(image_size, self.query_stride)

    def forward(self, tokens: dict[str, torch.Tensor], available: torch.Tensor,
                image_size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        query_grid = self.grid(image_size)
        key_grid = grid_of(image_size, self.key_stride)
        # Every modality onto the query grid, in the shared width.
        pooled = masked_sources(self.sources, self.modalities, tokens, available, query_grid)
        count = available.to(pooled.dtype).sum(1).clamp(min=1.0)[:, None, None, None]
        content = pooled.sum(1) / count  # (B, D, gh, gw)

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


class ConvBlock(nn.Module):
    """3x3 convolution, ReLU, 1x1 convolution, plus the identity.

    ReLU for the reason of :class:`mmp_ros.model.segmenter.MaskGatedAdapter`'s: ONNX Runtime
    fuses it into the convolution, while a GELU is five element-wise operators: 1.7 to 1.9
    points of the adapted model's latency over ``none``, at the same accuracy within 0.3
    (docs/robustness.md, finding 3).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ConvModalityProjection(_ProjectionHeads):
    """Projected tokens for every modality from a local convolutional estimate.

    Same interface as :class:`MaskedModalityProjection`: ``forward`` returns features
    ``(B, M, G, D)`` on its grid (stride ``stride``) and the grid. The features are shared
    by the targets (the heads tell them apart): the masked mean of the available
    modalities' pooled tokens, plus the sum of the available modalities' embeddings (so
    the network knows which ones it reads), through ``blocks`` residual conv blocks.
    A projected token never depends on an unavailable modality's tokens.
    """

    def __init__(self, *, modalities: tuple[str, ...], widths: dict[str, int], dim: int,
                 stride: int, blocks: int = 2) -> None:
        super().__init__(modalities, widths, dim)
        self.stride = stride
        self.sources = nn.ModuleDict({m: nn.Conv2d(widths[m], dim, 1) for m in modalities})
        self.available_embedding = nn.Parameter(torch.zeros(len(modalities), dim))
        nn.init.trunc_normal_(self.available_embedding, std=0.02)
        self.blocks = nn.Sequential(*(ConvBlock(dim) for _ in range(blocks)))

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """Where ``forward``'s features are, and what it pools tokens to."""
        return grid_of(image_size, self.stride)

    def forward(self, tokens: dict[str, torch.Tensor], available: torch.Tensor,
                image_size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        grid = self.grid(image_size)
        pooled = masked_sources(self.sources, self.modalities, tokens, available, grid)
        present = available.to(pooled.dtype)  # (B, M)
        x = pooled.sum(1) / present.sum(1).clamp(min=1.0)[:, None, None, None]
        x = self.blocks(x + (present @ self.available_embedding)[:, :, None, None])
        features = rearrange(x, 'b d h w -> b (h w) d')[:, None]
        return features.expand(-1, len(self.modalities), -1, -1), grid
