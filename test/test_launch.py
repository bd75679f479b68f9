"""The launch file and the aggregator config: described arguments, matching names."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from mmp_ros.core.parameters import BACKENDS, LAUNCH_OVERRIDES, NODE_NAME, launch_overrides
from mmp_ros.modalities import MODALITIES
from mmp_ros.ros.diagnostics import MODEL_STATUS, status_name

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / 'launch' / 'mmp_segmentation.launch.py'
ANALYZERS = REPO / 'config' / 'analyzers.yaml'


def declared_arguments() -> dict[str, dict[str, ast.expr]]:
    """name -> keyword expressions of every DeclareLaunchArgument call in the launch file."""
    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    arguments = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, 'id', '') == 'DeclareLaunchArgument':
            name = ast.literal_eval(call.args[0])
            arguments[name] = {k.arg: k.value for k in call.keywords}
    return arguments


def launch_description():
    """The launch file's LaunchDescription (launch_ros must import)."""
    spec = importlib.util.spec_from_file_location('mmp_segmentation_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def launched(description, context=None, **given: str) -> tuple:
    """(context, entities) the launch file's OpaqueFunction gives with the arguments
    ``given`` and every other argument empty (the override arguments' defaults), but
    params_file (the shipped one) and node_name (the default); in ``context`` if given."""
    from launch import LaunchContext
    from launch.actions import OpaqueFunction

    context = context or LaunchContext()
    given = {'params_file': str(REPO / 'config' / 'mmp_segmentation.yaml'),
             'node_name': NODE_NAME, **given}
    for argument in description.get_launch_arguments():
        context.launch_configurations[argument.name] = given.get(argument.name, '')
    (function,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    return context, list(function.execute(context))


def test_every_launch_argument_has_a_description():
    arguments = declared_arguments()
    assert {'params_file', 'backend', 'model_file_path', 'rgb_topic', 'thermal_topic'} <= set(
        arguments
    )
    for name, keywords in arguments.items():
        assert 'description' in keywords, f'{name} has no description'
        text = ast.unparse(keywords['description'])
        assert len(text) > 20, f'{name}: description too short: {text}'


def test_backend_argument_offers_the_backends_as_choices():
    choices = declared_arguments()['backend']['choices']
    assert ast.unparse(choices) == "['', *BACKENDS]"


def test_override_arguments_leave_the_params_file_values_unless_given():
    # They defaulted to the node's defaults and always overrode params_file: a params file's
    # model_file_path, backend or use_sim_time was silently replaced (the shipped model ran).
    arguments = declared_arguments()
    for name in LAUNCH_OVERRIDES:
        assert ast.literal_eval(arguments[name]['default_value']) == '', name
    assert launch_overrides(dict.fromkeys(LAUNCH_OVERRIDES, '')) == {}
    assert launch_overrides({'model_file_path': 'm.onnx', 'backend': 'auto',
                             'enable_fp16': 'false', 'use_sim_time': 'true',
                             'force_engine_update': ''}) == {
        'model_file_path': 'm.onnx', 'backend': 'auto', 'enable_fp16': False,
        'use_sim_time': True,
    }


def test_every_input_topic_can_be_remapped():
    source = LAUNCH_FILE.read_text()
    for modality in MODALITIES:
        assert f"('{modality}/image', LaunchConfiguration('{modality}_topic'))" in source


def test_the_node_can_be_renamed():
    # Two launched nodes shared the name mmp_segmentation, and with it their /diagnostics
    # statuses' names.
    assert ast.unparse(declared_arguments()['node_name']['default_value']) == 'NODE_NAME'
    assert "name=LaunchConfiguration('node_name')" in LAUNCH_FILE.read_text()


def test_launch_description_loads_and_validates_where_launch_ros_imports(tmp_path):
    pytest.importorskip('launch_ros', reason='launch_ros is not installable from PyPI; '
                        'this runs on native ROS 2 installs')
    from launch import LaunchDescription

    description = launch_description()
    assert isinstance(description, LaunchDescription)
    arguments = description.get_launch_arguments()
    assert {a.name for a in arguments} == set(declared_arguments())
    for argument in arguments:
        assert argument.description and argument.description != 'no description given'
    backend = next(a for a in arguments if a.name == 'backend')
    assert list(backend.choices) == ['', *BACKENDS]

    from launch_ros.actions import Node
    from launch_ros.utilities import evaluate_parameters

    params = tmp_path / 'p.yaml'
    params.write_text('/**:\n  ros__parameters:\n    max_rate_hz: 5.0\n')

    def node_parameters(**given: str) -> list:
        context, (node,) = launched(description, params_file=str(params), **given)
        assert isinstance(node, Node)
        return list(evaluate_parameters(context, node._Node__parameters))

    assert node_parameters() == [params]  # the file's values stand
    assert node_parameters(model_file_path='m.onnx', use_sim_time='true') == [
        params, {'model_file_path': 'm.onnx', 'use_sim_time': True}
    ]


def test_a_params_file_the_node_would_not_get_stops_the_launch_naming_it(tmp_path):
    # launch_ros passed over a params_file that is not there with a warning, and rclpy
    # applied none of a file keyed for another node: the node ran on its defaults (the
    # shipped model, the default topics' settings) as if the launch had succeeded.
    pytest.importorskip('launch_ros', reason='launch_ros is not installable from PyPI; '
                        'this runs on native ROS 2 installs')
    from launch import LaunchContext
    from launch_ros.actions import PushRosNamespace

    from mmp_ros.core.parameters import ParameterError

    description = launch_description()
    missing = tmp_path / 'missing.yaml'
    with pytest.raises(ParameterError, match=rf'^params_file {missing}: cannot read it \('):
        launched(description, params_file=str(missing))
    named = tmp_path / 'named.yaml'
    named.write_text('/robot1/front/mmp_segmentation:\n  ros__parameters:\n'
                     '    max_rate_hz: 5.0\n')
    for given in ({}, {'namespace': 'front', 'node_name': 'mmp_front'}):
        with pytest.raises(ParameterError, match=rf"^params_file {named}: no ros__parameters "
                           r"for node '/(front/mmp_front|mmp_segmentation)'$"):
            launched(description, params_file=str(named), **given)
    # A name or namespace launch_ros refuses is named as launch_ros names it.
    from rclpy.exceptions import InvalidNamespaceException, InvalidNodeNameException

    with pytest.raises(InvalidNodeNameException, match="must not contain characters"):
        launched(description, node_name='bad-name')
    with pytest.raises(InvalidNamespaceException, match="must not contain characters"):
        launched(description, namespace='bad-ns')
    # The node is /robot1/front/mmp_segmentation under an including launch file's
    # PushRosNamespace('robot1').
    context = LaunchContext()
    PushRosNamespace('robot1').execute(context)
    assert launched(description, context, params_file=str(named), namespace='front')[1]


def test_analyzers_expect_exactly_the_statuses_the_node_publishes():
    config = yaml.safe_load(ANALYZERS.read_text())['analyzers']['ros__parameters']
    expected = [name for group in config.values() if isinstance(group, dict)
                for name in group['expected']]
    assert sorted(expected) == sorted(  # the node under its default name, as launched
        [status_name(NODE_NAME, m) for m in MODALITIES] + [status_name(NODE_NAME, MODEL_STATUS)]
    )
    for group in config.values():
        if isinstance(group, dict):
            assert group['type'] == 'diagnostic_aggregator/GenericAnalyzer'


def test_managed_starts_the_lifecycle_node_and_autostart_configures_and_activates_it():
    arguments = declared_arguments()
    for name in ('managed', 'autostart'):
        assert ast.literal_eval(arguments[name]['default_value']) == 'false', name
        assert ast.literal_eval(arguments[name]['choices']) == ['true', 'false'], name
    # Both executables are console scripts of setup.py.
    source = LAUNCH_FILE.read_text()
    setup = (REPO / 'setup.py').read_text()
    for executable in ('mmp_segmentation_node', 'mmp_segmentation_managed_node'):
        assert f"executable='{executable}'" in source
        assert f"'{executable} = {{PACKAGE}}.cli:" in setup


def test_the_managed_node_is_launched_where_launch_ros_imports():
    pytest.importorskip('launch_ros', reason='launch_ros is not installable from PyPI; '
                        'this runs on native ROS 2 installs')
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch_ros.actions import LifecycleNode, Node
    from lifecycle_msgs.msg import Transition

    description = launch_description()

    def entities(**given: str) -> list:
        return launched(description, **given)[1]

    (plain,) = entities(managed='false')
    assert type(plain) is Node and plain.node_executable == 'mmp_segmentation_node'
    (managed,) = entities(managed='true')
    assert isinstance(managed, LifecycleNode)
    assert managed.node_executable == 'mmp_segmentation_managed_node'
    node, handler, configure = entities(managed='true', autostart='true')
    assert isinstance(node, LifecycleNode) and isinstance(handler, RegisterEventHandler)
    assert isinstance(configure, EmitEvent)
    assert configure.event.transition_id == Transition.TRANSITION_CONFIGURE
    assert configure.event.lifecycle_node_matcher(node)
