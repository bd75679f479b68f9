"""scripts/bench_node.py: its options are checked before any process starts, and a run
without stale trials still reports its figures."""

from __future__ import annotations

import pytest
from conftest import needs, script_fixture

bench = script_fixture('bench_node')


def test_a_run_without_stale_trials_reports_no_maximum(bench):
    assert bench.stale_figures([], 0.5) == {'stale_detection_ms': [], 'timeout_s': 0.5}
    assert bench.stale_figures([509.14, 530.06], 0.5) == {
        'stale_detection_ms': [509.1, 530.1], 'stale_detection_ms_max': 530.1, 'timeout_s': 0.5}


@pytest.mark.parametrize(('argv', 'message'), [
    (['--seconds', '0'], 'argument --seconds: must be a positive number, got 0'),
    (['--rate', '-30'], 'argument --rate: must be a positive number, got -30'),
    (['--stale-trials', '-1'], 'argument --stale-trials: must be 0 or more, got -1'),
    (['--model', 'no/such/model.onnx'], '--model no/such/model.onnx: no such file'),
    (['--model', 'm.onnx', '--random-model', 'tiny'], '--model or --random-model, not both'),
    (['--random-model', 'huge'], "--random-model: unknown model size 'huge'; known: "),
    (['--depth-format', 'rvl'], '--depth-format rvl: only with --transport compressed'),
    (['--transport', 'compressed', '--rgb-format', 'tiff'],
     "argument --rgb-format: invalid choice: 'tiff'"),
])
def test_options_that_cannot_be_right_are_refused_before_any_process_starts(
        bench, capsys, monkeypatch, argv, message):
    if argv == ['--random-model', 'huge']:  # the known sizes are the model's
        needs('torch')
    monkeypatch.setattr(bench.subprocess, 'Popen', lambda *a, **k: pytest.fail('started'))
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_child_that_exited_stops_the_benchmark_instead_of_a_timeout(bench):
    import subprocess
    import sys

    running = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
    failed = subprocess.Popen([sys.executable, '-c', 'raise SystemExit(3)'])
    try:
        failed.wait(10)
        bench.check_running({'synthetic source': running})
        with pytest.raises(SystemExit, match=r'^bench_node: the node exited with status 3 '):
            bench.check_running({'synthetic source': running, 'node': failed})
    finally:
        running.kill()
        running.wait()


@pytest.mark.parametrize('script', ['bench_node', 'replay_timing'])
def test_the_documented_command_finds_this_checkouts_package_without_pythonpath(tmp_path,
                                                                               script):
    # docs/performance.md runs 'python scripts/bench_node.py ...' without PYTHONPATH=.
    import os
    import subprocess
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / 'scripts' / f'{script}.py'
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    done = subprocess.run([sys.executable, str(path), '--seconds', '0'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert 'argument --seconds: must be a positive number, got 0' in done.stderr


def test_the_out_folder_is_made_before_the_measurements(bench, capsys, monkeypatch, tmp_path):
    # docs/performance.md writes --out out/bench_node.json; a fresh checkout has no out/.
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'')

    def started(*args, **kwargs):
        raise RuntimeError('started')

    monkeypatch.setattr(bench.subprocess, 'Popen', started)
    with pytest.raises(RuntimeError, match='started'):
        bench.main(['--model', str(model), '--out', str(tmp_path / 'out' / 'bench.json')])
    assert (tmp_path / 'out').is_dir()
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['--model', str(model), '--out', str(model / 'bench.json')])
    assert exit_info.value.code == 2
    assert f'--out {model}: cannot be a folder' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # a folder: the figures would be lost at the end
        bench.main(['--model', str(model), '--out', str(tmp_path / 'out')])
    assert exit_info.value.code == 2
    assert f'--out {tmp_path / "out"} is a folder; give the file to write' in capsys.readouterr(
    ).err
    with pytest.raises(SystemExit) as exit_info:  # was written as the file 'figures'
        bench.main(['--model', str(model), '--out', f'{tmp_path / "figures"}/'])
    assert exit_info.value.code == 2
    assert f'--out {tmp_path / "figures"}/ ends with a slash' in capsys.readouterr().err
    assert not (tmp_path / 'figures').exists()


def test_the_random_model_s_folder_is_removed_however_the_benchmark_ends(bench, monkeypatch,
                                                                        tmp_path):
    import tempfile

    needs('torch')  # the random model's input size is the model's

    def exported(size, input_size, path):  # the real export takes 15 s on a CPU
        path.write_bytes(b'onnx')
        return path

    def started(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C as the processes start

    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    monkeypatch.setattr(bench, 'export_random_model', exported)
    monkeypatch.setattr(bench.subprocess, 'Popen', started)
    with pytest.raises(KeyboardInterrupt):
        bench.main(['--random-model', 'tiny'])
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    with pytest.raises(SystemExit):  # an unknown size, refused after the folder was made
        bench.main(['--random-model', 'huge'])
    # was: a folder holding random_tiny.onnx, and an empty one, left in the temporary folder
    assert list(tmp_path.iterdir()) == []


@pytest.mark.ros
def test_the_compressed_source_sends_what_the_node_subscribes_to_and_decodes(restored_environ):
    # --transport compressed: the node's sensors.<m>.transport topics, each frame decoding to
    # the source's encoding and size as the node decodes it.
    from mmp_ros.demo import sensor_transports
    from mmp_ros.ros.context import init_ros
    from mmp_ros.ros.synthetic_streams import ENCODINGS, SyntheticStreams
    from mmp_ros.sensors import decompress_image

    with init_ros([]):
        source = SyntheticStreams(48, 64, 30.0, 'compressed', 'png', 'rvl')
        try:
            for modality, transport in sensor_transports('compressed').items():
                publisher = source._image_publishers[modality]
                assert publisher.topic_name == f'/{modality}/image/{transport}'
                for msg in source._messages[modality]:
                    fields = decompress_image(msg.format, bytes(msg.data))
                    assert fields.encoding == ENCODINGS[modality]
                    assert (fields.height, fields.width) == (48, 64)
            assert source._messages['rgb'][0].format == 'rgb8; png compressed bgr8'
            assert source._messages['depth'][0].format == '32FC1; compressedDepth rvl'
            with pytest.raises(ValueError, match='mode nan is for the raw transport only'):
                source.set_mode('depth', 'nan')
            source.set_mode('thermal', 'stop')
        finally:
            source.destroy_node()


@pytest.mark.ros
@pytest.mark.parametrize('sim_time', [False, True])
def test_the_source_keeps_its_rate_on_the_steady_clock_on_wall_time(restored_environ, sim_time):
    # Its timer was on the node clock: the system clock on wall time, whose step back (NTP,
    # 5 s) stopped every stream for 5 s, and the node saw each camera STALE. On sim time the
    # simulated clock paces it, as a simulator's cameras.
    from rclpy.clock import ClockType

    from mmp_ros.ros.context import init_ros
    from mmp_ros.ros.synthetic_streams import SyntheticStreams

    args = ['synthetic_streams', '--ros-args', '-p', f'use_sim_time:={str(sim_time).lower()}']
    with init_ros(args):
        source = SyntheticStreams(8, 8, 30.0)
        try:
            assert source._timer.clock.clock_type == (
                ClockType.ROS_TIME if sim_time else ClockType.STEADY_TIME)
        finally:
            source.destroy_node()
