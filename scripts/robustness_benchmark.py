"""Robustness benchmark: every method with the same budget and seed, on the generator's data.

Trains ``none``, ``dropout``, ``mask_token`` and ``mmp`` (and ``mmp_adapt`` from the
``none`` model, label-free), then the ablations, evaluates each on the test and OOD
splits for every modality subset, measures the projection's compute overhead on this
CPU, and writes ``results.json`` plus ``docs/robustness.md``.

Resumable run by run: a finished run is skipped, an interrupted one resumes from its
checkpoint, and results are saved after every run. A run in ``--out`` begun with other
settings (steps, batch, scenes, size, learning rate, masking) is refused, not resumed or
kept: another budget goes in another ``--out``. Runs go in priority order and stop
being started when ``--time-budget-s`` would be exceeded, so a fixed device lease always
ends with results on disk.

    PYTHONPATH=. python scripts/robustness_benchmark.py --device cuda --steps 1500 \\
        --batch-size 32 --train-scenes 4000 --num-workers 12 --out out/robustness
    PYTHONPATH=. python scripts/robustness_benchmark.py --report-only --out out/robustness
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmp_ros.atomic import replace_atomically  # noqa: E402
from mmp_ros.cli import non_negative_float, non_negative_int, positive_int  # noqa: E402
from mmp_ros.errors import InputError, output_file, output_folder  # noqa: E402
from mmp_ros.modalities import MODALITIES, nonempty_subsets, subset_label  # noqa: E402
from mmp_ros.model import (  # noqa: E402
    CheckpointError,
    ModelConfig,
    build_model,
    checkpoint_step,
    load_checkpoint,
    read_checkpoint,
)
from mmp_ros.model.segmenter import MaskGatedAdapter  # noqa: E402
from training.config import ConfigError, load_config  # noqa: E402
from training.data.ceiling import ceiling_table  # noqa: E402
from training.data.classes import CLASS_NAMES, PALETTE  # noqa: E402
from training.data.dataset import SyntheticDataset  # noqa: E402
from training.data.scene import frame_size_problem  # noqa: E402
from training.datasets import collate  # noqa: E402
from training.evaluate import bar_chart, cosine_table, markdown_table  # noqa: E402
from training.metrics import Scores, SubsetReport, evaluate_subsets  # noqa: E402
from training.train import (  # noqa: E402
    ADAPTED_PREFIXES,
    batches_for_eval,
    resolve_device,
    train,
)

METHODS = ('none', 'dropout', 'mask_token', 'mmp')
MASKING = ('drop', 'full')  # ablations of the masking schedule, which dropout shares


def as_overrides(fields: dict) -> tuple[str, ...]:
    """ModelConfig fields as training's command-line overrides."""
    return tuple(f'model.{key}={value}' for key, value in fields.items())


# ModelConfig fields of the variants ablated below
CONV = {'projection_kind': 'conv', 'projection_stride': 16}
ADAPTERS = {'mask_adapters': 32}  # config/train_adapt.yaml's until 2026-11-28
LARGE_ADAPTERS = {'mask_adapters': 64}  # config/train_adapt.yaml's since
CONV_PROJECTION = as_overrides(CONV)
# config/train_adapt.yaml's projection and optimizer (the benchmark's defaults are training's)
CONV_DISTILL = (*CONV_PROJECTION, 'distillation_weight=1', 'optim.lr=0.006')
CONV_ADAPTERS = (*CONV_DISTILL, *as_overrides(ADAPTERS))
# config/train_adapt.yaml's budget and masking since 2026-11-28
DROP_07 = ('mask.drop_probability=0.7',)
ADAPT_2000_DROP_07 = ('steps=2000', *DROP_07)
# How the GPU-budget bases (batches of 128) are adapted on this CPU: the teacher cache, batches
# of 16 on 128x128 windows of the frame, no alignment loss (docs/robustness.md, "Windows of the
# frame, and the base timed again" and after); the steps are --ablation-steps.
WINDOWS = ('batch_size=16', 'teacher_cache=true', 'distill_crop=[128,128]', 'alignment_weight=0')
# ... and since the twenty-second session, with a head start: the projection fitted alone on
# the teacher cache's tokens before distillation (training/projection_fit.py), at the
# learning rate the fit had until the twenty-fourth session ...
PROJECTION_FIT = ('projection_fit.steps=1000', 'projection_fit.lr=0.003')
# ... and since the twenty-fourth: the fit at 0.01 (its default since), and every batch's
# masks spread over the subsets as evenly as their probabilities allow (mask.stratified)
EVEN_FIT = ('projection_fit.steps=1000', 'projection_fit.lr=0.01', 'mask.stratified=true')
FILM = as_overrides({'mask_conditioning': 'true'})
FULL_PASS = ('mask.full_pass=true',)
GATED = f"mask-gated adapters (rank {ADAPTERS['mask_adapters']})"
# name -> (what it varies, overrides of the ablated run; 'steps=N' sets its own budget)
ABLATIONS = {
    'default': ('nothing: the defaults, at the ablation budget', []),
    'stage_stem': ('projection after the stem', ['model.projection_stage=stem']),
    'tokens_1': ('1 aggregated token per modality', ['model.aggregate_stride=0']),
    'tokens_80': ('80 aggregated tokens per modality', ['model.aggregate_stride=16']),
    'align_0': ('alignment weight 0', ['alignment_weight=0']),
    'align_3': ('alignment weight 3', ['alignment_weight=3']),
    'drop_0.3': ('drop probability 0.3', ['mask.drop_probability=0.3']),
    'drop_0.7': ('drop probability 0.7', ['mask.drop_probability=0.7']),
    'full_0.5': ('full set sampled half the time', ['mask.full_probability=0.5']),
    'full_0.8': ('full set sampled 8 times in 10', ['mask.full_probability=0.8']),
    'full_pass': ('every sample also passed with every modality (twice the compute of a step)',
                  [*FULL_PASS]),
    'full_tail_0.1': ('every modality in the last tenth of the steps', ['mask.full_tail=0.1']),
    'full_tail_0.2': ('every modality in the last fifth of the steps', ['mask.full_tail=0.2']),
    'full_pass_half': ('full_pass in 500 steps: about the compute of 1000 steps without it',
                       [*FULL_PASS, 'steps=500']),
    'film_full_pass': ('film and full_pass together', [*FILM, *FULL_PASS]),
    'query_16': ('query grid stride 16 (4x the cells)', ['model.projection_stride=16']),
    'film': ('fused map scaled and shifted by which modalities are real', [*FILM]),
    'adapters': (f'{GATED} after each shared-encoder stage', [*as_overrides(ADAPTERS)]),
    'conv': ('convolutional projection (stride 16) instead of attention', [*CONV_PROJECTION]),
    'distill_1': ("plus distillation from the frozen base's own all-modality prediction "
                  '(label-free), weight 1', ['distillation_weight=1']),
    'conv_distill': ('convolutional projection (stride 16) with distillation, lr 0.006',
                     [*CONV_DISTILL]),
    'conv_fast': ('convolutional projection with distillation in 100 steps',
                  [*CONV_DISTILL, 'steps=100']),
    'conv_adapters': (f'convolutional projection with distillation, plus {GATED} after each '
                      'shared-encoder stage', [*CONV_ADAPTERS]),
    'conv_adapters_fast': ('conv_adapters in 100 steps', [*CONV_ADAPTERS, 'steps=100']),
    'conv_adapters_long': ('conv_adapters in 1000 steps', [*CONV_ADAPTERS, 'steps=1000']),
    'conv_adapters_2000': ('conv_adapters in 2000 steps', [*CONV_ADAPTERS, 'steps=2000']),
    'conv_adapters_2000_drop_0.7': ('conv_adapters in 2000 steps, drop probability 0.7',
                                    [*CONV_ADAPTERS, *ADAPT_2000_DROP_07]),
    'conv_adapters_cached': ("conv_adapters with the frozen base's side of the loss computed "
                             'once per frame (teacher_cache)',
                             [*CONV_ADAPTERS, 'teacher_cache=true']),
    'conv_adapters_r64_long': (
        f"conv_adapters of rank {LARGE_ADAPTERS['mask_adapters']} in 1000 steps",
        [*CONV_DISTILL, *as_overrides(LARGE_ADAPTERS), 'steps=1000']),
    'conv_adapters_r64_2000_drop_0.7': (
        f"conv_adapters of rank {LARGE_ADAPTERS['mask_adapters']} in 2000 steps, "
        'drop probability 0.7',
        [*CONV_DISTILL, *as_overrides(LARGE_ADAPTERS), *ADAPT_2000_DROP_07]),
    'conv_adapters_r64_windows': (
        f"conv_adapters of rank {LARGE_ADAPTERS['mask_adapters']}, drop probability 0.7, in "
        'batches of 16 on cached 128x128 windows, without the alignment loss',
        [*CONV_DISTILL, *as_overrides(LARGE_ADAPTERS), *DROP_07, *WINDOWS]),
    'conv_adapters_r64_windows_fit': (
        'conv_adapters_r64_windows with the projection first fitted on the cached tokens '
        f'({PROJECTION_FIT[0]})',
        [*CONV_DISTILL, *as_overrides(LARGE_ADAPTERS), *DROP_07, *WINDOWS, *PROJECTION_FIT]),
    'conv_adapters_r64_windows_even_fit': (
        'conv_adapters_r64_windows with the projection fitted first at learning rate 0.01, '
        "and every batch's masks spread over the subsets by their probabilities (stratified)",
        [*CONV_DISTILL, *as_overrides(LARGE_ADAPTERS), *DROP_07, *WINDOWS, *EVEN_FIT]),
}
# conv_adapters_r64_windows_even_fit scaled down to this page's budget (a thirty-first
# session): its fixed 1000 fit steps alone are over a tenth of a 170 s base; each of these
# splits about 14 s between the fit and the window steps.
ABLATIONS.update({
    f'conv_adapters_r64_windows_even_fit_{fit}_{steps}': (
        f'conv_adapters_r64_windows_even_fit with {fit} fit steps, then {steps} window steps',
        [*CONV_DISTILL, *as_overrides(LARGE_ADAPTERS), *DROP_07, *WINDOWS, *EVEN_FIT,
         f'projection_fit.steps={fit}', f'steps={steps}'])
    for fit, steps in ((200, 200), (300, 150), (500, 100))})
