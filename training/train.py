"""Training: one importable function, :func:`train`, behind the thin ``train`` command.

The same loop trains every method (``none``, ``dropout``, ``mask_token``, ``mmp``) and
runs label-free adaptation (``mmp_adapt``): a frozen model trained on all modalities
whose projection module alone learns, from the alignment loss (and, with
``distillation_weight``, from the frozen model's own all-modality prediction), on frames
whose labels are never read. Under ``torchrun`` it runs as DDP (gloo on CPU, NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mmp_ros.errors import InputError, OutputFolderError, output_folder
from mmp_ros.inference.torch_backend import cuda_device_count, cuda_devices_text
from mmp_ros.metadata import ModelMetadata
from mmp_ros.modalities import INPUT_CHANNELS
from mmp_ros.model import (
    CheckpointError,
    DistillTargets,
    ModelConfig,
    MultimodalSegmenter,
    build_model,
    checkpoint_metadata,
    load_checkpoint,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    step_problem,
    weights_difference,
)
from mmp_ros.model.layers import frozen_norm_scale
from training.allocator import keep_freed_memory
from training.config import CHECKPOINT_NAME, CROP_GRID, ConfigError, TrainConfig, load_config
from training.datasets import (
    IGNORE_INDEX,
    StepBatchSampler,
    UnlabelledDataset,
    build_dataset,
    check_modalities,
    collate,
    dataset_classes,
    resize_batch,
)
from training.history import FILES as HISTORY_FILES
from training.history import History
from training.masking import sample_masks, step_generator
from training.metrics import SubsetReport, evaluate_subsets
from training.normalize import compute_normalization, normalize
from training.optim import adamw
from training.projection_fit import fit_projection
from training.teacher_cache import FORWARD_BATCH, TeacherCache

# What label-free adaptation trains: the parts that act only where a modality is missing.
ADAPTED_PREFIXES = ('projection.', 'encoder.adapters.')


class DivergedError(InputError, FloatingPointError):
    """The loss became NaN or infinite: a learning rate too high for the run, or NaN in the
    data. Said in one line, as the config or data is at fault (it was a traceback)."""


@dataclass
class TrainResult:
    checkpoint: Path
    start_step: int = 0  # the step the run started from (the checkpoint's when resumed)
    losses: list[float] = field(default_factory=list)  # total loss of each step run now
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # the whole call: setup, steps, validation, checkpoints
    train_seconds: float = 0.0  # the steps run now, validation excluded
    seconds_per_step: float = math.nan  # train_seconds per step
    teacher_cache_seconds: float = 0.0  # building the teacher cache, in train_seconds too
    projection_fit_seconds: float = 0.0  # the projection's fit (projection_fit), likewise


@dataclass(frozen=True)
class Distributed:
    """Where this process sits in a ``torchrun`` job (world size 1 without one)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        return cls(int(os.environ.get('RANK', 0)), int(os.environ.get('LOCAL_RANK', 0)),
                   int(os.environ.get('WORLD_SIZE', 1)))


