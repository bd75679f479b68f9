"""The synthetic data as a torch ``Dataset``: scene i of a split is rendered on demand.

Map-style on purpose: sample i is a pure function of (split, i, size), so DataLoader workers,
shuffling and resumption need no shared state, and any sample can be regenerated bit for bit.

Every dataset in this package yields the same sample dict (``training.data`` docs):

- one float32 tensor per modality of ``mmp_ros.modalities.MODALITIES``, (C, H, W), in the
  sensor representation of docs/architecture.md (zeros where the dataset lacks the modality);
- ``available``: (M,) bool, which modalities are real, in canonical order;
- ``label``: (H, W) int64 class ids, 255 = ignore.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from torch.utils.data import Dataset

from mmp_ros.modalities import INPUT_CHANNELS, MODALITIES
from training.data.classes import CLASS_NAMES, PALETTE
from training.data.decode import decode_frame
from training.data.render import SensorImages, render
from training.data.scene import (
    SPLIT_CAPACITY,
    Scene,
    SceneError,
    frame_size_problem,
    make_split,
    sample_scene,
)


def to_sample(
    representation: dict[str, np.ndarray], label: np.ndarray, size: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Build the common sample dict; modalities missing from ``representation`` become zeros."""
    sample: dict[str, torch.Tensor] = {}
    available = []
    for name in MODALITIES:
        if name in representation:
            sample[name] = torch.from_numpy(np.ascontiguousarray(representation[name]))
            available.append(True)
        else:
            sample[name] = torch.zeros((INPUT_CHANNELS[name], *size), dtype=torch.float32)
            available.append(False)
    sample['available'] = torch.tensor(available, dtype=torch.bool)
    sample['label'] = torch.from_numpy(label.astype(np.int64))
    return sample


class SyntheticDataset(Dataset):
    """``length`` scenes of ``split`` at ``size`` = (height, width), rendered on access.

    ``start`` offsets the scene indices (to continue a split), ``polarization`` chooses whether
    the polarization input goes through the raw IMX250MZR mosaic ('mosaic', as a node reading
    the camera's raw topic) or the four full-resolution intensities ('intensities').
    """

    class_names = CLASS_NAMES
    palette = PALETTE

    def __init__(
        self,
        split: str = 'train',
        size: tuple[int, int] = (128, 160),
        length: int = 1000,
        *,
        start: int = 0,
        polarization: str = 'intensities',
    ) -> None:
        for name, value in (('length', length), ('start', start)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise SceneError(f'{name} must be a whole number of scenes, got {value!r}')
        if length <= 0 or start < 0 or start + length > SPLIT_CAPACITY:
            raise SceneError(
                f'scenes [{start}, {start + length}) do not fit split capacity {SPLIT_CAPACITY}'
            )
        if len(size) != 2:
            raise SceneError(f'size must be (height, width), got {size}')
        if problem := frame_size_problem(*size):
            raise SceneError(f'size {problem}')
        if polarization not in ('intensities', 'mosaic'):
            raise ValueError(
                f"polarization must be 'intensities' or 'mosaic', not {polarization!r}"
            )
        if polarization == 'mosaic' and (size[0] % 2 or size[1] % 2):
            raise ValueError(f"polarization 'mosaic' (2x2 polarizer blocks) needs an even "
                             f'height and width, got size {tuple(size)}')
        make_split(split, start)  # validates the split name
        self.split = split
        self.size = (int(size[0]), int(size[1]))
        self.length = int(length)
        self.start = int(start)
        self.polarization = polarization

    def __len__(self) -> int:
        return self.length

    def seed(self, index: int) -> int:
        """The seed of scene ``index``; negative indexes count from the end, as a list's."""
        if not -self.length <= index < self.length:
            raise IndexError(f'index {index} out of range for {self.length} scenes')
        return make_split(self.split, self.start + index % self.length)

    def scene(self, index: int) -> Scene:
        height, width = self.size
        return sample_scene(self.seed(index), width, height, self.split)

    def raw(self, index: int) -> SensorImages:
        """The frame in ROS encodings (what the CLI writes to disk)."""
        return render(self.scene(index))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        images = self.raw(index)
        return to_sample(decode_frame(images, self.polarization), images.label, self.size)
