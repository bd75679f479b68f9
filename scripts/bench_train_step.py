"""CPU training steps of the ``tiny`` model, two ways side by side.

``--compare resize`` (the default): ``resize_to``'s bilinear resizing by matrix products,
both passes, against PyTorch's own (``F.interpolate`` and its backward). ``--compare
forward``: its matrix forward against ``F.interpolate``'s forward, the matrix backward in
both (as before the forward changed, 2026-11-29). ``--compare resize-layout``: its
products on the contiguous layout whatever the map's (a channels-last map copied into it,
the result contiguous, as until 2026-11-29) against in the map's own layout. ``--compare
layout``: the model all contiguous against ``train``'s CPU layout, channels-last past the
stems (two models, the same weights). ``--compare fill``: deterministic mode with its NaN
fill of every new tensor against without (what ``train`` sets). ``--compare optimizer``:
AdamW's loop over the parameters one tensor at a time against its fused kernel (what
``train`` uses since 2026-11-29, two optimizers). ``--compare fold``: the adaptation step
on the frozen model as it is against its batch norms folded into the convolutions before
them (``frozen_norms_folded``, what ``train`` adapts since 2026-11-29; the adaptation step
only). These alternate the variants in one process, under glibc's default ``malloc``, as
docs/performance.md's earlier figures were measured, or with ``--keep-freed-memory`` as
``train`` runs; ``--case`` times one kind of step alone, ``--windows`` the adaptation step
as ``--ratio`` has it. ``--ratio`` instead alternates a GPU-budget adaptation step (cached
128x128 windows, no alignment terms) with a from-scratch step and prints their ratio: what
the robustness issue's bar on adaptation time divides, side by side.
``--compare allocator``: glibc's default ``malloc`` against
``training.allocator.keep_freed_memory`` (what ``train`` sets on the CPU), each round a
fresh process of each, alternated (the setting is process-wide).

Two steps, random weights and frames at 128x160, in ``train``'s CPU layout and deterministic
mode (since 2026-11-29; before, the script left deterministic mode off), with ``train``'s
optimizer, and for adaptation its folded frozen norms, unless compared:
- ``base``: a from-scratch ``none`` step (cross-entropy on full-resolution logits), batch 128
  as at the GPU budget;
- ``adapt``: a label-free adaptation step as ``config/train_adapt.yaml`` runs it with the
  teacher cache (convolutional projection, mask-gated adapters, everything else frozen;
  distillation and alignment from precomputed targets), batch 16.

Each round times ``--base-steps``/``--adapt-steps`` steps of each variant in turn (after
a step of each to warm up); the ratio of the medians and each round's ratio are printed
(the machine is shared: compare side by side).

    PYTHONPATH=. python scripts/bench_train_step.py \
        [--compare forward|resize-layout|layout|fill|optimizer|fold|allocator | --ratio]
        [--case base|adapt] [--windows] [--keep-freed-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from mmp_ros.cli import positive_int
from mmp_ros.modalities import INPUT_CHANNELS, MODALITIES
from mmp_ros.model import ModelConfig, MultimodalSegmenter, build_model, layers
from training.allocator import keep_freed_memory
from training.config import MaskConfig
from training.masking import sample_masks
from training.train import (
    ADAPTED_PREFIXES,
    TrainStep,
    channels_last_past_the_stems,
    crop_origin,
    frozen_norms_folded,
    masked_alignment,
    soft_cross_entropy,
    use_deterministic_algorithms,
)

SIZE = (128, 160)
NUM_CLASSES = 14
WINDOW = (128, 128)  # distill_crop of the GPU-budget bases' adaptation


@contextmanager
def resizing_by(function: Any):
    """``resize_to``'s gradient path through ``function.apply(x, size)`` instead."""
    matrix = layers._BilinearResize
    layers._BilinearResize = function
    try:
        yield
    finally:
        layers._BilinearResize = matrix


def pytorch_resize():
    """``resize_to`` as PyTorch's own bilinear resizing, both passes."""
    return resizing_by(SimpleNamespace(apply=lambda x, size: F.interpolate(
        x, size=size, mode='bilinear', align_corners=False)))


