"""The modalities, named once, in their canonical order.

The canonical order is written into every checkpoint and every exported model;
code refers to modalities by name, never by bare index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import combinations

MODALITIES: tuple[str, ...] = ('rgb', 'depth', 'polarization', 'thermal')

# Channels of the model input for each modality (DESIGN §2).
INPUT_CHANNELS: dict[str, int] = {'rgb': 3, 'depth': 1, 'polarization': 3, 'thermal': 1}


def check_modalities(names: Sequence[str], known: Sequence[str] = MODALITIES) -> tuple[str, ...]:
    """Return ``names`` as a tuple, or raise ValueError naming the unknown or repeated ones."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f'unknown modality {unknown}; known modalities are {list(known)}')
    if len(set(names)) != len(names):
        raise ValueError(f'modality listed twice in {list(names)}')
    if not names:
        raise ValueError('at least one modality is needed')
    return tuple(names)


def nonempty_subsets(names: Sequence[str] = MODALITIES) -> Iterator[tuple[str, ...]]:
    """Every non-empty subset of ``names``, in canonical order, smallest first (15 for four)."""
    for size in range(1, len(names) + 1):
        yield from combinations(names, size)


def subset_label(subset: Sequence[str], names: Sequence[str] = MODALITIES) -> str:
    """A short stable label for a subset, e.g. ``rgb+thermal``; the full set is ``all``."""
    if set(subset) == set(names):
        return 'all'
    return '+'.join(n for n in names if n in subset)
