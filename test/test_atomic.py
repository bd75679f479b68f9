"""replace_atomically: the target is written whole or left as it was, with nothing beside it."""

from __future__ import annotations

import pytest
from conftest import needs

needs('torch')

import torch  # noqa: E402

from mmp_ros.atomic import replace_atomically  # noqa: E402


@pytest.mark.parametrize('interruption', [KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_the_old_file_and_no_partial(tmp_path, interruption):
    target = tmp_path / 'checkpoint.pt'
    torch.save({'step': 1}, target)

    def write(partial):
        torch.save({'step': 2, 'weights': torch.zeros(1000)}, partial)
        raise interruption('Ctrl-C or a full disk during the save')

    with pytest.raises(interruption):
        replace_atomically(target, write)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['checkpoint.pt']
    assert torch.load(target)['step'] == 1


def test_a_failed_rename_removes_the_partial(tmp_path):
    target = tmp_path / 'results'
    target.mkdir()  # os.replace cannot put a file over a folder
    with pytest.raises(OSError):
        replace_atomically(target, lambda partial: partial.write_text('x'))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['results']


def test_a_write_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / 'sub' / 'out.txt'
    assert replace_atomically(target, lambda partial: partial.write_text('new')) == target
    assert target.read_text() == 'new'
    assert [p.name for p in target.parent.iterdir()] == ['out.txt']
