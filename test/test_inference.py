"""Backends behind one interface: input checks, bad files, backend choice, import hygiene."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs, repo_env

needs('torch')
needs('onnx')

import onnx  # noqa: E402
import torch  # noqa: E402
from contract_net import ContractNet, with_modalities_reversed  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from mmp_ros.errors import InputError  # noqa: E402
from mmp_ros.inference import (  # noqa: E402
    BackendUnavailableError,
    InferenceError,
    InferenceInputError,
    ModelFileError,
    create_backend,
    read_onnx_file,
)
from mmp_ros.inference.testing import tiny_metadata  # noqa: E402
from mmp_ros.inference.torch_backend import TorchBackend  # noqa: E402
from mmp_ros.modalities import MODALITIES  # noqa: E402
from training.export import example_inputs, export_onnx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INPUT_SIZE = (16, 24)


@pytest.fixture(scope='module')
def model_and_file(tmp_path_factory):
    metadata = tiny_metadata(input_size=INPUT_SIZE, num_classes=3)
    torch.manual_seed(1)
    model = ContractNet(metadata).eval()
    path = tmp_path_factory.mktemp('inference') / 'model.onnx'
    export_onnx(model, metadata, path, with_logits=True, verify=False)
    return model, metadata, path


@pytest.fixture(scope='module')
def backend(model_and_file):
    return create_backend('onnxruntime', model_and_file[2], threads=1)


def _batch(metadata, batch=2, seed=0):
    available = np.ones((batch, len(metadata.modalities)), bool)
    return example_inputs(metadata, available, seed=seed), available


# --- bad model files ------------------------------------------------------------------


def test_missing_file_names_it(tmp_path):
    path = tmp_path / 'nowhere.onnx'
    with pytest.raises(ModelFileError, match='nowhere.onnx does not exist'):
        create_backend('onnxruntime', path)


@pytest.mark.parametrize('kind, suffix', [('onnxruntime', '.onnx'), ('torch', '.pt')])
def test_a_model_path_with_a_leading_tilde_says_it_is_not_expanded(tmp_path, monkeypatch,
                                                                    kind, suffix):
    """model_file_path:=~/models/m.onnx (no shell expands ~ there) was refused as 'does not
    exist; check the path' while the file was there, with nothing to say why."""
    monkeypatch.setenv('HOME', str(tmp_path))
    (tmp_path / f'm{suffix}').write_bytes(b'x')
    with pytest.raises(ModelFileError) as info:
        create_backend(kind, f'~/m{suffix}')
    assert str(info.value).endswith(f'~/m{suffix} does not exist; check the path (a leading ~ '
                                    f'is not expanded here: give the full path, '
                                    f'{tmp_path / f"m{suffix}"})')
    from mmp_ros.model import CheckpointError, read_checkpoint

    with pytest.raises(CheckpointError, match=rf'^checkpoint not found: ~/m\.pt \(a leading ~ '
                       rf'is not expanded here: give the full path, {tmp_path}/m\.pt\)$'):
        read_checkpoint('~/m.pt')


@pytest.mark.parametrize('kind, suffix', [('onnxruntime', '.onnx'), ('auto', '.onnx'),
                                          ('torch', '.pt')])
def test_a_folder_given_as_the_model_says_so_and_what_it_holds(tmp_path, kind, suffix):
    """The torch backend (and the export's checkpoint) said a folder 'does not exist'; the
    ONNX backends said 'not a regular file', with nothing to do."""
    folder = tmp_path / f'models{suffix}'
    folder.mkdir()
    with pytest.raises(ModelFileError) as info:
        create_backend(kind, folder)
    assert str(info.value).endswith(f'{folder} is a folder; give the '
                                    + ('exported .onnx file itself' if suffix == '.onnx'
                                       else 'checkpoint file (.pt) itself'))
    (folder / f'model{suffix}').write_bytes(b'')
    with pytest.raises(ModelFileError, match=rf' \(it holds {folder / "model"}\{suffix}\)$'):
        create_backend(kind, folder)


def test_a_folder_given_as_the_checkpoint_to_export_says_so(tmp_path):
    from mmp_ros.model import CheckpointError
    from training.export import export_checkpoint

    with pytest.raises(CheckpointError, match=f'^checkpoint {tmp_path} is a folder; give the '
                                              r'checkpoint file \(\.pt\) itself$'):
        export_checkpoint(tmp_path, tmp_path / 'model.onnx')


@pytest.mark.parametrize('keep', [0.0, 0.3, 0.999])
def test_truncated_onnx_names_the_file(model_and_file, tmp_path, keep):
    data = model_and_file[2].read_bytes()
    path = tmp_path / 'truncated.onnx'
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError, match=str(path)):
        create_backend('onnxruntime', path)


