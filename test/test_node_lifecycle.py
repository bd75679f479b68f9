"""The managed (lifecycle) segmentation node across processes, with real rclpy: this process
publishes RGB frames, watches the outputs and drives the node's transitions through its
/<node>/change_state and /<node>/get_state services, as ``ros2 lifecycle set`` and lifecycle
managers do. Waits are on conditions with deadlines; the only fixed windows are those that
prove an absence (no labels while the node is not active)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='needs rclpy (ros extra or ROS 2)')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from test_node_integration import child_env  # noqa: E402

from mmp_ros.ros.image_msg import to_image_msg  # noqa: E402
from mmp_ros.ros.qos import output_qos  # noqa: E402
from mmp_ros.sensors import encode_frame  # noqa: E402

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / 'models' / 'tiny_mmp.onnx'
LAUNCH_FILE = 'mmp_segmentation.launch.py'
NODE = 'mmp_segmentation'
RGB_ONLY = ['-p', 'backend:=onnxruntime', '-p', 'sensors.depth.enabled:=false',
            '-p', 'sensors.polarization.enabled:=false', '-p', 'sensors.thermal.enabled:=false']


class Stream:
    """A process's stderr (or ``pipe``), collected line by line while it runs."""

    def __init__(self, process: subprocess.Popen, pipe=None) -> None:
        self.lines: list[str] = []
        pipe = process.stderr if pipe is None else pipe
        threading.Thread(target=lambda: self.lines.extend(pipe), daemon=True).start()

    @property
    def text(self) -> str:
        return ''.join(self.lines)


class Operator(Node):
    """Publishes RGB frames, keeps the labels and diagnostics, calls the lifecycle services."""

    def __init__(self, context: Context) -> None:
        super().__init__('mmp_test_operator', context=context)
        self.executor_ = SingleThreadedExecutor(context=context)
        self.executor_.add_node(self)
        self.rgb = self.create_publisher(Image, 'rgb/image', qos_profile_sensor_data)
        self.labels: list[float] = []
        self.create_subscription(Image, 'segmentation/labels',
                                 lambda _: self.labels.append(time.monotonic()), output_qos())
        self.diagnostics: list[dict[str, str]] = []
        self.create_subscription(
            DiagnosticArray, '/diagnostics',
            lambda msg: self.diagnostics.append({s.name: s.message for s in msg.status}),
            output_qos(10))
        self.change = self.create_client(ChangeState, f'/{NODE}/change_state')
        self.get = self.create_client(GetState, f'/{NODE}/get_state')
        self.frame = encode_frame('rgb', np.random.default_rng(0).random((24, 32, 3)), 'rgb8')
        self._next_frame = 0.0

    def spin(self, seconds: float = 0.02) -> None:
        """Spin once, and publish an RGB frame every 50 ms: input keeps flowing."""
        if time.monotonic() >= self._next_frame:
            self._next_frame = time.monotonic() + 0.05
            self.rgb.publish(to_image_msg(self.frame, stamp=self.get_clock().now().to_msg(),
                                          frame_id='rgb_optical'))
        self.executor_.spin_once(timeout_sec=seconds)

    def wait(self, condition, timeout_s: float, what: str, process=None) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if process is not None and process.poll() is not None:
                pytest.fail(f'the node exited ({process.returncode}) waiting for {what}')
            if time.monotonic() > deadline:
                pytest.fail(f'timed out after {timeout_s} s waiting for {what}')
            self.spin()

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.spin()

    def call(self, client, request):
        future = client.call_async(request)
        self.wait(future.done, 20.0, f'a reply of {client.srv_name}')
        return future.result()

    def state(self) -> str:
        return self.call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self.call(self.change, request).success

    def labels_since(self, t: float) -> int:
        return sum(1 for arrived in self.labels if arrived >= t)


@pytest.fixture
def operator():
    context = Context()
    rclpy.init(context=context)
    node = Operator(context)
    try:
        yield node
    finally:
        node.executor_.remove_node(node)
        node.destroy_node()
        node.executor_.shutdown(timeout_sec=0.0)
        rclpy.shutdown(context=context)


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=child_env(), cwd=REPO)


def stop(process: subprocess.Popen, signum: int = signal.SIGINT) -> int:
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f'the node did not stop within 15 s of signal {signum}')
    return process.returncode


