"""``mmp_ros recover-bag SRC OUT``: a complete rosbag2 from an MCAP recording that never closed.

A recording killed outright (SIGKILL, out of memory, power lost) leaves its .mcap without
summary, footer and end magic, and its bag directory without ``metadata.yaml``: no reader
opens it, although every chunk written before the kill is on disk. This reads the file from
the start, record by record (``mcap``'s stream reader, which needs no summary), and writes
every complete message into a new bag through ``BagRecorder``, so that the result has
``metadata.yaml``, message definitions, type hashes and QoS like any bag recorded here.

Reading stops at the first record that is cut off or damaged (a chunk with a wrong CRC
included): the messages of a chunk are only kept once the whole chunk is there. A recording
split by size or duration (``NAME_0.mcap``, ``NAME_1.mcap``, ...: rosbag2 writes
``metadata.yaml`` only when it closes) is read file after file, in the order of their index,
into one bag, and the folder a kill at a split can leave in its directory (``NAME_i/``,
where the recorder starts a file) is removed. Topic names,
types, message timestamps (the log time) and the offered QoS stored in each channel's
metadata are kept; a topic whose type the recorder cannot write (no definition in the type
store, another type hash, not CDR) is skipped and named.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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
from mmp_ros.bags.source import TopicQos, offered_qos, uncompressed

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
    removed: list[Path] = field(default_factory=list)  # split_leftovers, removed
    not_removed: dict[Path, str] = field(default_factory=dict)  # split_leftovers left: why

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


# A storage file of a split bag: rosbag2 names file i of bag directory NAME ``NAME_i``.
_SPLIT_FILE = re.compile(r'(.*)_(\d+)')


def mcap_files(src: str | Path) -> list[Path]:
    """The .mcap files of ``src`` in recording order: that file; or in a bag directory its one
    .mcap, or the files of a recording split by size or duration (``ros2 bag record -b/-d``):
    ``NAME_0.mcap``, ``NAME_1.mcap``, ... ordered by that index (``NAME_10`` after
    ``NAME_9``)."""
    src = Path(src)
    if src.is_dir():
        files = sorted(src.glob('*.mcap'))
        if not files and (databases := sorted(src.glob('*.db3'))):
            _refuse_sqlite3(src, databases)
        split = [_SPLIT_FILE.fullmatch(f.stem) for f in files]
        if len(files) > 1 and all(split) and len({m[1] for m in split}) == 1:
            return sorted(files, key=lambda f: int(_SPLIT_FILE.fullmatch(f.stem)[2]))
        if len(files) != 1:
            found = ', '.join(f.name for f in files) if files else 'none'
            raise BagError(f'{src}: expected one .mcap file in the bag directory (or the '
                           f'NAME_0.mcap, NAME_1.mcap, ... of a split recording), found {found}')
        return files
    if not src.exists():
        raise BagError(f'{src}: no such file (an .mcap file, or a bag directory holding one)')
    if src.suffix == '.db3':
        _refuse_sqlite3(src, [src])
    return [src]


def missing_split_files(paths: list[Path]) -> list[str]:
    """The files missing from the split recording whose bag directory holds ``paths`` (from
    ``mcap_files``): ``NAME_i.mcap`` for each index below the last that no file has (deleted,
    lost in a copy, or compressed by ``--compression-mode file``, ``NAME_i.mcap.zstd``).
    One file counts as split when its ``NAME`` is the directory's, as rosbag2 names them."""
    matches = [_SPLIT_FILE.fullmatch(p.stem) for p in paths]
    if not all(matches) or len({m[1] for m in matches}) != 1:
        return []
    name = matches[0][1]
    if len(paths) == 1 and name != paths[0].parent.name:
        return []
    present = {int(m[2]) for m in matches}
    missing = []
    for index in range(max(present)):
        if index not in present:
            file = f'{name}_{index}.mcap'
            compressed = (paths[0].parent / f'{file}.zstd').exists()
            missing.append(f'{file} (only {file}.zstd is here: decompress it first, e.g. '
                           f'zstd -d {paths[0].parent / file}.zstd)' if compressed else file)
    return missing


