"""The demo's set-up, without starting it: the model it runs and its environment."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import needs_importable

from mmp_ros import demo
from mmp_ros.dds import OWN_DOMAINS


def test_a_missing_model_is_named_with_what_to_do(monkeypatch, tmp_path):
    from mmp_ros.ros import segmentation_node

    def no_model():
        raise segmentation_node.NodeStartError(f'no shipped model in {[str(tmp_path)]}')

    monkeypatch.setattr(segmentation_node, 'default_model_path', no_model)
    with pytest.raises(demo.DemoError, match='--model PATH') as error:
        demo.resolve_model(None)
    assert str(tmp_path) in str(error.value) and 'export_tiny_random_model' in str(error.value)
    with pytest.raises(demo.DemoError, match='no such file'):
        demo.resolve_model(str(tmp_path / 'absent.onnx'))


def test_the_export_command_the_missing_model_message_gives_runs_as_written(monkeypatch):
    import argparse
    import importlib
    import re

    from mmp_ros.cli import COMMANDS
    from mmp_ros.ros import segmentation_node

    needs_importable(COMMANDS['export'][0])

    def no_model():
        raise segmentation_node.NodeStartError('no shipped model')

    monkeypatch.setattr(segmentation_node, 'default_model_path', no_model)
    with pytest.raises(demo.DemoError) as error:
        demo.resolve_model(None)
    command = re.search(r'`mmp_ros export ([^`]*)`', str(error.value))
    assert command, str(error.value)
    parser = argparse.ArgumentParser(prog='mmp_ros export')
    importlib.import_module(COMMANDS['export'][0]).add_arguments(parser)
    parser.parse_args(command.group(1).split())  # SystemExit on a missing or unknown argument


def test_the_evaluate_command_of_a_stopped_demo_scores_it_as_the_demo_does(tmp_path):
    """A stopped demo said 'evaluate it with: mmp_ros evaluate RUN_BAG', which scores it on
    config/mmp_segmentation.yaml alone (30 Hz detection bounds for the 20 and 9 Hz cameras)
    and without setting the scene cuts apart: another report than the demo's."""
    import argparse
    import shlex

    from mmp_ros.evaluation import cli

    paths = demo.DemoPaths(tmp_path / 'my demo')
    words = shlex.split(demo.evaluate_command(paths))
    assert words[:3] == ['mmp_ros', 'evaluate', str(paths.run_bag)]
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(words[2:])
    assert args.params == [str(p) for p in demo.NODE_PARAMS]
    assert args.settle_after_cut == 'auto' and args.out == paths.report


def test_children_stay_on_loopback_on_a_domain_of_their_own(monkeypatch):
    monkeypatch.delenv('ROS_DOMAIN_ID', raising=False)
    monkeypatch.setenv('ROS_AUTOMATIC_DISCOVERY_RANGE', 'SUBNET')
    env = demo.demo_environment()
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert int(env['ROS_DOMAIN_ID']) in OWN_DOMAINS  # one this process holds
    monkeypatch.setenv('ROS_DOMAIN_ID', '42')
    assert demo.demo_environment()['ROS_DOMAIN_ID'] == '42'
    assert str(demo.REPO) in env['PYTHONPATH']


def test_children_run_where_the_demo_was_started(monkeypatch, tmp_path):
    # `mmp_ros demo --out out/demo` from anywhere but the checkout: the recorder wrote its
    # bag into the checkout's out/demo and the player found no synthetic bag.
    logs = tmp_path / 'logs'
    logs.mkdir()
    monkeypatch.chdir(tmp_path)
    child = demo.Child('cwd', [sys.executable, '-c', 'import os; print(os.getcwd())'],
                       dict(os.environ), logs)
    assert child.process.wait(timeout=30) == 0
    child.stop()
    assert (logs / 'cwd.log').read_text().strip() == str(tmp_path)


def test_the_schedules_leave_time_to_start_the_player():
    # And they stay short: the demo must end within 5 minutes on 2 cores (the 106 s schedule
    # took 145-146 s, docs/demo.md); the quick one runs in CI.
    for quick, path in demo.SCHEDULES.items():
        first, last = demo.schedule_span(path)
        assert first >= 5.0 and last <= (25.0 if quick else 120.0), path


def test_a_bad_schedule_stops_the_demo_before_anything_starts(tmp_path, capsys):
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'not read before the schedule is checked')
    early = tmp_path / 'early.yaml'
    early.write_text('faults:\n  - {sensor: rgb, kind: kill, start: 1, end: 2}\n')
    broken = tmp_path / 'broken.yaml'
    broken.write_text('faults:\n  - {sensor: lidar, kind: kill, start: 5, end: 6}\n')
    empty = tmp_path / 'empty.yaml'  # valid for the simulator; the demo has nothing to show
    empty.write_text('faults: []\n')
    for schedule, message in ((early, 'first fault starts at 1 s'), (broken, "'lidar'"),
                              (empty, 'has no faults')):
        args = ['--model', str(model), '--schedule', str(schedule), '--out', str(tmp_path / 'o')]
        assert demo.main(args) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


