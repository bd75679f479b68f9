"""Open a rosbag2 (MCAP or sqlite3) for playback, with errors that name the file.

``rosbags`` reports a bad bag in several ways (its ``ReaderError``, ``FileNotFoundError``,
and for truncated or damaged files whatever its parser trips on: ``TypeError``,
``struct.error``, ``sqlite3`` errors...). Playback needs one answer for all of them, saying
which file is at fault, so they all become ``BagError`` here, when opening and while reading.
"""

from __future__ import annotations

import copy
import heapq
import sqlite3
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import Connection, Qos, QosDurability, QosReliability
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError
from zstandard import ZstdDecompressor, ZstdError

from mmp_ros.bags.errors import BagError

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
# What a camera topic holds: raw images, or what image_transport's ``compressed`` (JPEG, PNG)
# and ``compressedDepth`` (PNG of depth) transports publish on ``<base>/<transport>``.
CAMERA_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
COMPRESSED_TRANSPORTS = ('compressedDepth', 'compressed')

# What a damaged file makes the rosbags parsers raise (besides its own ReaderError);
# MemoryError: a damaged length field asks for an absurd buffer.
_DAMAGE = (ReaderError, OSError, ValueError, TypeError, KeyError, IndexError, EOFError,
           MemoryError, struct.error, sqlite3.Error, ZstdError)

# A zstd frame starts with these bytes, a CDR message with its encapsulation (00 0x): a bag
# recorded with ``--compression-mode message`` stores each message as a zstd frame, and
# rosbags decompresses them only where the bag's metadata.yaml says so (a bag directory).
_ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'


def uncompressed(data: bytes) -> bytes:
    """A stored message as CDR bytes: decompressed where it is a zstd frame (a bag recorded
    with ``--compression-mode message``, read without the metadata.yaml that says so)."""
    if data[:4] == _ZSTD_MAGIC:
        return ZstdDecompressor().decompressobj().decompress(data)
    return bytes(data)


@dataclass(frozen=True)
class TopicQos:
    """The QoS a topic was published with, as far as playback needs it."""

    reliable: bool
    transient_local: bool
    depth: int


@dataclass(frozen=True)
class BagTopic:
    """One topic of a bag (all its connections together)."""

    name: str
    msgtype: str
    count: int
    serialization_format: str
    offered_qos: TopicQos | None  # None: the bag did not record it
    msgtypes: tuple[str, ...] = ()  # where the topic holds several types: all of them

    @property
    def type_text(self) -> str:
        """Its type as messages name it: where it holds several, all of them."""
        return f'several message types {list(self.msgtypes)}' if self.msgtypes else self.msgtype

    @property
    def is_camera(self) -> bool:
        """A camera's images, raw or compressed by image_transport."""
        return self.msgtype in CAMERA_TYPES and not self.msgtypes


def camera_topic(topics: dict[str, BagTopic], name: str) -> str | None:
    """The bag topic that holds the camera ``name``: ``name`` itself, or where a recording
    made through image_transport has it, ``name/compressedDepth`` or ``name/compressed``
    (sensor_msgs/msg/CompressedImage); None if the bag has none of them.

    ``ros2 bag record -a`` records every transport's topic, also those the publisher could
    not fill (JPEG of a 16-bit depth image, compressedDepth of a colour image): the first
    that holds messages is taken, the raw images before the compressed ones. ``name``
    present under another type is returned as it is, for the caller to name its type.
    """
    present = [t for t in [name, *(f'{name}/{suffix}' for suffix in COMPRESSED_TRANSPORTS)]
               if t in topics and (t == name or topics[t].msgtype == COMPRESSED_TYPE)]
    if not present:
        return None
    if present[0] == name and not topics[name].is_camera:
        return name
    return next((t for t in present if topics[t].count), present[0])


def _offered_qos(connections: list[Connection]) -> TopicQos | None:
    """The recorded publishers' QoS: best effort if any publisher was, as rosbag2 does."""
    return offered_qos(
        [q for c in connections for q in getattr(c.ext, 'offered_qos_profiles', [])]
    )


def offered_qos(profiles: list[Qos]) -> TopicQos | None:
    """``TopicQos`` of rosbag2's offered QoS profiles (None if there are none)."""
    if not profiles:
        return None
    return TopicQos(
        reliable=all(q.reliability == QosReliability.RELIABLE for q in profiles),
        transient_local=all(q.durability == QosDurability.TRANSIENT_LOCAL for q in profiles),
        depth=max(1, max(q.depth for q in profiles)),
    )