def test_the_managed_node_segments_only_while_active_and_configures_again_after_a_cleanup(
    operator, tmp_path
):
    model = tmp_path / 'model.onnx'  # not there yet: the first configure must fail
    process = start([sys.executable, '-c', 'import sys; from mmp_ros.cli import '
                     'segmentation_managed_node as entry; sys.exit(entry())',
                     '--ros-args', '-p', f'model_file_path:={model}', *RGB_ONLY])
    stderr = Stream(process)
    try:
        operator.wait(lambda: operator.get.service_is_ready(), 30.0, 'the get_state service',
                      process)
        assert operator.state() == 'unconfigured'
        # A missing model fails configure with the reason, as the plain node's start; the
        # node stays unconfigured and alive.
        assert not operator.transition(Transition.TRANSITION_CONFIGURE)
        assert operator.state() == 'unconfigured'
        operator.wait(lambda: 'cannot configure: cannot load the model' in stderr.text, 5.0,
                      'the reason in the log', process)
        assert f'{model} does not exist' in stderr.text
        assert 'Traceback' not in stderr.text, stderr.text

        shutil.copy(SHIPPED_MODEL, model)  # fixed: configure again
        assert operator.transition(Transition.TRANSITION_CONFIGURE), stderr.text
        assert operator.state() == 'inactive'
        quiet_from = time.monotonic()
        operator.spin_for(1.0)  # frames flowing, nothing segmented
        assert operator.labels_since(quiet_from) == 0
        assert operator.count_subscribers('rgb/image') == 0  # not even subscribed

        assert operator.transition(Transition.TRANSITION_ACTIVATE)
        assert operator.state() == 'active'
        operator.wait(lambda: len(operator.labels) >= 3, 10.0, 'labels once active', process)

        assert operator.transition(Transition.TRANSITION_DEACTIVATE)
        assert operator.state() == 'inactive'
        operator.wait(lambda: any(d.get(f'{NODE}: model', '').startswith('inactive')
                                  for d in operator.diagnostics), 5.0,
                      'the model status to say inactive', process)
        operator.spin_for(0.3)  # what was on its way before the deactivation
        quiet_from, statuses = time.monotonic(), len(operator.diagnostics)
        operator.spin_for(1.0)
        assert operator.labels_since(quiet_from) == 0
        assert len(operator.diagnostics) == statuses  # no /diagnostics either

        assert operator.transition(Transition.TRANSITION_CLEANUP)
        assert operator.state() == 'unconfigured'
        assert operator.transition(Transition.TRANSITION_CONFIGURE), stderr.text
        assert operator.transition(Transition.TRANSITION_ACTIVATE)
        resumed = time.monotonic()
        operator.wait(lambda: operator.labels_since(resumed) >= 3, 10.0,
                      'labels after cleanup, configure, activate', process)
    finally:
        code = stop(process)
    assert code == 0, stderr.text
    assert 'Traceback' not in stderr.text, stderr.text


def test_mmp_ros_run_managed_starts_it_unconfigured_and_sigterm_stops_it(operator):
    process = start([sys.executable, '-m', 'mmp_ros.cli', 'run', '--managed', '--ros-args',
                     '-p', f'model_file_path:={SHIPPED_MODEL}', *RGB_ONLY])
    stderr = Stream(process)
    try:
        operator.wait(lambda: operator.get.service_is_ready(), 30.0, 'the get_state service',
                      process)
        assert operator.state() == 'unconfigured'
        assert operator.transition(Transition.TRANSITION_CONFIGURE), stderr.text
        assert operator.transition(Transition.TRANSITION_ACTIVATE)
        operator.wait(lambda: operator.labels, 10.0, 'labels', process)
    finally:
        code = stop(process, signal.SIGTERM)
    assert code == 0, stderr.text
    assert 'Traceback' not in stderr.text, stderr.text