def split_leftovers(src: str | Path) -> list[Path]:
    """The folders a split recording killed at a split leaves in its bag directory ``src``:
    ``NAME_i/``, where ``BagRecorder`` starts file i and writes the closed file's own
    metadata.yaml (rosbags' Writer makes it), removing it again at once. Killed then, it
    holds nothing, that metadata.yaml, or file i before its first message (not moved yet)."""
    src = Path(src)
    if not src.is_dir():
        return []
    names = {src.name} | {m[1] for f in src.glob('*.mcap') if (m := _SPLIT_FILE.fullmatch(f.stem))}
    found = []
    for folder in sorted(src.iterdir()):
        split = _SPLIT_FILE.fullmatch(folder.name)
        if folder.is_symlink() or not folder.is_dir() or not split or split[1] not in names:
            continue
        kept = {'metadata.yaml', 'metadata.yaml.tmp', f'{folder.name}.mcap'}
        children = list(folder.iterdir())
        if all(c.name in kept and c.is_file() and not c.is_symlink()
               and not (c.suffix == '.mcap' and _holds_a_message(c)) for c in children):
            found.append(folder)
    return found


def _holds_a_message(path: Path) -> bool:
    """False for an MCAP file that ends (cut off or not) before any message; True for one
    with a message or damaged before one."""
    with path.open('rb') as file:
        try:
            return any(isinstance(r, Message) for r in StreamReader(_ExactReads(file)).records)
        except EndOfFile:
            return False
        except _CUT:
            return True


def _refuse_sqlite3(src: Path, databases: list[Path]) -> None:
    """BagError for a sqlite3 recording: committed as it records, it opens as it is (also
    one that was killed, without metadata.yaml), where to recover is nothing."""
    each = ' (each file of a split recording by itself)' if len(databases) > 1 else ''
    raise BagError(f'{src}: a sqlite3 recording, which needs no recovery (its database is '
                   f'committed as it records, also when killed): open it as it is{each}, '
                   f'e.g. mmp_ros replay {databases[0]}')


def recover_mcap(src: str | Path, out: str | Path) -> Recovery:
    """Write every complete message of the MCAP recording ``src`` into a new bag ``out``.

    A split recording's files are read one after the other, each up to its first cut-off or
    damaged record; a file of it that holds no record (the one just opened when the
    recording was killed) is noted and passed over. BagError if ``out`` exists, ``src`` (the
    only file) is not MCAP, or it holds no message that can be written; then ``out`` is not
    created.
    """
    paths = mcap_files(src)
    out = Path(out)
    if out.exists():
        raise BagError(f'{out}: exists already; a recovery never overwrites')
    result = Recovery(file_size=sum(p.stat().st_size for p in paths), complete=True)
    target = _Target(out, result.skipped)
    stops: list[str] = []
    if Path(src).is_dir() and (missing := missing_split_files(paths)):
        # Their messages are not in OUT: never a complete copy.
        result.complete = False
        stops.append(f'{", ".join(missing)} missing from the split recording, their messages '
                     'are not in the bag')
    try:
        for path in paths:
            try:
                read, complete, stopped = _recover_file(path, target)
            except BagError as exc:
                if len(paths) == 1:
                    raise
                read, complete, stopped = 0, False, str(exc).removeprefix(f'{path}: ')
            result.bytes_read += read
            result.complete = result.complete and complete
            if stopped:
                stops.append(f'{path.name}: {stopped}' if len(paths) > 1 else stopped)
    finally:
        if target.recorder is not None:
            target.recorder.close()
    result.stopped = '; '.join(stops)
    recorder = target.recorder
    if recorder is None or not any(recorder.counts.values()):
        reason = f'; {result.stopped}' if result.stopped else ''
        skipped = ''.join(f'; {why}' for why in result.skipped.values())
        if recorder is not None:
            _remove_bag(out)
        raise BagError(f'{paths[0] if len(paths) == 1 else src}: holds no complete message '
                       f'that can be recovered{reason}'
                       f'{skipped}')
    result.counts = {t: n for t, n in recorder.counts.items() if n}
    for folder in split_leftovers(src):
        try:
            shutil.rmtree(folder)
        except OSError as exc:  # a recording on read-only media, say: OUT is written all the same
            result.not_removed[folder] = exc.strerror or str(exc)
        else:
            result.removed.append(folder)
    return result