def test_quick_and_another_schedule_are_refused_together(capsys):
    # --quick was ignored without a word where --schedule was given.
    with pytest.raises(SystemExit) as exit_info:
        demo.main(['--quick', '--schedule', 'mine.yaml'])
    assert exit_info.value.code == 2
    assert 'argument --schedule: not allowed with argument --quick' in capsys.readouterr().err


def test_single_failure_phases_are_compared_with_the_models_own_subset_figures():
    from collections import Counter

    phases = [
        ('clean', 80.0, Counter({'rgb+depth+polarization+thermal': 100})),
        ('rgb kill', 60.0, Counter({'depth+polarization+thermal': 140,
                                    'rgb+depth+polarization+thermal': 5})),
        ('depth nan', None, Counter()),
        ('polarization freeze', 70.0, Counter({'rgb+depth+thermal': 10})),
        ('depth kill + thermal kill', 40.0, Counter({'rgb+polarization': 200})),
    ]
    rows = demo.comparison_rows(phases, {'depth+polarization+thermal': 72.5})
    assert rows == [
        ['rgb kill', 'depth+polarization+thermal', '60.0', '72.5', '-12.5'],
        ['polarization freeze', 'rgb+depth+thermal', '70.0', '—', '—'],
    ]


def test_the_benchmark_figures_are_preferred_to_the_validation_ones():
    both = {'val_subsets': {'rgb': 50.0}, 'test_subsets': {'rgb': 55.0}}
    assert demo.reference_figures(both) == ({'rgb': 55.0}, 'benchmark test-split')
    assert demo.reference_figures({'val_subsets': {'rgb': 50.0}}) == ({'rgb': 50.0},
                                                                       'validation')
    assert demo.reference_figures({'step': 3}) == ({}, '')
    # a model exported at another input size than its figures were measured at says so
    assert demo.reference_figures({'test_subsets': {'rgb': 55.0},
                                   'measured_at_input_size': [128, 160]}) == (
        {'rgb': 55.0}, 'benchmark test-split (128x160 input)')


def test_a_bad_camera_size_stops_the_demo_and_keeps_the_last_one(tmp_path, capsys):
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'not read before the bag is configured')
    out = tmp_path / 'o'
    (out / 'report').mkdir(parents=True)  # an earlier demo's report
    for flags, message in ((['--size', '0', '0'], 'size 0x0'),
                           (['--size', '121', '160'], 'both sides even'),
                           (['--scene-seconds', '-1'], 'must be positive')):
        assert demo.main(['--model', str(model), '--out', str(out), *flags]) == 2
        assert message in capsys.readouterr().err
    assert (out / 'report').is_dir()



def test_a_strip_that_cannot_be_a_file_is_refused_before_the_demo(tmp_path, capsys):
    # A folder failed with 'Is a directory' once the whole demo had run; 'img/' (not made)
    # wrote the strip as a file named img.
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'not read before the bag is configured')
    out = tmp_path / 'o'
    (out / 'report').mkdir(parents=True)  # an earlier demo's report
    folder = tmp_path / 'img'
    for strip, message in ((str(tmp_path), 'is a folder'),
                           (f'{folder}/', 'ends with a slash')):
        assert demo.main(['--model', str(model), '--out', str(out), '--strip', strip]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f'mmp_ros demo: --strip {strip}') and message in err, err
    assert (out / 'report').is_dir() and not folder.exists()

def test_the_bag_takes_the_rgb_format_and_depth_encoding_synth_bag_offers(tmp_path, capsys):
    # synth-bag --rgb-format png / --depth-encoding 32FC1 had no way through the demo: its
    # bag was always RGB JPEG and depth 16UC1.
    import argparse

    from training.data import synth_bag

    assert (demo.RGB_FORMATS, demo.DEPTH_ENCODINGS) == (synth_bag.RGB_FORMATS,
                                                         synth_bag.DEPTH_ENCODINGS)
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(['--transport', 'compressed', '--rgb-format', 'png',
                              '--depth-encoding', '32FC1'])
    config = demo.synth_bag_config(args, 2.0)
    assert (config.compression('rgb'), config.depth_encoding) == ('png', '32FC1')
    default = demo.synth_bag_config(parser.parse_args([]), 2.0)
    assert (default.rgb_format, default.depth_encoding) == (None, '16UC1')
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'not read before the bag is configured')
    out = tmp_path / 'o'
    (out / 'report').mkdir(parents=True)  # an earlier demo's report
    assert demo.main(['--model', str(model), '--out', str(out), '--rgb-format', 'png']) == 2
    assert capsys.readouterr().err == ('mmp_ros demo: --rgb-format png: only with --transport '
                                       'compressed (raw images are not compressed)\n')
    assert (out / 'report').is_dir()


