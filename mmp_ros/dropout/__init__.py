"""The sensor-dropout simulator's pure part: schedules, per-message faults, the engine.

``mmp_ros dropout --schedule FILE`` (``mmp_ros/ros/dropout_node.py``) runs it between a
source and the segmentation node; ``docs/dropout.md`` documents the schedule format.
"""

from mmp_ros.dropout.engine import DropoutEngine, FaultEvent, Received, StampedImage
from mmp_ros.dropout.faults import apply
from mmp_ros.dropout.schedule import Fault, FaultKind, Schedule, ScheduleError

__all__ = [
    'DropoutEngine',
    'Fault',
    'FaultEvent',
    'FaultKind',
    'Received',
    'Schedule',
    'ScheduleError',
    'StampedImage',
    'apply',
]
