"""mmp_ros.bags without ROS: opening bags, planning and timing playback, recording, and the
BagError each bad input gives."""

from __future__ import annotations

import math
import re
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.typesys import Stores, get_typestore

from mmp_ros.bags import BagError
from mmp_ros.bags.playback import (
    DEFAULT_QOS,
    SENSOR_DATA_QOS,
    BagClock,
    make_schedule,
    parse_remaps,
    plan_playback,
)
from mmp_ros.bags.recording import STORAGES, BagRecorder
from mmp_ros.bags.source import BagTopic, TopicQos, open_bag
from mmp_ros.bags.synthetic import STUB_HASH, jittered_timestamps, write_image_bag, write_stub_bag
from mmp_ros.bags.timing import Lateness, compare_intervals, compare_offsets

TYPESTORE = get_typestore(Stores.ROS2_KILTED)


def always_importable(msgtype: str) -> None:
    return None


def topic(name: str, msgtype: str, qos: TopicQos | None = None, fmt: str = 'cdr') -> BagTopic:
    return BagTopic(name, msgtype, 1, fmt, qos)


# --- opening -----------------------------------------------------------------------------

def test_missing_bag_path_is_named(tmp_path):
    missing = tmp_path / 'nope.mcap'
    with pytest.raises(BagError, match=f'{missing}: no such bag'), open_bag(missing):
        pass


@pytest.mark.parametrize('name', ['junk.mcap', 'junk.db3'])
def test_a_corrupt_storage_file_is_named(tmp_path, name):
    junk = tmp_path / name
    junk.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(BagError, match=f'{junk}: cannot be read as a rosbag2'), open_bag(junk):
        pass


def test_a_corrupt_metadata_file_is_named(tmp_path):
    bag = tmp_path / 'bag'
    bag.mkdir()
    (bag / 'metadata.yaml').write_text('rosbag2_bagfile_information: [\n')
    with pytest.raises(BagError, match=f'{bag}: cannot be read as a rosbag2') as error, \
            open_bag(bag):
        pass
    assert '\n' not in str(error.value)  # the command prints one line


def test_a_bag_s_metadata_file_given_for_the_bag_says_to_give_its_directory(tmp_path):
    """'replay bag/metadata.yaml' said "Unrecognized storage format '.yaml'" alone."""
    bag = write_image_bag(tmp_path / 'bag', jittered_timestamps(2, 10.0), width=4, height=2)
    with pytest.raises(BagError, match=re.escape(
            f"{bag / 'metadata.yaml'}: cannot be read as a rosbag2: Unrecognized storage "
            f"format '.yaml'; a bag's metadata file: give its bag directory ({bag})")), \
            open_bag(bag / 'metadata.yaml'):
        pass


