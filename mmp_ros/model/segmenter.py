"""The multimodal segmenter: per-modality encoders, MMP, fusion, shared encoder, MLP decoder.

::

    inputs[m] ─► stem_m ─► [substitute] ─► blocks_m ─► [substitute] ─► 1x1_m ─┐
                 (stride s_m, width C_m)     (projection_stage picks one)       Σ ─► shared
    encoder (strides 4, 8, 16, 32) ─► all-MLP decoder ─► logits (B, K, H, W)

"Substitute" is where a missing modality's tokens are replaced, according to the
method: ``none``/``dropout`` zero the missing input instead, ``mask_token`` puts a
learned token, ``mmp``/``mmp_adapt`` the projected tokens. Every branch is computed
for every sample and chosen with ``torch.where``: one graph serves every mask, which
is what the ONNX/TensorRT export needs.

Two optional parts tell the shared network which modalities are real.
``mask_conditioning`` scales and shifts the fused map by a linear function of the mask.
``mask_adapters`` adds a residual bottleneck after each shared-encoder stage, gated by a
linear function of which modalities are missing: exactly nothing with every modality
real, so label-free adaptation can train the adapters with the projection and keep the
frozen model's full-modality output bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mmp_ros.model.config import FUSED_STRIDE, ModelConfig
from mmp_ros.model.layers import ConvNormAct, ResidualBlock, Stem, resize_to
from mmp_ros.model.projection import ConvModalityProjection, MaskedModalityProjection


@dataclass
class TrainOutputs:
    """What :meth:`MultimodalSegmenter.forward_train` returns besides the logits.

    ``alignment`` (B, M): smooth-L1 between projected and real tokens (target detached)
    per sample and modality, for every modality; the training loss averages it over the
    unavailable ones. ``projected``/``real`` hold the tokens at the substitution point,
    for the cosine-similarity report. All empty for methods without projection.
    """

    alignment: torch.Tensor | None
    projected: dict[str, torch.Tensor]
    real: dict[str, torch.Tensor]


class DistillTargets(NamedTuple):
    """The frozen model's side of label-free distillation for a batch of frames:
    ``tokens`` at the projection's stage (the stems' with projection after the stem, the
    modality encoders' otherwise), every modality real; ``teacher``, its logits (B, K, h, w)
    at the decoder's resolution; ``image_size``, the input's (H, W)."""

    tokens: dict[str, torch.Tensor]
    teacher: torch.Tensor
    image_size: tuple[int, int]

    def crop(self, top: int, left: int, size: tuple[int, int]) -> DistillTargets:
        """The targets of the input window of ``size`` (H, W) pixels at (``top``, ``left``):
        each tensor cut on its own grid, so the window's edges must fall on every tensor's
        grid. The frozen model saw the whole frame: the cut keeps its full context."""
        height, width = size
        if top < 0 or left < 0 or top + height > self.image_size[0] \
                or left + width > self.image_size[1]:
            raise ValueError(f'crop {height}x{width} at ({top}, {left}) leaves the '
                             f'{self.image_size[0]}x{self.image_size[1]} frame')

        def cut(x: torch.Tensor) -> torch.Tensor:
            rows, columns = x.shape[-2:]
            if self.image_size[0] % rows or self.image_size[1] % columns:
                raise ValueError(f'a {rows}x{columns} map has no whole stride in the '
                                 f'{self.image_size[0]}x{self.image_size[1]} frame')
            sy, sx = self.image_size[0] // rows, self.image_size[1] // columns
            if top % sy or height % sy or left % sx or width % sx:
                raise ValueError(f'crop {height}x{width} at ({top}, {left}) is not on the '
                                 f'grid of a map of stride {sy}x{sx}')
            return x[..., top // sy:(top + height) // sy, left // sx:(left + width) // sx]

        return DistillTargets({m: cut(t) for m, t in self.tokens.items()}, cut(self.teacher),
                              (height, width))


class MaskGatedAdapter(nn.Module):
    """A residual 1x1 bottleneck whose hidden channels are scaled by a linear function of
    which modalities are missing (no bias, zero at initialization): with every modality
    real it adds exactly nothing, so a frozen model keeps its full-modality output.

    ReLU, not the GELU of the rest of the model: ONNX Runtime fuses a ReLU into the
    convolution before it, while at opset 18 a GELU is exported as five element-wise
    operators. Measured, both give the same accuracy, and latencies within two points of
    each other (docs/robustness.md).
    """

    def __init__(self, width: int, rank: int, modalities: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(width, rank, 1)
        self.gate = nn.Linear(modalities, rank, bias=False)
        self.up = nn.Conv2d(rank, width, 1, bias=False)
        nn.init.zeros_(self.gate.weight)

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """``gate`` (B, rank, 1, 1): ``self.gate`` applied to the missing mask, which the
        encoder computes for all its adapters at once."""
        return x + self.up(F.relu(self.down(x)) * gate)


class SharedEncoder(nn.Module):
    """Four stages on the fused map; returns every stage's output for the decoder.

    With ``adapter_rank`` each stage's output passes a :class:`MaskGatedAdapter`.
    """

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], *,
                 adapter_rank: int = 0, modalities: int = 0) -> None:
        super().__init__()
        stages = []
        for index, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            layers: list[nn.Module] = []
            if index:
                layers.append(ConvNormAct(widths[index - 1], width, stride=2))
            layers.extend(ResidualBlock(width) for _ in range(depth))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.adapters = None
        if adapter_rank:
            self.adapters = nn.ModuleList(MaskGatedAdapter(w, adapter_rank, modalities)
                                          for w in widths)

    def forward(self, x: torch.Tensor, available: torch.Tensor) -> list[torch.Tensor]:
        """``available`` (B, M) bool; only the adapters read it."""
        gates = None
        if self.adapters is not None:
            # Every adapter's gate in one product: one operator in the exported graph, not
            # one per stage (a point of the adapted model's latency in ONNX Runtime).
            weight = torch.cat([adapter.gate.weight for adapter in self.adapters])
            missing = (~available).to(x.dtype)
            gates = (missing @ weight.t())[:, :, None, None].split(
                [adapter.gate.out_features for adapter in self.adapters], dim=1)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if gates is not None:
                x = self.adapters[index](x, gates[index])
            features.append(x)
        return features


class MLPDecoder(nn.Module):
    """SegFormer's head: each stage -> linear -> upsample to 1/4 -> concat -> fuse -> classify.

    Computed in an equal, cheaper order: the fuse convolution is 1x1 and bilinear upsampling
    is linear, so a stage's linear and its slice of the fuse are one (D, C_i) matrix applied
    at the stage's own resolution, and the stages' D-channel results are upsampled and
    summed, instead of concatenating 4 D upsampled channels at 1/4 and fusing them there
    (5 % of the tiny model's inference, 7-10 % of a training step). The weights are the
    layers above, so checkpoints are unchanged; the outputs agree to float rounding.
    """

    def __init__(self, in_widths: tuple[int, ...], width: int, num_classes: int) -> None:
        super().__init__()
        self.width = width
        self.linears = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_widths)
        self.fuse = ConvNormAct(width * len(in_widths), width, kernel_size=1, act_layer=nn.ReLU)
        self.classify = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: list[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        size = tuple(features[0].shape[-2:])
        fuse, norm, act = self.fuse
        slices = fuse.weight.flatten(1).split(self.width, dim=1)  # (D, D) per stage
        x = bias = None
        for part, linear, feature in zip(slices, self.linears, features, strict=True):
            weight = (part @ linear.weight.flatten(1))[:, :, None, None]  # (D, C_i, 1, 1)
            y = resize_to(F.conv2d(feature, weight), size)
            x = y if x is None else x + y
            b = part @ linear.bias
            bias = b if bias is None else bias + b
        if fuse.bias is not None:  # its norm folded into it (adaptation's frozen twin)
            bias = bias + fuse.bias
        # Bilinear upsampling keeps a constant map constant: the biases are added once, here.
        x = x + bias[:, None, None]
        logits = self.classify(act(norm(x)))
        if tuple(logits.shape[-2:]) != tuple(image_size):
            # Brought to full resolution contiguous, where the loss takes them: a CPU step
            # from scratch, whose model computes channels-last, took 5 % longer with its
            # full-resolution logits channels-last (docs/performance.md).
            logits = logits.contiguous()
        return resize_to(logits, image_size)


class MultimodalSegmenter(nn.Module):
    """``forward(inputs, available) -> logits``; see the module docstring for the layout."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.modalities = config.modalities
        spec = config.spec
        widths, strides = config.widths, config.strides
        fused = spec.stage_widths[0]
        self.stems = nn.ModuleDict(
            {m: Stem(config.input_channels[m], widths[m], strides[m]) for m in self.modalities}
        )
        self.modality_blocks = nn.ModuleDict({
            m: nn.Sequential(*(ResidualBlock(widths[m]) for _ in range(spec.modality_depth)))
            for m in self.modalities
        })
        self.fusion = nn.ModuleDict({m: nn.Conv2d(widths[m], fused, 1) for m in self.modalities})
        self.fusion_norm = nn.BatchNorm2d(fused)
        self.mask_film = None
        if config.mask_conditioning:
            self.mask_film = nn.Linear(len(self.modalities), 2 * fused)
            nn.init.zeros_(self.mask_film.weight)
            nn.init.zeros_(self.mask_film.bias)
        self.encoder = SharedEncoder(spec.stage_widths, spec.stage_depths,
                                     adapter_rank=config.mask_adapters,
                                     modalities=len(self.modalities))
        self.decoder = MLPDecoder(spec.stage_widths, spec.decoder_width, config.num_classes)
        self.mask_tokens = None
        self.projection = None
        if config.method == 'mask_token':
            self.mask_tokens = nn.ParameterDict(
                {m: nn.Parameter(torch.zeros(1, widths[m], 1, 1)) for m in self.modalities}
            )
        if config.uses_projection and config.projection_kind == 'conv':
            self.projection = ConvModalityProjection(
                modalities=self.modalities, widths=widths, dim=spec.projection_dim,
                stride=config.projection_stride,
            )
        elif config.uses_projection:
            self.projection = MaskedModalityProjection(
                modalities=self.modalities, widths=widths, dim=spec.projection_dim,
                heads=spec.projection_heads, query_stride=config.projection_stride,
                key_stride=config.aggregate_stride,
            )

    # --- public API -------------------------------------------------------------------

    def forward(self, inputs: dict[str, torch.Tensor], available: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W). Unavailable inputs are ignored whatever they hold (NaN too):
        ``none`` and ``dropout`` zero them, as they were trained; the methods that replace a
        missing modality's tokens select them away with ``where`` and need no zeroing, which
        spares their graphs a full-resolution operator per modality."""
        zero_fill = self.mask_tokens is None and self.projection is None
        logits, _ = self._run(inputs, available, zero_missing_inputs=zero_fill, with_aux=False)
        return logits

    def forward_train(self, inputs: dict[str, torch.Tensor], available: torch.Tensor,
                      *, alignment: bool = True) -> tuple[torch.Tensor, TrainOutputs]:
        """Logits plus the alignment terms (``alignment=False``: not computed, as for a
        loss that does not weigh them; the logits are the same).

        Projection methods keep the real inputs of masked modalities: their real tokens
        are the alignment targets (detached); they never reach the logits.
        """
        keep_real = self.config.uses_projection
        return self._run(inputs, available, zero_missing_inputs=not keep_real,
                         with_aux=alignment)

    def alignment_terms(self, inputs: dict[str, torch.Tensor],
                        available: torch.Tensor) -> TrainOutputs:
        """Only what the alignment loss needs: tokens up to the projection point, the
        projection, the alignment terms. No fusion, no decoder.

        Label-free adaptation by the alignment loss alone trains the projection alone, so
        the rest of the model would be computed for nothing (about two thirds of a step).
        """
        if self.projection is None:
            raise RuntimeError(f'method {self.config.method!r} has no projection to align')
        available = self._check(inputs, available)
        image_size = _image_size(inputs, self.modalities)
        tokens = {m: self.stems[m](inputs[m]) for m in self.modalities}
        if self.config.projection_stage == 'encoder':
            tokens = {m: self.modality_blocks[m](t) for m, t in tokens.items()}
        aux = TrainOutputs(alignment=None, projected={}, real={})
        self._project(tokens, available, image_size, aux, with_aux=True)
        return aux

    def forward_distill(self, inputs: dict[str, torch.Tensor], available: torch.Tensor,
                        *, alignment: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor, TrainOutputs]:
        """Label-free distillation's terms: ``(student, teacher, aux)``.

        ``student`` is the prediction with the unavailable modalities' tokens projected,
        ``teacher`` the model's own prediction with every modality real (no gradient),
        both logits at the decoder's resolution (1/4 of the input): the final bilinear
        upsampling is linear and the same for both, and skipping it makes the loss 16x
        smaller to compute. The stems and modality encoders run once for both, without
        gradient (with projection after the stem, the student's modality encoders run
        again on the substituted tokens); the caller freezes all but the projection and
        the mask-gated adapters.
        ``aux`` holds the alignment terms, as in :meth:`forward_train` (and ``alignment``
        says whether to compute them).
        """
        available = self._check(inputs, available)
        targets = self.distill_targets(inputs)
        student, aux = self.distill_student(targets, available, alignment=alignment)
        return student, targets.teacher, aux

    @torch.no_grad()
    def distill_targets(self, inputs: dict[str, torch.Tensor]) -> DistillTargets:
        """What distillation takes from the frozen model; the mask does not change it, so
        training may compute it once per frame (``teacher_cache``)."""
        if self.projection is None:
            raise RuntimeError(f'method {self.config.method!r} has no projection to distill')
        everything = self._check(inputs, None)
        image_size = _image_size(inputs, self.modalities)
        fused_size = _fused_size(image_size)
        stems = {m: self.stems[m](inputs[m]) for m in self.modalities}
        real = {m: self.modality_blocks[m](t) for m, t in stems.items()}
        teacher = self._head(self._fuse(real, fused_size), fused_size, everything)
        tokens = real if self.config.projection_stage == 'encoder' else stems
        return DistillTargets(tokens, teacher, image_size)

    def distill_student(self, targets: DistillTargets, available: torch.Tensor, *,
                        alignment: bool = True) -> tuple[torch.Tensor, TrainOutputs]:
        """The prediction with the unavailable modalities' tokens projected from
        ``targets.tokens`` (logits at the decoder's resolution) and, with ``alignment``,
        the alignment terms."""
        available = available if available.dtype == torch.bool else available > 0.5
        fused_size = _fused_size(targets.image_size)
        aux = TrainOutputs(alignment=None, projected={}, real={})
        if self.config.projection_stage == 'encoder':
            fused = self._fuse_projected(targets.tokens, available, targets.image_size,
                                         fused_size, aux, alignment)
        else:
            fused = self._fuse_from_stems(targets.tokens, available, targets.image_size,
                                          aux, alignment)
        return self._head(fused, fused_size, available), aux

    # --- internals --------------------------------------------------------------------

    def _check(self, inputs: dict[str, torch.Tensor],
               available: torch.Tensor | None) -> torch.Tensor:
        """``available`` as booleans, after checking it and the inputs' shapes; ``None``:
        every modality available."""
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise KeyError(f'model inputs lack modalities {missing}; the model takes '
                           f'{list(self.modalities)} (unavailable ones still need a tensor)')
        if available is None:
            first = inputs[self.modalities[0]]
            available = torch.ones(first.shape[0], len(self.modalities), dtype=torch.bool,
                                   device=first.device)
        if available.dim() != 2 or available.shape[1] != len(self.modalities):
            raise ValueError(f'available must be (B, {len(self.modalities)}) in the order '
                             f'{list(self.modalities)}, got {tuple(available.shape)}')
        for m in self.modalities:
            channels = self.config.input_channels[m]
            if inputs[m].dim() != 4 or inputs[m].shape[1] != channels:
                raise ValueError(f'{m}: expected (B, {channels}, H, W), got '
                                 f'{tuple(inputs[m].shape)}')
        return available if available.dtype == torch.bool else available > 0.5

    def _run(self, inputs: dict[str, torch.Tensor], available: torch.Tensor, *,
             zero_missing_inputs: bool, with_aux: bool) -> tuple[torch.Tensor, TrainOutputs]:
        available = self._check(inputs, available)
        image_size = _image_size(inputs, self.modalities)
        aux = TrainOutputs(alignment=None, projected={}, real={})
        tokens = {}
        for index, m in enumerate(self.modalities):
            x = inputs[m]
            if zero_missing_inputs:
                x = torch.where(available[:, index, None, None, None], x, 0.0)
            tokens[m] = self.stems[m](x)
        fused = self._fuse_from_stems(tokens, available, image_size, aux, with_aux)
        return self._head(fused, image_size, available), aux

    def _fuse_from_stems(self, tokens: dict[str, torch.Tensor], available: torch.Tensor,
                         image_size: tuple[int, int], aux: TrainOutputs,
                         with_aux: bool) -> torch.Tensor:
        """The fused map from the stems' tokens, missing tokens substituted as the method
        says at the configured stage."""
        fused_size = _fused_size(image_size)
        stage = self.config.projection_stage
        if stage == 'stem':
            tokens = self._substitute(tokens, available, image_size, aux, with_aux)
        tokens = {m: self.modality_blocks[m](t) for m, t in tokens.items()}
        if stage == 'encoder' and self.projection is not None:
            return self._fuse_projected(tokens, available, image_size, fused_size, aux, with_aux)
        if stage == 'encoder':
            tokens = self._substitute(tokens, available, image_size, aux, with_aux)
        return self._fuse(tokens, fused_size)

    def _fuse(self, tokens: dict[str, torch.Tensor], fused_size: tuple[int, int]) -> torch.Tensor:
        return sum(resize_to(self.fusion[m](tokens[m]), fused_size) for m in self.modalities)

    def _head(self, fused: torch.Tensor, size: tuple[int, int],
              available: torch.Tensor) -> torch.Tensor:
        """Shared encoder and decoder: logits (B, K, *size) from the fused map."""
        x = self.fusion_norm(fused)
        if self.mask_film is not None:
            scale, shift = self.mask_film(available.to(x.dtype)).chunk(2, dim=1)
            x = x * (1.0 + scale[:, :, None, None]) + shift[:, :, None, None]
        return self.decoder(self.encoder(x, available), size)

    def _project(self, tokens: dict[str, torch.Tensor], available: torch.Tensor,
                 image_size: tuple[int, int], aux: TrainOutputs,
                 with_aux: bool) -> tuple[torch.Tensor, tuple[int, int]]:
        """Projection features on the coarse grid; fills ``aux`` with the alignment terms."""
        features, grid = self.projection(tokens, available, image_size)
        if with_aux:
            coarse = self.projection.to_tokens(features, grid)
            aux.projected = {m: resize_to(p, tuple(tokens[m].shape[-2:]))
                             for m, p in coarse.items()}
            aux.real = {m: t.detach() for m, t in tokens.items()}
            aux.alignment = torch.stack([
                F.smooth_l1_loss(aux.projected[m].float(), aux.real[m].float(),
                                 reduction='none').flatten(1).mean(1)
                for m in self.modalities
            ], dim=1)  # (B, M)
        return features, grid

    def _substitute(self, tokens: dict[str, torch.Tensor], available: torch.Tensor,
                    image_size: tuple[int, int], aux: TrainOutputs,
                    with_aux: bool) -> dict[str, torch.Tensor]:
        """Replace unavailable modalities' tokens as the method says (token grid)."""
        if self.mask_tokens is not None:
            replacement = {m: self.mask_tokens[m].to(tokens[m].dtype) for m in self.modalities}
        elif self.projection is not None:
            features, grid = self._project(tokens, available, image_size, aux, with_aux)
            replacement = {m: resize_to(p, tuple(tokens[m].shape[-2:]))
                           for m, p in self.projection.to_tokens(features, grid).items()}
        else:
            return tokens
        return {
            m: torch.where(available[:, i, None, None, None], tokens[m], replacement[m])
            for i, m in enumerate(self.modalities)
        }

    def _fuse_projected(self, tokens: dict[str, torch.Tensor], available: torch.Tensor,
                        image_size: tuple[int, int], fused_size: tuple[int, int],
                        aux: TrainOutputs, with_aux: bool) -> torch.Tensor:
        """Fusion with projected tokens substituted after the modality encoders.

        Equal to fusing ``where(available, real, upsample(projected))``, but as the fusion
        is a 1x1 convolution and bilinear upsampling is linear, the projected part is
        fused on the coarse grid and upsampled once for all modalities. This keeps the
        projection's inference cost a few percent of the model's.
        """
        features, grid = self._project(tokens, available, image_size, aux, with_aux)
        # where(a, W t + b, W p + b) summed over m equals  sum(b) + sum(W where(a, t, 0))
        # + sum((1-a) W p): the real part selects the tokens (``where``, not a product: an
        # unavailable input is not zeroed, and may be NaN) and keeps the fusion bias; the
        # projected part is one 1x1 convolution on the coarse grid, upsampled once for all
        # modalities.
        real = sum(
            resize_to(self.fusion[m](torch.where(available[:, i, None, None, None], tokens[m],
                                                 0.0)), fused_size)
            for i, m in enumerate(self.modalities)
        )
        share, bias = self.projected_share(features, available, grid)
        # The bias is constant over space, so it is added after the upsampling: a Conv feeding
        # the Resize directly stays in ONNX Runtime's fast blocked layout.
        return real + resize_to(share, fused_size) + bias[:, :, None, None]

    def projected_share(self, features: torch.Tensor, available: torch.Tensor,
                        grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The unavailable modalities' share of the fused map as the projection estimates
        it, on its grid: ``(share (B, F, gh, gw), bias (B, F))``, the heads' bias apart
        (constant over space). ``features`` ``(B, M, G, D)`` are the projection's output.

        Each modality's head and its fusion (both linear) are one ``(F, D)`` matrix, so
        every target is one 1x1 convolution over their gated features.
        """
        heads = [self.projection.heads_out[m] for m in self.modalities]
        fusions = [self.fusion[m].weight.flatten(1) for m in self.modalities]  # (F, C_m)
        # fusion_m(head_m(x)) as one (F, M*D) matrix, and its per-modality bias (M, F).
        weight = torch.cat([f @ h.weight for h, f in zip(heads, fusions, strict=True)], 1)
        bias = torch.stack([f @ h.bias for h, f in zip(heads, fusions, strict=True)])
        absent = (~available).to(features.dtype)  # (B, M), as the adapters' gates take it
        gated = features * absent[:, :, None, None]  # (B, M, G, D)
        gated = rearrange(gated, 'b m (h w) d -> b (m d) h w', h=grid[0], w=grid[1])
        return F.conv2d(gated, weight[:, :, None, None]), absent @ bias


def _image_size(inputs: dict[str, torch.Tensor], modalities: tuple[str, ...]) -> tuple[int, int]:
    first = inputs[modalities[0]]
    return (int(first.shape[-2]), int(first.shape[-1]))


def _fused_size(image_size: tuple[int, int]) -> tuple[int, int]:
    return (max(1, image_size[0] // FUSED_STRIDE), max(1, image_size[1] // FUSED_STRIDE))


def build_model(config: ModelConfig) -> MultimodalSegmenter:
    """The model a config describes, with freshly initialized weights."""
    return MultimodalSegmenter(config)
