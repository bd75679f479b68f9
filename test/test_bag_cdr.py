"""Rewriting header.stamp in serialized messages (replay --restamp)."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from mmp_ros.bags import BagError
from mmp_ros.bags.cdr import header_stamp_ns, restamp

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
T = TYPESTORE.types


def image_cdr(little_endian: bool) -> bytes:
    header = T['std_msgs/msg/Header'](
        stamp=T['builtin_interfaces/msg/Time'](sec=1_700_000_000, nanosec=5), frame_id='cam'
    )
    image = T['sensor_msgs/msg/Image'](header=header, height=1, width=2, encoding='mono8',
                                       is_bigendian=0, step=2, data=np.ones(2, dtype=np.uint8))
    return TYPESTORE.serialize_cdr(image, 'sensor_msgs/msg/Image', little_endian=little_endian)


@pytest.mark.parametrize('little_endian', [True, False])
def test_restamp_changes_only_the_stamp(little_endian):
    original = image_cdr(little_endian)
    assert header_stamp_ns(original) == 1_700_000_000 * 10**9 + 5
    new_stamp = 1_800_000_000 * 10**9 + 123_456_789
    changed = restamp(original, new_stamp)
    assert header_stamp_ns(changed) == new_stamp
    decoded = TYPESTORE.deserialize_cdr(changed, 'sensor_msgs/msg/Image')
    assert (decoded.header.stamp.sec, decoded.header.stamp.nanosec) == (1_800_000_000, 123_456_789)
    assert decoded.header.frame_id == 'cam' and decoded.data.tolist() == [1, 1]
    assert len(changed) == len(original) and changed[12:] == original[12:]


@pytest.mark.parametrize('data', [b'', b'\x07\x07\x00\x00' + bytes(20), b'\x00\x01\x00\x00'])
def test_what_is_not_a_cdr_message_with_a_header_is_refused(data):
    with pytest.raises(BagError, match='not a CDR message with a header'):
        restamp(data, 0)
    with pytest.raises(BagError, match='not a CDR message with a header'):
        header_stamp_ns(data)