def test_a_folder_that_is_not_a_bag_is_named(tmp_path):
    with pytest.raises(BagError, match=f'{tmp_path}: not a rosbag2'), open_bag(tmp_path):
        pass


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_bag_directory_without_its_metadata_file_is_read_from_its_storage_file(
        tmp_path, storage):
    stamps = jittered_timestamps(3, 10.0)
    bag = write_image_bag(tmp_path / 'bag', stamps, storage=storage, width=4, height=2)
    (bag / 'metadata.yaml').unlink()  # was: "not a rosbag2 (Expected metadata file ...)"
    with open_bag(bag) as opened:
        assert opened.topics['/camera/image'].count == 3
        assert [t for _, t, _ in opened.messages(['/camera/image'])] == stamps


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_split_bag_is_read_as_one_bag(tmp_path, storage):
    # ros2 bag record -b/-d: run_0..run_11 and one metadata.yaml listing them all.
    from split_bags import image_cdr, write_split_bag

    start = 1_700_000_000 * 10**9
    files = [[('/cam', start + i * 10**8) for i in range(k * 3, k * 3 + 3)] for k in range(12)]
    bag = write_split_bag(tmp_path / 'run', files, storage=storage)
    with open_bag(bag) as opened:
        assert opened.topics['/cam'].count == opened.message_count == 36
        assert (opened.start_ns, opened.end_ns) == (start, start + 35 * 10**8)
        assert list(opened.messages(['/cam'])) == [
            ('/cam', start + i * 10**8, image_cdr(i, start + i * 10**8)) for i in range(36)]
        later = [t for _, t, _ in opened.messages(['/cam'], start + 20 * 10**8)]
        assert later == [start + i * 10**8 for i in range(20, 36)]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_the_files_of_a_split_bag_whose_times_overlap_are_read_in_time_order(tmp_path, storage):
    # A message logged before a split but written after it lands in the next file (rosbag2
    # issue 857), as do a merge's or a conversion's: the files were read one after the other,
    # and replay, adapt and evaluate saw the bag's time go back at each boundary.
    from split_bags import image_cdr, write_split_bag

    start = 1_700_000_000 * 10**9
    ms = 10**6
    files = [[('/rgb', start), ('/rgb', start + 100 * ms), ('/depth', start + 200 * ms),
              ('/rgb', start + 300 * ms)],
             [('/depth', start + 150 * ms), ('/rgb', start + 300 * ms),
              ('/rgb', start + 400 * ms)],
             [], [('/depth', start + 50 * ms), ('/rgb', start + 500 * ms)]]
    bag = write_split_bag(tmp_path / 'run', files, storage=storage)
    written = [(t, s, image_cdr(i, s)) for i, (t, s) in enumerate(m for f in files for m in f)]
    # by time; of equal times, the earlier file's first (as rosbag2 writes them)
    expected = sorted(written, key=lambda m: m[1])
    with open_bag(bag) as opened:
        assert list(opened.messages(['/rgb', '/depth'])) == expected
        assert list(opened.messages(['/depth'])) == [m for m in expected if m[0] == '/depth']
        later = list(opened.messages(['/rgb', '/depth'], start + 150 * ms))
        assert later == [m for m in expected if m[1] >= start + 150 * ms]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_split_bag_without_its_metadata_file_says_what_to_do(tmp_path, storage):
    from split_bags import write_split_bag

    bag = write_split_bag(tmp_path / 'run', [[('/cam', 10**9)], [('/cam', 2 * 10**9)]],
                          storage=storage)
    (bag / 'metadata.yaml').unlink()  # a split recording killed: rosbag2 writes it at close
    what = (f'recover-bag {bag} OUT' if storage == 'mcap' else
            f'each file opens by itself, e.g. {bag}/run_0.db3')
    # Was: "not a rosbag2 (Expected metadata file '{bag}' does not exist.)".
    with pytest.raises(BagError, match=f'{bag}: no metadata.yaml, and 2 storage files '
                       f'.*a recording split by size or duration that never closed.*{what}$'), \
            open_bag(bag):
        pass
    with open_bag(bag / f'run_1{".mcap" if storage == "mcap" else ".db3"}') as one:
        assert [t for _, t, _ in one.messages(['/cam'])] == [2 * 10**9]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_killed_recording_with_compressed_files_says_to_decompress_them(tmp_path, storage):
    # ros2 bag record -b/-d --compression-mode file, killed: each closed file compressed to
    # run_i.<ext>.zstd, the last one not yet. Before, that last file was taken for the whole
    # bag: a replay played its messages alone, the others' gone without a word.
    from split_bags import write_split_bag
    from zstandard import ZstdCompressor

    bag = write_split_bag(tmp_path / 'run', [[('/cam', 10**9)], [('/cam', 2 * 10**9)],
                                             [('/cam', 3 * 10**9)]], storage=storage)
    (bag / 'metadata.yaml').unlink()
    ext = '.mcap' if storage == 'mcap' else '.db3'
    for i in range(2):
        file = bag / f'run_{i}{ext}'
        file.with_name(f'{file.name}.zstd').write_bytes(ZstdCompressor().compress(
            file.read_bytes()))
        file.unlink()
    what = (f'recover the .mcap files into one bag: mmp_ros recover-bag {bag} OUT'
            if storage == 'mcap' else 'each .db3 file opens by itself')
    with pytest.raises(BagError) as raised, open_bag(bag):
        pass
    assert str(raised.value) == (
        f'{bag}: no metadata.yaml, and 2 compressed storage files (run_0{ext}.zstd, ...) and 1 '
        'not compressed: a recording with --compression-mode file that never closed (its '
        'metadata.yaml, written at the end, says how to read them); decompress them first, '
        f'e.g. zstd -d {bag}/run_0{ext}.zstd, then {what}')


