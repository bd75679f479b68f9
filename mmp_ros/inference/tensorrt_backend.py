"""TensorRT backend: an engine built from the exported ONNX, cached, stamped and checked.

Written to the TensorRT 10.x/11.x Python API (name-based I/O tensors,
``execute_async_v3``, explicit batch by default) with CUDA memory and streams from
NVIDIA's ``cuda-python`` bindings. Both are imported only when this backend is built, so
the module imports anywhere; :func:`tensorrt_available` says whether it can run here.

Engine life cycle (DESIGN §5; parameters named as in Isaac ROS): ``model_file_path`` is
the ONNX, ``engine_file_path`` the cached engine (default: beside the ONNX, never a
temporary folder), ``force_engine_update`` rebuilds unconditionally, ``enable_fp16``
asks for half precision. A stamp beside the engine (:mod:`engine_cache`) records the
ONNX SHA-256, TensorRT version and GPU; a mismatch rebuilds, or refuses clearly when
building is disabled. Builds log loudly: they take minutes on a robot's GPU.

FP16: TensorRT 10.x takes ``BuilderFlag.FP16``. TensorRT 11.x removed weak typing, so
half precision needs a mixed-precision ONNX: NVIDIA ModelOpt's AutoCast converts it
where ``modelopt`` is installed; otherwise the engine is built in FP32 and the log says
so (the stamp records the precision really used).
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np

from mmp_ros.inference.backend import (
    CONFIDENCE_OUTPUT,
    LABELS_OUTPUT,
    InferenceBackend,
    check_input_order,
)
from mmp_ros.inference.engine_cache import (
    EngineStamp,
    check_engine_writable,
    plan_engine,
    read_stamp,
    write_atomically,
    write_engine,
)
from mmp_ros.inference.errors import (
    BackendUnavailableError,
    EngineError,
    ModelFileError,
    UnparsableModelError,
)
from mmp_ros.inference.onnx_file import OnnxFileInfo, read_onnx_file
from mmp_ros.metadata import ModelMetadata

DEFAULT_WORKSPACE_BYTES = 1 << 30
MIN_TENSORRT_MAJOR = 10


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        if exc.name != 'tensorrt':  # the package is there; a library or module it needs is not
            raise BackendUnavailableError(
                f'TensorRT is installed but `import tensorrt` failed: {exc}; check that its '
                'libraries (libnvinfer) are on the library path and match its Python bindings, '
                'or use the onnxruntime backend'
            ) from exc
        raise BackendUnavailableError(
            'TensorRT is not installed (`import tensorrt` failed); install TensorRT 10.x/11.x '
            'with its Python bindings, or use the onnxruntime backend'
        ) from exc
    major = int(trt.__version__.split('.')[0])
    if major < MIN_TENSORRT_MAJOR:
        raise BackendUnavailableError(
            f'TensorRT {trt.__version__} is too old; mmp_ros needs TensorRT 10.x or 11.x'
        )
    return trt


def _import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python layout
        except ImportError as exc:
            raise BackendUnavailableError(
                'the TensorRT backend needs NVIDIA cuda-python for device memory and streams '
                '(`pip install cuda-python`)'
            ) from exc
    return cudart


def tensorrt_available() -> tuple[bool, str]:
    """Whether TensorRT, cuda-python and a CUDA device are all present, and why not."""
    try:
        trt = _import_tensorrt()
        cudart = _import_cudart()
    except BackendUnavailableError as exc:
        return False, str(exc)
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:  # no driver, or one older than cuda-python's CUDA
        _, text = cudart.cudaGetErrorString(err)
        return False, (f'TensorRT {trt.__version__} is installed but CUDA cannot list the GPUs: '
                       f'{text.decode(errors="replace")} (cudaGetDeviceCount)')
    if count == 0:
        return False, f'TensorRT {trt.__version__} is installed but no CUDA device is visible'
    return True, f'TensorRT {trt.__version__} with {count} CUDA device(s)'


class _Cuda:
    """Checked calls into the CUDA runtime: every failure becomes an :class:`EngineError`."""

    def __init__(self) -> None:
        self.rt = _import_cudart()

    def call(self, result, what: str):
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            raise EngineError(f'CUDA {what} failed: {text.decode(errors="replace")}')
        return values[0] if len(values) == 1 else values

    def use_device(self, index: int) -> None:
        """Make ``index`` the current device of the calling thread. CUDA keeps the current
        device per host thread and a new thread starts on device 0, while an engine, its
        buffers and its stream belong to the device that was current when they were made."""
        self.call(self.rt.cudaSetDevice(index), 'cudaSetDevice')

    def device_facts(self, index: int) -> tuple[str, str]:
        count = self.call(self.rt.cudaGetDeviceCount(), 'cudaGetDeviceCount')
        if index >= count:
            raise BackendUnavailableError(f'CUDA device {index} asked for, {count} present')
        self.use_device(index)
        props = self.call(self.rt.cudaGetDeviceProperties(index), 'cudaGetDeviceProperties')
        name = props.name.decode(errors='replace') if isinstance(props.name, bytes) else props.name
        return name.rstrip('\x00'), f'{props.major}.{props.minor}'


def _device_index(device: str | None) -> int:
    name = device or 'cuda:0'
    kind, _, index = name.partition(':')
    if kind != 'cuda' or (index and not index.isdigit()):
        raise BackendUnavailableError(f"the TensorRT backend runs on 'cuda[:N]', not {name!r}")
    return int(index) if index else 0


def default_engine_path(model_file_path: Path) -> Path:
    """``<model>.engine`` beside the ONNX (``<model>.engine.engine`` for a model named so)."""
    if model_file_path.suffix == '.engine':
        return model_file_path.with_name(model_file_path.name + '.engine')
    return model_file_path.with_suffix('.engine')


def _trt_logger(trt, log: logging.Logger):
    """A ``trt.ILogger`` that routes TensorRT's messages into Python logging."""
    levels = {
        trt.Logger.INTERNAL_ERROR: logging.CRITICAL,
        trt.Logger.ERROR: logging.ERROR,
        trt.Logger.WARNING: logging.WARNING,
        trt.Logger.INFO: logging.DEBUG,
        trt.Logger.VERBOSE: logging.DEBUG,
    }

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg: str) -> None:
            log.log(levels.get(severity, logging.INFO), 'TensorRT: %s', msg)

    return Logger()


