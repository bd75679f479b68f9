"""The frozen model's distillation targets for every training frame, computed once.

Label-free adaptation (``mmp_adapt`` with distillation) passes every frame through a
frozen model, whose side of the loss (:class:`~mmp_ros.model.DistillTargets`: the tokens
the projection reads, and its own prediction with every modality real) does not depend
on the mask drawn for the frame. When frames come back (2000 steps of 16 on the 256
frames ``mmp_ros adapt`` keeps of a recording: 125 times each) computing them once and
keeping them in memory leaves a step only the projection, the adapters and the frozen
shared network's forward and backward passes (``teacher_cache: true``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from mmp_ros.metadata import ModelMetadata
from mmp_ros.model import DistillTargets, MultimodalSegmenter
from training.config import ConfigError
from training.datasets import collate, resize_batch
from training.normalize import normalize

# The cache may take at most this share of the memory available when it starts.
MEMORY_SHARE = 0.5
# Frames a forward pass takes at least while the cache is built (training's own batch when
# larger): on the 2-core CPU 64 build it 13 to 17 % faster than adaptation's batches of 16,
# and 128 no faster than 16 (docs/performance.md, "The teacher cache in larger batches").
FORWARD_BATCH = 64


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``); None if unknown."""
    try:
        with open('/proc/meminfo', encoding='ascii') as meminfo:
            for line in meminfo:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _nbytes(tokens: dict[str, torch.Tensor], teacher: torch.Tensor) -> int:
    return sum(t.element_size() * t.numel() for t in (*tokens.values(), teacher))


class TeacherCache:
    """``targets(indices)``: the distillation targets of those dataset frames.

    Built by running ``model.distill_targets`` over ``dataset`` in order, in batches, on
    ``device`` (under the caller's autocast, as training computes them); kept in host memory
    (each process of a DDP run keeps its own) and moved to ``device`` a batch at a time.
    Stops with a :class:`ConfigError` before filling more than half the available memory.
    """

    def __init__(self, model: MultimodalSegmenter, dataset: Dataset, metadata: ModelMetadata,
                 *, batch_size: int, device: torch.device, num_workers: int = 0,
                 memory_limit: int | None = None) -> None:
        self.device = device
        modalities = metadata.modalities
        frames = len(dataset)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                            num_workers=num_workers)
        if memory_limit is None:
            free = available_memory()
            memory_limit = None if free is None else int(free * MEMORY_SHARE)
        self.tokens: dict[str, torch.Tensor]
        self.teacher: torch.Tensor
        self.image_size: tuple[int, int]
        start = 0
        for batch in loader:
            batch = resize_batch(batch, metadata.input_size, modalities)
            inputs = normalize({m: batch[m].to(device) for m in modalities}, metadata)
            targets = model.distill_targets(inputs)
            if not start:  # the first batch: allocate the whole cache
                per_frame = _nbytes(targets.tokens, targets.teacher) / len(targets.teacher)
                if memory_limit is not None and per_frame * frames > memory_limit:
                    raise ConfigError(
                        f'teacher_cache: {frames} frames need {per_frame * frames / 2**30:.1f} '
                        f'GiB ({per_frame / 2**20:.2f} MiB a frame), more than '
                        f'{memory_limit / 2**30:.1f} GiB ({MEMORY_SHARE:.0%} of the memory '
                        'available); set teacher_cache=false, or adapt on fewer frames')
                self.tokens = {m: t.new_empty((frames, *t.shape[1:]), device='cpu')
                               for m, t in targets.tokens.items()}
                self.teacher = targets.teacher.new_empty((frames, *targets.teacher.shape[1:]),
                                                         device='cpu')
                self.image_size = targets.image_size
            stop = start + len(targets.teacher)
            for m, t in targets.tokens.items():
                self.tokens[m][start:stop] = t
            self.teacher[start:stop] = targets.teacher
            start = stop
        if not start:
            raise ConfigError('teacher_cache: the training data has no frames')

    def __len__(self) -> int:
        return len(self.teacher)

    @property
    def nbytes(self) -> int:
        return _nbytes(self.tokens, self.teacher)

    def targets(self, indices: Iterable[int]) -> DistillTargets:
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return DistillTargets(
            {m: t.index_select(0, index).to(self.device, non_blocking=True)
             for m, t in self.tokens.items()},
            self.teacher.index_select(0, index).to(self.device, non_blocking=True),
            self.image_size)

    def batches(self, sampler: Iterable[list[int]]) -> Iterator[DistillTargets]:
        """The targets of each index list ``sampler`` yields."""
        for indices in sampler:
            yield self.targets(indices)