def test_a_ros1_bag_and_a_compressed_bags_file_say_what_to_give_instead(tmp_path):
    ros1 = tmp_path / 'run.bag'
    ros1.write_bytes(b'#ROSBAG V2.0\n')
    with pytest.raises(BagError, match=f'a ROS 1 bag: convert it first, e.g. rosbags-convert '
                       f'--src {ros1} --dst DIR$'), open_bag(ros1):
        pass  # was: only "Unrecognized storage format '.bag'"
    bag = _compressed_string_bag(tmp_path / 'bag', 'mcap', CompressionMode.FILE)
    (file,) = bag.glob('*.zstd')
    with pytest.raises(BagError, match=f'give its bag directory \\({bag}\\)'), open_bag(file):
        pass


def test_a_bag_damaged_after_its_header_fails_while_reading_with_the_file_named(tmp_path):
    bag = write_image_bag(tmp_path / 'bag', jittered_timestamps(5, 10.0), width=32, height=8)
    (mcap,) = bag.glob('*.mcap')
    data = bytearray(mcap.read_bytes())
    data[len(data) // 3: 2 * len(data) // 3] = bytes(len(data) // 3)  # zero the middle third
    mcap.write_bytes(bytes(data))
    # At opening or while reading, depending on where the damage falls.
    with pytest.raises(BagError, match=str(bag)), open_bag(bag) as opened:
        list(opened.messages(opened.topics))


def test_a_database_with_a_journal_to_roll_back_is_refused_until_it_is_rolled_back(tmp_path):
    # A recording killed while it committed: pages of the transaction are in the database,
    # their old contents in the journal. rosbags reads the database without it: 907 of 1000.
    with BagRecorder(tmp_path / 'run', storage='sqlite3') as recorder:
        recorder.add_topic('/t', 'std_msgs/msg/String', TopicQos(True, False, 10))
        for i in range(1000):
            recorder.write('/t', 10**9 + i, b'\0\1\0\0\xd1\7\0\0' + bytes(2001))
    db = tmp_path / 'run' / 'run.db3'
    killed = '''
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute('PRAGMA cache_size = 10')  # pages: the transaction goes into the file
for i in range(2000):
    conn.execute('INSERT INTO messages (topic_id, timestamp, data) VALUES (1, ?, ?)',
                 (2 * 10**9 + i, bytes(2009)))
os._exit(0)
'''
    subprocess.run([sys.executable, '-c', killed, str(db)], check=True)
    for path in (db, db.parent):
        with pytest.raises(BagError, match=f'{db}: its rollback journal run.db3-journal is '
                           'left') as error, open_bag(path):
            pass
        assert f'sqlite3 {db} "PRAGMA integrity_check"' in str(error.value)
    with closing(sqlite3.connect(db)) as conn:  # rolls the journal back
        assert conn.execute('PRAGMA integrity_check').fetchone() == ('ok',)
    with open_bag(db.parent) as opened:
        assert len(list(opened.messages(['/t']))) == opened.message_count == 1000


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_topics_span_and_raw_messages(tmp_path, storage):
    stamps = jittered_timestamps(4, 10.0)
    bag = write_image_bag(tmp_path / 'bag', stamps, storage=storage, width=4, height=2)
    with open_bag(bag) as opened:
        (image,) = opened.topics.values()
        assert (image.name, image.msgtype, image.count, image.is_camera) == (
            '/camera/image', 'sensor_msgs/msg/Image', 4, True)
        assert image.offered_qos == SENSOR_DATA_QOS
        assert (opened.start_ns, opened.end_ns, opened.message_count) == (
            stamps[0], stamps[-1], 4)
        messages = list(opened.messages(['/camera/image'], start_ns=stamps[1]))
    assert [t for _, t, _ in messages] == stamps[1:]
    image = TYPESTORE.deserialize_cdr(messages[0][2], 'sensor_msgs/msg/Image')
    assert (image.header.frame_id, image.width, image.encoding) == ('1', 4, 'rgb8')


def _compressed_string_bag(path, storage: str, mode: CompressionMode):
    """What ``ros2 bag record --compression-mode file|message --compression-format zstd``
    writes: two std_msgs/String messages."""
    writer = Writer(path, version=8, storage_plugin=STORAGES[storage])
    writer.set_compression(mode, CompressionFormat.ZSTD)
    writer.open()
    connection = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=TYPESTORE)
    for i, text in enumerate(['one', 'two']):
        message = TYPESTORE.types['std_msgs/msg/String'](data=text)
        writer.write(connection, 1_000 + i, TYPESTORE.serialize_cdr(message,
                                                                    'std_msgs/msg/String'))
    writer.close()
    return path


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_message_compressed_bags_file_opened_by_itself_gives_its_messages(tmp_path, storage):
    bag = _compressed_string_bag(tmp_path / 'bag', storage, CompressionMode.MESSAGE)
    (file,) = bag.glob('bag*.*')  # the .mcap/.db3 itself: the metadata.yaml is not read
    for path in (bag, file):
        with open_bag(path) as opened:
            texts = [TYPESTORE.deserialize_cdr(data, 'std_msgs/msg/String').data
                     for _, _, data in opened.messages(['/chatter'])]
        assert texts == ['one', 'two'], path  # was: the zstd frames, as if they were CDR