class _InterpolateForward(layers._BilinearResize):
    """``F.interpolate``'s forward and the matrix backward, as before 2026-11-29."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        ctx.in_size = tuple(x.shape[-2:])
        ctx.out_size = size
        return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def interpolate_forward():
    """``resize_to`` with ``F.interpolate``'s forward, its matrix backward kept."""
    return resizing_by(_InterpolateForward)


_MatrixResize = layers._BilinearResize  # resizing_by swaps the module's name, not this


class _ContiguousProducts(_MatrixResize):
    """The matrix products on the contiguous layout whatever the map's, as until
    2026-11-29: a channels-last map is copied into it and comes out contiguous."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _MatrixResize.forward(ctx, x.contiguous(), size)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _MatrixResize.backward(ctx, grad.contiguous())


def contiguous_products():
    """``resize_to``'s products on the contiguous layout only."""
    return resizing_by(_ContiguousProducts)


@contextmanager
def nan_fill():
    """Deterministic mode's NaN fill of every new tensor, as ``train`` had it before
    2026-11-29."""
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = False


# --compare: the option of build_step it sets, and the two ways, the current one last
TWO_BUILDS = {
    'layout': ('channels_last', {'contiguous': False, 'channels-last past the stems': True}),
    'optimizer': ('fused', {'AdamW per tensor': False, 'AdamW fused': True}),
    'fold': ('fold', {'frozen norms kept': False, 'frozen norms folded': True}),
}
IN_PROCESS = {  # --compare: (the variant before, how to get it), the current code's variant
    'resize': (('PyTorch resize', pytorch_resize), 'matrix resize'),
    'forward': (('interpolate forward', interpolate_forward), 'matrix forward'),
    'fill': (('NaN fill', nan_fill), 'no fill'),
    'resize-layout': (('contiguous products', contiguous_products), 'layout kept'),
}


def frames(batch: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {m: torch.randn(batch, INPUT_CHANNELS[m], *SIZE, generator=generator)
            for m in MODALITIES}


def laid_out(model: MultimodalSegmenter, channels_last: bool) -> MultimodalSegmenter:
    """The model in ``train``'s CPU layout (``channels_last``) or all contiguous."""
    return channels_last_past_the_stems(model) if channels_last else model


def base_step(batch: int, generator: torch.Generator, *, channels_last: bool = True,
              fused: bool = True) -> Callable[[], None]:
    torch.manual_seed(0)
    model = laid_out(build_model(ModelConfig(modalities=MODALITIES, num_classes=NUM_CLASSES)),
                     channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
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


def adapt_step(batch: int, rank: int, generator: torch.Generator, *, channels_last: bool = True,
               fused: bool = True, fold: bool = True, windows: bool = False
               ) -> Callable[[], None]:
    """``windows``: as the GPU-budget bases are adapted (docs/robustness.md), on 128x128
    windows of the cached targets and without the alignment terms; otherwise as
    ``config/train_adapt.yaml`` adapts, whole frames with them."""
    torch.manual_seed(0)
    model = laid_out(build_model(ModelConfig(modalities=MODALITIES, num_classes=NUM_CLASSES,
                                             method='mmp_adapt', projection_kind='conv',
                                             projection_stride=16, mask_adapters=rank)),
                     channels_last).eval()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(ADAPTED_PREFIXES))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                                  fused=fused)
    student = frozen_norms_folded(model) if fold else model
    targets = student.distill_targets(frames(batch, generator))
    train_step = TrainStep(student, 'distill', alignment=not windows)

    masking = MaskConfig(0.0, 0.7)  # config/train_adapt.yaml's, as training adapts

    def step() -> None:
        available = sample_masks(batch, MODALITIES, masking, generator)
        cut = targets.crop(*crop_origin(targets.image_size, WINDOW, generator), WINDOW) \
            if windows else targets
        logits, alignment, teacher = train_step(cut, available)
        loss = soft_cross_entropy(logits, teacher, rows=~available.all(1))
        if alignment is not None:
            loss = loss + masked_alignment(alignment, available)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def timed(step: Callable[[], None], steps: int) -> float:
    """Seconds a step, over ``steps`` steps."""
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def compare_in_process(compare: str, case: str, args: argparse.Namespace) -> dict[str, list]:
    """Seconds a step the way before and the current way, round by round."""
    if compare in TWO_BUILDS:  # two steps built, one each way
        option, ways = TWO_BUILDS[compare]
        variants = {name: (build_step(case, args, **{option: value})[0], nullcontext)
                    for name, value in ways.items()}
    else:  # one model, the old code swapped in
        (before, setting), current = IN_PROCESS[compare]
        step = build_step(case, args)[0]
        variants = {before: (step, setting), current: (step, nullcontext)}
    steps = args.base_steps if case == 'base' else args.adapt_steps
    for step, setting in variants.values():
        with setting():
            step()
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    for _ in range(args.rounds):
        for variant, (step, setting) in variants.items():
            with setting():
                times[variant].append(timed(step, steps))
    return times


