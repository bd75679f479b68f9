"""Training configuration: dataclasses loaded from YAML, with ``key.sub=value`` overrides.

Unknown keys are errors (a typo must not silently train the default), as is a key given
twice in a file (YAML would keep the last without a word), and every value
is checked when the config is built, so a bad config stops before any data is read.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from mmp_ros.errors import InputError
from mmp_ros.modalities import INPUT_CHANNELS, MODALITIES, check_modalities
from mmp_ros.model.config import METHODS, MODEL_SIZES, PROJECTION_KINDS, PROJECTION_STAGES
from mmp_ros.yaml_keys import key_given_twice

CHECKPOINT_NAME = 'checkpoint.pt'  # what a run writes in its out_dir, and resumes from

# distill_crop's windows start and end on the shared encoder's coarsest grid (stride 32), so
# every feature map of a window lies on the whole frame's grid.
CROP_GRID = 32


class ConfigError(InputError, ValueError):
    """A training configuration that cannot be used; the message names the key."""


# The default dataset and its default params: they are that dataset's keywords, so a
# config that names another dataset and no params passes it none (load_config).
SYNTHETIC_DATASET = 'training.data.dataset:SyntheticDataset'
SYNTHETIC_PARAMS = {'length': 20000, 'size': [128, 160]}


@dataclass
class DataConfig:
    """Where samples come from: a ``module:callable`` called as ``factory(split=..., **params)``.

    The callable returns a map-style dataset whose items are dicts of float32 tensors
    per modality in the sensor representation, ``(C, H, W)``, plus ``label`` ``(H, W)``
    int64 (255 = ignore). Class names and palette come from the dataset's
    ``class_names``/``palette`` attributes or its module's ``CLASS_NAMES``/``PALETTE``.
    """

    dataset: str = SYNTHETIC_DATASET
    params: dict[str, Any] = field(default_factory=lambda: dict(SYNTHETIC_PARAMS))
    train_split: str = 'train'
    val_split: str = 'val'
    input_size: tuple[int, int] = (128, 160)  # (height, width) the model is trained at
    num_workers: int = 0
    normalization_samples: int = 64  # training samples the per-channel statistics use
    val_samples: int = 64  # validation samples per periodic evaluation (0: all)


@dataclass
class MaskConfig:
    """How the random non-empty modality mask of each training sample is drawn.

    With probability ``full_probability`` every modality is kept; otherwise each
    modality is dropped independently with its ``drop_probability`` and a mask that
    came out empty is drawn again.

    ``full_pass`` also passes every sample with every modality in the same step, its
    loss added to the masked pass's: the masked methods then learn the full set from
    every sample, as ``none`` does, at twice the compute of a step.

    ``stratified`` draws a batch's masks from the same distribution, but spread over the
    batch as evenly as it allows (systematic sampling over the subsets): each subset
    comes as often as its probability says to within one sample in every batch, instead
    of by chance (``training.masking.sample_masks``).

    ``full_tail`` keeps every modality of every sample in the last ``full_tail`` of the
    steps (a fraction): masked training, then a short phase at the end of the learning
    rate's decay in which the model learns the full set alone, as ``none`` does.
    """

    full_probability: float = 0.2
    drop_probability: float | dict[str, float] = 0.5
    full_pass: bool = False
    stratified: bool = False
    full_tail: float = 0.0


@dataclass
class OptimConfig:
    """AdamW with linear warm-up, then polynomial decay to zero."""

    lr: float = 2e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    poly_power: float = 0.9
    grad_clip: float = 1.0  # max global grad norm; 0 disables


@dataclass
class ModelOptions:
    """Model settings beyond size and method (see :class:`mmp_ros.model.ModelConfig`)."""

    projection_stage: str = 'encoder'
    projection_kind: str = 'attention'
    projection_stride: int = 32
    aggregate_stride: int = 32
    mask_conditioning: bool = False  # label-free adaptation keeps the base model's
    mask_adapters: int = 0  # rank of the mask-gated adapters (adaptation may add them); 0: none
    modality_widths: dict[str, int] = field(default_factory=dict)
    token_strides: dict[str, int] = field(default_factory=dict)

    def projection(self) -> dict[str, Any]:
        """The projection's fields of :class:`~mmp_ros.model.ModelConfig`."""
        return {'projection_stage': self.projection_stage,
                'projection_kind': self.projection_kind,
                'projection_stride': self.projection_stride,
                'aggregate_stride': self.aggregate_stride}


