"""scripts/check_parity.py: a file it cannot use is reported in one line, not a traceback."""

from __future__ import annotations

import pytest
from conftest import script_fixture

pytest.importorskip('torch', reason="needs torch (pip install '.[train]')")


script = script_fixture('check_parity')


@pytest.mark.parametrize(('argv', 'message'), [
    (['--checkpoint', '{tmp}/none.pt'], 'check_parity: checkpoint not found: {tmp}/none.pt'),
    (['--checkpoint', '{tmp}/none.pt', '--onnx', '{tmp}/none.onnx'],
     'check_parity: model file {tmp}/none.onnx does not exist'),
])
def test_a_missing_file_is_one_line(script, capsys, tmp_path, argv, message):
    assert script.main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)) and err.count('\n') == 1, err


def test_threads_must_be_positive(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(['--checkpoint', 'model.pt', '--threads', '0'])
    assert exit_info.value.code == 2
    assert 'argument --threads: must be positive, got 0' in capsys.readouterr().err


def test_seed_must_not_be_negative(script, capsys):
    # was a ValueError traceback from numpy ('expected non-negative integer'), after loading
    with pytest.raises(SystemExit) as exit_info:
        script.main(['--checkpoint', 'model.pt', '--seed', '-1'])
    assert exit_info.value.code == 2
    assert 'argument --seed: must be 0 or more, got -1' in capsys.readouterr().err


def test_an_onnx_of_another_model_is_named_not_compared(script, capsys, tmp_path):
    # Before, its logits (5 classes against the checkpoint's 14) failed to broadcast: a
    # traceback; without logits, 15 rows of FAIL that did not say why.
    from pathlib import Path

    import torch
    from contract_net import ContractNet

    from mmp_ros.inference.testing import tiny_metadata
    from training.export import export_onnx

    checkpoint = Path(__file__).resolve().parents[1] / 'models' / 'tiny_mmp.pt'
    metadata = tiny_metadata(input_size=(32, 32), num_classes=5)
    torch.manual_seed(3)
    onnx = export_onnx(ContractNet(metadata).eval(), metadata, tmp_path / 'other.onnx',
                       with_logits=True, verify=False)
    assert script.main(['--checkpoint', str(checkpoint), '--onnx', str(onnx)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"check_parity: {onnx} has classes ['class_0', ") and err.count(
        '\n') == 1, err
    assert 'it is not an export of this checkpoint' in err
