"""The parameter table, the shipped YAML and validation agree (no rclpy needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmp_ros.core.health import HealthConfig
from mmp_ros.core.parameters import (
    ParameterError,
    all_parameters,
    defaults,
    health_config,
    load_params_file,
    unknown_parameters,
    validate,
)

CONFIG = Path(__file__).resolve().parents[1] / 'config' / 'mmp_segmentation.yaml'


def test_shipped_yaml_sets_exactly_the_declared_parameters_and_validates():
    values = load_params_file(CONFIG)
    assert set(values) == set(all_parameters())
    validate(values)


def test_shipped_yaml_values_are_the_declared_defaults():
    values = load_params_file(CONFIG)
    assert values == defaults()


def test_shipped_params_files_apply_to_the_node_under_any_name():
    # A node renamed to be told apart on /diagnostics (-r __node:=mmp_front, the launch file's
    # node_name) ran on the defaults: the files were keyed /**/mmp_segmentation.
    for path in (CONFIG, CONFIG.with_name('mmp_demo.yaml')):
        values = load_params_file(path)
        assert values and load_params_file(path, node_name='mmp_front') == values, path


def test_every_parameter_has_a_description():
    for spec in all_parameters().values():
        assert len(spec.description) > 15, spec.name


def test_defaults_validate_and_give_the_default_health_config():
    values = defaults()
    validate(values)
    assert health_config(values, 'thermal') == HealthConfig()


@pytest.mark.parametrize(
    ('changes', 'message'),
    [
        ({'backend': 'cuda'}, "backend='cuda' is not one of"),
        ({'sensors.depth.timeout_s': -1.0}, 'below its minimum'),
        ({'sensors.depth.recovery_frames': 2.5}, 'must be an integer, got a floating-point'),
        ({'overlay_alpha': 1.5}, 'above its maximum'),
        ({'sensors.rgb.rate_warn_ratio': 0.3}, 'sensors.rgb: rate_warn_ratio'),
        ({'anchor': 'timer'}, 'max_rate_hz > 0'),
        ({'health_check_period_s': 0.5, 'diagnostics_period_s': 0.1},
         'diagnostics_period_s (0.1) is shorter than health_check_period_s (0.5)'),
        ({'sensors.lidar.timeout_s': 1.0}, 'unknown parameters'),
        ({'min_confidence': float('nan')}, 'finite'),
    ],
)
def test_invalid_values_are_refused_naming_the_parameter(changes, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        validate({**defaults(), **changes})


def test_integers_are_accepted_for_float_parameters():
    validate({**defaults(), 'sensors.thermal.timeout_s': 2})


def test_params_file_without_the_node_is_refused(tmp_path):
    path = tmp_path / 'other.yaml'
    path.write_text('other_node:\n  ros__parameters:\n    x: 1\n')
    with pytest.raises(ParameterError, match='mmp_segmentation'):
        load_params_file(path)


def test_decoder_settings_come_from_the_parameters():
    from mmp_ros.core.parameters import decoder_settings

    values = {**defaults(), 'sensors.depth.max_m': 8.0, 'sensors.polarization.resolution': 'full'}
    assert decoder_settings(values, 'depth').max_m == 8.0
    assert decoder_settings(defaults(), 'depth').max_m == float('inf')
    pol = decoder_settings(values, 'polarization')
    assert pol.layout == ((90, 45), (135, 0)) and pol.resolution == 'full'
    assert decoder_settings(values, 'thermal').semantics == 'planck'
    assert decoder_settings(values, 'rgb') is None


@pytest.mark.parametrize(
    ('changes', 'message'),
    [
        ({'sensors.polarization.layout': [0, 0, 90, 135]}, 'sensors.polarization: mosaic'),
        ({'sensors.depth.min_m': 5.0, 'sensors.depth.max_m': 2.0}, 'sensors.depth: depth range'),
        ({'sensors.thermal.gain': 0.0}, 'sensors.thermal: thermal gain'),
    ],
)
def test_invalid_decoder_settings_are_refused(changes, message):
    with pytest.raises(ParameterError, match=message):
        validate({**defaults(), **changes})


def test_unknown_parameters_are_named_with_the_nearest_declared_one():
    known = all_parameters()
    assert unknown_parameters(['anchor', 'sensors.rgb.timeout_s'], known) == []
    assert unknown_parameters(['max_rate', 'zzz', 'anchor'], known) == [
        'max_rate (did you mean max_rate_hz?)', 'zzz',
    ]


@pytest.mark.parametrize(('body', 'message'), [
    ('ros__parameters:\n', r"ros__parameters of 'mmp_segmentation' is not a mapping .*None"),
    ('ros__parameters: [1, 2]\n', r'ros__parameters of .* is not a mapping of parameter names'),
    ('ros__parameters:\n    sensors:\n      thermal:\n        timeout_s: fast\n',
     r"sensors.thermal.timeout_s must be a number, got a string 'fast'"),
    ('ros__parameters:\n    cache_depth: 0\n', r'cache_depth=0 is below its minimum 1'),
])
def test_a_malformed_params_file_is_refused_naming_it(tmp_path, body, message):
    # These ended in AttributeError / TypeError tracebacks (mmp_ros evaluate --params FILE).
    path = tmp_path / 'params.yaml'
    path.write_text('mmp_segmentation:\n  ' + body.replace('\n', '\n  ').rstrip() + '\n')
    with pytest.raises(ParameterError, match=rf'{path.name}: {message}'):
        load_params_file(path)


def test_a_params_file_may_set_other_nodes_parameters_and_whole_numbers(tmp_path):
    # use_sim_time is rclpy's; a whole number for a float parameter is taken as the node does.
    path = tmp_path / 'params.yaml'
    path.write_text("'/**':\n  ros__parameters:\n    use_sim_time: true\n"
                    'mmp_segmentation:\n  ros__parameters:\n    max_rate_hz: 5\n')
    assert load_params_file(path) == {'use_sim_time': True, 'max_rate_hz': 5}


SECTIONS = """
/**:
  ros__parameters: {max_rate_hz: 1.0}
/robot1/*:
  ros__parameters: {max_rate_hz: 2.0}
/**/mmp_front:
  ros__parameters: {min_confidence: 0.5}