@dataclass
class ProjectionFitConfig:
    """mmp_adapt with the teacher cache: before distillation, fit the projection alone to
    the missing modalities' share of the frozen model's fused map, on the cached tokens
    (training/projection_fit.py). 0 steps: no fit."""

    steps: int = 0
    batch_size: int = 64
    # 0.003 until the twenty-fourth session; 0.01 fits as well in half the steps and better
    # in as many (docs/robustness.md, "The fit's learning rate, and masks spread evenly")
    lr: float = 1e-2


@dataclass
class TrainConfig:
    """One training run. ``batch_size`` is global: split evenly across DDP processes."""

    method: str = 'mmp'
    size: str = 'tiny'
    modalities: tuple[str, ...] = MODALITIES
    steps: int = 2000
    batch_size: int = 16
    seed: int = 0
    device: str = 'auto'  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA; ignored on CPU
    amp_dtype: str = 'bfloat16'  # bfloat16 | float16 (float16 uses a GradScaler)
    # Weight of the alignment loss (smooth-L1 of projected to real tokens); for mmp_adapt
    # without distillation it is the only loss, and its weight only scales the rate. 0: the
    # alignment terms are not computed at all.
    alignment_weight: float = 1.0
    # mmp_adapt only: weight of the label-free distillation term, the cross-entropy of the
    # prediction with projected tokens against the frozen base model's own soft prediction
    # with every modality real (no label read). 0: the alignment loss alone.
    distillation_weight: float = 0.0
    base_checkpoint: str = ''  # mmp_adapt: the model trained on all modalities
    # mmp_adapt with distillation: compute the frozen model's side of the loss once per
    # training frame and keep it in memory (0.36 MiB a frame at 128x160), so a step
    # runs only what learns and what its gradient passes through. Pays off when frames
    # come back (steps x batch_size well above the number of frames).
    teacher_cache: bool = False
    # mmp_adapt with distillation: what learns sees a random (height, width) window of each
    # batch, on a grid of CROP_GRID pixels; the frozen model's targets are computed on the
    # whole frame and cut to the window, so they keep the frame's context. A step costs
    # about the window's share of the frame. Empty: the whole frame.
    distill_crop: tuple[int, ...] = ()
    out_dir: str = 'out/train'
    resume: bool = True  # continue from out_dir/checkpoint.pt when it exists
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 10
    progress: bool = True
    deterministic: bool = True  # deterministic algorithms (CPU exact; CUDA best effort)
    threads: int = 0  # CPU intra-op threads; 0 keeps torch's default
    model: ModelOptions = field(default_factory=ModelOptions)
    mask: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    projection_fit: ProjectionFitConfig = field(default_factory=ProjectionFitConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def validate(config: TrainConfig) -> None:
    """Raise :class:`ConfigError` naming the first wrong value."""
    try:
        config.modalities = check_modalities(tuple(config.modalities),
                                             known=tuple(INPUT_CHANNELS))
    except ValueError as exc:
        raise ConfigError(f'modalities: {exc}') from exc
    if config.method not in METHODS:
        raise ConfigError(f'method: unknown {config.method!r}; known: {list(METHODS)}')
    if config.size not in MODEL_SIZES:
        raise ConfigError(f'size: unknown {config.size!r}; known: {list(MODEL_SIZES)}')
    if config.model.projection_stage not in PROJECTION_STAGES:
        raise ConfigError(f'model.projection_stage must be one of {PROJECTION_STAGES}')
    if config.model.projection_kind not in PROJECTION_KINDS:
        raise ConfigError(f'model.projection_kind must be one of {PROJECTION_KINDS}')
    if config.method == 'mmp_adapt' and not config.base_checkpoint:
        raise ConfigError('method mmp_adapt needs base_checkpoint (a model trained with '
                          'method none on all modalities)')
    if config.base_checkpoint and config.method != 'mmp_adapt':
        raise ConfigError(f'base_checkpoint is the frozen model that mmp_adapt adapts; method '
                          f'{config.method!r} trains from scratch and would not read it')
    for name in ('steps', 'batch_size'):
        if getattr(config, name) <= 0:
            raise ConfigError(f'{name} must be positive, got {getattr(config, name)}')
    if abs(config.seed) >= 2**32:  # the samplers' generators take seed * 1_000_003 + epoch
        raise ConfigError(f'seed: {config.seed} is out of range (below 2**32 in magnitude)')
    for name in ('eval_every', 'checkpoint_every', 'log_every', 'threads'):
        if getattr(config, name) < 0:
            raise ConfigError(f'{name} must be >= 0')
    # what torch would otherwise refuse with a traceback, or silently misuse
    optim, data = config.optim, config.data
    for name, value, ok, allowed in (
            ('optim.lr', optim.lr, optim.lr > 0, '> 0'),
            ('optim.betas', list(optim.betas),
             len(optim.betas) == 2 and all(0 <= b < 1 for b in optim.betas),
             'two values in [0, 1)'),
            ('optim.weight_decay', optim.weight_decay, optim.weight_decay >= 0, '>= 0'),
            ('optim.warmup_steps', optim.warmup_steps, optim.warmup_steps >= 0, '>= 0'),
            ('optim.poly_power', optim.poly_power, optim.poly_power > 0, '> 0'),
            ('optim.grad_clip', optim.grad_clip, optim.grad_clip >= 0, '>= 0; 0: no clipping'),
            ('data.num_workers', data.num_workers, data.num_workers >= 0, '>= 0'),
            ('data.normalization_samples', data.normalization_samples,
             data.normalization_samples > 0, '> 0'),
            ('data.val_samples', data.val_samples, data.val_samples >= 0, '>= 0; 0: all')):
        if not ok:
            raise ConfigError(f'{name}: {value} is out of range ({allowed})')
    if config.amp_dtype not in ('bfloat16', 'float16'):
        raise ConfigError(f'amp_dtype must be bfloat16 or float16, got {config.amp_dtype!r}')
    if not 0.0 <= config.mask.full_probability <= 1.0:
        raise ConfigError('mask.full_probability must be in [0, 1]')
    drop = config.mask.drop_probability
    if isinstance(drop, Mapping):
        unknown = sorted(set(drop) - set(config.modalities))
        if unknown:
            raise ConfigError(f'mask.drop_probability names modalities {unknown} that are not '
                              f'in modalities {list(config.modalities)}')
        values = list(drop.values())
    else:
        values = [drop]
    if any(not 0.0 <= float(p) < 1.0 for p in values):
        raise ConfigError('mask.drop_probability must be in [0, 1)')
    if config.alignment_weight < 0:
        raise ConfigError('alignment_weight must be >= 0')
    if config.distillation_weight < 0:
        raise ConfigError('distillation_weight must be >= 0')
    if config.method == 'mmp_adapt' and not config.alignment_weight \
            and not config.distillation_weight:
        raise ConfigError('mmp_adapt with alignment_weight 0 and distillation_weight 0 has '
                          'no loss to learn from')
    if config.mask.full_pass and config.method in ('none', 'mmp_adapt'):
        raise ConfigError(f'mask.full_pass adds a full-modality pass to masked training; '
                          f'method {config.method!r} has no masked training to add it to')
    if not 0.0 <= config.mask.full_tail < 1.0:
        raise ConfigError(f'mask.full_tail is a fraction of the steps in [0, 1), got '
                          f'{config.mask.full_tail}')
    if config.mask.full_tail and config.method in ('none', 'mmp_adapt'):
        raise ConfigError(f'mask.full_tail ends masked training with every modality; method '
                          f'{config.method!r} has no masked training to end')
    if config.distillation_weight and config.method != 'mmp_adapt':
        raise ConfigError('distillation_weight distills the frozen base model of mmp_adapt; '
                          f'method {config.method!r} has none')
    if config.teacher_cache and not (config.method == 'mmp_adapt'
                                     and config.distillation_weight):
        raise ConfigError('teacher_cache keeps the targets of distillation, which needs '
                          'method mmp_adapt and distillation_weight > 0')
    crop = config.distill_crop
    if crop and not (config.method == 'mmp_adapt' and config.distillation_weight):
        raise ConfigError('distill_crop crops what distillation trains on, which needs method '
                          'mmp_adapt and distillation_weight > 0')
    if crop and (len(crop) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % CROP_GRID
            for v in crop)):
        raise ConfigError(f'distill_crop must be (height, width) in multiples of {CROP_GRID} '
                          f'pixels, got {list(crop)}')
    fit = config.projection_fit
    if fit.steps < 0 or fit.batch_size <= 0 or fit.lr <= 0:
        raise ConfigError('projection_fit: steps must be >= 0, batch_size and lr positive, got '
                          f'{fit.steps}, {fit.batch_size}, {fit.lr}')
    if fit.steps and not config.teacher_cache:
        raise ConfigError('projection_fit fits the projection on the teacher cache\'s tokens: '
                          'set teacher_cache=true (mmp_adapt with distillation_weight > 0)')
    if fit.steps and config.model.projection_stage != 'encoder':
        raise ConfigError('projection_fit fits the tokens the fusion takes: it needs '
                          "model.projection_stage 'encoder'")
    if not config.out_dir.strip():  # an unset shell variable: not the current folder
        raise ConfigError('out_dir is empty: name the folder for the checkpoint and its log')
    written = Path(config.out_dir) / CHECKPOINT_NAME
    if config.base_checkpoint and written.resolve() == Path(config.base_checkpoint).resolve():
        # its checkpoint replaced the base (the default out_dir out/train of a base trained
        # with method none), with resume=false or after a refusal that advised it
        raise ConfigError(f'out_dir {config.out_dir}: adaptation writes {written}, which is '
                          f'base_checkpoint {config.base_checkpoint}; it would be replaced: '
                          'give another out_dir')
    if ':' not in config.data.dataset:
        raise ConfigError(f'data.dataset must be "module:callable", got {config.data.dataset!r}')
    if len(config.data.input_size) != 2 or min(config.data.input_size) <= 0:
        raise ConfigError(f'data.input_size must be (height, width), got {config.data.input_size}')


