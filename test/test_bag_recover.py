"""``mmp_ros recover-bag``: an MCAP recording that never closed (killed, or cut off at any
byte) becomes a complete bag holding exactly the messages written before the cut."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import repo_env

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.recording import BagRecorder
from mmp_ros.bags.recovery import recover_mcap, split_leftovers
from mmp_ros.bags.source import TopicQos, open_bag
from mmp_ros.cli import main

REPO = Path(__file__).resolve().parents[1]
TOPICS = {  # topic -> (type, offered QoS)
    '/rec/text': ('std_msgs/msg/String', TopicQos(reliable=True, transient_local=False, depth=7)),
    '/rec/more': ('std_msgs/msg/String', TopicQos(reliable=False, transient_local=True, depth=3)),
}
WRITER = """
import os, sys
from test_bag_recover import write_messages
from mmp_ros.bags.recording import BagRecorder
recorder = BagRecorder(sys.argv[1])
write_messages(recorder, int(sys.argv[2]))
print('written', flush=True)
sys.stdin.read()  # killed here, the bag never closed
"""


def message(i: int) -> tuple[str, int, bytes]:
    """The i-th message written: (topic, stamp, CDR of a std_msgs/String of 60 kB)."""
    text = bytes([65 + i % 26]) * 60_000 + str(i).encode()
    cdr = b'\x00\x01\x00\x00' + struct.pack('<I', len(text) + 1) + text + b'\x00'
    return ('/rec/text' if i % 3 else '/rec/more'), 1_000_000_000 + i * 33_000_000 + i % 7, cdr


def write_messages(recorder: BagRecorder, count: int) -> None:
    for topic, (msgtype, qos) in TOPICS.items():
        recorder.add_topic(topic, msgtype, qos)
    for i in range(count):
        recorder.write(*message(i))


def assert_prefix_recovered(out: Path, at_least: int, written: int) -> int:
    """``out`` opens and holds messages 0..n-1 exactly (n >= at_least); returns n."""
    with open_bag(out) as bag:
        got = list(bag.messages(list(bag.topics)))
        n = len(got)
        assert at_least <= n <= written
        assert got == [message(i) for i in range(n)]
        assert bag.message_count == n
        for topic, (msgtype, qos) in TOPICS.items():
            if topic in bag.topics:
                assert bag.topics[topic].msgtype == msgtype
                assert bag.topics[topic].offered_qos == qos
    assert (out / 'metadata.yaml').exists()
    return n


@pytest.fixture(scope='module')
def closed_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('closed') / 'bag'
    with BagRecorder(path) as recorder:
        write_messages(recorder, 100)  # 6 MB: five 1 MiB chunks and the rest
    return path / 'bag.mcap'


def test_sigkilled_recording_is_recovered(tmp_path):
    src = tmp_path / 'killed'
    with subprocess.Popen([sys.executable, '-c', WRITER, str(src), '60'],
                          env=repo_env(REPO / 'test'),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as writer:
        try:
            assert writer.stdout.readline() == 'written\n'
        finally:
            writer.send_signal(signal.SIGKILL)
    for bag in (src, src / 'killed.mcap'):  # replay's error says how to get it back
        with pytest.raises(BagError, match=f'mmp_ros recover-bag {bag} OUT$'), open_bag(bag):
            pass
    result = recover_mcap(src, tmp_path / 'out')
    n = assert_prefix_recovered(tmp_path / 'out', 34, 60)  # 3 of the chunks reached the disk
    assert result.message_count == n and not result.complete
    assert result.bytes_read == result.file_size  # the kill left whole chunks only


@pytest.mark.parametrize('keep', [0.95, 0.6, 0.35, 0.2])
def test_bag_cut_off_at_any_byte_is_recovered(closed_bag, keep, tmp_path):
    src = tmp_path / 'cut.mcap'
    data = closed_bag.read_bytes()
    src.write_bytes(data[:int(len(data) * keep)])
    result = recover_mcap(src, tmp_path / 'out')
    # Every chunk (18 messages: rosbags closes one past 1 MiB) wholly before the cut is kept,
    # none after it.
    whole_chunks = int(len(data) * keep) // (18 * 60_100)
    n = assert_prefix_recovered(tmp_path / 'out', 18 * (whole_chunks - 1), 100)
    assert n % 18 == 0 and result.message_count == n
    assert not result.complete and 'cut-off record' in result.stopped


def test_complete_bag_is_copied(closed_bag, tmp_path):
    result = recover_mcap(closed_bag.parent, tmp_path / 'out')
    assert result.complete and assert_prefix_recovered(tmp_path / 'out', 100, 100) == 100


def test_topic_of_unknown_type_is_skipped_and_missing_qos_stays_missing(tmp_path, capsys):
    from mcap.writer import Writer

    src = tmp_path / 'other.mcap'
    with src.open('wb') as file:
        writer = Writer(file, chunk_size=1)  # zstd chunks with CRCs, one message each
        writer.start(profile='ros2')
        known = writer.register_schema('std_msgs/msg/String', 'ros2msg', b'string data')
        unknown = writer.register_schema('my_pkg/msg/Thing', 'ros2msg', b'int32 x')
        text = writer.register_channel('/text', 'cdr', known)  # no offered_qos_profiles
        thing = writer.register_channel('/thing', 'cdr', unknown)
        for i in range(3):
            writer.add_message(text, log_time=10 + i, data=message(i)[2], publish_time=10 + i)
            writer.add_message(thing, log_time=10 + i, data=b'\0\1\0\0\5\0\0\0',
                               publish_time=10 + i)
        file.flush()  # never finished: no summary, no footer
    assert main(['recover-bag', str(src), str(tmp_path / 'out')]) == 0
    out, err = capsys.readouterr()
    assert 'recovered 3 messages (/text: 3)' in out
    assert err.startswith('not recovered: topic /thing: no message definition for my_pkg')
    with open_bag(tmp_path / 'out') as bag:
        assert list(bag.topics) == ['/text'] and bag.topics['/text'].offered_qos is None
        assert list(bag.messages(['/text'])) == [
            ('/text', 10 + i, message(i)[2]) for i in range(3)
        ]


def test_refusals_are_one_line_and_create_nothing(closed_bag, tmp_path, capsys):
    text = tmp_path / 'notes.mcap'
    text.write_text('not a bag\n')
    head = tmp_path / 'head.mcap'
    head.write_bytes(closed_bag.read_bytes()[:500_000])  # cut inside the first chunk
    exists = tmp_path / 'exists'
    exists.mkdir()
    cases = [
        (text, 'not an MCAP file'),
        (tmp_path / 'missing.mcap', 'no such file'),
        (head, 'holds no complete message'),
        (tmp_path, 'of a split recording), found head.mcap, notes'),
    ]
    for src, reason in cases:
        assert main(['recover-bag', str(src), str(tmp_path / 'out')]) == 2
        err = capsys.readouterr().err
        assert reason in err and err.count('\n') == 1, err
        assert not (tmp_path / 'out').exists()
    assert main(['recover-bag', str(closed_bag), str(exists)]) == 2
    assert 'exists already' in capsys.readouterr().err
    assert list(exists.iterdir()) == []


def test_a_sqlite3_recording_is_said_to_need_no_recovery(tmp_path, capsys):
    bag = tmp_path / 'run1'
    with BagRecorder(bag, storage='sqlite3') as recorder:
        write_messages(recorder, 3)
    database = bag / 'run1.db3'
    for src in (bag, database, 'killed'):
        if src == 'killed':  # a killed recording: no metadata.yaml
            (bag / 'metadata.yaml').unlink()
            src = bag
        assert main(['recover-bag', str(src), str(tmp_path / 'out')]) == 2
        err = capsys.readouterr().err
        assert err == (f'mmp_ros recover-bag: {src}: a sqlite3 recording, which needs no '
                       'recovery (its database is committed as it records, also when killed): '
                       f'open it as it is, e.g. mmp_ros replay {database}\n'), err
        assert not (tmp_path / 'out').exists()
    with open_bag(database) as opened:  # what it says to open opens
        assert opened.message_count == 3
    database.rename(bag / 'run1_0.db3')
    (bag / 'run1_1.db3').write_bytes((bag / 'run1_0.db3').read_bytes())
    assert main(['recover-bag', str(bag), str(tmp_path / 'out')]) == 2
    assert ('open it as it is (each file of a split recording by itself), e.g. mmp_ros replay '
            f'{bag / "run1_0.db3"}\n') in capsys.readouterr().err


def test_split_recording_killed_in_its_last_file_is_recovered_in_file_order(tmp_path, capsys):
    # Recorded with -b/-d, killed: NAME_0..NAME_11.mcap, the last without summary or footer,
    # no metadata.yaml (rosbag2 writes it at close). NAME_10 comes after NAME_9, not NAME_1.
    from split_bags import end_of_chunks, image_cdr, write_split_bag

    start = 1_700_000_000 * 10**9
    files = [[('/cam', start + i * 10**8) for i in range(k * 5, k * 5 + 5)] for k in range(12)]
    src = write_split_bag(tmp_path / 'run', files)
    (src / 'metadata.yaml').unlink()
    last = src / 'run_11.mcap'
    last.write_bytes(last.read_bytes()[:end_of_chunks(last) + 10])
    assert main(['recover-bag', str(src), str(tmp_path / 'out')]) == 0
    out = capsys.readouterr().out
    assert 'recovered 60 messages (/cam: 60)' in out
    assert 'run_11.mcap: the last 10 bytes are a cut-off record' in out
    with open_bag(tmp_path / 'out') as bag:
        assert bag.message_count == 60
        assert list(bag.messages(['/cam'])) == [
            ('/cam', start + i * 10**8, image_cdr(i, start + i * 10**8)) for i in range(60)]


def test_split_recording_killed_as_it_opened_a_file_is_recovered(tmp_path):
    from split_bags import write_split_bag

    files = [[('/cam', 10**9 + i)] for i in range(3)]
    src = write_split_bag(tmp_path / 'run', files)
    (src / 'metadata.yaml').unlink()
    (src / 'run_3.mcap').write_bytes(b'')  # opened at the split, killed before its header
    result = recover_mcap(src, tmp_path / 'out')
    assert result.counts == {'/cam': 3} and not result.complete
    assert result.stopped == 'run_3.mcap: not an MCAP file, or cut off before its first record'
    (src / 'run_3.mcap').unlink()  # three complete files: a copy
    assert recover_mcap(src, tmp_path / 'copy').complete


# A split recording (one 60 kB message a file) SIGKILLed at a split: at the given call of
# a Path method, when the recorder starts file 1 or finishes file 0 in rosbags' NAME_i/.
KILLED_AT_SPLIT = """
import os, signal, sys
from pathlib import Path
from test_bag_recover import write_messages
from mmp_ros.bags.recording import BagRecorder, SplitLimits
method, at = sys.argv[2], int(sys.argv[3])
original, calls = getattr(Path, method), []
def killed(self, *args):
    calls.append(self)
    if len(calls) == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args)
