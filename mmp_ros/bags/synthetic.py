"""Image bags written directly with ``rosbags`` (not by our recorder): test and benchmark input.

Each image's ``header.frame_id`` carries its index, so a receiver can tell which bag message
it got; ``header.stamp`` equals the bag timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore

from mmp_ros.bags.playback import SENSOR_DATA_QOS
from mmp_ros.bags.recording import STORAGES, rosbags_qos
from mmp_ros.bags.source import IMAGE_TYPE


def write_image_bag(
    path: str | Path,
    timestamps_ns: Sequence[int],
    *,
    storage: str = 'mcap',
    topic: str = '/camera/image',
    width: int = 640,
    height: int = 480,
) -> Path:
    """An rgb8 ``width x height`` image at each timestamp on ``topic``; returns ``path``."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    types = typestore.types
    pixels = np.random.default_rng(0).integers(0, 256, height * width * 3, dtype=np.uint8)
    writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    writer.open()
    try:
        connection = writer.add_connection(
            topic, IMAGE_TYPE, typestore=typestore,
            offered_qos_profiles=[rosbags_qos(SENSOR_DATA_QOS)],
        )
        for index, stamp in enumerate(timestamps_ns):
            header = types['std_msgs/msg/Header'](
                stamp=types['builtin_interfaces/msg/Time'](
                    sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000
                ),
                frame_id=str(index),
            )
            image = types[IMAGE_TYPE](
                header=header, height=height, width=width, encoding='rgb8', is_bigendian=0,
                step=3 * width, data=pixels,
            )
            writer.write(connection, stamp, typestore.serialize_cdr(image, IMAGE_TYPE))
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