# --- building from plain data --------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: what YAML and ``weights_only`` checkpoints hold."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f'{where or "config"}: expected a mapping, got {type(data).__name__}')
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f'{where or "config"}: unknown keys {unknown}; known: {sorted(names)}')
    values = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f'{where}.{key}' if where else key)
        else:
            values[key] = _coerce(hint, value, f'{where}.{key}' if where else key)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f'{where or "config"}: {exc}') from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check a scalar against its annotation; YAML 1.1 reads ``5e-4`` as a string."""
    if hint is float or hint == (float | None):
        if isinstance(value, bool):
            raise ConfigError(f'{where}: expected a number, got {value!r}')
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f'{where}: expected a number, got {value!r}') from exc
        if not math.isfinite(number):  # .inf and .nan pass every range check below
            raise ConfigError(f'{where}: expected a finite number, got {value!r}')
        return number
    if hint is int:
        if isinstance(value, bool) or not (
                isinstance(value, int) or isinstance(value, float) and value.is_integer()):
            raise ConfigError(f'{where}: expected an integer, got {value!r}')
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f'{where}: expected true or false, got {value!r}')
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f'{where}: expected a string, got {value!r}')
        return value
    if str(hint).startswith('tuple'):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{where}: expected a list, got {value!r}')
        item = get_args(hint)[0]  # every tuple here holds one type: (int, int), (str, ...)
        return tuple(_coerce(item, v, f'{where}[{i}]') for i, v in enumerate(value))
    if hint == (float | dict[str, float]):
        if isinstance(value, Mapping):
            return {str(k): _coerce(float, v, f'{where}.{k}') for k, v in value.items()}
        return _coerce(float, value, where)
    if get_origin(hint) is dict:  # data.params, model.modality_widths, model.token_strides
        if not isinstance(value, Mapping):
            raise ConfigError(f'{where}: expected a mapping, got {value!r}')
        value_hint = get_args(hint)[1]
        return {str(k): _coerce(value_hint, v, f'{where}.{k}') for k, v in value.items()}
    return value


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    return _build(TrainConfig, data, '')


def data_config_from_dict(train_config: Mapping[str, Any]) -> DataConfig:
    """The ``data`` section of a checkpoint's ``train_config`` alone: evaluation needs no
    more, and a run's other settings were checked by the rules of the day it ran."""
    return _build(DataConfig, train_config.get('data') or {}, 'data')


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to nested plain data."""
    for item in overrides:
        if '=' not in item:
            raise ConfigError(f'override {item!r} is not key=value')
        key, text = item.split('=', 1)
        value = yaml.safe_load(text) if text else ''
        node = data
        parts = key.strip().split('.')
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f'override {key!r}: {part!r} is not a section')
        node[parts[-1]] = value
    return data


def _default_params(data: dict[str, Any]) -> None:
    """``data.params`` where the file gives none: ``SYNTHETIC_PARAMS`` for the default dataset,
    nothing for another (whose keywords they are not), with the ``data.params.KEY`` overrides
    already in ``data`` applied on top."""
    section = data.get('data')
    if not isinstance(section, dict) or not isinstance(section.get('params', {}), dict):
        return  # not a mapping: _build names it
    defaults = SYNTHETIC_PARAMS if section.get('dataset', SYNTHETIC_DATASET) == \
        SYNTHETIC_DATASET else {}
    section['params'] = {**defaults, **section.get('params', {})}


def load_config(path: str | os.PathLike | None = None,
                overrides: Iterable[str] = ()) -> TrainConfig:
    """Defaults, then the YAML file (if any), then the overrides, in that order.

    ``data.params.KEY=value`` edits the params in force: the file's, or the default dataset's
    defaults (``data.params.size=[64, 64]`` keeps ``length``); ``data.params={...}`` replaces
    them. A dataset other than the default gets no params but those given.
    """
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, encoding='utf-8') as handle:
                text = handle.read()
            twice = key_given_twice(yaml.compose(text, Loader=yaml.SafeLoader))
            data = yaml.safe_load(text) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f'config file not found: {path}') from exc
        except IsADirectoryError as exc:
            raise ConfigError(f'config {path} is a folder; give the YAML file itself') from exc
        except OSError as exc:
            raise ConfigError(f'config {path}: cannot be read ({exc.strerror or exc})') from exc
        except UnicodeDecodeError as exc:  # a checkpoint given for its config, say
            raise ConfigError(f'{path}: not a YAML text file ({exc.reason} at byte '
                              f'{exc.start})') from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f'{path}: not valid YAML ({exc})') from exc
        if twice:
            key, first, line = twice
            where = f'line {line}' if line == first else f'lines {first} and {line}'
            raise ConfigError(f'{path}: {key!r} is given twice ({where}); YAML would keep the '
                              'last alone: give it once')
        if not isinstance(data, dict):
            raise ConfigError(f'{path}: top level must be a mapping')
    overrides = list(overrides)
    section = data.get('data')
    given = isinstance(section, dict) and 'params' in section or any(
        item.split('=', 1)[0].strip() == 'data.params' for item in overrides)
    data = apply_overrides(data, overrides)
    if not given:
        _default_params(data)
    return config_from_dict(data)
