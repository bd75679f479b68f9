"""Datasets as training sees them: built from the config, checked, batched by step.

Batches are a pure function of ``(seed, step)``: the sample order of step ``s`` does not
depend on how the run got there, so a resumed run and a 2-process DDP run see the same
samples as one uninterrupted process.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from mmp_ros.errors import InputError
from mmp_ros.modalities import MODALITIES
from training.config import DataConfig

IGNORE_INDEX = 255


class DatasetError(InputError, ValueError):
    """A dataset that cannot serve this configuration; the message says what is missing."""


def build_dataset(config: DataConfig, split: str) -> Dataset:
    """``factory(split=split, **params)`` for the ``module:callable`` in ``config.dataset``."""
    module_name, _, attribute = config.dataset.partition(':')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DatasetError(f'data.dataset: cannot import {module_name!r} ({exc})') from exc
    factory = getattr(module, attribute, None)
    if factory is None:
        raise DatasetError(f'data.dataset: {module_name!r} has no {attribute!r}')
    try:
        return factory(split=split, **config.params)
    except InputError:  # the dataset's own message already names what is wrong
        raise
    except (TypeError, ValueError) as exc:  # a parameter or split the dataset does not take
        raise DatasetError(f'data.dataset {config.dataset} refuses split {split!r} with '
                           f'data.params {dict(config.params)}: {exc}') from exc


def dataset_classes(dataset: Any) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Class names and palette from the dataset, or from the module that defines it."""
    owner = dataset
    while hasattr(owner, 'dataset') and not hasattr(owner, 'class_names'):
        owner = owner.dataset  # Subset and our wrappers
    names = getattr(owner, 'class_names', None)
    palette = getattr(owner, 'palette', None)
    for cls in type(owner).__mro__:  # a subclass defined elsewhere keeps its base's classes
        module = sys.modules.get(cls.__module__)
        if names is None and palette is None and hasattr(module, 'CLASS_NAMES'):
            names, palette = module.CLASS_NAMES, getattr(module, 'PALETTE', None)
    if names is None or palette is None:
        raise DatasetError(f'{type(owner).__name__} declares no class_names/palette (nor does '
                           f'its module {type(owner).__module__} as CLASS_NAMES/PALETTE)')
    if len(names) > IGNORE_INDEX:
        raise DatasetError(f'{type(owner).__name__} has {len(names)} classes; at most '
                           f'{IGNORE_INDEX}: label {IGNORE_INDEX} is what training ignores and '
                           "the node's mono8 labels use for no prediction")
    return tuple(str(n) for n in names), tuple(tuple(int(c) for c in rgb) for rgb in palette)


def check_modalities(dataset: Dataset, modalities: Sequence[str], *, need_label: bool,
                     name: str = 'dataset') -> None:
    """Stop with a message naming what the dataset lacks, before any training step."""
    if len(dataset) == 0:
        raise DatasetError(f'{name} is empty')
    sample = dataset[0]
    present = [k for k in sample if k not in ('label', 'available')]
    if 'available' in sample:  # datasets of this package: zeros where a modality is absent
        flags = torch.as_tensor(sample['available']).tolist()
        present = [m for m, real in zip(MODALITIES, flags, strict=True) if real]
    missing = [m for m in modalities if m not in present]
    if missing:
        raise DatasetError(f'{name} lacks modalities {missing} that the config needs; it '
                           f'provides {sorted(present)}')
    if need_label and 'label' not in sample:
        raise DatasetError(f'{name} has no "label"; method needs labels')


class UnlabelledDataset(Dataset):
    """A view of a dataset that yields only the modalities: labels are never read.

    Label-free adaptation (``mmp_adapt``) trains through this view, so no code path can
    reach a label even by mistake.
    """

    def __init__(self, dataset: Dataset, modalities: Sequence[str]) -> None:
        self.dataset = dataset
        self.modalities = tuple(modalities)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.dataset[index]
        return {m: sample[m] for m in self.modalities}


class StepBatchSampler(Sampler[list[int]]):
    """Index lists for steps ``start_step, start_step + 1, ...``; this rank's share of each.

    Step ``s`` takes positions ``s*B ... s*B+B-1`` of an endless sequence of epochs, each
    epoch a permutation drawn from ``(seed, epoch)``.
    """

    def __init__(self, size: int, global_batch: int, *, seed: int, start_step: int = 0,
                 steps: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        if global_batch % world_size:
            raise ValueError(f'batch_size {global_batch} does not split over {world_size} '
                             'processes')
        self.size, self.global_batch, self.seed = size, global_batch, seed
        self.start_step, self.steps = start_step, steps
        self.rank, self.world_size = rank, world_size

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        cached_epoch, permutation = -1, None
        local = self.global_batch // self.world_size
        while self.steps is None or step < self.start_step + self.steps:
            positions = range(step * self.global_batch, (step + 1) * self.global_batch)
            batch = []
            for position in positions[self.rank * local:(self.rank + 1) * local]:
                epoch, offset = divmod(position, self.size)
                if epoch != cached_epoch:
                    cached_epoch, permutation = epoch, self._permutation(epoch)
                batch.append(int(permutation[offset]))
            yield batch
            step += 1

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError('an endless sampler has no length')
        return self.steps


def collate(samples: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    keys = samples[0].keys()
    batch = {}
    for k in keys:
        values = [torch.as_tensor(s[k]) for s in samples]
        # torch.stack's RuntimeError was a traceback in the middle of training (a folder of
        # images of several sizes, as SUN RGB-D's cameras give)
        other = next((v for v in values if v.shape != values[0].shape), None)
        if other is not None:
            raise DatasetError(f'samples of one batch differ in size ({k}: '
                               f'{tuple(values[0].shape)} and {tuple(other.shape)}); give the '
                               'dataset a size to resize every sample to (data.params.size: '
                               '[H, W], where it takes one)')
        batch[k] = torch.stack(values)
    return batch


def resize_batch(batch: Mapping[str, torch.Tensor], size: tuple[int, int],
                 modalities: Sequence[str]) -> dict[str, torch.Tensor]:
    """``modalities`` bilinearly and ``label`` by nearest neighbour to the model's input size;
    other keys (e.g. the dataset's own ``available``) are left out."""
    out = {}
    for key in (*modalities, 'label'):
        if key not in batch:
            continue
        value = batch[key]
        if tuple(value.shape[-2:]) == tuple(size):
            out[key] = value
        elif key == 'label':
            out[key] = F.interpolate(value[:, None].float(), size=size, mode='nearest')[:, 0] \
                .to(value.dtype)
        else:
            out[key] = F.interpolate(value.float(), size=size, mode='bilinear',
                                     align_corners=False)
    return out
