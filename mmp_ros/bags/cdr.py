"""Rewrite ``header.stamp`` inside serialized CDR bytes, without deserializing.

A message whose first field is a ``std_msgs/Header`` starts, after the 4-byte encapsulation
header, with the stamp: int32 sec, uint32 nanosec (in the byte order the encapsulation names).
Replaying a bag recorded long ago gives stamps that a live node reads as stale, and a looped
bag gives stamps that jump backwards; rewriting those 8 bytes to the publish time fixes both
at the cost of a copy, where deserializing a 640x480 image and serializing it again would cost
a conversion of every pixel.

Messages that shared a stamp in the bag (an image and its ``CameraInfo``, published under one
header; cameras synchronized in hardware; depth registered to RGB) must share one after, or
exact-time consumers (image_transport's ``CameraSubscriber``, message_filters' ``ExactTime``,
the segmentation node's ``camera_info``) never pair them: :class:`Restamper` gives the first
message of a recorded stamp its publish time and the others of that stamp the same.

A message that holds headers elsewhere than at its start (``tf2_msgs/msg/TFMessage``: one in
each transform; ``visualization_msgs/msg/MarkerArray``: one in each marker) is deserialized
with rosbags' ROS 2 Kilted type store, its headers restamped and the message serialized again
(:meth:`Restamper.restamp_inside`): such messages are small, and the store knows where their
headers are.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cache

from rosbags.interfaces import Nodetype
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore

from mmp_ros.bags.errors import BagError

HEADER_TYPE = 'std_msgs/msg/Header'

# Encapsulation identifiers (RTPS 10.5): plain CDR, big/little endian. Parameter-list CDR
# (00 02, 00 03) puts a parameter header before each field, in any order: its stamp is not
# at byte 4, and writing one there would break the message.
_BYTE_ORDER = {b'\x00\x00': 'big', b'\x00\x01': 'little'}
_PARAMETER_LIST = (b'\x00\x02', b'\x00\x03')
# XCDR2 (DDS-XTypes 7.6.3.1.2): plain, parameter-list and delimited, big/little endian. Its
# alignment and headers differ from the CDR that ROS 2 publishes and rosbags reads.
_XCDR2 = (b'\x00\x06', b'\x00\x07', b'\x00\x08', b'\x00\x09', b'\x00\x0a', b'\x00\x0b')


def _refuse_parameter_list(data: bytes) -> None:
    """Name an encapsulation whose stamps are not rewritten: said to be no CDR, it was
    taken for damage."""
    if bytes(data[:2]) in _PARAMETER_LIST:
        raise BagError(f'parameter-list CDR (encapsulation {bytes(data[:2])!r}), whose '
                       f'fields have no fixed place: its stamps are not rewritten')
    if bytes(data[:2]) in _XCDR2:
        raise BagError(f'XCDR2 data (encapsulation {bytes(data[:2])!r}), not supported for '
                       'restamping: its stamps are not rewritten')


def _header_byte_order(data: bytes) -> str:
    """'big' or 'little': the byte order of ``data``, a CDR message long enough to start
    with a Header's stamp."""
    order = _BYTE_ORDER.get(bytes(data[:2]))
    if order is None or len(data) < 12:
        _refuse_parameter_list(data)
        raise BagError(f'not a CDR message with a header (encapsulation {bytes(data[:2])!r}, '
                       f'{len(data)} bytes)')
    return order


def restamp(data: bytes, stamp_ns: int) -> bytes:
    """``data`` (a message that starts with a Header) with its stamp set to ``stamp_ns``."""
    order = _header_byte_order(data)
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return b''.join((data[:4], sec.to_bytes(4, order, signed=True),
                     nanosec.to_bytes(4, order), data[12:]))


@cache
def _typestore():
    """rosbags' ROS 2 Kilted type store (built once, on first use: it parses every
    definition)."""
    return get_typestore(Stores.ROS2_KILTED)


@cache
def _header_fields(msgtype: str) -> tuple[str, ...]:
    """The fields of ``msgtype`` that are a Header or hold one (within, or as the elements of
    an array or sequence)."""
    fields = []
    for name, (kind, args) in _typestore().fielddefs[msgtype][1]:
        if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            kind, args = args[0]
        if kind == Nodetype.NAME and (args == HEADER_TYPE or _header_fields(args)):
            fields.append(name)
    return tuple(fields)


def holds_headers(msgtype: str) -> bool:
    """Whether ``msgtype`` (``package/msg/Name``) holds a ``std_msgs/msg/Header`` anywhere, by
    its definition in rosbags' ROS 2 Kilted type store; False for a type it does not know."""
    return msgtype in _typestore().fielddefs and bool(_header_fields(msgtype))


def _headers(message, stream: str):
    """(stream, header) of each Header in ``message`` (deserialized by rosbags), ``stream``
    being ``stream`` or, for the header of a transform, ``stream`` and its child frame."""
    if hasattr(message, 'child_frame_id'):
        stream = f'{stream} {message.child_frame_id}'
    for name in _header_fields(message.__msgtype__):
        value = getattr(message, name)
        for item in value if isinstance(value, list | tuple) else (value,):
            if item.__msgtype__ == HEADER_TYPE:
                yield stream, item
            else:
                yield from _headers(item, stream)


