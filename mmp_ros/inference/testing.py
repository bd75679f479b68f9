"""Tiny random-weight exported models for tests (this package's and the node's).

:func:`export_tiny_random_model` builds the real architecture at its ``tiny`` size with
seeded random weights, at a small input size, and exports it like a trained model: a
few seconds on a CPU. Tests assert shapes, encodings, metadata and backend parity, not
accuracy. Needs torch and onnx (the ``train`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmp_ros.metadata import ModelMetadata, Normalization
from mmp_ros.modalities import INPUT_CHANNELS, MODALITIES

# Plausible per-modality normalization, so round-trip tests see distinct non-trivial numbers.
_NORMALIZATION = {
    'rgb': Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    'depth': Normalization((2.5,), (1.5,)),
    'polarization': Normalization((0.0, 0.0, 0.1), (0.1, 0.1, 0.1)),
    'thermal': Normalization((25.0,), (10.0,)),
}


def tiny_metadata(
    *,
    modalities: Sequence[str] = MODALITIES,
    input_size: tuple[int, int] = (32, 48),
    num_classes: int = 4,
    method: str = 'mmp',
    seed: int = 0,
) -> ModelMetadata:
    """Metadata for a random-weight test model: generic class names, a fixed palette."""
    palette = tuple(((37 * k) % 256, (91 * k + 50) % 256, (151 * k + 100) % 256)
                    for k in range(num_classes))
    return ModelMetadata(
        modalities=tuple(modalities),
        input_channels={m: INPUT_CHANNELS[m] for m in modalities},
        normalization={m: _NORMALIZATION[m] for m in modalities},
        input_size=tuple(input_size),
        class_names=tuple(f'class_{k}' for k in range(num_classes)),
        palette=palette,
        method=method,
        provenance={'weights': 'random', 'seed': seed, 'purpose': 'tests'},
    )


def tiny_random_model(metadata: ModelMetadata, *, seed: int = 0):
    """The real architecture at size ``tiny`` with weights drawn from ``seed``, in eval mode."""
    import torch

    from mmp_ros.model import ModelConfig, build_model

    config = ModelConfig(
        modalities=metadata.modalities,
        num_classes=metadata.num_classes,
        size='tiny',
        method=metadata.method,
    )
    torch.manual_seed(seed)
    return build_model(config).eval()


def fill_zero_parameters(model, *, std: float = 0.02, seed: int = 0):
    """``model`` with random values in every parameter that is all zero, as initialization
    leaves mask gates, mask tokens and norms' shifts and training does not: so that those
    parts do something in a test, and a graph optimizer finds no equal or zero weights to
    elide in a benchmark (ONNX Runtime merged four zero adapter gates into one)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.copy_(std * torch.randn(parameter.shape, generator=generator))
    return model


def export_tiny_random_model(
    path: str | Path,
    *,
    modalities: Sequence[str] = MODALITIES,
    input_size: tuple[int, int] = (32, 48),
    num_classes: int = 4,
    method: str = 'mmp',
    seed: int = 0,
    with_logits: bool = True,
) -> Path:
    """Export a seeded tiny random-weight model to ``path`` (an ONNX file); return the path."""
    from training.export import export_onnx

    metadata = tiny_metadata(
        modalities=modalities, input_size=input_size, num_classes=num_classes, method=method,
        seed=seed,
    )
    model = tiny_random_model(metadata, seed=seed)
    return export_onnx(model, metadata, path, with_logits=with_logits, verify=False)
