"""Per-channel normalization: statistics from the training data, applied outside the model.

The statistics travel in :class:`mmp_ros.metadata.ModelMetadata` (``normalization``);
the node's numpy preprocessing applies the same ``(x - mean) / std`` to the same
sensor representation, so training and deployment see identical model inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mmp_ros.metadata import ModelMetadata, Normalization

MIN_STD = 1e-3  # a constant channel (e.g. a modality absent from the data) must not divide by 0


def normalize(inputs: Mapping[str, torch.Tensor],
              normalization: ModelMetadata | Mapping[str, Normalization]
              ) -> dict[str, torch.Tensor]:
    """``(x - mean) / std`` per channel, for ``(C, H, W)`` or ``(B, C, H, W)`` tensors."""
    table = normalization.normalization if isinstance(normalization, ModelMetadata) \
        else normalization
    out = {}
    for name, x in inputs.items():
        stats = table[name]
        shape = (-1, 1, 1)
        mean = torch.tensor(stats.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(stats.std, dtype=x.dtype, device=x.device).view(shape)
        out[name] = (x - mean) / std
    return out


def compute_normalization(dataset: Sequence[Mapping[str, torch.Tensor]],
                          modalities: Sequence[str], max_samples: int = 64
                          ) -> dict[str, Normalization]:
    """Mean and std per channel over up to ``max_samples`` evenly spaced samples.

    Evenly spaced, not random: the statistics of a run do not depend on any seed.
    Accumulated in float64 so that thousands of pixels do not lose precision.
    """
    count = len(dataset)
    if count == 0:
        raise ValueError('cannot compute normalization from an empty dataset')
    take = count if max_samples <= 0 else min(count, max_samples)
    indices = sorted({int(i * count / take) for i in range(take)})
    sums: dict[str, torch.Tensor] = {}
    squares: dict[str, torch.Tensor] = {}
    pixels: dict[str, int] = {}
    for index in indices:
        sample = dataset[index]
        for m in modalities:
            x = torch.as_tensor(sample[m], dtype=torch.float64).flatten(1)  # (C, H*W)
            sums[m] = sums.get(m, 0) + x.sum(1)
            squares[m] = squares.get(m, 0) + (x * x).sum(1)
            pixels[m] = pixels.get(m, 0) + x.shape[1]
    table = {}
    for m in modalities:
        mean = sums[m] / pixels[m]
        var = (squares[m] / pixels[m] - mean * mean).clamp(min=0.0)
        std = var.sqrt().clamp(min=MIN_STD)
        table[m] = Normalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))
    return table
