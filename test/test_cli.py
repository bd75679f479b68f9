import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs, needs_importable

from mmp_ros.cli import COMMANDS, build_parser, main


def test_every_command_module_imports_and_has_its_hooks():
    for name, (module_name, _) in COMMANDS.items():
        module = needs_importable(module_name)
        assert callable(module.add_arguments), name
        assert callable(module.run), name


def test_help_lists_every_command():
    text = build_parser().format_help()
    for name in COMMANDS:
        assert name in text


def test_cli_help_runs_without_torch_or_rclpy():
    code = (
        'import sys; from mmp_ros.cli import main\n'
        'try:\n    main(["--help"])\nexcept SystemExit:\n    pass\n'
        'assert "torch" not in sys.modules and "rclpy" not in sys.modules, sorted(sys.modules)'
    )
    subprocess.run([sys.executable, '-c', code], check=True, capture_output=True)


def test_replay_clock_without_a_value_ticks_at_ros2_bag_plays_rate():
    # 'replay bag --clock' stopped with 'expected one argument'; ros2 bag play's --clock
    # alone publishes at 40 Hz.
    pytest.importorskip('rclpy', reason='needs rclpy (ros extra or ROS 2)')
    import argparse

    from mmp_ros.ros import replay

    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    assert parser.parse_args(['bag', '--clock']).clock == 40.0
    assert parser.parse_args(['bag', '--clock', '100']).clock == 100.0
    assert parser.parse_args(['bag']).clock is None


@pytest.mark.parametrize(('argv', 'message'), [
    (['train', '--config', '{tmp}/missing.yaml'], 'config file not found: {tmp}/missing.yaml'),
    (['train', '--set', 'method=best'], "method: unknown 'best'"),
    (['evaluate-model', '{tmp}/missing.pt'], 'checkpoint not found: {tmp}/missing.pt'),
    (['adapt-data', '{tmp}/missing.pt'], 'checkpoint not found: {tmp}/missing.pt'),
    (['export', '--checkpoint', '{tmp}/missing.pt', '--out', '{tmp}/m.onnx'],
     'checkpoint not found: {tmp}/missing.pt'),
    (['check-tensorrt', '--onnx', '{tmp}/missing.onnx'],
     'model file {tmp}/missing.onnx does not exist'),
    (['check-tensorrt', '--onnx', '{tmp}/empty.onnx'], 'model file {tmp}/empty.onnx is empty'),
    (['bench-backends', '--random-size', 'tiny', '--backends', 'onnxruntime,openvino'],
     "--backends: unknown ['openvino']"),
])
def test_a_bad_input_is_reported_by_its_message_alone(tmp_path, capsys, argv, message):
    needs_importable(COMMANDS[argv[0]][0])
    if argv[0] == 'check-tensorrt':  # reads the model with onnx
        needs('onnx')
    (tmp_path / 'empty.onnx').touch()
    argv = [part.format(tmp=tmp_path) for part in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'mmp_ros {argv[0]}: {message.format(tmp=tmp_path)}'), err
    assert err.count('\n') == 1  # one line: no traceback


def test_ros_arguments_to_a_command_that_reads_none_are_refused(capsys):
    # mmp_ros demo --ros-args -p model_file_path:=m.onnx ran the demo on its default model,
    # and decode, evaluate, bench-dds... dropped them too, without a word.
    for argv in (['decode', 'rgb.png', '--ros-args', '-r', '__ns:=/robot1'],
                 ['demo', '--ros-args', '-p', 'model_file_path:=m.onnx'],
                 ['bench-dds', '--ros-args', '-p', 'use_sim_time:=true']):
        assert main(argv) == 2
        captured = capsys.readouterr()
        rest = ' '.join(argv[argv.index('--ros-args'):])
        assert captured.out == ''
        assert captured.err == (f'mmp_ros {argv[0]}: takes no ROS arguments, and {rest} would '
                                'be ignored (run, dropout, record and replay take them)\n')


def test_a_program_error_keeps_its_traceback(monkeypatch):
    needs('torch')
    import training.evaluate

    def broken(args):
        raise ValueError('a bug, not an input')

    monkeypatch.setattr(training.evaluate, 'run', broken)
    with pytest.raises(ValueError, match='a bug'):
        main(['evaluate-model', 'any.pt'])


