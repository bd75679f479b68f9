"""init_ros / spin_until (the start-up and waiting every process shares) and bench figures."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from mmp_ros.dds import PROFILE_ENV, PROFILE_PATH


@pytest.mark.ros
def test_init_ros_applies_profile_and_ends_quietly_on_ctrl_c(restored_environ):
    import rclpy

    from mmp_ros.ros.context import init_ros

    os.environ.pop(PROFILE_ENV, None)
    with init_ros([]) as setup:
        assert os.environ[PROFILE_ENV] == str(PROFILE_PATH) == setup.profile_file
        assert rclpy.ok()
        raise KeyboardInterrupt
    assert not rclpy.ok()


@pytest.mark.ros
def test_init_ros_lets_real_errors_through_and_still_shuts_down(restored_environ):
    import rclpy

    from mmp_ros.ros.context import init_ros

    with pytest.raises(ZeroDivisionError), init_ros([]):
        1 / 0  # noqa: B018
    assert not rclpy.ok()


@pytest.mark.ros
@pytest.mark.parametrize('args, reason', [
    (['--ros-args', '--params-file', 'absent.yaml'],
     "Couldn't parse params file: '--params-file absent.yaml'. Error: Error opening YAML file"),
    (['--ros-args', '-p'], "Couldn't parse trailing -p flag"),
    (['--ros-args', '-r'], "Couldn't parse trailing -r flag"),
    # A second parameter without its -p ended in an UnknownROSArgsError traceback.
    (['--ros-args', '-p', 'anchor:=rgb', 'max_rate_hz:=2'],
     "unknown ROS arguments ['max_rate_hz:=2'] after --ros-args (a parameter takes -p"),
])
def test_init_ros_names_ros_arguments_it_cannot_use(restored_environ, args, reason):
    import rclpy

    from mmp_ros.errors import InputError
    from mmp_ros.ros.context import init_ros

    with pytest.raises(InputError) as error, init_ros(args):
        pass
    message = str(error.value)
    assert message.startswith(f'cannot initialize ROS 2: {reason}') and ', at /' not in message
    assert not rclpy.ok()


@pytest.mark.ros
@pytest.mark.parametrize('rule, reason', [
    # rcl took it, and the node's creation ended in an RCLError traceback
    ('__ns:=/robot1/', "namespace must not end with a '/'"),
    # rcl refused it in its lexer's words: 'Expected lexeme type (1) not found'
    ('__ns:=/1robot', 'namespace must not have a token that starts with a number'),
    ('mmp_test_namespaced:__ns:=robot1', "namespace must be absolute, it must lead with a '/'"),
])
def test_init_ros_names_a_namespace_the_node_cannot_take(restored_environ, rule, reason):
    import rclpy
    from rclpy.node import Node

    from mmp_ros.errors import InputError
    from mmp_ros.ros.context import init_ros

    with pytest.raises(InputError) as error, init_ros(['--ros-args', '-r', rule]):
        Node('mmp_test_namespaced').destroy_node()
    message = str(error.value).removesuffix(", unless only a '/'")
    assert message == f'cannot initialize ROS 2: -r {rule}: Invalid namespace: {reason}'
    assert not rclpy.ok()


@pytest.mark.ros
@pytest.mark.parametrize('flag, rule, reason', [
    # rcl refused them in its lexer's words: 'Expected lexeme type (1) not found, search
    # ended at index 11', 'Expected lexeme type 1, got 22 at index 9'
    ('-r', '__node:=mmp-front', "must not contain characters other than alphanumerics or '_'"),
    ('-r', 'mmp_test_named:__node:=1front', 'must not start with a number'),
    ('-r', '__name:=front.left', "must not contain characters other than alphanumerics or '_'"),
    ('--remap', '__node:=', 'must not be empty'),
])
def test_init_ros_names_a_node_name_the_node_cannot_take(restored_environ, flag, rule, reason):
    import rclpy
    from rclpy.node import Node

    from mmp_ros.errors import InputError
    from mmp_ros.ros.context import init_ros

    with pytest.raises(InputError) as error, init_ros(['--ros-args', flag, rule]):
        Node('mmp_test_named').destroy_node()
    assert str(error.value) == (
        f'cannot initialize ROS 2: {flag} {rule}: Invalid node name: node name {reason}')
    assert not rclpy.ok()


@pytest.mark.ros
@pytest.mark.parametrize('rule, reason', [
    # rcl's reasons: 'error not set', 'Expected lexeme type (19) not found, search ended at
    # index 3'
    ('rgb/image:=/camera/image/', "topic name '/camera/image/' is invalid: topic name must not "
                                  'end with a forward slash'),
    ('rgb/image:=', "topic name '' is invalid: topic name must not be empty string"),
    ('mmp_test_remapped:rgb/image:=/cam/1st', "topic name '/cam/1st' is invalid: topic name "
                                              'token must not start with a number'),
    ('rgb-image:=/camera/image', "topic name 'rgb-image' is invalid: topic name must not "
                                 "contain characters other than alphanumerics, '_', '~', '{', "
                                 "or '}'"),
    ('rgb/image', 'a remapping rule is FROM:=TO'),
])
def test_init_ros_names_a_topic_name_a_remapping_rule_cannot_take(restored_environ, rule,
                                                                   reason):
    import rclpy
    from rclpy.node import Node

    from mmp_ros.errors import InputError
    from mmp_ros.ros.context import init_ros

    with pytest.raises(InputError) as error, init_ros(['--ros-args', '-r', rule]):
        Node('mmp_test_remapped').destroy_node()
    assert str(error.value) == f'cannot initialize ROS 2: -r {rule}: {reason}'
    assert not rclpy.ok()


@pytest.mark.ros
@pytest.mark.parametrize('given, reason', [
    ('use_sim_time:=1', 'use_sim_time must be true or false, got an integer 1'),
    ("use_sim_time:='true'", "use_sim_time must be true or false, got a string 'true'"),
    ('start_type_description_service:=[1, 2]', 'start_type_description_service must be true '
                                               'or false, got a list of integers [1, 2]'),
])
def test_init_ros_names_a_value_rclpy_refuses_for_its_own_parameters(restored_environ, given,
                                                                      reason):
    # Every process (run, dropout, replay, record) ended in rclpy's traceback,
    # InvalidParameterTypeException: "Trying to set parameter 'use_sim_time' to '1' of type
    # 'INTEGER', expecting type 'BOOL': use_sim_time".
    import rclpy
    from rclpy.node import Node

    from mmp_ros.ros.context import RosInitError, init_ros

    with pytest.raises(RosInitError) as error, init_ros(['--ros-args', '-p', given]):
        Node('mmp_test_parameters').destroy_node()
    assert str(error.value) == f'invalid parameters: {reason}'
    assert not rclpy.ok()


@pytest.mark.ros
@pytest.mark.parametrize('domain', ['233', '300', '-1'])
def test_init_ros_names_a_domain_fast_dds_cannot_use(restored_environ, domain):
    import rclpy

    from mmp_ros.errors import InputError
    from mmp_ros.ros.context import init_ros

    # Past 232 the process exited, status 1, when it created its first node.
    os.environ['ROS_DOMAIN_ID'] = domain
    with pytest.raises(InputError, match=f'ROS_DOMAIN_ID={domain} is outside 0..232'), \
            init_ros([]):
        pass
    assert not rclpy.ok()


@pytest.mark.parametrize('domain, ok', [('0', True), ('232', True), ('233', False), ('', True)])
def test_domain_ids_fast_dds_can_use(domain, ok):
    from mmp_ros.dds import domain_id_problem

    assert (domain_id_problem({'ROS_DOMAIN_ID': domain}) is None) == ok


def test_bench_dds_names_a_domain_fast_dds_cannot_use(monkeypatch):
    from mmp_ros.errors import InputError
    from mmp_ros.ros.bench_dds import measure

    # Its children failed with a traceback each, and then so did bench-dds.
    monkeypatch.setenv('ROS_DOMAIN_ID', '300')
    with pytest.raises(InputError, match='ROS_DOMAIN_ID=300 is outside 0..232'):
        measure(profile=True, duration_s=1.0, rate_hz=30.0)


@pytest.mark.ros
def test_init_ros_ends_quietly_when_a_signal_shut_the_context_down_during_start_up(
        restored_environ):
    import rclpy
    from rclpy.node import Node

    from mmp_ros.ros.context import init_ros

    with init_ros([]):
        rclpy.get_default_context().shutdown()  # what rclpy's SIGINT handler does
        Node('starting_up')  # raises: the context is invalid
    assert not rclpy.ok()


def run_python(code: str) -> subprocess.CompletedProcess:
    """``code`` run by this interpreter in a process of its own, which must exit 0."""
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.ros
def test_a_ros_process_leaves_opencv_s_lines_for_frames_it_cannot_decode_out_of_its_log():
    # was: two libtiff lines on stderr for every corrupt TIFF frame, at the camera's rate,
    # beside the one-line reason the node puts in /diagnostics
    code = (
        'import numpy as np\n'
        'from mmp_ros.ros.context import init_ros\n'
        'from mmp_ros.sensors import SensorInputError\n'
        'from mmp_ros.sensors.compressed import compress_image, decompress_image\n'
        'from mmp_ros.sensors.image import array_to_image\n'
        'format, data = compress_image(array_to_image(np.zeros((48, 64, 3), np.uint8), '
        '"bgr8"), "tiff")\n'
        'with init_ros([]):\n'
        '    try:\n'
        '        decompress_image(format, data[:len(data) // 2])\n'
        '    except SensorInputError as error:\n'
        '        print(error)\n'
    )
    result = run_python(code)
    assert 'no decodable JPEG, PNG or TIFF image' in result.stdout
    assert 'TIFF' not in result.stderr, result.stderr


@pytest.mark.ros
def test_sigterm_stops_a_long_start_up_step_as_ctrl_c_does():
    # rclpy's SIGTERM handler only shut the context down: a step that never looks at it (a
    # model loading, a TensorRT engine building) ran on to its end, logging on a dead context.
    code = (
        'import os, signal, time\n'
        'from mmp_ros.ros.context import init_ros\n'
        'with init_ros([]):\n'
        '    sent = time.monotonic()\n'
        '    os.kill(os.getpid(), signal.SIGTERM)\n'
        '    time.sleep(5)\n'
        '    print("ran on")\n'
        'print("stopped", signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n'
        'print(time.monotonic() - sent < 2.0)\n'
    )
    result = run_python(code)
    assert result.stdout.split() == ['stopped', 'True', 'True'], result.stdout


@pytest.mark.parametrize('stop', ['SIGINT', 'SIGTERM'])
@pytest.mark.ros
def test_a_stop_that_cuts_an_object_s_init_short_leaves_its_del_quiet(stop):
    # Ctrl-C while rclpy's executor made a Task (test_ctrl_c_shuts_the_node_down_cleanly, once
    # in a suite run under load): the Task's __del__ read _exception, which its __init__ had
    # not set yet, and Python printed 'Exception ignored in: <function Future.__del__>' with
    # an AttributeError traceback on the way out of a clean stop.
    code = (
        'import os, signal, sys, time\n'
        'from mmp_ros.ros.context import init_ros\n'
        'class Half:\n'
        '    def __init__(self):\n'
        f'        os.kill(os.getpid(), signal.{stop})\n'
        '        time.sleep(5)\n'
        '        self.exception = None\n'
        '    def __del__(self):\n'
        '        self.exception\n'
        'with init_ros([]):\n'
        '    Half()\n'
        'print("stopped", signal.getsignal(signal.SIGINT) is signal.default_int_handler,\n'
        '      sys.unraisablehook is sys.__unraisablehook__)\n'
        'class Broken:\n'  # without a stop, a failing __del__ is printed as ever
        '    def __del__(self):\n'
        '        self.exception\n'
        'Broken()\n'
    )
    result = run_python(code)
    assert result.stdout.split() == ['stopped', 'True', 'True'], result.stdout
    assert result.stderr.count('Traceback') == 1 and 'Broken.__del__' in result.stderr, (
        result.stderr)


@pytest.mark.ros
def test_spin_until_returns_on_condition_or_deadline(restored_environ):
    import time

    import rclpy
    from std_msgs.msg import String

    from mmp_ros.ros.context import init_ros, spin_until

    with init_ros([]):
        node = rclpy.create_node('mmp_ros_spin_until')
        try:
            got = []
            node.create_subscription(String, 'spin_until_probe', got.append, 10)
            pub = node.create_publisher(String, 'spin_until_probe', 10)
            assert spin_until(node, lambda: pub.get_subscription_count() > 0, 10.0)
            pub.publish(String(data='x'))
            assert spin_until(node, lambda: bool(got), 10.0)
            start = time.monotonic()
            assert not spin_until(node, lambda: False, 0.2)
            assert 0.2 <= time.monotonic() - start < 1.0
        finally:
            node.destroy_node()


def test_summary_counts_and_percentiles():
    from mmp_ros.ros.bench_dds import format_results, summarize

    result = summarize(True, 10, [float(v) for v in range(1, 10)])
    assert (result.sent, result.received) == (10, 9)
    assert result.delivery == pytest.approx(0.9)
    assert result.latency_p50_ms == pytest.approx(5.0)
    empty = summarize(False, 10, [])
    assert empty.delivery == 0.0 and math.isnan(empty.latency_p95_ms)
    table = format_results([result, empty], 640, 480, 30.0)
    assert '90.0 %' in table and '0.0 %' in table and 'no profile' in table
    assert 'mmp_ros profile' in table


def test_a_run_on_the_users_profile_is_not_labelled_as_the_packages(monkeypatch, capsys):
    from mmp_ros.ros import bench_dds

    # The children are not started: only the environment measure gives them matters here.
    monkeypatch.setenv(PROFILE_ENV, '/nonexistent/mine.xml')
    monkeypatch.setattr(bench_dds.subprocess, 'Popen', _FakeChild)
    result = bench_dds.measure(profile=True, duration_s=1.0, rate_hz=30.0)
    assert result.user_profile
    assert 'user profile' in bench_dds.format_results([result], 640, 480, 30.0)
    assert 'profile /nonexistent/mine.xml (user) -- FILE NOT FOUND' in capsys.readouterr().err


class _FakeChild:
    """A bench child that reports at once: 30 sent, or 30 latencies of 1 ms."""

    def __init__(self, command, **kwargs):
        self.returncode = 0
        role = command[command.index('--role') + 1]
        report = {'sent': 30} if role == 'publish' else {'latencies_ms': [1.0] * 30}
        self._out = json.dumps(report)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def communicate(self, timeout=None):
        return self._out, None

    def poll(self):
        return 0


def test_bench_dds_refuses_a_run_that_sends_no_frame():
    import argparse

    from mmp_ros.errors import InputError
    from mmp_ros.ros.bench_dds import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(InputError, match='sends no frame'):
        run(parser.parse_args(['--duration', '0.01']))


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def test_a_child_stuck_after_its_result_is_killed_and_the_result_kept(capsys):
    from mmp_ros.ros.bench_dds import child_result

    # What a bench child does when Fast DDS deadlocks in participant deletion (docs/dds.md).
    child = _child('import json, time; print(json.dumps({"sent": 3}), flush=True); time.sleep(60)')
    start = time.monotonic()
    assert child_result(child, 'publisher', 1.0) == {'sent': 3}
    assert time.monotonic() - start < 10 and child.returncode == -signal.SIGKILL
    assert 'the publisher reported, then hung in ROS shutdown' in capsys.readouterr().err


def test_a_child_that_reports_nothing_or_fails_is_an_error():
    from mmp_ros.ros.bench_dds import child_result

    with pytest.raises(RuntimeError, match='receiver reported nothing in 1 s'):
        child_result(_child('import time; time.sleep(60)'), 'receiver', 1.0)
    with pytest.raises(RuntimeError, match=r'receiver failed \(rc=2\)'):
        child_result(_child('import sys; sys.exit(2)'), 'receiver', 10.0)


def test_a_child_exits_when_its_stdin_closes_and_its_result_is_read():
    from mmp_ros.ros.bench_dds import child_result

    # The publisher's cue to shut down: the parent's `communicate` closes its stdin.
    child = _child('import sys; print("{\\"sent\\": 5}", flush=True); sys.stdin.read()')
    assert child_result(child, 'publisher', 10.0) == {'sent': 5}
    assert child.returncode == 0
