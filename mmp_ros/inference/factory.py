"""``create_backend``: one entry point for every backend, and the ``auto`` choice.

``auto`` tries the fastest backend that can work here — TensorRT, then ONNX Runtime
with CUDA, then ONNX Runtime on CPU — and logs which one it took and why the faster
ones were passed over (a TensorRT engine that fails to build or load, and a valid ONNX
that TensorRT's parser refuses, as a warning). It never swallows a problem with the model
file itself: a missing or corrupt ONNX fails the same way on every backend, and one that
TensorRT cannot parse still fails where ONNX Runtime cannot run it either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from mmp_ros.inference.backend import InferenceBackend
from mmp_ros.inference.errors import BackendUnavailableError, EngineError, UnparsableModelError
from mmp_ros.inference.onnx_file import read_onnx_file
from mmp_ros.metadata import MetadataError

BACKEND_KINDS = ('auto', 'tensorrt', 'onnxruntime', 'torch')


def _onnxruntime(model_file_path, device, threads, logger):
    from mmp_ros.inference.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model_file_path, device=device, threads=threads, logger=logger)


def _tensorrt(model_file_path, device, logger, **engine_options):
    from mmp_ros.inference.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(model_file_path, device=device, logger=logger, **engine_options)


def _auto(model_file_path, device, threads, logger, engine_options) -> InferenceBackend:
    from mmp_ros.inference.onnxruntime_backend import CUDA_PROVIDER, available_providers
    from mmp_ros.inference.tensorrt_backend import default_engine_path, tensorrt_available

    onnx = read_onnx_file(model_file_path)  # a bad model file is the user's, not a fallback
    passed_over = []
    usable, why = tensorrt_available()
    if usable:
        try:
            backend = _tensorrt(model_file_path, device, logger, **engine_options)
        except BackendUnavailableError as exc:
            passed_over.append(f'tensorrt: {exc}')
        except EngineError as exc:  # failing to build or load: TensorRT's, not the model's
            engine = engine_options['engine_file_path'] or default_engine_path(onnx.path)
            logger.warning('auto backend: TensorRT engine %s failed, falling back to '
                           'onnxruntime: %s', engine, exc)
            passed_over.append(f'tensorrt: engine {engine}: {exc}')
        except UnparsableModelError as exc:  # a valid ONNX TensorRT's parser refuses
            logger.warning('auto backend: %s; falling back to onnxruntime', exc)
            passed_over.append(f'tensorrt: {exc}')
        else:
            logger.info('auto backend: tensorrt (%s)', why)
            return backend
    else:
        passed_over.append(f'tensorrt: {why}')
    if CUDA_PROVIDER in available_providers():
        try:
            backend = _onnxruntime(model_file_path, device or 'cuda', threads, logger)
        except BackendUnavailableError as exc:
            passed_over.append(f'onnxruntime CUDA: {exc}')
        else:
            logger.info('auto backend: onnxruntime CUDA; passed over %s', '; '.join(passed_over))
            return backend
    else:
        passed_over.append('onnxruntime CUDA: no CUDAExecutionProvider in this onnxruntime')
    backend = _onnxruntime(model_file_path, 'cpu', threads, logger)
    logger.info('auto backend: onnxruntime CPU; passed over %s', '; '.join(passed_over))
    return backend


def create_backend(
    kind: str,
    model_file_path: str | Path,
    *,
    engine_file_path: str | Path | None = None,
    force_engine_update: bool = False,
    enable_fp16: bool = True,
    allow_engine_build: bool = True,
    max_batch: int = 1,
    device: str | None = None,
    threads: int | None = None,
    expected_modalities: Sequence[str] | None = None,
    logger: logging.Logger | None = None,
) -> InferenceBackend:
    """Load ``model_file_path`` with the backend ``kind`` (one of :data:`BACKEND_KINDS`).

    ``model_file_path`` is the exported ONNX for ``onnxruntime``, ``tensorrt`` and
    ``auto``, and a training checkpoint for ``torch``. ``engine_file_path``,
    ``force_engine_update``, ``enable_fp16``, ``allow_engine_build`` and ``max_batch``
    concern TensorRT (``enable_fp16`` also turns on CUDA autocast for ``torch``).
    ``device``: ``cpu`` or ``cuda[:N]`` (None: the backend's default). ``threads``: CPU
    threads for onnxruntime and torch. ``expected_modalities``: the modality order the
    caller was configured with; a model whose order differs is refused.
    """
    logger = logger or logging.getLogger('mmp_ros.inference')
    engine_options = dict(
        engine_file_path=engine_file_path,
        force_engine_update=force_engine_update,
        enable_fp16=enable_fp16,
        allow_engine_build=allow_engine_build,
        max_batch=max_batch,
    )
    if kind == 'onnxruntime':
        backend = _onnxruntime(model_file_path, device or 'cpu', threads, logger)
    elif kind == 'tensorrt':
        backend = _tensorrt(model_file_path, device, logger, **engine_options)
    elif kind == 'torch':
        from mmp_ros.inference.torch_backend import TorchBackend

        backend = TorchBackend.from_checkpoint(
            model_file_path, device=device, enable_fp16=enable_fp16, threads=threads,
            logger=logger,
        )
    elif kind == 'auto':
        if device == 'cpu':
            backend = _onnxruntime(model_file_path, 'cpu', threads, logger)
            logger.info('auto backend: onnxruntime CPU (device cpu asked for)')
        else:
            kind_, _, index = (device or 'cuda').partition(':')
            if kind_ != 'cuda' or (index and not index.isdigit()):
                # it ran on the CPU, or ONNX Runtime's CUDA device 0, whatever it named
                raise BackendUnavailableError(f"auto backend device {device!r}: use 'cpu' or "
                                              "'cuda[:N]'")
            backend = _auto(model_file_path, device, threads, logger, engine_options)
    else:
        raise ValueError(f'unknown backend {kind!r}; choose one of {list(BACKEND_KINDS)}')
    if expected_modalities:
        try:
            backend.metadata.check_modality_order(
                expected_modalities, source=f'the model {model_file_path}'
            )
        except MetadataError:
            backend.close()
            raise
    logger.info('inference backend: %s', backend.describe())
    return backend
