"""PyTorch backend: runs a training checkpoint directly, on CPU or CUDA.

Useful where no exported file exists yet, to check an export against its source, and
for the GPU benchmark of the eager model. It runs the same :class:`DeployGraph` that
export traces, so labels and confidence are derived identically on every backend.
This module imports torch at the top; :mod:`mmp_ros.inference` imports it only when the
torch backend is asked for.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmp_ros.errors import home_not_expanded
from mmp_ros.inference.backend import InferenceBackend
from mmp_ros.inference.errors import BackendUnavailableError, ModelFileError
from mmp_ros.inference.torch_graph import DeployGraph
from mmp_ros.metadata import MetadataError, ModelMetadata


def cuda_device_count() -> int:
    """How many CUDA devices this torch can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cuda_devices_text(count: int) -> str:
    """'this machine has 2 CUDA devices (cuda:0 to cuda:1)': for a message refusing an index."""
    have = 'cuda:0' if count == 1 else f'cuda:0 to cuda:{count - 1}'
    return f'this machine has {count} CUDA device{"s" * (count > 1)} ({have})'


def resolve_device(device: str | None, cuda_devices: int | None = None) -> torch.device:
    """The torch device ``device`` names (None: cpu); ``cuda_devices``: how many this machine
    has (None: as torch counts them)."""
    name = device or 'cpu'
    if cuda_devices is None:
        cuda_devices = cuda_device_count()
    try:
        resolved = torch.device(name)
    except RuntimeError as exc:
        raise BackendUnavailableError(f"torch device {name!r}: use 'cpu' or 'cuda[:N]'") from exc
    if resolved.type == 'cuda' and not cuda_devices:
        raise BackendUnavailableError(
            f'torch device {name!r} asked for, but this torch {torch.__version__} sees no CUDA '
            'device; use device cpu'
        )
    if resolved.type not in ('cpu', 'cuda'):
        raise BackendUnavailableError(f"torch device {name!r}: use 'cpu' or 'cuda[:N]'")
    if resolved.type == 'cuda' and (resolved.index or 0) >= cuda_devices:
        # Else torch.load failed on the device ordinal and the checkpoint took the blame.
        raise BackendUnavailableError(f'torch device {name!r}: {cuda_devices_text(cuda_devices)}')
    if resolved.type == 'cpu':
        # torch.load cannot map storages to 'cpu:0' and blamed the checkpoint for it.
        return torch.device('cpu')
    return resolved


def load_checkpoint_model(
    path: str | Path, device: torch.device
) -> tuple[nn.Module, ModelMetadata]:
    """Model and metadata from a self-describing training checkpoint, with clear errors."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f'checkpoint {path} does not exist; check the path'
                             f'{home_not_expanded(path)}')
    if path.suffix.lower() == '.onnx':
        raise ModelFileError(
            f'{path} is an ONNX file; the torch backend runs a training checkpoint (.pt). '
            'Use backend onnxruntime or tensorrt for ONNX files.'
        )
    from mmp_ros.model import CheckpointError, load_checkpoint

    try:
        model, metadata, _ = load_checkpoint(path, map_location=device)
    except CheckpointError as exc:  # a folder, another format: its own message says which
        raise ModelFileError(str(exc)) from exc
    except MetadataError as exc:
        raise ModelFileError(f'checkpoint {path}: {exc}') from exc
    except (RuntimeError, OSError, EOFError, KeyError, ValueError) as exc:
        raise ModelFileError(
            f'checkpoint {path} cannot be loaded ({type(exc).__name__}: {exc}); it is '
            'truncated, from another version, or not an mmp_ros checkpoint'
        ) from exc
    return model, metadata


class TorchBackend(InferenceBackend):
    """Eager PyTorch inference of a model obeying the forward contract.

    ``enable_fp16`` runs CUDA inference under float16 autocast; on CPU it is ignored
    (CPU float16 kernels are slower than float32).
    """

    name = 'torch'

    def __init__(
        self,
        model: nn.Module,
        metadata: ModelMetadata,
        *,
        device: str | None = None,
        enable_fp16: bool = False,
        threads: int | None = None,
        with_logits: bool = True,
        source: str = 'module',
    ) -> None:
        torch_device = resolve_device(device)
        super().__init__(metadata, str(torch_device))
        if threads is not None:
            if threads < 1:
                raise ValueError(f'threads must be >= 1, got {threads}')
            torch.set_num_threads(threads)  # process-wide: torch has no per-model setting
        self.fp16 = bool(enable_fp16 and torch_device.type == 'cuda')
        self.source = source
        self._torch_device = torch_device
        self._graph = DeployGraph(model, metadata.modalities, with_logits=with_logits)
        self._graph.to(torch_device).eval()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str | None = None,
        enable_fp16: bool = False,
        threads: int | None = None,
        logger: logging.Logger | None = None,
    ) -> TorchBackend:
        torch_device = resolve_device(device)
        model, metadata = load_checkpoint_model(path, torch_device)
        (logger or logging.getLogger(__name__)).info('torch: loaded checkpoint %s', path)
        return cls(
            model,
            metadata,
            device=str(torch_device),
            enable_fp16=enable_fp16,
            threads=threads,
            source=str(path),
        )

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._graph.output_names

    @property
    def model(self) -> nn.Module:
        """The wrapped segmentation model (what a checkpoint stores)."""
        return self._graph.model

    @property
    def torch_device(self) -> torch.device:
        return self._torch_device

    def describe(self) -> str:
        precision = 'fp16 autocast' if self.fp16 else 'fp32'
        return f'torch {torch.__version__} on {self.device} ({precision})'

    def _autocast(self):
        if self.fp16:
            return torch.autocast('cuda', dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def run_tensors(self, tensors: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run tensors already on the backend's device (benchmarks avoid the host copies)."""
        with self._autocast():
            outputs = self._graph(*tensors)
        return dict(zip(self._graph.output_names, outputs, strict=True))

    def _run(self, inputs: dict[str, np.ndarray], available: np.ndarray) -> dict[str, np.ndarray]:
        device = self._torch_device
        tensors = [torch.from_numpy(inputs[name]).to(device) for name in self.metadata.modalities]
        tensors.append(torch.from_numpy(available).to(device))
        outputs = self.run_tensors(tensors)
        # Float outputs may be float16 under autocast; the interface promises float32.
        return {
            name: (value.float() if value.is_floating_point() else value).cpu().numpy()
            for name, value in outputs.items()
        }
