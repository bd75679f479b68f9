"""The pure rules of segmentation/camera_info: its topic, and the images a CameraInfo describes."""

from __future__ import annotations

import pytest

from mmp_ros.core.camera_info import camera_info_topic, described_size, size_problem


@pytest.mark.parametrize('image, info', [
    ('/rgb/image', '/rgb/camera_info'),
    ('/camera/color/image_raw', '/camera/color/camera_info'),
    ('/robot/segmentation/labels', '/robot/segmentation/camera_info'),
    ('/image', '/camera_info'),
])
def test_the_camera_info_topic_is_image_transport_s_sibling_of_the_image_topic(image, info):
    assert camera_info_topic(image) == info


def test_a_camera_info_describes_its_roi_over_its_binning():
    assert described_size(480, 640) == (480, 640)
    assert described_size(480, 640, binning_x=1, binning_y=1) == (480, 640)
    assert described_size(2048, 2448, binning_x=2, binning_y=2) == (1024, 1224)
    assert described_size(480, 640, roi_height=240, roi_width=320) == (240, 320)
    assert described_size(480, 640, roi_height=240, roi_width=320, binning_x=2,
                          binning_y=2) == (120, 160)


def test_a_size_mismatch_names_the_topic_and_both_sizes():
    assert size_problem('/rgb/camera_info', (24, 32), (24, 32)) == ''
    assert size_problem('/rgb/camera_info', (48, 64), (24, 32)) == (
        '/rgb/camera_info describes 64x48 images, the outputs are 32x24: no '
        'segmentation/camera_info is published with them')
