"""scripts/generator_report.py: options that would write a report of nothing are refused."""

from __future__ import annotations

import pytest
from conftest import script_fixture

script = script_fixture('generator_report')


@pytest.mark.parametrize(('argv', 'message'), [
    (['--scenes', '0'], 'argument --scenes: must be positive, got 0'),
    (['--size', '0', '160'], 'argument --size: must be positive, got 0'),
    (['--split', 'bogus'], "argument --split: invalid choice: 'bogus'"),
])
def test_no_report_of_nothing_is_written(script, capsys, tmp_path, argv, message):
    out = tmp_path / 'ceiling.json'
    with pytest.raises(SystemExit) as exit_info:
        script.main([*argv, '--json', str(out), '--figure', str(tmp_path / 'f.png')])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
