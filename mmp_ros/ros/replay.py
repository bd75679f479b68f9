"""``mmp_ros replay BAG``: play a rosbag2 (MCAP or sqlite3) into live topics, on time.

Messages are published as the bag stores them, serialized CDR bytes (rclpy 9 publishes
``bytes`` as they are), so nothing is deserialized and a 640x480 stream costs a copy, not a
conversion. Each message is due at an absolute offset from one monotonic start instant
(``mmp_ros.bags.playback.PlaybackSchedule``), so wake-up delays never accumulate. Images get
sensor-data QoS by default, like camera drivers, and so do the ``CompressedImage`` topics of a
camera recorded through image_transport (``<base>/compressed``, ``<base>/compressedDepth``),
published as they are on their own names, for a node subscribed with that transport; other
topics the QoS they were recorded with.
Topics that cannot be published (a type that is not a ROS 2 name, or whose Python class does
not import here) are listed with the reason and skipped. ``--restamp`` rewrites header stamps
to the publish time in the CDR bytes themselves (``mmp_ros.bags.cdr``; a message that holds
its headers inside, as ``/tf``, is deserialized for it), for nodes that judge freshness by
stamp; messages that shared a stamp in the bag share the first one's.
``--clock HZ`` publishes the bag time of the playback position on ``/clock`` instead
(``mmp_ros.bags.playback.BagClock``), for nodes run with ``use_sim_time:=true``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import time
from collections.abc import Callable

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from mmp_ros.bags.cdr import Restamper, holds_headers
from mmp_ros.bags.errors import BagError
from mmp_ros.bags.playback import (
    DEFAULT_QOS,
    SENSOR_DATA_QOS,
    BagClock,
    PlaybackPlan,
    PlaybackSchedule,
    make_schedule,
    parse_remaps,
    plan_playback,
)
from mmp_ros.bags.source import Bag, TopicQos, open_bag
from mmp_ros.bags.timing import Lateness
from mmp_ros.cli import non_negative_float, positive_float
from mmp_ros.ros.context import init_ros
from mmp_ros.ros.names import topic_name_problem

NODE_NAME = 'mmp_ros_replay'
IMAGE_QOS = {'sensor_data': SENSOR_DATA_QOS, 'reliable': DEFAULT_QOS}
_WAKE_S = 0.1  # longest sleep, so that Ctrl-C and shutdown are seen promptly
# After the last message, before the publishers go: reliable ones wait for their subscribers'
# acknowledgements up to this long; best-effort ones give them this long to take it (a
# publisher destroyed at once lost the last message now and then: its shared-memory buffer
# went with it).
DRAIN_S = 0.25
CLOCK_TOPIC = '/clock'
CLOCK_HZ = 40.0  # --clock without a value: ros2 bag play's
# What rclpy's TimeSource subscribes /clock with (and rclcpp's ClockQoS offers).
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


def message_class(msgtype: str) -> type:
    """The Python class of ``package/msg/Name`` (ImportError/AttributeError if absent)."""
    package, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


def import_problem(msgtype: str) -> str | None:
    """None if ``msgtype``'s Python class imports, else why not (for the skip message)."""
    package, kind, name = msgtype.split('/')
    try:
        module = importlib.import_module(f'{package}.{kind}')
    except ImportError:
        return f'no Python module {package}.{kind}'
    if not isinstance(getattr(module, name, None), type):
        return f'{package}.{kind} has no {name}'
    return None


def starts_with_header(msgtype: str) -> bool:
    """Whether the type's first field is a std_msgs/Header (its stamp can be rewritten)."""
    fields = iter(message_class(msgtype).get_fields_and_field_types().values())
    return next(fields, None) == 'std_msgs/Header'


def stamp_rewriter(msgtype: str) -> Callable[..., bytes] | None:
    """How ``--restamp`` sets the stamps of ``msgtype``: a :class:`Restamper` method, called
    with the restamper, topic, bag time, message and publish time. ``Restamper.restamp`` (8
    bytes rewritten) for a type that starts with a header; ``Restamper.restamp_inside`` for
    one that holds headers elsewhere (``tf2_msgs/msg/TFMessage``, ``MarkerArray``), found in
    rosbags' type store; None for a type without headers, or one the store does not know."""
    if starts_with_header(msgtype):
        return Restamper.restamp
    if holds_headers(msgtype):
        return functools.partial(Restamper.restamp_inside, msgtype=msgtype)
    return None


