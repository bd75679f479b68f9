"""Bags split into several storage files, laid out as ``ros2 bag record -b/-d`` leaves them.

rosbags' Writer writes one storage file, so each file is written by its own Writer and moved
into the bag directory under rosbag2's name, ``<directory name>_<index>.mcap`` (or ``.db3``),
every topic registered in every file (rosbag2 registers them all again at each split); then
``metadata.yaml`` lists the files in ``relative_file_paths`` and, per file, its
``starting_time``, ``duration`` and ``message_count`` under ``files``, with the bag's totals.

Messages are ``sensor_msgs/msg/Image`` (2x2 rgb8) whose ``header.frame_id`` is the message's
index over the whole bag and whose stamp is its bag timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.metadata import dump_qos_v9
from rosbags.typesys import Stores, get_typestore
from ruamel.yaml import YAML

from mmp_ros.bags.playback import SENSOR_DATA_QOS
from mmp_ros.bags.recording import STORAGES, rosbags_qos
from mmp_ros.bags.source import IMAGE_TYPE

SUFFIX = {'mcap': '.mcap', 'sqlite3': '.db3'}


def image_cdr(index: int, stamp_ns: int) -> bytes:
    typestore = get_typestore(Stores.ROS2_KILTED)
    types = typestore.types
    header = types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9,
                                                   nanosec=stamp_ns % 10**9),
        frame_id=str(index),
    )
    image = types[IMAGE_TYPE](header=header, height=2, width=2, encoding='rgb8',
                              is_bigendian=0, step=6, data=np.full(12, index % 256, np.uint8))
    return typestore.serialize_cdr(image, IMAGE_TYPE)


def write_split_bag(
    path: str | Path,
    files: Sequence[Sequence[tuple[str, int]]],
    *,
    storage: str = 'mcap',
    topics: Sequence[str] = (),
) -> Path:
    """A bag at ``path`` whose storage file ``i`` holds ``files[i]``: (topic, timestamp ns)
    pairs, written in the order given. ``topics``: registered in every file even where it has
    no message (default: every topic named in ``files``)."""
    path = Path(path)
    path.mkdir()
    typestore = get_typestore(Stores.ROS2_KILTED)
    names = list(dict.fromkeys([*topics, *(t for f in files for t, _ in f)]))
    counts = dict.fromkeys(names, 0)
    qos = [rosbags_qos(SENSOR_DATA_QOS)]
    file_infos = []
    index = 0
    for number, messages in enumerate(files):
        name = f'{path.name}_{number}'
        writer = Writer(path / name, version=9, storage_plugin=STORAGES[storage])
        writer.open()
        connections = {t: writer.add_connection(t, IMAGE_TYPE, typestore=typestore,
                                                offered_qos_profiles=qos) for t in names}
        for topic, stamp in messages:
            writer.write(connections[topic], stamp, image_cdr(index, stamp))
            counts[topic] += 1
            index += 1
        writer.close()
        stored = path / f'{name}{SUFFIX[storage]}'
        (path / name / stored.name).rename(stored)
        for leftover in (path / name).iterdir():
            leftover.unlink()
        (path / name).rmdir()
        stamps = [s for _, s in messages]
        file_infos.append({
            'path': stored.name,
            'starting_time': {'nanoseconds_since_epoch': min(stamps, default=0)},
            'duration': {'nanoseconds': max(stamps, default=0) - min(stamps, default=0)},
            'message_count': len(messages),
        })
    stamps = [s for f in files for _, s in f]
    metadata = {'rosbag2_bagfile_information': {
        'version': 9,
        'storage_identifier': storage,
        'relative_file_paths': [f['path'] for f in file_infos],
        'duration': {'nanoseconds': max(stamps, default=0) - min(stamps, default=0)},
        'starting_time': {'nanoseconds_since_epoch': min(stamps, default=0)},
        'message_count': len(stamps),
        'topics_with_message_count': [
            {'topic_metadata': {'name': t, 'type': IMAGE_TYPE, 'serialization_format': 'cdr',
                                'offered_qos_profiles': dump_qos_v9(qos),
                                'type_description_hash': typestore.hash_rihs01(IMAGE_TYPE)},
             'message_count': counts[t]}
            for t in names
        ],
        'compression_format': '',
        'compression_mode': '',
        'files': file_infos,
        'custom_data': None,
        'ros_distro': 'rosbags',
    }}
    yaml = YAML(typ='safe')
    yaml.default_flow_style = False
    with (path / 'metadata.yaml').open('w') as file:
        yaml.dump(metadata, file)
    return path


def end_of_chunks(mcap: Path) -> int:
    """The byte offset just after the last chunk of ``mcap`` (and its message indexes): a
    recording killed there wrote every message but never its summary and footer."""
    from mcap.records import Chunk, MessageIndex
    from mcap.stream_reader import StreamReader

    end = 0
    with mcap.open('rb') as file:
        for record in StreamReader(file, emit_chunks=True).records:
            if isinstance(record, (Chunk, MessageIndex)):
                end = file.tell()
    return end
