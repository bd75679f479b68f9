"""The deployable graph around a segmentation model: what export traces and torch runs.

The exported contract (DESIGN §4) takes one tensor per modality and a float ``available``
mask, and returns ``labels`` (int32), ``confidence`` (max softmax) and optionally
``logits``. Export and the torch backend both run this one module, so the two cannot
drift apart in how labels and confidence are derived.

``available`` enters the graph as float32 (1 = real, 0 = masked) and is turned into
bool inside it: float is the one input type every backend binds the same way (TensorRT
handles bool I/O, but float keeps engine buffers and host conversion uniform), and the
``> 0.5`` threshold makes the graph indifferent to whether a caller passes 0/1 floats
or booleans cast to float.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmp_ros.inference.backend import (
    AVAILABLE_INPUT,
    CONFIDENCE_OUTPUT,
    LABELS_OUTPUT,
    LOGITS_OUTPUT,
)


class DeployGraph(nn.Module):
    """Positional modality inputs + ``available`` -> labels, confidence (and logits).

    ``model`` obeys the project's forward contract:
    ``model(inputs: dict[str, (B, C, H, W)], available: (B, M) bool) -> logits (B, K, H, W)``.
    Positional inputs (in ``modalities`` order) rather than a dict keep the exported input
    names and order explicit.
    """

    def __init__(self, model: nn.Module, modalities: Sequence[str], *, with_logits: bool) -> None:
        super().__init__()
        self.model = model
        self.modalities = tuple(modalities)
        self.with_logits = with_logits

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        *images, available = tensors
        inputs = dict(zip(self.modalities, images, strict=True))
        logits = self.model(inputs, available > 0.5)  # (B, K, H, W)
        top, labels = logits.max(dim=1, keepdim=True)  # (B, 1, H, W) each
        # max softmax = 1 / sum_k exp(l_k - max): no full softmax over the class axis,
        # which ONNX Runtime runs as transpose + softmax + transpose (a third of the
        # tiny model's CPU time at 240x320).
        confidence = torch.exp(logits - top).sum(dim=1).reciprocal()  # (B, H, W)
        outputs = (labels.squeeze(1).to(torch.int32), confidence)
        return (*outputs, logits) if self.with_logits else outputs

    @property
    def output_names(self) -> tuple[str, ...]:
        names = (LABELS_OUTPUT, CONFIDENCE_OUTPUT)
        return (*names, LOGITS_OUTPUT) if self.with_logits else names

    @property
    def input_names(self) -> tuple[str, ...]:
        return (*self.modalities, AVAILABLE_INPUT)
