"""``mmp_ros record OUT --topics ...``: record live topics into a rosbag2 (MCAP or sqlite3).

Subscriptions are raw (serialized CDR bytes straight into the bag, nothing deserialized).
A topic is subscribed once a publisher shows up, with that publisher's type and a QoS it can
serve (best effort if any publisher is, as rosbag2 does); its definition and type hash come
from rosbags' Kilted type store and must match the publisher's hash. Ctrl-C (SIGINT) and
SIGTERM stop the recording: what already arrived is written, then the bag is closed, so an
interrupted recording is a complete, readable bag. One killed outright keeps all but its last
second (``BagRecorder.commit``; MCAP: through ``mmp_ros recover-bag``). ``--max-bag-size`` and
``--max-bag-duration`` split the recording into several files as ``ros2 bag record -b/-d``
does (``SplitLimits``).

Messages that never reach the recorder (its queue full while it cannot keep up: the oldest are
dropped, even on reliable topics; best effort losing them) are counted from the gaps in each
publisher's sequence numbers (``MissedMessages``), warned about every second and in the
summary at the end.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from functools import partial

from rclpy.clock import Clock, ClockType
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from rclpy.subscription import MessageInfo
from rclpy.topic_endpoint_info import TopicEndpointInfo

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.recording import COMMIT_PERIOD_S, STORAGES, BagRecorder, SplitLimits
from mmp_ros.bags.source import TopicQos
from mmp_ros.cli import positive_float, positive_int
from mmp_ros.ros.context import RosInitError, init_ros
from mmp_ros.ros.names import topic_name_problem
from mmp_ros.ros.replay import import_problem, message_class, qos_profile

NODE_NAME = 'mmp_ros_record'
RECORD_DEPTH = 100  # subscription queue: room for bursts while the writer is busy
DISCOVERY_PERIOD_S = 0.25
DRAIN_QUIET_S = 0.1  # after a stop request: take messages until none came for this long
DRAIN_MAX_S = 2.0


class MissedMessages:
    """Messages published but never received, per topic, from the gaps in the sequence
    numbers DDS gives every message a publisher sends (reliable topics included: the
    subscription's queue keeps its last ``RECORD_DEPTH`` and drops older ones that were not yet
    taken). What a publisher sent after the last message received from it cannot be seen."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._last: dict[tuple[str, bytes], int] = {}

    def received(self, topic: str, publisher: bytes | None, sequence: int | None) -> None:
        """One message of ``topic`` taken; ``None``: the middleware did not say."""
        if publisher is None or sequence is None:
            return
        last = self._last.get((topic, publisher))
        if last is not None and sequence > last + 1:
            self.counts[topic] = self.counts.get(topic, 0) + sequence - last - 1
        self._last[(topic, publisher)] = sequence

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def announced_type_hashes(publishers: list[TopicEndpointInfo]) -> list[str]:
    """The RIHS type hashes the publishers of a topic announce, each once. A publisher that
    announces none (rclpy's ``INVALID``: a ROS 2 before Iron, micro-ROS, a plain DDS
    application) adds nothing: there is nothing to check its bytes against."""
    return sorted({str(p.topic_type_hash) for p in publishers} - {'INVALID'})


def summary(counts: dict[str, int], missed: dict[str, int]) -> str:
    """What was recorded per topic, with what was missed."""
    return ', '.join(
        f'{t}: {n}' + (f' ({missed[t]} missed)' if missed.get(t) else '')
        for t, n in counts.items()
    ) or 'nothing'


class TopicRecorder(Node):
    """Subscribes to the requested topics as they appear and writes what arrives."""

    def __init__(self, recorder: BagRecorder, topics: list[str]) -> None:
        super().__init__(NODE_NAME)
        self._recorder = recorder
        self._pending = {self.resolve_topic_name(t) for t in topics}
        self.last_write = time.monotonic()
        self.missed = MissedMessages()
        self._missed_reported = 0
        # On the steady clock: the node's, with use_sim_time, stands at 0 until /clock comes
        # and while a simulation is paused (no topic was subscribed after the start meanwhile),
        # and the system clock steps back with NTP.
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timer = self.create_timer(DISCOVERY_PERIOD_S, self._subscribe_new, clock=steady)
        # Also when the topics fall silent: what they sent last reaches the disk.
        self.create_timer(COMMIT_PERIOD_S, self._every_second, clock=steady)
        self._subscribe_new()

    @property
    def waiting_for(self) -> set[str]:
        return set(self._pending)

    def _subscribe_new(self) -> None:
        for topic in sorted(self._pending):
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            self._pending.discard(topic)
            types = {p.topic_type for p in publishers}
            if len(types) > 1:
                self.get_logger().error(f'not recording {topic}: publishers disagree on its '
                                        f'type {sorted(types)}')
                continue
            msgtype = types.pop()
            qos = TopicQos(
                reliable=all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                             for p in publishers),
                transient_local=all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                                    for p in publishers),
                depth=RECORD_DEPTH,
            )
            problem = import_problem(msgtype)
            hashes = announced_type_hashes(publishers)
            try:
                if problem:
                    raise BagError(f'not recording {topic}: {msgtype} does not import ({problem})')
                if len(hashes) > 1:
                    raise BagError(f'not recording {topic}: its publishers announce different '
                                   f'type hashes of {msgtype} {hashes}')
                self._recorder.add_topic(
                    topic, msgtype, qos, type_hash=hashes[0] if hashes else None
                )
            except BagError as exc:
                self.get_logger().error(str(exc))
                continue
            self.create_subscription(
                message_class(msgtype), topic, partial(self._write, topic), qos_profile(qos),
                raw=True,
            )
            self.get_logger().info(
                f'recording {topic} [{msgtype}, {"reliable" if qos.reliable else "best effort"}]'
            )
        if not self._pending:
            self._timer.cancel()

    def _write(self, topic: str, data: bytes, info: MessageInfo) -> None:
        gid = info['publisher_gid']
        self.missed.received(topic, None if gid is None else bytes(gid['data']),
                             info['publication_sequence_number'])
        now_ns = self.get_clock().now().nanoseconds
        if now_ns == 0 and self.get_clock().ros_time_is_active:
            # Bag time 0, and then the simulation's: a replay waited from one to the other
            # (1000 s of nothing for a clock that started at 1000 s). ros2 bag record
            # --use-sim-time waits for /clock too (ros2/rosbag2#1378).
            self.get_logger().warning(
                'use_sim_time is true and nothing has come on /clock yet: messages are not '
                'recorded until it does (their bag time would be 0)', throttle_duration_sec=5.0)
            return
        self._recorder.write(topic, now_ns, data)
        self.last_write = time.monotonic()

    def _every_second(self) -> None:
        self._recorder.commit()
        self.report_missed()

    def report_missed(self) -> None:
        """Warn about the messages missed since the last warning."""
        if self.missed.total > self._missed_reported:
            self.get_logger().warning(
                f'{self.missed.total - self._missed_reported} messages published were never '
                f'received (missed so far: {summary(self.missed.counts, {})}): the recorder '
                f'did not keep up (its queue keeps the last {RECORD_DEPTH} of a topic), or a '
                'best-effort topic lost them'
            )
            self._missed_reported = self.missed.total