def qos_profile(qos: TopicQos) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=ReliabilityPolicy.RELIABLE if qos.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=(
            DurabilityPolicy.TRANSIENT_LOCAL if qos.transient_local else DurabilityPolicy.VOLATILE
        ),
    )


class BagPlayer(Node):
    """Publishes a planned bag; ``play`` runs in the caller's thread (no executor needed)."""

    def __init__(
        self,
        bag: Bag,
        plan: PlaybackPlan,
        schedule: PlaybackSchedule,
        *,
        restamp: bool = False,
        clock: BagClock | None = None,
    ) -> None:
        super().__init__(NODE_NAME)
        self._bag = bag
        self._schedule = schedule
        self._bag_clock = clock  # not _clock: rclpy.node.Node keeps its own clock there
        self._clock_publisher = (
            self.create_publisher(Clock, CLOCK_TOPIC, CLOCK_QOS) if clock else None
        )
        self._next_tick = 0  # index of the next /clock tick of playback (BagClock.tick_s)
        self._clock_pass = 0  # the pass over the bag (--loop) the last /clock reading is in
        self.lateness: Lateness | None = None  # of play, summed up by run() after a stop too
        # Topics whose stamps are set to the publish time (--restamp), with how.
        rewriters = {p.bag_topic: stamp_rewriter(p.msgtype) for p in plan.played if restamp}
        self._restamped = {topic: how for topic, how in rewriters.items() if how}
        self._bag_publishers = {
            p.bag_topic: self.create_publisher(
                message_class(p.msgtype), p.topic, qos_profile(p.qos)
            )
            for p in plan.played
        }

    @property
    def topic_names(self) -> dict[str, str]:
        """Bag topic -> the name it is published on: its ``--remap`` target resolved in the
        player's namespace, with the ROS remapping rules (``--ros-args -r``) applied."""
        return {topic: p.topic_name for topic, p in self._bag_publishers.items()}

    def wait_for_subscribers(self, timeout_s: float) -> list[str]:
        """Wait until every played topic (and ``/clock`` with a clock) has a subscriber, or
        ``timeout_s`` passes; the topics still without one (none: every one has)."""
        deadline = time.monotonic() + timeout_s
        publishers = [*self._bag_publishers.values()]
        if self._clock_publisher is not None:
            publishers.append(self._clock_publisher)
        while unheard := [p.topic_name for p in publishers if p.get_subscription_count() == 0]:
            if time.monotonic() >= deadline:
                return unheard
            _sleep_until(min(deadline, time.monotonic() + 0.02))
        return []

    def hold(self, seconds: float) -> None:
        """Wait before playing; with a clock, ``/clock`` reads the origin meanwhile, so that a
        sim-time node has the bag's time before the first message."""
        held = time.monotonic()
        if self._bag_clock is None:
            _sleep_until(held + seconds)
            return
        tick = 0
        while (due := held + self._bag_clock.tick_s(tick)) < held + seconds:
            _sleep_until(due)
            self._publish_clock(self._schedule.origin_ns)
            tick = self._bag_clock.next_tick(tick, time.monotonic() - held)
        _sleep_until(held + seconds)

    def play(self, *, loop: bool = False) -> Lateness:
        """Publish every message at its due time; with ``loop``, until asked to stop."""
        start: float | None = None  # set on the first message: opening the bag is not late
        lateness = self.lateness = Lateness()
        iteration = 0
        restamper = Restamper()
        while True:
            restamper.new_pass()  # a pass's stamps pair with nothing of the last
            messages = self._bag.messages(self._bag_publishers, self._schedule.origin_ns)
            for topic, timestamp, data in messages:
                if start is None:
                    start = time.monotonic() - self._schedule.due_s(timestamp, iteration)
                due = start + self._schedule.due_s(timestamp, iteration)
                self._wait_until(due, start)
                if self._bag_clock is not None and self._clock_pass < iteration:
                    # A new pass, and no tick has gone back to its start yet (the ticks' grid
                    # rarely meets the boundary): the clock reads its first message's time
                    # before that goes out. Else a sim-time node had it ~one pass before its
                    # clock (a stamp gone backwards), and only then heard the clock jump.
                    self._publish_clock(timestamp)
                    self._clock_pass = iteration
                lateness.add(time.monotonic() - due)
                if topic in self._restamped:
                    try:
                        data = self._restamped[topic](restamper, topic, timestamp, data,
                                                      self.get_clock().now().nanoseconds)
                    except BagError as exc:
                        raise BagError(f'{self._bag.path}: {topic} message at {timestamp} ns: '
                                       f'{exc}; without --restamp it is published as it is'
                                       ) from None
                self._bag_publishers[topic].publish(data)
            iteration += 1
            # A pass that published nothing (no message in the played span) would repeat
            # at once, forever: a busy loop that never sleeps, so never sees a shutdown.
            if not loop or start is None:
                break
        self._drain()
        return lateness

    def _drain(self) -> None:
        """Let the subscribers take the last messages before the publishers go."""
        deadline = time.monotonic() + DRAIN_S
        reliable = [p for p in self._bag_publishers.values()
                    if p.qos_profile.reliability == ReliabilityPolicy.RELIABLE]
        for publisher in reliable:
            left = max(0.0, deadline - time.monotonic())
            publisher.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))
        if len(reliable) < len(self._bag_publishers):
            _sleep_until(deadline)

    def _wait_until(self, due: float, start: float) -> None:
        """Sleep until ``due``; with a clock, publish every tick due until then (a tick due
        with the message goes first: tick 0, due at the start, precedes the first message)."""
        if self._bag_clock is not None:
            while (tick := start + self._bag_clock.tick_s(self._next_tick)) <= due:
                _sleep_until(tick)
                elapsed = time.monotonic() - start
                # A tick woken late reads no further than the message it precedes: the clock
                # never runs ahead of what was played (nor past the bag's end).
                reading = min(elapsed, due - start)
                self._publish_clock(self._bag_clock.bag_time_ns(reading))
                self._clock_pass = self._bag_clock.pass_index(reading)
                self._next_tick = self._bag_clock.next_tick(self._next_tick, elapsed)
        _sleep_until(due)

    def _publish_clock(self, bag_time_ns: int) -> None:
        message = Clock()
        message.clock.sec, message.clock.nanosec = divmod(bag_time_ns, 1_000_000_000)
        self._clock_publisher.publish(message)


