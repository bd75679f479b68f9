"""IoU and mIoU from a confusion matrix, in numpy: shared by training and run evaluation.

Training accumulates its confusion matrices on the device (``training.metrics``); the
evaluation of a recorded run (``mmp_ros.evaluation``) accumulates them from label images in
a bag, without torch. Both turn them into scores here, so a mIoU means the same everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255  # ground truth without a class, and the node's "no prediction"


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K + 1) int64 counts, rows = ground truth, columns = prediction; the last column
    counts pixels without a prediction (255, or an id outside the K classes).

    Ground-truth pixels labelled 255 are left out. A pixel without a prediction is a miss of
    its ground-truth class (it enlarges that class's union) and a false positive of none.
    """
    pred = np.asarray(pred)
    label = np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f'prediction {pred.shape} and label {label.shape} differ in shape')
    valid = label != IGNORE_INDEX
    truth = label[valid].astype(np.int64)
    guess = pred[valid]
    if not np.can_cast(guess.dtype, np.int64):  # floats, uint64: as integers (truncated)
        guess = guess.astype(np.int64)
    if truth.size and (truth.max() >= num_classes or truth.min() < 0):
        wrong = int(truth.min()) if truth.min() < 0 else int(truth.max())
        raise ValueError(f'ground-truth class {wrong} outside {num_classes} classes')
    columns = num_classes + 1
    # One array of 8-byte indexes, made in place, the prediction kept in its own type: with
    # five (2 MB alive at once at 240 x 320), glibc gave the memory back after each label image
    # and faulted it in again for the next (6 s of 24 in the kernel evaluating 8000 frames).
    known = (guess >= 0) & (guess < num_classes)
    truth *= columns
    np.add(truth, guess, out=truth, where=known)
    np.add(truth, num_classes, out=truth, where=~known)
    return np.bincount(truth, minlength=num_classes * columns).reshape(num_classes, columns)


@dataclass
class Scores:
    miou: float  # percent, mean over classes present in prediction or ground truth
    pixel_accuracy: float  # percent
    class_iou: list[float]  # percent per class, NaN where the class never occurs


def scores(confusion: np.ndarray) -> Scores:
    """mIoU, pixel accuracy and per-class IoU (percent) of a (K, K) confusion matrix, or of a
    (K, K + 1) one whose last column counts pixels without a prediction."""
    confusion = np.asarray(confusion, dtype=np.float64)
    classes = confusion.shape[0]
    if confusion.ndim != 2 or confusion.shape[1] not in (classes, classes + 1):
        raise ValueError(f'confusion matrix of shape {confusion.shape}: expected (K, K) or '
                         '(K, K + 1)')
    tp = np.diag(confusion[:, :classes])
    union = confusion[:, :classes].sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    present = ~np.isnan(iou)
    miou = float(iou[present].mean()) * 100 if present.any() else math.nan
    total = float(confusion.sum())
    accuracy = float(tp.sum()) / total * 100 if total else math.nan
    return Scores(miou, accuracy, [float(v) * 100 for v in iou])
