"""scripts/bench_sensors.py: options it cannot time with are refused in one line."""

from __future__ import annotations

import pytest
from conftest import needs, script_fixture

bench = script_fixture('bench_sensors')


@pytest.mark.parametrize(('argv', 'message'), [
    (['--repeat', '0'], 'argument --repeat: must be positive, got 0'),
    (['--data', '{tmp}'], '--data {tmp}: no tum_rgbd/rgb.png, tum_rgbd/depth_mm.png'),
])
def test_options_it_cannot_time_with_are_refused(bench, capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.main([a.format(tmp=tmp_path) for a in argv])
    assert exit_info.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err



def test_the_decoder_agrees_with_polanalyser_on_the_real_mosaic(bench, real_data):
    """What the script prints beside the times: the package's full-resolution AoLP/DoLP
    against polanalyser's on the real IMX250MZR sample."""
    needs('polanalyser')
    mosaic = bench.read(real_data / 'polanalyser_fruits' / 'fruits_IMX250MZR.png')
    dolp_error, aolp_error = bench.disagreement(bench.crop(mosaic))
    assert dolp_error < 1e-4
    assert aolp_error < 0.01


def test_compressed_depth_times_png_rvl_and_the_scalar_rvl_side_by_side(bench, capsys,
                                                                         real_data):
    """The compressedDepth lines: PNG, RVL and the scalar RVL decoder the tests keep as
    their reference, on the real frame and on scattered holes (each checked exact first)."""
    bench.print_compressed_depth(real_data, 1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[2:]] == [['real', 'TUM', 'depth'],
                                                        ['random,', '20', '%']]
    assert all('png (' in line and 'rvl (' in line and 'rvl before vectorizing' in line
               for line in lines[2:])
