"""Rewriting header.stamp in serialized messages (replay --restamp)."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from mmp_ros.bags import BagError
from mmp_ros.bags.cdr import Restamper, header_stamp_ns, restamp

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


def test_restamper_gives_messages_that_shared_a_stamp_one_stamp():
    # replay --restamp set each message's stamp to its own publish time: an image and its
    # CameraInfo, recorded under one header, left with stamps microseconds apart, and
    # exact-time consumers (CameraSubscriber, ExactTime, the node's camera_info) never paired
    # them. The first message of a recorded stamp takes its publish time, the others its.
    restamper = Restamper()
    ms = 1_000_000
    played = [  # (topic, bag time, recorded stamp, publish time)
        ('/rgb/image', 0, 100 * ms, 5000 * ms),
        ('/rgb/camera_info', 1, 100 * ms, 5000 * ms + 40_000),
        ('/depth/image', 3 * ms, 103 * ms, 5003 * ms),
        ('/ground_truth', 4 * ms, 100 * ms, 5004 * ms),  # later, the rgb stamp: paired
        ('/depth/camera_info', 5 * ms, 103 * ms, 5005 * ms),
        ('/rgb/image', 33 * ms, 133 * ms, 5033 * ms),
        ('/rgb/camera_info', 34 * ms, 133 * ms, 5034 * ms),
    ]
    stamps = [restamper.stamp_ns(t, b, r, now) for t, b, r, now in played]
    assert stamps == [5000 * ms, 5000 * ms, 5003 * ms, 5000 * ms, 5003 * ms, 5033 * ms,
                      5033 * ms]
    # In the CDR bytes, as the player publishes them.
    data = image_cdr(True)
    assert header_stamp_ns(restamper.restamp('/a', 40 * ms, data, 6000 * ms)) == 6000 * ms
    assert header_stamp_ns(restamper.restamp('/b', 41 * ms, data, 6001 * ms)) == 6000 * ms


def test_restamper_keeps_stamps_fresh_and_increasing_where_a_stamp_repeats():
    ms = 1_000_000
    restamper = Restamper()
    # A topic whose stamp never changes (left 0 by its driver) gets a fresh one each time,
    # and a topic beside it takes the latest, not the first of the bag.
    got = [restamper.stamp_ns(t, i * ms, 0, 1000 * ms + i * ms)
           for i, t in enumerate(['/a', '/b', '/a', '/a', '/b'])]
    assert got == [1000 * ms, 1000 * ms, 1002 * ms, 1003 * ms, 1003 * ms]
    # Shared within the window (1 s of bag time from its first message); fresh after it.
    assert restamper.stamp_ns('/c', 900 * ms, 0, 8000 * ms) == 1003 * ms
    assert restamper.stamp_ns('/d', 2000 * ms, 0, 9001 * ms) == 9001 * ms
    # A stamp that would put its topic's stamps back while the recorded ones went forward
    # (the pairing stamp was taken by another topic before this topic's last one): fresh.
    restamper = Restamper()
    assert restamper.stamp_ns('/a', 0, 20 * ms, 100 * ms) == 100 * ms
    assert restamper.stamp_ns('/b', 1, 10 * ms, 101 * ms) == 101 * ms
    assert restamper.stamp_ns('/b', 2, 20 * ms, 102 * ms) == 102 * ms
    # Recorded stamps that go back on a topic pair as they were recorded (back with them).
    assert restamper.stamp_ns('/c', 3, 30 * ms, 103 * ms) == 103 * ms
    assert restamper.stamp_ns('/c', 4, 10 * ms, 104 * ms) == 101 * ms
    # A new pass (--loop) pairs with nothing of the last one.
    restamper.new_pass()
    assert restamper.stamp_ns('/b', 0, 20 * ms, 200 * ms) == 200 * ms
    assert restamper.stamp_ns('/a', 1, 20 * ms, 201 * ms) == 200 * ms


@pytest.mark.parametrize('encapsulation', [b'\x00\x02', b'\x00\x03'])
def test_parameter_list_cdr_is_refused_not_broken(encapsulation):
    # Parameter-list CDR was taken for plain CDR: --restamp read the first parameter's
    # header (id, length) as the stamp's seconds and wrote the new stamp over it.
    order = 'big' if encapsulation == b'\x00\x02' else 'little'
    header = (0).to_bytes(2, order) + (16).to_bytes(2, order)  # parameter 0, 16 bytes
    stamp = (1_700_000_000).to_bytes(4, order) + (5).to_bytes(4, order)
    data = encapsulation + b'\x00\x00' + header + stamp + (1).to_bytes(4, order) + bytes(4)
    for rewrite in (lambda: restamp(data, 0), lambda: header_stamp_ns(data)):
        with pytest.raises(BagError, match='parameter-list CDR .* stamps are not rewritten'):
            rewrite()
