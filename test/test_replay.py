"""``mmp_ros replay`` across processes: a bag written by rosbags itself (not by our recorder)
is replayed by a child process and received here, for MCAP and sqlite3.

Times are the ones DDS takes (the writer's source timestamp: when the player published; the
reader's received timestamp: when it arrived), so this process's own Python delays stay out.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import repo_env

from mmp_ros.bags.cdr import header_stamp_ns
from mmp_ros.bags.synthetic import jittered_timestamps, write_image_bag, write_stub_bag
from mmp_ros.bags.timing import compare_intervals, compare_offsets

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ros



def replay_and_receive(bag: Path, topic: str, stamps: list[int], *extra: str):
    """Run the player on ``bag``; bag index -> (published, received) time in seconds."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from mmp_ros.ros.context import init_ros

    index = {stamp: i for i, stamp in enumerate(stamps)}
    published: dict[int, float] = {}
    received: dict[int, float] = {}

    def on_image(data: bytes, info: dict) -> None:
        i = index[header_stamp_ns(data)]
        published[i] = info['source_timestamp'] / 1e9
        received[i] = info['received_timestamp'] / 1e9

    with init_ros([]):
        node = rclpy.create_node('mmp_ros_replay_probe')
        try:
            node.create_subscription(Image, topic, on_image, qos_profile_sensor_data, raw=True)
            play_into(node, bag, extra, lambda: len(received) >= len(stamps))
        finally:
            node.destroy_node()
    return published, received


def play_into(node, bag: Path, extra, all_arrived) -> None:
    """Replay ``bag`` in a child process while ``node`` spins, until the player has exited
    (and the stragglers still in flight have arrived, or a second has passed)."""
    from mmp_ros.ros.context import spin_until

    with subprocess.Popen(
        [sys.executable, '-m', 'mmp_ros.ros.replay', str(bag), '--wait-for-subscribers', '20',
         *extra],
        env=repo_env(), stderr=subprocess.PIPE, text=True,
    ) as player:
        try:
            finished = spin_until(node, lambda: player.poll() is not None, 60.0)
            spin_until(node, all_arrived, 1.0)
        finally:
            if player.poll() is None:
                player.kill()
            stderr = player.communicate()[1]
    assert finished and player.returncode == 0, stderr


@pytest.mark.slow
@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_replay_keeps_the_bags_timing_within_5ms(storage, tmp_path, restored_environ):
    stamps = jittered_timestamps(90, 30.0)  # 3 s of 640x480 rgb8, gaps 17..50 ms
    bag = write_image_bag(tmp_path / 'bag', stamps, storage=storage, topic='/bag/image')
    bag_ns = dict(enumerate(stamps))
    # A host busy for the whole run (seen once in CI: every due time off by 4 to 7 ms, the
    # same code within 0.3 ms minutes later) gets a second run; a player that drifts or keeps
    # bad gaps misses in both.
    for _ in range(2):
        published, received = replay_and_receive(
            bag, '/live/image', stamps, '--remap', '/bag/image:=/live/image'
        )
        if max(compare_intervals(bag_ns, published).error_p90_ms,
               compare_offsets(bag_ns, published).error_p90_ms) < 5.0:
            break
    # Best effort: the first frames may go before this side has matched the player.
    assert len(received) >= 0.9 * len(stamps), sorted(set(range(len(stamps))) - set(received))
    # The player keeps gaps and due times (offsets catch drift that gaps miss). p90, not the
    # maximum: a burst of load from other processes can stall any process for tens of ms,
    # which costs two gaps and the two or three messages due meanwhile, and nothing after.
    gaps = compare_intervals(bag_ns, published)
    assert gaps.compared >= 0.85 * (len(stamps) - 1)
    assert gaps.error_p90_ms < 5.0, gaps
    offsets = compare_offsets(bag_ns, published)
    assert offsets.error_p90_ms < 5.0, offsets
    # What arrived in this process.
    arrivals = compare_intervals(bag_ns, received)
    assert arrivals.error_p50_ms < 5.0, arrivals


