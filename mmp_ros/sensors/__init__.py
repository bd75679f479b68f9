"""The sensor-input layer: ``sensor_msgs/Image`` fields to physical units, without ROS.

``decode_frame(modality, fields, settings)`` is the one call the node and the training
data share; ``encode_frame`` goes the other way. Nothing here imports rclpy.
"""

from mmp_ros.sensors.compressed import compress_image, decompress_image
from mmp_ros.sensors.decode import (
    MODALITY_INPUTS,
    ModalitySettings,
    decode_frame,
    default_settings,
    encode_frame,
)
from mmp_ros.sensors.depth import DepthSettings
from mmp_ros.sensors.frame import FrameStats, SensorFrame, SensorInputError
from mmp_ros.sensors.image import ENCODINGS, ImageFields, array_to_image, image_to_array
from mmp_ros.sensors.polarization import PolarizationSettings
from mmp_ros.sensors.thermal import PlanckCalibration, ThermalSettings

__all__ = [
    'ENCODINGS',
    'MODALITY_INPUTS',
    'DepthSettings',
    'FrameStats',
    'ImageFields',
    'ModalitySettings',
    'PlanckCalibration',
    'PolarizationSettings',
    'SensorFrame',
    'SensorInputError',
    'ThermalSettings',
    'array_to_image',
    'compress_image',
    'decode_frame',
    'decompress_image',
    'default_settings',
    'encode_frame',
    'image_to_array',
]