ALLOCATORS = {'glibc malloc': 'glibc', 'freed memory kept': 'kept'}


def compare_allocators(case: str, args: argparse.Namespace) -> dict[str, list]:
    """Seconds a step under each allocator setting, a fresh process of each per round."""
    times: dict[str, list[float]] = {variant: [] for variant in ALLOCATORS}
    options = [f'--threads={args.threads}', f'--base-batch={args.base_batch}',
               f'--base-steps={args.base_steps}', f'--adapt-batch={args.adapt_batch}',
               f'--adapt-steps={args.adapt_steps}', f'--rank={args.rank}',
               *(['--windows'] if args.windows and case == 'adapt' else [])]
    root = str(Path(__file__).resolve().parents[1])  # the children import the package
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        part for part in (root, os.environ.get('PYTHONPATH')) if part)}
    for _ in range(args.rounds):
        for variant, setting in ALLOCATORS.items():
            done = subprocess.run(
                [sys.executable, __file__, '--child', setting, '--case', case, *options],
                check=True, capture_output=True, text=True, env=env)
            times[variant].append(json.loads(done.stdout.splitlines()[-1])['seconds'])
    return times


def step_ratio(args: argparse.Namespace) -> None:
    """``--ratio``: a GPU-budget adaptation step (cached 128x128 windows, no alignment
    terms) against a from-scratch step, alternated round by round; the ratio of their
    medians, and what ``--adapt-total`` steps of the one cost against ``--base-total`` of
    the other (the adaptation's teacher cache and projection fit not counted). Under
    ``train``'s conditions: freed memory kept, as both kinds of run keep it."""
    keep_freed_memory()
    generator = torch.Generator().manual_seed(0)
    steps = {'base': (base_step(args.base_batch, generator), args.base_steps),
             'adapt': (adapt_step(args.adapt_batch, args.rank, generator, windows=True),
                       args.adapt_steps)}
    times: dict[str, list[float]] = {case: [] for case in steps}
    for step, _ in steps.values():
        step()
    for _ in range(args.rounds):
        for case, (step, count) in steps.items():
            times[case].append(timed(step, count))
    base, adapt = (statistics.median(times[case]) for case in steps)
    paired = [a / b for b, a in zip(*times.values(), strict=True)]
    print(f'base {base * 1e3:.0f} ms, adaptation on windows {adapt * 1e3:.1f} ms a step: '
          f'{100 * adapt / base:.2f} % (rounds {" ".join(f"{100 * r:.2f}" for r in paired)}; '
          f'their median {100 * statistics.median(paired):.2f} %)')
    print(f'{args.adapt_total} adaptation steps against {args.base_total} base steps: '
          f'{100 * args.adapt_total * adapt / (args.base_total * base):.2f} %')