def _fp16_onnx_for_tensorrt11(onnx_path: Path, workdir: Path, log: logging.Logger) -> Path | None:
    """A mixed-precision copy of the ONNX via ModelOpt AutoCast, or None where unavailable."""
    try:
        import modelopt.onnx.autocast as autocast
        import onnx
    except ImportError:
        log.warning(
            'TensorRT 11 builds FP16 only from a mixed-precision ONNX; NVIDIA ModelOpt '
            '(`pip install nvidia-modelopt[onnx]`) is not installed, so this engine is FP32'
        )
        return None
    target = workdir / f'{onnx_path.stem}.fp16.onnx'
    try:
        converted = autocast.convert_to_mixed_precision(
            onnx_path=str(onnx_path), low_precision_type='fp16', keep_io_types=True
        )
        onnx.save(converted, str(target))
    except Exception as exc:  # ModelOpt's errors are not typed; any of them stops the build
        raise EngineError(
            f'ModelOpt AutoCast could not convert {onnx_path} to FP16 mixed precision for '
            f'TensorRT 11 ({type(exc).__name__}: {exc}); build an FP32 engine instead: '
            'enable_fp16:=false, or `mmp_ros build-engine` without --fp16'
        ) from exc
    return target


def requested_stamp(onnx: OnnxFileInfo, trt, gpu: tuple[str, str], *, enable_fp16: bool,
                    max_batch: int) -> EngineStamp:
    """What an engine for ``onnx`` on this GPU and TensorRT must match (``gpu``: name and
    compute capability); a build adds the precision it really used and the metadata."""
    return EngineStamp(
        onnx_sha256=onnx.sha256,
        tensorrt_version=trt.__version__,
        gpu_name=gpu[0],
        compute_capability=gpu[1],
        fp16_requested=enable_fp16,
        max_batch=max_batch,
    )


