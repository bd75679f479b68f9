"""What a model is made of: :class:`ModelConfig` and the size registry.

A config holds plain types only, so it round-trips through a checkpoint
(``torch.load(weights_only=True)``) and through YAML without custom classes.
Per-modality widths and token strides default to the size's values and may be
overridden per modality: the encoders do not have to agree on either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mmp_ros.errors import InputError
from mmp_ros.metadata import PROJECTION_METHODS, ROBUSTNESS_METHODS
from mmp_ros.modalities import INPUT_CHANNELS, check_modalities

METHODS = ROBUSTNESS_METHODS  # and PROJECTION_METHODS: both defined with the metadata
# Where missing tokens are substituted: right after the modality's stem, or after its
# modality-specific blocks (the last per-modality stage, just before fusion).
PROJECTION_STAGES = ('stem', 'encoder')
# How the projection computes the missing tokens: the paper's cross-attention of learned
# per-modality queries to aggregated tokens, or a small convolutional network over the
# available modalities' tokens on a grid (what label-free adaptation uses; docs/robustness.md).
PROJECTION_KINDS = ('attention', 'conv')
FUSED_STRIDE = 4  # stride of the fused feature map: the first shared stage


class ModelConfigError(InputError, ValueError):
    """A model configuration that cannot build a model; the message names the field."""


@dataclass(frozen=True)
class SizeSpec:
    """One entry of :data:`MODEL_SIZES`: every width and depth of a model variant."""

    modality_widths: dict[str, int]  # token width of each modality's encoder
    token_strides: dict[str, int]  # input pixels per token, per modality
    modality_depth: int  # residual blocks after each modality's stem
    stage_widths: tuple[int, ...]  # shared encoder, strides 4, 8, 16, 32
    stage_depths: tuple[int, ...]
    decoder_width: int
    projection_dim: int
    projection_heads: int


# Thermal cameras are low resolution, so thermal tokens are coarser by default: the
# registry itself exercises differing token counts and widths.
MODEL_SIZES: dict[str, SizeSpec] = {
    'tiny': SizeSpec(
        modality_widths={'rgb': 24, 'depth': 16, 'polarization': 16, 'thermal': 16},
        token_strides={'rgb': 4, 'depth': 4, 'polarization': 4, 'thermal': 8},
        modality_depth=1,
        stage_widths=(32, 48, 96, 128),
        stage_depths=(1, 1, 2, 1),
        decoder_width=48,
        projection_dim=32,
        projection_heads=2,
    ),
    'base': SizeSpec(
        modality_widths={'rgb': 64, 'depth': 48, 'polarization': 48, 'thermal': 48},
        token_strides={'rgb': 4, 'depth': 4, 'polarization': 4, 'thermal': 8},
        modality_depth=2,
        stage_widths=(64, 128, 256, 320),
        stage_depths=(2, 2, 4, 2),
        decoder_width=128,
        projection_dim=96,
        projection_heads=4,
    ),
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything :func:`mmp_ros.model.build_model` needs; stored in every checkpoint."""

    modalities: tuple[str, ...]
    num_classes: int
    size: str = 'tiny'
    method: str = 'mmp'
    input_channels: dict[str, int] = field(default_factory=dict)  # empty: INPUT_CHANNELS
    modality_widths: dict[str, int] = field(default_factory=dict)  # overrides of the size's
    token_strides: dict[str, int] = field(default_factory=dict)  # overrides of the size's
    projection_stage: str = 'encoder'
    projection_kind: str = 'attention'
    projection_stride: int = 32  # grid of the projected tokens (attention: queries), in pixels
    aggregate_stride: int = 32  # attention's key grid (aggregated tokens); 0 = one per modality
    mask_conditioning: bool = False  # scale and shift the fused map by which modalities are real
    # Rank of the adapter after each shared-encoder stage, gated by which modalities are
    # missing (nothing with all real: label-free adaptation may add it); 0: none.
    mask_adapters: int = 0

    def __post_init__(self) -> None:
        try:
            modalities = check_modalities(tuple(self.modalities), known=tuple(INPUT_CHANNELS))
        except ValueError as exc:
            raise ModelConfigError(f'model config: {exc}') from exc
        object.__setattr__(self, 'modalities', modalities)
        channels = {m: INPUT_CHANNELS[m] for m in modalities}
        channels.update({k: int(v) for k, v in self.input_channels.items()})
        object.__setattr__(self, 'input_channels', channels)
        if self.size not in MODEL_SIZES:
            raise ModelConfigError(f'unknown model size {self.size!r}; known: {list(MODEL_SIZES)}')
        if self.method not in METHODS:
            raise ModelConfigError(f'unknown method {self.method!r}; known: {list(METHODS)}')
        if self.projection_stage not in PROJECTION_STAGES:
            raise ModelConfigError(f'projection_stage must be one of {PROJECTION_STAGES}, '
                                   f'got {self.projection_stage!r}')
        if self.projection_kind not in PROJECTION_KINDS:
            raise ModelConfigError(f'projection_kind must be one of {PROJECTION_KINDS}, '
                                   f'got {self.projection_kind!r}')
        if self.num_classes < 2:
            raise ModelConfigError(f'num_classes must be at least 2, got {self.num_classes}')
        for name, table in (
            ('input_channels', self.input_channels),
            ('modality_widths', self.modality_widths),
            ('token_strides', self.token_strides),
        ):
            extra = sorted(set(table) - set(modalities))
            if extra:
                raise ModelConfigError(
                    f'{name} names modalities {extra} that the model does not have {modalities}'
                )
        for m in modalities:
            if self.widths[m] <= 0 or self.input_channels[m] <= 0:
                raise ModelConfigError(f'{m}: widths and channels must be positive')
            stride = self.strides[m]
            if stride < 2 or stride & (stride - 1):
                raise ModelConfigError(
                    f'{m}: token stride must be a power of two >= 2, got {stride}')
        for name in ('projection_stride', 'aggregate_stride'):
            value = getattr(self, name)
            if value < 0 or (value and value & (value - 1)):
                raise ModelConfigError(
                    f'{name} must be a power of two (or 0 for global), got {value}')
        if self.projection_stride == 0:
            raise ModelConfigError('projection_stride must be positive')
        if self.mask_adapters < 0:
            raise ModelConfigError(f'mask_adapters must be 0 (none) or a positive rank, '
                                   f'got {self.mask_adapters}')
        spec = self.spec
        if spec.projection_dim % spec.projection_heads:
            raise ModelConfigError('projection_dim must be divisible by projection_heads')

    # --- resolved values ------------------------------------------------------------

    @property
    def spec(self) -> SizeSpec:
        return MODEL_SIZES[self.size]

    @property
    def widths(self) -> dict[str, int]:
        """Token width of every modality, size defaults with this config's overrides."""
        return {m: int(self.modality_widths.get(m, self.spec.modality_widths[m]))
                for m in self.modalities}

    @property
    def strides(self) -> dict[str, int]:
        return {m: int(self.token_strides.get(m, self.spec.token_strides[m]))
                for m in self.modalities}

    @property
    def uses_projection(self) -> bool:
        return self.method in PROJECTION_METHODS

    # --- serialization ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data['modalities'] = list(self.modalities)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelConfigError(f'model config has unknown fields {unknown}')
        values = dict(data)
        if 'modalities' in values:
            values['modalities'] = tuple(values['modalities'])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ModelConfigError(f'model config: {exc}') from exc

    def replace(self, **changes: Any) -> ModelConfig:
        return ModelConfig.from_dict({**self.to_dict(), **changes})
