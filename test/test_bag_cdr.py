"""Rewriting header.stamp in serialized messages (replay --restamp)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from mmp_ros.bags import BagError
from mmp_ros.bags.cdr import Restamper, header_stamp_ns, holds_headers, restamp

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


@pytest.mark.parametrize('encapsulation', [bytes([0, code]) for code in range(6, 12)])
def test_xcdr2_is_named_not_called_no_cdr(encapsulation):
    # XCDR2 was refused by --restamp as "not a CDR message with a header" (or "not a CDR
    # message" inside), as if damaged.
    data = encapsulation + bytes(22)
    for rewrite in (lambda: restamp(data, 0), lambda: header_stamp_ns(data),
                    lambda: Restamper().restamp_inside('/tf', 0, data, 5, msgtype=TF_MESSAGE)):
        with pytest.raises(BagError, match=re.escape(
                f'XCDR2 data (encapsulation {encapsulation!r}), not supported for restamping: '
                'its stamps are not rewritten')):
            rewrite()


TF_MESSAGE = 'tf2_msgs/msg/TFMessage'


def tf_cdr(transforms: list[tuple[int, int, str, str]], little_endian: bool = True) -> bytes:
    """A serialized tf2_msgs/msg/TFMessage of (sec, nanosec, frame_id, child_frame_id)."""
    message = T[TF_MESSAGE](transforms=[
        T['geometry_msgs/msg/TransformStamped'](
            header=T['std_msgs/msg/Header'](
                stamp=T['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec),
                frame_id=parent),
            child_frame_id=child,
            transform=T['geometry_msgs/msg/Transform'](
                translation=T['geometry_msgs/msg/Vector3'](x=i + 0.5, y=-2.0, z=3.25),
                rotation=T['geometry_msgs/msg/Quaternion'](x=0.0, y=0.6, z=0.0, w=0.8)))
        for i, (sec, nanosec, parent, child) in enumerate(transforms)
    ])
    return bytes(TYPESTORE.serialize_cdr(message, TF_MESSAGE, little_endian=little_endian))


@pytest.mark.parametrize('little_endian', [True, False])
def test_restamp_inside_sets_each_transform_and_pairs_it_with_the_image_of_its_stamp(
        little_endian):
    # replay --restamp rewrote only messages that start with a Header: /tf (a sequence of
    # TransformStamped) kept the recording's stamps while the images got fresh ones, and a
    # tf2 lookup at an image's stamp failed ("extrapolation into the future").
    ms = 1_000_000
    restamper = Restamper()
    image = image_cdr(little_endian)  # stamped 1_700_000_000 s + 5 ns
    assert header_stamp_ns(restamper.restamp('/cam/image', 0, image, 7000 * ms)) == 7000 * ms
    transforms = [(1_700_000_000, 5, 'odom', 'base_link'),  # the image's stamp: paired
                  (1_699_999_999, 900_000_000, 'map', 'odom'),
                  (1_700_000_000, 5, 'base_link', 'cam'),
                  (1_700_000_000, 5, 'cam', 'cam_optical_frame_x')]
    data = tf_cdr(transforms, little_endian)
    changed = restamper.restamp_inside('/tf', 2 * ms, data, 7002 * ms, msgtype=TF_MESSAGE)
    assert changed[:2] == data[:2] and len(changed) == len(data)  # byte order kept
    decoded = TYPESTORE.deserialize_cdr(changed, TF_MESSAGE).transforms
    stamps = [t.header.stamp.sec * 10**9 + t.header.stamp.nanosec for t in decoded]
    assert stamps == [7000 * ms, 7002 * ms, 7000 * ms, 7000 * ms]
    original = TYPESTORE.deserialize_cdr(data, TF_MESSAGE).transforms
    for before, after in zip(original, decoded, strict=True):
        assert (after.header.frame_id, after.child_frame_id) == (before.header.frame_id,
                                                                 before.child_frame_id)
        assert after.transform == before.transform
    # The next message of a child frame repeating its stamp (left 0, or republished): fresh,
    # and transforms published together under one stamp keep one.
    again = restamper.restamp_inside('/tf', 3 * ms, data, 7003 * ms, msgtype=TF_MESSAGE)
    decoded = TYPESTORE.deserialize_cdr(again, TF_MESSAGE).transforms
    assert [t.header.stamp.nanosec for t in decoded] == [3 * ms] * 4
    # No transforms: nothing to change.
    empty = tf_cdr([], little_endian)
    assert restamper.restamp_inside('/tf', 4 * ms, empty, 7004 * ms,
                                    msgtype=TF_MESSAGE) == empty


@pytest.mark.parametrize('cut', [3, 7, 12, 20, 40, -1])
def test_a_damaged_tf_message_is_refused(cut):
    data = tf_cdr([(1, 2, 'odom', 'base_link')])[:cut]
    with pytest.raises(BagError, match='not a tf2_msgs/msg/TFMessage: '):
        Restamper().restamp_inside('/tf', 0, data, 0, msgtype=TF_MESSAGE)


def test_a_marker_array_is_restamped_marker_by_marker_and_decodes_in_ros():
    # A MarkerArray (a header in each marker, and one in each marker's texture) kept the
    # recording's stamps beside the restamped images: RViz could not transform the markers.
    from rclpy.serialization import deserialize_message, serialize_message
    from visualization_msgs.msg import Marker, MarkerArray

    ms = 1_000_000
    markers = MarkerArray(markers=[Marker(id=i, ns='boxes', type=Marker.LINE_STRIP)
                                   for i in range(3)])
    for marker in markers.markers[:2]:  # a marker and its texture at the image's stamp
        marker.header.stamp.sec = marker.texture.header.stamp.sec = 1_700_000_000
        marker.header.stamp.nanosec = marker.texture.header.stamp.nanosec = 5
        marker.header.frame_id = 'cam'
    markers.markers[2].header.stamp.sec = 7
    markers.markers[2].points = [markers.markers[2].pose.position] * 3
    data = serialize_message(markers)  # as rclpy publishes and a bag records it
    restamper = Restamper()
    assert header_stamp_ns(restamper.restamp('/cam/image', 0, image_cdr(True),
                                             7000 * ms)) == 7000 * ms
    changed = restamper.restamp_inside('/markers', ms, data, 7001 * ms,
                                       msgtype='visualization_msgs/msg/MarkerArray')
    decoded = deserialize_message(changed, MarkerArray)
    stamps = [(m.header.stamp, m.texture.header.stamp) for m in decoded.markers]
    assert [(a.sec * 10**9 + a.nanosec, b.sec * 10**9 + b.nanosec) for a, b in stamps] == [
        (7000 * ms, 7000 * ms), (7000 * ms, 7000 * ms), (7001 * ms, 0)]  # 0: the latest
    for marker in (*markers.markers, *decoded.markers):
        marker.header.stamp = marker.texture.header.stamp = type(marker.header.stamp)()
    assert decoded == markers  # nothing else changed


def test_the_player_restamps_headers_first_or_inside():
    from mmp_ros.ros.replay import stamp_rewriter

    assert stamp_rewriter('visualization_msgs/msg/MarkerArray').func == (
        Restamper.restamp_inside)
    assert stamp_rewriter('sensor_msgs/msg/CameraInfo') == Restamper.restamp  # 8 bytes
    assert stamp_rewriter('std_msgs/msg/String') is None
    assert holds_headers(TF_MESSAGE) and holds_headers('visualization_msgs/msg/MarkerArray')
    assert not holds_headers('std_msgs/msg/String')
    assert not holds_headers('geometry_msgs/msg/Transform')
    assert not holds_headers('my_msgs/msg/Unknown')  # not in the store: left as it is
