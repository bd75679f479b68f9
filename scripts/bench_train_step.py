"""CPU training steps of the ``tiny`` model with ``resize_to``'s backward (two matrix
products) against PyTorch's own bilinear backward, alternated in one process.

Two steps, random weights and frames at 128x160:
- ``base``: a from-scratch ``none`` step (cross-entropy on full-resolution logits), batch 128
  as at the GPU budget;
- ``adapt``: a label-free adaptation step as ``config/train_adapt.yaml`` runs it with the
  teacher cache (convolutional projection, mask-gated adapters, everything else frozen;
  distillation and alignment from precomputed targets), batch 16.

Each round times ``--steps`` steps of each variant in turn; the ratio of the medians and
each round's ratio are printed (the machine is shared: compare side by side).

    PYTHONPATH=. python scripts/bench_train_step.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F

from mmp_ros.modalities import INPUT_CHANNELS, MODALITIES
from mmp_ros.model import ModelConfig, build_model, layers
from training.config import MaskConfig
from training.masking import sample_masks
from training.train import ADAPTED_PREFIXES, TrainStep, masked_alignment, soft_cross_entropy

SIZE = (128, 160)
NUM_CLASSES = 14


@contextmanager
def pytorch_backward():
    """``resize_to`` with PyTorch's own backward, as before the matrix backward."""
    matrix = layers._BilinearResize.apply
    layers._BilinearResize.apply = lambda x, size: F.interpolate(
        x, size=size, mode='bilinear', align_corners=False)
    try:
        yield
    finally:
        layers._BilinearResize.apply = matrix


def frames(batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {m: torch.randn(batch, INPUT_CHANNELS[m], *SIZE, generator=generator)
            for m in MODALITIES}


def base_step(batch: int, generator: torch.Generator) -> Callable[[], None]:
    model = build_model(ModelConfig(modalities=MODALITIES, num_classes=NUM_CLASSES)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = frames(batch, generator)
    labels = torch.randint(0, NUM_CLASSES, (batch, *SIZE), generator=generator)
    available = torch.ones(batch, len(MODALITIES), dtype=torch.bool)

    def step() -> None:
        logits, _ = model.forward_train(inputs, available)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def adapt_step(batch: int, rank: int, generator: torch.Generator) -> Callable[[], None]:
    model = build_model(ModelConfig(modalities=MODALITIES, num_classes=NUM_CLASSES,
                                    method='mmp_adapt', projection_kind='conv',
                                    projection_stride=16, mask_adapters=rank)).eval()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(ADAPTED_PREFIXES))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    targets = model.distill_targets(frames(batch, generator))
    train_step = TrainStep(model, 'distill')

    masking = MaskConfig(0.0, 0.7)  # config/train_adapt.yaml's, as training adapts

    def step() -> None:
        available = sample_masks(batch, MODALITIES, masking, generator)
        logits, alignment, teacher = train_step(targets, available)
        loss = masked_alignment(alignment, available) \
            + soft_cross_entropy(logits, teacher, rows=~available.all(1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def compare(step: Callable[[], None], steps: int, rounds: int) -> tuple[float, float, list]:
    """Median seconds a step with PyTorch's backward and with the matrix one; each round's
    ratio."""
    with pytorch_backward():
        step()
    step()
    times: dict[str, list[float]] = {'pytorch': [], 'matrix': []}
    for _ in range(rounds):
        for variant in times:
            with pytorch_backward() if variant == 'pytorch' else nullcontext():
                started = time.perf_counter()
                for _ in range(steps):
                    step()
                times[variant].append((time.perf_counter() - started) / steps)
    ratios = [m / p for p, m in zip(times['pytorch'], times['matrix'], strict=True)]
    return statistics.median(times['pytorch']), statistics.median(times['matrix']), ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--base-batch', type=int, default=128)
    parser.add_argument('--base-steps', type=int, default=4, help='steps a round')
    parser.add_argument('--adapt-batch', type=int, default=16)
    parser.add_argument('--adapt-steps', type=int, default=40, help='steps a round')
    parser.add_argument('--rank', type=int, default=64, help='the adapters\' rank')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    cases = (('base', base_step(args.base_batch, generator), args.base_steps),
             ('adapt', adapt_step(args.adapt_batch, args.rank, generator), args.adapt_steps))
    print(f'torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds')
    for name, step, steps in cases:
        pytorch, matrix, ratios = compare(step, steps, args.rounds)
        print(f'{name:5s} PyTorch backward {pytorch * 1e3:7.1f} ms, matrix backward '
              f'{matrix * 1e3:7.1f} ms a step: {100 * (matrix / pytorch - 1):+.1f} % '
              f'(rounds {" ".join(f"{100 * (r - 1):+.1f}" for r in ratios)})')


if __name__ == '__main__':
    main()