def test_a_topic_with_several_types_is_skipped_and_the_others_are_read(tmp_path):
    bag = tmp_path / 'bag'
    writer = Writer(bag, version=9, storage_plugin=STORAGES['mcap'])
    writer.open()
    string = TYPESTORE.serialize_cdr(TYPESTORE.types['std_msgs/msg/String'](data='x'),
                                     'std_msgs/msg/String')
    chatter = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=TYPESTORE)
    writer.add_connection('/status', 'std_msgs/msg/String', typestore=TYPESTORE)
    writer.add_connection('/status', 'std_msgs/msg/Header', typestore=TYPESTORE)
    writer.write(chatter, 1_000, string)
    writer.close()
    # Was: BagError at opening, so no topic of the bag could be replayed or evaluated.
    with open_bag(bag) as opened:
        plan = plan_playback('b', opened.topics, importable=always_importable,
                             require_images=False)
        assert [p.bag_topic for p in plan.played] == ['/chatter']
        assert plan.skipped == {'/status': "it holds several message types "
                                "['std_msgs/msg/Header', 'std_msgs/msg/String']"}
        assert [t for _, t, _ in opened.messages(['/chatter'])] == [1_000]
        with pytest.raises(BagError, match='/status holds several message types'):
            list(opened.messages(['/status']))


# --- planning ------------------------------------------------------------------------------

def test_a_bag_without_image_topics_is_refused_with_its_topics_listed():
    topics = {'/chatter': topic('/chatter', 'std_msgs/msg/String')}
    with pytest.raises(BagError, match=r'b.mcap: no sensor_msgs/msg/Image or CompressedImage '
                       r'topic .*/chatter'):
        plan_playback('b.mcap', topics, importable=always_importable)
    plan = plan_playback('b.mcap', topics, importable=always_importable, require_images=False)
    assert [p.topic for p in plan.played] == ['/chatter']


def test_a_camera_topic_of_several_types_is_listed_with_them_all():
    # Was: "no sensor_msgs/msg/Image ... topic to replay (topics: /cam [sensor_msgs/msg/Image],
    # ...)": the one camera topic, skipped for its several types, named by its first alone.
    topics = {'/chatter': topic('/chatter', 'std_msgs/msg/String'),
              '/cam': BagTopic('/cam', 'sensor_msgs/msg/Image', 2, 'cdr', None,
                               ('sensor_msgs/msg/Image', 'std_msgs/msg/String'))}
    with pytest.raises(BagError) as raised:
        plan_playback('b.mcap', topics, importable=always_importable)
    assert ("(topics: /chatter [std_msgs/msg/String], /cam [several message types "
            "['sensor_msgs/msg/Image', 'std_msgs/msg/String']])") in str(raised.value)


def test_a_bag_of_compressed_camera_topics_plays_them_as_camera_topics():
    # was refused: 'no sensor_msgs/msg/Image topic to replay'
    reliable = TopicQos(reliable=True, transient_local=False, depth=10)
    topics = {
        '/rgb/image/compressed': topic('/rgb/image/compressed',
                                       'sensor_msgs/msg/CompressedImage', reliable),
        '/depth/image/compressedDepth': topic('/depth/image/compressedDepth',
                                              'sensor_msgs/msg/CompressedImage', reliable),
        '/chatter': topic('/chatter', 'std_msgs/msg/String', reliable),
    }
    plan = plan_playback('b.mcap', topics, importable=always_importable)
    qos = {p.topic: p.qos for p in plan.played}
    assert qos == {'/rgb/image/compressed': SENSOR_DATA_QOS,  # the node's camera QoS
                   '/depth/image/compressedDepth': SENSOR_DATA_QOS, '/chatter': reliable}