class TrainStep(nn.Module):
    """One step's forward as a module's ``forward``, so DDP can wrap it and sync gradients.

    Returns ``(logits, alignment, teacher)``. ``mode`` picks what it computes:
    ``train`` the logits and alignment terms (``forward_train``); ``align`` (label-free
    adaptation by the alignment loss alone) just the alignment terms; ``distill``
    (label-free adaptation with distillation) also the frozen model's own all-modality
    prediction, both at the decoder's resolution (``forward_distill``); given
    :class:`~mmp_ros.model.DistillTargets` instead of inputs, the frozen model's side is
    taken from them (``teacher_cache``, ``distill_crop``).
    """

    MODES = ('train', 'align', 'distill')

    def __init__(self, model: nn.Module, mode: str = 'train', *, alignment: bool = True) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f'mode must be one of {self.MODES}, got {mode!r}')
        if mode == 'align' and not alignment:
            raise ValueError("mode 'align' trains by the alignment terms alone")
        self.model = model
        self.mode = mode
        self.alignment = alignment  # False: the alignment terms are not computed (None)

    def forward(self, inputs: dict[str, torch.Tensor] | DistillTargets, available: torch.Tensor
                ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        if self.mode == 'align':
            return None, self.model.alignment_terms(inputs, available).alignment, None
        if self.mode == 'distill':
            if isinstance(inputs, DistillTargets):  # teacher_cache, distill_crop
                logits, aux = self.model.distill_student(inputs, available,
                                                         alignment=self.alignment)
                return logits, aux.alignment, inputs.teacher
            logits, teacher, aux = self.model.forward_distill(inputs, available,
                                                              alignment=self.alignment)
            return logits, aux.alignment, teacher
        logits, aux = self.model.forward_train(inputs, available, alignment=self.alignment)
        return logits, aux.alignment, None


def masked_alignment(alignment: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """The alignment loss: the per-sample, per-modality terms ``alignment`` (B, M) averaged
    over the modalities that are missing (``available`` (B, M) false); 0 when none is."""
    missing = (~available).float()
    return (alignment * missing).sum() / missing.sum().clamp(min=1.0)


def soft_cross_entropy(logits: torch.Tensor, teacher: torch.Tensor,
                       rows: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy of ``logits`` against the softmax of ``teacher`` (both
    (B, K, H, W)), averaged over the samples where ``rows`` (B,) holds; 0 when none does."""
    target = teacher.float().softmax(1)
    per_pixel = -(target * logits.float().log_softmax(1)).sum(1)  # (B, H, W)
    per_sample = per_pixel.flatten(1).mean(1)
    weight = rows.float()
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


def crop_origin(image_size: tuple[int, int], crop: tuple[int, ...],
                generator: torch.Generator) -> tuple[int, int]:
    """A random top-left corner, on the grid of ``CROP_GRID`` pixels, of a ``crop`` (H, W)
    window inside ``image_size``; each corner equally likely."""
    top, left = (CROP_GRID * int(torch.randint((full - part) // CROP_GRID + 1, (1,),
                                               generator=generator))
                 for full, part in zip(image_size, crop, strict=True))
    return top, left


def crop_problem(crop: tuple[int, ...], input_size: tuple[int, int]) -> str:
    """Why ``distill_crop`` ``crop`` cannot cut windows of frames of ``input_size`` (the
    adapted model's); '' where it can. Told from the base alone: ``mmp_ros adapt`` asks before
    the recording is read (training refused it once it had been)."""
    if crop and any(part > full or full % CROP_GRID
                    for part, full in zip(crop, input_size, strict=True)):
        return (f'distill_crop {list(crop)}: needs an input size of multiples of {CROP_GRID} at '
                f'least as large; the model takes {list(input_size)}')
    return ''


def resolve_device(name: str, local_rank: int = 0, cuda_devices: int | None = None
                   ) -> torch.device:
    """The device ``name`` (auto, cpu, cuda, cuda:N) stands for in the process of
    ``local_rank``; ``cuda_devices``: how many this machine has (None: as torch counts)."""
    requested = name  # what messages name: 'cuda', not the 'cuda:0' it stands for
    if cuda_devices is None:
        cuda_devices = cuda_device_count()
    if name == 'auto':
        name = 'cuda' if cuda_devices else 'cpu'
    if name == 'cuda':
        name = f'cuda:{local_rank}'
    try:
        device = torch.device(name)
    except RuntimeError:  # torch lists every device type it knows, most of them not ours
        device = None
    if device is None or device.type not in ('cpu', 'cuda'):  # mps, xla, meta: not trained on
        raise ConfigError(f'device {name!r}: expected auto, cpu, cuda or cuda:N')
    if device.type == 'cuda' and not cuda_devices:
        raise ConfigError(f'device {requested!r} requested but CUDA is not available here')
    if device.type == 'cuda' and requested == name and local_rank > 0:
        # Every process of the machine would take that one GPU, which NCCL refuses.
        raise ConfigError(f'device {requested!r} names one GPU for every process torchrun '
                          'starts on this machine; use device=cuda (each process takes '
                          'cuda:<its local rank>) and CUDA_VISIBLE_DEVICES to choose the GPUs')
    if device.type == 'cuda' and device.index >= cuda_devices:
        have = cuda_devices_text(cuda_devices)
        if requested == name:
            raise ConfigError(f'device {requested!r}: {have}')
        raise ConfigError(f'device {requested!r} is {name} for the process of local rank '
                          f'{local_rank}, but {have}: start at most {cuda_devices} processes '
                          'per machine')
    return device


def lr_factor(step: int, *, total: int, warmup: int, power: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then ``(1 - progress) ** power`` to 0."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 1.0 - progress) ** power


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on norms, biases, embeddings, queries and mask tokens."""
    exempt = ('mask_tokens', 'modality_embedding', 'queries')
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        plain = parameter.ndim <= 1 or any(part in name.split('.') for part in exempt)
        (no_decay if plain else decay).append(parameter)
    return [{'params': decay, 'weight_decay': weight_decay},
            {'params': no_decay, 'weight_decay': 0.0}]


def optimizer_difference(model: nn.Module, state: dict[str, Any]) -> str:
    """What keeps the optimizer state ``state`` (a checkpoint's) from going on in the optimizer
    :func:`parameter_groups` makes of ``model``; '' where it fits. torch loads a state of other
    group sizes with a ValueError traceback, and one of other tensor shapes without a word: the
    fused step broadcast it, or crashed the process (a segmentation fault on the CPU)."""
    groups = state.get('param_groups')
    if not isinstance(groups, list) or not isinstance(state.get('state'), dict) or not all(
            isinstance(group, dict) and isinstance(group.get('params'), list) for group in groups):
        return 'no optimizer state torch wrote'
    own = [group['params'] for group in parameter_groups(model, 0.0)]
    sizes, own_sizes = [len(group['params']) for group in groups], [len(ps) for ps in own]
    if sizes != own_sizes:
        return f'parameter groups of {sizes} tensors, the model\'s optimizer has {own_sizes}'
    parameters = {index: parameter for group, ps in zip(groups, own, strict=True)
                  for index, parameter in zip(group['params'], ps, strict=True)}
    for index, values in state['state'].items():
        for name, value in (values.items() if isinstance(values, dict) else ()):
            if index in parameters and isinstance(value, torch.Tensor) and value.ndim \
                    and value.shape != parameters[index].shape:
                return (f'{name} of parameter {index} is {list(value.shape)}, the parameter '
                        f'{list(parameters[index].shape)}')
    return ''


def git_commit() -> str:
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def batches_for_eval(dataset: Dataset, metadata: ModelMetadata, *, batch_size: int,
                     device: torch.device, max_samples: int = 0, num_workers: int = 0):
    """``(normalized inputs, label)`` batches of the first ``max_samples`` (0: all) samples."""
    count = len(dataset) if max_samples <= 0 else min(len(dataset), max_samples)
    subset = torch.utils.data.Subset(dataset, range(count))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        num_workers=num_workers)
    for batch in loader:
        batch = resize_batch(batch, metadata.input_size, metadata.modalities)
        inputs = normalize({m: batch[m].to(device) for m in metadata.modalities}, metadata)
        yield inputs, batch['label'].to(device)


def _adapt_model(config: TrainConfig) -> tuple[nn.Module, ModelMetadata]:
    """The base model with a fresh projection module (and mask-gated adapters, if asked);
    everything frozen but those, which act only where a modality is missing."""
    base, base_metadata, base_checkpoint = load_checkpoint(config.base_checkpoint)
    base_config = base.config
    if base_config.uses_projection or base_config.method == 'mask_token':
        raise ConfigError(f'{config.base_checkpoint}: base model method is '
                          f'{base_config.method!r}; mmp_adapt adapts a model trained with '
                          '"none" (or "dropout") on all modalities')
    if base_config.modalities != tuple(config.modalities):
        raise ConfigError(f'modalities {list(config.modalities)} differ from the base model\'s '
                          f'{list(base_config.modalities)}')
    if config.model.mask_conditioning and not base_config.mask_conditioning:
        raise ConfigError(f'model.mask_conditioning: {config.base_checkpoint} was trained '
                          'without it, and it would change the full-modality output; drop '
                          'the setting (model.mask_adapters is what adaptation may add)')
    rank = config.model.mask_adapters
    if rank and not config.distillation_weight:
        raise ConfigError('model.mask_adapters act after the projection and learn from '
                          'distillation alone: set distillation_weight '
                          '(config/train_adapt.yaml has 1)')
    if rank and base_config.mask_adapters and rank != base_config.mask_adapters:
        raise ConfigError(f'model.mask_adapters={rank}: {config.base_checkpoint} has adapters '
                          f'of rank {base_config.mask_adapters}; drop the setting to train '
                          'them on')
    model_config = base_config.replace(method='mmp_adapt', **config.model.projection(),
                                       mask_adapters=rank or base_config.mask_adapters)
    model = build_model(model_config)
    load_weights(model, base_checkpoint['state_dict'], source=config.base_checkpoint,
                 fresh_prefixes=ADAPTED_PREFIXES)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(ADAPTED_PREFIXES))
    metadata = ModelMetadata.from_dict({**base_metadata.to_dict(), 'method': 'mmp_adapt',
                                        'metrics': {}})
    return model, metadata


def resume_problem(config: TrainConfig, model: nn.Module, metadata: ModelMetadata,
                   saved: dict[str, Any]) -> str:
    """Why the run ``config`` describes (its ``model`` and ``metadata`` as built, not yet
    trained) cannot go on from ``saved``, the checkpoint in its out_dir; '' where it can."""
    # What a resumed run reads beside the weights, which read_checkpoint does not require: a
    # checkpoint without a step (not saved by a run, or altered) was a KeyError traceback.
    problem = step_problem(saved)
    if problem:
        return problem
    wrong = [f'{key} of type {type(saved[key]).__name__}' for key in ('metrics', 'optimizer',
                                                                    'scheduler')
             if saved.get(key) is not None and not isinstance(saved[key], dict)]
    if wrong:
        return f'holds {wrong[0]}, not a mapping (altered, or not saved by a training run)'
    if saved.get('optimizer') and not saved.get('scheduler'):
        return ('holds an optimizer state without its learning-rate schedule (altered, or not '
                'saved by a training run)')
    current = model.config.to_dict()
    if saved['model_config'] != current:
        return (f'was trained with another model '
                f'({_describe_mismatch(saved["model_config"], current)})')
    # What the model learned from is the saved run's: a resumed run cannot change it
    # (an adapted model takes both from its base, whatever data.input_size says).
    adapting = config.method == 'mmp_adapt'
    saved_meta = saved['metadata']
    changed = [] if adapting else [
        f'{key}: {saved_meta[key]!r} -> {now!r}' for key, now in (
            ('input_size', list(config.data.input_size)),
            ('class_names', list(metadata.class_names)))
        if list(saved_meta[key]) != now]
    if changed:
        return f'was trained on other data ({"; ".join(changed)})'
    # Of the model its config describes, unless altered: a tensor missing was a KeyError
    # traceback in the frozen weights' comparison below, one of another shape said that
    # another base's frozen weights were there.
    difference = weights_difference(model.state_dict(), saved['state_dict'])
    if difference:
        return f'holds weights that do not fit the model it describes ({difference})'
    difference = optimizer_difference(model, saved['optimizer']) if saved.get('optimizer') \
        else ''
    if difference:
        return (f'holds an optimizer state that does not fit the model it describes '
                f'({difference}; saved by another version, or altered)')
    # An adaptation's frozen weights are its base's: a run of another base (one trained
    # again at the same path, too) would otherwise go on with the saved base's.
    frozen = [name for name, value in model.state_dict().items()
              if not name.startswith(ADAPTED_PREFIXES)
              and not torch.equal(value.cpu(), saved['state_dict'][name])] \
        if adapting else []
    if frozen:
        return (f'adapts another base model than {config.base_checkpoint} (its frozen weights '
                f'differ, {frozen[0]} first)')
    return ''


def adaptation_resume_problem(config: TrainConfig) -> tuple[Path, str]:
    """For an adaptation (``method`` mmp_adapt) that resumes from the checkpoint in its
    out_dir: that checkpoint and :func:`resume_problem`'s answer, told from the base alone,
    before any data is read; ``''`` where there is nothing to resume. What the base itself
    refuses (a base trained with projection, adapters without distillation) is raised as
    training raises it, resuming or not: ``mmp_ros adapt`` said it once the recording had been
    read."""
    checkpoint_path = Path(config.out_dir) / CHECKPOINT_NAME
    model, metadata = _adapt_model(config)
    if not (config.resume and checkpoint_path.is_file()):
        return checkpoint_path, ''
    return checkpoint_path, resume_problem(config, model, metadata,
                                           read_checkpoint(checkpoint_path))


def use_deterministic_algorithms(device: torch.device) -> None:
    """Deterministic algorithms (exact on the CPU; best effort on CUDA, which warns), without
    the NaN that PyTorch's deterministic mode otherwise writes into every new tensor.

    That fill exists in case an operator reads memory it did not write; none of training's
    does (``test/test_train.py`` trains alike with and without it), and on the 2-core CPU it
    took 11 to 13 % of a step, from scratch and in adaptation alike (docs/performance.md,
    "Deterministic without the NaN fill"). Process-wide, as the mode is.
    """
    torch.use_deterministic_algorithms(True, warn_only=device.type == 'cuda')
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False


def channels_last_past_the_stems(model: MultimodalSegmenter) -> MultimodalSegmenter:
    """The CPU's layout for training: every convolution's weight channels-last but the
    stems', so everything after the stems computes channels-last (a convolution's output
    takes its weight's layout) and the stems, on the sensors' 1 to 4 channels at full
    resolution, keep the contiguous one.

    Measured on the 2-core CPU (docs/performance.md, "Channels-last past the stems"): a
    cached adaptation step 12 % less, a from-scratch step 4 % less, where the whole model
    channels-last makes a from-scratch step 10 % slower. The values, checkpoints and
    exported graphs are the same; only the rounding of a step's sums moves.
    """
    model.to(memory_format=torch.channels_last)
    model.stems.to(memory_format=torch.contiguous_format)
    return model


def frozen_norms_folded(model: MultimodalSegmenter) -> MultimodalSegmenter:
    """What an adaptation's steps run: a copy of the adapted ``model`` (in eval mode)
    without its frozen batch norms. Each frozen convolution and the batch norm after it
    are one convolution (``torch.nn.utils.fuse_conv_bn_eval``), in the stems, the modality
    encoders, the shared encoder's stages and the decoder (whose forward adds the folded
    bias); the fused map's norm, which follows a sum, goes into every modality's fusion
    convolution (``_fold_fusion_norm``). Its trained parameters (the projection's and the
    adapters') are ``model``'s own, so what the steps train is what ``model`` holds,
    evaluates and saves.

    A frozen batch norm is a fixed per-channel affine map, yet costs a pass over its map
    forward and another backward: on the 2-core CPU about 5 % of a cached adaptation step
    in the profiler. Folding all but the last two took 2.7 % off it side by side, those
    two (the fused map's and the decoder's) another 4 % (docs/performance.md, "Frozen
    batch norms folded"). The function is the same to float rounding.
    """
    if model.training:
        raise ValueError('frozen_norms_folded folds batch-norm statistics: call model.eval()')
    # the trained parameters (the projection's, the adapters') are shared, not copied
    twin = copy.deepcopy(model, {id(p): p for p in model.parameters() if p.requires_grad})
    if not any(p.requires_grad for p in (*twin.fusion.parameters(),
                                          *twin.fusion_norm.parameters())):
        _fold_fusion_norm(twin)
    folded = [*twin.stems.values(), *twin.modality_blocks.values(), *twin.encoder.stages,
              twin.decoder]
    for sequence in (m for part in folded for m in part.modules()
                     if isinstance(m, nn.Sequential)):
        for index in range(len(sequence) - 1):
            conv, norm = sequence[index], sequence[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) \
                    and not any(p.requires_grad for p in (*conv.parameters(),
                                                         *norm.parameters())):
                fused = nn.utils.fuse_conv_bn_eval(conv, norm)
                # in the convolution's own layout (``channels_last_past_the_stems``)
                fused.weight.data = torch.empty_like(conv.weight).copy_(fused.weight.data)
                sequence[index], sequence[index + 1] = fused, nn.Identity()
    return twin


@torch.no_grad()
def _fold_fusion_norm(model: MultimodalSegmenter) -> None:
    """The fused map's frozen batch norm folded into the fusion convolutions whose sum it
    follows (in place; the norm becomes an identity). Each is scaled as the norm scales;
    the norm's shift joins the first one's bias, as every modality's bias is summed,
    available or not. The projected share composes the heads with the scaled weights, so
    it is scaled alike."""
    norm = model.fusion_norm
    scale = frozen_norm_scale(norm)
    shift = norm.bias - norm.running_mean * scale
    for index, conv in enumerate(model.fusion.values()):
        conv.weight.mul_(scale[:, None, None, None])  # in place: keeps the weight's layout
        conv.bias.mul_(scale)
        if index == 0:  # every modality's bias is summed, whichever are available
            conv.bias.add_(shift)
    model.fusion_norm = nn.Identity()


def _describe_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str:
    keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    return ', '.join(f'{k}: {saved.get(k)!r} -> {current.get(k)!r}' for k in keys)


def train(config: TrainConfig, *, train_dataset: Dataset | None = None,
          val_dataset: Dataset | None = None, command: str = '') -> TrainResult:
    """Train (or resume) the run ``config`` describes; returns where the checkpoint is.

    Datasets default to ``config.data``'s splits; tests pass small ones directly.
    """
    started = time.perf_counter()
    ddp = Distributed.from_env()
    if config.batch_size % ddp.world_size:
        raise ConfigError(f'batch_size {config.batch_size} is global: it must split evenly over '
                          f'the {ddp.world_size} processes')
    device = resolve_device(config.device, ddp.local_rank)
    out_dir = output_folder(config.out_dir, 'out_dir')  # before any data is read
    for name in (CHECKPOINT_NAME, *HISTORY_FILES):  # a folder there failed once steps had run
        if (out_dir / name).is_dir():
            raise OutputFolderError(f'out_dir {out_dir}: {out_dir / name} is a folder, where '
                                    f'the run writes its {name}; move it away, or give another '
                                    'out_dir (--set out_dir=DIR)')
    if ddp.world_size > 1 and not dist.is_initialized():
        backend = 'nccl' if device.type == 'cuda' else 'gloo'
        dist.init_process_group(backend=backend)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    else:  # a CPU step's activations are freed and allocated again at every step
        keep_freed_memory()
    if config.deterministic:
        use_deterministic_algorithms(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    adapting = config.method == 'mmp_adapt'
    modalities = tuple(config.modalities)

    if adapting:  # the base first: one missing or unfit is named before any data is read
        model, metadata = _adapt_model(config)
        problem = crop_problem(tuple(config.distill_crop), metadata.input_size)
        if problem:
            raise ConfigError(problem)
    train_data = train_dataset if train_dataset is not None else build_dataset(
        config.data, config.data.train_split)
    check_modalities(train_data, modalities, need_label=not adapting,
                     name=f'training data ({config.data.train_split})')
    if adapting:
        train_data = UnlabelledDataset(train_data, modalities)
    else:
        class_names, palette = dataset_classes(train_data)
        options = config.model
        model_config = ModelConfig(
            modalities=modalities, num_classes=len(class_names), size=config.size,
            method=config.method, **options.projection(),
            mask_conditioning=options.mask_conditioning,
            mask_adapters=options.mask_adapters,
            modality_widths=dict(options.modality_widths),
            token_strides=dict(options.token_strides),
        )
        model = build_model(model_config)
        metadata = ModelMetadata(
            modalities=modalities, input_channels={m: INPUT_CHANNELS[m] for m in modalities},
            normalization=compute_normalization(train_data, modalities,
                                                config.data.normalization_samples),
            input_size=tuple(config.data.input_size), class_names=class_names,
            palette=palette, method=config.method,
        )
    provenance = {
        'command': command or ' '.join(sys.argv), 'seed': config.seed, 'steps': config.steps,
        'method': config.method, 'size': config.size,
        'dataset': config.data.dataset if train_dataset is None else getattr(
            train_dataset, 'description', f'{type(train_dataset).__name__} passed in'),
        'dataset_params': dict(config.data.params) if train_dataset is None else {},
        'train_samples': len(train_data), 'commit': git_commit(),
        'base_checkpoint': config.base_checkpoint, 'world_size': ddp.world_size,
        'device': device.type,
    }
    metadata = ModelMetadata.from_dict({**metadata.to_dict(), 'provenance': provenance})
    model.to(device)
    if device.type == 'cpu':
        channels_last_past_the_stems(model)

    optimizer = adamw(parameter_groups(model, config.optim.weight_decay), device,
                      lr=config.optim.lr, betas=tuple(config.optim.betas))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, total=config.steps, warmup=config.optim.warmup_steps,
        power=config.optim.poly_power))
    use_amp = config.amp and device.type == 'cuda'
    amp_dtype = torch.float16 if config.amp_dtype == 'float16' else torch.bfloat16
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp and amp_dtype == torch.float16)

    checkpoint_path = out_dir / CHECKPOINT_NAME
    start_step, metrics = 0, {}
    if config.resume and checkpoint_path.is_file():
        try:
            saved = read_checkpoint(checkpoint_path)
            # resume_problem reads its fields: one missing was a KeyError traceback.
            checkpoint_metadata(saved, checkpoint_path)
        except CheckpointError as exc:  # it said what is wrong, not what to do about it
            raise CheckpointError(f'{exc}; the run would resume from it: give another out_dir '
                                  '(--set out_dir=DIR), or --set resume=false to start afresh '
                                  'there (replacing it)') from exc
        problem = resume_problem(config, model, metadata, saved)
        if problem:
            raise CheckpointError(f'{checkpoint_path}: {problem}; give another out_dir '
                                  '(--set out_dir=DIR), or --set resume=false to start '
                                  'afresh there (replacing that run)')
        load_weights(model, saved['state_dict'], source=str(checkpoint_path))
        if saved.get('optimizer'):
            # The moments and the step count are the saved run's; the settings (optim.lr,
            # betas, weight_decay) and the schedule's place are this run's, as its config says
            # (loaded, the saved ones were kept whatever the config asked).
            settings = [{k: v for k, v in group.items() if k != 'params'}
                        for group in optimizer.param_groups]
            optimizer.load_state_dict(saved['optimizer'])
            scheduler.load_state_dict(saved['scheduler'])
            for group, own in zip(optimizer.param_groups, settings, strict=True):
                group.update(own)
            scheduler.base_lrs = [group['initial_lr'] for group in optimizer.param_groups]
            if saved.get('scaler'):
                scaler.load_state_dict(saved['scaler'])
        # The schedule goes on from the saved step, with the saved moments or without them (a
        # shipped checkpoint keeps none): without, it started again at step 0's warm-up.
        scheduler.last_epoch = int(saved['step'])
        for group in optimizer.param_groups:
            group['lr'] = group['initial_lr'] * lr_factor(
                int(saved['step']), total=config.steps, warmup=config.optim.warmup_steps,
                power=config.optim.poly_power)
        metadata = ModelMetadata.from_dict({**saved['metadata'], 'provenance': provenance})
        start_step, metrics = int(saved['step']), dict(saved.get('metrics') or {})

    distilling = adapting and config.distillation_weight > 0
    crop = tuple(config.distill_crop)
    mode = ('distill' if distilling else 'align') if adapting else 'train'
    # A loss that does not weigh the alignment terms does not compute them either (about a
    # tenth of a cached adaptation step).
    # Adaptation steps run the frozen network with its batch norms folded (a copy sharing
    # the trained parameters); evaluation and checkpoints keep ``model`` itself.
    student = frozen_norms_folded(model.eval()) if adapting else model
    step_module: nn.Module = TrainStep(student, mode, alignment=config.alignment_weight > 0)
    if ddp.world_size > 1:
        # On the CPU the 1x1 convolutions' channels-last gradients are copied into DDP's
        # contiguous buckets, which is what its 'Grad strides do not match bucket view
        # strides' warning says, on every process; that copy is in the measured step.
        warnings.filterwarnings('ignore', message='Grad strides do not match bucket view')
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == 'cuda' else None)
    history = History(out_dir, resume_step=start_step) if ddp.is_main else None
    val_data = None
    # Rank 0 alone evaluates, but every process checks the data: one that rank 0 alone
    # refused left the others to fail in a collective, each with a traceback.
    if config.eval_every:
        val_data = val_dataset if val_dataset is not None else build_dataset(
            config.data, config.data.val_split)
        check_modalities(val_data, modalities, need_label=True,
                         name=f'validation data ({config.data.val_split})')

    validation_seconds = 0.0

    def evaluate_now() -> SubsetReport:
        nonlocal validation_seconds
        validation_started = time.perf_counter()
        report = evaluate_subsets(
            model, batches_for_eval(val_data, metadata, batch_size=config.batch_size,
                                    device=device, max_samples=config.data.val_samples),
            modalities=modalities, num_classes=metadata.num_classes)
        metrics.update({'step': step + 1, 'val_full_miou': report.full,
                        'val_mean_missing_miou': report.mean_missing,
                        'val_subsets': {k: s.miou for k, s in report.subsets.items()}})
        validation_seconds += time.perf_counter() - validation_started
        return report

    saved_step = start_step if start_step else None  # the step checkpoint_path holds

    def save(step_done: int) -> None:
        nonlocal saved_step
        save_checkpoint(
            checkpoint_path, model=model,
            metadata=ModelMetadata.from_dict({**metadata.to_dict(), 'metrics': metrics}),
            train_config=config.to_dict(), step=step_done, metrics=metrics,
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
            scaler=scaler.state_dict() if scaler.is_enabled() else None)
        saved_step = step_done

    remaining = config.steps - start_step
    result = TrainResult(checkpoint=checkpoint_path, start_step=start_step, metrics=metrics)
    if remaining <= 0:  # resumed at or past config.steps: nothing to train
        return result
    local_batch = config.batch_size // ddp.world_size
    sampler = StepBatchSampler(len(train_data), config.batch_size, seed=config.seed,
                               start_step=start_step, steps=remaining, rank=ddp.rank,
                               world_size=ddp.world_size)
    loader = DataLoader(train_data, batch_sampler=sampler, collate_fn=collate,
                        num_workers=config.data.num_workers, pin_memory=device.type == 'cuda')
    mask_config = replace(config.mask, full_probability=0.0) if adapting else config.mask
    # the first step of mask.full_tail, in which every sample keeps every modality
    full_from = config.steps - round(config.mask.full_tail * config.steps)
    model.train()
    if adapting:
        model.eval()  # frozen base: batch-norm statistics stay the base model's
    progress = None
    try:
        batches: Any = loader
        if distilling and config.teacher_cache:
            cache_started = time.perf_counter()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                cache = TeacherCache(student, train_data, metadata,
                                     batch_size=max(local_batch, FORWARD_BATCH),
                                     device=device, num_workers=config.data.num_workers)
            batches = cache.batches(sampler)
            result.teacher_cache_seconds = time.perf_counter() - cache_started
            if ddp.is_main:
                print(f'teacher cache: {len(cache)} frames, {cache.nbytes / 2**20:.0f} MiB, '
                      f'{result.teacher_cache_seconds:.1f} s', file=sys.stderr)
            if config.projection_fit.steps and not start_step:
                fit = fit_projection(model, cache, steps=config.projection_fit.steps,
                                     batch_size=config.projection_fit.batch_size,
                                     lr=config.projection_fit.lr, mask=mask_config,
                                     generator=torch.Generator().manual_seed(config.seed))
                if ddp.world_size > 1:  # every process fitted the same; keep rank 0's exactly
                    for parameter in model.projection.parameters():
                        dist.broadcast(parameter.data, 0)
                result.projection_fit_seconds = fit.seconds
                if ddp.is_main:
                    print(f'projection fit: {len(fit.losses)} steps, loss {fit.losses[0]:.4f} -> '
                          f'{fit.losses[-1]:.4f}, {fit.seconds:.1f} s', file=sys.stderr)
        if config.progress and ddp.is_main:
            from tqdm import tqdm

            progress = tqdm(total=config.steps, initial=start_step, desc=config.method,
                            dynamic_ncols=True)
        trained = [p for p in model.parameters() if p.requires_grad]
        loop_started = time.perf_counter()
        step = start_step
        for step, batch in zip(range(start_step, config.steps), batches, strict=True):
            if isinstance(batch, DistillTargets):
                inputs = batch
            else:
                batch = resize_batch(batch, metadata.input_size, modalities)
                inputs = normalize({m: batch[m].to(device, non_blocking=True) for m in modalities},
                                   metadata)
            generator = step_generator(config.seed, step)
            if config.method == 'none' or step >= full_from:
                available = torch.ones(local_batch, len(modalities), dtype=torch.bool)
            else:
                masks = sample_masks(config.batch_size, modalities, mask_config, generator)
                available = masks[ddp.rank * local_batch:(ddp.rank + 1) * local_batch]
            if crop:  # the whole frame's targets, cut to a window (the same on every process)
                if not isinstance(inputs, DistillTargets):
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                        inputs = student.distill_targets(inputs)
                inputs = inputs.crop(*crop_origin(inputs.image_size, crop, generator), crop)
            labels = None if adapting else batch['label'].to(device)  # adaptation reads none
            if config.mask.full_pass:  # the same samples again, every modality real
                inputs = {m: torch.cat([x, x]) for m, x in inputs.items()}
                available = torch.cat([available, torch.ones_like(available)])
                labels = torch.cat([labels, labels])
            available = available.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits, alignment, teacher = step_module(inputs, available)
            align = masked_alignment(alignment, available) \
                if alignment is not None else torch.zeros((), device=device)
            if distilling:  # against the base model's own prediction with every modality real
                ce = soft_cross_entropy(logits, teacher, rows=~available.all(1))
                loss = config.alignment_weight * align + config.distillation_weight * ce
            elif adapting:
                ce = torch.zeros((), device=device)
                loss = align
            else:
                ce = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
                if config.mask.full_pass:  # the masked and the full pass's losses, summed
                    ce = 2 * ce
                loss = ce + config.alignment_weight * align
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.optim.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(trained, config.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()

            values = torch.stack([loss.detach(), ce.detach(), align.detach()]).float()
            if ddp.world_size > 1:
                dist.all_reduce(values)
                values /= ddp.world_size
            loss_value, ce_value, align_value = (float(v) for v in values.cpu())
            if not math.isfinite(loss_value):
                kept = '' if saved_step is None else \
                    f' ({checkpoint_path} holds step {saved_step}, from before)'
                raise DivergedError(f'loss became {loss_value} at step {step + 1}; lower '
                                    f'optim.lr or check the data for NaN{kept}')
            result.losses.append(loss_value)
            if ddp.is_main:
                done = step + 1
                row = {'step': done, 'loss': loss_value, 'ce': ce_value, 'alignment': align_value,
                       'lr': scheduler.get_last_lr()[0],
                       'seconds': history.seconds_before + time.perf_counter() - loop_started}
                if val_data is not None and (done % config.eval_every == 0
                                             or done == config.steps):
                    evaluate_now()
                    row.update({'val_full_miou': metrics['val_full_miou'],
                                'val_mean_missing_miou': metrics['val_mean_missing_miou']})
                if done % max(1, config.log_every) == 0 or done == config.steps or len(row) > 6:
                    history.append(row)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f'{loss_value:.3f}', align=f'{align_value:.3f}')
                if (config.checkpoint_every and done % config.checkpoint_every == 0) \
                        or done == config.steps:
                    save(done)
    except KeyboardInterrupt:  # Ctrl-C: say what is kept, draw the curves so far
        if progress is not None:
            progress.close()
        if ddp.is_main:
            print(interrupted_message(config, checkpoint_path, saved_step,
                                      start_step + len(result.losses)), file=sys.stderr)
            history.plot()
        raise
    if progress is not None:
        progress.close()
    loop_seconds = time.perf_counter() - loop_started
    if ddp.is_main:
        history.plot()
    if ddp.world_size > 1:
        dist.barrier()
    result.metrics = metrics
    result.seconds = time.perf_counter() - started
    result.train_seconds = (loop_seconds - validation_seconds + result.teacher_cache_seconds
                            + result.projection_fit_seconds)
    result.seconds_per_step = result.train_seconds / max(1, len(result.losses))
    return result


