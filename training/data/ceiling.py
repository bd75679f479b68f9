"""The information ceiling: the best mIoU any model could reach with a subset of modalities.

The generator knows what every modality can perceive of every class (``classes.cue``). With
a subset of modalities, two classes whose cues agree in every available modality look
identical, so even a perfect segmenter can only label an object at random among its look-alike
classes. The ceiling is the mIoU of exactly that segmenter, computed in closed form rather than
learned:

For a group G of k look-alike classes with pixel shares p_c, the expected confusion matrix has
C[c, c'] = p_c / k for c, c' in G, so the IoU of class c is

    IoU_c = (p_c / k) / (p_c + P_G / k - p_c / k),   P_G = sum of p over G,

which is 1 for an identifiable class (k = 1) and 1 / (2k - 1) when the shares are equal. The
mIoU averages IoU_c over the classes present (non-zero pixel count). It is an upper bound:
noise, adverse conditions and occlusion can only take information away.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mmp_ros.modalities import MODALITIES, check_modalities, nonempty_subsets, subset_label
from training.data.classes import CLASS_NAMES, CUES


def confusion_groups(subset: Sequence[str]) -> list[tuple[int, ...]]:
    """Classes partitioned into groups that look identical with the ``subset`` of modalities."""
    subset = check_modalities(tuple(subset))
    groups: dict[tuple, list[int]] = {}
    for c in range(len(CLASS_NAMES)):
        key = tuple(CUES[m][c] for m in subset)
        groups.setdefault(key, []).append(c)
    return [tuple(g) for g in groups.values()]


def identifiable_classes(subset: Sequence[str]) -> tuple[int, ...]:
    """Classes no other class can be mistaken for with these modalities."""
    return tuple(g[0] for g in confusion_groups(subset) if len(g) == 1)


def needed_modalities(class_index: int) -> tuple[str, ...]:
    """Modalities without which ``class_index`` is no longer identifiable (from all four)."""
    return tuple(
        m
        for m in MODALITIES
        if class_index not in identifiable_classes([n for n in MODALITIES if n != m])
    )


def class_ceiling(
    subset: Sequence[str], pixel_counts: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """Per-class IoU of the perfect-but-for-look-alikes segmenter; NaN for absent classes."""
    k_classes = len(CLASS_NAMES)
    share = np.ones(k_classes) if pixel_counts is None else np.asarray(pixel_counts, float)
    if share.shape != (k_classes,) or np.any(share < 0):
        raise ValueError(
            f'pixel_counts must be {k_classes} non-negative numbers (one per class), '
            f'got shape {share.shape}'
        )
    iou = np.full(k_classes, np.nan)
    for group in confusion_groups(subset):
        k = len(group)
        total = share[list(group)].sum()
        for c in group:
            if share[c] > 0:
                iou[c] = (share[c] / k) / (share[c] + total / k - share[c] / k)
    return iou


def information_ceiling(
    subset: Sequence[str], pixel_counts: Sequence[float] | np.ndarray | None = None
) -> float:
    """Ceiling mIoU with ``subset`` of modalities.

    ``pixel_counts`` (one per class, e.g. the label histogram of an evaluation set) weights the
    look-alike confusions; without it every class counts the same.
    """
    return float(np.nanmean(class_ceiling(subset, pixel_counts)))


def ceiling_table(
    pixel_counts: Sequence[float] | np.ndarray | None = None,
    subsets: Iterable[Sequence[str]] | None = None,
) -> dict[str, float]:
    """Ceiling of every non-empty subset (15 for four modalities), keyed by subset label."""
    subsets = nonempty_subsets() if subsets is None else subsets
    return {subset_label(s): information_ceiling(s, pixel_counts) for s in subsets}


def design_report() -> dict[str, object]:
    """The facts the issue asks the class design to satisfy, for tests and the docs.

    - every modality is needed for at least one class;
    - at least half of the classes stay identifiable when any single modality is removed.
    """
    needed = {CLASS_NAMES[c]: list(needed_modalities(c)) for c in range(len(CLASS_NAMES))}
    needed_by_modality = {m: [n for n, ms in needed.items() if m in ms] for m in MODALITIES}
    identifiable_without = {
        m: [CLASS_NAMES[c] for c in identifiable_classes([n for n in MODALITIES if n != m])]
        for m in MODALITIES
    }
    return {
        'needed_modalities': needed,
        'classes_needing': needed_by_modality,
        'identifiable_without': identifiable_without,
        'every_modality_matters': all(needed_by_modality[m] for m in MODALITIES),
        'half_identifiable_without_any_one': all(
            len(v) >= len(CLASS_NAMES) / 2 for v in identifiable_without.values()
        ),
    }
