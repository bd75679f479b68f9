"""The TensorRT backend's own logic, run against a stand-in TensorRT and CUDA runtime.

TensorRT cannot be installed here, so without this its ~200 lines of orchestration
(engine plan, build, stamp, load, buffer sizing, copies, execution) would never run
before a robot does. The stand-in implements the slice of the TensorRT 10 Python API and
cuda-python's runtime API that the backend calls, with their documented behaviour:
the "engine" is the parsed ONNX executed by ONNX Runtime, "device memory" is host memory
moved with ``memmove``. What it cannot show is TensorRT's own behaviour; the skipped
test in test_tensorrt.py covers that on a machine with TensorRT.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import sys
import threading
import types
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from conftest import needs

needs('torch')
needs('onnx')

import torch  # noqa: E402
from contract_net import ContractNet  # noqa: E402

from mmp_ros.inference import EngineError, InferenceError, ModelFileError, create_backend  # noqa: E402
from mmp_ros.inference.engine_cache import read_stamp, stamp_path  # noqa: E402
from mmp_ros.inference.testing import tiny_metadata  # noqa: E402
from training.export import example_inputs, export_onnx, mask_rows  # noqa: E402

FAKE_GPU = b'Fake GPU 9000'
FAKE_GPU_COUNT = 2


def _fake_cudart():
    rt = types.SimpleNamespace()
    rt.cudaError_t = types.SimpleNamespace(cudaSuccess=0, cudaErrorInvalidValue=1,
                                           cudaErrorInsufficientDriver=35,
                                           cudaErrorNoDevice=100, cudaErrorInvalidDevice=101)
    # cudaGetErrorString's text for each code, as the CUDA runtime gives it.
    error_strings = {1: b'invalid argument',
                     35: b'CUDA driver version is insufficient for CUDA runtime version',
                     100: b'no CUDA-capable device is detected', 101: b'invalid device ordinal'}
    rt.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    rt.memory = {}  # address -> ctypes buffer (keeps allocations alive)
    rt.freed = []
    # The CUDA runtime's current device belongs to the calling host thread; a new thread
    # starts on device 0 (cudaSetDevice: "Sets device as the current device for the calling
    # host thread").
    rt.thread = threading.local()
    rt.current_device = lambda: getattr(rt.thread, 'device', 0)

    def set_device(index):
        if not 0 <= index < FAKE_GPU_COUNT:
            return (rt.cudaError_t.cudaErrorInvalidDevice,)
        rt.thread.device = index
        return (0,)

    class Stream:
        def __init__(self) -> None:
            self.device = rt.current_device()

        def __int__(self) -> int:
            return 0x5EED

    def malloc(size):
        buffer = ctypes.create_string_buffer(size)
        rt.memory[ctypes.addressof(buffer)] = buffer
        return 0, ctypes.addressof(buffer)

    def memcpy(dst, src, count, kind, stream):
        if kind == rt.cudaMemcpyKind.cudaMemcpyHostToDevice:
            assert dst in rt.memory and len(rt.memory[dst]) >= count, 'copy past a device buffer'
        else:
            assert src in rt.memory and len(rt.memory[src]) >= count, 'copy past a device buffer'
        ctypes.memmove(dst, src, count)
        return (0,)

    # cudaGetDeviceCount: cudaErrorNoDevice without a GPU, cudaErrorInsufficientDriver without
    # a driver or with one older than the runtime's CUDA (a test sets rt.device_count).
    rt.device_count = (0, FAKE_GPU_COUNT)
    rt.cudaGetDeviceCount = lambda: rt.device_count
    rt.cudaSetDevice = set_device
    rt.cudaGetDeviceProperties = lambda index: (
        0, types.SimpleNamespace(name=FAKE_GPU, major=8, minor=6))
    rt.cudaGetErrorString = lambda err: (0, error_strings.get(err, b'unknown error'))
    rt.cudaStreamCreate = lambda: (0, Stream())
    rt.cudaStreamSynchronize = lambda stream: (0,)
    rt.cudaStreamDestroy = lambda stream: (0,)
    rt.cudaMalloc = malloc
    rt.cudaMemcpyAsync = memcpy
    rt.cudaFree = lambda pointer: rt.freed.append(pointer) or (0,)
    return rt


def _fake_tensorrt(version: str):
    """TensorRT ``version``'s Python API as far as the backend uses it. What a major version
    removed is absent here too, so code that calls it fails as it would on a robot: 11.x has
    no ``BuilderFlag.FP16`` and no ``Builder.platform_has_fast_fp16`` (both removed with weak
    typing, TensorRT 10.x-to-11.x migration guide), and its ``STRONGLY_TYPED`` is value 0."""
    trt = types.ModuleType('tensorrt')
    trt.__version__ = version
    trt.builds = []
    trt.context_fails = False
    trt.damaged_cache_raises = False
    trt.unparsable = ''  # the parser fails on a path containing it
    major = int(version.split('.')[0])
    trt.Logger = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

    class ILogger:
        def __init__(self) -> None:
            pass

    trt.ILogger = ILogger
    trt.NetworkDefinitionCreationFlag = (
        types.SimpleNamespace(STRONGLY_TYPED=0) if major >= 11
        else types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    )
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE='workspace')
    trt.BuilderFlag = (types.SimpleNamespace() if major >= 11
                       else types.SimpleNamespace(FP16='fp16'))
    trt.TensorIOMode = types.SimpleNamespace(INPUT='input', OUTPUT='output')
    trt.DataType = types.SimpleNamespace(FLOAT='float32', INT32='int32', BOOL='bool')
    trt.nptype = np.dtype
    ort_types = {'tensor(float)': 'float32', 'tensor(int32)': 'int32', 'tensor(bool)': 'bool'}

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        def __init__(self, flags):
            self.inputs, self.onnx, self.flags = [], None, flags

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, index):
            return self.inputs[index]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def get_error(self, index):
            return 'In node 7 (Foo): UNSUPPORTED_NODE'

        def parse_from_file(self, path):
            import onnx

            if trt.unparsable and trt.unparsable in path:
                self.num_errors = 1
                return False

            # Like TensorRT's parser, read external weights from beside the file; the
            # "engine" carries them inside, as a real one does.
            data = onnx.load(path).SerializeToString()
            session = onnxruntime.InferenceSession(data, providers=['CPUExecutionProvider'])
            self.network.onnx = data
            self.network.inputs = [
                Tensor(i.name, tuple(-1 if isinstance(d, str) else d for d in i.shape))
                for i in session.get_inputs()
            ]
            return True

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, low, optimum, high):
            self.shapes[name] = (low, optimum, high)

    class Cache:
        def serialize(self):
            return b'timing cache'

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.cache = set(), [], None

        def set_memory_pool_limit(self, pool, size):
            self.workspace = size

        def set_flag(self, flag):
            self.flags.add(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

        def create_timing_cache(self, data):
            # C++ createTimingCache is noexcept and returns a pointer: null (None here) for
            # a blob it cannot read. Whether the binding raises instead is not documented;
            # trt.damaged_cache_raises makes it raise.
            if data and not bytes(data).startswith(Cache().serialize()):
                if trt.damaged_cache_raises:
                    raise RuntimeError('timing cache is corrupted')
                return None
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            if not isinstance(cache, Cache):  # the binding takes an ITimingCache reference
                raise TypeError(f'set_timing_cache(): incompatible arguments: {cache!r}')
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            if major < 11:
                self.platform_has_fast_fp16 = True

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            (profile,) = config.profiles
            trt.builds.append({'flags': set(config.flags), 'shapes': dict(profile.shapes),
                               'network_flags': network.flags})
            return network.onnx

    class Context:
        def __init__(self, engine):
            self.engine, self.addresses, self.shapes = engine, {}, {}

        def set_tensor_address(self, name, address):
            if not isinstance(address, int):  # the binding takes a size_t, not a pointer object
                raise TypeError(f'set_tensor_address(): incompatible arguments: {address!r}')
            self.addresses[name] = address
            return True

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)
            return True

        def _output_shapes(self):
            batch = next(iter(self.shapes.values()))[0]
            return {o.name: (batch, *o.shape[1:]) for o in self.engine.session.get_outputs()}

        def get_tensor_shape(self, name):
            return self.shapes.get(name) or self._output_shapes()[name]

        def execute_async_v3(self, stream_handle):
            assert isinstance(stream_handle, int)
            if trt.cudart.current_device() != self.engine.device:
                # An engine is bound to the GPU current when it was deserialized; enqueued
                # from a thread on another device, TensorRT logs a CUDA error ("invalid
                # resource handle") and returns False.
                return False
            feeds = {}
            for i in self.engine.session.get_inputs():
                dtype = np.dtype(ort_types[i.type])
                count = int(np.prod(self.shapes[i.name]))
                raw = ctypes.string_at(self.addresses[i.name], count * dtype.itemsize)
                feeds[i.name] = np.frombuffer(raw, dtype).reshape(self.shapes[i.name])
            outputs = self.engine.session.run(None, feeds)
            for meta, value in zip(self.engine.session.get_outputs(), outputs, strict=True):
                value = np.ascontiguousarray(value)
                ctypes.memmove(self.addresses[meta.name], value.ctypes.data, value.nbytes)
            return True

    class Engine:
        def __init__(self, data):
            self.session = onnxruntime.InferenceSession(data, providers=['CPUExecutionProvider'])
            self.device = trt.cudart.current_device()
            self.io = [*self.session.get_inputs(), *self.session.get_outputs()]
            self.n_inputs = len(self.session.get_inputs())

        @property
        def num_io_tensors(self):
            return len(self.io)

        def get_tensor_name(self, index):
            return self.io[index].name

        def _meta(self, name):
            return next(t for t in self.io if t.name == name)

        def get_tensor_mode(self, name):
            index = [t.name for t in self.io].index(name)
            return trt.TensorIOMode.INPUT if index < self.n_inputs else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return ort_types[self._meta(name).type]

        def get_tensor_shape(self, name):
            return tuple(-1 if isinstance(d, str) else d for d in self._meta(name).shape)

        def create_execution_context(self):
            # None where TensorRT cannot make one (e.g. no device memory left for the
            # activations); NVIDIA's own samples check for it.
            return None if trt.context_fails else Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            try:
                return Engine(data)
            except Exception:  # a real runtime returns None for an engine it cannot read
                return None

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


@pytest.fixture
def fake_runtime(monkeypatch):
    """Install the stand-ins where the backend imports them from."""
    def install(version='10.5.0'):
        trt = _fake_tensorrt(version)
        rt = _fake_cudart()
        trt.cudart = rt  # the stand-in engine asks which device is current
        bindings = types.ModuleType('cuda.bindings')
        bindings.runtime = rt
        cuda = types.ModuleType('cuda')
        cuda.bindings = bindings
        monkeypatch.setitem(sys.modules, 'tensorrt', trt)
        monkeypatch.setitem(sys.modules, 'cuda', cuda)
        monkeypatch.setitem(sys.modules, 'cuda.bindings', bindings)
        monkeypatch.setitem(sys.modules, 'cuda.bindings.runtime', rt)
        return trt, rt
    return install


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    metadata = tiny_metadata(input_size=(16, 24), num_classes=3)
    torch.manual_seed(4)
    path = tmp_path_factory.mktemp('fake_trt') / 'model.onnx'
    return export_onnx(ContractNet(metadata).eval(), metadata, path, with_logits=True,
                       verify=False)


def test_build_stamp_run_and_reuse(fake_runtime, exported, tmp_path, caplog):
    trt, rt = fake_runtime()
    engine = tmp_path / 'model.engine'
    caplog.set_level(logging.INFO)
    backend = create_backend('tensorrt', exported, engine_file_path=engine, max_batch=4)
    assert backend.engine_was_built and engine.is_file()
    assert 'TensorRT engine rebuild: no engine at' in caplog.text
    (build,) = trt.builds
    assert build['flags'] == {'fp16'}  # TensorRT 10: the weak-typing FP16 flag
    assert build['network_flags'] == 0  # explicit batch is the only mode; no flag needed
    assert build['shapes']['rgb'] == ((1, 3, 16, 24), (1, 3, 16, 24), (4, 3, 16, 24))
    stamp = read_stamp(engine)
    assert (stamp.gpu_name, stamp.compute_capability) == (FAKE_GPU.decode(), '8.6')
    assert stamp.precision == 'fp16' and stamp.max_batch == 4
    assert stamp.metadata['modalities'] == list(backend.metadata.modalities)
    assert (engine.parent / 'model.engine.timing.cache').read_bytes() == b'timing cache'

    available = mask_rows(backend.metadata.modalities)[[0, 5, 10, 14]]
    inputs = example_inputs(backend.metadata, available, seed=2)
    ours = backend.run(inputs, available)
    ref = create_backend('onnxruntime', exported).run(inputs, available)
    assert set(ours) == {'labels', 'confidence', 'logits'}
    for name in ours:
        np.testing.assert_array_equal(ours[name], ref[name])
    labels, _ = backend.infer({m: x[:1] for m, x in inputs.items()}, available[:1])
    np.testing.assert_array_equal(labels, ref['labels'][:1])
    with pytest.raises(Exception, match='exceeds the largest batch'):
        backend.infer({m: np.repeat(x, 2, 0) for m, x in inputs.items()},
                      np.repeat(available, 2, 0))
    allocated = set(rt.memory)
    backend.close()
    assert set(rt.freed) == allocated
    backend.close()  # a second close frees nothing twice
    assert sorted(rt.freed) == sorted(allocated)
    with pytest.raises(InferenceError, match='the tensorrt backend was closed'):
        backend.run(inputs, available)  # was a KeyError traceback (the buffers were gone)

    again = create_backend('tensorrt', exported, engine_file_path=engine, max_batch=4,
                           allow_engine_build=False)
    assert not again.engine_was_built and len(trt.builds) == 1


def test_other_gpu_or_version_rebuilds_or_refuses(fake_runtime, exported, tmp_path):
    fake_runtime('10.5.0')
    engine = tmp_path / 'model.engine'
    create_backend('tensorrt', exported, engine_file_path=engine).close()
    trt, _ = fake_runtime('10.7.0')  # the machine was upgraded
    with pytest.raises(EngineError) as info:
        create_backend('tensorrt', exported, engine_file_path=engine, allow_engine_build=False)
    assert str(engine) in str(info.value) and 'built with TensorRT 10.5.0' in str(info.value)
    rebuilt = create_backend('tensorrt', exported, engine_file_path=engine)
    assert rebuilt.engine_was_built and read_stamp(engine).tensorrt_version == '10.7.0'


@pytest.mark.parametrize('installed', [True, False])
def test_a_tensorrt_that_is_installed_but_does_not_import_says_why(tmp_path, monkeypatch,
                                                                   installed):
    """A tensorrt package whose libnvinfer is not on the library path (or whose bindings are
    for another Python) raises ImportError at `import tensorrt`: that read 'TensorRT is not
    installed', the error itself lost. Now it is named; a missing package reads as before."""
    from mmp_ros.inference.errors import BackendUnavailableError
    from mmp_ros.inference.tensorrt_backend import _import_tensorrt, tensorrt_available

    monkeypatch.delitem(sys.modules, 'tensorrt', raising=False)
    monkeypatch.setattr(sys, 'path', [p for p in sys.path if not (Path(p) / 'tensorrt').exists()])
    if installed:  # what the bindings' `from .tensorrt import *` raises without libnvinfer
        (tmp_path / 'tensorrt').mkdir()
        (tmp_path / 'tensorrt' / '__init__.py').write_text(
            "raise ImportError('libnvinfer.so.10: cannot open shared object file: No such file "
            "or directory', name='tensorrt.tensorrt')\n")
        monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BackendUnavailableError) as info:
        _import_tensorrt()
    if installed:
        assert str(info.value).startswith(
            'TensorRT is installed but `import tensorrt` failed: libnvinfer.so.10: cannot open '
            'shared object file')
    else:
        assert str(info.value).startswith('TensorRT is not installed (`import tensorrt` failed)')
    assert tensorrt_available() == (False, str(info.value))


