"""Bags written directly with ``rosbags`` (not by our recorder): test and benchmark input.

Image bags (raw, or compressed as image_transport publishes them): each image's
``header.frame_id`` carries its index and ``header.stamp`` equals the bag timestamp, so a
receiver can tell which bag message it got. Stub bags: one message per topic under any type
name, for the bad-input cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore

from mmp_ros.bags.playback import SENSOR_DATA_QOS
from mmp_ros.bags.recording import STORAGES, rosbags_qos
from mmp_ros.bags.source import COMPRESSED_TYPE, IMAGE_TYPE
from mmp_ros.sensors.compressed import compress_image
from mmp_ros.sensors.image import array_to_image

STUB_HASH = 'RIHS01_' + '0' * 64  # stand-in type hash of stub types


def write_image_bag(
    path: str | Path,
    timestamps_ns: Sequence[int],
    *,
    storage: str = 'mcap',
    topic: str = '/camera/image',
    width: int = 640,
    height: int = 480,
    compression: str | None = None,
) -> Path:
    """An rgb8 ``width x height`` image at each timestamp on ``topic``; returns ``path``.

    ``compression`` (``jpeg``, ``png``): the image as image_transport's ``compressed``
    transport publishes it, a ``sensor_msgs/CompressedImage`` (``topic`` should then end in
    ``/compressed``).
    """
    typestore = get_typestore(Stores.ROS2_KILTED)
    types = typestore.types
    pixels = np.random.default_rng(0).integers(0, 256, height * width * 3, dtype=np.uint8)
    msgtype = IMAGE_TYPE if compression is None else COMPRESSED_TYPE
    if compression is not None:
        format, payload = compress_image(
            array_to_image(pixels.reshape(height, width, 3), 'rgb8'), compression)
    writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    writer.open()
    try:
        connection = writer.add_connection(
            topic, msgtype, typestore=typestore,
            offered_qos_profiles=[rosbags_qos(SENSOR_DATA_QOS)],
        )
        for index, stamp in enumerate(timestamps_ns):
            header = types['std_msgs/msg/Header'](
                stamp=types['builtin_interfaces/msg/Time'](
                    sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000
                ),
                frame_id=str(index),
            )
            if compression is None:
                image = types[IMAGE_TYPE](
                    header=header, height=height, width=width, encoding='rgb8',
                    is_bigendian=0, step=3 * width, data=pixels,
                )
            else:
                image = types[COMPRESSED_TYPE](
                    header=header, format=format, data=np.frombuffer(payload, np.uint8))
            writer.write(connection, stamp, typestore.serialize_cdr(image, msgtype))
    finally:
        writer.close()
    return Path(path)


def jittered_timestamps(count: int, rate_hz: float, *, start_ns: int = 1_700_000_000 * 10**9,
                        jitter: float = 0.5, seed: int = 0) -> list[int]:
    """``count`` increasing timestamps at ``rate_hz`` on average, each gap varied by up to
    ``jitter`` of the period: a player that ignores the bag's timing cannot match them."""
    rng = np.random.default_rng(seed)
    period = 1e9 / rate_hz
    gaps = period * (1 + jitter * rng.uniform(-1, 1, count - 1))
    return [start_ns + int(t) for t in np.concatenate([[0.0], np.cumsum(gaps)])]


def write_stub_bag(path: str | Path, topics: dict[str, str], *, storage: str = 'mcap') -> Path:
    """One message per topic (``{topic: msgtype}``): std_msgs/msg/String as such, any other
    type name (unknown, ROS 1 style, not installed) with a stand-in definition and hash."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    writer.open()
    try:
        for i, (topic, msgtype) in enumerate(topics.items()):
            if msgtype == 'std_msgs/msg/String':
                connection = writer.add_connection(topic, msgtype, typestore=typestore)
                data = typestore.serialize_cdr(typestore.types[msgtype](data=topic), msgtype)
            else:
                connection = writer.add_connection(
                    topic, msgtype, msgdef='int32 x', rihs01=STUB_HASH
                )
                data = b'\x00\x01\x00\x00\x07\x00\x00\x00'  # CDR little-endian int32 7
            writer.write(connection, 1_000_000_000 + i, data)
    finally:
        writer.close()
    return Path(path)
