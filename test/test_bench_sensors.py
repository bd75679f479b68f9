"""scripts/bench_sensors.py: options it cannot time with are refused in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, needs, repo_env, script_fixture

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


def test_run_as_documented_it_loads_the_tests_scalar_rvl_decoder():
    """Run as its docstring says (PYTHONPATH=. python scripts/bench_sensors.py), the test
    folder is not on sys.path as under pytest: loading the tests' reference RVL decoder,
    whose module imports conftest, stopped the script with ModuleNotFoundError after the
    decode_frame lines."""
    check = ('import numpy as np, bench_sensors\n'
             'from mmp_ros.sensors.compressed import compress_image\n'
             'from mmp_ros.sensors.image import array_to_image\n'
             'depth = np.arange(12, dtype=np.uint16).reshape(3, 4)\n'
             "_, data = compress_image(array_to_image(depth, '16UC1'), 'compressedDepth rvl')\n"
             'body = np.frombuffer(data, np.uint8)[12:]\n'
             "print((bench_sensors.scalar_rvl_decode()(body, '') == depth).all())\n")
    done = subprocess.run([sys.executable, '-c', check], cwd=REPO / 'scripts', env=repo_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['True']
