"""A tiny learnable multimodal dataset for the model and training tests.

Each sample is a 16x16 scene of vertical bands of three classes. Every class shows in
some modalities and not others, so that masking modalities matters: rgb separates
class 0 from the rest, depth separates 1 from 2, thermal repeats rgb's cue, and
polarization repeats depth's. Deterministic per index.
"""

from __future__ import annotations

import torch

CLASS_NAMES = ('floor', 'wall', 'person')
PALETTE = ((128, 64, 128), (70, 70, 70), (220, 20, 60))
MODALITIES = ('rgb', 'depth', 'polarization', 'thermal')


class CueDataset(torch.utils.data.Dataset):
    def __init__(self, split: str = 'train', size: int = 24, height: int = 16, width: int = 16,
                 modalities: tuple[str, ...] = MODALITIES, seed: int = 0,
                 label_mode: str = 'real') -> None:
        self.split, self.size, self.height, self.width = split, size, height, width
        self.modalities = tuple(modalities)
        self.seed = seed + {'train': 0, 'val': 1000, 'test': 2000}.get(split, 3000)
        self.label_mode = label_mode  # 'real' | 'zeros' | 'random': labels only, same images

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 10_007 + index)
        h, w = self.height, self.width
        columns = torch.randint(0, 3, (4,), generator=g).repeat_interleave(w // 4)
        label = columns[None].expand(h, w).clone()
        noise = lambda c: 0.1 * torch.randn(c, h, w, generator=g)  # noqa: E731
        is0, is2 = (label == 0).float(), (label == 2).float()
        sample = {
            'rgb': torch.stack([is0, 1 - is0, 0.5 * torch.ones(h, w)]) + noise(3),
            'depth': (1.0 + 2.0 * is2)[None] + noise(1),
            'polarization': torch.stack([is2, -is2, 0.5 * is2]) + noise(3),
            'thermal': (20.0 + 10.0 * is0)[None] + noise(1),
        }
        sample = {m: sample[m].float() for m in self.modalities}
        if self.label_mode == 'zeros':
            label = torch.zeros_like(label)
        elif self.label_mode == 'random':
            label = torch.randint(0, 3, (h, w), generator=g)
        sample['label'] = label.long()
        return sample