def _sleep_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        if not rclpy.ok():
            raise ExternalShutdownException
        time.sleep(min(left, _WAKE_S))


def clock_rate(text: str) -> float:
    """argparse ``type`` of ``--clock``'s optional rate: a positive number, as
    ``positive_float``; a path there is a bag put after ``--clock``, and said so."""
    try:
        float(text)
    except ValueError:
        if os.path.exists(text):
            raise argparse.ArgumentTypeError(
                f'expected a number, got {text!r}, a path: put the bag before --clock, or '
                f'give --clock a rate (e.g. --clock {CLOCK_HZ:g})'
            ) from None
    return positive_float(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag', help='rosbag2 directory, or a .mcap or .db3 file')
    parser.add_argument('--rate', type=float, default=1.0, help='playback speed factor')
    parser.add_argument('--loop', action='store_true', help='start over at the end, until Ctrl-C')
    parser.add_argument(
        '--start-offset', type=float, default=0.0, metavar='SECONDS',
        help='skip this much of the bag from its start',
    )
    parser.add_argument(
        # Repeatable ('extend'): a second --topics adds to the first, not replaces it.
        '--topics', nargs='+', action='extend', default=[], metavar='TOPIC',
        help='bag topics to play (default: every topic that can be published)',
    )
    parser.add_argument(
        '--remap', action='append', default=[], metavar='/FROM:=/TO',
        help='publish bag topic FROM as TO (repeatable)',
    )
    parser.add_argument(
        '--restamp', action='store_true',
        help='set header.stamp to the publish time (also the headers inside a message: each '
        'transform of /tf and /tf_static, each marker of a MarkerArray): a live node then '
        'sees fresh, increasing stamps, also across --loop; messages that shared a stamp in '
        'the bag (an image and its camera_info, a transform at its stamp) share one',
    )
    parser.add_argument(
        '--clock', type=clock_rate, nargs='?', const=CLOCK_HZ, metavar='HZ',
        help='publish the bag time of the playback position on /clock at HZ (rosgraph_msgs/'
        f'Clock; {CLOCK_HZ:g} without a value, as ros2 bag play --clock), for nodes run with '
        'use_sim_time:=true',
    )
    parser.add_argument(
        '--image-qos', choices=sorted(IMAGE_QOS), default='sensor_data',
        help='QoS of sensor_msgs/Image and CompressedImage publishers (sensor_data: best '
        'effort, depth 5)',
    )
    parser.add_argument(
        '--allow-no-images', action='store_true',
        help='play a bag (or a --topics selection) even if it has no sensor_msgs/Image or '
        'CompressedImage topic',
    )
    parser.add_argument(
        '--wait-for-subscribers', type=non_negative_float, default=0.0, metavar='SECONDS',
        help='before playing, wait up to this long until every played topic has matched a '
        'subscriber (the subscriber may need a few more milliseconds to match back: see '
        '--delay)',
    )
    parser.add_argument(
        '--delay', type=non_negative_float, default=0.0, metavar='SECONDS',
        help='wait this long before the first message (after --wait-for-subscribers)',
    )


def run(args: argparse.Namespace) -> int:
    if args.clock and args.restamp:
        # Restamped headers carry the wall time, /clock the bag's: a sim-time node would judge
        # every message as far in the future or the past.
        print('mmp_ros replay: --restamp and --clock do not go together (stamps would be wall '
              'time, /clock bag time); a node on sim time wants the bag stamps: drop --restamp',
              file=sys.stderr)
        return 2
    try:
        remaps = parse_remaps(args.remap)
        for source, target in remaps.items():
            if problem := topic_name_problem(target, NODE_NAME):
                raise BagError(f'remap {source}:={target}: {problem}')
        with open_bag(args.bag) as bag:
            plan = plan_playback(
                str(bag.path), bag.topics, importable=import_problem, selected=args.topics,
                remaps=remaps, image_qos=IMAGE_QOS[args.image_qos],
                require_images=not args.allow_no_images,
                clock_topic=CLOCK_TOPIC if args.clock else None,
            )
            schedule = make_schedule(
                str(bag.path), bag.start_ns, bag.end_ns, bag.message_count, rate=args.rate,
                start_offset_s=args.start_offset,
            )
            clock = BagClock(schedule, args.clock, loop=args.loop) if args.clock else None
            with init_ros(args.ros_args) as setup:
                node = BagPlayer(bag, plan, schedule, restamp=args.restamp, clock=clock)
                try:
                    if args.restamp and node.get_parameter('use_sim_time').value:
                        # The player never spins, so its clock never takes /clock: it reads 0.
                        print('mmp_ros replay: --restamp stamps with the wall clock, and '
                              'use_sim_time:=true (--ros-args) would make every stamp 0 (the '
                              'player does not follow /clock); a node on sim time wants the '
                              'bag stamps: drop --restamp, or use_sim_time for the player',
                              file=sys.stderr)
                        return 2
                    log = node.get_logger()
                    log.info(f'{bag.path}: {setup.describe()}')
                    for line in plan.describe(node.topic_names):
                        # One call site per severity: rclpy refuses a second severity from
                        # the same line ('Logger severity cannot be changed between calls').
                        if line.startswith('skip'):
                            log.warning(line)
                        else:
                            log.info(line)
                    if clock is not None and (warning := clock.lag_warning()):
                        log.warning(warning)
                    if args.wait_for_subscribers > 0 and (
                        unheard := node.wait_for_subscribers(args.wait_for_subscribers)
                    ):
                        log.warning(f'no subscriber on {", ".join(unheard)} after '
                                    f'{args.wait_for_subscribers:g} s; playing anyway')
                    node.hold(args.delay)
                    node.play(loop=args.loop)
                finally:
                    node.destroy_node()
                    # What was published, also when a --loop ends with Ctrl-C; logged once the
                    # node is gone: a live node's logger also publishes on /rosout, which fails
                    # with rcl's error line once a signal has shut the context down.
                    if node.lateness is not None:
                        log.info(node.lateness.describe())
    except BagError as exc:
        print(f'mmp_ros replay: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    from mmp_ros.cli import main

    sys.exit(main(['replay', *sys.argv[1:]]))
