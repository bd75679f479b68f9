"""``mmp_ros recover-bag SRC OUT``: a complete rosbag2 from an MCAP recording that never closed.

A recording killed outright (SIGKILL, out of memory, power lost) leaves its .mcap without
summary, footer and end magic, and its bag directory without ``metadata.yaml``: no reader
opens it, although every chunk written before the kill is on disk. This reads the file from
the start, record by record (``mcap``'s stream reader, which needs no summary), and writes
every complete message into a new bag through ``BagRecorder``, so that the result has
``metadata.yaml``, message definitions, type hashes and QoS like any bag recorded here.

Reading stops at the first record that is cut off or damaged (a chunk with a wrong CRC
included): the messages of a chunk are only kept once the whole chunk is there. Topic names,
types, message timestamps (the log time) and the offered QoS stored in each channel's
metadata are kept; a topic whose type the recorder cannot write (no definition in the type
store, another type hash, not CDR) is skipped and named.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mcap.exceptions import EndOfFile, McapError
from mcap.records import Channel, Chunk, Footer, Message, Schema
from mcap.stream_reader import CRCValidationError, StreamReader, breakup_chunk
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.metadata import parse_qos

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.recording import BagRecorder
from mmp_ros.bags.source import TopicQos, offered_qos

COMMAND = 'mmp_ros recover-bag'
try:
    from zstandard import ZstdError
except ImportError:  # then mcap cannot read zstd chunks either
    ZstdError = ValueError

# What a cut-off or damaged record makes the stream reader raise (RuntimeError: lz4's).
_CUT = (McapError, CRCValidationError, ValueError, struct.error, MemoryError, ZstdError,
        RuntimeError)


@dataclass
class Recovery:
    """What ``recover_mcap`` kept."""

    counts: dict[str, int] = field(default_factory=dict)  # topic -> messages written
    skipped: dict[str, str] = field(default_factory=dict)  # topic -> why it was not written
    complete: bool = False  # the file had its footer: nothing was cut off
    stopped: str = ''  # why reading stopped before a footer
    bytes_read: int = 0  # up to the end of the last record kept
    file_size: int = 0

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())


class _ExactReads:
    """A file whose ``read(n)`` gives n bytes or raises EndOfFile: the stream reader takes
    a short read as data, which would make the last, cut-off message of a file look whole."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._size = os.fstat(file.fileno()).st_size

    def read(self, size: int) -> bytes:
        # A damaged length would otherwise make the reader allocate up to 4 GiB first.
        if self._file.tell() + size > self._size:
            raise EndOfFile(f'{size} bytes asked at byte {self._file.tell()}, past the end')
        data = self._file.read(size)
        if len(data) < size:
            raise EndOfFile(f'{size - len(data)} bytes missing at byte {self._file.tell()}')
        return data


def mcap_file(src: str | Path) -> Path:
    """The .mcap of ``src``: that file, or the one .mcap in a bag directory."""
    src = Path(src)
    if src.is_dir():
        files = sorted(src.glob('*.mcap'))
        if len(files) != 1:
            found = ', '.join(f.name for f in files) if files else 'none'
            raise BagError(f'{src}: expected one .mcap file in the bag directory, found {found}')
        return files[0]
    if not src.exists():
        raise BagError(f'{src}: no such file (an .mcap file, or a bag directory holding one)')
    return src


