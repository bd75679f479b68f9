"""rosbag2 reading, playback planning and recording, without rclpy.

Everything here works on topic names, type names, nanosecond timestamps and serialized CDR
bytes (through the ``rosbags`` library), so that it is testable without a ROS graph;
``mmp_ros.ros.replay`` and ``mmp_ros.ros.record`` are the thin rclpy ends.
"""

from mmp_ros.bags.errors import BagError

__all__ = ['BagError']