def test_the_bag_takes_the_depth_format_synth_bag_offers(tmp_path, capsys):
    # The demo's compressed bag carried depth as compressedDepth PNG alone: no --depth-format.
    import argparse

    from training.data import synth_bag

    assert demo.DEPTH_FORMATS == synth_bag.DEPTH_FORMATS
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(['--transport', 'compressed', '--depth-format', 'rvl'])
    assert demo.synth_bag_config(args, 2.0).compression('depth') == 'compressedDepth rvl'
    default = parser.parse_args(['--transport', 'compressed'])
    assert demo.synth_bag_config(default, 2.0).compression('depth') == 'compressedDepth png'
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'not read before the bag is configured')
    out = tmp_path / 'o'
    assert demo.main(['--model', str(model), '--out', str(out), '--depth-format', 'rvl']) == 2
    assert capsys.readouterr().err == ('mmp_ros demo: --depth-format rvl: only with '
                                       '--transport compressed (raw images are not '
                                       'compressed)\n')


def test_an_output_folder_that_is_a_file_is_named(tmp_path, capsys):
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'not read before the output folder is made')
    out = tmp_path / 'out'
    out.write_text('a file, not a folder')
    assert demo.main(['--model', str(model), '--out', str(out), '--quick']) == 2
    assert f'--out {out}' in capsys.readouterr().err
    assert out.read_text() == 'a file, not a folder'


def _stuck_child(tmp_path, name: str) -> demo.Child:
    """A child that ignores SIGINT and SIGTERM (one stuck in its shutdown), once it does."""
    logs = tmp_path / 'logs'
    logs.mkdir(exist_ok=True)
    child = demo.Child(name, [sys.executable, '-c', (
        'import signal, time\n'
        'signal.signal(signal.SIGINT, signal.SIG_IGN)\n'
        'signal.signal(signal.SIGTERM, signal.SIG_IGN)\n'
        "print('ready', flush=True)\n"
        'time.sleep(60)\n')], dict(os.environ), logs)
    deadline = time.monotonic() + 20
    while 'ready' not in child.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    return child


def _signals_later(*steps: tuple[float, int]) -> list[threading.Timer]:
    timers = [threading.Timer(delay, os.kill, (os.getpid(), sig)) for delay, sig in steps]
    for timer in timers:
        timer.start()
    return timers


@pytest.mark.parametrize('interrupted', [True, False])
def test_another_ctrl_c_while_the_children_stop_kills_them_at_once(tmp_path, interrupted):
    # The demo ignored Ctrl-C and SIGTERM while it stopped its children: one stuck in its
    # shutdown held it for 15 s per step (SIGINT, SIGTERM) and child; only SIGKILL helped.
    player, recorder = _stuck_child(tmp_path, 'replay'), _stuck_child(tmp_path, 'record')
    # Interrupted already: the next Ctrl-C kills. Not yet (the demo stopping at its end): the
    # first is the stop under way, the second kills.
    steps = [(0.3, signal.SIGTERM)] if interrupted else [(0.3, signal.SIGINT),
                                                         (0.6, signal.SIGINT)]
    started = time.monotonic()
    timers = _signals_later(*steps)
    try:
        with pytest.raises(demo.KillError) as error:
            demo.stop_children([player, recorder], interrupted, tmp_path / 'run_bag')
    finally:
        for timer in timers:
            timer.cancel()
    assert time.monotonic() - started < 5
    assert player.process.returncode == recorder.process.returncode == -signal.SIGKILL
    message = str(error.value)
    assert message.startswith(f'{steps[-1][1].name} again') and 'replay, record' in message
    assert f'mmp_ros recover-bag {tmp_path / "run_bag"} OUT' in message
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_kill_ends_the_demo_with_status_130_and_says_what_was_killed(tmp_path, monkeypatch,
                                                                      capsys):
    def stopping_a_stuck_recorder(args):  # what run_demo does once interrupted
        demo.stop_children([_stuck_child(tmp_path, 'record')], True, tmp_path / 'run_bag')

    monkeypatch.setattr(demo, 'run_demo', stopping_a_stuck_recorder)
    timers = _signals_later((0.3, signal.SIGINT))
    try:
        assert demo.main([]) == 130
    finally:
        timers[0].cancel()
    assert 'SIGINT again while the processes stopped: killed record; the recording was not ' \
        'closed' in capsys.readouterr().err


