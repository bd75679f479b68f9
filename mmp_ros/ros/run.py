"""``mmp_ros run``: the segmentation node without ROS launch tooling (PyPI ROS wheels).

Every ``--ros-args ... [--]`` block goes to rclpy unchanged, as with ``ros2 run``; after a
block's closing ``--`` come the command's own options again::

    mmp_ros run --ros-args --params-file config/mmp_segmentation.yaml \\
        -p model_file_path:=model.onnx -r rgb/image:=/camera/color/image_raw

``--managed`` runs the managed (lifecycle) node instead (docs/node.md).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        'ROS arguments follow --ros-args: --params-file FILE, -p name:=value, '
        '-r from:=to, -r __ns:=/robot, --log-level debug.'
    )
    parser.add_argument(
        '--no-dds-profile',
        action='store_true',
        help="run on Fast DDS's built-in transports instead of the package's loopback/"
        'shared-memory profile (which delivers camera-sized frames across processes)',
    )
    parser.add_argument(
        '--managed',
        action='store_true',
        help='run the managed (lifecycle) node: it starts unconfigured and waits for its '
        'configure and activate transitions (ros2 lifecycle set, a lifecycle manager)',
    )


def run(args: argparse.Namespace) -> int:
    from mmp_ros.ros.segmentation_node import main

    ros_args = list(getattr(args, 'ros_args', []) or [])
    return main(['mmp_ros', *ros_args], dds_profile=not args.no_dds_profile,
                managed=getattr(args, 'managed', False))
