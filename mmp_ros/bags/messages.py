"""Images, strings and diagnostics in and out of serialized CDR bytes, without rclpy.

Bag tools that look inside messages (the synthetic-bag writer, the run evaluator, adaptation
on a recording) read and write them through rosbags' ROS 2 Kilted type store; images cross
into the sensor layer as its ``ImageFields``, so the node's own decoders read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
from rosbags.typesys import Stores, get_typestore

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.source import COMPRESSED_TYPE
from mmp_ros.sensors.compressed import decompress_image
from mmp_ros.sensors.image import ImageFields, check_pixel_count

IMAGE_TYPE = 'sensor_msgs/msg/Image'
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
STRING_TYPE = 'std_msgs/msg/String'
DIAGNOSTICS_TYPE = 'diagnostic_msgs/msg/DiagnosticArray'


@cache
def typestore():
    """The ROS 2 Kilted type store (built once: it parses every definition)."""
    return get_typestore(Stores.ROS2_KILTED)


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _header(stamp_ns: int, frame_id: str):
    types = typestore().types
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec), frame_id=frame_id
    )


def serialize_image(fields: ImageFields, stamp_ns: int, frame_id: str) -> bytes:
    """A ``sensor_msgs/Image`` with these pixel fields and header, as CDR bytes."""
    types = typestore().types
    header = _header(stamp_ns, frame_id)
    message = types[IMAGE_TYPE](
        header=header, height=fields.height, width=fields.width, encoding=fields.encoding,
        is_bigendian=int(fields.is_bigendian), step=fields.step,
        data=np.frombuffer(fields.data, dtype=np.uint8),
    )
    return bytes(typestore().serialize_cdr(message, IMAGE_TYPE))


def serialize_camera_info(height: int, width: int, intrinsics, stamp_ns: int,
                          frame_id: str) -> bytes:
    """A ``sensor_msgs/CameraInfo`` of an undistorted pinhole camera, as CDR bytes: images of
    ``height`` x ``width``, K the 3x3 ``intrinsics``, P = [K | 0], R identity, ``plumb_bob``
    with zero distortion, no binning and no region of interest (the whole image)."""
    types = typestore().types
    k = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3)
    message = types[CAMERA_INFO_TYPE](
        header=_header(stamp_ns, frame_id), height=int(height), width=int(width),
        distortion_model='plumb_bob', d=np.zeros(5), k=k.ravel(), r=np.eye(3).ravel(),
        p=np.hstack([k, np.zeros((3, 1))]).ravel(), binning_x=0, binning_y=0,
        roi=types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    return bytes(typestore().serialize_cdr(message, CAMERA_INFO_TYPE))


@dataclass(frozen=True)
class StampedImage:
    stamp_ns: int
    frame_id: str
    fields: ImageFields

    def sensor_fields(self, *, max_pixels: int, encodings=None) -> ImageFields:
        """``fields``, refused (SensorInputError) as the node refuses the message live: over
        ``max_pixels`` (its ``sensors.<m>.max_pixels``). ``encodings``: for a compressed one."""
        check_pixel_count(self.fields.width, self.fields.height, max_pixels, 'Image of')
        return self.fields


def deserialize_image(data: bytes, *, where: str = 'image') -> StampedImage:
    """CDR bytes of a ``sensor_msgs/Image`` -> header stamp, frame_id and pixel fields."""
    try:
        msg = typestore().deserialize_cdr(data, IMAGE_TYPE)
    except Exception as exc:  # rosbags raises assorted errors on a damaged buffer
        raise BagError(f'{where}: not a readable sensor_msgs/msg/Image ({exc})') from exc
    fields = ImageFields(int(msg.height), int(msg.width), str(msg.encoding),
                         bool(msg.is_bigendian), int(msg.step), msg.data.tobytes())
    return StampedImage(_stamp_ns(msg.header.stamp), str(msg.header.frame_id), fields)


def serialize_compressed(format: str, data: bytes, stamp_ns: int, frame_id: str) -> bytes:
    """A ``sensor_msgs/CompressedImage`` (``format`` as image_transport writes it, e.g.
    ``rgb8; jpeg compressed bgr8``) with this header, as CDR bytes."""
    message = typestore().types[COMPRESSED_TYPE](
        header=_header(stamp_ns, frame_id), format=format,
        data=np.frombuffer(data, dtype=np.uint8),
    )
    return bytes(typestore().serialize_cdr(message, COMPRESSED_TYPE))


@dataclass(frozen=True)
class StampedCompressed:
    """A ``sensor_msgs/CompressedImage``: its header, and the raw image it stands for as
    ``fields``, decompressed when first asked for (SensorInputError if its payload does not
    decode: a camera's bad frame, like raw fields the sensor decoders refuse)."""

    stamp_ns: int
    frame_id: str
    format: str
    data: bytes

    @cached_property
    def fields(self) -> ImageFields:
        return decompress_image(self.format, self.data)

    def sensor_fields(self, *, max_pixels: int, encodings=None) -> ImageFields:
        """``fields`` decompressed as the node decompresses the message live: a header over
        ``max_pixels`` (its ``sensors.<m>.max_pixels``), or a format naming an encoding not in
        ``encodings`` (those the sensor takes), refused before decoding (SensorInputError)."""
        return decompress_image(self.format, self.data, max_pixels=max_pixels,
                                encodings=encodings)


def deserialize_camera_image(data: bytes, msgtype: str, *,
                             where: str = 'image') -> StampedImage | StampedCompressed:
    """CDR bytes of a camera topic's message (``sensor_msgs/Image`` or ``CompressedImage``,
    ``msgtype``) -> its header stamp, frame_id and ``fields``: the raw image either way.

    BagError for bytes that are not such a message; a compressed payload that does not
    decode raises SensorInputError where ``fields`` is read, as the node meets it live.
    """
    if msgtype != COMPRESSED_TYPE:
        return deserialize_image(data, where=where)
    try:
        msg = typestore().deserialize_cdr(data, COMPRESSED_TYPE)
    except Exception as exc:  # rosbags raises assorted errors on a damaged buffer
        raise BagError(f'{where}: not a readable {COMPRESSED_TYPE} ({exc})') from exc
    return StampedCompressed(_stamp_ns(msg.header.stamp), str(msg.header.frame_id),
                             str(msg.format), msg.data.tobytes())


def serialize_string(text: str) -> bytes:
    store = typestore()
    return bytes(store.serialize_cdr(store.types[STRING_TYPE](data=text), STRING_TYPE))


def deserialize_string(data: bytes, *, where: str = 'string') -> str:
    try:
        return str(typestore().deserialize_cdr(data, STRING_TYPE).data)
    except Exception as exc:
        raise BagError(f'{where}: not a readable std_msgs/msg/String ({exc})') from exc


@dataclass(frozen=True)
class Status:
    """One ``diagnostic_msgs/DiagnosticStatus`` with its array's header stamp."""

    stamp_ns: int
    name: str
    level: int
    message: str
    values: dict[str, str]


def deserialize_diagnostics(data: bytes, *, where: str = 'diagnostics') -> list[Status]:
    try:
        msg = typestore().deserialize_cdr(data, DIAGNOSTICS_TYPE)
    except Exception as exc:
        raise BagError(f'{where}: not a readable {DIAGNOSTICS_TYPE} ({exc})') from exc
    stamp = _stamp_ns(msg.header.stamp)
    statuses = []
    for status in msg.status:
        level = status.level
        level = int(level[0] if isinstance(level, (bytes, bytearray)) else level)
        statuses.append(Status(stamp, str(status.name), level, str(status.message),
                               {str(kv.key): str(kv.value) for kv in status.values}))
    return statuses