def test_unknown_and_unimportable_types_are_skipped_with_the_reason():
    topics = {
        '/image': topic('/image', 'sensor_msgs/msg/Image'),
        '/ros1': topic('/ros1', 'sensor_msgs/Image'),
        '/custom': topic('/custom', 'my_robot_msgs/msg/Thing'),
        '/json': topic('/json', 'std_msgs/msg/String', fmt='json'),
    }

    def importable(msgtype: str) -> str | None:
        return 'no Python module my_robot_msgs.msg' if msgtype.startswith('my_robot') else None

    plan = plan_playback('b.mcap', topics, importable=importable)
    assert [p.bag_topic for p in plan.played] == ['/image']
    assert plan.skipped == {
        '/ros1': "unknown message type 'sensor_msgs/Image' (not a ROS 2 package/msg/Name)",
        '/custom': 'message type my_robot_msgs/msg/Thing is not importable here '
                   '(no Python module my_robot_msgs.msg)',
        '/json': "serialization format 'json' is not CDR",
    }
    assert 'skip /custom: message type my_robot_msgs/msg/Thing' in '\n'.join(plan.describe())


def test_only_unknown_types_leave_nothing_to_replay():
    topics = {'/thing': topic('/thing', 'Thing')}
    with pytest.raises(BagError, match=r"b.mcap: nothing to replay \(/thing: unknown message"):
        plan_playback('b.mcap', topics, importable=always_importable)


def test_a_selected_topic_that_must_be_skipped_is_an_error_naming_it():
    topics = {'/image': topic('/image', 'sensor_msgs/msg/Image'),
              '/thing': topic('/thing', 'pkg/msg/Thing')}
    with pytest.raises(BagError, match='topic /thing cannot be replayed: message type pkg'):
        plan_playback('b.mcap', topics, importable=lambda t: 'absent' if 'pkg' in t else None,
                      selected=['/image', '/thing'])


def test_a_topic_selected_twice_is_played_and_logged_once():
    # --topics /image /image logged 'play /image ...' twice (its messages went out once).
    topics = {'/image': topic('/image', 'sensor_msgs/msg/Image'),
              '/chatter': topic('/chatter', 'std_msgs/msg/String')}
    plan = plan_playback('b.mcap', topics, importable=always_importable,
                         selected=['/chatter', '/image', '/chatter', '/image'])
    assert [p.bag_topic for p in plan.played] == ['/chatter', '/image']
    assert [line.split()[1] for line in plan.describe()] == ['/chatter', '/image']


def test_selecting_or_remapping_a_topic_the_bag_lacks_is_an_error():
    topics = {'/image': topic('/image', 'sensor_msgs/msg/Image')}
    for kwargs in ({'selected': ['/imag']}, {'remaps': {'/imag': '/x'}}):
        with pytest.raises(BagError, match=r"no topic /imag in the bag \(it has \['/image'\]\)"):
            plan_playback('b.mcap', topics, importable=always_importable, **kwargs)


def test_remaps_qos_and_conflicts():
    reliable_tl = TopicQos(reliable=True, transient_local=True, depth=1)
    topics = {
        '/a/image': topic('/a/image', 'sensor_msgs/msg/Image', DEFAULT_QOS),
        '/tf_static': topic('/tf_static', 'tf2_msgs/msg/TFMessage', reliable_tl),
        '/odom': topic('/odom', 'nav_msgs/msg/Odometry'),
    }
    plan = plan_playback('b.mcap', topics, importable=always_importable,
                         remaps=parse_remaps(['/a/image:=/rgb/image']))
    played = {p.bag_topic: (p.topic, p.qos) for p in plan.played}
    assert played == {
        '/a/image': ('/rgb/image', SENSOR_DATA_QOS),  # images: sensor data, whatever recorded
        '/tf_static': ('/tf_static', reliable_tl),  # others: as recorded
        '/odom': ('/odom', DEFAULT_QOS),  # nothing recorded: reliable
    }
    with pytest.raises(BagError, match='would both be published on /odom'):
        plan_playback('b.mcap', topics, importable=always_importable,
                      remaps={'/tf_static': '/odom'})