def test_corrupt_engine_with_a_matching_stamp_is_an_engine_error(fake_runtime, exported,
                                                                 tmp_path):
    fake_runtime()
    engine = tmp_path / 'model.engine'
    create_backend('tensorrt', exported, engine_file_path=engine).close()
    engine.write_bytes(b'\x00' * 64)
    with pytest.raises(EngineError, match=f'cannot load engine {engine}'):
        create_backend('tensorrt', exported, engine_file_path=engine)


def test_tensorrt11_without_modelopt_builds_fp32_and_says_so(fake_runtime, exported, tmp_path,
                                                            caplog, monkeypatch):
    trt, _ = fake_runtime('11.1.0')
    monkeypatch.setitem(sys.modules, 'modelopt', None)  # import fails
    engine = tmp_path / 'model.engine'
    backend = create_backend('tensorrt', exported, engine_file_path=engine, enable_fp16=True)
    assert trt.builds[0]['flags'] == set()  # no weak-typing flags in 11.x
    assert trt.builds[0]['network_flags'] == 1 << 0  # STRONGLY_TYPED, accepted and ignored
    assert backend.precision == 'fp32' and read_stamp(engine).fp16_requested
    assert 'this engine is FP32' in caplog.text
    # The same request again is not a reason to rebuild.
    assert not create_backend('tensorrt', exported, engine_file_path=engine).engine_was_built
    assert stamp_path(engine).is_file()


