"""scripts/ship_model.py: a run name that is not in the results is refused before shipping."""

from __future__ import annotations

import json

import pytest
from conftest import script_fixture

pytest.importorskip('torch', reason="needs torch (pip install '.[train]')")


script = script_fixture('ship_model')


@pytest.mark.parametrize(('argv', 'message'), [
    (['--run', 'mmp_s9'], "--run 'mmp_s9' is not a run of {results}: mmp_s1, none_s1"),
    ([], "--run '' is not a run of {results}: mmp_s1, none_s1"),
    (['--run', 'mmp_s1', '--compare', 'none_s0'], "--compare 'none_s0' is not a run of"),
])
def test_a_run_missing_from_the_results_is_refused(script, capsys, tmp_path, argv, message):
    results = tmp_path / 'results.json'
    results.write_text(json.dumps({'runs': {'mmp_s1': {}, 'none_s1': {}}}))
    out = tmp_path / 'model.pt'
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(tmp_path / 'trained.pt'), '--out', str(out), '--results', str(results),
                     '--compare', 'none_s1', *argv])
    assert exit_info.value.code == 2
    assert message.format(results=results) in capsys.readouterr().err
    assert not out.exists()