class Bag:
    """An open bag: its topics and time span, and its messages as raw CDR bytes."""

    def __init__(self, path: Path, reader: Reader) -> None:
        self.path = path
        self._reader = reader
        by_topic: dict[str, list[Connection]] = {}
        for connection in reader.connections:
            by_topic.setdefault(connection.topic, []).append(connection)
        self._connections = by_topic
        self.topics: dict[str, BagTopic] = {}
        for name, connections in by_topic.items():
            types = sorted({c.msgtype for c in connections})
            self.topics[name] = BagTopic(
                name=name,
                msgtype=connections[0].msgtype,
                count=sum(c.msgcount for c in connections),
                serialization_format=getattr(connections[0].ext, 'serialization_format', 'cdr'),
                offered_qos=_offered_qos(connections),
                msgtypes=tuple(types) if len(types) > 1 else (),
            )

    @property
    def start_ns(self) -> int:
        """Timestamp of the first message."""
        return self._reader.start_time

    @property
    def end_ns(self) -> int:
        """Timestamp of the last message (rosbags' ``end_time`` is one past it)."""
        return max(self._reader.start_time, self._reader.end_time - 1)

    @property
    def message_count(self) -> int:
        return self._reader.message_count

    def messages(self, topics: Iterable[str], start_ns: int | None = None) -> Iterator[
        tuple[str, int, bytes]
    ]:
        """(topic, timestamp ns, serialized message) in time order, from ``start_ns`` on.

        The storage files of a split bag are merged by timestamp (``_in_time_order``), also
        where their times overlap; messages of equal timestamps come in file order.

        BagError for a topic that holds several message types: its messages would not all be
        what its readers expect (the bag's other topics remain readable).
        """
        topics = list(topics)
        for name in topics:
            if self.topics[name].msgtypes:
                raise BagError(f'{self.path}: topic {name} holds several message types '
                               f'{list(self.topics[name].msgtypes)}')
        connections = [c for name in topics for c in self._connections[name]]
        if not connections:  # rosbags reads every topic for none
            return
        try:
            for connection, timestamp, data in _in_time_order(self._reader, connections,
                                                              start_ns):
                # A zstd frame: its .mcap/.db3 file opened by itself.
                yield connection.topic, timestamp, uncompressed(data)
        except _DAMAGE as exc:
            raise BagError(f'{self.path}: damaged bag, reading stopped: {exc}') from exc


def _in_time_order(reader: Reader, connections: list[Connection],
                   start_ns: int | None) -> Iterator[tuple[Connection, int, bytes]]:
    """``reader``'s messages on ``connections`` from ``start_ns`` on, by timestamp across the
    storage files of a split bag.

    rosbags reads a split bag's files one after the other, each in time order; but their
    times may overlap (a message logged before a split and written after it, rosbag2 issue
    857; a merge or conversion), and then the bag's time went back at each such boundary.
    Each file is read in the same way, by itself, and the files merged by timestamp (ties in
    file order). A file is opened only once the merge has reached its first message's time
    (from its own index), so a long recording's files are not all read at once.
    """
    directory = reader.storage
    storages = getattr(directory, 'storages', [])
    if len(storages) < 2:  # one file, or a storage file opened by itself
        yield from reader.messages(connections, start=start_ns)
        return

    def messages_of(storage) -> Iterator[tuple[Connection, int, bytes]]:
        one = copy.copy(directory)  # rosbags' reading of one file, connections and all
        one.storages = [storage]
        return one.messages(connections, start_ns, None)

    waiting = sorted(range(len(storages)), key=lambda i: (storages[i].metadata.start_time, i))
    streams: dict[int, Iterator[tuple[Connection, int, bytes]]] = {}
    heap: list[tuple[int, int, Connection, bytes]] = []  # (timestamp, file, ...): one a file

    def take(index: int) -> None:
        message = next(streams[index], None)
        if message is None:
            del streams[index]
        else:
            heapq.heappush(heap, (message[1], index, message[0], message[2]))

    while heap or waiting:
        while waiting and (not heap or storages[waiting[0]].metadata.start_time <= heap[0][0]):
            index = waiting.pop(0)
            streams[index] = messages_of(storages[index])
            take(index)
        if not heap:
            continue
        timestamp, index, connection, data = heapq.heappop(heap)
        yield connection, timestamp, data
        take(index)


def _recovery_hint(path: Path) -> str:
    """For an MCAP bag that does not open: how to get a recording that never closed back."""
    if path.suffix == '.mcap' or (path.is_dir() and any(path.glob('*.mcap'))):
        return (f'; if its recording was killed before it closed: '
                f'mmp_ros recover-bag {path} OUT')
    return ''