def _install_autocast(monkeypatch, convert_to_mixed_precision):
    """A stand-in ``modelopt.onnx.autocast`` offering ``convert_to_mixed_precision``."""
    autocast = types.ModuleType('modelopt.onnx.autocast')
    autocast.convert_to_mixed_precision = convert_to_mixed_precision
    for name, module in (('modelopt', types.ModuleType('modelopt')),
                         ('modelopt.onnx', types.ModuleType('modelopt.onnx')),
                         ('modelopt.onnx.autocast', autocast)):
        monkeypatch.setitem(sys.modules, name, module)
    sys.modules['modelopt'].onnx = sys.modules['modelopt.onnx']
    sys.modules['modelopt.onnx'].autocast = autocast


def test_tensorrt11_fp16_goes_through_modelopt_autocast(fake_runtime, exported, tmp_path,
                                                        monkeypatch):
    """TensorRT 11 has no BuilderFlag.FP16 (the stand-in lacks it too): FP16 is a
    mixed-precision ONNX from ModelOpt's documented ``convert_to_mixed_precision(onnx_path=,
    low_precision_type=, keep_io_types=)``, which the build parses instead of the model."""
    import onnx

    trt, _ = fake_runtime('11.1.0')
    assert not hasattr(trt.BuilderFlag, 'FP16')
    calls = []

    def convert_to_mixed_precision(*, onnx_path, low_precision_type='fp16', keep_io_types=False,
                                   **options):
        calls.append((onnx_path, low_precision_type, keep_io_types))
        return onnx.load(onnx_path)  # a stand-in: the same graph, as a ModelProto

    _install_autocast(monkeypatch, convert_to_mixed_precision)
    engine = tmp_path / 'model.engine'
    backend = create_backend('tensorrt', exported, engine_file_path=engine, enable_fp16=True)
    assert calls == [(str(exported), 'fp16', True)]
    assert trt.builds[0]['flags'] == set() and backend.precision == 'fp16'
    assert read_stamp(engine).precision == 'fp16'