def test_external_weights_cut_short_are_named_as_such(model_and_file, tmp_path):
    # ONNX Runtime refused the model with its own message, a C++ backtrace of
    # GetExtDataFromTensorProto ('... given file_length: 1000 are out of bounds ...').
    proto = onnx.load(str(model_and_file[2]))
    path = tmp_path / 'model.onnx'
    # weights only: ONNX Runtime reads no Reshape's shape from external data
    onnx.save(proto, str(path), save_as_external_data=True, location='model.onnx.data',
              size_threshold=1024)
    data = tmp_path / 'model.onnx.data'
    whole = data.stat().st_size
    create_backend('onnxruntime', path).close()
    data.write_bytes(data.read_bytes()[:whole - 100])
    with pytest.raises(ModelFileError, match=rf'model\.onnx\.data has {whole - 100} bytes, its '
                       rf'weights need {whole} \(an interrupted copy\?\)'):
        create_backend('onnxruntime', path)


def test_corrupt_bytes_name_the_file(tmp_path):
    path = tmp_path / 'garbage.onnx'
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError, match=r'garbage\.onnx .*not an ONNX model'):
        read_onnx_file(path)


def test_a_pytorch_checkpoint_given_as_onnx_is_named_as_one(tmp_path):
    path = tmp_path / 'model.onnx'
    torch.save({'state_dict': {}}, path)
    with pytest.raises(ModelFileError, match=r'model\.onnx is a PyTorch checkpoint, not an '
                       r'ONNX model: export it with `mmp_ros export`'):
        read_onnx_file(path)


def test_onnx_without_mmp_ros_metadata_is_refused(tmp_path):
    node = helper.make_node('Relu', ['x'], ['y'])
    graph = helper.make_graph(
        [node], 'plain',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])],
    )
    path = tmp_path / 'plain.onnx'
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelFileError, match=r"plain\.onnx: no 'mmp_ros' entry"):
        create_backend('onnxruntime', path)


def test_graph_altered_after_export_is_refused(model_and_file, tmp_path):
    proto = onnx.load(str(model_and_file[2]))
    proto.graph.input[0].name = 'camera'  # metadata still says rgb
    for node in proto.graph.node:
        node.input[:] = ['camera' if i == 'rgb' else i for i in node.input]
    path = tmp_path / 'renamed.onnx'
    onnx.save(proto, str(path))
    with pytest.raises(ModelFileError, match='do not match its metadata'):
        create_backend('onnxruntime', path)


def test_an_input_of_dynamic_height_and_width_is_named_as_such(model_and_file, tmp_path):
    # It was refused as "altered after export", which a model exported by another tool with
    # dynamic axes is not.
    proto = onnx.load(str(model_and_file[2]))
    for value in proto.graph.input[:1]:
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = 'height', 'width'
    path = tmp_path / 'dynamic.onnx'
    onnx.save(proto, str(path))
    with pytest.raises(ModelFileError, match=r"dynamic\.onnx: input 'rgb' has dynamic "
                       r"dimensions \['height', 'width'\].*export the model with"):
        create_backend('onnxruntime', path)


@pytest.mark.parametrize('batch', [1, 4])
def test_an_input_of_a_fixed_batch_is_refused_or_bounds_the_batch(model_and_file, tmp_path,
                                                                   batch):
    # A fixed batch of 4 loaded, and every run of the node (one frame) failed with ONNX
    # Runtime's 'Got invalid dimensions for input ... Expected: 4'; a fixed batch of 1 took
    # a batch of 2 to the same error instead of the input check's.
    proto = onnx.load(str(model_and_file[2]))
    for value in proto.graph.input:
        value.type.tensor_type.shape.dim[0].dim_value = batch
    path = tmp_path / 'fixed.onnx'
    onnx.save(proto, str(path))
    if batch != 1:
        with pytest.raises(ModelFileError, match=r"fixed\.onnx: input 'rgb' has a fixed batch "
                           r'of 4.*`mmp_ros export` \(a dynamic batch\)'):
            create_backend('onnxruntime', path)
        return
    fixed = create_backend('onnxruntime', path, threads=1)
    assert fixed.max_batch == 1
    labels, _ = fixed.infer(*_batch(model_and_file[1], batch=1))
    assert labels.shape == (1, *INPUT_SIZE)
    with pytest.raises(InferenceInputError, match='exceeds the largest batch'):
        fixed.infer(*_batch(model_and_file[1], batch=2))


def test_metadata_modality_order_other_than_the_graphs_is_refused(model_and_file, tmp_path):
    """Column i of 'available' masks the graph's i-th input: metadata listing the same
    modalities in another order would mask the wrong streams, silently."""
    path = with_modalities_reversed(model_and_file[2], tmp_path / 'reordered.onnx')
    with pytest.raises(ModelFileError, match='in the order'):
        create_backend('onnxruntime', path)


def _with_classes(model_file, out, count):
    """A copy of an exported model whose metadata names ``count`` classes."""
    import json

    from mmp_ros.metadata import METADATA_KEY

    proto = onnx.load(str(model_file))
    (entry,) = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    data = json.loads(entry.value)
    data['class_names'] = [f'name_{k}' for k in range(count)]
    data['palette'] = [[k, k, k] for k in range(count)]
    entry.value = json.dumps(data)
    onnx.save(proto, str(out))
    return out