def _format_hint(path: Path) -> str:
    """For a file that is no rosbag2 storage file: what the user most likely has."""
    if path.suffix == '.bag':
        return f'; a ROS 1 bag: convert it first, e.g. rosbags-convert --src {path} --dst DIR'
    if path.name == 'metadata.yaml':  # rosbags' reason: "Unrecognized storage format '.yaml'"
        return f"; a bag's metadata file: give its bag directory ({path.parent})"
    if path.suffix == '.zstd':
        return (f'; the file of a bag recorded with --compression-mode file: give its bag '
                f'directory ({path.parent}), whose metadata.yaml says how to read it')
    return ''


def _storage_file(path: Path) -> Path:
    """The file to open for ``path``: for a bag directory without its metadata.yaml (a
    recording that never closed, a bag copied without it) its one .mcap or .db3 file, which
    carries its own topics and time span; else ``path`` itself.

    BagError for such a directory with several: a recording split by size or duration
    (rosbag2 writes metadata.yaml only when it closes), which no reader opens as one bag; or
    with files compressed by ``--compression-mode file`` (each closed file of a split
    recording), which only that metadata.yaml says how to read.
    """
    if path.is_dir() and not (path / 'metadata.yaml').exists():
        files = sorted([*path.glob('*.mcap'), *path.glob('*.db3')])
        compressed = sorted([*path.glob('*.mcap.zstd'), *path.glob('*.db3.zstd')])
        if compressed:
            mcap = compressed[0].name.endswith('.mcap.zstd')
            what = (f'recover the .mcap files into one bag: mmp_ros recover-bag {path} OUT'
                    if mcap else 'each .db3 file opens by itself')
            raise BagError(
                f'{path}: no metadata.yaml, and {len(compressed)} compressed storage files '
                f'({compressed[0].name}, ...) and {len(files)} not compressed: a recording with '
                f'--compression-mode file that never closed (its metadata.yaml, written at the '
                f'end, says how to read them); decompress them first, e.g. zstd -d '
                f'{compressed[0]}, then {what}'
            )
        if len(files) == 1:
            return files[0]
        if len(files) > 1:
            if all(f.suffix == '.mcap' for f in files):
                what = f'recover them into one bag: mmp_ros recover-bag {path} OUT'
            else:
                what = f'each file opens by itself, e.g. {files[0]}'
            raise BagError(
                f'{path}: no metadata.yaml, and {len(files)} storage files ({files[0].name}, '
                f'...): a recording split by size or duration that never closed (its '
                f'metadata.yaml is written at the end); {what}'
            )
    return path


# The first bytes of a rollback journal that sqlite would play back (a journal left with its
# header zeroed changed nothing in the database).
_JOURNAL_MAGIC = bytes.fromhex('d9d505f920a163d7')


def _check_no_hot_journal(path: Path) -> None:
    """BagError if a .db3 of ``path`` has a rollback journal to play back: rosbags opens the
    database as immutable, without it, and reads the half-written file (messages silently
    missing or damaged)."""
    for db in [path] if path.suffix == '.db3' else sorted(path.glob('*.db3')):
        journal = db.with_name(f'{db.name}-journal')
        try:
            with journal.open('rb') as file:
                hot = file.read(len(_JOURNAL_MAGIC)) == _JOURNAL_MAGIC
        except OSError:
            continue
        if hot:
            raise BagError(
                f'{db}: its rollback journal {journal.name} is left from a write that never '
                f'finished (a recording killed while it committed), and the database is not '
                f'readable without it: open it once with sqlite3 to roll it back, e.g. '
                f'sqlite3 {db} "PRAGMA integrity_check"'
            )


@contextmanager
def open_bag(path: str | Path) -> Iterator[Bag]:
    """Open the rosbag2 at ``path`` (a bag directory, or one .mcap/.db3 file)."""
    path = Path(path)
    if not path.exists():
        raise BagError(f'{path}: no such bag (a rosbag2 directory, or a .mcap or .db3 file)')
    _check_no_hot_journal(path)
    try:
        reader = Reader(_storage_file(path))
        reader.open()
    except FileNotFoundError as exc:
        raise BagError(f'{path}: not a rosbag2 ({exc}){_recovery_hint(path)}') from exc
    except _DAMAGE as exc:
        reason = ' '.join(str(exc).split())  # a YAML parser's report spans several lines
        raise BagError(
            f'{path}: cannot be read as a rosbag2: {reason}{_recovery_hint(path)}'
            f'{_format_hint(path)}'
        ) from exc
    try:
        yield Bag(path, reader)
    finally:
        reader.close()