def test_tensorrt11_fp16_conversion_that_fails_is_an_engine_error(fake_runtime, exported,
                                                                  tmp_path, monkeypatch):
    """An exception inside ModelOpt AutoCast (an operator it has no rule for, say) came out
    of the node's start or `mmp_ros build-engine --fp16` as a raw traceback; now it is an
    EngineError naming the ONNX and the conversion, and how to build without it."""
    trt, _ = fake_runtime('11.1.0')

    def convert_to_mixed_precision(*, onnx_path, **options):
        raise RuntimeError('no precision rule for node /head/Foo')

    _install_autocast(monkeypatch, convert_to_mixed_precision)
    engine = tmp_path / 'model.engine'
    with pytest.raises(EngineError) as info:
        create_backend('tensorrt', exported, engine_file_path=engine, enable_fp16=True)
    assert str(info.value) == (
        f'ModelOpt AutoCast could not convert {exported} to FP16 mixed precision for '
        'TensorRT 11 (RuntimeError: no precision rule for node /head/Foo); build an FP32 '
        'engine instead: enable_fp16:=false, or `mmp_ros build-engine` without --fp16')
    assert trt.builds == [] and not engine.exists()
    create_backend('tensorrt', exported, engine_file_path=engine, enable_fp16=False).close()
    assert len(trt.builds) == 1


