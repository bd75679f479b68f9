"""Launch the mmp_segmentation node on a native ROS 2 install (``ros2 launch mmp_ros ...``).

    ros2 launch mmp_ros mmp_segmentation.launch.py \
        rgb_topic:=/camera/color/image_raw depth_topic:=/camera/depth/image_rect_raw \
        model_file_path:=/path/to/model.onnx backend:=tensorrt

Parameters come from ``params_file`` (the shipped config/mmp_segmentation.yaml by default);
the model arguments (backend, model_file_path, engine_file_path, force_engine_update,
enable_fp16) and use_sim_time override the file's values when given, and are empty by
default: the file's value stands, else the node's default. Where launch tooling is absent
(PyPI wheels), ``mmp_ros run --ros-args ...`` runs the same node with the same parameters.

``managed:=true`` starts the managed (lifecycle) node instead, unconfigured, for a lifecycle
manager or ``ros2 lifecycle set``; with ``autostart:=true`` too, the launch configures and
activates it (docs/node.md).
"""

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from launch_ros.utilities import make_namespace_absolute, prefix_namespace
from lifecycle_msgs.msg import Transition
from rclpy.validate_namespace import validate_namespace
from rclpy.validate_node_name import validate_node_name

from mmp_ros.core.parameters import (
    BACKENDS,
    LAUNCH_OVERRIDES,
    NODE_NAME,
    launch_overrides,
    load_params_file,
)

# An empty value of the LAUNCH_OVERRIDES arguments: the params file's value stands.
FROM_FILE = ' Empty: the value in params_file, else the node default'


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare('mmp_ros'), 'config', 'mmp_segmentation.yaml']
            ),
            description='YAML file with the node parameters (ros__parameters of '
            'mmp_segmentation).',
        ),
        DeclareLaunchArgument(
            'backend',
            default_value='',
            choices=['', *BACKENDS],
            description='Inference backend; auto takes the fastest that works here '
            '(tensorrt, then onnxruntime) and logs which.' + FROM_FILE + ' (auto).',
        ),
        DeclareLaunchArgument(
            'model_file_path',
            default_value='',
            description='Exported ONNX model (a checkpoint for the torch backend).' + FROM_FILE
            + ' (empty: the model shipped in share/mmp_ros/models).',
        ),
        DeclareLaunchArgument(
            'engine_file_path',
            default_value='',
            description='TensorRT engine cache.' + FROM_FILE + ' (empty: beside the ONNX file).',
        ),
        DeclareLaunchArgument(
            'force_engine_update',
            default_value='',
            choices=['', 'true', 'false'],
            description='Rebuild the TensorRT engine even when the cached one matches.'
            + FROM_FILE + ' (false).',
        ),
        DeclareLaunchArgument(
            'enable_fp16',
            default_value='',
            choices=['', 'true', 'false'],
            description='Build the TensorRT engine with FP16 kernels.' + FROM_FILE + ' (true).',
        ),
        DeclareLaunchArgument(
            'use_sim_time',
            default_value='',
            choices=['', 'true', 'false'],
            description='Run on /clock (a bag replayed with mmp_ros replay --clock or '
            'ros2 bag play --clock, a simulator) instead of the system clock.' + FROM_FILE
            + ' (false).',
        ),
        DeclareLaunchArgument(
            'namespace', default_value='', description='Namespace of the node and its topics.'
        ),
        DeclareLaunchArgument(
            'node_name', default_value=NODE_NAME,
            description='Name of the node, and of its /diagnostics statuses ("<name>: rgb"): '
            'give each of two nodes its own to tell them apart there.',
        ),
        DeclareLaunchArgument(
            'rgb_topic', default_value='rgb/image', description='RGB image topic to subscribe.'
        ),
        DeclareLaunchArgument(
            'depth_topic', default_value='depth/image',
            description='Depth image topic (16UC1 mm or 32FC1 m, REP 118).',
        ),
        DeclareLaunchArgument(
            'polarization_topic', default_value='polarization/image',
            description='Polarization camera topic (raw 2x2 mosaic or AoLP/DoLP).',
        ),
        DeclareLaunchArgument(
            'thermal_topic', default_value='thermal/image',
            description='Thermal camera topic (mono16 radiometric counts with the default '
            'sensors.thermal.semantics planck; mono8 or 32FC1 with another: docs/sensors.md).',
        ),
        DeclareLaunchArgument(
            'managed', default_value='false', choices=['true', 'false'],
            description='Start the managed (lifecycle) node, mmp_segmentation_managed_node: '
            'it waits unconfigured for configure and activate (a lifecycle manager, '
            'ros2 lifecycle set), and segments only while active.',
        ),
        DeclareLaunchArgument(
            'autostart', default_value='false', choices=['true', 'false'],
            description='With managed:=true: the launch itself configures the node, then '
            'activates it once it is inactive (no lifecycle manager needed).',
        ),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            choices=['debug', 'info', 'warn', 'error', 'fatal'],
            description='Logging level of the node.',
        ),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=segmentation_node)])


def segmentation_node(context: LaunchContext) -> list:
    """The node, with the LAUNCH_OVERRIDES arguments given a value on top of params_file (an
    argument left empty must not replace the file's value with the node's default); managed,
    the lifecycle node, and with autostart the events that configure and activate it."""
    # launch_ros passes over a params_file that is not a file with a warning, and rclpy applies
    # none of a file keyed for another node: either way the node ran on its defaults. The
    # namespace as launch_ros makes it (under an including launch file's PushRosNamespace).
    # Name and namespace first checked as launch_ros checks them, for its message.
    name = LaunchConfiguration('node_name').perform(context)
    namespace = make_namespace_absolute(prefix_namespace(
        context.launch_configurations.get('ros_namespace'),
        LaunchConfiguration('namespace').perform(context),
    ))
    validate_node_name(name)
    validate_namespace(namespace)
    load_params_file(LaunchConfiguration('params_file').perform(context), name,
                     option='params_file', namespace=namespace)
    given = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_OVERRIDES}
    overrides = launch_overrides(given)
    settings = dict(
        package='mmp_ros',
        name=LaunchConfiguration('node_name'),
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), *([overrides] if overrides else [])],
        remappings=[
            ('rgb/image', LaunchConfiguration('rgb_topic')),
            ('depth/image', LaunchConfiguration('depth_topic')),
            ('polarization/image', LaunchConfiguration('polarization_topic')),
            ('thermal/image', LaunchConfiguration('thermal_topic')),
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
        output='screen',
        emulate_tty=True,
    )
    if LaunchConfiguration('managed').perform(context) != 'true':
        return [Node(executable='mmp_segmentation_node', **settings)]
    node = LifecycleNode(executable='mmp_segmentation_managed_node', **settings)
    if LaunchConfiguration('autostart').perform(context) != 'true':
        return [node]

    def transition(transition_id: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(
            lifecycle_node_matcher=matches_action(node), transition_id=transition_id,
        ))

    return [
        node,
        # Once, after the configure: a deactivation later (active -> inactive) stays.
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
            entities=[transition(Transition.TRANSITION_ACTIVATE)], handle_once=True,
        )),
        transition(Transition.TRANSITION_CONFIGURE),
    ]
