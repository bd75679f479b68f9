"""scripts/generator_report.py: options that would write a report of nothing are refused."""

from __future__ import annotations

import pytest
from conftest import script_fixture

script = script_fixture('generator_report')


@pytest.mark.parametrize(('argv', 'message'), [
    (['--scenes', '0'], 'argument --scenes: must be positive, got 0'),
    (['--size', '0', '160'], 'argument --size: must be positive, got 0'),
    (['--split', 'bogus'], "argument --split: invalid choice: 'bogus'"),
    # were rendered beyond the generator's sizes
    (['--size', '5000', '5000'], '--size must be at least 8x8 and at most 4096 a side, got '
     '5000x5000'),
    (['--size', '2', '2'], '--size must be at least 8x8'),
    # rendered 10 million scenes, then a SceneError traceback
    (['--scenes', '10000001'], '--scenes 10000001: a split has 10000000 scenes'),
])
def test_no_report_of_nothing_is_written(script, capsys, tmp_path, argv, message):
    out = tmp_path / 'ceiling.json'
    with pytest.raises(SystemExit) as exit_info:
        script.main([*argv, '--json', str(out), '--figure', str(tmp_path / 'f.png')])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize('option', ['--json', '--figure'])
def test_an_output_that_cannot_be_written_is_refused_before_the_scenes(script, capsys, tmp_path,
                                                                       option):
    # Before, the scenes were rendered first, then the JSON written and the figure failed.
    blocked = tmp_path / 'file'
    blocked.write_text('')
    paths = {'--json': tmp_path / 'ceiling.json', '--figure': tmp_path / 'f.png'}
    paths[option] = blocked / 'out'
    with pytest.raises(SystemExit) as exit_info:
        script.main(['--scenes', '1', '--size', '24', '32',
                     *(str(a) for item in paths.items() for a in item)])
    assert exit_info.value.code == 2
    assert f'{option} {blocked}: cannot be a folder' in capsys.readouterr().err
    assert not (tmp_path / 'ceiling.json').exists()
    paths[option] = f'{tmp_path / "docs"}/'  # was written as the file 'docs', without suffix
    with pytest.raises(SystemExit) as exit_info:
        script.main(['--scenes', '1', '--size', '24', '32',
                     *(str(a) for item in paths.items() for a in item)])
    assert exit_info.value.code == 2
    assert f'{option} {tmp_path / "docs"}/ ends with a slash' in capsys.readouterr().err
    assert not (tmp_path / 'docs').exists() and not (tmp_path / 'ceiling.json').exists()


def test_real_samples_that_are_not_there_are_refused_not_left_out(script, capsys, tmp_path):
    # Before, the report was written with 'real_samples': {} and no word about it.
    out = tmp_path / 'ceiling.json'
    with pytest.raises(SystemExit) as exit_info:
        script.main(['--scenes', '1', '--size', '24', '32', '--json', str(out),
                     '--figure', str(tmp_path / 'f.png'), '--real', str(tmp_path)])
    assert exit_info.value.code == 2
    assert f'--real {tmp_path}: no nyu_raw/depth_mm.png, ' in capsys.readouterr().err
    assert not out.exists()