def recover_mcap(src: str | Path, out: str | Path) -> Recovery:
    """Write every complete message of the MCAP recording ``src`` into a new bag ``out``.

    BagError if ``out`` exists, ``src`` is not MCAP, or it holds no message that can be
    written; then ``out`` is not created.
    """
    path = mcap_file(src)
    out = Path(out)
    if out.exists():
        raise BagError(f'{out}: exists already; a recovery never overwrites')
    result = Recovery(file_size=path.stat().st_size)
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    writable: dict[int, str] = {}  # channel id -> topic, for channels added to the recorder
    recorder_types: dict[str, str] = {}  # topic -> the message type it was added with
    recorder: BagRecorder | None = None

    def add(channel: Channel) -> None:
        topic = channel.topic
        if topic in result.skipped:
            return
        schema = schemas.get(channel.schema_id)
        msgtype = schema.name if schema is not None else ''
        try:
            if not msgtype:
                raise BagError(f'topic {topic}: its channel names no message type')
            if channel.message_encoding != 'cdr':
                raise BagError(f'topic {topic}: encoded {channel.message_encoding!r}, not CDR')
            if topic in recorder_types:  # another channel of the same topic
                if recorder_types[topic] != msgtype:
                    raise BagError(f'topic {topic} holds several message types '
                                   f'{sorted({recorder_types[topic], msgtype})}')
            else:
                recorder.add_topic(topic, msgtype, _channel_qos(channel),
                                   type_hash=channel.metadata.get('topic_type_hash') or None)
                recorder_types[topic] = msgtype
        except BagError as exc:
            why = str(exc).removeprefix(f'{out}: ')
            result.skipped[topic] = why if why.startswith('topic ') else f'topic {topic}: {why}'
            return
        writable[channel.id] = topic

    with path.open('rb') as file:
        reader = StreamReader(_ExactReads(file), emit_chunks=True)
        records = reader.records
        try:
            while True:
                try:
                    record = next(records)
                    inner = (breakup_chunk(record, validate_crc=True)
                             if isinstance(record, Chunk) else [record])
                except StopIteration:
                    break
                except EndOfFile as exc:
                    if result.bytes_read == 0:
                        raise BagError(f'{path}: not an MCAP file, or cut off before its first '
                                       'record') from exc
                    result.stopped = (
                        'the file ends without its summary and footer'
                        if result.bytes_read == result.file_size else
                        f'the last {result.file_size - result.bytes_read} bytes are a cut-off '
                        'record'
                    )
                    break
                except _CUT as exc:
                    if result.bytes_read == 0 and not schemas and not channels:
                        raise BagError(f'{path}: not an MCAP file ({exc})') from exc
                    result.stopped = (f'damaged record after byte {result.bytes_read}: '
                                      f'{" ".join(str(exc).split())}')
                    break
                result.bytes_read = file.tell()
                for item in inner:
                    if isinstance(item, Schema):
                        schemas[item.id] = item
                    elif isinstance(item, Channel):
                        channels[item.id] = item
                        if recorder is not None:
                            add(item)
                    elif isinstance(item, Message) and item.channel_id in channels:
                        if recorder is None:
                            # Created at the first message: nothing recoverable, no bag.
                            recorder = BagRecorder(out)
                            for channel in channels.values():
                                add(channel)
                        if topic := writable.get(item.channel_id):
                            recorder.write(topic, item.log_time, item.data)
                if isinstance(record, Footer):
                    result.complete = True
        finally:
            if recorder is not None:
                recorder.close()
    if recorder is None or not any(recorder.counts.values()):
        reason = f'; {result.stopped}' if result.stopped else ''
        skipped = ''.join(f'; {why}' for why in result.skipped.values())
        if recorder is not None:
            _remove_bag(out)
        raise BagError(f'{path}: holds no complete message that can be recovered{reason}'
                       f'{skipped}')
    result.counts = {t: n for t, n in recorder.counts.items() if n}
    return result


def _remove_bag(out: Path) -> None:
    """Remove the empty bag just created at ``out`` (its files and the directory)."""
    for child in out.iterdir():
        child.unlink()
    out.rmdir()


def _channel_qos(channel: Channel) -> TopicQos | None:
    """The offered QoS a rosbag2 writer stored in the channel's metadata, if any."""
    try:
        return offered_qos(parse_qos(channel.metadata.get('offered_qos_profiles', '')))
    except (ReaderError, TypeError, AttributeError):
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('src', help='the .mcap file of a recording that never closed, or its '
                        'bag directory')
    parser.add_argument('out', help='bag directory to create (must not exist)')


def run(args: argparse.Namespace) -> int:
    result = recover_mcap(args.src, args.out)
    counts = ', '.join(f'{t}: {n}' for t, n in result.counts.items())
    print(f'{args.out}: recovered {result.message_count} messages ({counts})')
    if result.complete:
        print(f'{args.src}: the file was complete (it has its footer); this is a copy')
    else:
        print(f'{args.src}: read {result.bytes_read} of {result.file_size} bytes; '
              f'{result.stopped or "the file ends without a footer"}')
    for why in result.skipped.values():
        print(f'not recovered: {why}', file=sys.stderr)
    return 0