setattr(Path, method, killed)
write_messages(BagRecorder(sys.argv[1], split=SplitLimits(max_bytes=1024)), 3)
"""


@pytest.mark.parametrize(('method', 'at', 'left'), [
    ('rename', 2, ['run/run_1', 'run/run_1/run_1.mcap']),  # file 1 not moved yet
    ('rmdir', 3, ['run/run_1', 'run/run_1.mcap']),  # moved, its folder not removed yet
    ('unlink', 1, ['run/run_0', 'run/run_0/metadata.yaml']),  # file 0's own metadata
])
def test_a_split_recording_killed_at_a_split_is_recovered_and_its_folder_removed(
        method, at, left, tmp_path, capsys):
    src = tmp_path / 'run'
    killed = subprocess.run([sys.executable, '-c', KILLED_AT_SPLIT, str(src), method, str(at)],
                            env=repo_env(REPO / 'test'))
    assert killed.returncode == -signal.SIGKILL
    assert set(left) <= {str(p.relative_to(tmp_path)) for p in src.rglob('*')}
    assert main(['recover-bag', str(src), str(tmp_path / 'out')]) == 0
    out = capsys.readouterr().out
    assert (f'{src / left[0].removeprefix("run/")}: removed, a folder the recording left as '
            'it was killed at a split (it held no message)\n') in out
    # Killed, never a copy: the files it left complete (run_1 not moved, run_0's metadata)
    # say so; run_1.mcap moved empty is where reading stopped.
    assert 'this is a copy' not in out
    assert (f'{src}: killed at a split, after its last message: every file was complete (it '
            'has its footer), all its messages are kept\n' in out) == (method != 'rmdir')
    assert all(p.is_file() for p in src.iterdir())  # run_0.mcap (and run_1.mcap) alone
    assert_prefix_recovered(tmp_path / 'out', 1, 1)


def test_a_folder_holding_a_recorded_file_is_not_taken_for_a_leftover(tmp_path):
    from split_bags import write_split_bag

    src = write_split_bag(tmp_path / 'run', [[('/cam', 10**9 + i)] for i in range(2)])
    (src / 'metadata.yaml').unlink()
    (src / 'run_2').mkdir()
    (src / 'run_1.mcap').rename(src / 'run_2' / 'run_2.mcap')  # holds a message
    (src / 'run_3').mkdir()
    (src / 'run_3' / 'notes.txt').write_text('mine')
    (src / 'other_4').mkdir()
    assert split_leftovers(src) == []


def test_a_leftover_folder_that_cannot_be_removed_is_named_and_the_bag_is_recovered(
        tmp_path, monkeypatch, capsys):
    # A killed split recording read from read-only media (a copied card, a mount): removing
    # its leftover folder fails. Before, an OSError traceback, after writing the bag.
    import errno

    from split_bags import write_split_bag

    import mmp_ros.bags.recovery as recovery

    src = write_split_bag(tmp_path / 'run', [[('/cam', 10**9 + i)] for i in range(2)])
    (src / 'metadata.yaml').unlink()
    (src / 'run_2').mkdir()  # killed as the recorder started file 2

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, 'Read-only file system', str(path))

    monkeypatch.setattr(recovery.shutil, 'rmtree', read_only)
    assert main(['recover-bag', str(src), str(tmp_path / 'out')]) == 0
    captured = capsys.readouterr()
    assert 'recovered 2 messages (/cam: 2)' in captured.out
    assert 'killed at a split, after its last message' in captured.out
    assert captured.err == (f'{src / "run_2"}: a folder the recording left as it was killed at '
                            'a split (it holds no message), not removed: Read-only file system\n')
    assert (src / 'run_2').is_dir()
    with open_bag(tmp_path / 'out') as bag:
        assert bag.message_count == 2


def test_a_recording_compressed_message_by_message_is_recovered_as_plain_cdr(tmp_path):
    # ros2 bag record --compression-mode message, killed: each message in the .mcap is a zstd
    # frame, and only the metadata.yaml written at the end said so. Before, the frames were
    # copied as they were into a bag that declares none: rosbags and ros2 bag could not
    # decode a single message of it.
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, Reader, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    src = tmp_path / 'run'
    writer = Writer(src, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    with writer:
        connection = writer.add_connection('/rec/text', 'std_msgs/msg/String',
                                           typestore=typestore)
        for i in range(3):
            writer.write(connection, *message(i)[1:])
    (src / 'metadata.yaml').unlink()
    assert recover_mcap(src, tmp_path / 'out').counts == {'/rec/text': 3}
    with Reader(tmp_path / 'out') as reader:
        assert [(t, bytes(d)) for _, t, d in reader.messages()] == [
            message(i)[1:] for i in range(3)]


def test_files_missing_from_a_split_recording_are_named_never_a_complete_copy(tmp_path, capsys):
    # run_1.mcap lost (deleted, not copied): before, the other files were recovered as 'the
    # file was complete (it has its footer); this is a copy', its messages gone without a word.
    from split_bags import write_split_bag

    src = write_split_bag(tmp_path / 'run', [[('/cam', 10**9 + i)] for i in range(4)])
    (src / 'metadata.yaml').unlink()
    (src / 'run_1.mcap').unlink()
    assert main(['recover-bag', str(src), str(tmp_path / 'out')]) == 0
    out = capsys.readouterr().out
    assert 'recovered 3 messages (/cam: 3)' in out
    assert 'this is a copy' not in out
    assert ('; run_1.mcap missing from the split recording, their messages are not in the '
            'bag\n') in out
    # The first files kept only compressed (--compression-mode file), the last one by itself.
    (src / 'run_0.mcap').rename(src / 'run_0.mcap.zstd')
    (src / 'run_2.mcap').unlink()
    result = recover_mcap(src, tmp_path / 'last')
    assert result.counts == {'/cam': 1} and not result.complete
    assert result.stopped == (
        f'run_0.mcap (only run_0.mcap.zstd is here: decompress it first, e.g. zstd -d '
        f'{src / "run_0.mcap"}.zstd), run_1.mcap, run_2.mcap missing from the split recording, '
        'their messages are not in the bag')
    assert recover_mcap(src / 'run_3.mcap', tmp_path / 'given').complete  # the file asked for
