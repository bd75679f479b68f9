"""A small network obeying the model's forward contract, to test export mechanics alone.

Per-modality conv stems of different widths, masking by ``torch.where`` on ``available``
(a learned fill for masked modalities, as a mask-token model would), a shared fusion and
a classifier. It has nothing of MMP; it exists so export and backends are tested without
depending on the real architecture's details.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmp_ros.metadata import ModelMetadata


class ContractNet(nn.Module):
    def __init__(self, metadata: ModelMetadata, width: int = 8) -> None:
        super().__init__()
        self.modalities = metadata.modalities
        self.stems = nn.ModuleDict({
            m: nn.Sequential(
                nn.Conv2d(metadata.input_channels[m], width + 2 * i, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv2d(width + 2 * i, width, 3, padding=1),
            )
            for i, m in enumerate(self.modalities)
        })
        self.fill = nn.Parameter(torch.randn(len(self.modalities), width, 1, 1))
        self.fuse = nn.Conv2d(width * len(self.modalities), width, 1)
        self.classify = nn.Conv2d(width, metadata.num_classes, 1)

    def forward(self, inputs: dict[str, torch.Tensor], available: torch.Tensor) -> torch.Tensor:
        size = next(iter(inputs.values())).shape[-2:]
        features = []
        for i, m in enumerate(self.modalities):
            real = self.stems[m](inputs[m])  # (B, W, H/2, W/2)
            mask = available[:, i].view(-1, 1, 1, 1)
            features.append(torch.where(mask, real, self.fill[i].expand_as(real)))
        fused = F.gelu(self.fuse(torch.cat(features, dim=1)))
        logits = self.classify(fused)
        return F.interpolate(logits, size=size, mode='bilinear', align_corners=False)


def with_modalities_reversed(model_file, out):
    """A copy of an exported model whose metadata lists its modalities in reverse: the
    graph's inputs keep their order, so the file no longer agrees with itself."""
    import json

    import onnx

    from mmp_ros.metadata import METADATA_KEY

    proto = onnx.load(str(model_file))
    (entry,) = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    data = json.loads(entry.value)
    data['modalities'] = data['modalities'][::-1]
    entry.value = json.dumps(data)
    onnx.save(proto, str(out))
    return out