@pytest.mark.parametrize('with_logits', [True, False])
def test_metadata_naming_other_classes_than_the_graph_is_refused(model_and_file, tmp_path,
                                                                  with_logits):
    """Such a file loaded and ran: the labels of classes it did not name became 'no
    prediction' in the node, silently (or names it never predicted were published)."""
    model, metadata, exported = model_and_file
    if not with_logits:  # labels and confidence only: the count is behind the ArgMax
        exported = export_onnx(model, metadata, tmp_path / 'labels_only.onnx',
                               with_logits=False, verify=False)
        assert read_onnx_file(exported).graph_classes == metadata.num_classes
    for count in (2, 5):
        path = _with_classes(exported, tmp_path / f'classes_{count}.onnx', count)
        with pytest.raises(ModelFileError) as info:
            create_backend('onnxruntime', path)
        assert str(info.value).startswith(f'{path}: its graph labels 3 classes but its '
                                          f'metadata names {count}')
        assert 'Re-export it with `mmp_ros export`' in str(info.value)
    # A graph whose shape information was stripped cannot say: it is not refused for that.
    proto = onnx.load(str(exported))
    del proto.graph.value_info[:]
    for output in proto.graph.output:
        output.type.tensor_type.ClearField('shape')
    onnx.save(proto, str(tmp_path / 'no_shapes.onnx'))
    assert read_onnx_file(tmp_path / 'no_shapes.onnx').metadata.num_classes == 3


def test_torch_backend_refuses_an_onnx_file(model_and_file):
    with pytest.raises(ModelFileError, match='torch backend runs a training checkpoint'):
        create_backend('torch', model_and_file[2])


def test_unknown_backend_kind(model_and_file):
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        create_backend('tflite', model_and_file[2])


# --- bad inputs at infer ----------------------------------------------------------------


def test_wrong_shape_names_the_tensor(backend):
    inputs, available = _batch(backend.metadata)
    inputs['depth'] = inputs['depth'][:, :, :8]
    with pytest.raises(InferenceInputError, match=r"input 'depth' has shape \(2, 1, 8, 24\)"):
        backend.infer(inputs, available)


def test_wrong_dtype_names_the_tensor(backend):
    inputs, available = _batch(backend.metadata)
    inputs['thermal'] = inputs['thermal'].astype(np.float64)
    with pytest.raises(InferenceInputError, match="input 'thermal' has dtype float64"):
        backend.infer(inputs, available)


def test_batch_mismatch_between_tensors(backend):
    inputs, available = _batch(backend.metadata, batch=2)
    inputs['rgb'] = inputs['rgb'][:1]
    with pytest.raises(InferenceInputError, match="input 'rgb' has shape"):
        backend.infer(inputs, available)


def test_bad_available(backend):
    inputs, available = _batch(backend.metadata)
    with pytest.raises(InferenceInputError, match=r"'available' has shape \(2, 3\)"):
        backend.infer(inputs, available[:, :3])
    with pytest.raises(InferenceInputError, match="'available' has dtype int64"):
        backend.infer(inputs, available.astype(np.int64))


def test_a_batch_item_with_no_modality_is_refused(backend):
    # The model would give confident-looking labels made of nothing (confidence up to 0.99).
    inputs, available = _batch(backend.metadata)
    available[1] = False
    with pytest.raises(InferenceInputError, match='batch item 1 has no modality available'):
        backend.infer(inputs, available)
    # Nor one that the graph reads as all masked (it takes a value above 0.5 as real): a
    # mask of 0.4 or NaN passed the check before and was answered with such labels.
    for value in (0.4, np.nan):
        available = np.ones((2, len(backend.metadata.modalities)), np.float32)
        available[0] = value
        with pytest.raises(InferenceInputError, match=r'batch item 0 has no modality available '
                                                      r'\(the model takes a value above 0.5'):
            backend.infer(inputs, available)


def test_unknown_input_name(backend):
    inputs, available = _batch(backend.metadata)
    inputs['lidar'] = inputs['depth']
    with pytest.raises(InferenceInputError, match=r"inputs \['lidar'\] are not modalities"):
        backend.infer(inputs, available)


def test_missing_input_must_be_masked(backend):
    inputs, available = _batch(backend.metadata)
    del inputs['polarization']
    with pytest.raises(InferenceInputError, match="'polarization' is missing but marked"):
        backend.infer(inputs, available)
    available[:, MODALITIES.index('polarization')] = False
    labels, confidence = backend.infer(inputs, available)  # masked: zeros are fed
    full = {**inputs, 'polarization': np.zeros((2, 3, *INPUT_SIZE), np.float32)}
    ref_labels, ref_confidence = backend.infer(full, available)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(confidence, ref_confidence)


def test_bool_and_float_masks_agree(backend):
    inputs, available = _batch(backend.metadata)
    available[0, 1:] = False
    from_bool = backend.infer(inputs, available)
    from_float = backend.infer(inputs, available.astype(np.float32))
    np.testing.assert_array_equal(from_bool[0], from_float[0])