def check_batch(onnx: OnnxFileInfo, max_batch: int) -> None:
    """Refuse, before TensorRT is asked, an input of a fixed batch that the engine's one
    optimization profile (batch 1..``max_batch``, optimal at 1) cannot cover: TensorRT would
    fail inside its build with an error about the profile. ``mmp_ros export`` writes a
    dynamic batch; a file from another exporter may have fixed it."""
    for name, dims in onnx.input_dims.items():
        if dims and dims[0] is not None and not dims[0] == max_batch == 1:
            raise ModelFileError(
                f'{onnx.path}: input {name!r} has a fixed batch of {dims[0]}, but the engine '
                f'is built for batches 1 to {max_batch}; '
                + ('build it with a max batch of 1, or ' if dims[0] == 1 else '')
                + 'export the model again with `mmp_ros export` (a dynamic batch)'
            )


def _set_timing_cache(config, cache_path: Path, log: logging.Logger) -> None:
    """Give the build the timing cache at ``cache_path``, or a fresh one where that file is
    missing, unreadable, damaged, or from another GPU or TensorRT version (its timings do
    not hold here); the build writes its cache over it."""
    try:
        data = cache_path.read_bytes() if cache_path.is_file() else b''
    except OSError as exc:  # another user's (mode 600), say: the cache only saves time
        log.warning('timing cache %s cannot be read (%s); starting a new one, written over it '
                    'after the build', cache_path, exc.strerror or exc)
        data = b''
    if data:
        try:  # C++ createTimingCache gives null for a blob it cannot read: None here
            cache = config.create_timing_cache(data)
        except Exception:  # the binding's error for such a blob, if any, is not documented
            cache = None
        if cache is None:
            log.warning('timing cache %s cannot be read by TensorRT (damaged?); starting a '
                        'new one, written over it after the build', cache_path)
        elif config.set_timing_cache(cache, False):
            return
        else:
            log.info('timing cache %s does not fit this GPU/TensorRT; starting a new one',
                     cache_path)
    config.set_timing_cache(config.create_timing_cache(b''), False)


