"""Export of the real architecture (tiny size, random weights): parity for all 15 masks.

One export per module (several seconds on a CPU), shared by the tests below.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs

needs('torch')
needs('einops')
needs('onnx')

import torch  # noqa: E402

from mmp_ros.cli import main  # noqa: E402
from mmp_ros.inference import create_backend, read_model_metadata  # noqa: E402
from mmp_ros.inference.tensorrt_ops import check_tensorrt_compatibility  # noqa: E402
from mmp_ros.inference.testing import (  # noqa: E402
    export_tiny_random_model,
    fill_zero_parameters,
    tiny_metadata,
    tiny_random_model,
)
from mmp_ros.inference.torch_backend import TorchBackend  # noqa: E402
from mmp_ros.model import save_checkpoint  # noqa: E402
from training import export as export_cli  # noqa: E402
from training.export import example_inputs, mask_rows  # noqa: E402

pytestmark = pytest.mark.slow

INPUT_SIZE = (32, 48)
SEED = 5


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp('real') / 'tiny.onnx'
    return export_tiny_random_model(path, input_size=INPUT_SIZE, num_classes=6, seed=SEED)


@pytest.fixture(scope='module')
def reference(exported):
    metadata = read_model_metadata(exported)
    return TorchBackend(tiny_random_model(metadata, seed=SEED), metadata)


def test_tiny_random_model_is_seeded():
    metadata = tiny_metadata()
    one, two = tiny_random_model(metadata, seed=1), tiny_random_model(metadata, seed=1)
    other = tiny_random_model(metadata, seed=2)
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert any(not torch.equal(a, c) for a, c in zip(one.state_dict().values(),
                                                     other.state_dict().values(), strict=True))


def test_real_model_parity_for_all_15_masks(exported, reference):
    metadata = reference.metadata
    available = mask_rows(metadata.modalities)
    assert len(available) == 15
    inputs = example_inputs(metadata, available, seed=21)
    ours = create_backend('onnxruntime', exported, threads=1).run(inputs, available)
    ref = reference.run(inputs, available)
    torch.testing.assert_close(torch.from_numpy(ours['logits']), torch.from_numpy(ref['logits']),
                               atol=1e-4, rtol=1e-4)
    per_mask = (ours['labels'] == ref['labels']).reshape(15, -1).mean(axis=1)
    assert per_mask.min() >= 0.999, per_mask
    # Masks change the answer: every subset gives its own logits for the same pixels.
    one = {m: np.repeat(x[:1], 15, axis=0) for m, x in inputs.items()}
    logits = create_backend('onnxruntime', exported, threads=1).run(one, available)['logits']
    assert len({row.tobytes() for row in logits.reshape(15, -1)}) == 15


def test_real_model_passes_the_tensorrt_check(exported):
    report = check_tensorrt_compatibility(exported)
    assert report.ok, report.summary()


def test_checkpoint_export_cli_and_torch_backend(exported, reference, tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', model=reference.model,
                                 metadata=reference.metadata)
    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    out = tmp_path / 'from_checkpoint.onnx'
    assert export_cli.run(parser.parse_args(['--checkpoint', str(checkpoint), '--out', str(out),
                                             '--no-verify'])) == 0
    printed = capsys.readouterr().out
    assert 'wrote' in printed and 'TensorRT compatibility' in printed and 'PASS' in printed
    assert read_model_metadata(out).provenance['checkpoint'] == str(checkpoint)
    torch_backend = create_backend('torch', checkpoint, device='cpu')
    onnx_backend = create_backend('onnxruntime', out, threads=1)
    available = mask_rows(onnx_backend.metadata.modalities)[[0, 6, 14]]
    inputs = example_inputs(onnx_backend.metadata, available, seed=3)
    labels, confidence = onnx_backend.infer(inputs, available)
    ref_labels, ref_confidence = torch_backend.infer(inputs, available)
    assert (labels == ref_labels).mean() >= 0.999
    np.testing.assert_allclose(confidence, ref_confidence, atol=1e-4)


def test_export_cli_reports_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a checkpoint')
    assert main(['export', '--checkpoint', str(bad), '--out', str(tmp_path / 'x.onnx')]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'mmp_ros export: {bad}: not a readable')


@pytest.mark.parametrize('content, expected', [
    (b'', 'checkpoint {bad} is empty (an interrupted copy or save?)'),
    (b'hello\n', '{bad}: not a readable mmp_ros checkpoint (no zip archive, as torch.save '
     'writes: damaged, or not a checkpoint (torch.load: KeyError: 101))'),
    (b'\x80\x02', '{bad}: not a readable mmp_ros checkpoint (no zip archive, as torch.save '
     'writes: damaged, or not a checkpoint (torch.load: EOFError))'),
])
def test_an_empty_or_foreign_checkpoint_is_named_as_such(tmp_path, capsys, content, expected):
    """torch.load's legacy unpickler gave reasons that said nothing: 'not a readable mmp_ros
    checkpoint ()' for an empty file, '(101)' for a text file."""
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(content)
    assert main(['export', '--checkpoint', str(bad), '--out', str(tmp_path / 'x.onnx')]) == 2
    assert capsys.readouterr().err == f'mmp_ros export: {expected.format(bad=bad)}\n'


