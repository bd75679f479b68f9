"""Launch the mmp_segmentation node on a native ROS 2 install (``ros2 launch mmp_ros ...``).

    ros2 launch mmp_ros mmp_segmentation.launch.py \
        rgb_topic:=/camera/color/image_raw depth_topic:=/camera/depth/image_rect_raw \
        model_file_path:=/path/to/model.onnx backend:=tensorrt

Parameters come from ``params_file`` (the shipped config/mmp_segmentation.yaml by default);
the model arguments (backend, model_file_path, engine_file_path, force_engine_update,
enable_fp16) and use_sim_time always override the file's values, and default to the node's
defaults. Where
launch tooling is absent (PyPI wheels), ``mmp_ros run --ros-args ...`` runs the same node
with the same parameters.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from mmp_ros.core.parameters import BACKENDS, NODE_NAME


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
            default_value='auto',
            choices=list(BACKENDS),
            description='Inference backend; auto takes the fastest that works here '
            '(tensorrt, then onnxruntime) and logs which.',
        ),
        DeclareLaunchArgument(
            'model_file_path',
            default_value='',
            description='Exported ONNX model (a checkpoint for the torch backend); empty: '
            'the model shipped in share/mmp_ros/models.',
        ),
        DeclareLaunchArgument(
            'engine_file_path',
            default_value='',
            description='TensorRT engine cache; empty: beside the ONNX file.',
        ),
        DeclareLaunchArgument(
            'force_engine_update',
            default_value='false',
            choices=['true', 'false'],
            description='Rebuild the TensorRT engine even when the cached one matches.',
        ),
        DeclareLaunchArgument(
            'enable_fp16',
            default_value='true',
            choices=['true', 'false'],
            description='Build the TensorRT engine with FP16 kernels.',
        ),
        DeclareLaunchArgument(
            'use_sim_time',
            default_value='false',
            choices=['true', 'false'],
            description='Run on /clock (a bag replayed with mmp_ros replay --clock or '
            'ros2 bag play --clock, a simulator) instead of the system clock.',
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
            description='Thermal camera topic (mono16 counts, mono8 or 32FC1).',
        ),
        DeclareLaunchArgument(
            'log_level', default_value='info',
            choices=['debug', 'info', 'warn', 'error', 'fatal'],
            description='Logging level of the node.',
        ),
    ]
    overrides = {
        'backend': LaunchConfiguration('backend'),
        'model_file_path': LaunchConfiguration('model_file_path'),
        'engine_file_path': LaunchConfiguration('engine_file_path'),
        'force_engine_update': ParameterValue(
            LaunchConfiguration('force_engine_update'), value_type=bool
        ),
        'enable_fp16': ParameterValue(LaunchConfiguration('enable_fp16'), value_type=bool),
        'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'), value_type=bool),
    }
    node = Node(
        package='mmp_ros',
        executable='mmp_segmentation_node',
        name=LaunchConfiguration('node_name'),
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), overrides],
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
    return LaunchDescription([*arguments, node])
