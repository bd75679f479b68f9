"""A head start for label-free adaptation: the projection fitted on cached tokens alone.

Distillation trains the projection through the whole frozen network, so each of its steps
costs a shared encoder's and a decoder's forward and backward pass. Before it starts, the
projection can already learn most of what it has to from the teacher cache's tokens alone:
the frozen model fuses a modality's tokens by a 1x1 convolution (its ``fusion``), so a
missing modality's share of the fused map, at its tokens' resolution and pooled onto the
projection's grid, is that convolution applied to its pooled tokens, and the projection's
estimate of it is what the segmenter adds for it on that grid
(:meth:`MultimodalSegmenter.projected_share`). Fitting one to the other by least squares,
each channel weighted as the frozen batch norm after the fusion weighs it, needs only the
projection's own small network on the coarse grid: on the 2-core CPU a step of 64 frames
costs about a third of a distillation step of 16
(docs/robustness.md, "A head start from the cached tokens").

What it fits is the projection's parameters only, with its own optimizer; the adapters
and everything frozen stay as they are, and distillation then starts from the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmp_ros.model import MultimodalSegmenter
from mmp_ros.model.layers import frozen_norm_scale, pool_to_grid
from training.masking import MaskConfig, sample_masks
from training.optim import adamw
from training.teacher_cache import TeacherCache

# Frames pooled at a time (bounds the memory of pooling the cache's tokens).
_CHUNK = 256


@dataclass
class FitResult:
    losses: list[float]  # the fit loss of each step
    seconds: float


def fused_contributions(model: MultimodalSegmenter, cache: TeacherCache,
                        grid: tuple[int, int]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every cached frame's tokens pooled onto ``grid`` (the projection's input there) and
    each modality's share of the fused map on it, its fusion's bias aside:
    ``(pooled {m: (N, C_m, gh, gw)}, contributions (N, M, F, gh, gw))``.

    Pooling and a 1x1 convolution commute, so the share is the convolution of the pooled
    tokens.
    """
    device = model.fusion_norm.weight.device
    pooled = {}
    for m in model.modalities:
        tokens = cache.tokens[m]  # in host memory
        pooled[m] = torch.cat([pool_to_grid(tokens[i:i + _CHUNK].float(), grid)
                               for i in range(0, len(tokens), _CHUNK)]).to(device)
    contributions = torch.stack([F.conv2d(pooled[m], model.fusion[m].weight.float())
                                 for m in model.modalities], 1)
    return pooled, contributions


def fit_projection(model: MultimodalSegmenter, cache: TeacherCache, *, steps: int,
                   batch_size: int, lr: float, mask: MaskConfig,
                   generator: torch.Generator) -> FitResult:
    """Fit ``model.projection`` to the missing modalities' share of the fused map.

    Each step draws ``batch_size`` cached frames and a mask per frame from ``mask`` (as
    adaptation draws them), and minimizes the mean squared difference, channel by channel
    scaled as the frozen ``fusion_norm`` scales it, between the projection's estimate of
    the missing modalities' share and their real share, both on the projection's grid.
    AdamW at ``lr`` without weight decay, a 20-step warm-up and a poly decay to zero, in
    float32 on the model's device (the pooled tokens are small: 80 cells a frame at
    128x160 and stride 16).
    """
    started = time.perf_counter()
    projection = model.projection
    if projection is None or model.config.projection_stage != 'encoder':
        raise ValueError('fit_projection fits a projection after the modality encoders')
    modalities = model.modalities
    grid = projection.grid(cache.image_size)
    device = model.fusion_norm.weight.device
    with torch.no_grad():
        pooled, contributions = fused_contributions(model, cache, grid)
        scale = frozen_norm_scale(model.fusion_norm).float()[None, :, None, None]
    parameters = [p for p in projection.parameters() if p.requires_grad]
    optimizer = adamw(parameters, device, lr=lr)
    warmup = max(1, min(20, steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * (1 - step / steps) ** 0.9)
    losses = []
    for _ in range(steps):
        index = torch.randint(len(cache), (batch_size,), generator=generator).to(device)
        available = sample_masks(batch_size, modalities, mask, generator).to(device)
        absent = (~available).float()  # (B, M)
        tokens = {m: pooled[m].index_select(0, index) for m in modalities}
        target = (absent[:, :, None, None, None] * contributions.index_select(0, index)).sum(1)
        features, _ = projection(tokens, available, cache.image_size)  # (B, M, G, D)
        share, bias = model.projected_share(features, available, grid)
        estimate = share + bias[:, :, None, None]
        loss = (scale * (estimate - target)).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.detach())  # read once at the end: no device sync a step
    return FitResult(torch.stack(losses).tolist() if losses else [],
                     time.perf_counter() - started)
