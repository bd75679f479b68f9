"""sensor_msgs/Image <-> the sensor layer's image fields."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

from mmp_ros.ros.image_msg import image_field_values, to_image_fields, to_image_msg
from mmp_ros.sensors.image import ImageFields


def _depth_fields():
    pixels = np.arange(6, dtype='>u2').reshape(2, 3)  # big-endian 16UC1, 2 rows of 3
    return SimpleNamespace(
        height=2, width=3, encoding='16UC1', is_bigendian=True, step=6, data=pixels.tobytes()
    )


def test_fields_round_trip_through_a_message():
    fields = _depth_fields()
    msg = to_image_msg(fields, stamp=Time(sec=3, nanosec=5), frame_id='depth_optical')
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 5)
    assert msg.header.frame_id == 'depth_optical'
    values = image_field_values(msg)
    assert tuple(values) == ('height', 'width', 'encoding', 'is_bigendian', 'step', 'data')
    for name in tuple(values)[:-1]:
        assert values[name] == getattr(fields, name), name
    assert bytes(values['data']) == fields.data


def test_data_is_a_read_only_view_of_the_message_buffer():
    msg = to_image_msg(_depth_fields(), stamp=Time(), frame_id='f')
    data = image_field_values(msg)['data']
    assert data.readonly
    pixels = np.frombuffer(data, dtype='>u2')
    assert pixels.tolist() == list(range(6))
    msg.data[1] = 42  # the view shares the message's memory: no copy was made
    assert data[1] == 42


def test_numpy_buffers_are_accepted():
    fields = _depth_fields()
    fields.data = np.frombuffer(fields.data, dtype=np.uint8)
    assert bytes(to_image_msg(fields, stamp=Time(), frame_id='f').data) == fields.data.tobytes()


def test_a_buffer_that_disagrees_with_step_and_height_is_refused():
    fields = _depth_fields()
    fields.data = fields.data[:-1]
    with pytest.raises(ValueError, match=r'11 bytes, but step 6 x height 2 = 12 \(16UC1\)'):
        to_image_msg(fields, stamp=Time(), frame_id='f')


def test_sensor_layer_fields_are_built_from_a_message():
    msg = Image(height=1, width=2, encoding='mono8', step=2, data=b'\x01\x02')
    fields = to_image_fields(msg)
    assert isinstance(fields, ImageFields)
    assert (fields.height, fields.width, fields.encoding, fields.step) == (1, 2, 'mono8', 2)
    assert bytes(fields.data) == b'\x01\x02'