@pytest.mark.parametrize('option, message', [
    (['--opset', '7'], r'argument --opset: 7: torch \S+ exports at opset 18 to {highest} \('),
    (['--opset', '99'], r'argument --opset: 99: torch \S+ exports at opset 18 to {highest} \('),
    # 26 with onnx 1.23, which knows up to 28: the exporter kept opset 18, status 1 after it
    (['--opset', '{above}'], r'argument --opset: {above}: torch \S+ exports at opset 18 to '
     r'{highest} \('),
    (['--input-size', '0', '160'], 'argument --input-size: must be positive, got 0'),
])
def test_export_cli_refuses_an_opset_or_size_it_cannot_export_before_exporting(
        tmp_path, capsys, option, message):
    """--opset 7, 26 or 99 ran the whole export, then stopped with status 1 (99 after onnxscript's
    logged tracebacks); --input-size 0 160 said 'input_size must be (height, width), got
    (0, 160)', without the option."""
    metadata = tiny_metadata(input_size=INPUT_SIZE, num_classes=3)
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', model=tiny_random_model(metadata),
                                 metadata=metadata)
    highest = export_cli.highest_opset()
    option = [o.format(above=highest + 1) for o in option]
    message = message.format(highest=highest, above=highest + 1)
    with pytest.raises(SystemExit) as info:
        main(['export', '--checkpoint', str(checkpoint), '--out', str(tmp_path / 'x.onnx'),
              *option])
    assert info.value.code == 2
    assert re.search(f'mmp_ros export: error: {message}', capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['tiny.pt']


def test_export_cli_refuses_to_write_over_the_checkpoint_it_exports(tmp_path, capsys):
    metadata = tiny_metadata(input_size=INPUT_SIZE, num_classes=3)
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', model=tiny_random_model(metadata),
                                 metadata=metadata)
    saved = checkpoint.read_bytes()
    # was: exported, and the checkpoint replaced by the ONNX file
    assert main(['export', '--checkpoint', str(checkpoint), '--out', str(checkpoint),
                 '--no-verify']) == 2
    assert capsys.readouterr().err == (f'mmp_ros export: {checkpoint} is the checkpoint being '
                                       'exported: the ONNX file would replace it; give another '
                                       'output path\n')
    assert checkpoint.read_bytes() == saved


def test_python_m_training_export_prints_a_wrong_input_as_one_line(tmp_path, capsys):
    missing = tmp_path / 'missing.pt'
    # was a CheckpointError traceback, exit status 1 (the docs: "the same" as mmp_ros export)
    assert export_cli.main(['--checkpoint', str(missing), '--out',
                            str(tmp_path / 'x.onnx')]) == 2
    assert capsys.readouterr().err == (f'python -m training.export: checkpoint not found: '
                                       f'{missing}\n')


def test_export_cli_shows_its_own_info_lines_not_the_libraries(tmp_path):
    """The export set the root logger to INFO: onnx_ir's and onnxscript's passes printed
    over a hundred lines ('Replaced initializer ...', 'Removed 234 unused nodes') in a
    normal export. Its own INFO lines ('verified ... against PyTorch') still print, and
    torch's four warnings that torchvision, which it does not use, is not installed do not."""
    code = ('import logging, sys\nfrom mmp_ros.cli import main\n'
            f"main(['export', '--checkpoint', {str(tmp_path / 'missing.pt')!r}, '--out', "
            f"{str(tmp_path / 'x.onnx')!r}])\n"  # the command's logging set up, then refused
            "logging.getLogger('onnx_ir.passes.common').info('a library line')\n"
            "logging.getLogger('onnxscript').warning('a library warning')\n"
            "logging.getLogger('torch.onnx._internal.exporter._registration').warning("
            "'torchvision is not installed. Skipping torchvision::nms')\n"
            "logging.getLogger('training.export').info('its own line')\n")
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f'mmp_ros export: checkpoint not found: {tmp_path / "missing.pt"}',
        'a library warning', 'its own line']


