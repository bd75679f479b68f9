"""The node in this process: run-time behaviour that needs its threads, not other processes.

The node and a small driver node share one private context and one executor; the driver
publishes sensor frames and collects the labels. Waits are on conditions with deadlines.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='needs rclpy (ros extra or ROS 2)')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.duration import Duration  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402

from mmp_ros.ros.image_msg import to_image_msg  # noqa: E402
from mmp_ros.ros.qos import output_qos  # noqa: E402
from mmp_ros.ros.segmentation_node import SegmentationNode  # noqa: E402
from mmp_ros.sensors import (  # noqa: E402
    PlanckCalibration,
    ThermalSettings,
    array_to_image,
    compress_image,
    encode_frame,
)

pytestmark = pytest.mark.ros

HEIGHT, WIDTH = 24, 32


class Driver(Node):
    """Publishes frames to the node's inputs and keeps the labels and model statuses."""

    def __init__(self, context: Context) -> None:
        super().__init__('mmp_test_driver', context=context)
        self.publishers_ = {
            m: self.create_publisher(Image, f'{m}/image', qos_profile_sensor_data)
            for m in ('rgb', 'depth', 'polarization', 'thermal')
        }
        self.labels: list[Image] = []
        self.create_subscription(
            Image, 'segmentation/labels', self.labels.append, output_qos()
        )
        self.model_statuses: list[dict[str, str]] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                 output_qos(10))

    def latest_status(self, modality: str):
        """The sensor's status in the newest /diagnostics message, None before one."""
        statuses = [s for a in self.diagnostics[-1:] for s in a.status
                    if s.name == f'mmp_segmentation: {modality}']
        return statuses[0] if statuses else None

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics.append(msg)
        for status in msg.status:
            if status.name == 'mmp_segmentation: model':
                self.model_statuses.append({
                    'level': status.level[0], 'message': status.message,
                    **{kv.key: kv.value for kv in status.values},
                })

    def send(self, modality: str, fields, age_s: float = 0.0) -> None:
        stamp = (self.get_clock().now() - Duration(seconds=age_s)).to_msg()
        self.publishers_[modality].publish(
            to_image_msg(fields, stamp=stamp, frame_id=f'{modality}_optical')
        )


@pytest.fixture
def run_node():
    """run_node(**parameters) -> (node, driver, spin_until); torn down after the test."""
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    nodes: list[Node] = []

    def start(**parameters):
        overrides = [Parameter('backend', value='onnxruntime')] + [
            Parameter(name.replace('__', '.'), value=value) for name, value in parameters.items()
        ]
        node = SegmentationNode(context=context, parameter_overrides=overrides)
        driver = Driver(context)
        nodes.extend((node, driver))
        executor.add_node(node)
        executor.add_node(driver)

        def spin_until(condition, timeout_s: float, feed=None) -> bool:
            deadline = time.monotonic() + timeout_s
            while not condition():
                if time.monotonic() > deadline:
                    return False
                if feed is not None:
                    feed()
                executor.spin_once(timeout_sec=0.02)
            return True

        return node, driver, spin_until

    try:
        yield start
    finally:
        for node in nodes:
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown(timeout_sec=0.0)
        rclpy.shutdown(context=context)


def rgb_frame(seed: int):
    return encode_frame('rgb', np.random.default_rng(seed).random((HEIGHT, WIDTH, 3)), 'rgb8')


def test_a_higher_max_rate_takes_effect_at_once_after_a_very_low_one(run_node):
    node, driver, spin_until = run_node(anchor='timer', max_rate_hz=0.01)
    frames = iter(range(10**6))
    # The timer has run once (nothing to infer on) and waits 100 s for the next run.
    assert spin_until(lambda: node.count_subscribers('rgb/image') > 0, 10.0)
    result = node.set_parameters([Parameter('max_rate_hz', value=20.0)])
    assert result[0].successful, result[0].reason
    arrived = spin_until(lambda: driver.labels, 5.0,
                         feed=lambda: driver.send('rgb', rgb_frame(next(frames))))
    assert arrived, 'no segmentation within 5 s of raising max_rate_hz from 0.01 to 20'


def test_use_sim_time_can_be_switched_at_run_time(run_node):
    # rclpy declares it on every node; the node's own parameter callback must let it through.
    node, driver, spin_until = run_node()
    assert not node.get_clock().ros_time_is_active
    result = node.set_parameters([Parameter('use_sim_time', value=True)])
    assert result[0].successful, result[0].reason
    assert node.get_clock().ros_time_is_active
    assert not node.set_parameters([Parameter('max_rate_hz', value=-1.0)])[0].successful


def test_a_switch_of_use_sim_time_is_logged_as_a_switch(run_node, capfd):
    # rclpy reports the switch as a jump of 0 s: the log said 'the clock jumped by +0.000 s'.
    node, _, _ = run_node()
    node.set_parameters([Parameter('use_sim_time', value=True)])
    node.set_parameters([Parameter('use_sim_time', value=False)])
    err = capfd.readouterr().err
    assert 'the clock switched to sim time (/clock)' in err, err
    assert 'the clock switched to wall time' in err, err
    assert 'jumped by' not in err, err


def test_a_misspelt_parameter_is_named_at_start_with_the_nearest_one(run_node, capfd):
    # rclpy drops a value given for a parameter the node does not declare: a typo in a params
    # file or -p used to leave the default in force without a word.
    run_node(min_confidance=0.5, sensors__thermal__timeout=2.0, use_sim_time=False)
    err = capfd.readouterr().err
    assert ('ignoring values for parameters this node does not have: min_confidance (did '
            'you mean min_confidence?), sensors.thermal.timeout (did you mean '
            'sensors.thermal.timeout_s?)') in err, err
    assert 'use_sim_time' not in err


def test_a_qos_override_is_named_at_start_with_the_parameters_that_set_the_qos(run_node,
                                                                             capfd):
    # rclpy applies qos_overrides.* only to a publisher or subscription created to take them,
    # which none of the node's is: -p qos_overrides./rgb/image.subscription.reliability:=
    # reliable left the input best effort without a word.
    node, _, _ = run_node(**{'qos_overrides./rgb/image.subscription.reliability': 'reliable'})
    err = capfd.readouterr().err
    assert ('ignoring values for parameters this node does not have: qos_overrides./rgb/image.'
            "subscription.reliability (this node takes no QoS overrides; its inputs' QoS is "
            'sensors.<modality>.qos and qos_depth)') in err, err


def test_a_start_with_every_sensor_disabled_is_refused(run_node):
    # It used to start, subscribe to nothing and never publish a segmentation.
    from mmp_ros.ros.segmentation_node import NodeStartError

    disabled = {f'sensors__{m}__enabled': False for m in ('rgb', 'depth', 'polarization')}
    with pytest.raises(NodeStartError, match=r'every sensor the model takes is disabled \('
                       r'sensors.rgb.enabled, .*sensors.thermal.enabled all false\)'):
        run_node(**disabled, sensors__thermal__enabled=False)
    node, _, _ = run_node(**disabled)  # one left is enough
    assert node.count_publishers('segmentation/labels') == 1


def test_an_anchor_on_a_disabled_camera_is_said_at_start_and_when_set(run_node, capfd):
    # A robot without RGB (sensors.rgb.enabled false) and the default anchor rgb: every output
    # was anchored on the freshest stream, without a word.
    from rclpy.parameter import Parameter

    node, _, _ = run_node(sensors__rgb__enabled=False)
    warning = ("anchor 'rgb': sensors.rgb.enabled is false, so each output is anchored on the "
               'freshest usable stream instead')
    assert warning in capfd.readouterr().err
    assert node.set_parameters([Parameter('anchor', value='depth')])[0].successful
    assert 'anchor' not in capfd.readouterr().err
    assert node.set_parameters([Parameter('anchor', value='rgb')])[0].successful
    assert warning in capfd.readouterr().err


