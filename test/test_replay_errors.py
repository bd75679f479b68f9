"""``mmp_ros replay`` on bad input: exit status 2 and one clear line naming the file or topic,
before any ROS start-up."""

from __future__ import annotations

import argparse

import pytest

from mmp_ros.bags.synthetic import write_stub_bag
from mmp_ros.ros import replay


def run_replay(bag, capsys, *options: str) -> str:
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    args = parser.parse_args([str(bag), *options])
    args.ros_args = []
    assert replay.run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('mmp_ros replay: ') and err.count('\n') == 1, err
    return err


def test_missing_bag(tmp_path, capsys):
    assert f'{tmp_path / "gone"}: no such bag' in run_replay(tmp_path / 'gone', capsys)


def test_corrupt_bag(tmp_path, capsys):
    junk = tmp_path / 'junk.mcap'
    junk.write_bytes(b'\x89MCAP0\r\n' + bytes(100))
    assert f'{junk}: cannot be read as a rosbag2' in run_replay(junk, capsys)


def test_bag_without_image_topics(tmp_path, capsys):
    bag = write_stub_bag(tmp_path / 'bag', {'/chatter': 'std_msgs/msg/String'})
    err = run_replay(bag, capsys)
    assert f'{bag}: no sensor_msgs/msg/Image or CompressedImage topic' in err
    assert '/chatter [std_msgs/msg/String]' in err


def test_a_selection_without_image_topics_names_the_selection_and_the_option(tmp_path, capsys):
    """--topics /chatter on a bag with a camera topic said 'no sensor_msgs/msg/Image or
    CompressedImage topic to replay (topics: /chatter [...], /camera [sensor_msgs/msg/Image])',
    naming the camera it said was not there, and not --allow-no-images."""
    bag = write_stub_bag(tmp_path / 'bag', {'/chatter': 'std_msgs/msg/String',
                                            '/camera': 'sensor_msgs/msg/Image'})
    err = run_replay(bag, capsys, '--topics', '/chatter')
    assert f'{bag}: --topics selects no sensor_msgs/msg/Image or CompressedImage topic' in err
    assert '/camera [sensor_msgs/msg/Image]' in err and '--allow-no-images' in err
    bag2 = write_stub_bag(tmp_path / 'bag2', {'/chatter': 'std_msgs/msg/String'})
    assert '--allow-no-images' in run_replay(bag2, capsys)


@pytest.mark.parametrize(('msgtype', 'reason'), [
    ('NotAType', "unknown message type 'NotAType'"),
    ('no_such_pkg_msgs/msg/Thing', 'no Python module no_such_pkg_msgs.msg'),
    ('std_msgs/msg/NoSuchThing', 'std_msgs.msg has no NoSuchThing'),
])
def test_unknown_message_types(tmp_path, capsys, msgtype, reason):
    bag = write_stub_bag(tmp_path / 'bag', {'/thing': msgtype})
    err = run_replay(bag, capsys)
    assert f'{bag}: nothing to replay (/thing: ' in err and reason in err
    # Asked for by name, the same topic is an error about that topic.
    bag2 = write_stub_bag(
        tmp_path / 'bag2', {'/thing': msgtype, '/chatter': 'std_msgs/msg/String'}
    )
    err = run_replay(bag2, capsys, '--topics', '/thing', '--allow-no-images')
    assert f'{bag2}: topic /thing cannot be replayed' in err and reason in err


def test_bad_remap_and_offset(tmp_path, capsys):
    bag = write_stub_bag(tmp_path / 'bag', {'/chatter': 'std_msgs/msg/String'})
    assert 'expected /from:=/to' in run_replay(bag, capsys, '--allow-no-images', '--remap', '/x')
    for target, reason in (('123', 'must not start with a number'),
                           ('/a//b', "must not contain repeated '/'")):
        err = run_replay(bag, capsys, '--allow-no-images', '--remap', f'/chatter:={target}')
        assert f'remap /chatter:={target}: ' in err and reason in err
    assert 'past the end of the bag' in run_replay(bag, capsys, '--allow-no-images',
                                                   '--start-offset', '5')


def test_a_remap_of_a_topic_left_out_of_the_selection_is_refused(tmp_path, capsys):
    # --topics /rgb --remap /depth:=/x played /rgb alone and said nothing of the remap, which
    # renamed nothing: the depth a node waited for never came.
    bag = write_stub_bag(tmp_path / 'bag', {'/rgb': 'sensor_msgs/msg/Image',
                                            '/depth': 'sensor_msgs/msg/Image'})
    err = run_replay(bag, capsys, '--topics', '/rgb', '--remap', '/depth:=/x')
    assert f'{bag}: --remap /depth:=/x: /depth is not played (--topics /rgb)' in err


def test_topics_given_twice_are_all_played(tmp_path, capsys):
    # argparse kept the last --topics alone: '--topics /rgb --topics /depth' played /depth.
    bag = write_stub_bag(tmp_path / 'bag', {'/rgb': 'sensor_msgs/msg/Image'})
    err = run_replay(bag, capsys, '--topics', '/nope', '--topics', '/rgb')
    assert f'{bag}: no topic /nope in the bag' in err