def test_the_first_stop_signal_holds_off_a_second_until_the_children_are_stopped():
    # A second Ctrl-C between the first's InterruptError and stop_children arming its own
    # handler left run_demo's finally before the children (in sessions of their own) stopped.
    previous = {s: signal.signal(s, demo._interrupt) for s in demo.STOP_SIGNALS}
    try:
        with pytest.raises(demo.InterruptError, match='SIGINT'):
            demo._interrupt(signal.SIGINT, None)
        assert all(signal.getsignal(s) is signal.SIG_IGN for s in demo.STOP_SIGNALS)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _ros_params(argv: list[str]) -> dict[str, str]:
    """``-p NAME:=VALUE`` of a command's ROS arguments."""
    return dict(value.split(':=', 1) for flag, value in zip(argv, argv[1:], strict=False)
                if flag == '-p')


def test_the_demo_carries_every_transport_synth_bag_records():
    from training.data import synth_bag

    assert demo.TRANSPORTS == synth_bag.TRANSPORTS
    for transport in demo.TRANSPORTS:
        topics = demo.camera_topics('/{m}/image', transport)
        assert topics == {m: synth_bag.camera_topic(m, transport) for m in topics}
    assert demo.input_topics() == tuple(f'/{m}/image' for m in topics)


@pytest.mark.parametrize('transport', demo.TRANSPORTS)
def test_each_child_takes_the_cameras_through_the_transport_of_the_bag(tmp_path, transport):
    # The player publishes the bag's camera topics on /source/...; the simulator reads them
    # there and writes each sensor where the node reads it; the recorder takes what the node
    # read. One link off and a stream silently reaches nobody (the demo waits, then times out).
    import argparse

    from mmp_ros.bags.playback import parse_remaps, plan_playback
    from mmp_ros.bags.source import open_bag
    from mmp_ros.core.camera_info import camera_info_topic
    from mmp_ros.core.parameters import transports
    from mmp_ros.ros import dropout_node, record, replay
    from training.data.synth_bag import SynthBagConfig, write_synth_bag

    paths = demo.DemoPaths(tmp_path / 'out')
    commands = demo.child_commands(paths, Path('sched.yaml'), Path('m.onnx'), transport)
    assert all(argv[:3] == [sys.executable, '-m', 'mmp_ros'] for argv in commands.values())
    expected = demo.sensor_transports(transport)
    assert set(expected.values()) == ({'raw'} if transport == 'raw'
                                      else {'compressed', 'compressedDepth'})

    def parse(add_arguments, argv):
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return parser.parse_args(argv)

    # the player, on the bag synth-bag writes for this transport
    args = parse(replay.add_arguments, commands['replay'][4:])
    assert args.bag == str(paths.synth_bag) and args.restamp
    write_synth_bag(paths.synth_bag, SynthBagConfig(duration_s=0.2, scene_seconds=1.0,
                                                    size=(16, 24), transport=transport))
    with open_bag(paths.synth_bag) as bag:
        plan = plan_playback(str(bag.path), bag.topics, importable=replay.import_problem,
                             remaps=parse_remaps(args.remap))
    played = {t.topic for t in plan.played}
    assert not plan.skipped
    sources = demo.camera_topics('/source/{m}/image', transport)
    # each camera's camera_info on its own name, where the node subscribes to it (beside its
    # base image topic, whatever the transport): straight to the node, for segmentation/
    # camera_info
    infos = {camera_info_topic(f'/{m}/image') for m in expected}
    assert played == {*sources.values(), *infos, demo.GROUND_TRUTH_TOPIC}

    # the simulator reads source/<m>/image[/<t>] and writes <m>/image[/<t>]
    args = parse(dropout_node.add_arguments, commands['dropout'][4:])
    assert str(args.schedule) == 'sched.yaml'
    assert dict(args.transport or ()) == ({} if transport == 'raw' else expected)

    # the node reads each sensor through a transport it takes for that sensor
    node = commands['node']
    assert node[3:5] == ['run', '--ros-args']
    params = _ros_params(node)
    assert params['model_file_path'] == 'm.onnx'
    for m, t in expected.items():
        assert params.get(f'sensors.{m}.transport', 'raw') == t
        assert t in transports(m)
    assert [node[i + 1] for i, a in enumerate(node) if a == '--params-file'] == [
        str(p) for p in demo.NODE_PARAMS]

    # the recorder takes the node's inputs where it read them, and the ground truth
    args = parse(record.add_arguments, commands['record'][4:])
    assert args.out == str(paths.run_bag)
    assert set(args.topics) == set(demo.recorded_topics(transport))
    assert set(demo.input_topics(transport)) == {
        f'/{m}/image' + ('' if t == 'raw' else f'/{t}') for m, t in expected.items()}
    assert set(demo.input_topics(transport)) <= set(args.topics)
    assert demo.GROUND_TRUTH_TOPIC in args.topics
    # and segmentation/camera_info: recorded, so the node publishes it (only to a subscriber)
    assert '/segmentation/camera_info' in args.topics
