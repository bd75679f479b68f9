"""Write received messages (serialized CDR bytes) into a rosbag2, MCAP by default.

Every connection carries the message definition and RIHS01 type hash from rosbags' ROS 2
Kilted type store, so that rosbags, the ``mcap`` readers and ``ros2 bag`` can all open the
result and decode it. The bag is only complete once ``close`` has written its summary and
``metadata.yaml``: the recorder is a context manager so that every way out closes it.

What was written is put on disk every ``COMMIT_PERIOD_S`` (``commit``), so that a recording
that never gets to ``close`` (killed, out of memory, power lost) keeps its messages but the
last second's. rosbags' sqlite3 writer commits only when it closes (the rollback of the open
transaction on the next open emptied such a database, however long it had recorded), and its
MCAP writer keeps messages in memory until its chunk passes 1 MiB (a slow topic's whole
recording); so the sqlite3 transaction is committed (and held in memory until then, below),
and the pending MCAP chunk is closed (``McapWriter.close_chunk``, what its own size limit
calls), flushed and synced.
``mmp_ros recover-bag`` reads the chunks of an MCAP file that has no summary.

A recording can be split by size or duration as ``ros2 bag record -b/-d`` splits one
(``SplitLimits``): the bag directory ``NAME`` then holds ``NAME_0.mcap``, ``NAME_1.mcap``, ...
(or ``.db3``), each written by a rosbags Writer of its own, and one ``metadata.yaml`` listing
them all (``split_bag_metadata``), written when the recording closes, as rosbag2 does.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.interfaces import (
    Connection,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.errors import WriterError
from rosbags.rosbag2.storage_mcap import McapWriter
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer
from rosbags.typesys import Stores, get_typestore
from ruamel.yaml import YAML

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.source import TopicQos

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
_INFINITE = QosTime(0x7FFFFFFF, 0xFFFFFFFF)  # how rosbag2 writes "no deadline/lifespan"
COMMIT_PERIOD_S = 1.0  # at most this much recording is lost to a crash
# What a full disk, a file size limit or a failing drive make the storages raise.
_WRITE_FAILED = (OSError, sqlite3.Error)
# The smallest file a split by size may make: rosbag2's storage plugins refuse less for
# ``ros2 bag record -b`` (an empty sqlite3 database alone is 84 kiB).
MIN_SPLIT_BYTES = {'mcap': 1024, 'sqlite3': 86016}


@dataclass(frozen=True)
class SplitLimits:
    """When a recording goes on in a new storage file, as ``ros2 bag record -b/-d`` splits:
    before a message, once the current file has reached ``max_bytes`` or the message comes more
    than ``max_duration_ns`` after the file's first message. A file always takes the message
    that starts it (never an empty file), so it ends a message (and its summary) past
    ``max_bytes``. None: no limit of that kind."""

    max_bytes: int | None = None
    max_duration_ns: int | None = None

    def problem(self, storage: str) -> str:
        """Why these limits cannot be used with ``storage`` ('' if they can)."""
        if self.max_bytes is not None and self.max_bytes < MIN_SPLIT_BYTES[storage]:
            return (f'--max-bag-size {self.max_bytes}: a {storage} file must be allowed at least '
                    f'{MIN_SPLIT_BYTES[storage]} bytes')
        if self.max_duration_ns is not None and self.max_duration_ns <= 0:
            return f'--max-bag-duration: must be positive, got {self.max_duration_ns} ns'
        return ''

    def split_before(self, file_bytes: int, file_start_ns: int | None,
                     timestamp_ns: int) -> bool:
        """Whether the message at ``timestamp_ns`` starts a new file, the current one being
        ``file_bytes`` long and its first message at ``file_start_ns`` (None: it has none)."""
        if file_start_ns is None:
            return False
        return ((self.max_bytes is not None and file_bytes >= self.max_bytes)
                or (self.max_duration_ns is not None
                    and timestamp_ns - file_start_ns > self.max_duration_ns))


def split_bag_metadata(files: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``rosbag2_bagfile_information`` of a bag made of ``files``, each that of one file as
    its own Writer wrote it, in recording order: every file in ``relative_file_paths`` and
    ``files`` (its path, starting time, duration and message count), the topics' counts
    summed, the bag's time span from its first message to its last."""
    topics: dict[str, dict[str, Any]] = {}
    for file in files:
        for topic in file['topics_with_message_count']:
            name = topic['topic_metadata']['name']
            if name in topics:
                topics[name]['message_count'] += topic['message_count']
            else:
                topics[name] = {'topic_metadata': topic['topic_metadata'],
                                'message_count': topic['message_count']}
    spans = [(f['starting_time']['nanoseconds_since_epoch'], f['duration']['nanoseconds'])
             for f in files if f['message_count']]
    start = min((s for s, _ in spans), default=files[0]['starting_time'][
        'nanoseconds_since_epoch'])
    end = max((s + d for s, d in spans), default=start)
    return {
        **files[0],
        'relative_file_paths': [p for f in files for p in f['relative_file_paths']],
        'duration': {'nanoseconds': end - start},
        'starting_time': {'nanoseconds_since_epoch': start},
        'message_count': sum(f['message_count'] for f in files),
        'topics_with_message_count': list(topics.values()),
        'files': [entry for f in files for entry in f['files']],
    }