@pytest.mark.parametrize('argv', [['train', '--help'], ['export', '--help'],
                                  ['evaluate-model', 'any.pt']])
def test_a_command_of_the_train_extra_without_it_says_so_in_one_line(argv):
    # On a native ROS install (rosdep, README's pip line) they died with a
    # ModuleNotFoundError traceback, even for --help.
    code = ('import sys\nfrom mmp_ros.cli import main\n'
            "for name in ('torch', 'einops', 'onnx', 'onnxscript', 'tqdm'):\n"
            '    sys.modules[name] = None\n'
            f'sys.exit(main({argv!r}))\n')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    missing = 'onnx' if argv[0] == 'export' else 'torch'
    assert done.stderr == (f'mmp_ros {argv[0]}: needs {missing}, which is not installed here: '
                           "install setup.py's train extra (pip install '.[train]' in the "
                           'source folder)\n')


@pytest.mark.parametrize(('argv', 'message'), [
    (['bench-dds', '--duration', '0'], 'argument --duration: must be a positive number, got 0'),
    (['bench-dds', '--rate', 'nan'], 'argument --rate: must be a positive number, got nan'),
    (['bench-dds', '--rate', 'fast'], "argument --rate: expected a number, got 'fast'"),
    (['bench-dds', '--width', '0'], 'argument --width: must be positive, got 0'),
    (['bench-dds', '--height', '1.5'], "argument --height: expected a whole number, got '1.5'"),
    (['bench-backends', '--random-size', 'tiny', '--sizes', 'model,480'],
     "argument --sizes: expected 'model' or HxW (e.g. model,480x640), got '480'"),
    (['bench-backends', '--random-size', 'tiny', '--sizes', '0x640'],
     "argument --sizes: expected 'model' or HxW (e.g. model,480x640), got '0x640'"),
    (['bench-backends', '--random-size', 'tiny', '--iterations', '0'],
     'argument --iterations: must be positive, got 0'),
    (['bench-backends', '--random-size', 'tiny', '--threads', '0'],
     'argument --threads: must be positive, got 0'),
    # hung in ONNX Runtime's session creation
    (['bench-backends', '--random-size', 'tiny', '--threads', '1000000'],
     f'argument --threads: must be at most {4 * (os.cpu_count() or 1)} (4 per CPU core here), '
     'got 1000000'),
    (['bench-backends', '--random-size', 'tiny', '--warmup', '-1'],
     'argument --warmup: must be 0 or more, got -1'),
    (['replay', 'bag', '--clock', '0'], 'argument --clock: must be a positive number, got 0'),
    (['replay', 'bag', '--delay', '-1'], 'argument --delay: must be 0 or more, got -1'),
    (['replay', 'bag', '--wait-for-subscribers', 'inf'],
     'argument --wait-for-subscribers: must be 0 or more, got inf'),
    (['decode', 'x.png', '--repeat', '0'], 'argument --repeat: must be positive, got 0'),
    (['build-engine', '--onnx', 'm.onnx', '--workspace-mib', '0'],
     'argument --workspace-mib: must be positive, got 0'),
    (['record', 'out', '--topics', '/a', '--duration', '-1'],
     'argument --duration: must be a positive number, got -1'),
    (['adapt', 'bag', '--model', 'm.onnx', '--checkpoint', 'm.pt', '--max-frames', '-1'],
     'argument --max-frames: must be 0 or more, got -1'),
    (['dropout', '--schedule', 's.yaml', '--seed', '-2'],
     'argument --seed: must be 0 or more, got -2'),
    (['dropout', '--schedule', 's.yaml', '--seed', '3000000000'],
     'argument --seed: must be at most 2147483647, got 3000000000'),
    (['evaluate-model', 'm.pt', '--batch-size', '0'], 'argument --batch-size: must be positive'),
    (['evaluate-model', 'm.pt', '--num-workers', '-1'],
     'argument --num-workers: must be 0 or more, got -1'),
    (['evaluate-model', 'm.pt', '--max-samples', '-5'],
     'argument --max-samples: must be 0 or more, got -5'),
])
def test_numbers_that_cannot_be_right_are_refused_before_anything_runs(capsys, argv, message):
    needs_importable(COMMANDS[argv[0]][0])
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('raised', ['interrupt', 'import_interrupted', 'import_broken'])
def test_ctrl_c_during_a_commands_imports_exits_130(monkeypatch, raised):
    # A C extension interrupted while it initializes (rclpy's, seen under load) fails with
    # an ImportError caused by the KeyboardInterrupt, which rpyutils wraps in another one.
    import mmp_ros.cli as cli

    def interrupted_main(argv):
        if raised == 'interrupt':
            raise KeyboardInterrupt
        cause = KeyboardInterrupt() if raised == 'import_interrupted' else None
        try:
            raise ImportError('initialization failed') from cause
        except ImportError:
            raise ImportError("The C extension '_rclpy_pybind11' isn't present")  # noqa: B904

    monkeypatch.setattr(cli, '_main', interrupted_main)
    if raised == 'import_broken':  # a real import failure keeps its traceback
        with pytest.raises(ImportError):
            main(['evaluate'])
    else:
        assert main(['evaluate']) == 130


