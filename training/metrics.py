"""Segmentation metrics from a confusion matrix, and the per-subset evaluation loop."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmp_ros.core.metrics import Scores
from mmp_ros.core.metrics import scores as core_scores
from mmp_ros.modalities import nonempty_subsets, subset_label
from training.datasets import IGNORE_INDEX, DatasetError


def confusion_matrix(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts, rows = ground truth; ignored pixels (255) are left out.

    DatasetError for a label outside the K classes (a class id of another numbering, -1 for
    "ignore"): it was a RuntimeError of torch's about a shape or bincount's input."""
    valid = label != IGNORE_INDEX
    truth = label[valid].long()
    if truth.numel():
        low, high = (int(v) for v in torch.aminmax(truth))
        if low < 0 or high >= num_classes:
            raise DatasetError(f'a label holds class {low if low < 0 else high}, outside the '
                               f"model's {num_classes} classes (0 to {num_classes - 1}; "
                               f'{IGNORE_INDEX} is ignored)')
    index = truth * num_classes + pred[valid].long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(
        num_classes, num_classes).cpu()


def scores(confusion: torch.Tensor) -> Scores:
    """mIoU, pixel accuracy and per-class IoU of a (K, K) confusion matrix
    (:func:`mmp_ros.core.metrics.scores`, shared with the evaluation of recorded runs)."""
    return core_scores(confusion.cpu().numpy())


@dataclass
class SubsetReport:
    """Scores of one model for every evaluated modality subset."""

    modalities: tuple[str, ...]
    subsets: dict[str, Scores] = field(default_factory=dict)  # label -> scores
    cosine: dict[str, float] = field(default_factory=dict)  # projection methods only

    @property
    def full(self) -> float:
        return self.subsets['all'].miou if 'all' in self.subsets else math.nan

    @property
    def mean_missing(self) -> float:
        values = [s.miou for k, s in self.subsets.items() if k != 'all']
        return sum(values) / len(values) if values else math.nan

    @property
    def mean_all(self) -> float:
        values = [s.miou for s in self.subsets.values()]
        return sum(values) / len(values) if values else math.nan

    def to_dict(self) -> dict:
        return {
            'modalities': list(self.modalities),
            'full_miou': self.full,
            'mean_missing_miou': self.mean_missing,
            'mean_miou': self.mean_all,
            'subsets': {k: {'miou': s.miou, 'pixel_accuracy': s.pixel_accuracy,
                            'class_iou': s.class_iou} for k, s in self.subsets.items()},
            'cosine_similarity': dict(self.cosine),
        }


def subset_mask(subset: Sequence[str], modalities: Sequence[str], batch: int,
                device: torch.device) -> torch.Tensor:
    row = torch.tensor([m in subset for m in modalities], device=device)
    return row[None].expand(batch, -1)


@torch.no_grad()
def evaluate_subsets(model: nn.Module, batches: Iterable[tuple[dict, torch.Tensor]], *,
                     modalities: Sequence[str], num_classes: int,
                     subsets: Sequence[Sequence[str]] | None = None,
                     cosine: bool = False) -> SubsetReport:
    """mIoU and pixel accuracy of ``model`` for each subset (default: all non-empty ones).

    ``batches`` yields ``(normalized inputs, labels)`` already on the model's device.
    With ``cosine``, also the mean cosine similarity between projected and real tokens of
    each modality over the subsets where it is missing (per token, over channels).
    """
    subsets = list(subsets) if subsets is not None else list(nonempty_subsets(modalities))
    labels = [subset_label(s, modalities) for s in subsets]
    confusions = {k: torch.zeros(num_classes, num_classes, dtype=torch.int64) for k in labels}
    cos_sum = dict.fromkeys(modalities, 0.0)
    cos_count = dict.fromkeys(modalities, 0)
    was_training = model.training
    model.eval()
    try:
        for inputs, label in batches:
            batch = label.shape[0]
            for subset, key in zip(subsets, labels, strict=True):
                available = subset_mask(subset, modalities, batch, label.device)
                if cosine:
                    logits, aux = model.forward_train(inputs, available)
                    for m in modalities:
                        if m in subset:
                            continue
                        sim = F.cosine_similarity(aux.projected[m].float(),
                                                  aux.real[m].float(), dim=1)
                        cos_sum[m] += float(sim.mean(dim=(1, 2)).sum())
                        cos_count[m] += batch
                else:
                    logits = model(inputs, available)
                confusions[key] += confusion_matrix(logits.argmax(1), label, num_classes)
    finally:
        model.train(was_training)
    report = SubsetReport(tuple(modalities))
    report.subsets = {k: scores(c) for k, c in confusions.items()}
    if cosine:
        report.cosine = {m: cos_sum[m] / cos_count[m] for m in modalities if cos_count[m]}
    return report
