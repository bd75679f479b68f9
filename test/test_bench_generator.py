"""scripts/bench_generator.py: a frame count that times nothing is refused in one line."""

from __future__ import annotations

import pytest
from conftest import script_fixture

bench = script_fixture('bench_generator')


@pytest.mark.parametrize('frames', ['0', '-3'])
def test_no_frames_is_refused_before_any_rendering(bench, capsys, monkeypatch, frames):
    monkeypatch.setattr(bench, 'time_frames', lambda *a: pytest.fail('rendered'))
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['--frames', frames])
    assert exit_info.value.code == 2
    assert f'argument --frames: must be positive, got {frames}' in capsys.readouterr().err


def test_more_frames_than_a_split_has_scenes_is_refused_before_any_rendering(bench, capsys,
                                                                            monkeypatch):
    monkeypatch.setattr(bench, 'time_frames', lambda *a: pytest.fail('rendered'))
    with pytest.raises(SystemExit) as exit_info:  # was a SceneError traceback
        bench.main(['--frames', '9999999'])
    assert exit_info.value.code == 2
    assert ('--frames 9999999: at most 9999998 (each frame is a new scene of a split of '
            '10000000 scenes)') in capsys.readouterr().err


def test_a_json_path_that_is_a_folder_is_refused_before_any_rendering(bench, capsys,
                                                                       monkeypatch, tmp_path):
    monkeypatch.setattr(bench, 'time_frames', lambda *a: pytest.fail('rendered'))
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['--frames', '1', '--json', str(tmp_path)])
    assert exit_info.value.code == 2
    assert f'--json {tmp_path} is a folder; give the file to write' in capsys.readouterr().err
    # a folder not made yet: the report was written as the file 'results', without suffix
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['--frames', '1', '--json', f'{tmp_path / "results"}/'])
    assert exit_info.value.code == 2
    assert (f'--json {tmp_path / "results"}/ ends with a slash, as a folder does; give the file '
            'to write') in capsys.readouterr().err
    assert not (tmp_path / 'results').exists()
