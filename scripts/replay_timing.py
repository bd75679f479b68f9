"""How faithfully ``mmp_ros replay`` reproduces a bag's timing, across processes.

Writes a 640x480 rgb8 bag with jittered gaps directly with rosbags (MCAP and sqlite3), replays
each with ``python -m mmp_ros.ros.replay`` in a child process, receives here with sensor-data
QoS, and prints |received gap - bag gap| percentiles. Run from the repository root:

    PYTHONPATH=$PWD python scripts/replay_timing.py --seconds 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the package of this checkout, as the player child gets it

from mmp_ros.cli import positive_float  # noqa: E402
from mmp_ros.dds import reserve_domain_id  # noqa: E402

# Loopback only, a domain of its own (set before rclpy is imported).
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
reserve_domain_id()

PLAYER_WAIT_S = 600.0  # how long the receiver lets the player run before it kills it
SUBSCRIBER_WAIT_S = 20  # the player's --wait-for-subscribers
FRAME_BYTES = 640 * 480 * 3  # one rgb8 image of write_image_bag's default size


def receive_replay(bag: Path, stamps: list[int], rate: float) -> tuple[dict, dict]:
    """Bag index -> (source, received) timestamps in seconds, as DDS took them: the writer's
    publish time and the reader's arrival time, so Python's own delay in this receiver stays
    out of the measured gaps (raw subscription: nothing is deserialized either)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from mmp_ros.bags.cdr import header_stamp_ns
    from mmp_ros.ros.context import init_ros, spin_until

    index = {s: i for i, s in enumerate(stamps)}
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}

    def on_image(data: bytes, info: dict) -> None:
        i = index[header_stamp_ns(data)]
        sent[i] = info['source_timestamp'] / 1e9
        arrived[i] = info['received_timestamp'] / 1e9

    with init_ros([]):
        node = rclpy.create_node('mmp_ros_replay_timing')
        try:
            node.create_subscription(
                Image, '/camera/image', on_image, qos_profile_sensor_data, raw=True
            )
            command = [sys.executable, '-m', 'mmp_ros.ros.replay', str(bag),
                       '--wait-for-subscribers', str(SUBSCRIBER_WAIT_S), '--rate', str(rate)]
            # the checkout first, the PYTHONPATH that finds rclpy on a native install kept
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                filter(None, [str(REPO), os.environ.get('PYTHONPATH')])))
            with subprocess.Popen(command, env=env) as player:
                try:
                    spin_until(node, lambda: player.poll() is not None, PLAYER_WAIT_S)
                    spin_until(node, lambda: len(arrived) >= len(stamps), 1.0)
                finally:
                    if player.poll() is None:
                        player.kill()
        finally:
            node.destroy_node()
    return sent, arrived


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=positive_float, default=10.0)
    parser.add_argument('--rate-hz', type=positive_float, default=30.0,
                        help='mean frame rate of the bag')
    parser.add_argument('--play-rate', type=positive_float, default=1.0,
                        help='replay speed factor')
    args = parser.parse_args(argv)
    # --seconds 1e300 was a ValueError traceback from numpy, and a replay longer than the
    # receiver waits was killed part way, its frames reported missing.
    longest = PLAYER_WAIT_S - SUBSCRIBER_WAIT_S
    if args.seconds / args.play_rate > longest:
        parser.error(f'--seconds {args.seconds:g} at --play-rate {args.play_rate:g} replays for '
                     f'longer than the {longest:g} s the player is given')
    frames = args.seconds * args.rate_hz
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if 2 * frames * FRAME_BYTES > free:  # an mcap and an sqlite3 bag, in the same folder
        parser.error(f'--seconds {args.seconds:g} at --rate-hz {args.rate_hz:g} writes two '
                     f'bags of {frames * FRAME_BYTES / 1e9:.3g} GB; {tempfile.gettempdir()} '
                     f'has {free / 1e9:.3g} GB free')
    if round(frames) < 2:
        parser.error(f'--seconds {args.seconds:g} at --rate-hz {args.rate_hz:g} is fewer than '
                     'the 2 frames a gap needs')

    from mmp_ros.bags.synthetic import jittered_timestamps, write_image_bag
    from mmp_ros.bags.timing import compare_intervals, compare_offsets

    stamps = jittered_timestamps(round(frames), args.rate_hz)
    # Received gaps shrink by the play rate; compare against the bag's gaps at that rate.
    expected_ns = {i: round((s - stamps[0]) / args.play_rate) for i, s in enumerate(stamps)}
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ('mcap', 'sqlite3'):
            bag = write_image_bag(Path(tmp) / storage, stamps, storage=storage)
            sent, arrived = receive_replay(bag, stamps, args.play_rate)
            print(f'{storage}: received {len(arrived)}/{len(stamps)}')
            for what, times in (('published', sent), ('received', arrived)):
                for measure, compare in (('gap', compare_intervals), ('offset', compare_offsets)):
                    report = compare(expected_ns, times)
                    print(
                        f'  {what:9} {measure:6} error over {report.compared}: p50 '
                        f'{report.error_p50_ms:.2f} ms, p95 {report.error_p95_ms:.2f} ms, '
                        f'max {report.error_max_ms:.2f} ms', flush=True,
                    )
            missing = sorted(set(range(len(stamps))) - set(arrived))
            if missing:
                print(f'  missing frames: {missing}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
