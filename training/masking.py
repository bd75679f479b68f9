"""Random non-empty modality masks, one per sample, drawn from an explicit generator."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch

from training.config import MaskConfig


def drop_probabilities(config: MaskConfig, modalities: Sequence[str]) -> torch.Tensor:
    """(M,) drop probability of each modality; modalities a dict leaves out use 0.5."""
    drop = config.drop_probability
    if isinstance(drop, Mapping):
        return torch.tensor([float(drop.get(m, 0.5)) for m in modalities])
    return torch.full((len(modalities),), float(drop))


def subset_distribution(config: MaskConfig,
                        modalities: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every non-empty mask and the probability :func:`sample_masks` gives it:
    ``(masks (S, M) bool, probabilities (S,) float64)``, S = 2^M - 1."""
    drop = drop_probabilities(config, modalities).double()
    masks = torch.tensor(list(itertools.product((True, False), repeat=len(modalities))))
    masks = masks[masks.any(1)]
    kept = torch.where(masks, 1.0 - drop, drop).prod(1)  # independent drops ...
    probabilities = kept / kept.sum()  # ... conditioned on non-empty
    full = masks.all(1).double()
    return masks, (1.0 - config.full_probability) * probabilities \
        + config.full_probability * full


def sample_masks(batch_size: int, modalities: Sequence[str], config: MaskConfig,
                 generator: torch.Generator) -> torch.Tensor:
    """(B, M) bool, every row non-empty.

    With probability ``full_probability`` a row keeps every modality; otherwise each
    modality is dropped with its drop probability, and an empty row is drawn again.
    Rejection keeps the distribution exactly "independent drops, conditioned on
    non-empty"; it terminates quickly because drop probabilities are below 1.

    With ``config.stratified`` the rows have that distribution too, but a batch is a
    systematic sample of it: B evenly spaced points, one random offset, over the subsets'
    cumulative probabilities, then shuffled. A subset of probability p then fills
    floor(B p) or ceil(B p) rows of every batch, where independent draws scatter around
    B p (label-free adaptation, where the subsets differ most in what they have to learn:
    docs/robustness.md, "The fit's learning rate, and masks spread evenly").
    """
    if config.stratified:
        return _stratified_masks(batch_size, modalities, config, generator)
    drop = drop_probabilities(config, modalities)
    full = torch.rand(batch_size, generator=generator) < config.full_probability
    masks = torch.rand(batch_size, len(modalities), generator=generator) >= drop
    empty = ~masks.any(1)
    while bool(empty.any()):
        redraw = torch.rand(int(empty.sum()), len(modalities), generator=generator) >= drop
        masks[empty] = redraw
        empty = ~masks.any(1)
    masks[full] = True
    return masks


def _stratified_masks(batch_size: int, modalities: Sequence[str], config: MaskConfig,
                      generator: torch.Generator) -> torch.Tensor:
    masks, probabilities = subset_distribution(config, modalities)
    drawn = probabilities > 0
    masks, cumulative = masks[drawn], probabilities[drawn].cumsum(0)
    cumulative = cumulative / cumulative[-1]  # ends at 1 exactly
    points = (torch.rand(1, generator=generator, dtype=torch.float64)
              + torch.arange(batch_size, dtype=torch.float64)) / batch_size
    index = torch.searchsorted(cumulative, points, right=True).clamp(max=len(masks) - 1)
    return masks[index[torch.randperm(batch_size, generator=generator)]]


def step_generator(seed: int, step: int) -> torch.Generator:
    """The mask generator of one step: masks depend on (seed, step) only, so resuming and
    splitting a batch across processes draw the same masks."""
    return torch.Generator().manual_seed(seed * 7_919 + step * 104_729 + 17)
