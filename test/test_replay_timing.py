"""scripts/replay_timing.py: options that cannot make a bag are refused in one line."""

from __future__ import annotations

import pytest
from conftest import script_fixture

script = script_fixture('replay_timing')


@pytest.mark.parametrize(('argv', 'message'), [
    (['--seconds', '0'], 'argument --seconds: must be a positive number, got 0'),
    (['--rate-hz', '0'], 'argument --rate-hz: must be a positive number, got 0'),
    (['--play-rate', '0'], 'argument --play-rate: must be a positive number, got 0'),
    (['--seconds', '0.04'], '--seconds 0.04 at --rate-hz 30 is fewer than the 2 frames'),
    (['--seconds', '1e300'], '--seconds 1e+300 at --play-rate 1 replays for longer than the '
     '580 s the player is given'),
    (['--seconds', '400', '--play-rate', '0.5'], 'replays for longer than the 580 s'),
    (['--seconds', '1e6', '--play-rate', '1e4', '--rate-hz', '1e300'],
     '--seconds 1e+06 at --rate-hz 1e+300 writes two bags of inf GB;'),
])
def test_options_that_cannot_make_a_bag_are_refused(script, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(script, 'receive_replay', lambda *a: pytest.fail('replayed'))
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
