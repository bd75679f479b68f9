"""The package's ROS 2 edge: nodes, bags on the wire, DDS start-up (everything that imports rclpy).

Importing any of it imports rclpy, whose rcl library ends the process (status 102) when
``RMW_IMPLEMENTATION`` names a middleware it cannot load; a middleware the installed ROS 2
cannot have is named here first, with what to do (:func:`mmp_ros.dds.rmw_problem`).
"""

import sys

from mmp_ros.dds import rmw_problem

if _problem := rmw_problem():
    print(f'mmp_ros: cannot start ROS 2: {_problem}', file=sys.stderr)
    raise SystemExit(2)
