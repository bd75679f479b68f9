"""scripts/bench_backends.py: what it cannot benchmark is one line, as ``mmp_ros
bench-backends`` prints it."""

from __future__ import annotations

import pytest
from conftest import needs, script_fixture

script = script_fixture('bench_backends')


@pytest.mark.parametrize(('argv', 'message'), [
    ([], 'bench_backends: give --checkpoint/--onnx (and --baseline-checkpoint), or '
     '--random-size'),
    (['--checkpoint', '{tmp}/none.pt', '--backends', 'torch'],
     'bench_backends: checkpoint not found: {tmp}/none.pt'),
    (['--checkpoint', 'models/tiny_mmp.onnx', '--backends', 'torch'],
     'bench_backends: models/tiny_mmp.onnx is an exported ONNX model, not a training '
     'checkpoint'),
])
def test_what_it_cannot_benchmark_is_one_line(script, capsys, monkeypatch, tmp_path, argv,
                                              message):
    from pathlib import Path

    if '--checkpoint' in argv:  # torch reads it
        needs('torch')
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert script.main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)) and err.count('\n') == 1, err