def record(recorder: BagRecorder, topics: list[str], ros_args: list[str],
           duration_s: float | None = None) -> None:
    """Record until SIGINT/SIGTERM (or ``duration_s``), take what already arrived, then close
    the bag."""
    stop: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: stop.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with init_ros(ros_args, ros_signals=False) as setup:
            node = TopicRecorder(recorder, topics)
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            try:
                node.get_logger().info(f'{recorder.path}: {setup.describe()}')
                end = None if duration_s is None else time.monotonic() + duration_s
                while not stop and (end is None or time.monotonic() < end):
                    executor.spin_once(timeout_sec=0.1)
                # Messages that arrived before the stop are part of the recording.
                drain_end = time.monotonic() + DRAIN_MAX_S
                while (time.monotonic() < drain_end
                       and time.monotonic() - node.last_write < DRAIN_QUIET_S):
                    executor.spin_once(timeout_sec=DRAIN_QUIET_S / 2)
                if node.waiting_for:
                    node.get_logger().warning(
                        f'no publisher ever appeared on {", ".join(sorted(node.waiting_for))}'
                    )
                log = node.get_logger().warning if node.missed.total else node.get_logger().info
                files = f' in {recorder.file_count} files' if recorder.file_count > 1 else ''
                log(f'{recorder.path}: recorded {summary(recorder.counts, node.missed.counts)}'
                    f'{files}')
            finally:
                executor.shutdown()
                node.destroy_node()
    except RosInitError:
        # ROS never started (its arguments refused): left, the empty bag made a corrected
        # rerun fail with 'exists already'.
        recorder.discard()
        raise
    finally:
        # Closed while a second Ctrl-C is still only a stop request: one that interrupted the
        # summary and metadata.yaml would leave a bag no reader opens.
        recorder.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('out', help='bag directory to create (must not exist)')
    # Repeatable ('extend'): a second --topics adds to the first, not replaces it.
    parser.add_argument('--topics', nargs='+', action='extend', required=True, metavar='TOPIC',
                        help='topics to record')
    parser.add_argument('--storage', choices=sorted(STORAGES), default='mcap',
                        help='rosbag2 storage: mcap (default; OUT/OUT.mcap) or sqlite3 '
                        '(OUT/OUT.db3)')
    parser.add_argument('--duration', type=positive_float, default=None, metavar='SECONDS',
                        help='stop after this long (default: until Ctrl-C or SIGTERM)')
    parser.add_argument('--max-bag-size', type=positive_int, default=None, metavar='BYTES',
                        help='split the bag: start the next file (OUT_1.mcap or .db3, ...) '
                        'before a message once the current one has this many bytes, as ros2 bag '
                        'record -b (at least 1024 for mcap, 86016 for sqlite3)')
    parser.add_argument('--max-bag-duration', type=positive_float, default=None,
                        metavar='SECONDS',
                        help='split the bag: start the next file before a message that comes '
                        'more than this long after the current file\'s first, as ros2 bag '
                        'record -d')


def run(args: argparse.Namespace) -> int:
    try:
        # Before the bag exists: a bad name must not leave an empty recording behind.
        for topic in args.topics:
            if problem := topic_name_problem(topic, NODE_NAME):
                raise BagError(f'--topics {topic}: {problem}')
        split = SplitLimits(
            max_bytes=getattr(args, 'max_bag_size', None),
            max_duration_ns=(None if getattr(args, 'max_bag_duration', None) is None
                             else round(args.max_bag_duration * 1e9)),
        )
        with BagRecorder(args.out, storage=args.storage, split=split) as recorder:
            record(recorder, args.topics, args.ros_args, args.duration)
    except BagError as exc:
        print(f'mmp_ros record: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    from mmp_ros.cli import main

    sys.exit(main(['record', *sys.argv[1:]]))