@pytest.mark.parametrize('command', ['export', 'evaluate-model'])
def test_an_onnx_file_given_for_a_checkpoint_is_named_as_such(tmp_path, capsys, command):
    shipped = Path(__file__).resolve().parents[1] / 'models' / 'tiny_mmp.onnx'
    args = (['export', '--checkpoint', str(shipped), '--out', str(tmp_path / 'x.onnx')]
            if command == 'export' else
            ['evaluate-model', str(shipped), '--out', str(tmp_path / 'evaluation')])
    assert main(args) == 2
    err = capsys.readouterr().err
    # was "not a readable mmp_ros checkpoint (...); damaged, or not written by mmp_ros"
    assert err == (f'mmp_ros {command}: {shipped} is an exported ONNX model, not a training '
                   'checkpoint: give the checkpoint (.pt) it was exported from\n')


def test_export_cli_refuses_an_out_that_ends_with_a_slash(tmp_path, capsys):
    """--out models/ (a folder not made yet) wrote the ONNX file as 'models', without a
    suffix, where a folder was meant."""
    metadata = tiny_metadata(input_size=INPUT_SIZE, num_classes=3)
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', model=tiny_random_model(metadata),
                                 metadata=metadata)
    out = f'{tmp_path / "models"}/'
    assert main(['export', '--checkpoint', str(checkpoint), '--out', out, '--no-verify']) == 2
    assert capsys.readouterr().err == (f'mmp_ros export: --out {out} ends with a slash, as a '
                                       'folder does; the export writes one ONNX file: give its '
                                       f'path, e.g. {tmp_path / "models" / "model.onnx"}\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['tiny.pt']


@pytest.mark.parametrize('where', ['folder', 'under_a_file', 'no_writing'])
def test_export_cli_refuses_an_out_that_cannot_be_a_file_before_exporting(tmp_path, capsys,
                                                                          where):
    metadata = tiny_metadata(input_size=INPUT_SIZE, num_classes=3)
    checkpoint = save_checkpoint(tmp_path / 'tiny.pt', model=tiny_random_model(metadata),
                                 metadata=metadata)
    if where == 'folder':  # was an IsADirectoryError traceback after the whole export
        out = tmp_path / 'models'
        out.mkdir()
        expected = f'{out} is a folder; the export writes one ONNX file'
    elif where == 'under_a_file':  # was a FileExistsError traceback
        (tmp_path / 'notes').write_text('')
        out = tmp_path / 'notes' / 'model.onnx'
        expected = f'{out}: its folder {out.parent} cannot be created'
    else:  # a folder that takes no file (read-only, another user's; root writes anywhere
        # but here): was a FileNotFoundError/PermissionError traceback from the staging folder
        out = Path('/proc/self/model.onnx')
        expected = f'{out}: its folder {out.parent} cannot be written into'
    assert main(['export', '--checkpoint', str(checkpoint), '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'mmp_ros export: {expected}') and len(err.splitlines()) == 1
    # refused before the export's work: nothing written, no staging folder left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ['tiny.pt', *{'folder': [out.name], 'under_a_file': ['notes']}.get(where, [])])


@pytest.mark.parametrize('method, options', [
    ('mmp_adapt', {'projection_kind': 'conv', 'projection_stride': 16}),
    ('mmp', {'mask_conditioning': True}),
    ('mmp_adapt', {'projection_kind': 'conv', 'projection_stride': 16, 'mask_adapters': 16}),
], ids=['conv_projection', 'mask_conditioning', 'conv_projection_mask_adapters'])
def test_model_variant_exports_with_parity_and_passes_the_tensorrt_check(tmp_path, method,
                                                                          options):
    """Label-free adaptation's projection (``projection_kind: conv``), the fused map
    conditioned on the mask and the mask-gated adapters, in the node's graph."""
    from mmp_ros.model import ModelConfig, build_model
    from training.export import export_onnx

    metadata = tiny_metadata(input_size=INPUT_SIZE, num_classes=6, method=method)
    torch.manual_seed(SEED)
    model = fill_zero_parameters(build_model(ModelConfig(  # gates start at zero: give them work
        modalities=metadata.modalities, num_classes=6, method=method, **options)), std=0.5).eval()
    path = export_onnx(model, metadata, tmp_path / 'variant.onnx', with_logits=True,
                       verify=False)
    assert check_tensorrt_compatibility(path).ok
    available = mask_rows(metadata.modalities)
    inputs = example_inputs(metadata, available, seed=22)
    ours = create_backend('onnxruntime', path, threads=1).run(inputs, available)
    ref = TorchBackend(model, metadata).run(inputs, available)
    torch.testing.assert_close(torch.from_numpy(ours['logits']), torch.from_numpy(ref['logits']),
                               atol=1e-4, rtol=1e-4)