def test_a_recorded_clock_is_skipped_where_the_player_publishes_its_own():
    # replay --clock of a simulation's bag (ros2 bag record -a records /clock) published the
    # recorded /clock beside the player's: a sim-time node's time alternated between the
    # simulation's (12 s) and the bag's (1600000000 s) at every message.
    topics = {'/image': topic('/image', 'sensor_msgs/msg/Image'),
              '/clock': topic('/clock', 'rosgraph_msgs/msg/Clock'),
              '/sim/clock': topic('/sim/clock', 'rosgraph_msgs/msg/Clock')}
    plan = plan_playback('b.mcap', topics, importable=always_importable, clock_topic='/clock',
                         remaps={'/sim/clock': '/clock'})
    assert [p.bag_topic for p in plan.played] == ['/image']
    assert set(plan.skipped) == {'/clock', '/sim/clock'}
    assert plan.skipped['/clock'].startswith('--clock publishes /clock itself (the bag time)')
    with pytest.raises(BagError, match='topic /clock cannot be replayed: --clock publishes'):
        plan_playback('b.mcap', topics, importable=always_importable, clock_topic='/clock',
                      selected=['/image', '/clock'])
    # Played under another name, or without --clock (the recorded clock then is the clock).
    plan = plan_playback('b.mcap', topics, importable=always_importable, clock_topic='/clock',
                         remaps={'/clock': '/recorded_clock'})
    assert [p.topic for p in plan.played] == ['/image', '/recorded_clock', '/sim/clock']
    plan = plan_playback('b.mcap', topics, importable=always_importable)
    assert [p.topic for p in plan.played] == ['/image', '/clock', '/sim/clock']


@pytest.mark.parametrize('bad', ['/a', '/a:=', ':=/b', '/a:=/b:=/c'])
def test_malformed_remaps_are_refused(bad):
    with pytest.raises(BagError, match='expected /from:=/to'):
        parse_remaps([bad])


def test_a_topic_remapped_twice_is_refused():
    with pytest.raises(BagError, match='/a is remapped twice'):
        parse_remaps(['/a:=/b', '/a:=/c'])


# --- schedule --------------------------------------------------------------------------------

def test_due_times_follow_rate_offset_and_loops():
    # 11 messages over 1 s (100 ms apart), played from 0.5 s at twice the speed.
    schedule = make_schedule('b', 10**9, 2 * 10**9, 11, rate=2.0, start_offset_s=0.5)
    assert schedule.due_s(int(1.5e9)) == pytest.approx(0.0)
    assert schedule.due_s(2 * 10**9) == pytest.approx(0.25)
    # The next loop starts one mean interval (100 ms) after the last message.
    assert schedule.due_s(int(1.5e9), loop=1) == pytest.approx((0.5 + 0.1) / 2)
    single = make_schedule('b', 10**9, 10**9, 1)
    assert single.due_s(10**9, loop=3) == pytest.approx(3.0)


def test_a_bag_of_messages_all_at_one_time_loops_every_second():
    # Four cameras' frames of one instant: the loop lasted 0 ns. --loop then published 32975
    # messages in 2 s, as fast as it could; with --clock a ZeroDivisionError ended the replay.
    schedule = make_schedule('b', 10**9, 10**9, 4)
    assert schedule.loop_period_ns == 10**9
    assert schedule.due_s(10**9, loop=2) == pytest.approx(2.0)
    clock = BagClock(schedule, 40.0, loop=True)
    assert clock.bag_time_ns(2.5) == 10**9 + 5 * 10**8
    assert clock.pass_index(2.5) == 2