@pytest.mark.parametrize('command, status', [('run', 0), ('evaluate', 130)])
def test_ctrl_c_that_an_extension_turns_into_a_bare_import_error_is_a_stop(
        tmp_path, monkeypatch, command, status):
    # numpy's C module imports datetime through PyCapsule_Import, which replaces the
    # KeyboardInterrupt of a Ctrl-C in that import with ImportError('PyCapsule_Import could
    # not import module "datetime"'), nothing chained: `mmp_ros run` stopped there (seen under
    # load in test_ctrl_c_during_start_up_ends_quietly) printed that traceback, exit status 1.
    import mmp_ros.cli as cli

    (tmp_path / 'mmp_test_ctrl_c.py').write_text(
        'import os, signal, time\n'
        'os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this module imports\n'
        'time.sleep(5)\n')
    (tmp_path / 'mmp_test_extension.py').write_text(  # CPython's own PyCapsule_Import
        'import ctypes\n'
        'ctypes.pythonapi.PyCapsule_Import.restype = ctypes.c_void_p\n'
        "ctypes.pythonapi.PyCapsule_Import(b'mmp_test_ctrl_c.capsule', 0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, command, ('mmp_test_extension', 'imports like numpy'))
    assert main([command]) == status


@pytest.mark.parametrize('command, status', [(None, 0), ('run', 0), ('evaluate', 130)])
def test_a_stop_that_python_can_only_print_is_a_stop_all_the_same(tmp_path, monkeypatch,
                                                                  capsys, command, status):
    # A Ctrl-C that lands in a weakref callback (importlib's module locks have one) cannot
    # propagate: Python printed it ('Exception ignored in ... KeyboardInterrupt', a traceback)
    # and the import went on. mmp_dropout_node stopped so ran on to 'parameter schedule_file
    # is empty', exit status 2 (test_ctrl_c_while_a_node_console_script_imports_its_node_exits_0
    # [dropout_node], 1 run in 20 under load).
    import mmp_ros.cli as cli

    name = f'mmp_test_lost_stop_{command or "node"}'
    (tmp_path / f'{name}.py').write_text(
        'import os, signal, weakref\n'
        'class Lock:\n'
        '    pass\n'
        'def released(ref):  # Ctrl-C while a weakref callback runs\n'
        '    os.kill(os.getpid(), signal.SIGINT)\n'
        'lock = Lock()\n'
        'ref = weakref.ref(lock, released)\n'
        'del lock\n'
        'def main():\n'
        '    return 2  # ran on\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    if command is None:  # a node's console script
        assert cli._node_entry(name) == status
    else:
        monkeypatch.setitem(cli.COMMANDS, command, (name, 'stopped as it imports'))
        assert main([command]) == status
    assert 'Traceback' not in capsys.readouterr().err


def test_a_reader_that_goes_away_ends_the_command_without_a_traceback():
    # mmp_ros evaluate RUN | head: the pipe closes before the command has printed everything.
    process = subprocess.Popen(
        [sys.executable, '-m', 'mmp_ros', 'dropout', '--schedule',
         str(Path(__file__).resolve().parents[1] / 'config' / 'dropout_demo.yaml'), '--check'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 1
    assert 'Traceback' not in stderr and 'BrokenPipeError' not in stderr, stderr


def test_sigterm_stops_a_command_as_ctrl_c_does_with_its_clean_up(tmp_path):
    # SIGTERM (docker stop, systemd) killed a command outright: synth-bag left the bag it was
    # writing, without metadata.yaml, where a rerun refuses to write ('exists already').
    import os
    import signal
    import time

    bag = tmp_path / 'bag'
    process = subprocess.Popen(
        [sys.executable, '-m', 'mmp_ros', 'synth-bag', str(bag), '--duration', '600',
         '--size', '24', '32'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    mcap = bag / 'bag.mcap'  # messages written (a chunk on disk), not just the file opened
    while not (mcap.exists() and mcap.stat().st_size > 4096) and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    # 130, or killed by SIGINT, which a shell reports as 130 too. Under `python -m`, CPython's
    # Py_RunMain ends a process that exited 130 that way when the KeyboardInterrupt had ended
    # a nested PyRun_String on its way (its flag for an unhandled one stays set): 3 runs in 20
    # on a loaded machine, each with the SIGTERM landing in the lazy import of ruamel.yaml
    # (strace); 0 in 24 through the console script `mmp_ros` or runpy from -c.
    assert process.returncode in (130, -signal.SIGINT), stderr
    assert 'Traceback' not in stderr, stderr
    assert not bag.exists()


@pytest.mark.parametrize('command, status', [('replay', 0), ('record', 0), ('dropout', 0),
                                             ('run', 0), ('evaluate', 130)])
def test_sigterm_in_a_commands_start_up_exits_0_for_a_ros_process_else_130(tmp_path, command,
                                                                           status):
    # A ROS process (what a launch file starts) stopped in its imports exited with 130, and
    # with 0 when stopped a second later: `ros2 launch` shut down at once logged 'process has
    # died [exit code 130]' for a process that had stopped as asked.
    args = {'replay': ['replay', str(tmp_path / 'absent')],
            'record': ['record', str(tmp_path / 'bag'), '--topics', '/x', '--storage', 'x'],
            'dropout': ['dropout', '--schedule', str(tmp_path / 'absent.yaml')],
            'run': ['run', '--ros-args', '--params-file', str(tmp_path / 'absent.yaml')],
            'evaluate': ['evaluate', str(tmp_path / 'absent')]}[command]
    # Each command, not stopped in its imports, fails on its argument (exit status 1 or 2).
    # The timer starts as the command's module starts to import: started before the call to
    # main, it fired before main had its handlers once this process was descheduled 20 ms
    # (a 30 ms sleep injected there: SIGTERM's default action, 'assert -15 == 0').
    from mmp_ros.cli import COMMANDS

    code = (
        'import os, signal, sys\n'
        'def terminate(signum, frame):\n'
        '    os.kill(os.getpid(), signal.SIGTERM)\n'
        'signal.signal(signal.SIGALRM, terminate)\n'
        'class Arm:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        f'        if name == {COMMANDS[command][0]!r}:\n'
        '            sys.meta_path.remove(self)\n'
        '            signal.setitimer(signal.ITIMER_REAL, 0.02)  # it takes far longer\n'
        'sys.meta_path.insert(0, Arm())\n'
        'from mmp_ros.cli import main\n'
        f'sys.exit(main({args!r}))\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == status, result.stderr
    assert 'Traceback' not in result.stderr, result.stderr


@pytest.mark.parametrize('command, status', [('replay', 0), ('evaluate', 130)])
def test_sigterm_while_the_command_line_is_parsed_exits_0_for_a_ros_process(tmp_path, command,
                                                                            status):
    # Building the parser takes 20 to 50 ms on a loaded machine, and a stop in it was outside
    # what tells a ROS process's stop: 'mmp_ros replay' exited with 130, and the test above
    # failed 'assert 130 == 0' for replay, dropout and run (its 20 ms timer landed there).
    code = (
        'import os, signal, sys\n'
        'import mmp_ros.cli as cli\n'
        'build = cli.build_parser\n'
        'def stopped_in_it():\n'
        '    os.kill(os.getpid(), signal.SIGTERM)\n'
        '    return build()\n'
        'cli.build_parser = stopped_in_it\n'
        f'sys.exit(cli.main([{command!r}, {str(tmp_path / "absent")!r}]))\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == status, result.stderr
    assert 'Traceback' not in result.stderr, result.stderr


@pytest.mark.parametrize('entry', ['segmentation_node', 'segmentation_managed_node',
                                   'dropout_node'])
def test_ctrl_c_while_a_node_console_script_imports_its_node_exits_0(entry):
    # The console scripts imported the node's module (rclpy, numpy) before its main could
    # catch anything: Ctrl-C in that time, or a launch shut down at once, printed a traceback.
    import re

    setup = (Path(__file__).resolve().parents[1] / 'setup.py').read_text()
    assert re.search(rf"mmp_{entry} = {{PACKAGE}}\.cli:{entry}'", setup)
    # The timer starts as the node's module starts to import: started before the call, it
    # fired before the entry had its handlers once this process was descheduled 20 ms, and
    # the Ctrl-C was a traceback (exit status -2) from where no handler could be yet.
    node_module = 'mmp_ros.ros.' + {'segmentation_managed_node': 'segmentation_node'}.get(
        entry, entry)
    code = (
        'import os, signal, sys\n'
        'def ctrl_c(signum, frame):\n'
        '    os.kill(os.getpid(), signal.SIGINT)\n'
        'signal.signal(signal.SIGALRM, ctrl_c)\n'
        'class Arm:\n'
        '    def find_spec(self, name, path=None, target=None):\n'
        f'        if name == {node_module!r}:\n'
        '            sys.meta_path.remove(self)\n'
        '            signal.setitimer(signal.ITIMER_REAL, 0.02)  # it takes far longer\n'
        'sys.meta_path.insert(0, Arm())\n'
        f'from mmp_ros.cli import {entry}\n'
        f'sys.exit({entry}())\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr  # stopped as asked, as later in its run
    assert 'Traceback' not in result.stderr, result.stderr


def test_options_after_the_end_of_the_ros_arguments_are_the_commands_own(tmp_path):
    # As ROS 2 reads a command line, '--' ends a --ros-args block and what follows is the
    # program's own again. Everything after --ros-args went to rclpy, which passes over what
    # is no ROS argument: 'mmp_ros dropout ... --ros-args -r __ns:=/r1 -- --seed 3' ran on the
    # schedule's seed, 'replay ... -- --rate 5' at rate 1, 'record ... -- --duration 1' on.
    from mmp_ros.cli import split_ros_arguments

    assert split_ros_arguments(
        ['replay', 'bag', '--ros-args', '-r', '__ns:=/r1', '--', '--rate', '5',
         '--ros-args', '-p', 'use_sim_time:=true', '--', '--loop']
    ) == (['replay', 'bag', '--rate', '5', '--loop'],
          ['--ros-args', '-r', '__ns:=/r1', '--', '--ros-args', '-p', 'use_sim_time:=true',
           '--'])
    # No closing '--': the rest is ROS's; a '--' before any --ros-args is argparse's.
    assert split_ros_arguments(['record', '--', '-out', '--ros-args', '-p', 'a:=1']) == (
        ['record', '--', '-out'], ['--ros-args', '-p', 'a:=1'])
    schedule = tmp_path / 'schedule.yaml'
    schedule.write_text('seed: 42\nfaults:\n  - {sensor: rgb, kind: kill, start: 1, end: 2}\n')
    for command in (['-m', 'mmp_ros', 'dropout'], ['-m', 'mmp_ros.ros.dropout_node']):
        # --check and --seed ignored, the node started and ran until the timeout
        result = subprocess.run(
            [sys.executable, *command, '--schedule', str(schedule), '--ros-args', '-r',
             '__ns:=/r1', '--', '--check', '--seed', '3'],
            capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == f'{schedule}: 1 faults, seed 3'