def test_tensorrt11_fp16_conversion_tensorrt_cannot_parse_does_not_blame_the_model(
        fake_runtime, exported, tmp_path, monkeypatch):
    """AutoCast's output that TensorRT's parser refused was reported as 'TensorRT cannot
    parse model.onnx', a ModelFileError (exit status 2, "re-export"), though the model
    itself parses; now an EngineError says the FP16 conversion is what failed."""
    import onnx

    trt, _ = fake_runtime('11.1.0')
    trt.unparsable = '.fp16.onnx'
    _install_autocast(monkeypatch, lambda *, onnx_path, **options: onnx.load(onnx_path))
    engine = tmp_path / 'model.engine'
    with pytest.raises(EngineError, match=(
            f'^TensorRT cannot parse the FP16 conversion of {exported} by ModelOpt AutoCast: '
            r'In node 7 \(Foo\): UNSUPPORTED_NODE; build an FP32 engine instead')):
        create_backend('tensorrt', exported, engine_file_path=engine, enable_fp16=True)
    create_backend('tensorrt', exported, engine_file_path=engine, enable_fp16=False).close()
    assert len(trt.builds) == 1


def test_auto_prefers_tensorrt_when_it_works(fake_runtime, exported, tmp_path, caplog):
    fake_runtime()
    caplog.set_level(logging.INFO, logger='mmp_ros.inference')
    chosen = create_backend('auto', exported, engine_file_path=tmp_path / 'auto.engine')
    assert chosen.name == 'tensorrt' and chosen.device == 'cuda:0'
    assert 'auto backend: tensorrt' in caplog.text


@pytest.mark.parametrize('failure', ['corrupt engine', 'no execution context'])
def test_auto_falls_back_to_onnxruntime_when_the_tensorrt_engine_fails(
        fake_runtime, exported, tmp_path, caplog, failure):
    """`auto` stopped at an EngineError (an engine TensorRT cannot load or run, a failed
    build), where it falls back for a TensorRT that is not there. Now the failure is a
    warning naming the engine and the reason, and onnxruntime runs; `tensorrt` still fails."""
    trt, rt = fake_runtime()
    engine = tmp_path / 'model.engine'
    create_backend('tensorrt', exported, engine_file_path=engine).close()
    if failure == 'corrupt engine':
        engine.write_bytes(b'\x00' * 64)
        reason = f'TensorRT cannot load engine {engine}'
    else:
        trt.context_fails = True
        reason = f'TensorRT cannot create an execution context for {engine}'
    with pytest.raises(EngineError, match=reason):
        create_backend('tensorrt', exported, engine_file_path=engine)
    caplog.set_level(logging.INFO, logger='mmp_ros.inference')
    caplog.clear()
    chosen = create_backend('auto', exported, engine_file_path=engine)
    assert chosen.name == 'onnxruntime'
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith(
        f'auto backend: TensorRT engine {engine} failed, falling back to onnxruntime: {reason}')
    assert f'passed over tensorrt: engine {engine}: {reason}' in caplog.text
    assert set(rt.freed) == set(rt.memory)  # nothing the failed one allocated is kept
    # A failure after device buffers were allocated (a cudaMalloc out of memory) frees them.
    malloc, allocations = rt.cudaMalloc, []

    def second_malloc_fails(size):
        allocations.append(size)
        return (2, None) if len(allocations) == 2 else malloc(size)  # cudaErrorMemoryAllocation

    rt.cudaMalloc = second_malloc_fails
    trt.context_fails = False
    engine.unlink()
    assert create_backend('auto', exported, engine_file_path=engine).name == 'onnxruntime'
    assert len(allocations) == 2 and set(rt.freed) == set(rt.memory)
    if trt.context_fails:  # the engine beside the ONNX (built, then failing): named too
        caplog.clear()
        model = tmp_path / 'beside' / 'model.onnx'
        model.parent.mkdir()
        model.write_bytes(exported.read_bytes())
        assert create_backend('auto', model).name == 'onnxruntime'
        assert f'TensorRT engine {model.with_suffix(".engine")} failed' in caplog.text