# label-free adaptation's alone
ADAPT_ONLY = ('distill_1', 'conv_distill', 'conv_fast', 'conv_adapters', 'conv_adapters_fast',
              'conv_adapters_long', 'conv_adapters_2000', 'conv_adapters_2000_drop_0.7',
              'conv_adapters_r64_long', 'conv_adapters_r64_2000_drop_0.7',
              'conv_adapters_cached', 'conv_adapters_r64_windows',
              'conv_adapters_r64_windows_fit', 'conv_adapters_r64_windows_even_fit',
              *(n for n in ABLATIONS if n.startswith('conv_adapters_r64_windows_even_fit_')))
# change the network every from-scratch method shares
SHARED_MODEL = ('film', 'adapters', 'film_full_pass')
# The rows of the summary over seeds: label -> run name prefix (runs are <prefix>_s<seed>).
SUMMARY_ROWS = {**{m: m for m in METHODS},
                'dropout + film': 'ablation_dropout_film',
                'mmp + film': 'ablation_film',
                'dropout + full pass': 'ablation_dropout_full_pass',
                'mmp + full pass': 'ablation_full_pass',
                'dropout + full pass, 500 steps': 'ablation_dropout_full_pass_half',
                'mmp + full pass, 500 steps': 'ablation_full_pass_half',
                'dropout + film + full pass': 'ablation_dropout_film_full_pass',
                'mmp + film + full pass': 'ablation_film_full_pass',
                'dropout + full 0.8': 'ablation_dropout_full_0.8',
                'mmp + full 0.8': 'ablation_full_0.8',
                'mmp_adapt': 'mmp_adapt',
                'mmp_adapt + distillation': 'ablation_adapt_distill_1',
                'mmp_adapt, conv + distillation': 'ablation_adapt_conv_distill',
                'mmp_adapt, conv + distillation, 100 steps': 'ablation_adapt_conv_fast',
                'mmp_adapt, conv + distillation + adapters': 'ablation_adapt_conv_adapters',
                'mmp_adapt, conv + distillation + adapters, 100 steps':
                    'ablation_adapt_conv_adapters_fast',
                'mmp_adapt, conv + distillation + adapters, 1000 steps':
                    'ablation_adapt_conv_adapters_long',
                'mmp_adapt, conv + distillation + adapters, 2000 steps':
                    'ablation_adapt_conv_adapters_2000',
                'mmp_adapt, conv + distillation + adapters, 2000 steps, drop 0.7':
                    'ablation_adapt_conv_adapters_2000_drop_0.7',
                'mmp_adapt, conv + distillation + adapters of rank 64, 1000 steps':
                    'ablation_adapt_conv_adapters_r64_long',
                'mmp_adapt, conv + distillation + adapters of rank 64, 2000 steps, drop 0.7':
                    'ablation_adapt_conv_adapters_r64_2000_drop_0.7'}
# Each summary row of mmp trained from scratch against dropout's row trained the same way.
MASKED_PAIRS = {name: 'dropout' + name.removeprefix('mmp') for name in SUMMARY_ROWS
                if name == 'mmp' or name.startswith('mmp + ')}
ABLATION_PREFIX = {'mmp': 'ablation_', 'mmp_adapt': 'ablation_adapt_',
                   'dropout': 'ablation_dropout_'}


def ablation_applies(name: str, method: str) -> bool:
    """The alignment weight only scales the loss of mmp_adapt by alignment alone, dropout
    has no projection, distillation needs a frozen base, and a frozen base keeps its own
    network: each is ablated only in what it has."""
    if method == 'dropout':
        return name == 'default' or name in SHARED_MODEL or name.split('_')[0] in MASKING
    if method == 'mmp_adapt':
        return not name.startswith(('align_', 'full_')) and name not in SHARED_MODEL
    return name not in ADAPT_ONLY


def save_text(path: Path, text: str) -> None:
    """A benchmark stopped while saving leaves the file as it was, never half of it."""
    replace_atomically(path, lambda partial: partial.write_text(text))


# --- data ----------------------------------------------------------------------------------


class CachedScenes(Dataset):
    """Rendered scenes held in memory: every run of the benchmark trains on the same frames
    without paying for rendering again."""

    class_names = CLASS_NAMES
    palette = PALETTE

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors['label'])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[index] for k, v in self.tensors.items()}


def cached_split(split: str, count: int, size: tuple[int, int], cache: Path,
                 workers: int, polarization: str) -> CachedScenes:
    path = cache / f'{split}_{count}_{size[0]}x{size[1]}_{polarization}.pt'
    if path.is_file():
        return CachedScenes(torch.load(path, weights_only=True))
    started = time.perf_counter()
    loader = DataLoader(SyntheticDataset(split, size=size, length=count,
                                         polarization=polarization),
                        batch_size=32, num_workers=workers, collate_fn=collate)
    parts = [{k: v for k, v in batch.items() if k != 'available'} for batch in loader]
    tensors = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    tensors['label'] = tensors['label'].to(torch.uint8)  # 14 classes and 255: a byte
    cache.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda partial: torch.save(tensors, partial))
    print(f'rendered {count} {split} scenes in {time.perf_counter() - started:.1f} s',
          flush=True)
    return CachedScenes(tensors)


class LongLabels(Dataset):
    """Cached scenes with int64 labels, as training expects."""

    def __init__(self, data: CachedScenes, description: str) -> None:
        self.data = data
        self.description = description  # what a checkpoint's provenance records
        self.class_names, self.palette = data.class_names, data.palette

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.data[index]
        sample['label'] = sample['label'].long()
        return sample


# --- runs ----------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    method: str
    overrides: list[str] = field(default_factory=list)
    steps: int = 0
    seed: int = 0
    base: str = ''  # run name whose checkpoint mmp_adapt adapts
    varies: str = ''
    full_only: bool = False  # evaluated with all its modalities only (a dedicated model)


def planned_runs(args: argparse.Namespace) -> list[Run]:
    runs = []
    for seed in args.seeds:
        runs += [Run(f'{m}_s{seed}', m, steps=args.steps, seed=seed) for m in args.methods]
        if args.adapt_steps and 'none' in args.methods:
            runs.append(Run(f'mmp_adapt_s{seed}', 'mmp_adapt', steps=args.adapt_steps,
                            seed=seed, base=f'none_s{seed}'))
        if args.dedicated:  # the full set's dedicated model is none_s<seed>
            runs += [Run(dedicated_name(subset, seed), 'none', [
                f'modalities=[{",".join(subset)}]'], steps=args.steps, seed=seed,
                varies=f'dedicated: trained on {subset_label(subset)} only', full_only=True)
                for subset in nonempty_subsets(MODALITIES) if len(subset) < len(MODALITIES)]
    seed = args.seeds[0]
    for method, name in itertools.product(args.ablation_methods, args.ablations):
        if not ablation_applies(name, method):
            continue
        varies, overrides = ABLATIONS[name]
        adapting = method == 'mmp_adapt'
        steps = args.ablation_steps or (args.adapt_steps if adapting else args.steps)
        own = [o for o in overrides if o.startswith('steps=')]
        if own:
            steps = int(own[-1].split('=', 1)[1])
        runs.append(Run(f'{ABLATION_PREFIX[method]}{name}_s{seed}', method,
                        [o for o in overrides if o not in own], steps, seed,
                        base=f'none_s{seed}' if adapting else '', varies=varies))
    return runs