def rosbags_qos(qos: TopicQos) -> Qos:
    """``qos`` as rosbags writes it into ``offered_qos_profiles`` (rosbag2's own defaults for
    what ``TopicQos`` leaves out)."""
    return Qos(
        QosHistory.KEEP_LAST,
        qos.depth,
        QosReliability.RELIABLE if qos.reliable else QosReliability.BEST_EFFORT,
        QosDurability.TRANSIENT_LOCAL if qos.transient_local else QosDurability.VOLATILE,
        _INFINITE,
        _INFINITE,
        QosLiveliness.AUTOMATIC,
        _INFINITE,
        False,
    )


class BagRecorder:
    """A new rosbag2 at ``path``; topics are added as their types become known.

    ``split``: split into several files (``SplitLimits``); without it the bag is one file,
    named as rosbags names it (``NAME/NAME.mcap``)."""

    def __init__(self, path: str | Path, *, storage: str = 'mcap',
                 split: SplitLimits | None = None) -> None:
        self.path = Path(path)
        if storage not in STORAGES:
            raise BagError(f'storage {storage!r}: expected one of {sorted(STORAGES)}')
        if split is not None and (problem := split.problem(storage)):
            raise BagError(problem)
        if self.path.exists():
            raise BagError(f'{self.path}: exists already; a recording never overwrites')
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._storage = storage
        self._split = split if split is not None and split != SplitLimits() else None
        self._files: list[dict[str, Any]] = []  # split: each closed file's metadata
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._committed = time.monotonic()
        self._connections: dict[str, Connection] = {}
        self._topics: dict[str, tuple[str, list[Qos]]] = {}  # topic -> type, offered QoS
        self.counts: dict[str, int] = {}
        try:
            if self._split is None:
                self._writer.open()
                self._keep_transactions_in_memory()
            else:
                try:
                    self.path.mkdir(mode=0o755, parents=True)
                except FileExistsError:
                    raise WriterError(f'{self.path} exists already, not overwriting.') from None
                self._open_file()
        except WriterError as exc:  # the directory appeared since the check: not ours
            raise BagError(f'{self.path}: cannot create the bag: {exc}') from exc
        except BaseException as exc:
            # Ctrl-C or SIGTERM (or a failure) once the directory was made, its .mcap or .db3
            # perhaps opened: the caller's clean-up (closing or removing the bag) is armed
            # only once this returns, so what was made is removed here. Left, it was a bag
            # without metadata.yaml: an empty recording that looked like a killed one.
            self.discard()
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise BagError(f'{self.path}: cannot create the bag: {exc}') from exc
            raise

    def _keep_transactions_in_memory(self) -> None:
        if isinstance(self._writer.storage, Sqlite3Writer):
            # A transaction that outgrows the page cache would be written into the database
            # file before its commit, the old pages kept in a rollback journal: rosbags'
            # reader (immutable) ignores that journal, and a kill then left a database it
            # read wrongly. Kept in memory instead (a second of messages), the file changes
            # only at a commit.
            self._writer.storage.conn.execute('PRAGMA cache_spill = OFF')

    def _open_file(self) -> None:
        """Start file ``NAME_<i>`` of a split recording, with every topic recorded so far
        (rosbag2 registers them all again in each file).

        rosbags names the file after the directory its Writer makes (``NAME/NAME_<i>/
        NAME_<i>.mcap``): it is moved into the bag directory at once, before any message, so
        that a recording killed at any time has its files where rosbag2 has them, for
        ``mmp_ros recover-bag``. sqlite3 names its rollback journal after the file it opened:
        the database (its tables, committed as they are created) is opened again there."""
        staging = self.path / f'{self.path.name}_{len(self._files)}'
        self._writer = Writer(staging, version=9, storage_plugin=STORAGES[self._storage])
        self._writer.open()
        storage = self._writer.storage
        target = self.path / storage.path.name
        if isinstance(storage, Sqlite3Writer):
            storage.conn.close()
        storage.path.rename(target)
        staging.rmdir()
        storage.path = target
        if isinstance(storage, Sqlite3Writer):
            storage.conn = sqlite3.connect(f'file:{target}', uri=True)
            storage.cursor = storage.conn.cursor()
        self._keep_transactions_in_memory()
        self._connections = {
            topic: self._writer.add_connection(topic, msgtype, typestore=self._typestore,
                                               offered_qos_profiles=profiles)
            for topic, (msgtype, profiles) in self._topics.items()
        }

    def _close_file(self) -> None:
        """Finish the current file of a split recording (its summary), keeping the metadata
        rosbags writes of it for the bag's ``metadata.yaml``."""
        staging = self._writer.path
        staging.mkdir()  # where rosbags writes the file's own metadata.yaml
        self._writer.close()
        metadata = self._writer.metapath
        self._files.append(YAML(typ='safe').load(metadata.read_text())[
            'rosbag2_bagfile_information'])
        metadata.unlink()
        staging.rmdir()

    def _file_size(self) -> int:
        """Bytes of the current file, the messages not yet on disk included."""
        storage = self._writer.storage
        if isinstance(storage, Sqlite3Writer):  # pages of the open transaction included
            pages = storage.conn.execute('PRAGMA page_count').fetchone()[0]
            return pages * storage.conn.execute('PRAGMA page_size').fetchone()[0]
        return storage.bio.tell() + storage.chunk.bio.tell()

    @property
    def file_count(self) -> int:
        """Storage files the recording has (split: those closed and the one being written)."""
        return len(self._files) + (self._writer.storage is not None)

    def discard(self) -> None:
        """Give up the bag and remove its directory (made by ``__init__``, which refuses a
        path that exists): one being created, or one that nothing could be recorded into."""
        with suppress(Exception):
            self._writer.abort()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def type_hash(self, msgtype: str) -> str:
        """RIHS01 hash of ``msgtype`` as recorded; BagError if there is no definition."""
        if msgtype not in self._typestore.fielddefs:
            raise BagError(
                f'{self.path}: no message definition for {msgtype} (not in the ROS 2 Kilted '
                'type store of rosbags), so it cannot be recorded readably'
            )
        return self._typestore.hash_rihs01(msgtype)

    def add_topic(
        self, topic: str, msgtype: str, qos: TopicQos | None, *, type_hash: str | None = None
    ) -> None:
        """Start recording ``topic``. ``type_hash``: the live publisher's, checked if given.
        ``qos`` None: no offered QoS is recorded (a recovered bag's channel had none).

        A publisher whose type hash differs from the stored definition's uses another
        version of the message; recording its bytes under this definition would make a bag
        that decodes wrongly, so that is refused.
        """
        if topic in self._connections:
            raise BagError(f'{self.path}: topic {topic} is recorded already')
        expected = self.type_hash(msgtype)
        if type_hash is not None and type_hash != expected:
            raise BagError(
                f'{self.path}: topic {topic}: the publisher\'s {msgtype} has type hash '
                f'{type_hash}, the known definition {expected}; not recording it'
            )
        profiles = [] if qos is None else [rosbags_qos(qos)]
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self._typestore, offered_qos_profiles=profiles
        )
        self._topics[topic] = (msgtype, profiles)
        self.counts[topic] = 0

    @property
    def topics(self) -> list[str]:
        return list(self._connections)

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        if self._split is not None:
            writer = self._writer
            start = writer.min_timestamp if any(writer.counts.values()) else None
            with self._failing('cannot start the next file of the bag'):
                if self._split.split_before(self._file_size(), start, timestamp_ns):
                    self._close_file()
                    self._open_file()
                    self._committed = time.monotonic()
        with self._failing('cannot write the bag'):
            self._writer.write(self._connections[topic], timestamp_ns, data)
        self.counts[topic] += 1
        if time.monotonic() - self._committed >= COMMIT_PERIOD_S:
            self.commit()

    def commit(self) -> None:
        """Put every message written so far on disk, where a recording that is never closed
        keeps it (``write`` does this every ``COMMIT_PERIOD_S``; a recorder whose topics fall
        silent calls it itself)."""
        storage = self._writer.storage
        with self._failing('cannot write the bag'):
            if isinstance(storage, Sqlite3Writer):
                storage.conn.commit()
            elif isinstance(storage, McapWriter) and storage.chunk.msgs:
                storage.close_chunk()
                storage.bio.flush()
                os.fsync(storage.bio.fileno())
        self._committed = time.monotonic()

    @contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """A storage error (disk full...) as a BagError saying what is left; the writer is
        given up, as one that failed halfway through a record cannot finish the file."""
        storage = self._writer.storage
        try:
            yield
        except _WRITE_FAILED as exc:
            with suppress(Exception):
                self._writer.abort()
            if isinstance(storage, Sqlite3Writer):
                left = f'{storage.path} holds what was committed (a second ago and before)'
            else:
                left = ('what reached the disk (all but the last second) can be recovered: '
                        f'mmp_ros recover-bag {self.path} OUT')
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise BagError(f'{self.path}: {what}: {reason}; {left}') from exc

    def close(self) -> None:
        """Finish the file (summary, metadata.yaml). Safe to call more than once."""
        if self._writer.storage is None:
            return
        with self._failing('cannot finish the bag'):
            if self._split is None:
                self._writer.close()
                return
            self._close_file()
            yaml = YAML(typ='safe')
            yaml.default_flow_style = False
            text = StringIO()
            yaml.dump({'rosbag2_bagfile_information': split_bag_metadata(self._files)}, text)
            written = self.path / 'metadata.yaml.tmp'
            written.write_text(text.getvalue(), 'utf8')
            written.replace(self.path / 'metadata.yaml')