def test_auto_falls_back_to_onnxruntime_when_tensorrt_cannot_parse_the_model(
        fake_runtime, exported, tmp_path, caplog):
    """A valid ONNX that TensorRT's parser refuses (an operator it does not support) stopped
    `auto` with TensorRT's ModelFileError, though onnxruntime runs it. Now a warning names
    the ONNX and the parser's errors, and onnxruntime runs; `tensorrt` still fails, and a
    model onnxruntime cannot run either still fails `auto`."""
    import onnx

    trt, _ = fake_runtime()
    trt.unparsable = exported.name
    engine = tmp_path / 'model.engine'
    reason = f'TensorRT cannot parse {exported}: In node 7 (Foo): UNSUPPORTED_NODE'
    with pytest.raises(ModelFileError, match=re.escape(reason)):
        create_backend('tensorrt', exported, engine_file_path=engine)
    caplog.set_level(logging.INFO, logger='mmp_ros.inference')
    caplog.clear()
    chosen = create_backend('auto', exported, engine_file_path=engine)
    assert chosen.name == 'onnxruntime'
    chosen.close()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                  and r.getMessage().startswith('auto backend')]
    assert warning == f'auto backend: {reason}; falling back to onnxruntime'
    assert f'passed over tensorrt: {reason}' in caplog.text
    assert trt.builds == [] and not engine.exists()
    # An operator no backend knows: onnxruntime's refusal ends auto as it ends onnxruntime.
    proto = onnx.load(str(exported))
    proto.graph.node[-1].op_type = 'NoSuchOperator'
    unknown = tmp_path / exported.name
    onnx.save(proto, str(unknown))
    with pytest.raises(ModelFileError) as refused:
        create_backend('onnxruntime', unknown)
    with pytest.raises(ModelFileError, match=re.escape(str(refused.value))):
        create_backend('auto', unknown, engine_file_path=engine)


@pytest.mark.parametrize('error, words', [
    ('cudaErrorInsufficientDriver', 'CUDA cannot list the GPUs: CUDA driver version is '
     'insufficient for CUDA runtime version (cudaGetDeviceCount)'),
    ('cudaErrorNoDevice', 'CUDA cannot list the GPUs: no CUDA-capable device is detected '
     '(cudaGetDeviceCount)'),
])
def test_auto_says_why_cuda_lists_no_gpu(fake_runtime, exported, caplog, error, words):
    """A driver older than cuda-python's CUDA (cuda-python 13 on a JetPack 6 / R535 driver)
    makes cudaGetDeviceCount fail with cudaErrorInsufficientDriver: `auto` passed TensorRT
    over with 'no CUDA device is visible', on a machine whose GPU is right there. Now the
    reason is CUDA's own error string."""
    from mmp_ros.inference.tensorrt_backend import tensorrt_available

    _, rt = fake_runtime()
    rt.device_count = (getattr(rt.cudaError_t, error), 0)
    assert tensorrt_available() == (False, f'TensorRT 10.5.0 is installed but {words}')
    caplog.set_level(logging.INFO, logger='mmp_ros.inference')
    chosen = create_backend('auto', exported)
    assert chosen.name == 'onnxruntime'
    assert f'passed over tensorrt: TensorRT 10.5.0 is installed but {words}' in caplog.text
    rt.device_count = (0, 0)
    assert tensorrt_available() == (
        False, 'TensorRT 10.5.0 is installed but no CUDA device is visible')


def test_a_backend_on_a_second_gpu_runs_from_another_thread(fake_runtime, exported, tmp_path):
    """The node builds its backend in its main thread and infers in its 'mmp_inference'
    thread. CUDA's current device is per host thread, so on device='cuda:1' every run failed
    ('TensorRT execution ... failed') until the backend selected its device in the thread
    that runs it."""
    fake_runtime()
    backend = create_backend('tensorrt', exported, engine_file_path=tmp_path / 'm.engine',
                             device='cuda:1')
    available = mask_rows(backend.metadata.modalities)[[3]]
    inputs = example_inputs(backend.metadata, available, seed=5)
    results = []

    def worker():
        try:
            results.append(backend.run(inputs, available))
        except Exception as exc:  # handed to the test thread
            results.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    (ours,) = results
    assert not isinstance(ours, Exception), ours
    ref = create_backend('onnxruntime', exported).run(inputs, available)
    np.testing.assert_array_equal(ours['labels'], ref['labels'])
    backend.close()


def test_an_execution_context_tensorrt_cannot_make_is_an_engine_error(fake_runtime, exported,
                                                                       tmp_path):
    """create_execution_context() gives None when TensorRT cannot make a context (its
    activation memory does not fit on the GPU): that was an AttributeError traceback about
    'NoneType' and 'set_tensor_address'; now an EngineError naming the engine."""
    trt, rt = fake_runtime()
    engine = tmp_path / 'model.engine'
    create_backend('tensorrt', exported, engine_file_path=engine).close()
    trt.context_fails = True
    allocated = set(rt.memory)
    with pytest.raises(EngineError, match=f'cannot create an execution context for {engine}'):
        create_backend('tensorrt', exported, engine_file_path=engine)
    assert set(rt.memory) == allocated  # nothing allocated for it