SETTINGS_NAME = 'benchmark_settings.json'  # in each run's folder, written as it starts


def run_settings(run: Run, args: argparse.Namespace, out: Path) -> dict:
    """What a run's numbers depend on besides the code: a run in ``--out`` begun with other
    settings is another run, neither to resume nor to keep. An adaptation's include the
    weights of its base as they are in ``out`` now: a base trained again since (its folder
    deleted) makes the adaptation another run too."""
    settings = {'method': run.method, 'steps': run.steps, 'seed': run.seed,
                'batch_size': args.batch_size, 'train_scenes': args.train_scenes,
                'overrides': run.overrides, 'size': list(args.size), 'lr': args.lr,
                'polarization': args.polarization, 'full_probability': args.full_probability,
                'drop_probability': args.drop_probability, 'eval_scenes': args.eval_scenes}
    if run.base:
        settings['base_weights'] = weights_digest(out / run.base / 'checkpoint.pt')
    return settings


def weights_digest(checkpoint: Path) -> str:
    """A short digest of a checkpoint's weights (not of its file, which a resumed run that had
    nothing left to train writes again); 'none' where there is no checkpoint."""
    if not checkpoint.is_file():
        return 'none'
    digest = hashlib.sha256()
    for name, tensor in sorted(read_checkpoint(checkpoint)['state_dict'].items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def changed_settings(run: Run, args: argparse.Namespace, out: Path,
                     record: dict) -> list[str]:
    """How ``run`` differs from the one with a checkpoint in ``out``: from the settings it
    began with, or for a run older than them from what its record gives. A run without a
    checkpoint trains afresh."""
    folder = out / run.name
    if not (folder / 'checkpoint.pt').is_file():
        return []
    path = folder / SETTINGS_NAME
    saved = json.loads(path.read_text()) if path.is_file() else record
    return [f'{key} {saved[key]!r} -> {value!r}'
            for key, value in run_settings(run, args, out).items()
            if key in saved and saved[key] != value]


def dedicated_name(subset: tuple[str, ...], seed: int) -> str:
    return f'dedicated_{subset_label(subset)}_s{seed}'


def run_config(run: Run, args: argparse.Namespace, out: Path):
    overrides = [
        f'method={run.method}', f'steps={run.steps}', f'seed={run.seed}',
        f'batch_size={args.batch_size}', f'device={args.device}', f'out_dir={out / run.name}',
        f'data.input_size=[{args.size[0]},{args.size[1]}]', 'data.val_samples=64',
        # the scenes it learns from (cached_split's), as the checkpoint records them: `mmp_ros
        # evaluate-model` renders its split from there, the polarization as trained on
        f'data.params={{length: {args.train_scenes}, size: [{args.size[0]}, {args.size[1]}], '
        f'polarization: {args.polarization}}}',
        f'eval_every={run.steps}', f'checkpoint_every={max(1, run.steps // 4)}',
        f'optim.warmup_steps={max(1, run.steps // 20)}', f'optim.lr={args.lr}',
        f'deterministic={str(args.device == "cpu").lower()}', 'progress=false',
        f'log_every={max(1, run.steps // 100)}', f'threads={args.threads}',
        f'mask.full_probability={args.full_probability}',
        f'mask.drop_probability={args.drop_probability}',
        *run.overrides,
    ]
    if run.base:
        overrides.append(f'base_checkpoint={out / run.base / "checkpoint.pt"}')
    return load_config(None, overrides)


def evaluate_run(checkpoint: Path, splits: dict[str, Dataset], args, *,
                 full_only: bool = False) -> dict[str, dict]:
    """Every non-empty subset of the model's modalities on each split (``full_only``: just
    all of them, as a dedicated model is used)."""
    model, metadata, _ = load_checkpoint(checkpoint)
    device = torch.device('cuda' if args.device.startswith('cuda') else 'cpu')
    model.to(device)
    out = {}
    for split, data in splits.items():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == 'cuda'):
            report = evaluate_subsets(
                model, batches_for_eval(data, metadata, batch_size=args.batch_size * 2,
                                        device=device),
                modalities=metadata.modalities, num_classes=metadata.num_classes,
                subsets=[metadata.modalities] if full_only else None,
                cosine=model.config.uses_projection)
        out[split] = report.to_dict()
    return out


# --- compute overhead ------------------------------------------------------------------------


# The adapted model as the third session built it, GELU where a ReLU is now: in the adapters and
# in the convolutional projection's blocks; only for the latency table, beside the ReLU.
GELU_ROW = 'mmp_adapt, conv projection + adapters, with GELU in both'


class GeluAdapter(MaskGatedAdapter):
    """The adapters' first form, with a GELU."""

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(x)) * gate)


def overhead(size: tuple[int, int], repeats: int, trials: int) -> dict[str, dict]:
    """Parameters, FLOPs and single-thread CPU latency (torch eager and ONNX Runtime) of the
    tiny model per method, batch 1, at the training resolution.

    ``trials`` rounds of ``repeats`` interleaved runs: the latency is the median of them all,
    and each round's ratio to ``none`` is kept, so the page shows how far the ratios move.
    """
    import statistics

    from torch.utils.flop_counter import FlopCounterMode

    from mmp_ros.inference.testing import fill_zero_parameters

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    table = {}
    inputs = {m: torch.randn(1, c, *size) for m, c in
              {'rgb': 3, 'depth': 1, 'polarization': 3, 'thermal': 1}.items()}
    available = torch.tensor([[True, False, True, False]])
    variants = {'none': {'method': 'none'}, 'mask_token': {'method': 'mask_token'},
                'mmp': {'method': 'mmp'},
                'mmp, query stride 16': {'method': 'mmp', 'projection_stride': 16},
                'mmp_adapt, conv projection': {'method': 'mmp_adapt', **CONV},
                'mmp_adapt, conv projection + adapters': {'method': 'mmp_adapt', **CONV,
                                                          **ADAPTERS},
                'mmp_adapt, conv projection + adapters of rank 64': {'method': 'mmp_adapt',
                                                                     **CONV, **LARGE_ADAPTERS},
                GELU_ROW: {'method': 'mmp_adapt', **CONV, **ADAPTERS}}
    models = {name: fill_zero_parameters(build_model(ModelConfig(
        modalities=MODALITIES, num_classes=len(CLASS_NAMES), **options))).eval()
        for name, options in variants.items()}
    for adapter in models[GELU_ROW].encoder.adapters:
        adapter.__class__ = GeluAdapter
    for block in models[GELU_ROW].projection.blocks:
        block.body[1] = torch.nn.GELU()
    sessions = {name: _onnx_session(model, variants[name]['method'], inputs, available)
                for name, model in models.items()}
    backends = ('torch', 'onnxruntime')
    timings = {m: {b: [] for b in backends} for m in models}
    ratios = {m: {b: [] for b in backends} for m in models}  # per trial, over none's
    with torch.inference_mode():
        for _ in range(10):
            for model in models.values():
                model(inputs, available)
        for _ in range(trials):
            trial = {m: {b: [] for b in backends} for m in models}
            for _ in range(repeats):  # interleaved: machine load hits every method alike
                for name, model in models.items():
                    started = time.perf_counter()
                    model(inputs, available)
                    trial[name]['torch'].append(time.perf_counter() - started)
                    session, feed = sessions[name]
                    started = time.perf_counter()
                    session.run(None, feed)
                    trial[name]['onnxruntime'].append(time.perf_counter() - started)
            for name in models:
                for backend in backends:
                    timings[name][backend] += trial[name][backend]
                    ratios[name][backend].append(statistics.median(trial[name][backend]) /
                                                 statistics.median(trial['none'][backend]))
    for name, model in models.items():
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            model(inputs, available)
        row = {'parameters': sum(p.numel() for p in model.parameters()),
               'gflops': counter.get_total_flops() / 1e9}
        for backend, values in timings[name].items():
            row[f'{backend}_ms'] = statistics.median(values) * 1000
            row[f'{backend}_trial_ratios'] = ratios[name][backend]
        table[name] = row
    torch.set_num_threads(threads)
    return table