def header_stamp_ns(data: bytes) -> int:
    """The ``header.stamp`` of a serialized message that starts with a Header."""
    order = _header_byte_order(data)
    sec = int.from_bytes(data[4:8], order, signed=True)
    return sec * 1_000_000_000 + int.from_bytes(data[8:12], order)


# How long (bag time) a recorded stamp is remembered after its first message: messages that
# share a stamp are recorded microseconds (an image and its CameraInfo) to a node's latency
# (its outputs, stamped with their input's stamp) apart.
SHARED_STAMP_WINDOW_NS = 1_000_000_000


class Restamper:
    """New header stamps for a replay (``replay --restamp``), message by message in bag order.

    The first message of a recorded stamp takes its publish time (``now_ns``); a later one of
    the same recorded stamp, on another topic and within :data:`SHARED_STAMP_WINDOW_NS` of bag
    time, takes the same stamp, so pairs stay pairs. A topic that repeats a stamp (a driver
    that leaves it unset: 0) gets a fresh one each time, as does a message whose shared stamp
    would put its topic's stamps back where the recorded ones went forward; call
    :meth:`new_pass` at each ``--loop`` pass, so that a pass pairs with nothing of the last.
    """

    def __init__(self, window_ns: int = SHARED_STAMP_WINDOW_NS) -> None:
        self._window_ns = window_ns
        # recorded stamp -> (bag time of its first message, new stamp, topics that took it),
        # in bag-time order (a bag's messages come in time order).
        self._given: OrderedDict[int, tuple[int, int, set[str]]] = OrderedDict()
        self._last: dict[str, tuple[int, int]] = {}  # topic -> its last (recorded, new) stamp

    def new_pass(self) -> None:
        self._given.clear()

    def stamp_ns(self, topic: str, timestamp_ns: int, recorded_ns: int, now_ns: int) -> int:
        """The new stamp of a message of ``topic`` at bag time ``timestamp_ns``, recorded with
        stamp ``recorded_ns`` and published at ``now_ns``."""
        while self._given:
            oldest = next(iter(self._given.values()))
            if oldest[0] >= timestamp_ns - self._window_ns:
                break
            self._given.popitem(last=False)
        given = self._given.get(recorded_ns)
        last = self._last.get(topic)
        if given is not None and topic not in given[2] and (
            last is None or given[1] > last[1] or recorded_ns < last[0]
        ):
            stamp = given[1]
            given[2].add(topic)
        else:
            stamp = now_ns
            if given is None or topic in given[2]:
                self._given.pop(recorded_ns, None)
                self._given[recorded_ns] = (timestamp_ns, now_ns, {topic})
        self._last[topic] = (recorded_ns, stamp)
        return stamp

    def restamp(self, topic: str, timestamp_ns: int, data: bytes, now_ns: int) -> bytes:
        """``data`` (a message that starts with a Header) with its new stamp."""
        return restamp(data, self.stamp_ns(topic, timestamp_ns, header_stamp_ns(data), now_ns))

    def restamp_inside(self, topic: str, timestamp_ns: int, data: bytes, now_ns: int, *,
                       msgtype: str) -> bytes:
        """``data`` (a message of ``msgtype``, one that :func:`holds_headers`) with a new stamp
        in each of its headers. Headers that shared a recorded stamp share the new one; the
        header of a transform (``tf2_msgs/msg/TFMessage``: ``/tf``, ``/tf_static``) counts as a
        message of a topic of its own, ``topic`` and its child frame, so that transforms
        published together keep one stamp, and one recorded at an image's stamp takes the
        image's new stamp. A stamp of 0 stays 0: tf2 and RViz read it as "the latest"."""
        if bytes(data[:2]) not in _BYTE_ORDER:
            _refuse_parameter_list(data)
            raise BagError(f'not a CDR message (encapsulation {bytes(data[:2])!r})')
        try:
            message = _typestore().deserialize_cdr(data, msgtype)
        except SerdeError as exc:
            raise BagError(f'not a {msgtype}: {exc}') from None
        time = _typestore().types['builtin_interfaces/msg/Time']
        given: dict[tuple[str, int], int] = {}
        for stream, header in _headers(message, topic):
            recorded = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            if not recorded:  # "the latest" to tf2 and RViz (a marker's, an unused texture's)
                continue
            if (stream, recorded) not in given:
                given[stream, recorded] = self.stamp_ns(stream, timestamp_ns, recorded, now_ns)
            sec, nanosec = divmod(given[stream, recorded], 1_000_000_000)
            header.stamp = time(sec=sec, nanosec=nanosec)
        if not given:  # no stamp to set (a TFMessage without transforms)
            return data
        little_endian = _BYTE_ORDER[bytes(data[:2])] == 'little'
        return bytes(_typestore().serialize_cdr(message, msgtype, little_endian=little_endian))