def test_run_after_close_is_refused_and_close_twice_is_harmless(model_and_file):
    """The TensorRT backend answered run() after close() with a KeyError traceback (its
    device buffers were gone); the others ran on. Now every backend says it was closed."""
    model, metadata, path = model_and_file
    inputs, available = _batch(metadata)
    for backend in (create_backend('onnxruntime', path, threads=1),
                    TorchBackend(model, metadata, device='cpu')):
        backend.infer(inputs, available)
        backend.close()
        backend.close()
        with pytest.raises(InferenceError, match=f'the {backend.name} backend was closed'):
            backend.infer(inputs, available)


# --- backends agree through the common interface ---------------------------------------


def test_torch_and_onnxruntime_backends_agree(model_and_file, backend):
    model, metadata, _ = model_and_file
    torch_backend = TorchBackend(model, metadata, device='cpu')
    assert (torch_backend.name, torch_backend.device) == ('torch', 'cpu')
    assert (backend.name, backend.device) == ('onnxruntime', 'cpu')
    inputs, available = _batch(metadata, batch=3, seed=4)
    available[1, :2] = False
    ort_out, torch_out = backend.run(inputs, available), torch_backend.run(inputs, available)
    assert set(ort_out) == set(torch_out) == {'labels', 'confidence', 'logits'}
    np.testing.assert_allclose(ort_out['logits'], torch_out['logits'], atol=1e-4, rtol=1e-4)
    assert (ort_out['labels'] == torch_out['labels']).mean() >= 0.999


def test_torch_backend_without_cuda_says_so(model_and_file):
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is present')
    model, metadata, _ = model_and_file
    with pytest.raises(BackendUnavailableError, match='sees no CUDA device'):
        TorchBackend(model, metadata, device='cuda')


def test_torch_backend_names_a_cuda_device_beyond_the_machines():
    from mmp_ros.inference.torch_backend import resolve_device

    with pytest.raises(BackendUnavailableError, match=r"'cuda:3': this machine has 1 CUDA "
                                                      r'device \(cuda:0\)$'):
        resolve_device('cuda:3', cuda_devices=1)
    with pytest.raises(BackendUnavailableError, match=r'2 CUDA devices \(cuda:0 to cuda:1\)'):
        resolve_device('cuda:2', cuda_devices=2)
    with pytest.raises(BackendUnavailableError, match='sees no CUDA device'):
        resolve_device('cuda', cuda_devices=0)
    assert resolve_device('cuda:1', cuda_devices=2) == torch.device('cuda:1')
    assert resolve_device('cuda', cuda_devices=1) == torch.device('cuda')


def test_onnxruntime_cuda_without_provider_says_so(model_and_file):
    import onnxruntime

    if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has CUDA')
    with pytest.raises(BackendUnavailableError, match='no CUDA provider'):
        create_backend('onnxruntime', model_and_file[2], device='cuda')


@pytest.mark.parametrize('device', ['cuda:x', 'cudafoo'])
def test_onnxruntime_refuses_a_device_that_is_not_cuda_n(model_and_file, device):
    # 'cudafoo' ran on CUDA device 0 and 'cuda:x' was a ValueError traceback from int()
    # where ONNX Runtime has CUDA; without it both were blamed on a missing CUDA provider.
    with pytest.raises(BackendUnavailableError, match=f"onnxruntime device '{device}': use "
                       r"'cpu' or 'cuda\[:N\]'"):
        create_backend('onnxruntime', model_and_file[2], device=device)


def test_auto_picks_the_fastest_available_and_says_why(model_and_file, caplog):
    import onnxruntime

    if 'CUDAExecutionProvider' in onnxruntime.get_available_providers():
        pytest.skip('this onnxruntime has a CUDA provider, which auto may pick over the CPU')
    caplog.set_level(logging.INFO, logger='mmp_ros.inference')
    chosen = create_backend('auto', model_and_file[2], threads=1)
    assert chosen.name == 'onnxruntime' and chosen.device == 'cpu'
    text = caplog.text
    assert 'auto backend: onnxruntime CPU' in text
    assert 'tensorrt:' in text and 'onnxruntime CUDA:' in text


@pytest.mark.parametrize('device', ['gpu', 'cuda:x', 'CPU'])
def test_auto_refuses_a_device_it_cannot_name(model_and_file, device):
    # It ran on the CPU (or ONNX Runtime's CUDA device 0) whatever the device said.
    with pytest.raises(BackendUnavailableError, match=f"auto backend device '{device}': use "
                       r"'cpu' or 'cuda\[:N\]'"):
        create_backend('auto', model_and_file[2], device=device)


def test_auto_does_not_hide_a_bad_model_file(tmp_path):
    path = tmp_path / 'bad.onnx'
    path.write_bytes(b'\x08\x07\x12')
    with pytest.raises(ModelFileError, match='bad.onnx'):
        create_backend('auto', path)


def test_threads_must_be_positive(model_and_file):
    with pytest.raises(ValueError, match='threads must be >= 1'):
        create_backend('onnxruntime', model_and_file[2], threads=0)


