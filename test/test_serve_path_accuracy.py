"""scripts/serve_path_accuracy.py: --param reads a value as ROS reads ``-p NAME:=VALUE``."""

from __future__ import annotations

import argparse

import pytest
from conftest import script_fixture

script = script_fixture('serve_path_accuracy')


@pytest.mark.parametrize(('item', 'expected'), [
    ('sensors.depth.max_m=5', ('sensors.depth.max_m', 5.0)),
    ('sensors.depth.min_m=0.5', ('sensors.depth.min_m', 0.5)),
    ('sensors.polarization.layout=[0, 45, 90, 135]',
     ('sensors.polarization.layout', [0, 45, 90, 135])),
    ('sensors.polarization.resolution=full', ('sensors.polarization.resolution', 'full')),
])
def test_a_parameter_value_is_read_as_yaml(script, item, expected):
    name, value = script.node_parameter(item)
    assert (name, value) == expected
    assert type(value) is type(expected[1])
    script.decoder_settings({**script.defaults(), name: value}, name.split('.')[1])


@pytest.mark.parametrize(('item', 'message'), [
    ('sensors.depth.max_m=far', "sensors.depth.max_m must be a number, got a string 'far'"),
    ('sensors.polarization.resolution=double', "is not one of ['half', 'quarter', 'full']"),
    ('sensors.depth.range=5', 'expected NAME=VALUE with a node parameter NAME'),
])
def test_a_parameter_value_that_cannot_be_right_is_refused(script, item, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message.replace('[', r'\[')):
        script.node_parameter(item)


@pytest.mark.parametrize(('argv', 'message'), [
    (['--model', 'models/tiny_mmp.pt'], 'serve_path_accuracy: model file models/tiny_mmp.pt is '
     'a PyTorch checkpoint, not an ONNX model'),
    (['--camera-size', '127', '161'], "serve_path_accuracy: --camera-size 127 161: the "
     "polarization camera's 2x2 mosaic needs an even height and width"),
    # were rendered (a 5000x5000 scene, or 2x2) beyond what the generator renders
    (['--camera-size', '5000', '5000'], 'serve_path_accuracy: --camera-size must be at least '
     '8x8 and at most 4096 a side, got 5000x5000'),
    (['--camera-size', '2', '2'], 'serve_path_accuracy: --camera-size must be at least 8x8'),
])
def test_a_model_or_camera_it_cannot_score_is_one_line(script, capsys, monkeypatch, argv,
                                                       message):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert script.main(['--scenes', '1', *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count('\n') == 1, err