def build_engine(
    onnx: OnnxFileInfo,
    engine_path: Path,
    *,
    enable_fp16: bool,
    max_batch: int = 1,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache_path: Path | None = None,
    device: str | None = None,
    logger: logging.Logger | None = None,
) -> EngineStamp:
    """Build a TensorRT engine from ``onnx`` and write it with its stamp to ``engine_path``.

    One optimization profile covers batch 1..``max_batch`` (optimal at 1, the node's
    case); height and width are fixed by the model. The timing cache (default
    ``<engine>.timing.cache``) makes rebuilds after an ONNX change much faster.
    """
    log = logger or logging.getLogger(__name__)
    check_engine_writable(engine_path)
    check_batch(onnx, max_batch)
    trt = _import_tensorrt()
    cuda = _Cuda()
    gpu_name, capability = cuda.device_facts(_device_index(device))
    major = int(trt.__version__.split('.')[0])
    trt_logger = _trt_logger(trt, log)
    builder = trt.Builder(trt_logger)
    flags = 0
    if major >= 11:  # strong typing is the only mode in 11.x; the flag is accepted and ignored
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)  # explicit batch is the only mode since 10.0
    parser = trt.OnnxParser(network, trt_logger)
    precision = 'fp32'
    with tempfile.TemporaryDirectory(prefix='mmp_ros_trt_') as workdir:
        source = onnx.path
        if enable_fp16 and major >= 11:
            converted = _fp16_onnx_for_tensorrt11(onnx.path, Path(workdir), log)
            if converted is not None:
                source, precision = converted, 'fp16'
        if not parser.parse_from_file(str(source)):
            errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
            if source != onnx.path:  # the model is not at fault, its conversion is
                raise EngineError(
                    f'TensorRT cannot parse the FP16 conversion of {onnx.path} by ModelOpt '
                    f'AutoCast: {errors}; build an FP32 engine instead: enable_fp16:=false, '
                    'or `mmp_ros build-engine` without --fp16'
                )
            raise UnparsableModelError(f'TensorRT cannot parse {onnx.path}: {errors}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if enable_fp16 and major < 11:
        if builder.platform_has_fast_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
            precision = 'fp16'
        else:
            log.warning('%s has no fast FP16; building an FP32 engine', gpu_name)
    check_input_order(onnx.path, [network.get_input(i).name for i in range(network.num_inputs)],
                      onnx.metadata)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        per_item = tuple(tensor.shape)[1:]
        if any(d < 0 for d in per_item):
            raise ModelFileError(
                f'{onnx.path}: input {tensor.name!r} has dynamic dims {tuple(tensor.shape)}; '
                'only the batch may be dynamic'
            )
        profile.set_shape(tensor.name, (1, *per_item), (1, *per_item), (max_batch, *per_item))
    config.add_optimization_profile(profile)
    cache_path = timing_cache_path or engine_path.with_name(engine_path.name + '.timing.cache')
    _set_timing_cache(config, cache_path, log)
    log.warning(
        'Building TensorRT %s engine for %s on %s (%s, max batch %d); this can take minutes',
        trt.__version__, onnx.path, gpu_name, precision.upper(), max_batch,
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f'TensorRT failed to build an engine from {onnx.path}; see the TensorRT errors '
            'logged above (workspace too small? unsupported layer?)'
        )
    try:
        write_atomically(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    except OSError as exc:  # the cache only speeds up the next build; the engine matters
        log.warning('timing cache %s not written: %s', cache_path, exc)
    stamp = dataclasses.replace(
        requested_stamp(onnx, trt, (gpu_name, capability), enable_fp16=enable_fp16,
                        max_batch=max_batch),
        precision=precision, metadata=onnx.metadata.to_dict(),
    )
    write_engine(engine_path, bytes(memoryview(serialized)), stamp)
    log.warning('TensorRT engine written to %s', engine_path)
    return stamp


class TensorRTBackend(InferenceBackend):
    """Runs a stamped TensorRT engine: device buffers sized for ``max_batch``, one stream."""

    name = 'tensorrt'

    def __init__(
        self,
        model_file_path: str | Path,
        *,
        engine_file_path: str | Path | None = None,
        force_engine_update: bool = False,
        enable_fp16: bool = True,
        allow_engine_build: bool = True,
        max_batch: int = 1,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        device: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f'max_batch must be >= 1, got {max_batch}')
        self._log = logger or logging.getLogger(__name__)
        self._buffers: dict[str, int] = {}
        self._stream = None
        onnx = read_onnx_file(model_file_path)
        trt = _import_tensorrt()
        self._cuda = _Cuda()
        index = _device_index(device)
        gpu_name, capability = self._cuda.device_facts(index)
        self._device_index = index
        super().__init__(onnx.metadata, f'cuda:{index}')
        engine_path = (
            Path(engine_file_path) if engine_file_path else default_engine_path(onnx.path)
        )
        if engine_path.resolve() == onnx.path.resolve():
            raise EngineError(
                f'engine_file_path {engine_path} is the ONNX model itself: the engine would '
                f'replace it; give another file, e.g. {default_engine_path(onnx.path)}'
            )
        wanted = requested_stamp(onnx, trt, (gpu_name, capability), enable_fp16=enable_fp16,
                                 max_batch=max_batch)
        plan = plan_engine(
            engine_path,
            wanted,
            force_engine_update=force_engine_update,
            allow_engine_build=allow_engine_build,
        )
        self.engine_was_built = plan.build
        if plan.build:
            self._log.warning('TensorRT engine rebuild: %s', plan.reason)
            stamp = build_engine(
                onnx,
                engine_path,
                enable_fp16=enable_fp16,
                max_batch=max_batch,
                workspace_bytes=workspace_bytes,
                device=self.device,
                logger=self._log,
            )
        else:
            stamp = read_stamp(engine_path)
            self._log.info('TensorRT: %s', plan.reason)
        self.engine_file_path = engine_path
        self.precision = stamp.precision
        try:
            self._load(trt, engine_path, onnx.metadata, max_batch, onnx.path)
        except BaseException:  # what was allocated before the failure (auto then goes on)
            self.close()
            raise

    def _load(self, trt, engine_path: Path, metadata: ModelMetadata, max_batch: int,
              onnx_path: Path) -> None:
        self._runtime = trt.Runtime(_trt_logger(trt, self._log))
        engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise EngineError(
                f'TensorRT cannot load engine {engine_path} (built by another TensorRT version '
                'or for another GPU, or corrupt); delete it or set force_engine_update:=true'
            )
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise EngineError(
                f'TensorRT cannot create an execution context for {engine_path} (not enough '
                'free GPU memory for its activations?); see the TensorRT errors logged above'
            )
        rt = self._cuda.rt
        self._stream = self._cuda.call(rt.cudaStreamCreate(), 'cudaStreamCreate')
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._dtypes: dict[str, np.dtype] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            shape = tuple(engine.get_tensor_shape(name))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self._inputs.append(name)
            else:
                self._outputs.append(name)
            # Batch is the only dynamic dim (checked at build); size buffers for max_batch.
            count = max_batch * int(np.prod(shape[1:]))
            self._dtypes[name] = dtype
            self._buffers[name] = self._cuda.call(
                rt.cudaMalloc(count * dtype.itemsize), f'cudaMalloc for {name!r}'
            )
            self._context.set_tensor_address(name, int(self._buffers[name]))
        expected = {*metadata.modalities, 'available'}
        if set(self._inputs) != expected:
            raise EngineError(
                f'engine {engine_path} has inputs {sorted(self._inputs)}, the model metadata '
                f'says {sorted(expected)}; rebuild it (force_engine_update:=true)'
            )
        # What ONNX Runtime's backend checks at start: else the first frame failed, a
        # KeyError for a missing output and TensorRT refusing every input of the wrong size.
        for name in metadata.modalities:
            shape = tuple(engine.get_tensor_shape(name))[1:]
            chw = (metadata.input_channels[name], *metadata.input_size)
            if shape != chw:
                raise ModelFileError(
                    f'{onnx_path}: input {name!r} has shape {shape} per item but the metadata '
                    f'says {chw}; the file was altered after export'
                )
        missing = {LABELS_OUTPUT, CONFIDENCE_OUTPUT} - set(self._outputs)
        if missing:
            raise ModelFileError(
                f'{onnx_path}: graph lacks outputs {sorted(missing)}; not an mmp_ros export'
            )
        self._max_batch = max_batch

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self._outputs)

    def describe(self) -> str:
        return f'tensorrt ({self.precision}) on {self.device}, engine {self.engine_file_path}'

    def _run(self, inputs: dict[str, np.ndarray], available: np.ndarray) -> dict[str, np.ndarray]:
        rt, call = self._cuda.rt, self._cuda.call
        to_device = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        # The node infers in a thread of its own, not the one that loaded the engine.
        self._cuda.use_device(self._device_index)
        feeds = {**inputs, 'available': available}
        for name in self._inputs:
            array = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            if not self._context.set_input_shape(name, array.shape):
                raise EngineError(
                    f'TensorRT refused input {name!r} of shape {array.shape} for engine '
                    f'{self.engine_file_path} (outside its optimization profile?)'
                )
            call(
                rt.cudaMemcpyAsync(
                    self._buffers[name], array.ctypes.data, array.nbytes, to_device, self._stream
                ),
                f'copy of input {name!r} to the device',
            )
        if not self._context.execute_async_v3(int(self._stream)):
            raise EngineError(f'TensorRT execution of {self.engine_file_path} failed')
        outputs = {}
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            host = np.empty(shape, self._dtypes[name])
            call(
                rt.cudaMemcpyAsync(
                    host.ctypes.data, self._buffers[name], host.nbytes, to_host, self._stream
                ),
                f'copy of output {name!r} to the host',
            )
            outputs[name] = host
        call(rt.cudaStreamSynchronize(self._stream), 'cudaStreamSynchronize')
        return outputs

    def _release(self) -> None:
        if not self._buffers and self._stream is None:
            return
        rt = self._cuda.rt
        rt.cudaSetDevice(self._device_index)  # maybe another thread than the one that loaded
        for pointer in self._buffers.values():
            rt.cudaFree(pointer)
        self._buffers.clear()
        if self._stream is not None:
            rt.cudaStreamDestroy(self._stream)
            self._stream = None

    def __del__(self) -> None:
        if getattr(self, '_cuda', None) is not None:
            self.close()
