"""ONNX Runtime backend: the CPU default, and the CUDA execution provider where installed."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mmp_ros.inference.backend import (
    AVAILABLE_INPUT,
    CONFIDENCE_OUTPUT,
    LABELS_OUTPUT,
    InferenceBackend,
    check_input_order,
)
from mmp_ros.inference.errors import BackendUnavailableError, ModelFileError
from mmp_ros.inference.onnx_file import read_onnx_file

CPU_PROVIDER = 'CPUExecutionProvider'
CUDA_PROVIDER = 'CUDAExecutionProvider'


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            'onnxruntime is not installed; `pip install onnxruntime` (CPU) or '
            '`onnxruntime-gpu` (CUDA)'
        ) from exc
    return onnxruntime


def available_providers() -> list[str]:
    """Execution providers of the installed ONNX Runtime ([] when it is absent)."""
    try:
        return list(_import_onnxruntime().get_available_providers())
    except BackendUnavailableError:
        return []


def _cuda_index(device: str) -> int:
    _, _, index = device.partition(':')
    return int(index) if index else 0


class OnnxRuntimeBackend(InferenceBackend):
    """Runs the exported graph in an ``onnxruntime.InferenceSession``.

    ``device`` is ``cpu`` or ``cuda[:N]``; CUDA needs the ``onnxruntime-gpu`` build.
    ``threads`` sets intra-op threads (None: ONNX Runtime's default, one per core).
    """

    name = 'onnxruntime'

    def __init__(
        self,
        model_file_path: str | Path,
        *,
        device: str = 'cpu',
        threads: int | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        info = read_onnx_file(model_file_path)
        super().__init__(info.metadata, device)
        self._log = logger or logging.getLogger(__name__)
        self.model_file_path = info.path
        self.model_sha256 = info.sha256
        ort = _import_onnxruntime()
        kind, _, index = device.partition(':')
        if device == 'cpu':
            providers: list = [CPU_PROVIDER]
        elif kind == 'cuda' and (not index or index.isdigit()):
            if CUDA_PROVIDER not in ort.get_available_providers():
                raise BackendUnavailableError(
                    f'ONNX Runtime {ort.__version__} here has no CUDA provider (it has '
                    f'{ort.get_available_providers()}); install onnxruntime-gpu or use device cpu'
                )
            providers = [(CUDA_PROVIDER, {'device_id': _cuda_index(device)}), CPU_PROVIDER]
        else:
            raise BackendUnavailableError(
                f"onnxruntime device {device!r}: use 'cpu' or 'cuda[:N]'"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1  # one graph, run sequentially; parallelism is intra-op
        if threads is not None:
            if threads < 1:
                raise ValueError(f'threads must be >= 1, got {threads}')
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(
                str(info.path), sess_options=options, providers=providers
            )
        except Exception as exc:  # onnxruntime raises its own untyped Fail/InvalidGraph errors
            raise ModelFileError(
                f'ONNX Runtime cannot load {info.path}: {exc}'.strip()
                + '. Re-export the model with `mmp_ros export`.'
            ) from exc
        self._check_graph()
        used = self._session.get_providers()
        if device.startswith('cuda') and CUDA_PROVIDER not in used:
            raise BackendUnavailableError(
                f'ONNX Runtime could not start its CUDA provider for {info.path} (it fell back '
                f'to {used}); check the CUDA/cuDNN install or use device cpu'
            )
        self._threads = threads

    def _check_graph(self) -> None:
        """The session's inputs and outputs must be the ones the metadata describes."""
        meta = self.metadata
        expected = {
            name: (meta.input_channels[name], *meta.input_size) for name in meta.modalities
        }
        inputs = {i.name: i for i in self._session.get_inputs()}
        wanted = set(expected) | {AVAILABLE_INPUT}
        if set(inputs) != wanted:
            raise ModelFileError(
                f'{self.model_file_path}: graph inputs {sorted(inputs)} do not match its '
                f'metadata ({sorted(wanted)}); the file was altered after export'
            )
        check_input_order(self.model_file_path, list(inputs), meta)
        self._max_batch = None
        for name, value in inputs.items():
            batch = value.shape[0] if value.shape else None
            if isinstance(batch, int) and batch != 1:
                # ONNX Runtime took it and failed every run of the node, which feeds one frame
                raise ModelFileError(
                    f'{self.model_file_path}: input {name!r} has a fixed batch of {batch}, but '
                    'the node runs one frame at a time; export the model again with '
                    '`mmp_ros export` (a dynamic batch)'
                )
            if batch == 1:
                self._max_batch = 1
        for name, chw in expected.items():
            shape = tuple(inputs[name].shape[1:])
            dynamic = [d for d in shape if not isinstance(d, int)]
            if dynamic:
                raise ModelFileError(
                    f'{self.model_file_path}: input {name!r} has dynamic dimensions '
                    f'{dynamic} (shape {shape} per item); the node feeds the fixed size its '
                    f'metadata says, {chw}: export the model with `mmp_ros export` (its '
                    '--input-size fixes another size)'
                )
            if shape != chw:
                raise ModelFileError(
                    f'{self.model_file_path}: input {name!r} has shape {shape} per item but '
                    f'the metadata says {chw}; the file was altered after export'
                )
        self._outputs = tuple(o.name for o in self._session.get_outputs())
        missing = {LABELS_OUTPUT, CONFIDENCE_OUTPUT} - set(self._outputs)
        if missing:
            raise ModelFileError(
                f'{self.model_file_path}: graph lacks outputs {sorted(missing)}; not an mmp_ros '
                'export'
            )

    @property
    def max_batch(self) -> int | None:
        return self._max_batch  # 1 for a graph of a fixed batch of 1

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def describe(self) -> str:
        threads = 'default' if self._threads is None else self._threads
        return f'onnxruntime {self.providers[0]} on {self.device} (threads {threads})'

    def _run(self, inputs: dict[str, np.ndarray], available: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {**inputs, AVAILABLE_INPUT: available}
        values = self._session.run(None, feeds)
        return dict(zip(self._outputs, values, strict=True))