def test_package_imports_without_torch_or_rclpy():
    code = (
        'import sys, mmp_ros.inference, mmp_ros.inference.tensorrt_backend, '
        'mmp_ros.inference.onnxruntime_backend, mmp_ros.inference.engine_cache\n'
        "bad = [m for m in ('torch', 'rclpy', 'tensorrt', 'onnx') if m in sys.modules]\n"
        'assert not bad, bad'
    )
    env = repo_env()
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- command-line pieces ----------------------------------------------------------------


def test_bench_child_times_the_onnxruntime_backend(model_and_file):
    from mmp_ros.inference.bench import report_markdown, run_child, run_interleaved

    spec = {'backend': 'onnxruntime', 'variant': 'mmp', 'device': 'cpu', 'fp16': False,
            'threads': 1, 'warmup': 1, 'iterations': 4, 'input_size': list(INPUT_SIZE),
            'size_label': 'model', 'onnx': str(model_and_file[2]), 'checkpoint': None}
    result = run_child(spec)
    assert 0 < result['p50_ms'] <= result['p95_ms']
    assert result['throughput_fps'] == pytest.approx(1e3 / result['mean_ms'])
    assert result['peak_rss_mib'] >= result['rss_before_load_mib'] > 0
    paired = run_interleaved([spec, {**spec, 'variant': 'none'}])
    assert [r['variant'] for r in paired] == ['mmp', 'none']
    assert all(len(r) > len(spec) and r['p50_ms'] > 0 for r in paired)
    paired[1]['p50_ms'] = paired[0]['p50_ms'] / 2
    table = report_markdown([result], [paired])
    assert '| onnxruntime cpu | mmp | 16x24 |' in table
    assert 'mmp p50' in table and 'vs none' in table and '+100.0%' in table


def test_bench_reports_a_device_that_cannot_run_in_one_line(model_and_file):
    from mmp_ros.inference.bench import _spawn

    spec = {'backend': 'onnxruntime', 'variant': 'mmp', 'device': 'gpu', 'fp16': False,
            'threads': 1, 'warmup': 0, 'iterations': 1, 'input_size': list(INPUT_SIZE),
            'size_label': 'model', 'onnx': str(model_and_file[2]), 'checkpoint': None}
    with pytest.raises(SystemExit) as exit_info:
        _spawn([spec])
    assert str(exit_info.value) == ("mmp_ros bench-backends: onnxruntime device 'gpu': use "
                                    "'cpu' or 'cuda[:N]'")


def test_bench_makes_the_json_folder_before_measuring(tmp_path, monkeypatch):
    import argparse

    from mmp_ros.errors import OutputFolderError
    from mmp_ros.inference import bench

    monkeypatch.setattr(bench, '_random_checkpoints', lambda *a: pytest.fail('built models'))
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    blocked = tmp_path / 'file'
    blocked.write_text('')
    args = parser.parse_args(['--random-size', 'tiny', '--json', str(blocked / 'b.json')])
    with pytest.raises(OutputFolderError, match=f'--json {blocked}: cannot be a folder'):
        bench.run(args)
    args = parser.parse_args(['--random-size', 'tiny', '--json', str(tmp_path / 'out' / 'b.json')])
    with pytest.raises(pytest.fail.Exception, match='built models'):
        bench.run(args)
    assert (tmp_path / 'out').is_dir()
    args = parser.parse_args(['--random-size', 'tiny', '--json', str(tmp_path / 'out')])
    with pytest.raises(OutputFolderError, match=f'--json {tmp_path / "out"} is a folder; give '
                       'the file to write'):
        bench.run(args)
    # a folder not made yet: the results were written as the file 'results', without suffix
    args = parser.parse_args(['--random-size', 'tiny', '--json', f'{tmp_path / "results"}/'])
    with pytest.raises(OutputFolderError, match=f'--json {tmp_path / "results"}/ ends with a '
                       'slash, as a folder does; give the file to write, e.g. '
                       f'{tmp_path / "results" / "results.json"}'):
        bench.run(args)
    assert not (tmp_path / 'results').exists()


def test_build_engine_without_tensorrt_says_what_to_install(model_and_file, capsys):
    import argparse

    from mmp_ros.inference import engine_cli
    from mmp_ros.inference.tensorrt_backend import tensorrt_available

    if tensorrt_available()[0]:
        pytest.skip('TensorRT is usable here')
    parser = argparse.ArgumentParser()
    engine_cli.add_arguments(parser)
    args = parser.parse_args(['--onnx', str(model_and_file[2]), '--fp16'])
    assert engine_cli.run(args) == 1
    assert 'mmp_ros build-engine: TensorRT is not installed' in capsys.readouterr().err


