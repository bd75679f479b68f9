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
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType

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

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.source import TopicQos

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
_INFINITE = QosTime(0x7FFFFFFF, 0xFFFFFFFF)  # how rosbag2 writes "no deadline/lifespan"
COMMIT_PERIOD_S = 1.0  # at most this much recording is lost to a crash
# What a full disk, a file size limit or a failing drive make the storages raise.
_WRITE_FAILED = (OSError, sqlite3.Error)


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
    """A new rosbag2 at ``path``; topics are added as their types become known."""

    def __init__(self, path: str | Path, *, storage: str = 'mcap') -> None:
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path}: exists already; a recording never overwrites')
        if storage not in STORAGES:
            raise BagError(f'storage {storage!r}: expected one of {sorted(STORAGES)}')
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._committed = time.monotonic()
        self._connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}
        try:
            self._writer.open()
            if isinstance(self._writer.storage, Sqlite3Writer):
                # A transaction that outgrows the page cache would be written into the
                # database file before its commit, the old pages kept in a rollback journal:
                # rosbags' reader (immutable) ignores that journal, and a kill then left a
                # database it read wrongly. Kept in memory instead (a second of messages),
                # the file changes only at a commit.
                self._writer.storage.conn.execute('PRAGMA cache_spill = OFF')
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
        self.counts[topic] = 0

    @property
    def topics(self) -> list[str]:
        return list(self._connections)

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
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
        if self._writer.storage is not None:
            with self._failing('cannot finish the bag'):
                self._writer.close()