def build_step(case: str, args: argparse.Namespace, **options: bool
               ) -> tuple[Callable[[], None], int]:
    """``case``'s step with ``options`` (``channels_last``, ``fused``, and for ``adapt``
    ``fold``; each True unless given: as ``train`` runs) and its steps a round."""
    generator = torch.Generator().manual_seed(0)
    if case == 'base':
        return base_step(args.base_batch, generator, **options), args.base_steps
    return (adapt_step(args.adapt_batch, args.rank, generator, windows=args.windows, **options),
            args.adapt_steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--compare', choices=(*IN_PROCESS, *TWO_BUILDS, 'allocator'),
                        help='default: resize')
    parser.add_argument('--rounds', type=positive_int, default=5)
    parser.add_argument('--threads', type=positive_int, default=2)
    parser.add_argument('--base-batch', type=positive_int, default=128)
    parser.add_argument('--base-steps', type=positive_int, default=4, help='steps a round')
    parser.add_argument('--adapt-batch', type=positive_int, default=16)
    parser.add_argument('--adapt-steps', type=positive_int, default=40, help='steps a round')
    parser.add_argument('--rank', type=positive_int, default=64, help='the adapters\' rank')
    parser.add_argument('--ratio', action='store_true',
                        help='time the GPU-budget adaptation step against the base step '
                             'instead of comparing two ways of one')
    parser.add_argument('--base-total', type=positive_int,
                        help='with --ratio: base steps a run (default 1200)')
    parser.add_argument('--adapt-total', type=positive_int,
                        help='with --ratio: adaptation steps a run (default 1800)')
    parser.add_argument('--case', choices=('base', 'adapt'),
                        help='--compare: time this kind of step alone (default: both)')
    parser.add_argument('--windows', action='store_true',
                        help="--compare: the adaptation step on cached 128x128 windows "
                             "without the alignment terms, as --ratio's (the GPU-budget "
                             "bases' adaptation)")
    parser.add_argument('--keep-freed-memory', action='store_true',
                        help="--compare: with freed memory kept, as train runs (the "
                             "comparisons otherwise run under glibc's default malloc)")
    parser.add_argument('--child', choices=tuple(ALLOCATORS.values()), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ratio and (args.compare or args.case):
        parser.error('--ratio times its own two steps: not with --compare or --case')
    if not args.ratio and (args.base_total or args.adapt_total):
        parser.error('--base-total and --adapt-total: only with --ratio (what its runs of '
                     'each step cost)')
    args.base_total, args.adapt_total = args.base_total or 1200, args.adapt_total or 1800
    if args.windows and args.case == 'base':
        parser.error('--windows: the adaptation step on windows; not with --case base')
    args.compare = args.compare or 'resize'
    if args.keep_freed_memory and args.compare == 'allocator':
        parser.error('--keep-freed-memory: --compare allocator compares it')
    if args.compare == 'fold' and args.case == 'base':
        parser.error('--compare fold times the adaptation step (a step from scratch has no '
                     'frozen norms to fold): not with --case base')
    torch.set_num_threads(args.threads)
    use_deterministic_algorithms(torch.device('cpu'))  # as ``train`` runs
    if (args.keep_freed_memory or args.child == 'kept') and not keep_freed_memory():
        raise SystemExit('keep_freed_memory: this C library is not glibc')
    if args.child:  # one round of --compare allocator: print seconds a step
        step, steps = build_step(args.case, args)
        step()
        print(json.dumps({'seconds': timed(step, steps)}))
        return
    print(f'torch {torch.__version__}, {args.threads} threads, {args.rounds} rounds')
    if args.ratio:
        step_ratio(args)
        return
    for case in (args.case,) if args.case else ('base', 'adapt'):
        if args.compare == 'fold' and case == 'base':
            continue  # a step from scratch trains its batch norms: nothing to fold
        if args.compare == 'allocator':
            times = compare_allocators(case, args)
        else:
            times = compare_in_process(args.compare, case, args)
        (old, before), (new, after) = times.items()
        ratios = [a / b for b, a in zip(before, after, strict=True)]
        change = statistics.median(after) / statistics.median(before) - 1
        print(f'{case:5s} {old} {statistics.median(before) * 1e3:7.1f} ms, {new} '
              f'{statistics.median(after) * 1e3:7.1f} ms a step: {100 * change:+.1f} % '
              f'(rounds {" ".join(f"{100 * (r - 1):+.1f}" for r in ratios)})')


if __name__ == '__main__':
    main()