def thermal_only_model(path, num_classes: int = 4):
    """A hand-built ONNX graph with a thermal-only model's inputs, outputs and metadata."""
    onnx = pytest.importorskip('onnx', reason="needs onnx (pip install '.[train]')")
    from onnx import TensorProto, helper

    from mmp_ros.inference.testing import tiny_metadata
    from mmp_ros.metadata import METADATA_KEY

    graph = helper.make_graph(
        [helper.make_node('Identity', ['thermal'], ['confidence']),
         helper.make_node('Cast', ['thermal'], ['labels'], to=TensorProto.UINT8)],
        'thermal_only',
        [helper.make_tensor_value_info('thermal', TensorProto.FLOAT, ['B', 1, 8, 8]),
         helper.make_tensor_value_info('available', TensorProto.BOOL, ['B', 1])],
        [helper.make_tensor_value_info('labels', TensorProto.UINT8, ['B', 1, 8, 8]),
         helper.make_tensor_value_info('confidence', TensorProto.FLOAT, ['B', 1, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    metadata = tiny_metadata(modalities=('thermal',), input_size=(8, 8), num_classes=num_classes)
    helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    onnx.save(model, str(path))
    return path


def test_an_anchor_the_model_does_not_take_names_the_model_and_the_choices(run_node, tmp_path):
    # The default anchor (rgb) with a model without rgb used to stop the node with "anchor
    # 'rgb': the model takes no such input", naming neither the model nor what would do.
    from mmp_ros.ros.segmentation_node import NodeStartError

    model = thermal_only_model(tmp_path / 'thermal.onnx')
    with pytest.raises(NodeStartError, match=(
        rf"anchor 'rgb': the model {model} takes no rgb input \(it takes thermal\); set the "
        r"parameter anchor to one of \['thermal', 'freshest', 'timer'\]"
    )):
        run_node(model_file_path=str(model))
    node, _, _ = run_node(model_file_path=str(model), anchor='thermal')
    result = node.set_parameters([Parameter('anchor', value='depth')])[0]
    assert not result.successful
    assert "takes no depth input (it takes thermal); set the parameter anchor" in result.reason


def test_a_model_with_more_classes_than_mono8_labels_hold_is_refused_with_the_reason(
    run_node, tmp_path
):
    # A model of 256 or more classes (training allows them) stopped the start with a
    # PostprocessError traceback from the palette; 255 classes (ids 0..254) start.
    from mmp_ros.ros.segmentation_node import NodeStartError

    model = thermal_only_model(tmp_path / 'many.onnx', num_classes=256)
    with pytest.raises(NodeStartError, match=(
        rf'cannot serve the model {model} \(parameter model_file_path\): 256 classes do not '
        r'fit mono8 labels \(at most 255: 255 means no prediction\)'
    )):
        run_node(model_file_path=str(model), anchor='thermal')
    model = thermal_only_model(tmp_path / 'most.onnx', num_classes=255)
    node, _, _ = run_node(model_file_path=str(model), anchor='thermal')
    assert node.metadata.num_classes == 255


def test_a_whole_number_for_a_float_parameter_is_taken_at_start_and_at_run_time(run_node):
    # rclpy refused it for its type: at start ("expecting type 'DOUBLE'") and from ros2 param
    # set ("Wrong parameter type, expected '3' got '2'").
    node, _, _ = run_node(max_rate_hz=5, sensors__thermal__expected_rate_hz=9)
    assert node.get_parameter('max_rate_hz').value == 5.0
    assert node._values['sensors.thermal.expected_rate_hz'] == 9.0
    result = node.set_parameters([Parameter('sensors.thermal.timeout_s', value=2)])[0]
    assert result.successful, result.reason
    assert node.get_parameter('sensors.thermal.timeout_s').value == 2.0
    assert type(node._values['sensors.thermal.timeout_s']) is float
    result = node.set_parameters([Parameter('sensors.thermal.timeout_s', value=100)])[0]
    assert not result.successful and 'out of range' in result.reason
    assert not node.set_parameters([Parameter('cache_depth', value=2.0)])[0].successful


def test_a_value_of_the_wrong_type_is_refused_naming_both_types_in_words(run_node):
    # rclpy's refusals: at start "Trying to set parameter 'max_rate_hz' to 'abc' of type
    # 'STRING', expecting type 'DOUBLE': max_rate_hz", at run time (ros2 param set) "Wrong
    # parameter type, expected '3' got '4'", the type enum's numbers.
    from mmp_ros.ros.segmentation_node import NodeStartError

    with pytest.raises(NodeStartError, match="max_rate_hz must be a number, got a string 'abc'"):
        run_node(max_rate_hz='abc')
    with pytest.raises(NodeStartError, match='cache_depth must be an integer, got a floating'):
        run_node(cache_depth=1.5)
    node, _, _ = run_node()
    for parameter, reason in (
        (Parameter('max_rate_hz', value='abc'), "max_rate_hz must be a number, got a string"),
        (Parameter('publish_color', value='yes'), 'publish_color must be true or false'),
        (Parameter('sensors.polarization.layout', value=[90.5, 45.0, 135.0, 0.0]),
         'sensors.polarization.layout must be a list of integers, got a list of floating-point'),
    ):
        result = node.set_parameters([parameter])[0]
        assert not result.successful and result.reason.startswith(reason), result.reason
    result = node.set_parameters_atomically(  # what `ros2 param set` calls
        [Parameter('overlay_alpha', value=0.2), Parameter('min_confidence', value='high')]
    )
    assert result.reason == "min_confidence must be a number, got a string 'high'"
    assert node.get_parameter('overlay_alpha').value == 0.5
    result = node.set_parameters([Parameter('cache_depth', value=2.5)])[0]
    assert 'read-only' in result.reason  # rclpy's word stands: no change at all is taken
    # rclpy's own parameter alike: "Wrong parameter type, expected '1' got '2'" it said
    result = node.set_parameters_atomically([Parameter('use_sim_time', value=1)])
    assert result.reason == 'use_sim_time must be true or false, got an integer 1'
    result = node.set_parameters([Parameter('use_sim_time', value='true')])[0]
    assert result.reason == "use_sim_time must be true or false, got a string 'true'"
    assert node.set_parameters([Parameter('use_sim_time', value=False)])[0].successful


def test_a_parameter_the_node_does_not_have_is_named_in_the_refusal(run_node):
    # rclpy's reason, which `ros2 param set /mmp_segmentation max_rate 5.0` printed, named
    # no parameter: 'Invalid access to undeclared parameter(s): []'.
    from rclpy.parameter_client import AsyncParameterClient

    node, driver, spin_until = run_node()
    client = AsyncParameterClient(driver, node.get_fully_qualified_name())
    assert spin_until(client.services_are_ready, 10.0)
    future = client.set_parameters([Parameter('max_rate', value=5.0),
                                    Parameter('max_rate_hz', value=5.0)])
    assert spin_until(future.done, 10.0)
    refused, taken = future.result().results
    assert not refused.successful and refused.reason == (
        "Invalid access to undeclared parameter(s): ['max_rate (did you mean max_rate_hz?)']")
    assert taken.successful and node.get_parameter('max_rate_hz').value == 5.0


def test_a_value_out_of_range_at_start_is_refused_in_words(run_node):
    # rclpy's refusal: "Invalid parameter value (5000.0) for parameter. Reason: Parameter
    # max_rate_hz out of range Min: 0.0, Max: 1000.0, value: 5000.0: max_rate_hz".
    from mmp_ros.ros.segmentation_node import NodeStartError

    for parameters, message in (
        ({'max_rate_hz': 5000.0}, 'invalid parameters: max_rate_hz=5000.0 is above its maximum '
                                  '1000$'),
        ({'sensors__rgb__recovery_frames': -3},
         'invalid parameters: sensors.rgb.recovery_frames=-3 is below its minimum 1$'),
        ({'overlay_alpha': float('nan')}, 'invalid parameters: overlay_alpha must be finite'),
    ):
        with pytest.raises(NodeStartError, match=message):
            run_node(**parameters)


def test_the_thermal_cameras_planck_calibration_is_a_parameter(run_node):
    # A radiometric camera's own constants (exiftool -Planck*), at start and at run time;
    # the node had no parameter for them and decoded every camera with the default ones.
    calibration = [17000.0, 0.05, 1400.0, 1.0, -300.0]
    node, _, _ = run_node(sensors__thermal__planck=calibration)
    assert node._decoder_settings['thermal'].planck == PlanckCalibration(*calibration)
    whole = [17096, 1, 1428, 1, -342]  # what `ros2 param set` sends for whole numbers
    result = node.set_parameters([Parameter('sensors.thermal.planck', value=whole)])[0]
    assert result.successful, result.reason
    assert node._decoder_settings['thermal'].planck == PlanckCalibration(*map(float, whole))
    for wrong in ([1.0, 2.0], [0.0, 1.0, 1.0, 1.0, 1.0]):
        result = node.set_parameters([Parameter('sensors.thermal.planck', value=wrong)])[0]
        assert not result.successful and 'sensors.thermal' in result.reason


def test_without_rgb_the_labels_have_the_anchor_cameras_resolution(run_node):
    """A polarization mosaic decodes at half its size; the labels keep the camera's grid."""
    node, driver, spin_until = run_node(sensors__rgb__enabled=False, anchor='polarization')
    rng = np.random.default_rng(0)

    def mosaic():
        intensities = 50 + 100 * rng.random((4, HEIGHT // 2, WIDTH // 2))
        driver.send('polarization', encode_frame('polarization', intensities, 'mono8'))

    assert spin_until(lambda: driver.labels, 10.0, feed=mosaic), 'no segmentation'
    assert (driver.labels[-1].height, driver.labels[-1].width) == (HEIGHT, WIDTH)


def test_once_rgb_is_down_the_labels_have_the_new_anchor_cameras_resolution(run_node):
    """They kept the size of RGB's last frame, under the thermal camera's frame_id."""
    node, driver, spin_until = run_node(
        sensors__depth__enabled=False, sensors__polarization__enabled=False,
        sensors__rgb__timeout_s=0.1,
    )
    rgb_on, frames = [True], iter(range(10**6))

    def feed():
        seed = next(frames)
        if rgb_on[0]:
            driver.send('rgb', rgb_frame(seed))
        celsius = 20.0 + 5.0 * np.random.default_rng(seed).random((12, 16))
        driver.send('thermal', encode_frame('thermal', celsius, 'mono16', ThermalSettings()))

    assert spin_until(lambda: driver.labels, 10.0, feed=feed), 'no segmentation'
    assert (driver.labels[-1].height, driver.labels[-1].width) == (HEIGHT, WIDTH)
    rgb_on[0] = False
    assert spin_until(lambda: driver.labels[-1].header.frame_id == 'thermal_optical', 10.0,
                      feed=feed), 'thermal never anchored'
    assert (driver.labels[-1].height, driver.labels[-1].width) == (12, 16)


@pytest.mark.parametrize('anchor', ['thermal', 'freshest', 'timer'])
def test_the_labels_have_the_resolution_of_the_camera_whose_frame_id_they_carry(
    run_node, anchor
):
    """With RGB in the bundle, the labels took RGB's size under the thermal camera's
    frame_id (anchor thermal, or freshest and timer when thermal's frame came last)."""
    node, driver, spin_until = run_node(
        anchor=anchor, max_rate_hz=20.0,
        sensors__depth__enabled=False, sensors__polarization__enabled=False,
    )
    frames = iter(range(10**6))

    def feed():
        seed = next(frames)
        driver.send('rgb', rgb_frame(seed))
        celsius = 20.0 + 5.0 * np.random.default_rng(seed).random((12, 16))
        driver.send('thermal', encode_frame('thermal', celsius, 'mono16', ThermalSettings()))

    assert spin_until(
        lambda: any(image.header.frame_id == 'thermal_optical' for image in driver.labels),
        10.0, feed=feed,
    ), 'thermal never gave the outputs their frame_id'
    sizes = {'rgb_optical': (HEIGHT, WIDTH), 'thermal_optical': (12, 16)}
    for image in driver.labels:
        assert (image.height, image.width) == sizes[image.header.frame_id]


def test_a_healthy_stream_never_within_max_age_of_the_anchor_degrades_the_model_status(run_node):
    """Thermal stamped 0.3 s behind RGB (driver latency, an unsynchronized clock): every
    bundle projects it, and the model status must say so instead of 'running on' all."""
    node, driver, spin_until = run_node(
        sensors__thermal__max_age_s=0.1, sensors__depth__enabled=False,
        sensors__polarization__enabled=False,
    )
    frames = iter(range(10**6))

    def feed():
        seed = next(frames)
        driver.send('rgb', rgb_frame(seed))
        celsius = 20.0 + 5.0 * np.random.default_rng(seed).random((HEIGHT, WIDTH))
        driver.send('thermal', encode_frame('thermal', celsius, 'mono16', ThermalSettings()),
                    age_s=0.3)

    def model_statuses():  # each beside thermal's own status of the same /diagnostics
        for array in driver.diagnostics:
            statuses = {s.name.removeprefix('mmp_segmentation: '): s for s in array.status}
            model = statuses['model']
            yield ({kv.key: kv.value for kv in statuses['thermal'].values},
                   {'level': model.level[0], 'message': model.message,
                    **{kv.key: kv.value for kv in model.values}})

    def unmatched(thermal_and_model) -> bool:
        # Thermal healthy, and the last bundle left it out. Not one from before thermal's
        # first frame (thermal masked, never seen), nor the first bundles made then.
        thermal, status = thermal_and_model
        return thermal['masked'] == 'false' and 'thermal=projected' in status['mask'] and \
            'sensor unhealthy' not in status['message']

    assert spin_until(lambda: any(map(unmatched, model_statuses())), 10.0, feed=feed), \
        [s['message'] for s in driver.model_statuses[-3:]]
    _, status = next(filter(unmatched, model_statuses()))
    assert status['level'] == 1, status['message']
    assert 'thermal' in status['message'] and 'max_age_s 0.1' in status['message']


class SimClock:
    """Plays a bag's role for a node on ``use_sim_time``: publishes ``/clock`` and frames
    stamped with it, as ``mmp_ros replay --clock`` does."""

    def __init__(self, driver: Driver, start_ns: int = 1_700_000_000 * 10**9) -> None:
        from rosgraph_msgs.msg import Clock

        from mmp_ros.ros.replay import CLOCK_QOS, CLOCK_TOPIC

        self._clock_type = Clock
        self._publisher = driver.create_publisher(Clock, CLOCK_TOPIC, CLOCK_QOS)
        self._driver = driver
        self.now_ns = start_ns
        self.frames = iter(range(10**6))

    def tick(self, step_ns: int = 33_000_000) -> None:
        self.now_ns += step_ns
        msg = self._clock_type()
        msg.clock.sec, msg.clock.nanosec = divmod(self.now_ns, 10**9)
        self._publisher.publish(msg)

    def send_rgb(self) -> None:
        fields = rgb_frame(next(self.frames))
        stamp = rclpy.time.Time(nanoseconds=self.now_ns).to_msg()
        self._driver.publishers_['rgb'].publish(to_image_msg(fields, stamp=stamp,
                                                             frame_id='rgb_optical'))


def rgb_only(**parameters):
    return dict(sensors__depth__enabled=False, sensors__polarization__enabled=False,
                sensors__thermal__enabled=False, **parameters)


def segmenting_on_sim_time(run_node, labels: int = 3):
    """A node on sim time (rgb alone) fed by a SimClock until it has published ``labels``
    labels: (node, driver, spin_until, bag, feed), ``feed`` sending one tick and one frame."""
    node, driver, spin_until = run_node(**rgb_only(use_sim_time=True))
    bag = SimClock(driver)
    assert spin_until(lambda: node.count_subscribers('rgb/image') > 0, 10.0)

    def feed():
        bag.tick()
        bag.send_rgb()

    assert spin_until(lambda: len(driver.labels) >= labels, 10.0, feed=feed)
    return node, driver, spin_until, bag, feed


def jump_back(node, bag: SimClock, spin_until, seconds: int = 5) -> int:
    """Send the clock ``seconds`` back, as a looped bag does; what it reads then, once the
    node has heard it."""
    jumped_to = bag.now_ns - seconds * 10**9
    bag.tick(jumped_to - bag.now_ns)
    assert spin_until(lambda: node.get_clock().now().nanoseconds == jumped_to, 5.0)
    return jumped_to


def label_stamp_ns(image: Image) -> int:
    return image.header.stamp.sec * 10**9 + image.header.stamp.nanosec


def test_on_sim_time_frames_before_the_first_clock_message_are_not_judged(run_node):
    # Without a clock the node's time is zero: a 2023 stamp looked 53 years in the future,
    # masked the camera, and cost it recovery_frames frames once the clock came.
    node, driver, spin_until = run_node(**rgb_only(use_sim_time=True))
    bag = SimClock(driver)
    assert spin_until(lambda: node.count_subscribers('rgb/image') > 0, 10.0)
    for _ in range(3):
        bag.send_rgb()
        spin_until(lambda: False, 0.1)
    assert not driver.labels

    def feed():
        bag.tick()
        bag.send_rgb()

    assert spin_until(lambda: driver.labels, 10.0, feed=feed), 'no segmentation on sim time'
    assert label_stamp_ns(driver.labels[0]) > 1_700_000_000 * 10**9
    assert not [s for s in driver.model_statuses if 'future' in s['message']]


def test_on_sim_time_a_simulation_s_first_frame_stamped_zero_is_segmented(run_node):
    # Gazebo / Isaac Sim: /clock starts at 0 and the camera's first frame, stamped 0.0, comes
    # a few ms later. It was 'stamp is zero': rgb INVALID, then RECOVERING for 4 frames, the
    # model ERROR 'no usable sensor' and the first 5 frames not segmented.
    node, driver, spin_until = run_node(**rgb_only(use_sim_time=True))
    bag = SimClock(driver, start_ns=0)
    assert spin_until(lambda: node.count_subscribers('rgb/image') > 0, 10.0)
    bag.tick(5_000_000)
    assert spin_until(lambda: node.get_clock().now().nanoseconds == bag.now_ns, 5.0,
                      feed=lambda: bag.tick(0))
    bag.now_ns = 0
    bag.send_rgb()
    bag.now_ns = 5_000_000
    assert spin_until(lambda: driver.labels, 5.0), 'the frame stamped 0 was not segmented'
    assert label_stamp_ns(driver.labels[0]) == 0
    assert not [s for s in driver.model_statuses if 'stamp is zero' in s['message']]


def test_on_sim_time_a_jump_back_of_the_clock_starts_sensor_health_afresh(run_node):
    # A bag replayed with --loop --clock: at each loop the clock and the stamps go back to
    # the bag's start. That is not a camera whose stamps went backwards.
    node, driver, spin_until, bag, feed = segmenting_on_sim_time(run_node)
    jumped_to = jump_back(node, bag, spin_until)
    before = len(driver.labels)
    # Fewer frames than recovery_frames (5): a masked camera would publish nothing.
    for _ in range(4):
        feed()
        spin_until(lambda: False, 0.05)

    def stamped_after_the_jump() -> bool:
        return any(label_stamp_ns(label) < jumped_to + 10**9 for label in driver.labels[before:])

    assert spin_until(stamped_after_the_jump, 2.0), 'no segmentation after the clock went back'
    assert not [s for s in driver.model_statuses if 'backwards' in s['message']]


def test_on_sim_time_a_forward_jump_of_the_clock_makes_no_camera_look_silent(run_node):
    # A bag seeked 3 s forward: rgb was 'recovering from "stale: messages stopped for 3.07 s"',
    # the model ERROR 'no usable sensor', and the next recovery_frames (5) frames but one
    # were not segmented. A jump within every timeout_s (0.5 s) is a tick, not a restart.
    node, driver, spin_until, bag, feed = segmenting_on_sim_time(run_node)
    model = node._model
    bag.tick(400_000_000)
    assert spin_until(lambda: node.get_clock().now().nanoseconds == bag.now_ns, 5.0)
    assert node._model is model, 'a 0.4 s tick started the figures afresh'
    heard = len(driver.diagnostics)
    jumped_to = bag.now_ns + 3 * 10**9
    bag.tick(3 * 10**9)
    assert spin_until(lambda: node.get_clock().now().nanoseconds == jumped_to, 5.0)
    before = len(driver.labels)
    for _ in range(3):  # fewer than recovery_frames
        feed()
        spin_until(lambda: False, 0.05)
    assert spin_until(
        lambda: any(label_stamp_ns(label) > jumped_to for label in driver.labels[before:]),
        2.0), 'the camera was masked after the clock jumped forward'
    said = [s.message for a in driver.diagnostics[heard:] for s in a.status]
    assert not [m for m in said if 'stale' in m], said


def test_on_sim_time_a_frame_under_way_at_a_jump_back_does_not_mask_its_camera(run_node):
    # At a --loop --clock pass's end a frame of the old pass can arrive after the jump: it was
    # 'stamp 3.960 s in the future', and the camera masked for recovery_frames (5) frames.
    node, driver, spin_until, bag, feed = segmenting_on_sim_time(run_node)
    old_ns = bag.now_ns
    jumped_to = jump_back(node, bag, spin_until)
    bag.now_ns = old_ns  # the old pass's last frame, sent before the jump
    bag.send_rgb()
    bag.now_ns = jumped_to
    spin_until(lambda: False, 0.1)
    before = len(driver.labels)
    for _ in range(2):  # fewer than recovery_frames
        feed()
        spin_until(lambda: False, 0.05)
    assert spin_until(lambda: len(driver.labels) > before, 2.0), 'the camera was masked'
    assert not [s for s in driver.model_statuses if 'future' in s['message']]


def test_a_frame_under_way_at_a_jump_back_is_not_counted_as_an_anchor_frame(run_node):
    # The health monitor drops it unjudged, but it was counted in anchor_frames: with nothing
    # to run on, it read as one of anchor_frames_dropped, as if max_rate_hz had dropped it.
    node, driver, spin_until, bag, feed = segmenting_on_sim_time(run_node)
    old_ns = bag.now_ns
    jump_back(node, bag, spin_until)
    stamp = rclpy.time.Time(nanoseconds=old_ns).to_msg()  # the old pass's last frame
    driver.publishers_['rgb'].publish(to_image_msg(rgb_frame(0), stamp=stamp, frame_id='old'))
    assert spin_until(lambda: node._frame_ids['rgb'] == 'old', 5.0)
    assert node._model.anchor_frames == 0 and node._model.anchored == 0
    feed()
    assert spin_until(lambda: node._model.anchor_frames == 1, 2.0)


def test_a_run_under_way_when_the_clock_jumps_back_stays_out_of_the_fresh_figures(run_node):
    # replay --loop --clock: the clock went back while the model ran on the last frame of the
    # pass; that run, timed on the new clock, put -4 s into the fresh latency window (the model
    # status read latency_p50_ms -3959.4, inferences 1 before any frame of the new pass).
    import threading

    node, driver, spin_until, bag, feed = segmenting_on_sim_time(run_node, labels=2)
    infer, running, go_on = node._backend.infer, threading.Event(), threading.Event()

    def held_infer(*args):  # the real model, held until the clock has jumped
        running.set()
        go_on.wait(10.0)
        return infer(*args)

    node._backend.infer = held_infer
    assert spin_until(running.is_set, 10.0, feed=feed)
    jump_back(node, bag, spin_until)
    node._backend.infer = infer
    before = len(driver.labels)
    go_on.set()
    assert spin_until(lambda: len(driver.labels) > before, 5.0)
    spin_until(lambda: False, 0.2)
    assert node._model.inferences == 0 and len(node._latency) == 0


class SteppedClock:
    """A node's wall clock, stepped by ``step`` as NTP steps the system clock (no jump
    callback: rclpy calls none for the system clock)."""

    def __init__(self, clock) -> None:
        self._clock, self.offset_ns = clock, 0

    def now(self):
        return rclpy.time.Time(nanoseconds=self._clock.now().nanoseconds + self.offset_ns,
                               clock_type=self._clock.clock_type)

    def step(self, seconds: float) -> None:
        self.offset_ns += int(seconds * 1e9)

    def __getattr__(self, name):
        return getattr(self._clock, name)


def test_a_step_forward_of_the_wall_clock_makes_no_camera_look_silent(run_node):
    # NTP stepped the system clock 3 s forward, the camera stamping on it as the node: the
    # next frame, 33 ms after the last, was 'stale: messages stopped for 3.03 s' (STALE
    # meanwhile), masked for recovery_frames (5) frames, and nothing was segmented.
    node, driver, spin_until = run_node(**rgb_only(sensors__rgb__timeout_s=2.0))
    frames = iter(range(10**6))

    def feed():
        driver.send('rgb', rgb_frame(next(frames)))

    assert spin_until(lambda: driver.labels, 10.0, feed=feed)
    node._clock, driver._clock = SteppedClock(node._clock), SteppedClock(driver._clock)
    heard = len(driver.diagnostics)
    for clock in (node._clock, driver._clock):
        clock.step(3.0)
    stepped_ns = node.get_clock().now().nanoseconds
    assert spin_until(lambda: label_stamp_ns(driver.labels[-1]) > stepped_ns, 5.0, feed=feed)
    said = [s.message for a in driver.diagnostics[heard:] for s in a.status
            if s.name == 'mmp_segmentation: rgb']
    assert not [m for m in said if 'stale' in m], said


def test_the_timer_anchor_says_why_frames_stamped_on_another_clock_give_no_output(run_node):
    # A camera stamping an hour behind the node (a replay without --restamp on wall time):
    # nothing was published, the model status WARN 'waiting for the first bundle' for good.
    node, driver, spin_until = run_node(**rgb_only(anchor='timer', max_rate_hz=20.0))
    frames = iter(range(10**6))

    def said() -> bool:
        return any('max_age_s' in s['message'] for s in driver.model_statuses)

    assert spin_until(said, 10.0, feed=lambda: driver.send('rgb', rgb_frame(next(frames)),
                                                            age_s=3600.0))
    status = next(s for s in driver.model_statuses if 'max_age_s' in s['message'])
    assert status['level'] == 2 and 'no segmentation published' in status['message']
    assert 'rgb: nearest frame -3600.' in status['message'], status['message']
    assert not driver.labels


def test_on_sim_time_the_timer_anchor_keeps_its_rate_on_the_simulated_clock(run_node):
    # A bag on /clock at a fifth of real time: max_rate_hz was paced on the monotonic clock,
    # five times the outputs per second of bag time, 20 to 30 ms apart in their stamps.
    node, driver, spin_until = run_node(**rgb_only(
        use_sim_time=True, anchor='timer', max_rate_hz=10.0,
        sensors__rgb__timeout_s=5.0, sensors__rgb__expected_rate_hz=0.0,
    ))
    bag = SimClock(driver)
    assert spin_until(lambda: node.count_subscribers('rgb/image') > 0, 10.0)
    last_feed = [0.0]

    def slow_feed():  # 10 ms of bag time every 50 ms
        if time.monotonic() - last_feed[0] >= 0.05:
            last_feed[0] = time.monotonic()
            bag.tick(10_000_000)
            bag.send_rgb()

    assert spin_until(lambda: len(driver.labels) >= 1, 10.0, feed=slow_feed)
    first, window_end_ns = len(driver.labels), bag.now_ns + 500_000_000
    # 0.5 s of bag time, however long the ticks take on a loaded host (2.5 s unloaded)
    assert spin_until(lambda: bag.now_ns >= window_end_ns, 20.0, feed=slow_feed)
    stamps = [label_stamp_ns(label) for label in driver.labels[first - 1:]]
    gaps_ms = np.diff(stamps) / 1e6
    assert 3 <= len(gaps_ms) <= 7, gaps_ms
    assert gaps_ms.min() >= 90.0, gaps_ms


def test_the_timer_anchor_stamps_each_output_with_the_instant_its_frames_were_matched_at(
    run_node,
):
    """An output's stamp is its bundle's anchor stamp, the instant whose frames within
    max_age_s it was inferred on; it was the time after inference, 0.3 s later here."""
    node, driver, spin_until = run_node(**rgb_only(
        anchor='timer', max_rate_hz=20.0, sensors__rgb__max_age_s=0.05,
        sensors__rgb__timeout_s=5.0, sensors__rgb__expected_rate_hz=0.0,
    ))
    infer = node._backend.infer

    def slow_infer(*args):  # a model that takes 0.3 s (a big one on a CPU)
        time.sleep(0.3)
        return infer(*args)

    node._backend.infer = slow_infer
    assert spin_until(lambda: node.count_subscribers('rgb/image') > 0, 10.0)
    sent: list[int] = []
    frames = iter(range(10**6))

    def feed():  # one frame every 0.6 s: only outputs matched near one can use it
        if sent and node.get_clock().now().nanoseconds - sent[-1] < 600_000_000:
            return
        stamp = node.get_clock().now()
        driver.publishers_['rgb'].publish(
            to_image_msg(rgb_frame(next(frames)), stamp=stamp.to_msg(), frame_id='rgb_optical')
        )
        sent.append(stamp.nanoseconds)

    assert spin_until(lambda: len(driver.labels) >= 3, 10.0, feed=feed), 'no segmentation'
    for label in driver.labels:
        offset = min(abs(label_stamp_ns(label) - s) for s in sent) / 1e9
        assert offset <= 0.05, f'output stamped {offset:.3f} s from the frame it used'


def test_a_sensor_the_model_does_not_take_has_an_ok_status_for_the_aggregator(run_node, tmp_path):
    """config/analyzers.yaml expects a status for each of the four sensors; a thermal-only
    model published none for the other three, which diagnostic_aggregator then listed as
    missing, its Sensors group at ERROR for good."""
    node, driver, spin_until = run_node(
        model_file_path=str(thermal_only_model(tmp_path / 'thermal.onnx')), anchor='thermal',
        diagnostics_period_s=0.05,
    )
    assert spin_until(lambda: driver.diagnostics, 5.0), 'no /diagnostics'
    statuses = {s.name: s for s in driver.diagnostics[-1].status}
    assert sorted(statuses) == sorted(
        [f'mmp_segmentation: {c}' for c in ('rgb', 'depth', 'polarization', 'thermal', 'model')]
    )
    for modality in ('rgb', 'depth', 'polarization'):
        status = statuses[f'mmp_segmentation: {modality}']
        values = {kv.key: kv.value for kv in status.values}
        assert status.level == b'\x00', status.message
        assert f'the model takes no {modality} input' in status.message
        assert values['state'] == 'DISABLED' and values['masked'] == 'true'


def test_a_camera_publishing_with_incompatible_qos_is_named_in_the_sensors_status(run_node):
    """A best-effort camera and sensors.rgb.qos reliable: nothing arrives. The status said only
    'nothing received since start'; rclpy's one log line was the only hint why."""
    node, driver, spin_until = run_node(**rgb_only(sensors__rgb__qos='reliable',
                                                   diagnostics_period_s=0.05))

    def named() -> bool:
        status = driver.latest_status('rgb')
        return status is not None and 'incompatible QoS' in status.message

    assert spin_until(named, 5.0), driver.latest_status('rgb')
    status = driver.latest_status('rgb')
    assert status.level == b'\x02'
    assert status.message.startswith('nothing received since start; a publisher on /rgb/image')
    assert 'RELIABILITY' in status.message and 'sensors.rgb.qos is reliable' in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert 'RELIABILITY' in values['qos']


def test_a_publisher_with_incompatible_qos_that_has_gone_is_no_longer_named(run_node):
    # The problem was kept for the life of the node: hours after a best-effort tool had
    # published on the topic, a camera that stopped was reported 'stale: ...; a publisher on
    # /rgb/image offers incompatible QoS', naming a publisher long gone.
    node, driver, spin_until = run_node(**rgb_only(sensors__rgb__qos='reliable',
                                                   diagnostics_period_s=0.05))

    def qos_value():
        status = driver.latest_status('rgb')
        if status is None:
            return 'no status yet'
        return {kv.key: kv.value for kv in status.values}.get('qos')

    assert spin_until(lambda: qos_value() not in (None, 'no status yet'), 5.0)
    driver.destroy_publisher(driver.publishers_['rgb'])  # the best-effort one
    assert spin_until(lambda: qos_value() is None, 5.0), qos_value()


def test_a_publisher_of_another_message_type_on_a_sensor_topic_is_named_in_its_status(
        run_node, capfd):
    """-r rgb/image:=/camera/image_raw/compressed (a CompressedImage topic) left RGB at
    'nothing received since start', with not a word in the log either: DDS never matches a
    publisher of another type, and Fast DDS raises no incompatible-type event."""
    node, driver, spin_until = run_node(**rgb_only(diagnostics_period_s=0.05))
    other = Context()  # a participant of its own: Fast DDS refuses two types in one
    rclpy.init(context=other)
    try:
        camera = rclpy.create_node('compressed_camera', context=other)
        camera.create_publisher(CompressedImage, 'rgb/image', qos_profile_sensor_data)

        def named() -> bool:
            status = driver.latest_status('rgb')
            return status is not None and 'CompressedImage' in status.message

        assert spin_until(named, 5.0), driver.latest_status('rgb')
        status = driver.latest_status('rgb')
        assert status.level == b'\x02'
        assert status.message == (
            'nothing received since start; a publisher on /rgb/image sends '
            'sensor_msgs/msg/CompressedImage, not sensor_msgs/msg/Image: nothing is received '
            'from it (sensors.rgb.transport is raw)')
        values = {kv.key: kv.value for kv in status.values}
        assert values['type'].startswith('a publisher on /rgb/image sends')
        assert capfd.readouterr().err.count('sends sensor_msgs/msg/CompressedImage') == 1
        camera.destroy_node()

        def gone() -> bool:
            status = driver.latest_status('rgb')
            return 'type' not in {kv.key for kv in status.values}

        assert spin_until(gone, 5.0), driver.latest_status('rgb')
    finally:
        rclpy.shutdown(context=other)


def test_a_node_leaves_no_logger_behind_in_the_process():
    # Each node registered a logger 'mmp_ros.inference.<id(node)>' with logging, which keeps
    # every logger for the life of the process: one more per node started (by tests, or
    # launch_testing), and a later node that reused an id forwarded the backend's lines twice.
    import logging

    def inference_loggers() -> set[str]:
        return {name for name in logging.Logger.manager.loggerDict
                if name.startswith('mmp_ros.inference.')}

    before = inference_loggers()
    context = Context()
    rclpy.init(context=context)
    try:
        for _ in range(3):
            node = SegmentationNode(
                context=context, parameter_overrides=[Parameter('backend', value='onnxruntime')]
            )
            handlers = node._backend._log.handlers
            node.destroy_node()
            assert len(handlers) == 1
    finally:
        rclpy.shutdown(context=context)
    assert inference_loggers() <= before


def test_the_output_rate_in_the_model_status_is_the_recent_one(run_node):
    # It was averaged since the first output: 2 s at 30 Hz then 10.4 s at 2.5 Hz read
    # 6.9 Hz, and hours into a run a model slowed to a third hardly moved it.
    node, driver, spin_until = run_node(**rgb_only(
        use_sim_time=True, sensors__rgb__timeout_s=2.0, diagnostics_period_s=0.05))
    bag = SimClock(driver)
    assert spin_until(lambda: node.count_subscribers('rgb/image') > 0, 10.0)
    for step_ns, frames in ((33_333_333, 60), (400_000_000, 26)):
        for _ in range(frames):
            bag.tick(step_ns)
            assert spin_until(lambda: node.get_clock().now().nanoseconds == bag.now_ns, 5.0)
            wanted = len(driver.labels) + 1
            bag.send_rgb()
            assert spin_until(lambda n=wanted: len(driver.labels) >= n, 5.0), 'no segmentation'
    total = str(len(driver.labels))
    assert spin_until(lambda: driver.model_statuses
                      and driver.model_statuses[-1]['inferences'] == total, 5.0)
    assert float(driver.model_statuses[-1]['output_rate_hz']) == pytest.approx(2.5, rel=0.01)


@pytest.mark.parametrize('first_anchor', ['thermal', 'timer'])
def test_anchor_frames_dropped_counts_drops_after_another_anchor(run_node, first_anchor):
    # It was anchor frames minus every inference: the runs thermal anchored while rgb was
    # down (rgb never seen), or the timer's while anchor was 'timer' (then switched to rgb at
    # run time), outnumbered rgb's frames for good, and it read 0 for the rest of the run
    # however many rgb frames max_rate_hz dropped.
    timer = {'anchor': 'timer', 'max_rate_hz': 20.0} if first_anchor == 'timer' else {}
    node, driver, spin_until = run_node(
        sensors__depth__enabled=False, sensors__polarization__enabled=False,
        diagnostics_period_s=0.05, **timer,
    )
    frames = iter(range(10**6))

    def thermal():
        celsius = 20.0 + 5.0 * np.random.default_rng(next(frames)).random((HEIGHT, WIDTH))
        driver.send('thermal', encode_frame('thermal', celsius, 'mono16', ThermalSettings()))

    assert spin_until(lambda: node.count_subscribers('thermal/image') > 0, 10.0)
    assert spin_until(lambda: len(driver.labels) >= 30, 10.0, feed=thermal), 'no segmentation'
    result = node.set_parameters_atomically([Parameter('anchor', value='rgb'),
                                             Parameter('max_rate_hz', value=1.0)])
    assert result.successful, result.reason
    for _ in range(20):  # 20 rgb frames in about 1 s: the model may run on two of them
        driver.send('rgb', rgb_frame(next(frames)))
        thermal()
        spin_until(lambda: False, 0.05)

    def dropped() -> int:
        status = driver.model_statuses[-1]
        return int(status['anchor_frames']) == 20 and int(status['anchor_frames_dropped'])

    assert spin_until(lambda: driver.model_statuses and dropped() >= 15, 5.0), {
        k: v for k, v in driver.model_statuses[-1].items() if k.startswith(('anchor', 'inf'))}


def test_a_backend_still_running_at_destroy_is_not_closed_under_it(monkeypatch):
    # destroy_node joined the worker threads for 5 s, then closed the backend whether or not
    # they had stopped: an inference still under way (TensorRT's device buffers) had its
    # resources freed under it. Now the backend is left for the process exit to release.
    import threading

    monkeypatch.setattr(SegmentationNode, 'JOIN_TIMEOUT_S', 0.05)
    context = Context()
    rclpy.init(context=context)
    release = threading.Event()
    try:
        node = SegmentationNode(
            context=context, parameter_overrides=[Parameter('backend', value='onnxruntime')]
        )
        backend, closed = node._backend, []
        backend.close = lambda: closed.append(True)
        busy = threading.Thread(target=release.wait, name='mmp_inference_busy', daemon=True)
        busy.start()
        node._threads.append(busy)  # stands for an inference that outlasts the join
        node.destroy_node()
        assert closed == []
        assert node._backend is backend
    finally:
        release.set()
        rclpy.shutdown(context=context)


def compressed_msg(format_: str, data: bytes, frame_id: str, stamp) -> CompressedImage:
    msg = CompressedImage(format=format_, data=data)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    return msg


def test_a_camera_on_the_compressed_transport_is_decoded_like_a_raw_one(run_node):
    """sensors.rgb.transport compressed: CompressedImage on rgb/image/compressed (JPEG), the
    labels at the camera's size with its stamp and frame_id; the node took only Image."""
    node, driver, spin_until = run_node(**rgb_only(sensors__rgb__transport='compressed',
                                                   diagnostics_period_s=0.05))
    assert node._image_subscriptions['rgb'].topic_name == '/rgb/image/compressed'
    publisher = driver.create_publisher(CompressedImage, 'rgb/image/compressed',
                                        qos_profile_sensor_data)
    frames = iter(range(10**6))
    sent = []

    def feed():
        stamp = driver.get_clock().now().to_msg()
        sent.append(stamp)
        format_, data = compress_image(rgb_frame(next(frames)), 'jpeg')
        publisher.publish(compressed_msg(format_, data, 'rgb_optical', stamp))

    assert spin_until(lambda: driver.labels, 10.0, feed=feed), 'no segmentation'
    label = driver.labels[-1]
    assert (label.height, label.width) == (HEIGHT, WIDTH)
    assert label.header.frame_id == 'rgb_optical' and label.header.stamp in sent

    def ok() -> bool:
        status = driver.latest_status('rgb')
        return status is not None and status.level == b'\x00'

    assert spin_until(ok, 5.0, feed=feed), driver.latest_status('rgb')


def test_a_malformed_compressed_frame_makes_its_sensor_invalid_with_the_reason(run_node):
    node, driver, spin_until = run_node(**rgb_only(sensors__rgb__transport='compressed',
                                                   diagnostics_period_s=0.05))
    publisher = driver.create_publisher(CompressedImage, 'rgb/image/compressed',
                                        qos_profile_sensor_data)
    _, data = compress_image(rgb_frame(0), 'jpeg')

    def feed():
        stamp = driver.get_clock().now().to_msg()
        publisher.publish(compressed_msg('rgb8; jpeg compressed bgr8', data[:-40], 'rgb_optical',
                                         stamp))

    def invalid() -> bool:
        status = driver.latest_status('rgb')
        return status is not None and 'truncated JPEG' in status.message

    assert spin_until(invalid, 10.0, feed=feed), driver.latest_status('rgb')
    status = driver.latest_status('rgb')
    assert status.level == b'\x02' and status.hardware_id == 'rgb_optical'
    assert {kv.key: kv.value for kv in status.values}['state'] == 'INVALID'


@pytest.mark.parametrize('transport', ['raw', 'compressed'])
def test_a_frame_over_the_sensors_max_pixels_is_refused_in_its_status(run_node, transport):
    """sensors.<m>.max_pixels: a frame of more pixels is INVALID with its size in the status
    (refused before it is decoded), and a raised limit takes effect at run time. Before,
    any frame up to 67 Mpx was decoded: a 65 kB PNG took 11 s and 1.1 GB."""
    node, driver, spin_until = run_node(**rgb_only(
        sensors__rgb__transport=transport, sensors__rgb__max_pixels=HEIGHT * WIDTH - 1,
        diagnostics_period_s=0.05))
    publisher = driver.create_publisher(
        Image if transport == 'raw' else CompressedImage,
        'rgb/image' if transport == 'raw' else 'rgb/image/compressed', qos_profile_sensor_data)
    frames = iter(range(10**6))

    def feed():
        fields = rgb_frame(next(frames))
        stamp = driver.get_clock().now().to_msg()
        if transport == 'raw':
            publisher.publish(to_image_msg(fields, stamp=stamp, frame_id='rgb_optical'))
        else:
            format_, data = compress_image(fields, 'png')
            publisher.publish(compressed_msg(format_, data, 'rgb_optical', stamp))

    def status_says(text: str, level: bytes):
        def check() -> bool:
            status = driver.latest_status('rgb')
            return status is not None and status.level == level and text in status.message
        return check

    size = f'{WIDTH}x{HEIGHT} pixels, over max_pixels {HEIGHT * WIDTH - 1:,}'
    assert spin_until(status_says(size, b'\x02'), 10.0, feed=feed), driver.latest_status('rgb')
    result = node.set_parameters([Parameter('sensors.rgb.max_pixels', value=HEIGHT * WIDTH)])
    assert result[0].successful, result[0].reason
    assert spin_until(status_says('', b'\x00'), 10.0, feed=feed), driver.latest_status('rgb')


def test_a_compressed_frame_of_an_encoding_the_sensor_does_not_take_is_refused_undecoded(
        run_node):
    node, driver, spin_until = run_node(**rgb_only(sensors__rgb__transport='compressed',
                                                   diagnostics_period_s=0.05))
    publisher = driver.create_publisher(CompressedImage, 'rgb/image/compressed',
                                        qos_profile_sensor_data)
    format_, data = compress_image(array_to_image(np.zeros((HEIGHT, WIDTH, 4), np.float32),
                                                  '32FC4'), 'tiff')

    def feed():
        stamp = driver.get_clock().now().to_msg()
        publisher.publish(compressed_msg(format_, data, 'rgb_optical', stamp))

    def refused() -> bool:
        status = driver.latest_status('rgb')
        return status is not None and 'names 32FC4, which this sensor does not take' in (
            status.message)

    assert spin_until(refused, 10.0, feed=feed), driver.latest_status('rgb')


def test_depth_on_the_compressed_depth_transport_is_decoded_in_metres(run_node):
    """32FC1 through compressedDepth rvl: the decoded frame is the quantized depth, valid
    where the camera had readings."""
    node, driver, spin_until = run_node(sensors__polarization__enabled=False,
                                        sensors__thermal__enabled=False,
                                        sensors__depth__transport='compressedDepth')
    assert node._image_subscriptions['depth'].topic_name == '/depth/image/compressedDepth'
    publisher = driver.create_publisher(CompressedImage, 'depth/image/compressedDepth',
                                        qos_profile_sensor_data)
    frames = iter(range(10**6))

    def feed():
        stamp = driver.get_clock().now().to_msg()
        k = next(frames)
        driver.send('rgb', rgb_frame(k))
        metres = np.full((HEIGHT, WIDTH), 2.0 + 0.01 * (k % 50), np.float32)  # not frozen
        metres[:, :8] = np.nan
        format_, data = compress_image(array_to_image(metres, '32FC1'), 'compressedDepth rvl')
        publisher.publish(compressed_msg(format_, data, 'depth_optical', stamp))

    def depth_status():
        return driver.latest_status('depth')

    def depth_heard() -> bool:  # a status from before the first depth frame has no hardware_id
        status = depth_status()
        return bool(driver.labels) and status is not None and status.hardware_id != ''

    assert spin_until(depth_heard, 10.0, feed=feed), depth_status()
    values = {kv.key: kv.value for kv in depth_status().values}
    assert depth_status().hardware_id == 'depth_optical', depth_status().message
    assert values['state'] not in ('INVALID', 'STALE'), depth_status().message
    with node._lock:
        latest = node._assembler.latest('depth')
    assert latest is not None and latest.frame_id == 'depth_optical'
    decoded = latest.frame.data[:, 8:, 0]  # one depth a frame, within a quantization step
    assert decoded.min() >= 2.0 - 0.001 and decoded.max() <= 2.5 + 0.001
    assert decoded.max() - decoded.min() <= 2.5**2 / 10100
    np.testing.assert_array_equal(latest.frame.valid[:, :8], False)
    assert latest.frame.valid[:, 8:].all()


def test_a_transport_out_of_the_set_is_refused_in_words(run_node):
    from mmp_ros.ros.segmentation_node import NodeStartError

    for parameters, message in (
        ({'sensors__rgb__transport': 'compressedDepth'},
         r"sensors.rgb.transport='compressedDepth' is not one of \['raw', 'compressed'\]"),
        ({'sensors__depth__transport': 'theora'},
         r"sensors.depth.transport='theora' is not one of \['raw', 'compressed', "
         r"'compressedDepth'\]"),
    ):
        with pytest.raises(NodeStartError, match=message):
            run_node(**parameters)


def test_a_remap_of_the_base_topic_applies_to_the_transport_topic():
    """As image_transport: -r depth/image:=/camera/depth/image_raw with compressedDepth
    subscribes to /camera/depth/image_raw/compressedDepth."""
    context = Context()
    rclpy.init(context=context, args=['--ros-args', '-r', 'depth/image:=/camera/depth/raw'])
    try:
        node = SegmentationNode(context=context, parameter_overrides=[
            Parameter('backend', value='onnxruntime'),
            Parameter('sensors.depth.transport', value='compressedDepth'),
            Parameter('sensors.rgb.transport', value='compressed'),
        ])
        try:
            topics = {m: s.topic_name for m, s in node._image_subscriptions.items()}
            assert topics['depth'] == '/camera/depth/raw/compressedDepth'
            assert topics['rgb'] == '/rgb/image/compressed'
            assert topics['thermal'] == '/thermal/image'
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_nodes_of_one_name_in_two_namespaces_name_their_statuses_with_their_full_name():
    # Their statuses used to share their names ('mmp_segmentation: rgb', as diagnostic_updater
    # names them by default): rqt_robot_monitor and diagnostic_aggregator, which key statuses
    # by name, showed one robot's rgb for both. The model's hardware_id was the node's name
    # alone, the same for both, too.
    context = Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    probe = Node('mmp_test_diagnostics_probe', context=context)
    hardware_ids: dict[str, str] = {}
    probe.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda msg: hardware_ids.update((s.name, s.hardware_id) for s in msg.status),
        output_qos(10))
    overrides = [Parameter('backend', value='onnxruntime'),
                 Parameter('diagnostics_period_s', value=0.05)]
    nodes = [probe, *(SegmentationNode(context=context, namespace=namespace,
                                       parameter_overrides=overrides)
                      for namespace in ('/robot1', '/robot2'))]
    try:
        for node in nodes:
            executor.add_node(node)
        deadline = time.monotonic() + 10.0
        while len(hardware_ids) < 10 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)
    finally:
        for node in nodes:
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown(timeout_sec=0.0)
        rclpy.shutdown(context=context)
    components = ('rgb', 'depth', 'polarization', 'thermal', 'model')
    assert set(hardware_ids) == {f'/{robot}/mmp_segmentation: {c}'
                                 for robot in ('robot1', 'robot2') for c in components}
    for robot in ('robot1', 'robot2'):
        assert hardware_ids[f'/{robot}/mmp_segmentation: model'] == f'/{robot}/mmp_segmentation'


def test_on_sim_time_the_latency_figures_never_read_below_zero(run_node):
    # The node's now is the last /clock tick, which trails the bag's time by up to a tick: a
    # frame stamped between two ticks and segmented before the next one read a latency of
    # minus its distance to the tick (latency_p50_ms -10.0 at 10 ms past the tick).
    node, driver, spin_until = run_node(**rgb_only(use_sim_time=True,
                                                   diagnostics_period_s=0.05))
    bag = SimClock(driver)
    assert spin_until(lambda: node.count_subscribers('rgb/image') > 0, 10.0)
    for _ in range(5):
        bag.tick()
        assert spin_until(lambda: node.get_clock().now().nanoseconds == bag.now_ns, 5.0)
        bag.now_ns += 10_000_000  # the frame's time, 10 ms past the tick the node heard
        wanted = len(driver.labels) + 1
        bag.send_rgb()
        assert spin_until(lambda n=wanted: len(driver.labels) >= n, 5.0), 'no segmentation'
    assert spin_until(lambda: driver.model_statuses
                      and driver.model_statuses[-1]['inferences'] == '5', 5.0)
    status = driver.model_statuses[-1]
    assert float(status['latency_p50_ms']) == 0.0 and float(status['latency_p95_ms']) == 0.0


# --- segmentation/camera_info -------------------------------------------------------------

def camera_info(height: int, width: int, fx: float, **fields) -> CameraInfo:
    """A pinhole calibration of a height x width camera, focal length ``fx``."""
    cx, cy = width / 2, height / 2
    return CameraInfo(
        height=height, width=width, distortion_model='plumb_bob', d=[0.1, -0.2, 0.0, 0.0, 0.0],
        k=[fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0], r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
        p=[fx, 0.0, cx, 0.0, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0], **fields,
    )


class CameraInfoDriver:
    """The driver's camera_info side: publishes each camera's calibration beside its image
    (rgb reliable, as image_transport's CameraPublisher by default; the others best effort, as
    sensor-data drivers) and keeps what comes on segmentation/camera_info, and the labels.

    Both are kept however far this side's spinning falls behind the node's outputs: at depth 2
    a labels image could be replaced before it was taken while its camera_info, taken a
    callback later, was kept ('no labels under the header of ...' with this loop stalled)."""

    def __init__(self, driver, infos: dict[str, CameraInfo]) -> None:
        self.infos = infos
        self.publishers = {
            m: driver.create_publisher(
                CameraInfo, f'{m}/camera_info',
                output_qos(5) if m == 'rgb' else qos_profile_sensor_data)
            for m in infos
        }
        self.labels: list[Image] = []
        driver.create_subscription(Image, 'segmentation/labels', self.labels.append,
                                   output_qos(1000))
        self.received: list[CameraInfo] = []
        driver.create_subscription(CameraInfo, 'segmentation/camera_info',
                                   self.received.append, output_qos(1000))
        self._driver = driver

    def send(self, modality: str, fields, frame_id: str) -> None:
        """One image and, when the camera has one, its CameraInfo, under one header."""
        stamp = self._driver.get_clock().now().to_msg()
        self._driver.publishers_[modality].publish(
            to_image_msg(fields, stamp=stamp, frame_id=frame_id))
        if modality in self.infos:
            info = self.infos[modality]
            info.header.stamp, info.header.frame_id = stamp, frame_id
            self.publishers[modality].publish(info)

    def labelled(self) -> bool:
        """Whether the labels under the header of every camera_info received have come (they
        are published first, but may be taken a spin later)."""
        headers = {header_key(image) for image in self.labels}
        return all(header_key(info) in headers for info in self.received)


def header_key(msg) -> tuple[int, int, str]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id


def assert_goes_with_the_labels(info: CameraInfo, labels: list[Image]) -> None:
    """``info`` has the header of a labels image, and describes images of its size."""
    matching = [image for image in labels if header_key(image) == header_key(info)]
    assert matching, f'no labels under the header of {header_key(info)}'
    assert (info.height, info.width) == (matching[0].height, matching[0].width)


def test_camera_info_goes_with_the_labels_and_follows_the_anchor_to_another_camera(run_node):
    """segmentation/camera_info: the calibration of the camera whose grid the labels are on,
    under the labels' header; RGB down, thermal anchors at its own size, with its own."""
    node, driver, spin_until = run_node(
        sensors__depth__enabled=False, sensors__polarization__enabled=False,
        sensors__rgb__timeout_s=0.1,
    )
    cameras = CameraInfoDriver(driver, {'rgb': camera_info(HEIGHT, WIDTH, 30.0),
                                        'thermal': camera_info(12, 16, 11.0)})
    rgb_on, frames = [True], iter(range(10**6))

    def feed():
        seed = next(frames)
        if rgb_on[0]:
            cameras.send('rgb', rgb_frame(seed), 'rgb_optical')
        celsius = 20.0 + 5.0 * np.random.default_rng(seed).random((12, 16))
        cameras.send('thermal', encode_frame('thermal', celsius, 'mono16', ThermalSettings()),
                     'thermal_optical')

    def from_rgb() -> int:
        return sum(info.header.frame_id == 'rgb_optical' for info in cameras.received)

    assert spin_until(lambda: from_rgb() >= 3, 10.0, feed=feed), 'no segmentation/camera_info'
    spin_until(cameras.labelled, 5.0)  # not asserted: the check below names what is missing
    # Each the calibration of the camera whose frame the labels under its header have. Thermal
    # may anchor some while RGB is up: a stall of this loop past RGB's 0.1 s timeout (thermal's
    # 0.5 s) masks RGB until its next frame (a 0.3 s stall here did so in 2 runs of 3).
    for info in cameras.received:
        assert (info.header.frame_id, info.k[0]) in {('rgb_optical', 30.0),
                                                    ('thermal_optical', 11.0)}, info
        assert_goes_with_the_labels(info, cameras.labels)
    rgb_on[0] = False
    assert spin_until(lambda: cameras.received[-1].header.frame_id == 'thermal_optical', 10.0,
                      feed=feed), 'thermal never anchored the camera_info'
    spin_until(cameras.labelled, 5.0)
    info = cameras.received[-1]
    assert (info.height, info.width, info.k[0]) == (12, 16, 11.0)
    assert list(info.d) == [0.1, -0.2, 0.0, 0.0, 0.0] and info.distortion_model == 'plumb_bob'
    assert_goes_with_the_labels(info, cameras.labels)


def test_with_the_timer_anchor_camera_info_has_the_labels_header(run_node):
    """The timer stamps outputs with the node's clock: the camera_info carries that stamp too,
    and the frame_id of the camera whose grid the labels are on."""
    node, driver, spin_until = run_node(**rgb_only(anchor='timer', max_rate_hz=20.0))
    cameras = CameraInfoDriver(driver, {'rgb': camera_info(HEIGHT, WIDTH, 30.0)})
    frames = iter(range(10**6))
    assert spin_until(lambda: len(cameras.received) >= 3, 10.0,
                      feed=lambda: cameras.send('rgb', rgb_frame(next(frames)), 'rgb_optical'))
    spin_until(cameras.labelled, 5.0)  # the labels of the last camera_info
    sent = {header_key(image) for image in cameras.labels}
    for info in cameras.received:
        assert header_key(info) in sent
        assert_goes_with_the_labels(info, cameras.labels)


def test_a_polarization_camera_s_info_goes_with_its_mosaic_sized_labels(run_node):
    """Its outputs are at the mosaic's full size, which its driver's CameraInfo describes;
    a camera_info binned 2x2 describes the half-size AoLP/DoLP images, and is refused."""
    node, driver, spin_until = run_node(sensors__rgb__enabled=False, anchor='polarization',
                                        diagnostics_period_s=0.05)
    cameras = CameraInfoDriver(driver, {'polarization': camera_info(HEIGHT, WIDTH, 40.0)})
    rng = np.random.default_rng(0)

    def mosaic():
        intensities = 50 + 100 * rng.random((4, HEIGHT // 2, WIDTH // 2))
        cameras.send('polarization', encode_frame('polarization', intensities, 'mono8'),
                     'polarization_optical')

    assert spin_until(lambda: cameras.received, 10.0, feed=mosaic), 'no camera_info'
    spin_until(cameras.labelled, 5.0)
    assert (cameras.received[-1].height, cameras.received[-1].width) == (HEIGHT, WIDTH)
    assert_goes_with_the_labels(cameras.received[-1], cameras.labels)
    cameras.infos['polarization'] = camera_info(HEIGHT, WIDTH, 40.0, binning_x=2, binning_y=2)
    assert spin_until(
        lambda: driver.model_statuses and driver.model_statuses[-1]['camera_info'].startswith(
            'none: /polarization/camera_info describes 16x12 images, the outputs are 32x24'),
        10.0, feed=mosaic), driver.model_statuses[-1:]


def test_no_camera_info_is_published_before_the_camera_s_is_known(run_node):
    node, driver, spin_until = run_node(**rgb_only(diagnostics_period_s=0.05))
    cameras = CameraInfoDriver(driver, {})
    frames = iter(range(10**6))
    assert spin_until(
        lambda: driver.model_statuses and driver.model_statuses[-1]['camera_info']
        == 'none: nothing received on /rgb/camera_info', 10.0,
        feed=lambda: cameras.send('rgb', rgb_frame(next(frames)), 'rgb_optical'),
    ), driver.model_statuses[-1:]
    assert driver.labels and not cameras.received


def test_a_camera_info_of_another_size_is_not_published_and_is_reported_once(run_node, capfd):
    node, driver, spin_until = run_node(**rgb_only(diagnostics_period_s=0.05))
    cameras = CameraInfoDriver(driver, {'rgb': camera_info(2 * HEIGHT, 2 * WIDTH, 60.0)})
    frames = iter(range(10**6))
    problem = ('/rgb/camera_info describes 64x48 images, the outputs are 32x24: no '
               'segmentation/camera_info is published with them')
    assert spin_until(
        lambda: len(driver.labels) >= 5 and driver.model_statuses
        and driver.model_statuses[-1]['camera_info'] == f'none: {problem}', 10.0,
        feed=lambda: cameras.send('rgb', rgb_frame(next(frames)), 'rgb_optical'),
    ), driver.model_statuses[-1:]
    assert not cameras.received
    assert capfd.readouterr().err.count(problem) == 1


def test_camera_info_topics_are_the_siblings_of_the_image_topics_as_remapped():
    """As image_transport: -r rgb/image:=/camera/color/image_raw reads
    /camera/color/camera_info, -r segmentation/labels:=/seg/labels writes /seg/camera_info,
    and a remap of a camera_info topic itself applies."""
    context = Context()
    rclpy.init(context=context, args=[
        '--ros-args', '-r', 'rgb/image:=/camera/color/image_raw',
        '-r', 'segmentation/labels:=/seg/labels', '-r', 'thermal/camera_info:=/boson/info',
        '-r', '__ns:=/robot'])
    try:
        node = SegmentationNode(context=context, parameter_overrides=[
            Parameter('backend', value='onnxruntime'),
            Parameter('sensors.depth.transport', value='compressedDepth'),
        ])
        try:
            topics = {m: s.topic_name for m, s in node._info_subscriptions.items()}
            assert topics == {'rgb': '/camera/color/camera_info',
                              'depth': '/robot/depth/camera_info',
                              'polarization': '/robot/polarization/camera_info',
                              'thermal': '/boson/info'}
            assert node.count_publishers('/seg/camera_info') == 1
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_publish_camera_info_false_neither_subscribes_nor_publishes_it(run_node):
    node, driver, spin_until = run_node(publish_camera_info=False)
    assert node.get_parameter('publish_camera_info').value is False
    assert node.describe_parameter('publish_camera_info').read_only
    assert node.count_publishers('segmentation/camera_info') == 0
    assert node.count_subscribers('rgb/camera_info') == 0
    assert node.count_subscribers('rgb/image') == 1


def test_a_stop_under_way_logs_nothing_that_rosout_can_no_longer_take(capfd):
    # rclpy's signal handler shuts the context down (Ctrl-C, SIGTERM) before the main thread
    # stops the start-up or the worker threads: each line logged meanwhile (the backend's,
    # 'inferring without ...') came with 'Failed to publish log message to rosout:
    # publisher's context is invalid' under it.
    import logging
    from types import SimpleNamespace

    from mmp_ros.ros.segmentation_node import _RclpyLogHandler

    context = Context()
    rclpy.init(context=context)
    node = SegmentationNode(context=context,
                            parameter_overrides=[Parameter('backend', value='onnxruntime')])
    try:
        forwarded = logging.Logger('mmp_ros.inference.test')
        forwarded.addHandler(_RclpyLogHandler(node))
        bundle = SimpleNamespace(missing={'thermal': 'sensor unhealthy'})
        capfd.readouterr()
        # What rclpy's signal handler does: the rcl context alone is shut down, the node left
        # with its threads running (Context.shutdown destroys the nodes first).
        context.handle.shutdown()
        node._log_bundle(bundle)
        forwarded.warning('inference backend: a line from the backend')
        err = capfd.readouterr().err
        assert 'Failed to publish log message to rosout' not in err, err
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
