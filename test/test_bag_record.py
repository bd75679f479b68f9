"""``mmp_ros record`` in a child process, stopped by a signal: the bag must be complete and
open with rosbags and with the mcap package's reader."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ctrl_c_as_the_bag_file_opens, repo_env
from mcap.reader import make_reader
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from mmp_ros.bags.recording import COMMIT_PERIOD_S
from mmp_ros.bags.recovery import recover_mcap

REPO = Path(__file__).resolve().parents[1]



@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize('stop_signal', [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=['SIGINT', 'SIGTERM', 'SIGKILL'])
def test_interrupted_recording_is_a_complete_readable_bag(stop_signal, tmp_path,
                                                          restored_environ):
    # SIGKILL: the bag never closes; recover-bag makes it complete, and it must hold every
    # message that arrived more than COMMIT_PERIOD_S before the kill (the MCAP writer kept
    # them all in memory, its chunk being far from 1 MiB: nothing came back).
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import UInt32

    from mmp_ros.ros.context import init_ros, spin_until

    out = tmp_path / 'recording'
    count = 10
    with init_ros([]):
        node = rclpy.create_node('mmp_ros_record_source')
        try:
            images = node.create_publisher(Image, '/rec/image', QoSProfile(depth=count))
            numbers = node.create_publisher(UInt32, '/rec/count', QoSProfile(depth=count))
            # A best-effort publisher: recorded with a best-effort subscription.
            node.create_publisher(Image, '/rec/best_effort', qos_profile_sensor_data)
            with subprocess.Popen(
                [sys.executable, '-m', 'mmp_ros.ros.record', str(out), '--topics',
                 '/rec/image', '/rec/count', '/rec/best_effort', '/rec/never'],
                env=repo_env(), stderr=subprocess.PIPE, text=True,
            ) as recorder:
                try:
                    assert spin_until(
                        node,
                        lambda: images.get_subscription_count() > 0
                        and numbers.get_subscription_count() > 0,
                        20.0,
                    ), 'the recorder never subscribed'
                    pixels = np.arange(48 * 64, dtype=np.uint16).astype(np.uint8)
                    for i in range(count):
                        msg = Image(height=48, width=64, encoding='mono8', step=64)
                        msg.header.frame_id = f'cam{i}'
                        msg.data = pixels.tobytes()
                        images.publish(msg)
                        numbers.publish(UInt32(data=i))
                    # Reliable: acknowledged means it is in the recorder's queue.
                    assert images.wait_for_all_acked(Duration(seconds=10))
                    assert numbers.wait_for_all_acked(Duration(seconds=10))
                    if stop_signal == signal.SIGKILL:  # the topics fall silent a while
                        time.sleep(COMMIT_PERIOD_S + 1.0)
                    recorder.send_signal(stop_signal)
                    stderr = recorder.communicate(timeout=20)[1]
                finally:
                    if recorder.poll() is None:
                        recorder.kill()
            killed = stop_signal == signal.SIGKILL
            assert recorder.returncode == (-stop_signal if killed else 0), stderr
        finally:
            node.destroy_node()
    if killed:
        assert not (out / 'metadata.yaml').exists()
        recover_mcap(out, tmp_path / 'recovered')
        out = tmp_path / 'recovered'
    else:
        assert 'no publisher ever appeared on /rec/never' in stderr

    typestore = get_typestore(Stores.ROS2_KILTED)
    with Reader(out) as reader:
        topics = {name: (info.msgtype, info.msgcount) for name, info in reader.topics.items()}
        assert topics == {
            '/rec/image': ('sensor_msgs/msg/Image', count),
            '/rec/count': ('std_msgs/msg/UInt32', count),
            '/rec/best_effort': ('sensor_msgs/msg/Image', 0),
        }
        qos = {c.topic: c.ext.offered_qos_profiles[0].reliability.name for c in reader.connections}
        assert qos['/rec/best_effort'] == 'BEST_EFFORT' and qos['/rec/image'] == 'RELIABLE'
        decoded: dict[str, list] = {'/rec/image': [], '/rec/count': []}
        for connection, _, data in reader.messages():
            decoded[connection.topic].append(typestore.deserialize_cdr(data, connection.msgtype))
    assert [m.data for m in decoded['/rec/count']] == list(range(count))
    assert [m.header.frame_id for m in decoded['/rec/image']] == [f'cam{i}' for i in range(count)]
    assert decoded['/rec/image'][0].data.tobytes() == pixels.tobytes()

    (mcap_file,) = out.glob('*.mcap')
    with mcap_file.open('rb') as stream:
        mcap = make_reader(stream)
        summary = mcap.get_summary()
        schemas = {s.name for s in summary.schemas.values()}
        assert {'sensor_msgs/msg/Image', 'std_msgs/msg/UInt32'} <= schemas
        per_topic: dict[str, int] = {}
        for _, channel, message in mcap.iter_messages():
            assert channel.message_encoding == 'cdr'
            per_topic[channel.topic] = per_topic.get(channel.topic, 0) + 1
            assert message.log_time > 0
    assert per_topic == {'/rec/image': count, '/rec/count': count}


def test_an_existing_output_is_refused_without_touching_it(tmp_path, capsys):
    from mmp_ros.ros import record

    out = tmp_path / 'bag'
    out.mkdir()
    (out / 'keep.txt').write_text('mine')
    args = argparse.Namespace(out=str(out), topics=['/x'], storage='mcap', duration=None,
                              ros_args=[])
    assert record.run(args) == 2
    assert f'{out}: exists already' in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ['keep.txt']


def test_topics_given_twice_are_all_recorded(tmp_path, capsys):
    # argparse kept the last --topics alone: '--topics /rgb/image --topics /diagnostics'
    # recorded /diagnostics and passed over /rgb/image without a word.
    from mmp_ros.ros import record

    parser = argparse.ArgumentParser()
    record.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / 'bag'), '--topics', 'bad topic', '--topics', '/a',
                              '/b'])
    assert args.topics == ['bad topic', '/a', '/b']
    args.ros_args = []
    assert record.run(args) == 2  # the first --topics is checked, before the bag exists
    assert "--topics bad topic: topic name 'bad topic' is invalid" in capsys.readouterr().err


def test_an_invalid_topic_name_is_refused_before_the_bag_exists(tmp_path, capsys):
    from mmp_ros.ros import record

    out = tmp_path / 'bag'
    args = argparse.Namespace(out=str(out), topics=['/fine', 'bad topic'], storage='mcap',
                              duration=1.0, ros_args=[])
    assert record.run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmp_ros record: --topics bad topic: topic name 'bad topic' is "
                          'invalid') and err.count('\n') == 1, err
    assert not out.exists()


@pytest.mark.ros
def test_ros_arguments_that_are_refused_leave_no_bag(tmp_path, capsys, restored_environ):
    # The empty bag was left, and the rerun with the arguments corrected said 'exists already'.
    from mmp_ros.cli import main

    out = tmp_path / 'bag'
    assert main(['record', str(out), '--topics', '/x', '--ros-args', '-p']) == 2
    assert "mmp_ros record: cannot initialize ROS 2: Couldn't parse trailing -p flag" in (
        capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.ros
def test_ctrl_c_while_the_bag_is_closing_still_leaves_a_readable_bag(tmp_path, monkeypatch,
                                                                       restored_environ):
    from rosbags.rosbag2 import Writer

    from mmp_ros.bags.recording import BagRecorder
    from mmp_ros.ros.record import record

    finish = Writer.close

    def impatient_close(writer):  # the user presses Ctrl-C again as the bag is written
        os.kill(os.getpid(), signal.SIGINT)
        finish(writer)

    monkeypatch.setattr(Writer, 'close', impatient_close)
    out = tmp_path / 'bag'
    interrupted = False
    try:
        with BagRecorder(out) as recorder:
            record(recorder, ['/rec/never'], [], duration_s=0.1)
    except KeyboardInterrupt:
        interrupted = True
    assert not interrupted, 'the Ctrl-C cut the closing of the bag short'
    with Reader(out) as reader:
        assert reader.message_count == 0


def test_missed_messages_are_the_gaps_in_each_publishers_sequence_numbers():
    from mmp_ros.ros.record import MissedMessages, summary

    missed = MissedMessages()
    for sequence in (7, 8, 11, 12, 20):  # the first seen: nothing known before it
        missed.received('/a', b'pub1', sequence)
    for sequence in (1, 2, 3):  # another publisher of the same topic, numbered on its own
        missed.received('/a', b'pub2', sequence)
    missed.received('/b', b'pub1', 1)
    missed.received('/b', b'pub1', 3)
    missed.received('/b', None, 9)  # a middleware that does not number its messages
    missed.received('/b', b'pub1', None)
    assert missed.counts == {'/a': 2 + 7, '/b': 1} and missed.total == 10
    assert summary({'/a': 5, '/b': 2, '/c': 0}, missed.counts) == (
        '/a: 5 (9 missed), /b: 2 (1 missed), /c: 0')
    assert summary({}, {}) == 'nothing'


def test_a_publisher_that_announces_no_type_hash_is_recorded_and_disagreeing_ones_are_not(
        tmp_path):
    # rclpy reads 'INVALID' for a publisher that announces no type hash (a ROS 2 before Iron,
    # micro-ROS, a plain DDS application). Before, that was compared with the known hash and
    # the topic refused ("has type hash INVALID ... not recording it"); and only the first
    # publisher's hash was checked, a second one's of another definition recorded unchecked.
    from rclpy.topic_endpoint_info import TopicEndpointInfo
    from rclpy.type_hash import TypeHash

    from mmp_ros.bags.recording import BagRecorder
    from mmp_ros.ros.record import announced_type_hashes

    msgtype = 'std_msgs/msg/String'
    with BagRecorder(tmp_path / 'bag') as recorder:
        known = recorder.type_hash(msgtype)
        silent = TopicEndpointInfo(topic_type=msgtype)
        assert str(silent.topic_type_hash) == 'INVALID'
        announcing = TopicEndpointInfo(topic_type=msgtype, topic_type_hash=TypeHash(
            1, bytes.fromhex(known.removeprefix('RIHS01_'))))
        other = TopicEndpointInfo(topic_type=msgtype, topic_type_hash=TypeHash(1, bytes(32)))
        assert announced_type_hashes([silent]) == []
        assert announced_type_hashes([silent, announcing, announcing]) == [known]
        assert announced_type_hashes([announcing, other]) == sorted([known, str(
            other.topic_type_hash)])
        recorder.add_topic('/t', msgtype, None, type_hash=None)  # what [silent] records with
    with Reader(tmp_path / 'bag') as reader:
        assert [c.topic for c in reader.connections] == ['/t']


@pytest.mark.ros
def test_messages_the_recorder_queue_dropped_are_counted_and_reported(tmp_path, capfd,
                                                                     restored_environ):
    # A reliable topic loses messages all the same when the recorder does not keep up: its
    # queue keeps the last RECORD_DEPTH and drops the older ones. That was silent (measured
    # 1-18 % lost at 2 x 2500 Hz); a burst while the recorder does not spin does it every time.
    import rclpy
    from rclpy.duration import Duration
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from std_msgs.msg import UInt32

    from mmp_ros.bags.recording import BagRecorder
    from mmp_ros.ros.context import init_ros
    from mmp_ros.ros.record import RECORD_DEPTH, TopicRecorder

    extra = 50
    with init_ros([]), BagRecorder(tmp_path / 'bag') as recorder:
        source = rclpy.create_node('mmp_ros_record_source')
        node = executor = None
        try:
            publisher = source.create_publisher(UInt32, '/rec/burst', QoSProfile(depth=1000))
            node = TopicRecorder(recorder, ['/rec/burst'])
            executor = SingleThreadedExecutor()
            executor.add_node(node)

            def spin_until(condition):
                deadline = time.monotonic() + 20.0
                while not condition() and time.monotonic() < deadline:
                    executor.spin_once(timeout_sec=0.05)
                return condition()

            assert spin_until(lambda: publisher.get_subscription_count() > 0)
            publisher.publish(UInt32(data=0))
            assert spin_until(lambda: recorder.counts['/rec/burst'] == 1)
            for i in range(1, 1 + RECORD_DEPTH + extra):
                publisher.publish(UInt32(data=i))
            assert publisher.wait_for_all_acked(Duration(seconds=10))
            assert spin_until(lambda: recorder.counts['/rec/burst'] == 1 + RECORD_DEPTH)
            assert node.missed.counts == {'/rec/burst': extra}
            node.report_missed()
            node.report_missed()  # nothing new: no second warning
        finally:
            if executor is not None:
                executor.shutdown()
            if node is not None:
                node.destroy_node()
            source.destroy_node()
    err = capfd.readouterr().err
    assert err.count(f'{extra} messages published were never received '
                     f'(missed so far: /rec/burst: {extra})') == 1, err


@pytest.mark.ros
def test_on_sim_time_a_topic_that_appears_before_the_first_clock_is_recorded(tmp_path,
                                                                            restored_environ):
    # record --ros-args -p use_sim_time:=true: its discovery and commit timers ran on the
    # node's clock, which stands at 0 until /clock comes (and while a simulation is paused):
    # a topic whose publisher appeared after the start was never subscribed, and what it sent
    # was lost without a word.
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from std_msgs.msg import UInt32

    from mmp_ros.bags.recording import BagRecorder
    from mmp_ros.ros.context import init_ros
    from mmp_ros.ros.record import TopicRecorder

    with init_ros(['--ros-args', '-p', 'use_sim_time:=true']), \
            BagRecorder(tmp_path / 'bag') as recorder:
        node = TopicRecorder(recorder, ['/rec/late'])
        source = rclpy.create_node('mmp_ros_record_source')
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            assert node.get_clock().ros_time_is_active
            publisher = source.create_publisher(UInt32, '/rec/late', QoSProfile(depth=10))
            deadline = time.monotonic() + 10.0
            while not publisher.get_subscription_count() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            assert publisher.get_subscription_count(), 'the late topic was never subscribed'
        finally:
            executor.shutdown()
            node.destroy_node()
            source.destroy_node()


@pytest.mark.ros
def test_on_sim_time_messages_before_the_first_clock_are_not_recorded_at_time_zero(
        tmp_path, restored_environ):
    # They were written at bag time 0, the later ones at the simulation's: a replay of the
    # bag waited from the one to the other (1000 s of nothing for a clock started at 1000 s).
    import rclpy
    from rclpy.duration import Duration
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import UInt32

    from mmp_ros.bags.recording import BagRecorder
    from mmp_ros.ros.context import init_ros
    from mmp_ros.ros.record import TopicRecorder
    from mmp_ros.ros.replay import CLOCK_QOS, CLOCK_TOPIC

    with init_ros(['--ros-args', '-p', 'use_sim_time:=true']), \
            BagRecorder(tmp_path / 'bag') as recorder:
        source = rclpy.create_node('mmp_ros_record_source')
        publisher = source.create_publisher(UInt32, '/rec/sim', QoSProfile(depth=10))
        clock = source.create_publisher(Clock, CLOCK_TOPIC, CLOCK_QOS)
        node = TopicRecorder(recorder, ['/rec/sim'])
        executor = SingleThreadedExecutor()
        executor.add_node(node)

        def spin_until(condition) -> bool:
            deadline = time.monotonic() + 10.0
            while not condition() and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
            return condition()

        try:
            assert spin_until(lambda: publisher.get_subscription_count() > 0)
            publisher.publish(UInt32(data=0))
            assert publisher.wait_for_all_acked(Duration(seconds=10))
            # the recorder takes it (its count of missed messages has seen it), and skips it
            assert spin_until(lambda: any(t == '/rec/sim' for t, _ in node.missed._last))
            assert not recorder.counts.get('/rec/sim')
            assert spin_until(lambda: clock.get_subscription_count() > 0)
            tick = Clock()
            tick.clock.sec = 1000
            clock.publish(tick)
            assert spin_until(lambda: node.get_clock().now().nanoseconds == 1000 * 10**9)
            publisher.publish(UInt32(data=1))
            assert spin_until(lambda: recorder.counts.get('/rec/sim') == 1)
        finally:
            executor.shutdown()
            node.destroy_node()
            source.destroy_node()
    with Reader(tmp_path / 'bag') as reader:
        assert [t for _, t, _ in reader.messages()] == [1000 * 10**9]


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_a_killed_recording_keeps_what_it_recorded_but_the_last_second(storage, tmp_path):
    # rosbags' sqlite3 writer commits only when it closes: a recording killed (SIGKILL, out of
    # memory, power lost) before that was rolled back to an empty database on the next open.
    # Its MCAP writer keeps messages in memory until its chunk passes 1 MiB: all 51 were lost.
    # sqlite3 writes pages of a transaction that outgrow its cache into the database, keeping
    # their old contents in a rollback journal that rosbags' reader (immutable) ignores: the
    # kill left a database it called malformed.
    out = tmp_path / 'run'
    script = f'''
import os, time
from mmp_ros.bags.recording import BagRecorder
from mmp_ros.bags.source import TopicQos
recorder = BagRecorder({str(out)!r}, storage={storage!r})
recorder.add_topic('/text', 'std_msgs/msg/String', TopicQos(True, False, 10))
for i in range(3001):  # 2 kB each
    if i == 1000:
        time.sleep(1.1)  # a second of recording later: committed with this one
    recorder.write('/text', 10**9 + i * 10**6, b'\\0\\1\\0\\0\\xd1\\7\\0\\0' + bytes(2001))
os._exit(0)  # as a kill: nothing closed, 2000 messages (4 MB) of this second not committed
'''
    subprocess.run([sys.executable, '-c', script], check=True,
                   env=repo_env())
    assert not (out / 'metadata.yaml').exists()
    from mmp_ros.bags.recovery import recover_mcap
    from mmp_ros.bags.source import open_bag

    if storage == 'mcap':
        recover_mcap(out, tmp_path / 'recovered')
    with open_bag(out / 'run.db3' if storage == 'sqlite3' else tmp_path / 'recovered') as bag:
        stamps = [t for _, t, _ in bag.messages(['/text'])]
    # MCAP also keeps the chunks that its 1 MiB limit closed since.
    assert stamps[:1001] == [10**9 + i * 10**6 for i in range(1001)]
    assert len(stamps) == 1001 if storage == 'sqlite3' else 2500 < len(stamps) < 3001


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_a_full_disk_ends_the_recording_with_one_line_and_keeps_what_was_committed(storage,
                                                                                   tmp_path):
    # A write that failed (here a file size limit, as a full disk) was a traceback, and so was
    # the close that followed it, which tried to write the rest.
    out = tmp_path / 'run'
    script = f'''
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, resource.RLIM_INFINITY))
from test_bag_recover import TOPICS, message
from mmp_ros.bags.errors import BagError
from mmp_ros.bags.recording import BagRecorder
try:
    with BagRecorder({str(out)!r}, storage={storage!r}) as recorder:
        recorder.add_topic('/rec/text', *TOPICS['/rec/text'])
        for i in range(100):  # 60 kB each
            recorder.write('/rec/text', *message(3 * i + 1)[1:])
            if i % 10 == 9:
                recorder.commit()  # as every second
except BagError as exc:
    print(exc)
'''
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          env=repo_env(REPO / 'test'))
    assert done.returncode == 0 and not done.stderr, done.stderr
    from test_bag_recover import message

    from mmp_ros.bags.source import open_bag

    if storage == 'mcap':
        assert done.stdout == (f'{out}: cannot write the bag: File too large; what reached the '
                               f'disk (all but the last second) can be recovered: mmp_ros '
                               f'recover-bag {out} OUT\n')
        from mmp_ros.bags.recovery import recover_mcap

        recover_mcap(out, tmp_path / 'recovered')
        kept = tmp_path / 'recovered'
    else:
        assert done.stdout == (f'{out}: cannot write the bag: disk I/O error; {out}/run.db3 '
                               'holds what was committed (a second ago and before)\n')
        kept = out / 'run.db3'
    with open_bag(kept) as bag:
        got = list(bag.messages(['/rec/text']))
    assert len(got) >= 40 and len(got) % 10 == 0, len(got)  # every commit under 3 MB
    assert [data for _, _, data in got] == [message(3 * i + 1)[2] for i in range(len(got))]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_ctrl_c_while_the_bag_is_created_leaves_nothing(tmp_path, monkeypatch, storage):
    # A Ctrl-C inside BagRecorder(...), once its .mcap or .db3 was opened, came before the
    # `with` that closes the bag: `mmp_ros record` left a bag without metadata.yaml.
    from mmp_ros.ros import record

    ctrl_c_as_the_bag_file_opens(monkeypatch, storage)
    out = tmp_path / 'bag'
    args = argparse.Namespace(out=str(out), topics=['/x'], storage=storage, duration=None,
                              ros_args=[])
    with pytest.raises(KeyboardInterrupt):
        record.run(args)
    assert not out.exists()


def _text(i: int) -> bytes:
    """A serialized std_msgs/msg/String of 2 kB, told apart by ``i``."""
    return b'\0\1\0\0\xd1\7\0\0' + i.to_bytes(4, 'little') + bytes(1997)


def test_split_limits_start_a_file_before_a_message_once_the_current_one_is_full():
    from mmp_ros.bags.recording import SplitLimits

    size, duration = SplitLimits(max_bytes=1000), SplitLimits(max_duration_ns=10)
    assert not size.split_before(999, 0, 5) and size.split_before(1000, 0, 5)
    assert not size.split_before(10**9, None, 5)  # an empty file takes the message
    assert not duration.split_before(10**9, 100, 110) and duration.split_before(0, 100, 111)
    assert not duration.split_before(0, None, 10**9)
    both = SplitLimits(max_bytes=1000, max_duration_ns=10)
    assert both.split_before(1000, 100, 100) and both.split_before(0, 100, 111)
    assert not both.split_before(999, 100, 110)
    assert SplitLimits(max_bytes=1023).problem('mcap') == (
        '--max-bag-size 1023: a mcap file must be allowed at least 1024 bytes')
    assert SplitLimits(max_bytes=1024).problem('mcap') == ''
    assert 'at least 86016 bytes' in SplitLimits(max_bytes=86015).problem('sqlite3')
    assert SplitLimits(max_duration_ns=0).problem('mcap')


def test_split_bag_metadata_lists_every_file_and_adds_up_the_topics():
    from mmp_ros.bags.recording import split_bag_metadata

    def file(name, start, duration, topics):
        count = sum(topics.values())
        return {
            'version': 9, 'storage_identifier': 'mcap', 'relative_file_paths': [name],
            'duration': {'nanoseconds': duration},
            'starting_time': {'nanoseconds_since_epoch': start}, 'message_count': count,
            'topics_with_message_count': [{'topic_metadata': {'name': t, 'type': 'x/msg/Y'},
                                           'message_count': n} for t, n in topics.items()],
            'files': [{'path': name, 'starting_time': {'nanoseconds_since_epoch': start},
                       'duration': {'nanoseconds': duration}, 'message_count': count}],
            'ros_distro': 'rosbags',
        }

    files = [file('b_0.mcap', 100, 50, {'/a': 3}), file('b_1.mcap', 160, 40, {'/a': 1, '/b': 2})]
    merged = split_bag_metadata(files)
    assert merged['relative_file_paths'] == ['b_0.mcap', 'b_1.mcap']
    assert merged['files'] == files[0]['files'] + files[1]['files']
    assert merged['starting_time'] == {'nanoseconds_since_epoch': 100}
    assert merged['duration'] == {'nanoseconds': 100} and merged['message_count'] == 6
    assert [(t['topic_metadata']['name'], t['message_count'])
            for t in merged['topics_with_message_count']] == [('/a', 4), ('/b', 2)]
    assert files[0]['topics_with_message_count'][0]['message_count'] == 3  # not changed
    assert merged['version'] == 9 and merged['ros_distro'] == 'rosbags'
    empty = split_bag_metadata([file('b_0.mcap', 2**63 - 1, 0, {'/a': 0})])
    assert empty['starting_time'] == {'nanoseconds_since_epoch': 2**63 - 1}
    assert empty['duration'] == {'nanoseconds': 0}


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_recording_split_by_size_is_rosbag2s_layout_and_reads_as_one_bag(storage, tmp_path):
    from ruamel.yaml import YAML

    from mmp_ros.bags.recording import BagRecorder, SplitLimits
    from mmp_ros.bags.source import TopicQos, open_bag

    out, limit, suffix = tmp_path / 'run', 100_000, {'mcap': '.mcap', 'sqlite3': '.db3'}[storage]
    sent = []
    with BagRecorder(out, storage=storage, split=SplitLimits(max_bytes=limit)) as recorder:
        recorder.add_topic('/text', 'std_msgs/msg/String', TopicQos(True, False, 10))
        for i in range(200):
            if i == 120:  # a topic that appears in the third file only
                recorder.add_topic('/late', 'std_msgs/msg/String', TopicQos(False, False, 5))
            topic = '/late' if i >= 120 and i % 2 else '/text'
            recorder.write(topic, 10**9 + i * 10**6, _text(i))
            sent.append((topic, 10**9 + i * 10**6, _text(i)))
        assert recorder.file_count == 5 if storage == 'mcap' else recorder.file_count > 5
    names = [f'run_{i}{suffix}' for i in range(len(list(out.glob(f'*{suffix}'))))]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, 'metadata.yaml'])
    for name in names[:-1]:  # a file ends with the message that took it past the limit
        assert limit <= (out / name).stat().st_size < limit + 8 * 2048 + 20_000, name
    info = YAML(typ='safe').load((out / 'metadata.yaml').read_text())[
        'rosbag2_bagfile_information']
    assert info['relative_file_paths'] == names and [f['path'] for f in info['files']] == names
    assert sum(f['message_count'] for f in info['files']) == info['message_count'] == 200
    assert info['files'][0]['starting_time'] == {'nanoseconds_since_epoch': 10**9}
    assert info['duration'] == {'nanoseconds': 199 * 10**6}
    # Back to back, in order.
    for entry, following in zip(info['files'], info['files'][1:], strict=False):
        end = entry['starting_time']['nanoseconds_since_epoch'] + entry['duration'][
            'nanoseconds']
        assert following['starting_time']['nanoseconds_since_epoch'] == end + 10**6

    with Reader(out) as reader:  # rosbags: one bag, every message in order
        assert [(c.topic, t, bytes(d)) for c, t, d in reader.messages()] == sent
        assert {n: t.msgcount for n, t in reader.topics.items()} == {'/text': 160, '/late': 40}
    with open_bag(out) as bag:  # what replay, adapt and evaluate read
        assert list(bag.messages(['/text', '/late'])) == sent
        assert (bag.start_ns, bag.end_ns, bag.message_count) == (10**9, 10**9 + 199 * 10**6, 200)
        assert bag.topics['/late'].offered_qos == TopicQos(False, False, 5)
    with open_bag(out / names[1]) as bag:  # each file is complete by itself
        assert bag.message_count == info['files'][1]['message_count']


def test_a_split_recording_that_was_killed_is_recovered_into_one_bag(tmp_path):
    # Every file but the last was closed; the last lacks its summary, the directory its
    # metadata.yaml: recover-bag reads them in order into one bag.
    out = tmp_path / 'run'
    script = f'''
import os
from mmp_ros.bags.recording import BagRecorder, SplitLimits
from mmp_ros.bags.source import TopicQos
from test_bag_record import _text
recorder = BagRecorder({str(out)!r}, split=SplitLimits(max_bytes=50_000))
recorder.add_topic('/text', 'std_msgs/msg/String', TopicQos(True, False, 10))
for i in range(100):
    recorder.write('/text', 10**9 + i * 10**6, _text(i))
recorder.commit()
for i in range(100, 110):
    recorder.write('/text', 10**9 + i * 10**6, _text(i))
os._exit(0)  # as a kill: the last 10 messages not on disk
'''
    subprocess.run([sys.executable, '-c', script], check=True,
                   env=repo_env(REPO / 'test'))
    assert sorted(p.name for p in out.iterdir()) == [f'run_{i}.mcap' for i in range(5)]
    from mmp_ros.bags.source import open_bag

    recovery = recover_mcap(out, tmp_path / 'recovered')
    assert recovery.counts == {'/text': 100}
    with open_bag(tmp_path / 'recovered') as bag:
        assert [(t, d) for _, t, d in bag.messages(['/text'])] == [
            (10**9 + i * 10**6, _text(i)) for i in range(100)]


@pytest.mark.parametrize(('option', 'error'), [
    (['--max-bag-size', '0'], 'argument --max-bag-size: must be positive, got 0'),
    (['--max-bag-size', '-5'], 'argument --max-bag-size: must be positive, got -5'),
    (['--max-bag-size', '1e6'], "argument --max-bag-size: expected a whole number, got '1e6'"),
    (['--max-bag-duration', '0'], 'argument --max-bag-duration: must be a positive number, '
                                  'got 0'),
    (['--max-bag-duration', '-1'], 'argument --max-bag-duration: must be a positive number, '
                                   'got -1'),
    (['--max-bag-duration', 'inf'], 'argument --max-bag-duration: must be a positive number, '
                                    'got inf'),
    (['--max-bag-size', '1000'], 'mmp_ros record: --max-bag-size 1000: a mcap file must be '
                                 'allowed at least 1024 bytes'),
    (['--max-bag-size', '80000', '--storage', 'sqlite3'],
     'mmp_ros record: --max-bag-size 80000: a sqlite3 file must be allowed at least 86016 '
     'bytes'),
])
def test_split_limits_that_make_no_sense_are_refused_in_one_line(option, error, tmp_path,
                                                                  capsys):
    from mmp_ros.cli import main

    out = tmp_path / 'bag'
    try:
        status = main(['record', str(out), '--topics', '/x', *option])
    except SystemExit as exc:  # argparse
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.rstrip('\n').splitlines()[-1].endswith(error), err
    assert not out.exists()


@pytest.mark.ros
@pytest.mark.slow
def test_a_recording_split_by_duration_reads_back_as_one_bag(tmp_path, restored_environ):
    # Three bursts of messages 0.7 s apart, recorded with --max-bag-duration 0.2: one file
    # each, and the bag reads back whole, in order, through rosbags and our own reader.
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile
    from ruamel.yaml import YAML
    from std_msgs.msg import UInt32

    from mmp_ros.bags.source import open_bag
    from mmp_ros.ros.context import init_ros, spin_until

    out, bursts, size = tmp_path / 'run', 3, 5
    with init_ros([]):
        node = rclpy.create_node('mmp_ros_split_source')
        try:
            numbers = node.create_publisher(UInt32, '/split/count', QoSProfile(depth=100))
            with subprocess.Popen(
                [sys.executable, '-m', 'mmp_ros.ros.record', str(out), '--topics',
                 '/split/count', '--max-bag-duration', '0.2'],
                env=repo_env(), stderr=subprocess.PIPE, text=True,
            ) as recorder:
                try:
                    assert spin_until(node, lambda: numbers.get_subscription_count() > 0,
                                      20.0), 'the recorder never subscribed'
                    for burst in range(bursts):
                        if burst:
                            time.sleep(0.7)  # the recorder takes a message within ms
                        for i in range(size):
                            numbers.publish(UInt32(data=burst * size + i))
                    assert numbers.wait_for_all_acked(Duration(seconds=10))
                    recorder.send_signal(signal.SIGINT)
                    stderr = recorder.communicate(timeout=20)[1]
                finally:
                    if recorder.poll() is None:
                        recorder.kill()
            assert recorder.returncode == 0, stderr
        finally:
            node.destroy_node()
    assert f'recorded /split/count: {bursts * size} in {bursts} files' in stderr
    names = [f'run_{i}.mcap' for i in range(bursts)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, 'metadata.yaml'])
    info = YAML(typ='safe').load((out / 'metadata.yaml').read_text())[
        'rosbag2_bagfile_information']
    assert info['relative_file_paths'] == names
    assert [f['message_count'] for f in info['files']] == [size] * bursts
    typestore = get_typestore(Stores.ROS2_KILTED)
    with Reader(out) as reader:
        got = [(t, typestore.deserialize_cdr(d, c.msgtype).data)
               for c, t, d in reader.messages()]
    assert [n for _, n in got] == list(range(bursts * size))
    assert [t for t, _ in got] == sorted(t for t, _ in got)
    with open_bag(out) as bag:
        assert [t for _, t, _ in bag.messages(['/split/count'])] == [t for t, _ in got]


def test_a_test_run_started_with_sigint_ignored_still_gets_the_ctrl_c():
    # A script's background job (`colcon test &`, nohup) starts with SIGINT ignored: the
    # test above then got no KeyboardInterrupt and `mmp_ros record` recorded forever.
    done = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         'test/test_bag_record.py::test_ctrl_c_while_the_bag_is_created_leaves_nothing'],
        cwd=REPO, capture_output=True, text=True, timeout=30,
        env={name: value for name, value in os.environ.items() if name != 'PYTEST_ADDOPTS'},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
