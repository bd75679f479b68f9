"""mmp_ros: multimodal segmentation that keeps working when sensors fail.

Only :mod:`mmp_ros.ros` imports rclpy and ROS message types; every other module
works on numpy arrays, seconds and dataclasses.
"""

__version__ = '0.1.0'
