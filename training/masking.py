"""Random non-empty modality masks, one per sample, drawn from an explicit generator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from training.config import MaskConfig


def drop_probabilities(config: MaskConfig, modalities: Sequence[str]) -> torch.Tensor:
    """(M,) drop probability of each modality; modalities a dict leaves out use 0.5."""
    drop = config.drop_probability
    if isinstance(drop, Mapping):
        return torch.tensor([float(drop.get(m, 0.5)) for m in modalities])
    return torch.full((len(modalities),), float(drop))


def sample_masks(batch_size: int, modalities: Sequence[str], config: MaskConfig,
                 generator: torch.Generator) -> torch.Tensor:
    """(B, M) bool, every row non-empty.

    With probability ``full_probability`` a row keeps every modality; otherwise each
    modality is dropped with its drop probability, and an empty row is drawn again.
    Rejection keeps the distribution exactly "independent drops, conditioned on
    non-empty"; it terminates quickly because drop probabilities are below 1.
    """
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


def step_generator(seed: int, step: int) -> torch.Generator:
    """The mask generator of one step: masks depend on (seed, step) only, so resuming and
    splitting a batch across processes draw the same masks."""
    return torch.Generator().manual_seed(seed * 7_919 + step * 104_729 + 17)