def test_build_engine_shows_its_own_info_lines_not_the_libraries(tmp_path):
    # It set the root logger to INFO, so every library's INFO lines came with its own (as
    # mmp_ros export printed over a hundred of onnx_ir's for a tiny model).
    code = (
        'import logging, sys\n'
        'from mmp_ros.inference import engine_cli\n'
        'def build(args, log):\n'
        '    logging.getLogger("onnx_ir").info("library chatter")\n'
        '    log.info("building the engine")\n'
        '    return 0\n'
        'engine_cli._build = build\n'
        'sys.exit(engine_cli.run(None))\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=repo_env(), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'building the engine' in result.stderr
    assert 'library chatter' not in result.stderr


@pytest.mark.parametrize(('argv', 'message'), [
    (['--onnx', 'missing.onnx'], 'mmp_ros build-engine: model file missing.onnx does not exist'),
    (['--onnx', 'model.onnx', '--max-batch', '0'], 'argument --max-batch: must be positive'),
])
def test_build_engine_refuses_a_bad_input_with_status_2(argv, message, capsys):
    # As every command does (docs/node.md), before TensorRT is needed.
    from mmp_ros.cli import main

    try:
        status = main(['build-engine', *argv])
    except SystemExit as exit_info:  # argparse
        status = exit_info.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and 'Traceback' not in err


def test_bench_exports_at_the_opset_asked_and_needs_a_checkpoint_for_it(model_and_file,
                                                                          tmp_path):
    from mmp_ros.inference.bench import Variant, _onnx_for
    from mmp_ros.inference.onnx_file import read_onnx_file
    from mmp_ros.model import ModelConfig, build_model, save_checkpoint

    metadata = tiny_metadata(input_size=(32, 32), num_classes=3, method='none')
    checkpoint = save_checkpoint(tmp_path / 'none.pt', metadata=metadata, model=build_model(
        ModelConfig(modalities=metadata.modalities, num_classes=3, method='none')))
    for opset in (18, 20):
        path = _onnx_for(Variant('none', checkpoint, None), None, tmp_path, opset)
        assert read_onnx_file(path).opsets[''] == opset
    given = Variant('mmp', None, model_and_file[2])
    assert _onnx_for(given, None, tmp_path, None) == model_and_file[2]
    with pytest.raises(SystemExit, match='--opset 20 needs --checkpoint'):
        _onnx_for(given, None, tmp_path, 20)


def test_bench_refuses_a_checkpoint_whose_metadata_lacks_its_input_size(tmp_path, monkeypatch):
    """--sizes model reads the checkpoint's input size: metadata without it was a KeyError
    traceback ('input_size')."""
    import argparse

    from mmp_ros.inference import bench
    from mmp_ros.model import CheckpointError, ModelConfig, build_model, save_checkpoint

    metadata = tiny_metadata(input_size=(32, 32), num_classes=3, method='none')
    checkpoint = save_checkpoint(tmp_path / 'none.pt', metadata=metadata, model=build_model(
        ModelConfig(modalities=metadata.modalities, num_classes=3, method='none')))
    saved = torch.load(checkpoint, weights_only=True)
    del saved['metadata']['input_size']
    torch.save(saved, checkpoint)
    monkeypatch.setattr(bench, '_spawn', lambda specs: pytest.fail('measured before stopping'))
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(['--checkpoint', str(checkpoint), '--backends', 'torch',
                              '--sizes', 'model', '--workdir', str(tmp_path)])
    with pytest.raises(CheckpointError, match=f'^{checkpoint}: malformed model metadata'):
        bench.run(args)


def test_bench_refuses_a_workdir_that_cannot_be_a_folder(tmp_path, monkeypatch):
    """--workdir FILE (or a folder under a file) was a FileExistsError (NotADirectoryError)
    traceback."""
    import argparse

    from mmp_ros.errors import OutputFolderError
    from mmp_ros.inference import bench

    monkeypatch.setattr(bench, '_spawn', lambda specs: pytest.fail('measured before stopping'))
    blocked = tmp_path / 'file'
    blocked.write_text('')
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    for workdir in (blocked, blocked / 'exports'):
        args = parser.parse_args(['--onnx', 'mmp.onnx', '--backends', 'onnxruntime', '--sizes',
                                  'model', '--workdir', str(workdir)])
        with pytest.raises(OutputFolderError, match=f'^--workdir {workdir}: cannot be a folder'):
            bench.run(args)


def test_bench_refuses_a_baseline_of_another_architecture_or_size(tmp_path, monkeypatch):
    """A baseline at another input size was measured at its own under --sizes model, and the
    ratio reported as MMP's overhead 'at 32x48' (a model of another size likewise)."""
    import argparse

    from mmp_ros.inference import bench
    from mmp_ros.inference.testing import tiny_random_model
    from mmp_ros.model import save_checkpoint

    def saved(name, method, input_size):
        metadata = tiny_metadata(input_size=input_size, num_classes=3, method=method)
        return save_checkpoint(tmp_path / name, metadata=metadata,
                               model=tiny_random_model(metadata))

    model = saved('mmp.pt', 'mmp', (32, 48))
    wider = saved('none_wider.pt', 'none', (64, 80))
    same = saved('none.pt', 'none', (32, 48))

    def spawned(specs):
        raise RuntimeError('measured')

    monkeypatch.setattr(bench, '_spawn', spawned)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)

    def run(baseline, sizes):
        bench.run(parser.parse_args(['--checkpoint', str(model), '--baseline-checkpoint',
                                     str(baseline), '--backends', 'torch', '--sizes', sizes]))

    with pytest.raises(InputError, match=f'^--baseline-checkpoint {wider} is not the '
                       r'architecture of the model \(input size 32x48 vs 64x80 '):
        run(wider, 'model')
    for baseline, sizes in ((wider, '32x32'), (same, 'model')):  # measured, as they may be
        with pytest.raises(RuntimeError, match='measured'):
            run(baseline, sizes)


