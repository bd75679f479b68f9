"""Which camera calibration goes with the outputs (``sensor_msgs/CameraInfo``), in plain values.

The node publishes ``segmentation/camera_info`` beside ``segmentation/labels``: the latest
CameraInfo of the camera whose pixel grid the labels are on, under the labels' header, so that
image_transport's CameraSubscriber, image_geometry and depth_image_proc can project them. It
publishes one only when that CameraInfo describes images of the labels' size: a calibration
of another size would place every label wrongly. Nothing here imports rclpy.
"""

from __future__ import annotations

INFO_NAME = 'camera_info'


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic beside a fully qualified image topic, as image_transport names it
    (``getCameraInfoTopic``): the image topic's namespace + ``camera_info``
    (``/camera/color/image_raw`` -> ``/camera/color/camera_info``)."""
    parts = [part for part in image_topic.split('/') if part]
    return '/' + '/'.join([*parts[:-1], INFO_NAME])


def described_size(
    height: int, width: int, *, binning_x: int = 0, binning_y: int = 0,
    roi_height: int = 0, roi_width: int = 0,
) -> tuple[int, int]:
    """(height, width) of the images a CameraInfo describes, read as image_geometry reads it:
    ``height`` and ``width`` are the calibrated resolution, the region of interest (all zero:
    the whole of it) is what was read out, and binning (0 or 1: none) divides that."""
    if roi_height and roi_width:
        height, width = roi_height, roi_width
    return height // max(1, binning_y), width // max(1, binning_x)


def size_problem(topic: str, described: tuple[int, int], image: tuple[int, int]) -> str:
    """Why the CameraInfo from ``topic``, describing images of ``described`` (height, width),
    cannot go with outputs of ``image`` ('' when it can)."""
    if tuple(described) == tuple(image):
        return ''
    return (
        f'{topic} describes {described[1]}x{described[0]} images, the outputs are '
        f'{image[1]}x{image[0]}: no segmentation/camera_info is published with them'
    )