def test_a_destroyed_managed_node_leaves_the_graph_at_once():
    """rclpy leaves a lifecycle node's state machine (and its transition_event publisher) to
    the garbage collector: destroyed, the node stayed on the graph until then, and at exit
    its state machine could be finalized after the context it needs (the process once died
    of SIGSEGV on Ctrl-C)."""
    from mmp_ros.ros.segmentation_node import ManagedSegmentationNode

    context = Context()
    rclpy.init(context=context)
    try:
        probe = Node('lifecycle_probe', context=context)
        node = ManagedSegmentationNode(context=context)
        events = f'/{NODE}/transition_event'
        assert probe.count_publishers(events) == 1
        node.destroy_node()
        deadline = time.monotonic() + 2.0
        while (NODE in probe.get_node_names() or probe.count_publishers(events)) and (
                time.monotonic() < deadline):
            time.sleep(0.05)
        assert NODE not in probe.get_node_names()
        assert probe.count_publishers(events) == 0
        probe.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_activate_deactivate_cycles_leave_nothing_in_rclpy_and_the_sensors_still_work():
    """rclpy's callback groups keep a weak reference to every entity ever added to them
    (ros2/rclpy#1356): the sensor subscriptions and their event handlers were in the node's
    default group, which grew by 12 dead references (about 2.4 KiB) at each activate and
    deactivate, for the life of the process. After the cycles the subscriptions still get
    frames and their incompatible-QoS events."""
    from rclpy.parameter import Parameter

    from mmp_ros.ros.segmentation_node import ManagedSegmentationNode

    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    given = {'backend': 'onnxruntime', 'model_file_path': str(SHIPPED_MODEL),
             'sensors.depth.enabled': False, 'sensors.polarization.enabled': False,
             'sensors.thermal.qos': 'reliable'}
    node = ManagedSegmentationNode(context=context, parameter_overrides=[
        Parameter(name, value=value) for name, value in given.items()])
    camera = Node('camera', context=context)
    try:
        rgb = camera.create_publisher(Image, 'rgb/image', qos_profile_sensor_data)
        thermal = camera.create_publisher(Image, 'thermal/image', qos_profile_sensor_data)
        labels = []
        camera.create_subscription(Image, 'segmentation/labels', labels.append, output_qos())
        executor.add_node(node)
        executor.add_node(camera)
        node.trigger_configure()
        node.trigger_activate()
        node.trigger_deactivate()
        entities = len(node.default_callback_group.entities)
        for _ in range(5):
            node.trigger_activate()
            executor.spin_once(timeout_sec=0.0)
            node.trigger_deactivate()
        assert len(node.default_callback_group.entities) == entities
        node.trigger_activate()
        frames = iter(range(10**6))
        deadline = time.monotonic() + 10.0
        while not (labels and 'thermal' in node._qos_problems) and time.monotonic() < deadline:
            fields = encode_frame('rgb', np.random.default_rng(next(frames)).random((24, 32, 3)),
                                  'rgb8')
            stamp = camera.get_clock().now().to_msg()
            rgb.publish(to_image_msg(fields, stamp=stamp, frame_id='rgb_optical'))
            executor.spin_once(timeout_sec=0.02)
        assert labels, 'no segmentation after the cycles'
        assert 'incompatible QoS' in node._qos_problems.get('thermal', ''), 'no QoS event'
        assert thermal.get_subscription_count() == 0
    finally:
        executor.shutdown(timeout_sec=0.0)
        node.destroy_node()
        camera.destroy_node()
        rclpy.shutdown(context=context)


