"""One self-describing checkpoint format, loaded strictly and with ``weights_only=True``.

A checkpoint is a ``torch.save`` of a dict of plain types::

    format        'mmp_ros.checkpoint/1'
    model_config  ModelConfig.to_dict()
    metadata      ModelMetadata.to_dict() (modalities, normalization, classes, ...)
    state_dict    the model's weights
    train_config  the training configuration as a dict
    step, metrics
    optimizer, scheduler, scaler, rng   what a resumed run needs (may be None)

Nothing in it needs unpickling of custom classes, so ``weights_only=True`` loads it
and a file from elsewhere cannot run code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmp_ros.atomic import replace_atomically
from mmp_ros.errors import InputError, found_in, home_not_expanded
from mmp_ros.metadata import MetadataError, ModelMetadata
from mmp_ros.model.config import ModelConfig, ModelConfigError
from mmp_ros.model.segmenter import MultimodalSegmenter, build_model

CHECKPOINT_FORMAT = 'mmp_ros.checkpoint/1'


class CheckpointError(InputError, ValueError):
    """A checkpoint that is missing, of another format, or that does not fit the model."""


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, metadata: ModelMetadata,
                    train_config: Mapping[str, Any] | None = None, step: int = 0,
                    metrics: Mapping[str, Any] | None = None,
                    optimizer: Mapping[str, Any] | None = None,
                    scheduler: Mapping[str, Any] | None = None,
                    scaler: Mapping[str, Any] | None = None,
                    rng: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temporary file, then rename): a crash never leaves
    half a file where a resumable one was."""
    model = getattr(model, 'module', model)  # unwrap DistributedDataParallel
    if not isinstance(model, MultimodalSegmenter):
        raise CheckpointError(f'can only save MultimodalSegmenter, got {type(model).__name__}')
    config = model.config
    if tuple(metadata.modalities) != config.modalities:
        raise CheckpointError(f'metadata modalities {list(metadata.modalities)} differ from the '
                              f'model\'s {list(config.modalities)}')
    if metadata.num_classes != config.num_classes:
        raise CheckpointError(f'metadata has {metadata.num_classes} classes, model '
                              f'{config.num_classes}')
    payload = {
        'format': CHECKPOINT_FORMAT,
        'model_config': config.to_dict(),
        'metadata': metadata.to_dict(),
        'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
        'train_config': dict(train_config or {}),
        'step': int(step),
        'metrics': dict(metrics or {}),
        'optimizer': optimizer,
        'scheduler': scheduler,
        'scaler': scaler,
        'rng': rng,
    }
    return replace_atomically(path, lambda partial: torch.save(payload, partial))