def interrupted_message(config: TrainConfig, checkpoint_path: Path, saved_step: int | None,
                        done: int) -> str:
    """What a run stopped after ``done`` steps keeps, and how to go on from it."""
    if saved_step is None:
        return (f'interrupted at step {done}: no checkpoint saved yet (checkpoint_every='
                f'{config.checkpoint_every}); the same command starts again from step 0')
    again = 'the same command resumes' if config.resume else \
        'the same command with --set resume=true resumes'
    return (f'interrupted at step {done}: {checkpoint_path} holds step {saved_step}; {again} '
            'from there')


# --- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--config', help='YAML training config (config/train_*.yaml)')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='KEY=VALUE', help='override a config value, e.g. optim.lr=1e-3 '
                        '(repeatable)')


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides)
    command = getattr(args, 'command_line', None) or 'mmp_ros train ' + ' '.join(sys.argv[2:])
    result = train(config, command=command)
    if Distributed.from_env().is_main:
        if result.losses:
            print(f'checkpoint: {result.checkpoint}  ({len(result.losses)} steps, '
                  f'{result.seconds:.1f} s, {result.seconds_per_step * 1000:.0f} ms/step)')
        else:
            print(f'checkpoint: {result.checkpoint} is already at step {result.start_step} of '
                  f'steps={config.steps}: nothing to train (raise steps to train further)')
        for key in ('val_full_miou', 'val_mean_missing_miou'):
            if key in result.metrics:
                print(f'{key}: {result.metrics[key]:.2f}')
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m training.train`` (what ``torchrun`` launches)."""
    parser = argparse.ArgumentParser(prog='python -m training.train', description=__doc__)
    add_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = ' '.join([parser.prog, *argv])  # what the checkpoint records
    try:
        return run(args)
    except InputError as exc:  # as ``mmp_ros train`` prints it: the message alone
        print(f'{parser.prog}: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: train said what is kept; no traceback after it
        return 130


if __name__ == '__main__':
    sys.exit(main())