def test_new_external_weights_rebuild_the_engine(fake_runtime, exported, tmp_path):
    """A model whose weights are external data (`mmp_ros export` writes them so near
    protobuf's 2 GiB limit) keeps only their offsets in the .onnx: new weights of the same
    shapes leave the .onnx byte for byte the same. The stamp hashed the .onnx alone, so the
    engine of the old weights was loaded as fresh."""
    import onnx
    from onnx import numpy_helper

    trt, _ = fake_runtime()
    model = tmp_path / 'model.onnx'

    def save(scale):
        proto = onnx.load(str(exported))
        for tensor in proto.graph.initializer:
            if tensor.data_type == onnx.TensorProto.FLOAT:
                tensor.CopyFrom(numpy_helper.from_array(
                    numpy_helper.to_array(tensor) * scale, tensor.name))
        (tmp_path / 'model.onnx.data').unlink(missing_ok=True)  # onnx.save appends to it
        onnx.save(proto, str(model), save_as_external_data=True, location='model.onnx.data',
                  size_threshold=0)

    save(1.0)
    engine = tmp_path / 'model.engine'
    create_backend('tensorrt', model, engine_file_path=engine).close()
    graph_bytes = model.read_bytes()
    save(-1.0)
    assert model.read_bytes() == graph_bytes  # only model.onnx.data changed
    again = create_backend('tensorrt', model, engine_file_path=engine)
    assert again.engine_was_built and len(trt.builds) == 2
    again.close()
    (tmp_path / 'model.onnx.data').unlink()
    with pytest.raises(ModelFileError, match=r"external data file .*model\.onnx\.data"):
        create_backend('tensorrt', model, engine_file_path=engine)


@pytest.mark.parametrize('where', ['under_a_file', 'a_directory'])
def test_an_unwritable_engine_path_is_refused_before_the_build(fake_runtime, exported, tmp_path,
                                                               where):
    """The default engine path is beside the ONNX, read-only in an installed package: that is
    an EngineError naming engine_file_path before minutes of building, not an OSError after."""
    trt, _ = fake_runtime()
    blocker = tmp_path / 'not_a_folder'
    blocker.write_text('')
    engine = blocker / 'model.engine' if where == 'under_a_file' else tmp_path
    with pytest.raises(EngineError, match='engine'):
        create_backend('tensorrt', exported, engine_file_path=engine)
    assert trt.builds == []


def test_metadata_modality_order_other_than_the_graphs_is_refused_at_build(fake_runtime,
                                                                           exported, tmp_path):
    from contract_net import with_modalities_reversed

    from mmp_ros.inference import ModelFileError

    trt, _ = fake_runtime()
    path = with_modalities_reversed(exported, tmp_path / 'reordered.onnx')
    with pytest.raises(ModelFileError, match='in the order'):
        create_backend('tensorrt', path, engine_file_path=tmp_path / 'x.engine')
    assert trt.builds == []


@pytest.mark.parametrize('change, message', [
    ('output', r"graph lacks outputs \['confidence'\]; not an mmp_ros export"),
    ('size', r"input 'rgb' has shape \(3, 16, 24\) per item but the metadata says "
             r'\(3, 8, 12\); the file was altered'),
])
def test_a_graph_its_metadata_does_not_describe_is_refused_at_start(fake_runtime, exported,
                                                                    tmp_path, change, message):
    # Refused by the onnxruntime backend, the engine loaded, and the first frame failed: a
    # KeyError 'confidence', or TensorRT taking no input of the size the metadata says.
    import json

    import onnx

    fake_runtime()
    proto = onnx.load(str(exported))
    if change == 'output':
        kept = [o for o in proto.graph.output if o.name != 'confidence']
        del proto.graph.output[:]
        proto.graph.output.extend(kept)
    else:
        (entry,) = [p for p in proto.metadata_props if p.key == 'mmp_ros']
        entry.value = json.dumps({**json.loads(entry.value), 'input_size': [8, 12]})
    path = tmp_path / 'altered.onnx'
    onnx.save(proto, str(path))
    for kind in ('onnxruntime', 'tensorrt'):
        with pytest.raises(ModelFileError, match=r'altered\.onnx: ' + message):
            create_backend(kind, path, engine_file_path=tmp_path / 'x.engine')


