"""The node's small ROS helpers: QoS by name, diagnostics conversion, parameter descriptors."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip('rclpy', reason='needs rclpy (ros extra or ROS 2)')

from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from mmp_ros.core.health import HealthStatus, Level, SensorState
from mmp_ros.core.parameters import all_parameters
from mmp_ros.ros.diagnostics import diagnostic_array, make_status, sensor_status
from mmp_ros.ros.qos import latched_qos, output_qos, subscription_qos
from mmp_ros.ros.segmentation_node import descriptor

REPO = Path(__file__).resolve().parents[1]


def test_sensor_data_is_best_effort_and_reliable_is_reliable():
    assert subscription_qos('sensor_data', 5).reliability is ReliabilityPolicy.BEST_EFFORT
    assert subscription_qos('best_effort', 3).depth == 3
    assert subscription_qos('reliable', 5).reliability is ReliabilityPolicy.RELIABLE
    with pytest.raises(ValueError, match='unknown QoS profile'):
        subscription_qos('fast', 5)


def test_outputs_are_reliable_and_label_info_is_transient_local():
    assert output_qos().reliability is ReliabilityPolicy.RELIABLE
    assert latched_qos().durability is DurabilityPolicy.TRANSIENT_LOCAL


def test_sensor_status_carries_level_name_hardware_id_and_values():
    status = HealthStatus('thermal', SensorState.STALE, Level.ERROR, 'stale: no message', False,
                          {'age_s': '0.612'})
    msg = sensor_status('mmp_segmentation', status, 'thermal_optical')
    assert msg.level == bytes([2]) and msg.name == 'mmp_segmentation: thermal'
    assert msg.hardware_id == 'thermal_optical' and msg.message == 'stale: no message'
    values = {kv.key: kv.value for kv in msg.values}
    assert values == {'age_s': '0.612', 'masked': 'true'}


def test_diagnostic_array_holds_every_status():
    from builtin_interfaces.msg import Time

    statuses = [make_status('mmp_segmentation', 'model', Level.WARN, 'degraded',
                            'mmp_segmentation', {'a': '1'})]
    array = diagnostic_array(Time(sec=5), statuses)
    assert array.header.stamp.sec == 5 and array.status[0].name == 'mmp_segmentation: model'


def test_descriptors_carry_descriptions_ranges_and_choices():
    specs = all_parameters()
    timeout = descriptor(specs['sensors.depth.timeout_s'])
    assert timeout.floating_point_range[0].from_value == pytest.approx(0.01)
    assert 'STALE' in timeout.description and not timeout.read_only
    frames = descriptor(specs['sensors.depth.recovery_frames'])
    assert frames.integer_range[0].from_value == 1
    backend = descriptor(specs['backend'])
    assert backend.read_only and 'tensorrt' in backend.additional_constraints


def test_shipped_params_file_reaches_the_node_in_any_namespace(tmp_path):
    """rcl itself matches the YAML's node key (no launch tooling needed to check it)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    from mmp_ros.core.parameters import NODE_NAME

    config = tmp_path / 'params.yaml'
    shipped = (REPO / 'config' / 'mmp_segmentation.yaml').read_text()
    config.write_text(shipped.replace('timeout_s: 0.5', 'timeout_s: 0.7'))
    context = Context()
    rclpy.init(args=['test', '--ros-args', '--params-file', str(config)], context=context)
    try:
        node = Node(NODE_NAME, namespace='/robot_1', context=context)
        value = node.declare_parameter('sensors.thermal.timeout_s', 0.5).value
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert value == 0.7


def test_the_shipped_model_is_found_and_an_absent_or_ambiguous_one_says_what_to_do(tmp_path):
    from mmp_ros.ros.segmentation_node import NodeStartError, default_model_path

    empty, one, two = (tmp_path / name for name in ('empty', 'one', 'two'))
    for folder, models in ((empty, ()), (one, ('a.onnx',)), (two, ('a.onnx', 'b.onnx'))):
        folder.mkdir()
        for model in models:
            (folder / model).touch()
    assert default_model_path([empty, one, two]) == one / 'a.onnx'
    with pytest.raises(NodeStartError, match=r"several models \['a.onnx', 'b.onnx'\]; choose "
                       'one with model_file_path'):
        default_model_path([empty, two, one])
    with pytest.raises(NodeStartError, match='no shipped model in .*; set model_file_path to '
                       'an ONNX model exported by `mmp_ros export`'):
        default_model_path([empty])
    assert default_model_path().name == 'tiny_mmp.onnx'  # the repository's own


def test_the_torch_backend_finds_the_shipped_checkpoint_not_the_onnx_file(tmp_path):
    # backend:=torch without model_file_path used to take models/tiny_mmp.onnx, which the
    # torch backend refuses, although the package ships tiny_mmp.pt beside it.
    from mmp_ros.ros.segmentation_node import NodeStartError, default_model_path

    (tmp_path / 'a.onnx').touch()
    with pytest.raises(NodeStartError, match=r'set model_file_path to a checkpoint \(\.pt\)'):
        default_model_path([tmp_path], backend='torch')
    (tmp_path / 'a.pt').touch()
    assert default_model_path([tmp_path], backend='torch') == tmp_path / 'a.pt'
    assert default_model_path([tmp_path], backend='auto') == tmp_path / 'a.onnx'
    assert default_model_path(backend='torch').name == 'tiny_mmp.pt'  # the repository's own