@pytest.mark.parametrize(('kwargs', 'message'), [
    ({'rate': 0.0}, 'rate must be positive'),
    # --rate inf --clock 100 ended in a traceback (OverflowError: cannot convert float
    # infinity to integer); without --clock, --loop published 134736 messages in 7 s.
    ({'rate': math.inf}, 'rate must be positive and finite, got inf'),
    ({'rate': math.nan}, 'rate must be positive and finite, got nan'),
    # 1e-320: every message after the first due at an infinite time, the player waited
    # forever; 1e308: all at once, and with --clock an OverflowError traceback
    ({'rate': 1e-320}, r'rate must be from 0.001 to 1000 \(times the recorded speed\), got '
                       '1e-320'),
    ({'rate': 1e308}, 'rate must be from 0.001 to 1000 .*, got 1e\\+308'),
    ({'start_offset_s': -1.0}, 'must not be negative'),
    ({'start_offset_s': 2.5}, r'b.mcap: start offset 2.5 s is past the end of the bag \(2.000'),
    ({'start_offset_s': math.nan}, 'must not be negative, got nan'),
    ({'start_offset_s': math.inf}, 'start offset inf s is past the end'),
    ({'start_offset_s': 1e300}, 'start offset 1e\\+300 s is past the end'),
])
def test_schedule_errors(kwargs, message):
    with pytest.raises(BagError, match=message):
        make_schedule('b.mcap', 0, 2 * 10**9, 3, **kwargs)


def test_the_clock_reads_each_messages_timestamp_when_it_is_due():
    # 11 messages over 1 s, played from 0.5 s at twice the speed, looped.
    schedule = make_schedule('b', 10**9, 2 * 10**9, 11, rate=2.0, start_offset_s=0.5)
    clock = BagClock(schedule, hz=100.0, loop=True)
    assert clock.bag_time_ns(0.0) == schedule.origin_ns == int(1.5e9)
    for loop in range(3):
        for stamp in range(int(1.5e9), 2 * 10**9 + 1, 10**8):
            assert clock.bag_time_ns(schedule.due_s(stamp, loop)) == stamp
    # Half a loop period (600 ms of bag, 300 ms of wall) into the second loop.
    assert clock.bag_time_ns(0.3 + 0.15) == int(1.5e9) + 3 * 10**8


def test_the_clock_says_which_pass_over_the_bag_it_reads():
    # replay --loop --clock publishes a pass's first message only once /clock reads that pass.
    schedule = make_schedule('b', 10**9, 2 * 10**9, 11, rate=2.0)  # a pass: 1.1 s, 0.55 s
    looped, once = BagClock(schedule, hz=100.0, loop=True), BagClock(schedule, hz=100.0)
    assert [looped.pass_index(t) for t in (0.0, 0.549, 0.55, 1.2)] == [0, 0, 1, 2]
    assert looped.pass_index(schedule.due_s(10**9, 3)) == 3
    assert once.pass_index(5.0) == 0


def test_without_loop_the_clock_runs_on_and_it_never_reads_before_the_origin():
    schedule = make_schedule('b', 10**9, 2 * 10**9, 11)
    clock = BagClock(schedule, hz=10.0)
    assert clock.bag_time_ns(1.6) == int(2.6e9)  # past the end and its loop period
    assert clock.bag_time_ns(-0.5) == 10**9  # before the start instant (--delay)


def test_a_clock_too_coarse_for_a_sim_time_node_is_warned_about():
    # replay --clock 1: the node's now moved in 1 s steps; half the frames were 'stamp 0.53 s
    # in the future' and every sensor went STALE between ticks, without a word from replay.
    schedule = make_schedule('b', 0, 10**9, 2)
    warning = BagClock(schedule, hz=1.0).lag_warning()
    assert '--clock 1 at --rate 1: /clock advances 1 s of bag time per tick' in warning
    assert 'future_tolerance_s' in warning and 'timeout_s' in warning
    assert '--clock 40 ticks every 25 ms' in warning
    assert BagClock(schedule, hz=100.0).lag_warning() == ''
    assert BagClock(schedule, hz=5.0).lag_warning() == ''  # 0.2 s a tick
    fast = make_schedule('b', 0, 10**9, 2, rate=4.0)
    assert '1 s of bag time per tick' in BagClock(fast, hz=4.0).lag_warning()
    assert '--clock 160 ' in BagClock(fast, hz=4.0).lag_warning()


def test_ticks_are_due_on_a_fixed_grid_and_missed_ones_are_dropped():
    clock = BagClock(make_schedule('b', 0, 10**9, 2), hz=100.0)
    assert clock.tick_s(0) == 0.0 and clock.tick_s(25) == pytest.approx(0.25)
    assert clock.next_tick(0, 0.0) == 1
    # Woken a little late, or a hair early by rounding: the next tick, never the same again.
    assert clock.next_tick(3, 0.0312) == 4
    assert clock.next_tick(3, 0.0299999) == 4
    # After a 95 ms stall: straight to the first tick still ahead.
    assert clock.next_tick(4, 0.135) == 14