def test_a_recorded_clock_selected_with_clock_is_refused(tmp_path, capsys):
    bag = write_stub_bag(tmp_path / 'bag', {'/rgb': 'sensor_msgs/msg/Image',
                                            '/clock': 'rosgraph_msgs/msg/Clock'})
    err = run_replay(bag, capsys, '--clock', '--topics', '/rgb', '/clock')
    assert (f'{bag}: topic /clock cannot be replayed: --clock publishes /clock itself (the bag '
            'time), and the recorded clock would alternate with it') in err


def test_restamp_and_clock_are_refused_together(tmp_path, capsys):
    # Wall-time stamps against a /clock of bag time: a sim-time node would refuse every frame.
    bag = write_stub_bag(tmp_path / 'bag', {'/chatter': 'std_msgs/msg/String'})
    err = run_replay(bag, capsys, '--allow-no-images', '--restamp', '--clock', '100')
    assert '--restamp and --clock do not go together' in err


def test_restamp_with_a_player_on_sim_time_is_refused(tmp_path, capsys, restored_environ):
    # --ros-args -p use_sim_time:=true (a params file shared by every node) made the player's
    # clock sim time, which it never updates (it does not spin): every stamp went out as 0.
    from mmp_ros.bags.synthetic import write_image_bag

    bag = write_image_bag(tmp_path / 'bag', [1_700_000_000 * 10**9], width=2, height=2)
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    args = parser.parse_args([str(bag), '--restamp'])
    args.ros_args = ['--ros-args', '-p', 'use_sim_time:=true']
    assert replay.run(args) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1, err
    assert 'use_sim_time:=true (--ros-args) would make every stamp 0' in err


def test_a_message_that_cannot_be_restamped_is_named(tmp_path, capsys, restored_environ):
    # A damaged message (4 bytes) on an Image topic stopped --restamp with 'not a CDR message
    # with a header (...)' alone: no bag, topic or time to find it by.
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from mmp_ros.bags.synthetic import STORAGES

    writer = Writer(tmp_path / 'bag', version=9, storage_plugin=STORAGES['mcap'])
    writer.open()
    connection = writer.add_connection('/cam/image', 'sensor_msgs/msg/Image',
                                       typestore=get_typestore(Stores.ROS2_KILTED))
    writer.write(connection, 1_000_000_000, b'\x00\x01\x00\x00')
    writer.close()
    err = run_replay(tmp_path / 'bag', capsys, '--restamp')
    assert (f'{tmp_path / "bag"}: /cam/image message at 1000000000 ns: not a CDR message with '
            'a header') in err and 'without --restamp it is published as it is' in err


def test_a_message_with_headers_inside_that_cannot_be_restamped_is_named(tmp_path, capsys,
                                                                          restored_environ):
    # A MarkerArray is deserialized to restamp each marker's header: a damaged one stops the
    # replay with one line naming it, as a damaged image does, not with rosbags' traceback.
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from mmp_ros.bags.synthetic import STORAGES

    typestore = get_typestore(Stores.ROS2_KILTED)
    markers = typestore.types['visualization_msgs/msg/MarkerArray'](markers=[])
    data = bytes(typestore.serialize_cdr(markers, 'visualization_msgs/msg/MarkerArray'))
    writer = Writer(tmp_path / 'bag', version=9, storage_plugin=STORAGES['mcap'])
    writer.open()
    connection = writer.add_connection('/markers', 'visualization_msgs/msg/MarkerArray',
                                       typestore=typestore)
    writer.write(connection, 1_000_000_000, data[:4] + b'\x05' + data[5:])  # 5 markers, none
    writer.close()
    err = run_replay(tmp_path / 'bag', capsys, '--restamp', '--allow-no-images')
    assert (f'{tmp_path / "bag"}: /markers message at 1000000000 ns: not a '
            'visualization_msgs/msg/MarkerArray: ') in err
    assert 'without --restamp it is published as it is' in err


def test_a_bag_given_after_clock_says_to_put_it_first(tmp_path, capsys):
    # `mmp_ros replay --clock BAG` (--clock takes an optional rate): "argument --clock:
    # expected a number, got 'BAG'", which did not say what to do
    bag = write_stub_bag(tmp_path / 'bag', {'/chatter': 'std_msgs/msg/String'})
    parser = argparse.ArgumentParser(prog='mmp_ros replay')
    replay.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(['--clock', str(bag)])
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mmp_ros replay: error: argument --clock: expected a number, got '{bag}', a path: "
        'put the bag before --clock, or give --clock a rate (e.g. --clock 40)')
    # Not a path: as any other number option; and the bag first takes --clock's default.
    with pytest.raises(SystemExit):
        parser.parse_args(['--clock', 'fast', str(bag)])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "mmp_ros replay: error: argument --clock: expected a number, got 'fast'")
    assert parser.parse_args([str(bag), '--clock']).clock == replay.CLOCK_HZ