def _onnx_session(model, method: str, inputs, available):
    """The model exported as the node runs it (``training.export``: labels and confidence,
    every mask in one graph) in a one-thread ONNX Runtime session, with its feed."""
    import tempfile

    import onnxruntime

    from mmp_ros.inference.testing import tiny_metadata
    from training.export import export_onnx

    size = tuple(next(iter(inputs.values())).shape[-2:])
    metadata = tiny_metadata(input_size=size, num_classes=len(CLASS_NAMES), method=method)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:  # the session holds the graph once created
        path = export_onnx(model, metadata, Path(tmp) / 'model.onnx', verify=False)
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=['CPUExecutionProvider'])
    feed = {k: v.numpy() for k, v in inputs.items()} | {
        'available': available.numpy().astype('float32')}
    return session, feed


def step_cost(size: tuple[int, int], batch: int, threads: int, steps: int = 4) -> dict:
    """CPU seconds per training step (forward, backward, AdamW) of tiny, per method, and
    per label-free distillation step (frozen model, projection learning)."""
    from training.train import soft_cross_entropy

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    inputs = {m: torch.randn(batch, c, *size, generator=g) for m, c in
              {'rgb': 3, 'depth': 1, 'polarization': 3, 'thermal': 1}.items()}
    label = torch.randint(0, len(CLASS_NAMES), (batch, *size), generator=g)
    available = torch.rand(batch, 4, generator=g) > 0.4
    available[:, 0] = True

    def median_seconds(model: torch.nn.Module, loss_of) -> float:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=1e-3)
        times = []
        for _ in range(steps + 1):
            started = time.perf_counter()
            loss = loss_of(model)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - started)
        return sorted(times[1:])[len(times[1:]) // 2]

    def supervised(model):
        logits, aux = model.forward_train(inputs, available)
        loss = torch.nn.functional.cross_entropy(logits, label)
        return loss + aux.alignment.mean() if aux.alignment is not None else loss

    def distillation(model):
        student, teacher, aux = model.forward_distill(inputs, available)
        return soft_cross_entropy(student, teacher, ~available.all(1)) + aux.alignment.mean()

    costs = {}
    for method in METHODS:
        model = build_model(ModelConfig(modalities=MODALITIES, num_classes=len(CLASS_NAMES),
                                        method=method)).train()
        costs[method] = median_seconds(model, supervised)
    for name, options in {'mmp_adapt, distillation': {},
                          'mmp_adapt, conv + distillation': CONV,
                          'mmp_adapt, conv + distillation + adapters': {**CONV, **ADAPTERS}
                          }.items():
        model = build_model(ModelConfig(modalities=MODALITIES, num_classes=len(CLASS_NAMES),
                                        method='mmp_adapt', **options)).eval()
        for parameter_name, parameter in model.named_parameters():
            parameter.requires_grad_(parameter_name.startswith(ADAPTED_PREFIXES))
        costs[name] = median_seconds(model, distillation)
    torch.set_num_threads(before)
    return {'batch': batch, 'threads': threads, 'size': list(size), 'seconds': costs,
            'load_average': os.getloadavg()[0]}


# --- report --------------------------------------------------------------------------------


def reports_of(results: dict, split: str, names: list[str]) -> dict[str, SubsetReport]:
    out = {}
    for name in names:
        data = results['runs'].get(name, {}).get('eval', {}).get(split)
        if not data:
            continue
        report = SubsetReport(tuple(data['modalities']))
        report.subsets = {k: Scores(v['miou'], v['pixel_accuracy'], v['class_iou'])
                          for k, v in data['subsets'].items()}
        report.cosine = data.get('cosine_similarity', {})
        out[name] = report
    return out


def by_missing_count(report: SubsetReport) -> dict[int, float]:
    groups: dict[int, list[float]] = {}
    for subset in nonempty_subsets(report.modalities):
        missing = len(report.modalities) - len(subset)
        groups.setdefault(missing, []).append(report.subsets[subset_label(subset)].miou)
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def seed_mean(reports: list[SubsetReport]) -> SubsetReport:
    """The per-subset mean of several seeds' reports (mIoU, pixel accuracy, cosine)."""
    mean = SubsetReport(reports[0].modalities)
    for key in reports[0].subsets:
        mean.subsets[key] = Scores(
            sum(r.subsets[key].miou for r in reports) / len(reports),
            sum(r.subsets[key].pixel_accuracy for r in reports) / len(reports), [])
    for modality in reports[0].cosine:
        mean.cosine[modality] = sum(r.cosine[modality] for r in reports) / len(reports)
    return mean


def worst(report: SubsetReport) -> tuple[str, float]:
    key = min(report.subsets, key=lambda k: report.subsets[k].miou)
    return key, report.subsets[key].miou


class BySeed:
    """Each seed's reports of the rows a summary averages, to show a check's difference
    seed by seed beside the mean's: whether a bar is met beyond the seed spread or within
    it. Empty (no text) for one seed or a row without its seeds."""

    def __init__(self, reports: dict[str, list[SubsetReport]] | None = None) -> None:
        self.reports = reports or {}

    def __call__(self, name: str, against: str,
                 difference: Callable[[SubsetReport, SubsetReport], float]) -> str:
        """' (by seed a / b / ...)': ``difference(report, baseline)`` seed by seed."""
        mine, theirs = self.reports.get(name, []), self.reports.get(against, [])
        if len(mine) < 2 or len(theirs) != len(mine):
            return ''
        values = (round(difference(r, b), 1) + 0.0 for r, b in zip(mine, theirs, strict=True))
        return ' (by seed ' + ' / '.join(f'{v:+.1f}' for v in values) + ')'  # + 0.0: no -0.0


NO_SEEDS = BySeed()  # one seed's tables: nothing to show seed by seed


def _mean_gap(report: SubsetReport, baseline: SubsetReport) -> float:
    return report.mean_missing - baseline.mean_missing


def _full_gap(report: SubsetReport, baseline: SubsetReport) -> float:
    return report.full - baseline.full


def _worst_gap(report: SubsetReport, baseline: SubsetReport) -> float:
    return worst(report)[1] - worst(baseline)[1]


def criteria(get: dict[str, SubsetReport | None], ceilings: dict[str, float],
             adapt_ratios: dict[str, float | None] | None = None,
             by_seed: BySeed = NO_SEEDS) -> list[tuple[str, str, bool]]:
    """The issue's acceptance checks, computed from the tables (one seed or seed means).

    ``get`` maps the rows of :data:`SUMMARY_ROWS` to their reports; every row whose name
    starts with ``mmp_adapt`` is checked as a label-free adaptation of ``none``, with its
    training time over the base's from ``adapt_ratios``. With ``by_seed`` (seed means) each
    difference between two rows also shows seed by seed.
    """
    rows = []
    none, dropout = get.get('none'), get.get('dropout')
    adapted = {n: r for n, r in get.items() if n.startswith('mmp_adapt') and r}
    for name, against in MASKED_PAIRS.items():
        rows += _projection_checks(name, get.get(name), none, against, get.get(against),
                                   ceilings, by_seed)
    if dropout:
        rows += [worst_check(name, report, 'dropout', dropout, by_seed)
                 for name, report in adapted.items()]
    for name, adapt in adapted.items():
        if none:
            same = adapt.full - none.full
            rows.append((f'{name}: full-modality mIoU equal to its base (none)',
                         f'{same:+.2f}', same == 0))
        if dropout:
            gap = adapt.mean_missing - dropout.mean_missing
            rows.append((f'{name}: mean missing-subset mIoU ≥ dropout − 3',
                         f'{gap:+.1f}' + by_seed(name, 'dropout', _mean_gap), gap >= -3))
        if none:
            gap = adapt.mean_missing - none.mean_missing
            rows.append((f'{name}: mean missing-subset mIoU above its base (label-free)',
                         f'{gap:+.1f}' + by_seed(name, 'none', _mean_gap), gap > 0))
        ratio = (adapt_ratios or {}).get(name)
        if ratio is not None:
            rows.append((f"{name}: training time ≤ 10 % of its base's",
                         f'{ratio * 100:.0f} %', ratio <= 0.10))
    return rows


def _projection_checks(name: str, report: SubsetReport | None, none: SubsetReport | None,
                       against: str, dropout: SubsetReport | None,
                       ceilings: dict[str, float],
                       by_seed: BySeed) -> list[tuple[str, str, bool]]:
    """The issue's checks of a model trained from scratch with projection (``mmp``): against
    ``none``, and against ``dropout`` trained with the same masking (named ``against``)."""
    rows = []
    if not report:
        return rows
    if none:
        gap = report.mean_missing - none.mean_missing
        rows.append((f'{name} mean missing-subset mIoU ≥ none + 15',
                     f'{gap:+.1f}' + by_seed(name, 'none', _mean_gap), gap >= 15))
        full = report.full - none.full
        rows.append((f'{name} full-modality mIoU within 1 point of none',
                     f'{full:+.1f}' + by_seed(name, 'none', _full_gap), full >= -1))
    if not dropout:
        return rows
    gap = report.mean_missing - dropout.mean_missing
    rows.append((f'{name} mean missing-subset mIoU ≥ {against}',
                 f'{gap:+.1f}' + by_seed(name, against, _mean_gap), gap >= 0))
    deficit, key = min((report.subsets[k].miou - dropout.subsets[k].miou, k)
                       for k in report.subsets)
    rows.append((f'{name} on no subset more than 1 point below {against}',
                 f'{deficit:+.1f} ({key})' + by_seed(
                     name, against, lambda r, b: r.subsets[key].miou - b.subsets[key].miou),
                 deficit >= -1))
    keys = [k for k in dropout.subsets if k != 'all']
    if ceilings and all(k in ceilings for k in keys):
        ceiling = sum(ceilings[k] for k in keys) / len(keys)
        headroom = ceiling - dropout.mean_missing
        share = (report.mean_missing - dropout.mean_missing) / headroom
        rows.append((f"moonshot: {name} closes half of {against}'s gap to the ceiling "
                     '(missing subsets)', f'{share * 100:.0f} % of {headroom:.1f} points',
                     share >= 0.5))
    rows.append(worst_check(name, report, against, dropout, by_seed))
    return rows


def worst_check(name: str, report: SubsetReport, against: str, baseline: SubsetReport,
                by_seed: BySeed = NO_SEEDS) -> tuple[str, str, bool]:
    """No subset collapses: ``report``'s worst subset at least ``baseline``'s worst (seed by
    seed, each seed's own worst subsets)."""
    (key, value), (bkey, bvalue) = worst(report), worst(baseline)
    return (f"{name}: worst subset ≥ {against}'s worst",
            f'{value:.1f} ({key}) vs {bvalue:.1f} ({bkey})'
            + by_seed(name, against, _worst_gap), value >= bvalue)


def adapt_time_ratios(results: dict, seeds: list[int]) -> dict[str, float]:
    """Each adaptation's training time over its base model's, summed over the seeds; the
    base's time is the median of the from-scratch runs of its seed on the same device, all
    of the same size and budget, so that other jobs slowing one run do not decide the ratio.

    Training time is the steps' (``train_seconds``: validation, setup and the report's
    evaluation excluded, the same for every run); runs recorded without it count their
    whole wall time, and then every run of that seed does.
    """
    runs = results['runs']
    ratios = {}
    for name, prefix in SUMMARY_ROWS.items():
        if not name.startswith('mmp_adapt'):
            continue
        adapt_seconds = base_seconds = 0.0
        for seed in seeds:
            adapt = runs.get(f'{prefix}_s{seed}')
            if not adapt:
                break
            names = [n for n in (f'{m}_s{seed}' for m in METHODS)
                     if n in runs and runs[n].get('device') == adapt.get('device')]
            key = 'train_seconds' if all(runs[n].get('train_seconds') for n in names) \
                and adapt.get('train_seconds') else 'seconds'
            scratch = sorted(runs[n][key] for n in names if runs[n].get(key))
            if not adapt.get(key) or not scratch:
                break
            adapt_seconds += adapt[key]
            base_seconds += scratch[len(scratch) // 2]
        else:
            if base_seconds:
                ratios[name] = adapt_seconds / base_seconds
    return ratios


def backfill_train_seconds(results: dict, out: Path) -> None:
    """``train_seconds`` of runs recorded before it was: the time their log.csv gives at the
    last step, before the final validation (summed over the parts of a resumed run, as
    :func:`logged_seconds` does)."""
    for name, run in results['runs'].items():
        log = out / name / 'log.csv'
        if 'train_seconds' in run or not log.is_file():
            continue
        rows = logged_rows(log, run.get('steps', 0))
        if rows and int(rows[-1]['step']) == run.get('steps'):
            run['train_seconds'] = logged_seconds(rows)


def logged_rows(log: Path, until: int) -> list[dict[str, str]]:
    """The timed rows of a run's log.csv up to step ``until``."""
    with log.open(newline='') as stream:
        return [r for r in csv.DictReader(stream)
                if r.get('seconds') and int(r['step']) <= until]


def logged_seconds(rows: list[dict[str, str]]) -> float:
    """The steps' seconds at the last of ``rows``, summed over the parts of a resumed run:
    the log counts on over them, but restarted from 0 at each resume in logs written before
    it did."""
    total = previous = 0.0
    for row in rows:
        seconds = float(row['seconds'])
        if seconds < previous:  # resumed here
            total += previous
        previous = seconds
    return total + previous


def criteria_lines(rows: list[tuple[str, str, bool]]) -> list[str]:
    return (['| check | measured | met |', '| --- | --- | --- |']
            + [f'| {c} | {v} | {"yes" if ok else "**no**"} |' for c, v, ok in rows])


def summary_seed_groups(results: dict, seeds: list[int]) -> list[list[int]]:
    """The seed sets the summaries average over: ``seeds`` (every seed with a run trained
    from scratch), then, largest first, each smaller set of two or more on which some row
    of :data:`SUMMARY_ROWS` has all its runs while it lacks some of ``seeds``: a row is
    summarized over every set it is complete on, so the rows of one table share seeds."""
    groups = [seeds]
    for prefix in SUMMARY_ROWS.values():
        have = [s for s in seeds if f'{prefix}_s{s}' in results['runs']]
        if len(have) > 1 and have not in groups:
            groups.append(have)
    return [groups[0], *sorted(groups[1:], key=len, reverse=True)]


def summary_section(results: dict, seeds: list[int], images: Path, stem: str,
                    tag: str = '') -> list[str]:
    """Mean over ``seeds`` of each row complete on them, its spread, and the acceptance
    checks; ``tag`` tells the charts of one seed set from another's."""
    lines = []
    for split in ('test', 'ood'):
        ceil = {k: v * 100 for k, v in results.get('ceiling', {}).get(split, {}).items()}
        per_method = {}
        for method, prefix in SUMMARY_ROWS.items():
            found = reports_of(results, split, [f'{prefix}_s{s}' for s in seeds])
            if len(found) == len(seeds):
                per_method[method] = list(found.values())
        if not per_method:
            continue
        means = {m: seed_mean(v) for m, v in per_method.items()}
        chart = bar_chart(means, images / f'{stem}_mean{tag}_{split}.png',
                          title=f'mIoU per available subset ({split}, mean of seeds '
                          f'{", ".join(map(str, seeds))})', ceilings=ceil)
        lines += [f'### {split.upper() if split == "ood" else split.capitalize()} split, '
                  f'mean of seeds {", ".join(map(str, seeds))}: mIoU (%) per available '
                  'subset', '', markdown_table(means, ceilings=ceil), '',
                  f'![{split}](img/{chart.name})', '',
                  '| method | seeds | mean, 14 missing subsets | all modalities | worst subset '
                  '(mean of seeds) | 1 / 2 / 3 missing |', '| --- | --- | --- | --- | --- | --- |']
        for method, reports in per_method.items():
            missing = [r.mean_missing for r in reports]
            full = [r.full for r in reports]
            key, value = worst(means[method])
            groups = by_missing_count(means[method])
            lines.append(f'| {method} | {len(reports)} | {_spread(missing)} | {_spread(full)} | '
                         f'{value:.1f} ({key}) | '
                         + ' / '.join(f'{groups.get(k, math.nan):.1f}' for k in (1, 2, 3)) + ' |')
        lines += ['', 'mean ± half the range over the seeds (each seed\'s value in brackets).', '']
        if split == 'test':
            lines += ['#### Acceptance checks (mean of the seeds, test split)', '',
                      *criteria_lines(criteria(means, ceil, adapt_time_ratios(results, seeds),
                                               BySeed(per_method))),
                      '']
            cosine = cosine_table(means)
            if cosine:
                lines += ['#### Cosine similarity of projected to real tokens (mean of seeds)',
                          '', cosine, '']
    return lines


def _spread(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f'{mean:.1f}'
    return (f'{mean:.1f} ± {(max(values) - min(values)) / 2:.1f} '
            f'({" / ".join(f"{v:.1f}" for v in values)})')


def dedicated_section(results: dict, seed: int, ceilings: dict[str, float]) -> list[str]:
    """One model per subset, each trained and used with exactly its modalities, against the
    masked methods of the same seed (test split); empty until every subset has its model."""
    subsets = [s for s in nonempty_subsets(MODALITIES) if len(s) < len(MODALITIES)]
    names = [dedicated_name(s, seed) for s in subsets]
    dedicated = reports_of(results, 'test', names)
    others = reports_of(results, 'test', [f'{m}_s{seed}' for m in ('none', 'dropout', 'mmp')])
    if len(dedicated) < len(names) or f'none_s{seed}' not in others:
        return []
    columns = [m for m in ('dropout', 'mmp') if f'{m}_s{seed}' in others]
    lines = [f'## Dedicated models (seed {seed}, test split): one model per subset', '',
             'Each proper subset has its own model, trained from scratch with the same budget '
             'on exactly those modalities and used only with them (`--dedicated`; the full '
             "set's is `none`): the upper bound of a robot that carries a model for every "
             'combination of sensors, at 15 times the training cost and the storage.', '',
             f'| modalities | dedicated | {" | ".join(columns)} | ceiling |',
             '| --- | --- | ' + '--- | ' * len(columns) + '--- |']
    values = {}
    for subset, name in zip(subsets, names, strict=True):
        label = subset_label(subset)
        values[label] = dedicated[name].subsets['all'].miou
    values['all'] = others[f'none_s{seed}'].subsets['all'].miou
    for label, value in values.items():
        row = [f'{others[f"{c}_s{seed}"].subsets[label].miou:.1f}' for c in columns]
        lines.append(f'| {label} | {value:.1f} | {" | ".join(row)} | '
                     f'{ceilings.get(label, math.nan):.1f} |')
    keys = [k for k in values if k != 'all']
    row = [f'{others[f"{c}_s{seed}"].mean_missing:.1f}' for c in columns]
    ceiling = sum(ceilings.get(k, math.nan) for k in keys) / len(keys)
    mean = sum(values[k] for k in keys) / len(keys)
    lines += [f'| **mean, 14 missing subsets** | **{mean:.1f}** | '
              f'{" | ".join(row)} | {ceiling:.1f} |', '']
    return lines


def write_doc(results: dict, out: Path, doc: Path) -> None:
    images = doc.parent / 'img'
    images.mkdir(parents=True, exist_ok=True)
    seeds = sorted({run['seed'] for name, run in results['runs'].items()
                    if not name.startswith('ablation_')})
    ablation_names = [n for n in results['runs'] if n.startswith('ablation_')]
    ceilings = {k: v * 100 for k, v in results.get('ceiling', {}).get('test', {}).items()}
    ceilings_ood = {k: v * 100 for k, v in results.get('ceiling', {}).get('ood', {}).items()}
    lines = [f'# {results.get("title", "Robustness to missing modalities")}', '',
             'Within each seed group below, the methods trained from scratch share the `tiny` '
             'model, the training data, the seed and the step budget, and `mmp_adapt` adapts '
             'that group\'s `none` model without labels. Every model is evaluated with every '
             'non-empty subset of its modalities available '
             '(the others masked: zero-filled for `none`/`dropout`, a learned token for '
             '`mask_token`, projected tokens for `mmp`/`mmp_adapt`). The ceiling column is the '
             'information ceiling of the generator (pixel-weighted on the evaluation labels): '
             'what a perfect segmenter could reach with those modalities.', '']
    a = results['args']
    lines += ['## Setup', '',
              f'- evaluation: `SyntheticDataset` test and OOD splits, {a["eval_scenes"]} '
              f'scenes each, {a["size"][0]}×{a["size"][1]}, '
              + ('fp32' if a['device'] == 'cpu' else 'bf16 autocast (as the runs trained)')
              + '; every run evaluated the same way on the same scenes',
              '- training: AdamW, lr {lr}, warm-up 5 % of the steps then poly 0.9; steps, '
              'batch, training scenes and device of each run in [Runs](#runs); seeds '
              '{seeds}'.format(lr=a['lr'], seeds=', '.join(map(str, seeds))),
              f'- wall time of the benchmark: {results.get("wall_seconds", 0) / 60:.1f} min'
              + (f' here, plus {results["gpu_wall_seconds"] / 60:.1f} min on the GPU'
                 if 'gpu_wall_seconds' in results else ''),
              '- the masking schedule of `dropout`, `mask_token` and `mmp` (and of '
              "`mmp_adapt`'s projection training): every modality kept with probability "
              f'{a.get("full_probability", 0.2)}, otherwise each dropped with probability '
              f'{a.get("drop_probability", 0.5)} (an empty draw is drawn again); polarization '
              f'input: {a.get("polarization", "intensities")}',
              '- the commands, in the order they ran, and what each session changed: '
              '[How this page was produced](#how-this-page-was-produced)', '']
    for note in results.get('notes', []):
        lines += [note, '']
    main_seeds = [s for s in seeds if any(f'{m}_s{s}' in results['runs'] for m in METHODS)]
    if len(main_seeds) > 1:
        for group in summary_seed_groups(results, main_seeds):
            every = group == main_seeds
            lines += ['## All seeds' if every else '## Seeds ' + ', '.join(map(str, group)), '',
                      *summary_section(results, group, images, doc.stem,
                                       '' if every else '_s' + ''.join(map(str, group)))]
    for group_seed, (split, title, ceil) in itertools.product(
            seeds, (('test', 'test split', ceilings), ('ood', 'OOD split', ceilings_ood))):
        main = [f'{m}_s{group_seed}' for m in (*METHODS, 'mmp_adapt')]
        reports = reports_of(results, split, main)
        if not reports:
            continue
        if split == 'test':
            budgets = {}
            for n in reports:
                run = results['runs'][n]
                kind = 'mmp_adapt' if run['method'] == 'mmp_adapt' else 'from scratch'
                budgets.setdefault(kind, set()).add(
                    (run['steps'], run.get('batch_size', a['batch_size']), run.get('device', '?')))
            lines += [f'## Seed {group_seed}: '
                      + '; '.join(f'{kind} ' + ', '.join(f'{steps} steps × {batch} on {device}'
                                                         for steps, batch, device in sorted(b))
                                  for kind, b in budgets.items()), '']
        chart = bar_chart(reports, images / f'{doc.stem}_s{group_seed}_{split}.png',
                          title=f'mIoU per available subset ({split}, seed {group_seed})',
                          ceilings=ceil)
        lines += [f'### {title.capitalize()}: mIoU (%) per available-modality subset', '',
                  markdown_table(reports, ceilings=ceil), '',
                  f'![{split}](img/{chart.name})', '']
        if split == 'test':
            get = {m: reports.get(f'{m}_s{group_seed}') for m in (*METHODS, 'mmp_adapt')}
            lines += ['#### Acceptance checks (test split, computed from the table)', '',
                      *criteria_lines(criteria(get, ceil,
                                               adapt_time_ratios(results, [group_seed])))]
            lines += ['', '#### Modalities missing at once (mean mIoU over the subsets)', '',
                      '| method | 1 missing | 2 missing | 3 missing |',
                      '| --- | --- | --- | --- |']
            for name, report in reports.items():
                groups = by_missing_count(report)
                lines.append(f'| {name} | ' + ' | '.join(f'{groups.get(k, math.nan):.1f}'
                                                         for k in (1, 2, 3)) + ' |')
            cosine = cosine_table(reports)
            if cosine:
                lines += ['', '#### Cosine similarity of projected to real tokens', '', cosine]
            lines.append('')
    for group_seed in seeds:
        lines += dedicated_section(results, group_seed, ceilings)
    for method, prefix in sorted(ABLATION_PREFIX.items(), key=lambda item: -len(item[1])):
        names = [n for n in ablation_names if n.startswith(prefix)]
        ablation_names = [n for n in ablation_names if n not in names]
        if not names:
            continue
        # the method's own run of the first seed, when this directory trained one
        base = reports_of(results, 'test', [f'{method}_s{s}' for s in seeds[:1]])
        reports = reports_of(results, 'test', names)
        lines += [f'## Ablations ({method}, test split)', '',
                  '| variant | changes | steps | all | mean missing | 2 missing | 3 missing |',
                  '| --- | --- | --- | --- | --- | --- | --- |']
        for name, report in {**base, **reports}.items():
            run = results['runs'][name]
            groups = by_missing_count(report)
            schedule = (f'drop {a.get("drop_probability", 0.5)}, full '
                        f'{a.get("full_probability", 0.2)}')
            varies = run.get('varies') or (
                f'default: {schedule}' if method == 'dropout' else
                f'default: encoder, 20 tokens, weight 1, {schedule}')
            lines.append(f'| {name} | {varies} | {run["steps"]} | {report.full:.1f} | '
                         f'{report.mean_missing:.1f} | {groups[2]:.1f} | {groups[3]:.1f} |')
        lines.append('')
    if 'overhead' in results:
        o = results['overhead']
        lines += ['## Compute overhead of projection (tiny, batch 1, '
                  f'{a["size"][0]}×{a["size"][1]}, one CPU thread)', '',
                  '| method | parameters | GFLOPs | torch eager ms | ONNX Runtime ms |',
                  '| --- | --- | --- | --- | --- |']
        for name, row in o['models'].items():
            lines.append(f'| {name} | {row["parameters"]:,} | {row["gflops"]:.3f} | '
                         f'{row.get("torch_ms", math.nan):.2f} | '
                         f'{row.get("onnxruntime_ms", math.nan):.2f} |')
        none = o['models']['none']
        lines.append('')
        for name, mmp in o['models'].items():
            if not name.startswith('mmp'):
                continue

            def change(key: str, mmp=mmp) -> str:
                if key not in mmp or key not in none:
                    return 'not measured'
                text = f'{(mmp[key] / none[key] - 1) * 100:+.1f} %'
                trials = mmp.get(key.removesuffix('_ms') + '_trial_ratios')
                if key.endswith('_ms') and trials:
                    text += (f' (rounds {(min(trials) - 1) * 100:+.1f} to '
                             f'{(max(trials) - 1) * 100:+.1f})')
                return text

            lines.append(f'- {name} vs none: parameters {change("parameters")}, FLOPs '
                         f'{change("gflops")}, latency torch {change("torch_ms")}, ONNX '
                         f'Runtime {change("onnxruntime_ms")}')
        rounds = 'trials' in o  # measured in rounds, zero-initialized weights made non-zero
        runs = (f'{o["trials"]} rounds of {o["repeats"]} interleaved runs per backend, each '
                "round's own ratio to none in parentheses" if rounds else
                f'{o["repeats"]} interleaved runs per backend')
        lines += ['', f'Median of {runs} (CPU: {o["cpu"]}, load average '
                  f'{o["load_average"]:.1f} during the measurement: other jobs share this '
                  'machine).' + (" Weights initialized to zero (mask gates and tokens, norms' "
                                 'shifts) are given small random values first, as training '
                                 'leaves them.' if rounds else ''), '']
    if 'step_cost' in results:
        c = results['step_cost']
        lines += [f'## CPU cost of one training step (tiny, batch {c["batch"]}, '
                  f'{c["size"][0]}×{c["size"][1]}, {c["threads"]} threads)', '',
                  '| method | s / step | steps in 40 min |', '| --- | --- | --- |']
        for method, seconds in c['seconds'].items():
            lines.append(f'| {method} | {seconds:.2f} | {int(2400 / seconds)} |')
        lines += ['', f'Measured on this 2-core machine at load average {c["load_average"]:.1f} '
                  '(shared with other jobs); rendering data costs extra unless cached.', '']
    runs = results['runs']
    lines += ['## Runs', '', '| run | method | steps × batch | training scenes | device | '
              'wall s | ms / step |', '| --- | --- | --- | --- | --- | --- | --- |']
    for name, run in runs.items():
        lines.append(f'| {name} | {run["method"]} | {run["steps"]} × '
                     f'{run.get("batch_size", a["batch_size"])} | '
                     f'{run.get("train_scenes", a["train_scenes"])} | '
                     f'{run.get("device", results.get("device_name", "?"))} | '
                     f'{run.get("seconds") or math.nan:.0f} | '
                     f'{(run.get("seconds_per_step") or math.nan) * 1000:.0f} |')
    commands = results.get('commands') or [results.get('command', '')]
    lines += ['', '## How this page was produced', '', 'Commands, in the order they ran:', '',
              '```', *commands, '```']
    for note in results.get('history', []):
        lines += ['', note]
    lines += ['', f'All numbers above are in `docs/data/{doc.stem}_results.json` (a copy of '
              f'`{out}/results.json`). Regenerate this page from it: copy it to '
              '`OUT/results.json`, then `PYTHONPATH=. python scripts/robustness_benchmark.py '
              f'--report-only --no-overhead --out OUT --doc docs/{doc.name}`. Training curves '
              'and CSV logs: `OUT/<run>/`.', '']
    doc.write_text('\n'.join(lines), encoding='utf-8')
    print(f'wrote {doc}', flush=True)


# --- main ----------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='out/robustness')
    parser.add_argument('--doc', default=str(REPO / 'docs' / 'robustness.md'))
    parser.add_argument('--cache', default='', help='rendered scenes (default: OUT/cache)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--steps', type=positive_int, default=1500)
    parser.add_argument('--adapt-steps', type=non_negative_int, default=500,
                        help='0: no mmp_adapt run')
    parser.add_argument('--dedicated', action='store_true',
                        help='also train one `none` model per proper subset of the '
                        'modalities (the dedicated upper bound; 14 runs per seed)')
    parser.add_argument('--ablation-steps', type=non_negative_int, default=0,
                        help='0: same as --steps (--adapt-steps for mmp_adapt ablations)')
    parser.add_argument('--ablation-methods', nargs='+', default=['mmp'],
                        choices=tuple(ABLATION_PREFIX),
                        help='ablate mmp (trained from scratch), mmp_adapt (label-free, cheap '
                        'enough for a CPU) and/or dropout (its masking schedule only)')
    parser.add_argument('--polarization', default='mosaic', choices=('mosaic', 'intensities'),
                        help='polarization input: through the IMX250MZR mosaic and the '
                        "node's decoder (mosaic, what the node serves) or the four clean "
                        'polarizer planes')
    parser.add_argument('--full-probability', type=float, default=0.2,
                        help='masking schedule of every masked method: share of samples '
                        'that keep every modality')
    parser.add_argument('--drop-probability', type=float, default=0.5,
                        help='masking schedule: drop probability of each modality otherwise')
    parser.add_argument('--batch-size', type=positive_int, default=32)
    parser.add_argument('--lr', type=float, default=2e-3)
    parser.add_argument('--size', type=int, nargs=2, default=(128, 160))
    parser.add_argument('--train-scenes', type=positive_int, default=4000)
    parser.add_argument('--eval-scenes', type=positive_int, default=200)
    parser.add_argument('--seeds', type=non_negative_int, nargs='+', default=[0])
    parser.add_argument('--methods', nargs='*', default=list(METHODS), choices=METHODS,
                        help='trained from scratch for every seed; none named: only the '
                        'ablations (an mmp_adapt ablation needs its none run in --out)')
    parser.add_argument('--ablations', nargs='*', default=list(ABLATIONS),
                        choices=list(ABLATIONS),
                        help='trained for the first of --seeds only: name the seeds in '
                        'another order for another seed\'s (the page lists such pairs)')
    parser.add_argument('--num-workers', type=non_negative_int, default=2)
    parser.add_argument('--threads', type=non_negative_int, default=0,
                        help='CPU threads (0: default)')
    parser.add_argument('--time-budget-s', type=non_negative_float, default=0,
                        help='0: unlimited')
    parser.add_argument('--report-only', action='store_true',
                        help='rewrite the doc from results.json (measuring CPU overhead '
                        'here if the results lack it)')
    parser.add_argument('--no-overhead', action='store_true')
    parser.add_argument('--merge', action='append', default=[], metavar='RESULTS_JSON',
                        help='add the runs (and commands) of another results.json, e.g. one '
                        'written on another machine')
    args = parser.parse_args(argv)
    if problem := frame_size_problem(*args.size):  # before the out folder and the renders
        parser.error(f'--size {problem}')
    if args.polarization == 'mosaic' and (args.size[0] % 2 or args.size[1] % 2):
        parser.error(f'--size {args.size[0]} {args.size[1]}: the 2x2 polarizer mosaic needs an '
                     'even height and width (or --polarization intensities)')
    # What every run's config takes from them, checked as training checks it: a value it
    # refuses was a ConfigError traceback at the first run, after the scenes were rendered.
    for option, key, value in (('--lr', 'optim.lr', args.lr),
                               ('--full-probability', 'mask.full_probability',
                                args.full_probability),
                               ('--drop-probability', 'mask.drop_probability',
                                args.drop_probability)):
        try:
            load_config(None, [f'{key}={value}'])
        except ConfigError as exc:
            parser.error(f'{option} {value}: {exc}')
    try:  # 'gpu', or cuda on a machine without: a traceback once the out folder was made
        device = resolve_device(args.device)
    except ConfigError as exc:
        parser.error(f'argument --device: {exc}')
    if args.device == 'auto':  # the device it stands for: the page, determinism and the CPU
        args.device = device.type  # overhead go by it (auto on a CPU was none of 'cpu''s)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return benchmark(args, argv)
    except KeyboardInterrupt:  # Ctrl-C: what is saved stays, and the same command resumes
        print(f'interrupted: the same command resumes from {args.out}', file=sys.stderr)
        return 130
    except InputError as exc:  # an output folder it cannot make: its message alone
        print(f'robustness_benchmark: {exc}', file=sys.stderr)
        return 2


def read_results(path: Path) -> dict:
    """A benchmark's results.json; another file stops the benchmark with one line."""
    try:
        results = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(f'{path}: cannot read it as JSON '
                         f'({getattr(exc, "strerror", None) or exc})') from None
    if not isinstance(results, dict) or not isinstance(results.get('runs'), dict):
        raise SystemExit(f"{path}: not a benchmark's results.json (no 'runs' mapping)")
    return results


def benchmark(args: argparse.Namespace, argv=None) -> int:
    merged = [(path, read_results(Path(path))) for path in args.merge]  # before the out folder
    # The folders it writes into, before the renders and the runs: a file in the place of one
    # was a traceback, the doc's (its img/ folder) only once every run was trained.
    out = output_folder(args.out, '--out')
    if args.cache:
        output_folder(args.cache, '--cache')
    output_file(args.doc, '--doc', 'robustness.md')
    output_folder(Path(args.doc).parent / 'img', '--doc')
    results_path = out / 'results.json'
    results = read_results(results_path) if results_path.is_file() else {'runs': {}}

    def save() -> None:
        save_text(results_path, json.dumps(results, indent=1, sort_keys=True))

    for other_path, other in merged:
        clash = sorted(set(other['runs']) & set(results['runs']))
        if clash:
            raise SystemExit(f'{other_path}: runs {clash} exist in both; give them other seeds')
        results['runs'].update(other['runs'])
        for command in other.get('commands', [other.get('command', '')]):
            if command not in results.setdefault('commands', []):
                results['commands'].append(command)
        results['wall_seconds'] = results.get('wall_seconds', 0) + other.get('wall_seconds', 0)
        save()
    if args.report_only and 'args' not in results:  # what the page describes the runs by
        raise SystemExit(f'{results_path}: no benchmark has run into {out} yet; --report-only '
                         'writes the page from the results of one')
    started = time.perf_counter()
    if not args.report_only:
        changed = {run.name: changes for run in planned_runs(args)
                   if (changes := changed_settings(run, args, out,
                                                   results['runs'].get(run.name, {})))}
        if changed:
            raise SystemExit(f'{out} holds runs begun with other settings: ' + '; '.join(
                f'{name} ({", ".join(changes)})' for name, changes in changed.items())
                + ": use another --out, or delete those runs' folders to train them again")
        results['args'] = {k: (list(v) if isinstance(v, tuple) else v)
                           for k, v in vars(args).items()}
        results['command'] = 'PYTHONPATH=. python scripts/robustness_benchmark.py ' + \
            ' '.join(sys.argv[1:] if argv is None else argv)
        results.setdefault('commands', []).append(results['command'])
        results['device_name'] = torch.cuda.get_device_name() if args.device.startswith(
            'cuda') else f'CPU ({platform.processor() or platform.machine()}, '\
            f'{os.cpu_count()} cores)'
        size = tuple(args.size)
        cache = Path(args.cache) if args.cache else out / 'cache'
        def scenes(split: str, count: int) -> LongLabels:
            return LongLabels(cached_split(split, count, size, cache, args.num_workers,
                                           args.polarization),
                              f'SyntheticDataset({split!r}, size={size}, length={count}, '
                              f'polarization={args.polarization!r})')

        train_data = scenes('train', args.train_scenes)
        val = scenes('val', 64)
        splits = {s: scenes(s, args.eval_scenes) for s in ('test', 'ood')}
        results['ceiling'] = {}
        for split, data in splits.items():
            counts = torch.bincount(data.data.tensors['label'].flatten().long(),
                                    minlength=256)[:len(CLASS_NAMES)]
            results['ceiling'][split] = ceiling_table(counts.double().numpy())
        save()
        wall_before = results.get('wall_seconds', 0)

        def record_wall_time() -> None:  # after every run: a stopped benchmark keeps its time
            results['wall_seconds'] = wall_before + time.perf_counter() - started

        durations = []

        def train_and_evaluate(run: Run) -> bool:
            """Train, record and evaluate ``run``, or resume it; False: the time budget has no
            room left for it."""
            checkpoint = out / run.name / 'checkpoint.pt'
            record = results['runs'].get(run.name, {})
            try:
                done = checkpoint.is_file() and checkpoint_step(
                    read_checkpoint(checkpoint), checkpoint) >= run.steps
            except CheckpointError as exc:  # no step: was a KeyError traceback
                raise CheckpointError(f'{exc}; delete {out / run.name} to train that run '
                                      'again') from None
            if done and 'eval' in record:
                return True
            elapsed = time.perf_counter() - started
            estimate = max(durations) if durations else 0.0
            if args.time_budget_s and elapsed + estimate > args.time_budget_s:
                print(f'time budget: skipping {run.name} and the runs after it', flush=True)
                return False
            run_started = time.perf_counter()
            print(f'== {run.name}: {run.method} {run.steps} steps {run.overrides}', flush=True)
            config = run_config(run, args, out)
            settings = run_settings(run, args, out)
            (out / run.name).mkdir(exist_ok=True)
            save_text(out / run.name / SETTINGS_NAME, json.dumps(settings))
            result = train(config, train_dataset=train_data, val_dataset=val,
                           command=results['command'])
            if result.losses or not record:  # trained now; else keep how it was trained
                # resumed: the parts before the stop, as its log timed them up to the step
                # it resumed from (the steps redone after that are counted once)
                before = logged_seconds(logged_rows(out / run.name / 'log.csv',
                                                    result.start_step)) \
                    if result.start_step else 0.0
                record = {**settings, 'device': results['device_name'],
                          'varies': run.varies, 'seconds': before + result.seconds,
                          'train_seconds': before + result.train_seconds,
                          'seconds_per_step': result.seconds_per_step}
                if result.teacher_cache_seconds:
                    record['teacher_cache_seconds'] = result.teacher_cache_seconds
                if result.projection_fit_seconds:
                    record['projection_fit_seconds'] = result.projection_fit_seconds
            # saved before evaluating: a rerun after a stop in evaluation only evaluates, and
            # the times are the training's, not those of a call that had nothing to train
            results['runs'][run.name] = record
            save()
            record['eval'] = evaluate_run(checkpoint, splits, args,
                                          full_only=run.full_only)
            durations.append(time.perf_counter() - run_started)
            test = record['eval']['test']
            missing = '' if run.full_only else \
                f', mean missing {test["mean_missing_miou"]:.1f}'
            print(f'   {run.name}: {durations[-1]:.0f} s, all {test["full_miou"]:.1f}{missing}',
                  flush=True)
            record_wall_time()
            save()
            return True

        try:
            for run in planned_runs(args):
                if not train_and_evaluate(run):
                    break
        finally:  # stopped too (Ctrl-C, an error): the time until then is the benchmark's
            record_wall_time()
            save()
    # Overhead is a CPU figure: measured by CPU runs, or by --report-only when missing.
    wanted = 'overhead' not in results if args.report_only else args.device == 'cpu'
    if wanted and not args.no_overhead:
        repeats, trials = 200, 5
        o = {'models': overhead(tuple(results['args']['size']), repeats, trials),
             'repeats': repeats, 'trials': trials,
             'cpu': platform.processor() or platform.machine(),
             'load_average': os.getloadavg()[0]}
        results['overhead'] = o
        results['step_cost'] = step_cost(tuple(results['args']['size']), 16, 2)
        save()
    backfill_train_seconds(results, out)
    save()
    write_doc(results, out, Path(args.doc))
    return 0


if __name__ == '__main__':
    sys.exit(main())