# --- recording -------------------------------------------------------------------------------

def test_recorded_bag_has_definitions_hashes_and_qos(tmp_path):
    out = tmp_path / 'rec'
    string = TYPESTORE.types['std_msgs/msg/String']
    with BagRecorder(out) as recorder:
        recorder.add_topic('/chatter', 'std_msgs/msg/String', DEFAULT_QOS,
                           type_hash=TYPESTORE.hash_rihs01('std_msgs/msg/String'))
        for i, text in enumerate(['a', 'b']):
            recorder.write('/chatter', 10 + i, TYPESTORE.serialize_cdr(string(data=text),
                                                                       'std_msgs/msg/String'))
        assert recorder.counts == {'/chatter': 2}
    recorder.close()  # a second close is harmless
    with Reader(out) as reader:
        (connection,) = reader.connections
        assert connection.digest == TYPESTORE.hash_rihs01('std_msgs/msg/String')
        assert 'string data' in connection.msgdef.data
        assert connection.ext.offered_qos_profiles[0].reliability.name == 'RELIABLE'
        texts = [TYPESTORE.deserialize_cdr(d, c.msgtype).data for c, _, d in reader.messages()]
    assert texts == ['a', 'b']


def test_recording_refuses_unknown_types_mismatched_hashes_and_repeats(tmp_path):
    with BagRecorder(tmp_path / 'rec') as recorder:
        with pytest.raises(BagError, match='no message definition for my_msgs/msg/Thing'):
            recorder.add_topic('/thing', 'my_msgs/msg/Thing', DEFAULT_QOS)
        with pytest.raises(BagError, match=r"topic /chatter: the publisher's std_msgs/msg/Stri"):
            recorder.add_topic('/chatter', 'std_msgs/msg/String', DEFAULT_QOS,
                               type_hash=STUB_HASH)
        recorder.add_topic('/chatter', 'std_msgs/msg/String', DEFAULT_QOS)
        with pytest.raises(BagError, match='/chatter is recorded already'):
            recorder.add_topic('/chatter', 'std_msgs/msg/String', DEFAULT_QOS)
        assert recorder.topics == ['/chatter']


def test_recording_never_overwrites_and_checks_the_storage(tmp_path):
    with pytest.raises(BagError, match='exists already'):
        BagRecorder(tmp_path)
    with pytest.raises(BagError, match="storage 'zip'"):
        BagRecorder(tmp_path / 'new', storage='zip')


# --- timing ----------------------------------------------------------------------------------

def test_gap_and_offset_errors():
    bag = {i: i * 100_000_000 for i in range(5)}  # 100 ms apart
    exact = {i: 50.0 + i * 0.1 for i in range(5)}
    assert compare_intervals(bag, exact).error_max_ms == pytest.approx(0.0, abs=1e-6)
    drifting = {i: 50.0 + i * 0.103 for i in range(5)}  # each wait 3 ms too long
    assert compare_intervals(bag, drifting).error_max_ms == pytest.approx(3.0)
    assert compare_offsets(bag, drifting).error_max_ms == pytest.approx(6.0)  # 12 ms spread
    gappy = {0: 50.0, 1: 50.1, 3: 50.3}  # a gap is only compared between neighbours
    assert compare_intervals(bag, gappy).compared == 1
    assert compare_intervals(bag, {}).compared == 0


def test_lateness_summary():
    lateness = Lateness(window=3)
    assert lateness.describe() == 'nothing published'
    for late in (-0.001, 0.001, 0.002, 0.010):
        lateness.add(late)
    assert lateness.count == 4
    assert 'published 4 messages' in lateness.describe()
    # the percentiles are the window's, not the count's: said so
    assert lateness.describe().endswith('max 10.00 ms (over the last 3)')


def test_stub_bags_hold_any_type_name(tmp_path):
    bag = write_stub_bag(tmp_path / 'b', {'/chatter': 'std_msgs/msg/String',
                                     '/thing': 'my_msgs/msg/Thing'})
    with open_bag(bag) as opened:
        assert {t.name: t.msgtype for t in opened.topics.values()} == {
            '/chatter': 'std_msgs/msg/String', '/thing': 'my_msgs/msg/Thing'}