def test_configure_cleanup_cycles_leave_nothing_in_rclpy_and_the_outputs_events_work(capfd):
    """The publishers' QoS event handlers were in the node's default callback group, which
    keeps a reference to each (ros2/rclpy#1356): 12 more at each configure and cleanup, for
    the life of the process. Those of the last configure still report an incompatible
    subscriber."""
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, QoSProfile

    from mmp_ros.ros.segmentation_node import ManagedSegmentationNode

    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    node = ManagedSegmentationNode(context=context, parameter_overrides=[
        Parameter('backend', value='onnxruntime'),
        Parameter('model_file_path', value=str(SHIPPED_MODEL))])
    viewer = Node('viewer', context=context)
    try:
        executor.add_node(node)
        executor.add_node(viewer)
        node.trigger_configure()
        node.trigger_cleanup()
        entities = len(node.default_callback_group.entities)
        for _ in range(5):
            node.trigger_configure()
            executor.spin_once(timeout_sec=0.0)
            node.trigger_cleanup()
        assert len(node.default_callback_group.entities) == entities
        node.trigger_configure()
        capfd.readouterr()
        # transient local: what the volatile labels publisher cannot offer
        viewer.create_subscription(Image, 'segmentation/labels', lambda msg: None, QoSProfile(
            depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        deadline = time.monotonic() + 5.0
        err = ''
        said = f'[{NODE}]: New subscription discovered on topic'
        while said not in err and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            err += capfd.readouterr().err
        assert said in err, err
    finally:
        executor.shutdown(timeout_sec=0.0)
        node.destroy_node()
        viewer.destroy_node()
        rclpy.shutdown(context=context)


def test_the_managed_node_has_its_parameters_while_unconfigured_and_configure_reads_them():
    """They were declared at the first configure: unconfigured, `ros2 param list` showed
    none of them and `ros2 param get/set` were refused (undeclared), so a lifecycle manager's
    bringup could not look at or tune the node before configuring it."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from mmp_ros.ros.segmentation_node import ManagedSegmentationNode, NodeStartError

    def managed(**given):
        given = {'backend': 'onnxruntime', 'model_file_path': str(SHIPPED_MODEL), **given}
        return ManagedSegmentationNode(context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in given.items()])

    context = Context()
    rclpy.init(context=context)
    try:
        node = managed(max_rate_hz=5)
        try:
            assert node.get_parameter('max_rate_hz').value == 5.0  # from --ros-args
            assert node.get_parameter('model_file_path').value == str(SHIPPED_MODEL)
            assert node.get_parameter('sensors.thermal.enabled').value is True  # the default
            assert node.set_parameters_atomically(  # what `ros2 param set` calls
                [Parameter('max_rate_hz', value=7.5)]).successful
            refused = node.set_parameters_atomically(
                [Parameter('sensors.rgb.rate_warn_ratio', value=0.1)])
            assert not refused.successful and 'rate_warn_ratio' in refused.reason
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node._values['max_rate_hz'] == 7.5  # configure read the value set
        finally:
            node.destroy_node()
        # A value given at start that is invalid: refused as the plain node refuses it.
        with pytest.raises(NodeStartError, match="max_rate_hz must be a number, got a string"):
            managed(max_rate_hz='abc')
    finally:
        rclpy.shutdown(context=context)


def test_a_parameter_the_plain_node_takes_only_at_start_is_set_while_unconfigured(tmp_path):
    """model_file_path, backend, qos, ... were read-only in every state: a lifecycle
    reconfigure (cleanup, set, configure) could not run another model or change a sensor's
    QoS, only a restart of the process. Configured, they are refused with the way to do it."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import ReliabilityPolicy

    from mmp_ros.ros.segmentation_node import ManagedSegmentationNode

    other = tmp_path / 'other.onnx'
    shutil.copy(SHIPPED_MODEL, other)
    context = Context()
    rclpy.init(context=context)
    try:
        node = ManagedSegmentationNode(context=context, parameter_overrides=[
            Parameter('backend', value='onnxruntime'),
            Parameter('model_file_path', value=str(tmp_path / 'missing.onnx'))])
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
            # Unconfigured: fixed, in words for a wrong type, and taken by the next configure.
            assert node.set_parameters_atomically(
                [Parameter('model_file_path', value=str(other))]).successful
            refused = node.set_parameters_atomically([Parameter('cache_depth', value=2.5)])
            assert refused.reason == (
                'cache_depth must be an integer, got a floating-point number 2.5')
            assert node.set_parameters_atomically(
                [Parameter('sensors.rgb.qos', value='reliable')]).successful
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node._model_path == str(other)
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            assert node._image_subscriptions['rgb'].qos_profile.reliability == (
                ReliabilityPolicy.RELIABLE)
            # Configured: refused, saying how.
            refused = node.set_parameters_atomically(
                [Parameter('model_file_path', value=str(SHIPPED_MODEL))])
            assert not refused.successful
            assert refused.reason.startswith('model_file_path: read by configure, settable only '
                                             'while the node is unconfigured (ros2 lifecycle set')
            assert node.get_parameter('model_file_path').value == str(other)
            assert node.set_parameters_atomically(  # the run-time ones as before
                [Parameter('max_rate_hz', value=3.0)]).successful
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_a_start_only_parameter_refused_while_inactive_says_to_clean_up(tmp_path):
    """Inactive (configured, not active), the refusal said 'deactivate, cleanup; ...', but
    deactivate is no transition from inactive: ros2 lifecycle set refuses it. It says what
    applies in the state the node is in."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from mmp_ros.ros.segmentation_node import ManagedSegmentationNode

    other = tmp_path / 'other.onnx'
    shutil.copy(SHIPPED_MODEL, other)
    context = Context()
    rclpy.init(context=context)
    try:
        node = ManagedSegmentationNode(context=context, parameter_overrides=[
            Parameter('backend', value='onnxruntime'),
            Parameter('model_file_path', value=str(SHIPPED_MODEL))])
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            refused = node.set_parameters_atomically(
                [Parameter('model_file_path', value=str(other))])
            assert refused.reason == (
                'model_file_path: read by configure, settable only while the node is '
                'unconfigured (ros2 lifecycle set /mmp_segmentation cleanup; set it; '
                'configure)')
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            refused = node.set_parameters_atomically(
                [Parameter('model_file_path', value=str(other))])
            assert refused.reason == (
                'model_file_path: read by configure, settable only while the node is '
                'unconfigured (ros2 lifecycle set /mmp_segmentation deactivate, cleanup; set '
                'it; configure, activate)')
            # What the inactive refusal says, done, sets it.
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
            assert node.set_parameters_atomically(
                [Parameter('model_file_path', value=str(other))]).successful
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node._model_path == str(other)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_an_inference_that_outlasts_deactivate_publishes_nothing_after_it(operator, monkeypatch):
    """deactivate waits JOIN_TIMEOUT_S (5 s) for the inference in flight: with the shipped
    model at most about 0.15 s on two CPU cores. A run that outlasted it (a model taking
    longer than that per frame) published its labels once the node was active again, stamped
    before the deactivation, though the log said that what it publishes is dropped."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from mmp_ros.ros.segmentation_node import ManagedSegmentationNode

    monkeypatch.setattr(ManagedSegmentationNode, 'JOIN_TIMEOUT_S', 0.1)
    node = ManagedSegmentationNode(context=operator.context, parameter_overrides=[
        Parameter('backend', value='onnxruntime'),
        Parameter('model_file_path', value=str(SHIPPED_MODEL)),
        *(Parameter(f'sensors.{m}.enabled', value=False)
          for m in ('depth', 'polarization', 'thermal'))])
    operator.executor_.add_node(node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        infer, started, release = node._backend.infer, threading.Event(), threading.Event()

        def slow_first(*args):  # the first run outlasts the deactivation
            if not started.is_set():
                started.set()
                release.wait(5.0)
            return infer(*args)

        node._backend.infer = slow_first
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        operator.wait(started.is_set, 10.0, 'the first inference')
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        reactivated = time.monotonic()
        release.set()  # it ends while the node is active again; no frame comes since
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            operator.executor_.spin_once(timeout_sec=0.02)
        assert operator.labels_since(reactivated) == 0
    finally:
        release.set()
        operator.executor_.remove_node(node)
        node.destroy_node()


def launch_prefix(root: Path) -> Path:
    """An install prefix of this checkout as setup.py's data_files and console scripts lay
    it out (ament index entry, share/mmp_ros, lib/mmp_ros/<executable>), for launch_ros to
    find the package and its executables in."""
    (root / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (root / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'mmp_ros').touch()
    share = root / 'share' / 'mmp_ros'
    share.mkdir()
    for folder in ('launch', 'config', 'models'):
        (share / folder).symlink_to(REPO / folder)
    (root / 'lib' / 'mmp_ros').mkdir(parents=True)
    for executable, entry in (('mmp_segmentation_node', 'segmentation_node'),
                              ('mmp_segmentation_managed_node', 'segmentation_managed_node')):
        script = root / 'lib' / 'mmp_ros' / executable
        script.write_text(f'#!{sys.executable}\nimport sys\nfrom mmp_ros.cli import {entry}\n'
                          f'sys.exit({entry}())\n')
        script.chmod(0o755)
    return root


# What `ros2 launch mmp_ros mmp_segmentation.launch.py NAME:=VALUE ...` runs.
LAUNCH = (
    'import sys\n'
    'from launch import LaunchService\n'
    'from launch.actions import IncludeLaunchDescription\n'
    'from launch.launch_description_sources import PythonLaunchDescriptionSource\n'
    'service = LaunchService()\n'
    'service.include_launch_description(IncludeLaunchDescription(\n'
    '    PythonLaunchDescriptionSource(sys.argv[1]),\n'
    '    launch_arguments=[a.split(":=", 1) for a in sys.argv[2:]]))\n'
    'sys.exit(service.run())\n'
)


def ros2_launch(tmp_path: Path, *arguments: str) -> tuple[subprocess.Popen, Stream]:
    """The launch file run by launch's LaunchService from an install prefix in ``tmp_path``,
    in a process group of its own (as a terminal's), and its output (launch's log and the
    node's, output='screen')."""
    pytest.importorskip('launch_ros', reason='launch_ros is not installable from PyPI; '
                        'this runs on native ROS 2 installs')
    env = child_env()
    env['AMENT_PREFIX_PATH'] = str(launch_prefix(tmp_path / 'install'))
    process = subprocess.Popen(
        [sys.executable, '-c', LAUNCH,
         str(tmp_path / 'install' / 'share' / 'mmp_ros' / 'launch' / LAUNCH_FILE), *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
        start_new_session=True)
    return process, Stream(process, process.stdout)


def ctrl_c(process: subprocess.Popen, output: Stream) -> None:
    """Ctrl-C in the launch's terminal: SIGINT to its process group, launch and node (launch
    passes on no SIGINT of its own then, and SIGTERMs a node still running 5 s later)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f'the launch did not stop within 15 s of Ctrl-C: {output.text}')
    assert process.returncode == 0, output.text
    assert 'process has finished cleanly' in output.text, output.text
    assert 'escalating' not in output.text, output.text
    assert 'Traceback' not in output.text, output.text


def test_ros2_launch_with_autostart_configures_and_activates_the_managed_node(operator, tmp_path):
    """The launch file's autostart events, run by launch's LaunchService with launch_ros's
    LifecycleNode: the node reaches active and segments, and Ctrl-C stops it cleanly."""
    process, output = ros2_launch(tmp_path, 'managed:=true', 'autostart:=true',
                                  'backend:=onnxruntime')
    try:
        operator.wait(lambda: len(operator.labels) >= 3, 60.0, 'labels of the launched node',
                      process)
        assert operator.state() == 'active'
    finally:
        ctrl_c(process, output)


@pytest.mark.parametrize('managed', [False, True])
def test_ros2_launch_arguments_reach_the_running_node(operator, tmp_path, managed):
    """Every other argument of the launch file, as the running node has it: its fully
    qualified name, parameters (the params file's, under the overrides), subscriptions, log
    level and lifecycle state."""
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    max_rate_hz: 7.0\n    use_sim_time: true\n')
    overrides = {'backend': 'onnxruntime', 'model_file_path': str(SHIPPED_MODEL),
                 'engine_file_path': str(tmp_path / 'e.engine'), 'force_engine_update': True,
                 'enable_fp16': False, 'use_sim_time': False}
    process, output = ros2_launch(
        tmp_path, f'params_file:={params}', 'namespace:=front', 'node_name:=mmp_front',
        'rgb_topic:=/camera/color/image_raw', 'depth_topic:=cam/depth',
        f'managed:={str(managed).lower()}', f'log_level:={"debug" if managed else "warn"}',
        *(f'{name}:={str(value).lower() if isinstance(value, bool) else value}'
          for name, value in overrides.items()))
    try:
        client = AsyncParameterClient(operator, '/front/mmp_front')
        operator.wait(client.services_are_ready, 30.0, 'the parameter services', process)
        names = ['max_rate_hz', *overrides]
        future = client.get_parameters(names)
        operator.wait(future.done, 10.0, 'the parameters')
        values = map(parameter_value_to_python, future.result().values)
        assert dict(zip(names, values, strict=True)) == {'max_rate_hz': 7.0, **overrides}
        if managed:
            operator.get = operator.create_client(GetState, '/front/mmp_front/get_state')
            assert operator.state() == 'unconfigured'
            assert '[DEBUG]' in output.text
        else:
            operator.wait(lambda: {'/camera/color/image_raw', '/front/cam/depth'} <= {
                topic for topic, _ in operator.get_subscriber_names_and_types_by_node(
                    'mmp_front', '/front')}, 10.0, 'the remapped subscriptions', process)
            assert '[INFO]' not in output.text.replace('[INFO] [launch]', '').replace(
                '[INFO] [mmp_segmentation_node-1]', '')
    finally:
        ctrl_c(process, output)