@pytest.mark.slow
def test_rate_factor_and_start_offset(tmp_path, restored_environ):
    stamps = jittered_timestamps(40, 20.0, jitter=0.0)  # 50 ms apart, 1.95 s
    bag = write_image_bag(tmp_path / 'bag', stamps, width=64, height=48)
    halved = {i: stamps[0] + (stamps[i] - stamps[0]) // 2 for i in range(len(stamps))}
    # Of 19 gaps p90 is the second worst, which one stall of the player on a loaded host
    # costs (two gaps): a second run then, as test_replay_keeps_the_bags_timing_within_5ms
    # has; a player that ignores or misapplies the rate misses in both.
    for _ in range(2):
        published, _ = replay_and_receive(
            bag, '/camera/image', stamps, '--rate', '2', '--start-offset', '0.99'
        )
        if compare_intervals(halved, published).error_p90_ms < 5.0:
            break
    # From 0.99 s on: messages 20..39 (the first few may go before this side has matched the
    # player), at twice the speed (25 ms apart).
    assert min(published) >= 20 and max(published) == 39 and len(published) >= 15
    assert compare_intervals(halved, published).error_p90_ms < 5.0


@pytest.mark.slow
def test_loop_with_restamp_repeats_with_fresh_increasing_stamps(tmp_path, restored_environ):
    import time

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from mmp_ros.ros.context import init_ros, spin_until

    stamps = jittered_timestamps(3, 20.0, jitter=0.0)  # recorded in 2023
    bag = write_image_bag(tmp_path / 'bag', stamps, width=8, height=4)
    frames: list[tuple[str, int]] = []

    def on_image(msg: Image) -> None:
        stamp = msg.header.stamp
        frames.append((msg.header.frame_id, stamp.sec * 10**9 + stamp.nanosec))

    with init_ros([]):
        node = rclpy.create_node('mmp_ros_loop_probe')
        try:
            node.create_subscription(Image, '/camera/image', on_image, qos_profile_sensor_data)
            with subprocess.Popen(
                [sys.executable, '-m', 'mmp_ros.ros.replay', str(bag), '--loop', '--restamp',
                 '--wait-for-subscribers', '20'],
                env=repo_env(), stderr=subprocess.PIPE, text=True,
            ) as player:
                try:
                    # Three passes of a 3-message bag: 9 frames in about 0.45 s.
                    assert spin_until(node, lambda: len(frames) >= 9, 20.0)
                    player.send_signal(signal.SIGINT)
                    stderr = player.communicate(timeout=20)[1]
                finally:
                    if player.poll() is None:
                        player.kill()
        finally:
            node.destroy_node()
    assert player.returncode == 0 and 'Traceback' not in stderr, stderr
    ids = [frame_id for frame_id, _ in frames]
    assert set(ids) == {'0', '1', '2'} and ids.count('0') >= 2  # played more than once
    received_stamps = [stamp for _, stamp in frames]
    assert received_stamps == sorted(received_stamps)  # no jump back at the loop
    assert abs(received_stamps[-1] - time.time_ns()) < 10 * 10**9  # now, not 2023


def test_restamp_keeps_an_image_and_its_camera_info_under_one_stamp(tmp_path,
                                                                    restored_environ):
    # The synthetic bag has each RGB frame, its CameraInfo and its ground truth under one
    # header. --restamp gave each message its own publish time, microseconds apart: none of
    # the 90 pairs kept a stamp in common, and exact-time consumers (CameraSubscriber,
    # message_filters' ExactTime) paired nothing. Now they share the first one's.
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    from mmp_ros.ros.context import init_ros
    from training.data.synth_bag import SynthBagConfig, write_synth_bag

    bag = tmp_path / 'bag'
    sent = write_synth_bag(bag, SynthBagConfig(duration_s=0.5, scene_seconds=1.0, size=(8, 8)))
    topics = {'/rgb/image': Image, '/rgb/camera_info': CameraInfo, '/ground_truth/labels': Image}
    stamps: dict[str, list[int]] = {topic: [] for topic in topics}
    with init_ros([]):
        node = rclpy.create_node('mmp_ros_restamp_probe')
        try:
            for topic, msgtype in topics.items():
                node.create_subscription(
                    msgtype, topic, lambda data, t=topic: stamps[t].append(header_stamp_ns(data)),
                    qos_profile_sensor_data, raw=True)
            play_into(node, bag, ['--restamp', '--topics', *topics, '--delay', '0.3'],
                      lambda: all(len(s) >= 15 for s in stamps.values()))
        finally:
            node.destroy_node()
    images, infos, truth = (stamps[topic] for topic in topics)
    assert min(len(images), len(infos), len(truth)) >= 12, stamps  # 15 frames, best effort
    assert images == sorted(set(images))  # fresh and increasing, as before
    assert abs(images[-1] - time.time_ns()) < 10 * 10**9
    # Each CameraInfo and ground truth under its image's stamp: one that no image came with
    # is a lost image's, so there are no more of them than images lost. ('All but one': two
    # images and two other CameraInfos lost, as the 12 of 15 above allow, failed '11 >= 12'.)
    lost = sent['/rgb/image'] - len(images)
    assert len(set(infos) - set(images)) <= lost, (lost, stamps)
    assert len(set(truth) - set(images)) <= lost, (lost, stamps)


def test_restamp_gives_the_markers_of_a_marker_array_their_images_stamp(tmp_path,
                                                                         restored_environ):
    # --restamp rewrote only a header at a message's start: a MarkerArray (a header in each
    # marker) kept the recording's stamps beside images stamped now, and RViz could not
    # transform the markers. Now each marker takes the new stamp of its image.
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import Marker, MarkerArray

    from mmp_ros.bags.recording import STORAGES
    from mmp_ros.ros.context import init_ros

    typestore = get_typestore(Stores.ROS2_KILTED)
    writer = Writer(tmp_path / 'bag', version=9, storage_plugin=STORAGES['mcap'])
    writer.open()
    image_topic = writer.add_connection('/cam/image', 'sensor_msgs/msg/Image',
                                        typestore=typestore)
    markers_topic = writer.add_connection('/markers', 'visualization_msgs/msg/MarkerArray',
                                          typestore=typestore)
    for i in range(10):
        stamp = 1_700_000_000 * 10**9 + i * 50_000_000
        image, markers = Image(), MarkerArray(markers=[Marker(id=0), Marker(id=1)])
        for header in (image.header, *(m.header for m in markers.markers)):
            header.stamp.sec, header.stamp.nanosec = divmod(stamp, 10**9)
        writer.write(image_topic, stamp, serialize_message(image))
        writer.write(markers_topic, stamp + 1_000_000, serialize_message(markers))
    writer.close()
    images: list[int] = []
    markers: list[list[int]] = []

    def on_markers(data: bytes) -> None:
        stamps = deserialize_message(data, MarkerArray).markers
        markers.append([s.header.stamp.sec * 10**9 + s.header.stamp.nanosec for s in stamps])

    with init_ros([]):
        node = rclpy.create_node('mmp_ros_restamp_markers_probe')
        try:
            node.create_subscription(Image, '/cam/image',
                                     lambda data: images.append(header_stamp_ns(data)),
                                     qos_profile_sensor_data, raw=True)
            node.create_subscription(MarkerArray, '/markers', on_markers, 10, raw=True)
            play_into(node, tmp_path / 'bag', ['--restamp', '--delay', '0.3'],
                      lambda: len(markers) == 10 and len(images) >= 10)
        finally:
            node.destroy_node()
    assert len(markers) == 10 and len(images) >= 8, (images, markers)  # images best effort
    assert abs(images[-1] - time.time_ns()) < 10 * 10**9  # now, not 2023
    lost = 10 - len(images)
    assert all(len(set(stamps)) == 1 for stamps in markers), markers  # as recorded: one
    assert len({stamps[0] for stamps in markers} - set(images)) <= lost, (images, markers)


@pytest.mark.parametrize(('storage', 'compression', 'restamp'),
                         [('mcap', 'jpeg', False), ('sqlite3', 'png', True)])
def test_compressed_camera_topics_are_published_as_compressed_images_on_time(
        tmp_path, restored_environ, storage, compression, restamp):
    # A bag of image_transport's compressed topics only was refused ('no sensor_msgs/msg/Image
    # topic to replay'); now each goes out as the CompressedImage it is, on its own name and
    # with the camera QoS, for a node subscribed with transport compressed.
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage

    from mmp_ros.bags.messages import deserialize_camera_image
    from mmp_ros.bags.source import COMPRESSED_TYPE, open_bag
    from mmp_ros.ros.context import init_ros

    stamps = jittered_timestamps(20, 20.0)  # 1 s, recorded in 2023
    bag = write_image_bag(tmp_path / 'bag', stamps, storage=storage, width=32, height=24,
                          topic='/rgb/image/compressed', compression=compression)
    with open_bag(bag) as opened:
        recorded = [data for _, _, data in opened.messages(['/rgb/image/compressed'])]
    published: dict[int, float] = {}
    received: dict[int, bytes] = {}

    def on_image(data: bytes, info: dict) -> None:
        i = int(deserialize_camera_image(data, COMPRESSED_TYPE).frame_id)  # the bag index
        published[i] = info['source_timestamp'] / 1e9
        received[i] = data

    with init_ros([]):
        node = rclpy.create_node('mmp_ros_compressed_probe')
        try:
            node.create_subscription(CompressedImage, '/live/image/compressed', on_image,
                                     qos_profile_sensor_data, raw=True)
            play_into(node, bag, ['--remap', '/rgb/image/compressed:=/live/image/compressed',
                                  *(['--restamp'] if restamp else [])],
                      lambda: len(received) >= len(stamps))
        finally:
            node.destroy_node()
    assert len(received) >= 0.9 * len(stamps)
    for i, data in received.items():  # the bag's message, as recorded
        got, sent = (deserialize_camera_image(d, COMPRESSED_TYPE) for d in (data, recorded[i]))
        assert (got.format, got.data) == (sent.format, sent.data)
    assert (got.fields.encoding, got.fields.height, got.fields.width) == ('rgb8', 24, 32)
    # On time: a player ignoring the stamps would be off by the gaps (about 50 ms). Of 19
    # gaps p90 is the second worst, which one stall of a loaded host costs: 9.1 ms was seen
    # under load; test_replay_keeps_the_bags_timing_within_5ms holds the 5 ms bound.
    assert compare_intervals(dict(enumerate(stamps)), published).error_p90_ms < 15.0
    stamped = [header_stamp_ns(received[i]) for i in sorted(received)]
    if restamp:  # --restamp applies to them as to Image: fresh increasing stamps, not 2023's
        assert stamped == sorted(stamped) and abs(stamped[-1] - time.time_ns()) < 10 * 10**9
    else:
        assert stamped == [stamps[i] for i in sorted(received)]


def test_loop_over_a_bag_without_messages_ends_at_once(tmp_path, restored_environ):
    # Every pass publishes nothing; looping on would spin forever, deaf to SIGTERM.
    bag = write_image_bag(tmp_path / 'bag', [])
    player = subprocess.run(
        [sys.executable, '-m', 'mmp_ros.ros.replay', str(bag), '--loop'],
        env=repo_env(), capture_output=True, text=True, timeout=60,
    )
    assert player.returncode == 0, player.stderr
    assert 'nothing published' in player.stderr



def test_a_topic_that_cannot_be_published_is_skipped_beside_one_that_plays(tmp_path):
    # A robot's bag with a message type not installed here: the player logged "play
    # /rgb/image" at INFO, then the skip at WARN from the same line, and rclpy raised
    # "Logger severity cannot be changed between calls" (a traceback, exit status 1).
    bag = write_stub_bag(tmp_path / 'bag', {'/chatter': 'std_msgs/msg/String',
                                            '/state': 'no_such_robot_msgs/msg/State'})
    player = subprocess.run(
        [sys.executable, '-m', 'mmp_ros.ros.replay', str(bag), '--allow-no-images'],
        env=repo_env(), capture_output=True, text=True, timeout=60,
    )
    assert player.returncode == 0, player.stderr
    assert 'play /chatter' in player.stderr, player.stderr
    assert '[WARN]' in player.stderr and 'skip /state: ' in player.stderr, player.stderr
    assert 'published 1 messages' in player.stderr, player.stderr


def test_the_log_names_each_topic_as_it_is_published_in_a_namespace_and_remapped(tmp_path):
    # 'play /a -> a' for a relative --remap target, published in the player's namespace
    # (/robot1/a), and 'play /c' for a topic that --ros-args -r /c:=/robot1/cam moved: the log
    # named neither name subscribers had to use. --wait-for-subscribers said 'not every topic
    # has a subscriber', without saying which.
    bag = write_stub_bag(tmp_path / 'bag', {'/a': 'std_msgs/msg/String',
                                            '/b': 'std_msgs/msg/String',
                                            '/c': 'std_msgs/msg/String'})
    player = subprocess.run(
        [sys.executable, '-m', 'mmp_ros.ros.replay', str(bag), '--allow-no-images',
         '--remap', '/a:=a', '--wait-for-subscribers', '0.1', '--ros-args',
         '-r', '__ns:=/robot1', '-r', '/c:=/robot1/cam'],
        env=repo_env(), capture_output=True, text=True, timeout=60,
    )
    assert player.returncode == 0, player.stderr
    lines = [line.split(']: ')[-1] for line in player.stderr.splitlines()]
    assert 'play /a -> /robot1/a [std_msgs/msg/String, reliable]' in lines, lines
    assert 'play /b [std_msgs/msg/String, reliable]' in lines, lines
    assert 'play /c -> /robot1/cam [std_msgs/msg/String, reliable]' in lines, lines
    assert ('no subscriber on /robot1/a, /b, /robot1/cam after 0.1 s; playing anyway'
            in lines), lines


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_loop_sums_up_without_an_rcl_error(tmp_path, sig):
    # The summary used to be logged by the live node after the signal had shut the context
    # down: its /rosout publisher failed with "Failed to publish log message to rosout".
    bag = write_image_bag(tmp_path / 'bag', jittered_timestamps(10, 20.0), width=8, height=4)
    player = subprocess.Popen(
        [sys.executable, '-m', 'mmp_ros.ros.replay', str(bag), '--loop'],
        env=repo_env(), stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        while not any(line.startswith('[INFO]') and ' play ' in line for line in lines[-1:]):
            lines.append(player.stderr.readline())
            assert lines[-1], ''.join(lines)  # stderr closed before it played
        time.sleep(0.5)  # past the start-up lines, a pass or so into playing
        player.send_signal(sig)
        stderr = ''.join(lines) + player.communicate(timeout=20)[1]
    finally:
        if player.poll() is None:
            player.kill()
    assert player.returncode == 0, stderr
    assert 'published ' in stderr and 'Failed to publish' not in stderr, stderr


@pytest.mark.slow
def test_clock_gives_a_sim_time_node_the_bag_time_of_each_message(tmp_path, restored_environ):
    import numpy as np
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from mmp_ros.ros.context import init_ros

    stamps = jittered_timestamps(60, 30.0)  # 2 s recorded in 2023, gaps 17..50 ms
    bag = write_image_bag(tmp_path / 'bag', stamps, width=8, height=4)
    seen: list[tuple[int, int]] = []  # (header stamp, the node's now when it arrived), ns

    def on_image(msg: Image) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        seen.append((stamp, node.get_clock().now().nanoseconds))

    with init_ros([]):
        node = rclpy.create_node(
            'mmp_ros_sim_time_probe', parameter_overrides=[Parameter('use_sim_time', value=True)]
        )
        try:
            node.create_subscription(Image, '/camera/image', on_image, qos_profile_sensor_data)
            play_into(node, bag, ['--clock', '100'], lambda: len(seen) >= len(stamps))
        finally:
            node.destroy_node()
    assert len(seen) >= 0.9 * len(stamps)
    # The first tick (the bag's start) goes out before the first message: never time zero.
    assert all(now > 0 for _, now in seen), seen[:3]
    # The clock ticks every 10 ms of bag time, so it trails a message by up to 10 ms; a stall
    # of this process can put it a few ms either way. Not wall time (2023), not frozen.
    lag_ms = np.array([(stamp - now) / 1e6 for stamp, now in seen])
    assert np.all(np.abs(lag_ms) < 50.0), lag_ms
    assert np.percentile(np.abs(lag_ms), 90) < 15.0, lag_ms


@pytest.mark.slow
def test_with_loop_the_clock_reads_each_pass_before_its_first_message(tmp_path, restored_environ):
    """The ticks' grid rarely meets a pass's boundary: the first message of each new pass went
    out while /clock still read the end of the last (1 s before it here, in about every
    pass), so the segmentation node rejected it as 'stamp went backwards' before it heard
    the clock jump."""
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from mmp_ros.ros.context import init_ros, spin_until

    stamps = jittered_timestamps(30, 30.0)  # 1 s, a pass every 0.5 s at --rate 2
    bag = write_image_bag(tmp_path / 'bag', stamps, width=8, height=4)
    seen: list[tuple[int, int]] = []  # (header stamp, the node's now when it arrived), ns

    def on_image(msg: Image) -> None:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        seen.append((stamp, node.get_clock().now().nanoseconds))

    with init_ros([]):
        node = rclpy.create_node(
            'mmp_ros_sim_time_probe', parameter_overrides=[Parameter('use_sim_time', value=True)]
        )
        player = subprocess.Popen(
            [sys.executable, '-m', 'mmp_ros.ros.replay', str(bag), '--wait-for-subscribers',
             '20', '--clock', '100', '--loop', '--rate', '2'],
            env=repo_env(), stderr=subprocess.PIPE, text=True,
        )
        try:
            node.create_subscription(Image, '/camera/image', on_image, qos_profile_sensor_data)
            assert spin_until(node, lambda: len(seen) >= 5 * len(stamps), 30.0)
        finally:
            player.send_signal(signal.SIGINT)
            stderr = player.communicate(timeout=20)[1]
            node.destroy_node()
    assert player.returncode == 0, stderr
    behind_ms = [(now - stamp) / 1e6 for stamp, now in seen if now - stamp > 0.5e9]
    assert not behind_ms, behind_ms


@pytest.mark.slow
def test_the_node_on_sim_time_segments_a_bag_played_with_clock_on_its_own_stamps(
    tmp_path, restored_environ
):
    """The sim-time workflow end to end: ``mmp_ros run`` with ``use_sim_time:=true`` (shipped
    model) fed by ``replay --clock`` without ``--restamp``: labels carry the bag's stamps and
    every sensor is reported OK on the bag's time; the bag's camera_info comes back as
    segmentation/camera_info under the labels' headers."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo, Image

    from mmp_ros.bags.source import open_bag
    from mmp_ros.ros.context import init_ros, spin_until
    from mmp_ros.ros.qos import output_qos
    from training.data.synth_bag import SynthBagConfig, write_synth_bag

    cameras = ['/rgb/image', '/depth/image', '/polarization/image', '/thermal/image']
    infos = [topic.replace('/image', '/camera_info') for topic in cameras]
    bag = tmp_path / 'bag'
    write_synth_bag(bag, SynthBagConfig(duration_s=3.0, scene_seconds=1.5))
    with open_bag(bag) as reader:
        rgb_stamps = {header_stamp_ns(data) for _, _, data in reader.messages(['/rgb/image'])}
        camera_stamps = {header_stamp_ns(data) for _, _, data in reader.messages(cameras)}
        start_ns, end_ns = reader.start_ns, reader.end_ns
    env = repo_env()
    labels: list[int] = []
    label_headers: set[tuple[int, str]] = set()
    camera_infos: list[CameraInfo] = []
    diagnostics: list[DiagnosticArray] = []

    def on_labels(msg: Image) -> None:
        labels.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
        label_headers.add((labels[-1], msg.header.frame_id))

    def all_ok() -> bool:
        return bool(diagnostics) and len(diagnostics[-1].status) == 5 and all(
            s.level == b'\x00' for s in diagnostics[-1].status
        )

    with init_ros([]):
        probe = rclpy.create_node('mmp_ros_sim_time_checker')
        node = player = None
        try:
            probe.create_subscription(Image, '/segmentation/labels', on_labels, output_qos(10))
            probe.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append,
                                      output_qos(10))
            probe.create_subscription(CameraInfo, '/segmentation/camera_info',
                                      camera_infos.append, output_qos(10))
            node = subprocess.Popen(
                [sys.executable, '-m', 'mmp_ros', 'run', '--ros-args',
                 '--params-file', 'config/mmp_segmentation.yaml',
                 '--params-file', 'config/mmp_demo.yaml',
                 '-p', 'backend:=onnxruntime', '-p', 'use_sim_time:=true'],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            # The player waits for the node's subscriptions; this side must hear the node too.
            assert spin_until(
                probe, lambda: probe.count_publishers('/segmentation/labels') > 0, 60.0
            ), 'the node did not start'
            player = subprocess.Popen(
                [sys.executable, '-m', 'mmp_ros', 'replay', str(bag), '--clock', '100',
                 '--topics', *cameras, *infos, '--wait-for-subscribers', '60'],
                cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
            )
            assert spin_until(probe, lambda: player.poll() is not None, 90.0)
            assert player.returncode == 0, player.communicate()[1]
            # The node's clock stops with the bag: its last verdicts stand, on the bag's time.
            assert spin_until(probe, all_ok, 10.0), [
                (s.name, s.message) for s in diagnostics[-1].status
            ] if diagnostics else 'no diagnostics'
        finally:
            for process in (player, node):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGINT)
                    try:
                        process.communicate(timeout=20)
                    except subprocess.TimeoutExpired:
                        process.kill()
            probe.destroy_node()
    # Frames that come while the model runs are replaced by newer ones: under load (two busy
    # processes beside it) 41 to 65 of 90 got labels, unloaded about 90.
    assert len(labels) >= 0.25 * len(rgb_stamps)
    # The bag's own stamps, none of the node's making: rgb's, or while rgb is not usable
    # (not heard yet, or late on a loaded host) the freshest other camera's, which anchors
    # then (seen once under load: a depth stamp).
    assert set(labels) <= camera_stamps
    stamp = diagnostics[-1].header.stamp
    assert start_ns <= stamp.sec * 10**9 + stamp.nanosec <= end_ns  # bag time, not wall time
    # The bag's camera_info reached the node: the anchor camera's, under the labels' headers.
    assert len(camera_infos) >= 0.9 * len(labels)
    assert {(i.header.stamp.sec * 10**9 + i.header.stamp.nanosec, i.header.frame_id)
            for i in camera_infos} <= label_headers
    assert {(i.height, i.width, i.distortion_model) for i in camera_infos} == {
        (120, 160, 'plumb_bob')}