robot2/mmp_front:
  ros__parameters: {max_rate_hz: 9.0}
mmp_front:
  ros__parameters: {overlay_alpha: 0.25}
"""


@pytest.mark.ros
@pytest.mark.parametrize(('node', 'namespace'), [
    ('mmp_front', '/robot1'), ('mmp_front', '/robot2'), ('mmp_front', '/'),
    ('mmp_segmentation', '/robot1'), ('mmp_segmentation', '/robot2/arm'),
])
def test_a_params_file_applies_to_a_node_as_rclpy_applies_it(tmp_path, node, namespace):
    # Its sections were matched by the key's last name alone: '/**/mmp_front' and
    # '/robot1/*' never applied (evaluate --node mmp_front read the defaults' bounds, or
    # refused the file), and 'mmp_front' applied in any namespace.
    from rclpy.context import Context
    from rclpy.node import Node

    path = tmp_path / 'params.yaml'
    path.write_text(SECTIONS)
    context = Context()
    context.init(['--ros-args', '-r', f'__ns:={namespace}', '-r', f'__node:={node}',
                  '--params-file', str(path)])
    try:
        probe = Node('probe', context=context,
                     automatically_declare_parameters_from_overrides=True)
        applied = {name: p.value for name, p in probe.get_parameters_by_prefix('').items()
                   if name not in ('use_sim_time', 'start_type_description_service')}
        probe.destroy_node()
    finally:
        context.shutdown()
    assert load_params_file(path, node, namespace=namespace) == applied


def test_a_params_file_that_cannot_be_read_is_named_with_its_option(tmp_path):
    # `mmp_ros adapt/evaluate --params missing.yaml` printed "[Errno 2] No such file or
    # directory: 'missing.yaml'", naming neither the option nor what the file was for
    with pytest.raises(ParameterError, match=rf'^--params {tmp_path / "missing.yaml"}: cannot '
                       r'read it \(No such file or directory\)$'):
        load_params_file(tmp_path / 'missing.yaml', option='--params')
    with pytest.raises(ParameterError, match=rf'^{tmp_path}: cannot read it \(Is a directory\)$'):
        load_params_file(tmp_path)


def test_a_params_file_that_is_not_text_is_named(tmp_path):
    # mmp_ros evaluate --params run.mcap ended in a UnicodeDecodeError traceback
    path = tmp_path / 'run.mcap'
    path.write_bytes(b'\x89MCAP0\r\n\xab\xff')
    with pytest.raises(ParameterError, match=rf'^--params {path}: not a YAML parameters file '
                       r"\('utf-8' codec can't decode"):
        load_params_file(path, option='--params')


def test_transport_takes_image_transports_and_compressed_depth_only_for_depth():
    values = defaults()
    values['sensors.rgb.transport'] = 'compressed'
    values['sensors.depth.transport'] = 'compressedDepth'
    validate(values)
    for name, value, allowed in (
        ('sensors.rgb.transport', 'compressedDepth', "['raw', 'compressed']"),
        ('sensors.thermal.transport', 'theora', "['raw', 'compressed']"),
        ('sensors.depth.transport', 'zstd', "['raw', 'compressed', 'compressedDepth']"),
    ):
        with pytest.raises(ParameterError) as raised:
            validate({**values, name: value})
        assert str(raised.value) == f'{name}={value!r} is not one of {allowed}'