def test_bench_refuses_an_onnx_that_is_not_the_export_of_the_checkpoint(tmp_path,
                                                                         monkeypatch):
    """--checkpoint A --onnx B ran torch on A and ONNX Runtime on B, both rows 'model'."""
    import argparse

    from mmp_ros.inference import bench
    from mmp_ros.inference.testing import tiny_random_model
    from mmp_ros.model import save_checkpoint
    from training.export import export_checkpoint

    def saved(name, method):
        metadata = tiny_metadata(input_size=(16, 16), num_classes=3, method=method)
        return save_checkpoint(tmp_path / name, metadata=metadata,
                               model=tiny_random_model(metadata))

    model, other = saved('mmp.pt', 'mmp'), saved('none.pt', 'none')
    export, _ = export_checkpoint(model, tmp_path / 'mmp.onnx', verify=False)
    foreign, _ = export_checkpoint(other, tmp_path / 'none.onnx', verify=False)

    def spawned(specs):
        raise RuntimeError('measured')

    monkeypatch.setattr(bench, '_spawn', spawned)
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)

    def run(onnx):
        bench.run(parser.parse_args(['--checkpoint', str(model), '--onnx', str(onnx),
                                     '--sizes', 'model']))

    with pytest.raises(InputError, match=f"^--onnx {foreign} is not the export of --checkpoint "
                       f"{model} \\(method: 'none' vs 'mmp'\\): the backends would measure "):
        run(foreign)
    with pytest.raises(RuntimeError, match='measured'):
        run(export)


def test_bench_exports_a_model_and_baseline_of_one_file_name_apart(tmp_path, monkeypatch):
    """out/mmp/checkpoint.pt and out/none/checkpoint.pt were exported to one file, named by
    the stem: the baseline ran the model's export, and 'none' measured the model. An export
    left in a --workdir by a checkpoint since replaced was reused too."""
    import os

    import training.export
    from mmp_ros.inference.bench import Variant, _onnx_for

    exports = []

    def export(checkpoint, target, **options):  # what is exported where (seconds each)
        exports.append(checkpoint)
        Path(target).write_text(str(checkpoint))
        return Path(target), None

    monkeypatch.setattr(training.export, 'export_checkpoint', export)
    variants = []
    for method in ('mmp', 'none'):
        checkpoint = tmp_path / method / 'checkpoint.pt'
        checkpoint.parent.mkdir()
        checkpoint.write_bytes(b'')
        variants.append(Variant('model' if method == 'mmp' else 'none', checkpoint, None))
    paths = [_onnx_for(variant, None, tmp_path, None) for variant in variants]
    assert [p.read_text() for p in paths] == [str(v.checkpoint) for v in variants]
    assert _onnx_for(variants[1], None, tmp_path, None) == paths[1] and len(exports) == 2
    later = paths[1].stat().st_mtime + 10
    os.utime(variants[1].checkpoint, (later, later))  # replaced since its export
    assert _onnx_for(variants[1], None, tmp_path, None) == paths[1] and len(exports) == 3


def test_bench_labels_fp16_only_where_the_backend_runs_it(model_and_file, monkeypatch):
    """--fp16 labelled every row 'fp16', ONNX Runtime's and CPU torch's too, which run FP32
    (their describe() said so): 'onnxruntime cpu fp16', 'torch cpu fp16'."""
    import argparse

    from mmp_ros.inference import bench

    specs = []

    def spawned(given):  # the children: torch on CUDA cannot run here
        specs.extend(given)
        return [{**spec, 'p50_ms': 1.0, 'p95_ms': 1.0, 'throughput_fps': 1e3,
                 'peak_rss_mib': 1.0} for spec in given]

    monkeypatch.setattr(bench, '_spawn', spawned)
    monkeypatch.setattr(bench, '_check_export', lambda *a: None)  # mmp.pt is no file
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(['--checkpoint', 'mmp.pt', '--onnx', str(model_and_file[2]),
                              '--backends', 'onnxruntime,torch', '--sizes', 'model', '--fp16'])
    with pytest.raises(InputError, match='^--fp16: none of --backends onnxruntime,torch on '
                       '--device cpu runs in FP16'):
        bench.run(args)
    assert not specs
    args.device = 'cuda'
    assert bench.run(args) == 0
    assert [(s['backend'], s['fp16']) for s in specs] == [('onnxruntime', False),
                                                          ('torch', True)]
    assert bench._row(specs[0] | {'p50_ms': 1.0, 'p95_ms': 1.0, 'throughput_fps': 1.0,
                                  'peak_rss_mib': 1.0}).startswith('| onnxruntime cuda | ')