def _load_failure(error: Exception, path: Path) -> str:
    """torch.load's reason on one line. A weights-only refusal keeps only the unpickler's
    detail: its advice to load with ``weights_only=False`` is not for a file that was never
    a checkpoint of ours. A file that is no zip archive went to torch's legacy unpickler,
    whose reason alone says nothing ('', '101', 'pop from empty list'): that is named."""
    text = str(error)
    try:
        with open(path, 'rb') as stream:
            zipped = stream.read(4) == b'PK\x03\x04'  # what torch.save writes
    except OSError:
        zipped = True
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1].split('Check the documentation')[0]
        if zipped:
            return (f'holds more than tensors and plain values: {" ".join(text.split())}; '
                    'damaged, or not written by mmp_ros')
    text = ' '.join(text.split())
    if not zipped:
        return (f'no zip archive, as torch.save writes: damaged, or not a checkpoint '
                f'(torch.load: {type(error).__name__}{": " if text else ""}{text})')
    return text


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = 'cpu'
                    ) -> dict[str, Any]:
    """The checkpoint dict, after checking that the file exists and has our format."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f'checkpoint {path} is a folder; give the checkpoint file (.pt) '
                              f'itself{found_in(path, ".pt")}')
    if not path.is_file():
        raise CheckpointError(f'checkpoint not found: {path}{home_not_expanded(path)}')
    if path.stat().st_size == 0:  # torch.load's reason was an empty EOFError: '()'
        raise CheckpointError(f'checkpoint {path} is empty (an interrupted copy or save?)')
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        if path.suffix.lower() == '.onnx':  # the export, not its source
            raise CheckpointError(
                f'{path} is an exported ONNX model, not a training checkpoint: give the '
                'checkpoint (.pt) it was exported from') from exc
        raise CheckpointError(
            f'{path}: not a readable mmp_ros checkpoint ({_load_failure(exc, path)})') from exc
    if not isinstance(checkpoint, dict) or checkpoint.get('format') != CHECKPOINT_FORMAT:
        found = checkpoint.get('format') if isinstance(checkpoint, dict) else type(checkpoint)
        raise CheckpointError(
            f'{path}: format {found!r}, expected {CHECKPOINT_FORMAT!r} (a bare state_dict or a '
            'checkpoint from another project is not accepted)'
        )
    missing = [k for k in ('model_config', 'metadata', 'state_dict') if k not in checkpoint]
    if missing:
        raise CheckpointError(f'{path}: checkpoint lacks {missing}')
    # What every reader indexes into: another type was a TypeError or AttributeError traceback.
    wrong = [f'{k} is {type(checkpoint[k]).__name__}, not a mapping'
             for k in ('model_config', 'metadata', 'state_dict')
             if not isinstance(checkpoint[k], dict)] or [
        f'state_dict[{k!r}] is {type(v).__name__}, not a tensor'
        for k, v in checkpoint['state_dict'].items() if not isinstance(v, torch.Tensor)]
    if wrong:
        raise CheckpointError(f'{path}: its {wrong[0]}; the checkpoint was altered, or not '
                              'written by mmp_ros')
    return checkpoint


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                 source: str = 'checkpoint', *, fresh_prefixes: tuple[str, ...] = ()) -> None:
    """``load_state_dict(strict=True)`` with an error that lists what differs.

    ``fresh_prefixes`` names the only parameters allowed to be absent from
    ``state_dict`` (``('projection.',)`` when a projection is added to a trained model);
    everything else must match exactly.
    """
    own = model.state_dict()
    if fresh_prefixes:
        state_dict = {**{k: v for k, v in own.items() if k.startswith(fresh_prefixes)},
                      **state_dict}
    difference = weights_difference(own, state_dict)
    if difference:
        raise CheckpointError(f'{source}: weights do not fit the model (another size, method '
                              f'or modality set?): {difference}')
    model.load_state_dict(state_dict, strict=True)


def weights_difference(own: Mapping[str, torch.Tensor],
                       state_dict: Mapping[str, torch.Tensor]) -> str:
    """What keeps ``state_dict`` from loading strictly where ``own`` (a model's state dict)
    is: its missing, unexpected and other-shaped tensors; '' where it fits."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if not (missing or unexpected or shapes):
        return ''

    def head(keys: list[str]) -> str:
        return f'{keys[:5]}{" ..." if len(keys) > 5 else ""} ({len(keys)})'
    return (f'missing {head(missing)}, unexpected {head(unexpected)}, '
            f'shape mismatch {head(shapes)}')


def checkpoint_metadata(checkpoint: Mapping[str, Any], path: str | os.PathLike
                        ) -> ModelMetadata:
    """The metadata of ``checkpoint`` (what :func:`read_checkpoint` read from ``path``),
    checked as :func:`load_checkpoint` checks it: what reads one field of it (its modalities,
    its input size) before loading the model got a KeyError traceback for a field missing."""
    try:
        return ModelMetadata.from_dict(checkpoint['metadata'], source=str(path))
    except MetadataError as exc:  # its message names the file already
        raise CheckpointError(str(exc)) from exc


def step_problem(checkpoint: Mapping[str, Any]) -> str:
    """Why ``checkpoint`` records no count of the steps it was trained for ('' where it
    does), which :func:`read_checkpoint` does not require: what read it as
    ``checkpoint['step']`` got a KeyError traceback where it was missing."""
    step = checkpoint.get('step')
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        what = 'no step' if step is None else f'step {step!r}, not a count of steps'
        return f'records {what} (not saved by a training run, or altered)'
    return ''


def checkpoint_step(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> int:
    """The steps ``checkpoint`` (what :func:`read_checkpoint` read from ``path``) was trained
    for; CheckpointError naming ``path`` where it records none (:func:`step_problem`)."""
    problem = step_problem(checkpoint)
    if problem:
        raise CheckpointError(f'{path}: {problem}')
    return checkpoint['step']


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = 'cpu'
                    ) -> tuple[MultimodalSegmenter, ModelMetadata, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights strictly.

    Returns ``(model in eval mode, metadata, checkpoint dict)``.
    """
    checkpoint = read_checkpoint(path, map_location)
    try:
        config = ModelConfig.from_dict(checkpoint['model_config'])
    except ModelConfigError as exc:
        raise CheckpointError(f'{path}: {exc}') from exc
    metadata = checkpoint_metadata(checkpoint, path)
    if tuple(metadata.modalities) != config.modalities:
        raise CheckpointError(f'{path}: metadata modalities {list(metadata.modalities)} differ '
                              f'from the model config\'s {list(config.modalities)}')
    if metadata.num_classes != config.num_classes:
        raise CheckpointError(f'{path}: metadata names {metadata.num_classes} classes, the '
                              f'model config has {config.num_classes}')
    channels = {m: metadata.input_channels[m] for m in metadata.modalities}
    if channels != config.input_channels:
        raise CheckpointError(f'{path}: metadata input channels {channels} differ from the '
                              f'model config\'s {config.input_channels}')
    model = build_model(config)
    load_weights(model, checkpoint['state_dict'], source=str(path))
    model.to(map_location).eval()
    return model, metadata, checkpoint