@dataclass
class _Target:
    """The bag being written, over the files of a recording."""

    out: Path
    skipped: dict[str, str]  # topic -> why it is not written (Recovery.skipped)
    recorder: BagRecorder | None = None  # created at the first message
    types: dict[str, str] = field(default_factory=dict)  # topic -> the type it was added with


def _recover_file(path: Path, target: _Target) -> tuple[int, bool, str]:
    """Write the complete messages of one .mcap into ``target``. Returns the bytes read up
    to the end of the last record kept, whether the file had its footer, and why reading
    stopped before it ('' if it did not)."""
    out, skipped, recorder_types = target.out, target.skipped, target.types
    recorder = target.recorder
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    writable: dict[int, str] = {}  # channel id -> topic, for channels added to the recorder
    size = path.stat().st_size
    read = 0
    complete = False
    stopped = ''

    def add(channel: Channel) -> None:
        topic = channel.topic
        if topic in skipped:
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
            skipped[topic] = why if why.startswith('topic ') else f'topic {topic}: {why}'
            return
        writable[channel.id] = topic

    with path.open('rb') as file:
        reader = StreamReader(_ExactReads(file), emit_chunks=True)
        records = reader.records
        while True:
            try:
                record = next(records)
                inner = (breakup_chunk(record, validate_crc=True)
                         if isinstance(record, Chunk) else [record])
            except StopIteration:
                break
            except EndOfFile as exc:
                if read == 0:
                    raise BagError(f'{path}: not an MCAP file, or cut off before its first '
                                   'record') from exc
                stopped = (
                    'the file ends without its summary and footer'
                    if read == size else
                    f'the last {size - read} bytes are a cut-off record'
                )
                break
            except _CUT as exc:
                if read == 0 and not schemas and not channels:
                    raise BagError(f'{path}: not an MCAP file ({exc})') from exc
                stopped = f'damaged record after byte {read}: {" ".join(str(exc).split())}'
                break
            read = file.tell()
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
                        recorder = target.recorder = BagRecorder(out)
                        for channel in channels.values():
                            add(channel)
                    if topic := writable.get(item.channel_id):
                        # ros2 bag record --compression-mode message: each a zstd frame.
                        recorder.write(topic, item.log_time, uncompressed(item.data))
            if isinstance(record, Footer):
                complete = True
    return read, complete, stopped


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
                        'bag directory (also one split into NAME_0.mcap, NAME_1.mcap, ...)')
    parser.add_argument('out', help='bag directory to create (must not exist)')


def run(args: argparse.Namespace) -> int:
    result = recover_mcap(args.src, args.out)
    counts = ', '.join(f'{t}: {n}' for t, n in result.counts.items())
    print(f'{args.out}: recovered {result.message_count} messages ({counts})')
    if result.complete and (result.removed or result.not_removed):  # the recording never closed
        print(f'{args.src}: killed at a split, after its last message: every file was complete '
              '(it has its footer), all its messages are kept')
    elif result.complete:
        print(f'{args.src}: the file was complete (it has its footer); this is a copy')
    else:
        print(f'{args.src}: read {result.bytes_read} of {result.file_size} bytes; '
              f'{result.stopped or "the file ends without a footer"}')
    for folder in result.removed:
        print(f'{folder}: removed, a folder the recording left as it was killed at a split '
              '(it held no message)')
    for folder, why in result.not_removed.items():
        print(f'{folder}: a folder the recording left as it was killed at a split (it holds no '
              f'message), not removed: {why}', file=sys.stderr)
    for why in result.skipped.values():
        print(f'not recovered: {why}', file=sys.stderr)
    return 0