@pytest.mark.parametrize('opset', ['7', '99'])
def test_bench_refuses_an_opset_the_exporter_does_not_write_as_export_does(opset, capsys):
    """--opset was any int: 7 or 99 stopped the benchmark at its first export, after the
    torch measurements before it (and onnxscript's logged tracebacks)."""
    from mmp_ros.cli import main

    with pytest.raises(SystemExit) as info:
        main(['bench-backends', '--checkpoint', 'mmp.pt', '--opset', opset])
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f'mmp_ros bench-backends: error: argument --opset: {opset}: torch ')
    assert 'exports at opset 18 to ' in err


@pytest.mark.parametrize(('backends', 'message'), [
    ('onnxruntime,tensorrt', '--backends tensorrt cannot run here: TensorRT is not installed'),
    ('onnxruntime,openvino', "--backends: unknown ['openvino']"),
])
def test_bench_stops_on_a_backend_that_cannot_run_before_measuring_any(tmp_path, monkeypatch,
                                                                        backends, message):
    import argparse

    from mmp_ros.inference import bench, tensorrt_backend

    monkeypatch.setattr(tensorrt_backend, 'tensorrt_available',
                        lambda: (False, 'TensorRT is not installed'))
    monkeypatch.setattr(bench, '_spawn', lambda specs: pytest.fail('measured before stopping'))
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(['--random-size', 'tiny', '--backends', backends, '--sizes', 'model',
                              '--workdir', str(tmp_path)])
    with pytest.raises(InputError, match=message.replace('[', r'\[').replace(']', r'\]')):
        bench.run(args)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(('options', 'message'), [
    (['--random-size', 'tiny', '--checkpoint', 'mmp.pt'],
     '--random-size builds its own models: not with --checkpoint'),
    (['--checkpoint', 'mmp.pt', '--model-input-size', '64', '64'],
     '--model-input-size is the size of the --random-size models'),
    (['--onnx', 'mmp.onnx', '--backends', 'torch', '--sizes', 'model'],
     '--backends torch needs --checkpoint'),
    (['--onnx', 'mmp.onnx'], '--sizes 480x640 needs --checkpoint'),
    (['--onnx', 'mmp.onnx', '--sizes', 'model', '--opset', '20'], '--opset 20 needs --checkpoint'),
])
def test_bench_stops_on_options_it_would_ignore_or_fail_on_before_measuring_any(
        tmp_path, monkeypatch, options, message):
    import argparse

    from mmp_ros.inference import bench

    monkeypatch.setattr(bench, '_spawn', lambda specs: pytest.fail('measured before stopping'))
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(['--backends', 'onnxruntime', *options, '--workdir', str(tmp_path)])
    with pytest.raises(InputError, match=message):
        bench.run(args)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('edit, match', [
    (lambda d: d['palette'].__setitem__(0, [300, -5, 0]), 'palette colour 0'),
    (lambda d: d['palette'].__setitem__(1, [1, 2]), 'palette colour 1'),
    (lambda d: d['normalization']['rgb'].__setitem__('std', [float('nan')] * 3), 'finite'),
])
def test_metadata_with_a_bad_palette_or_normalization_is_a_model_file_error(
        model_and_file, tmp_path, edit, match):
    """Such metadata loaded, then failed at node start in palette_array with a bare
    OverflowError/ValueError (or fed NaN inputs to the model)."""
    import json

    from mmp_ros.metadata import METADATA_KEY

    proto = onnx.load(str(model_and_file[2]))
    (entry,) = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    data = json.loads(entry.value)
    edit(data)
    entry.value = json.dumps(data)
    path = tmp_path / 'bad_meta.onnx'
    onnx.save(proto, str(path))
    with pytest.raises(ModelFileError, match=match):
        create_backend('onnxruntime', path)


@pytest.mark.parametrize('text, match', [
    ('null', 'model metadata is NoneType, not a mapping'),
    ('[1, 2]', 'model metadata is list, not a mapping'),
    (None, 'rgb: normalization has 3 channels, input has 4'),
])
def test_metadata_that_is_no_mapping_or_fails_a_check_names_the_file(model_and_file, tmp_path,
                                                                       text, match):
    """JSON null or a list as the metadata was an AttributeError traceback ('NoneType' object
    has no attribute 'get'); a value refused by ModelMetadata's own checks (channels,
    normalization, method, input size) was a message that did not name the file."""
    import json

    from mmp_ros.metadata import METADATA_KEY

    proto = onnx.load(str(model_and_file[2]))
    (entry,) = [p for p in proto.metadata_props if p.key == METADATA_KEY]
    if text is None:
        data = json.loads(entry.value)
        data['input_channels']['rgb'] = 4
        text = json.dumps(data)
    entry.value = text
    path = tmp_path / 'bad_meta.onnx'
    onnx.save(proto, str(path))
    with pytest.raises(ModelFileError) as info:
        create_backend('onnxruntime', path)
    assert str(info.value).startswith(f'{path}: ')
    assert match in str(info.value)


def test_torch_device_cpu_with_an_index_loads_the_checkpoint():
    """'cpu:0' is a valid torch device; torch.load could not map to it and the error said
    the checkpoint was truncated or from another version."""
    backend = TorchBackend.from_checkpoint(REPO / 'models' / 'tiny_mmp.pt', device='cpu:0')
    assert backend.device == 'cpu'
