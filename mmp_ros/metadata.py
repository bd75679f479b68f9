"""What a model says about itself: the contract between training, export and the node.

A :class:`ModelMetadata` travels inside every checkpoint, in the ``metadata_props``
of every exported ONNX file and beside every TensorRT engine. The runtime reads it;
nothing about the model is duplicated by hand in the node's configuration.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mmp_ros.errors import InputError
from mmp_ros.modalities import INPUT_CHANNELS, check_modalities

METADATA_VERSION = 1
METADATA_KEY = 'mmp_ros'  # the single metadata_props key holding the JSON document

ROBUSTNESS_METHODS = ('none', 'dropout', 'mask_token', 'mmp', 'mmp_adapt')
PROJECTION_METHODS = ('mmp', 'mmp_adapt')  # they synthesize a missing modality's tokens


class MetadataError(InputError, ValueError):
    """A model's metadata is missing, malformed, or contradicts what the user asked for."""


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std`` applied to a modality's sensor representation."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise MetadataError(f'normalization mean {self.mean} and std {self.std} differ')
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise MetadataError(
                f'normalization mean {self.mean} and std {self.std} must be finite'
            )
        if any(s <= 0 for s in self.std):
            raise MetadataError(f'normalization std must be positive, got {self.std}')


@dataclass(frozen=True)
class ModelMetadata:
    """Everything the runtime needs to feed a model and read its output."""

    modalities: tuple[str, ...]
    input_channels: dict[str, int]
    normalization: dict[str, Normalization]
    input_size: tuple[int, int]  # (height, width) of every modality's input tensor
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB per class
    method: str
    provenance: dict[str, Any] = field(default_factory=dict)  # data, command, seed, commit
    metrics: dict[str, Any] = field(default_factory=dict)  # e.g. per-subset mIoU
    version: int = METADATA_VERSION

    def __post_init__(self) -> None:
        check_modalities(self.modalities, known=tuple(INPUT_CHANNELS))
        for name in self.modalities:
            if name not in self.input_channels or name not in self.normalization:
                raise MetadataError(f'metadata lacks channels or normalization for {name!r}')
            channels = self.input_channels[name]
            if len(self.normalization[name].mean) != channels:
                raise MetadataError(
                    f'{name}: normalization has {len(self.normalization[name].mean)} channels, '
                    f'input has {channels}'
                )
        if len(self.palette) != len(self.class_names):
            raise MetadataError(
                f'{len(self.class_names)} class names but {len(self.palette)} palette colours'
            )
        for index, colour in enumerate(self.palette):
            if not is_rgb(colour):
                raise MetadataError(
                    f'palette colour {index} ({self.class_names[index]!r}) is {list(colour)}; '
                    'each colour is three integers 0..255 (R, G, B)'
                )
        if self.method not in ROBUSTNESS_METHODS:
            raise MetadataError(f'unknown method {self.method!r}; known: {ROBUSTNESS_METHODS}')
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise MetadataError(f'input_size must be (height, width), got {self.input_size}')

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def check_modality_order(self, configured: Sequence[str], source: str = 'the model') -> None:
        """Refuse a configuration whose modality order differs from the model's."""
        if tuple(configured) != self.modalities:
            raise MetadataError(
                f'configured modalities {list(configured)} do not match the order of '
                f'{source}: {list(self.modalities)}. Use the model\'s order (or leave the '
                'parameter empty to take it from the model).'
            )

    # --- serialization -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data['normalization'] = {
            k: {'mean': list(v.mean), 'std': list(v.std)} for k, v in self.normalization.items()
        }
        data['input_size'] = list(self.input_size)
        data['palette'] = [list(c) for c in self.palette]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = 'metadata') -> ModelMetadata:
        if not isinstance(data, Mapping):  # JSON null, a list: .get below was an AttributeError
            raise MetadataError(f'{source}: model metadata is {type(data).__name__}, not a '
                                'mapping of its fields; altered, or not written by mmp_ros')
        try:
            version = data.get('version', 0)
            # int() read 1.5, True and '1' as version 1 without a word.
            if isinstance(version, bool) or not (isinstance(version, int) or (
                    isinstance(version, float) and version.is_integer())):
                raise MetadataError(f'metadata version must be a whole number, got {version!r}')
            version = int(version)
            if version != METADATA_VERSION:
                raise MetadataError(
                    f'{source}: metadata version {version}, this mmp_ros reads version '
                    f'{METADATA_VERSION}; re-export the model with this release'
                )
            return cls(
                modalities=tuple(data['modalities']),
                input_channels={k: _whole(v, f'input_channels[{k!r}]')
                                for k, v in data['input_channels'].items()},
                normalization={
                    k: Normalization(tuple(map(float, v['mean'])), tuple(map(float, v['std'])))
                    for k, v in data['normalization'].items()
                },
                input_size=tuple(_whole(v, 'input_size') for v in data['input_size']),
                class_names=tuple(data['class_names']),
                palette=tuple(tuple(_whole(c, f'palette colour {index}') for c in rgb)
                              for index, rgb in enumerate(data['palette'])),
                method=str(data['method']),
                provenance=dict(data.get('provenance', {})),
                metrics=dict(data.get('metrics', {})),
                version=version,
            )
        except MetadataError as exc:  # a value the checks refuse: named after the file too
            if str(exc).startswith(f'{source}: '):
                raise
            raise MetadataError(f'{source}: {exc}') from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f'{source}: malformed model metadata ({exc!r})') from exc

    @classmethod
    def from_json(cls, text: str, source: str = 'metadata') -> ModelMetadata:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetadataError(f'{source}: model metadata is not valid JSON ({exc})') from exc
        return cls.from_dict(data, source=source)


def is_rgb(colour: Any) -> bool:
    """Whether ``colour`` is a palette colour: three integers 0..255 (R, G, B)."""
    return (isinstance(colour, (list, tuple)) and len(colour) == 3
            and all(type(c) is int and 0 <= c <= 255 for c in colour))


def _whole(value: Any, what: str) -> int:
    """``value`` as an int where it is a whole number. int() alone truncated an input size
    of 32.7 to 32 without a word, and raised OverflowError, which no caller expected, for
    JSON's Infinity."""
    if isinstance(value, bool) or (  # int(True) is 1
            isinstance(value, float) and not (math.isfinite(value) and value.is_integer())):
        raise MetadataError(f'{what} must be whole numbers, got {value!r}')
    return int(value)