@pytest.mark.parametrize('batch, max_batch', [(1, 2), (4, 4)])
def test_an_input_of_a_fixed_batch_the_profile_cannot_cover_is_refused_before_the_build(
        fake_runtime, exported, tmp_path, batch, max_batch):
    """One profile covers batches 1..max_batch: a graph whose batch another exporter fixed
    made TensorRT fail inside its build, after its parse, with an error about the profile."""
    import onnx

    from mmp_ros.inference import ModelFileError

    trt, _ = fake_runtime()
    proto = onnx.load(str(exported))
    for value in proto.graph.input:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    path = tmp_path / 'fixed.onnx'
    onnx.save(proto, str(path))
    with pytest.raises(ModelFileError, match=rf"fixed\.onnx: input 'rgb' has a fixed batch of "
                       rf'{batch}, but the engine is built for batches 1 to {max_batch}.*'
                       r'export the model again'):
        create_backend('tensorrt', path, engine_file_path=tmp_path / 'x.engine',
                       max_batch=max_batch)
    assert trt.builds == []
    # A batch fixed at 1 is the node's own: built for it, it is taken.
    if batch == 1:
        create_backend('tensorrt', path, engine_file_path=tmp_path / 'x.engine', max_batch=1)
        assert len(trt.builds) == 1


@pytest.mark.parametrize('options, error, match', [
    ({'device': 'cuda:x'}, 'BackendUnavailableError', "cuda\\[:N\\]"),
    ({'max_batch': 0}, 'ValueError', 'max_batch must be >= 1'),
])
def test_bad_device_or_max_batch_is_a_clear_error_before_any_build(fake_runtime, exported,
                                                                   tmp_path, options, error,
                                                                   match):
    trt, _ = fake_runtime()
    with pytest.raises(Exception, match=match) as info:
        create_backend('tensorrt', exported, engine_file_path=tmp_path / 'x.engine', **options)
    assert type(info.value).__name__ == error
    assert trt.builds == []


def test_an_engine_path_that_is_the_onnx_itself_is_refused(fake_runtime, exported, tmp_path):
    """engine_file_path (or build-engine --engine) naming the ONNX: the engine was built and
    written over the model, and its stamp beside it; the next start had no model."""
    trt, _ = fake_runtime()
    model = tmp_path / 'model.onnx'
    model.write_bytes(exported.read_bytes())
    with pytest.raises(EngineError) as info:
        create_backend('tensorrt', model, engine_file_path=tmp_path / '.' / 'model.onnx')
    assert str(info.value).startswith(f'engine_file_path {tmp_path / "." / "model.onnx"} is '
                                      'the ONNX model itself')
    assert trt.builds == [] and model.read_bytes() == exported.read_bytes()
    # A model named like an engine gets its default engine beside it, not over it.
    named = tmp_path / 'model.engine'
    named.write_bytes(exported.read_bytes())
    backend = create_backend('tensorrt', named)
    assert backend.engine_file_path == tmp_path / 'model.engine.engine'
    assert named.read_bytes() == exported.read_bytes()


@pytest.mark.parametrize('raises', [False, True], ids=['none', 'exception'])
def test_a_damaged_timing_cache_is_replaced_by_a_fresh_one(fake_runtime, exported, tmp_path,
                                                          caplog, raises):
    """A timing cache TensorRT cannot read (cut short by a full disk, another file saved
    under its name) made create_timing_cache give None, which set_timing_cache refused with
    a TypeError traceback (or raised itself): no engine was built. Now it is set aside with
    a warning, the build uses a fresh cache and writes it over the damaged one."""
    trt, _ = fake_runtime()
    trt.damaged_cache_raises = raises
    engine = tmp_path / 'model.engine'
    cache = tmp_path / 'model.engine.timing.cache'
    cache.write_bytes(b'\x00garbage')
    backend = create_backend('tensorrt', exported, engine_file_path=engine)
    assert backend.engine_was_built and len(trt.builds) == 1
    assert f'timing cache {cache} cannot be read by TensorRT' in caplog.text
    assert cache.read_bytes() == b'timing cache'
    backend.close()


@pytest.mark.parametrize('how', ['folder', 'unreadable', 'permission'])
def test_a_timing_cache_that_cannot_be_read_is_replaced_by_a_fresh_one(fake_runtime, exported,
                                                                      tmp_path, caplog, how):
    """A cache file that exists but cannot be read (another user's, mode 600; here also a
    file whose read fails, for root) ended in the OSError traceback of read_bytes(), and no
    engine was built. Now it is set aside with a warning, like a damaged one."""
    trt, _ = fake_runtime()
    engine = tmp_path / 'model.engine'
    cache = tmp_path / 'model.engine.timing.cache'
    if how == 'folder':  # not a file: a fresh cache, which cannot be written over it
        cache.mkdir()
    elif how == 'unreadable':  # a file even root cannot read (EIO)
        if not Path('/proc/self/mem').is_file():
            pytest.skip('needs /proc/self/mem (Linux)')
        cache.symlink_to('/proc/self/mem')
    else:
        if os.geteuid() == 0:
            pytest.skip('root reads a file of mode 000')
        cache.write_bytes(b'timing cache')
        cache.chmod(0)
    backend = create_backend('tensorrt', exported, engine_file_path=engine)
    assert backend.engine_was_built and len(trt.builds) == 1
    if how == 'folder':
        assert f'timing cache {cache} not written' in caplog.text
    else:
        assert f'timing cache {cache} cannot be read (' in caplog.text
        assert cache.read_bytes() == b'timing cache' and not cache.is_symlink()
    backend.close()
