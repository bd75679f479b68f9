"""scripts/generator_gallery.py: scenes that do not exist are refused in one line."""

from __future__ import annotations

import pytest
from conftest import script_fixture

script = script_fixture('generator_gallery')


@pytest.mark.parametrize(('argv', 'message'), [
    (['--scenes', '-1'], 'argument --scenes: must be 0 or more, got -1'),
    (['--size', '480', '0'], 'argument --size: must be positive, got 0'),
    (['--split', 'bogus'], "argument --split: invalid choice: 'bogus'"),
    # were rendered: beyond the generator's sizes, or to a traceback at the mosaic's decode
    (['--size', '5000', '5000'], '--size must be at least 8x8 and at most 4096 a side, got '
     '5000x5000'),
    (['--size', '2', '2'], '--size must be at least 8x8'),
    (['--size', '9', '11'], '--size 9 11: the 2x2 polarizer mosaic needs an even height and'),
    # was a SceneError traceback
    (['--scenes', '0', '10000000'], '--scenes 10000000: the scenes of a split are numbered '
     'from 0 to 9999999'),
])
def test_scenes_that_do_not_exist_are_refused(script, capsys, tmp_path, argv, message):
    out = tmp_path / 'gallery.png'
    with pytest.raises(SystemExit) as exit_info:
        script.main([*argv, '--out', str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_an_out_that_cannot_be_the_file_is_refused_before_rendering(script, capsys, tmp_path):
    blocked = tmp_path / 'file'
    blocked.write_text('')
    for out, message in ((blocked / 'g.png', f'--out {blocked}: cannot be a folder'),
                         (tmp_path, f'--out {tmp_path} is a folder; give the file to write'),
                         # the gallery was written as the file 'img', without suffix
                         (f'{tmp_path / "img"}/', f'--out {tmp_path / "img"}/ ends with a slash, '
                          'as a folder does; give the file to write, e.g. '
                          f'{tmp_path / "img" / "generator_gallery.png"}')):
        with pytest.raises(SystemExit) as exit_info:
            script.main(['--scenes', '0', '--size', '24', '32', '--out', str(out)])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
