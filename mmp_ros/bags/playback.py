"""What to replay and when: topic selection with reasons for every skip, remaps, the
timing of each message on a monotonic clock, and the bag time that ``/clock`` carries.

The player publishes raw CDR bytes, so it never needs a message's definition; it needs the
Python class of the type only to create the publisher. Whether that class imports is asked
through a callable (``mmp_ros.ros.replay`` passes one), which keeps this module free of ROS.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.source import BagTopic, TopicQos

# ROS 2 interface type names: package/msg/Name (service and action introspection topics carry
# package/srv/Name_Event and the like, which are messages too).
_TYPE_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*/(msg|srv|action)/[A-Za-z][A-Za-z0-9_]*')

# Sensor-data QoS (rclpy.qos.qos_profile_sensor_data): what camera drivers offer and what
# the segmentation node subscribes with.
SENSOR_DATA_QOS = TopicQos(reliable=False, transient_local=False, depth=5)
DEFAULT_QOS = TopicQos(reliable=True, transient_local=False, depth=10)
# Bag time per /clock tick above which a sim-time node misjudges fresh frames: half the
# segmentation node's default future_tolerance_s and timeout_s (0.5 s), leaving the other half
# for frame intervals and delivery.
COARSE_TICK_S = 0.25


def parse_remaps(remaps: Iterable[str]) -> dict[str, str]:
    """``['/from:=/to', ...]`` -> ``{'/from': '/to'}``; malformed entries are refused."""
    result: dict[str, str] = {}
    for remap in remaps:
        source, sep, target = remap.partition(':=')
        if not sep or not source or not target or ':=' in target:
            raise BagError(f'remap {remap!r}: expected /from:=/to')
        if source in result:
            raise BagError(f'remap {remap!r}: {source} is remapped twice')
        result[source] = target
    return result


@dataclass(frozen=True)
class PlayedTopic:
    """A topic that will be published: from the bag's name to the live one."""

    bag_topic: str
    topic: str
    msgtype: str
    qos: TopicQos


@dataclass(frozen=True)
class PlaybackPlan:
    played: list[PlayedTopic]
    skipped: dict[str, str]  # bag topic -> why it is not published

    def describe(self, published: Mapping[str, str] | None = None) -> list[str]:
        """One line per topic, for the log: a user must see what is skipped and why.
        ``published``: bag topic -> the name its publisher has (a relative ``--remap`` target
        in the player's namespace, ROS remapping rules applied), where it is known."""
        published = published or {}
        lines = []
        for p in self.played:
            topic = published.get(p.bag_topic, p.topic)
            lines.append(
                f'play {p.bag_topic}{" -> " + topic if topic != p.bag_topic else ""} '
                f'[{p.msgtype}, {"reliable" if p.qos.reliable else "best effort"}]'
            )
        return lines + [f'skip {topic}: {reason}' for topic, reason in self.skipped.items()]


def _skip_reason(topic: BagTopic, importable: Callable[[str], str | None]) -> str | None:
    if topic.msgtypes:
        return f'it holds several message types {list(topic.msgtypes)}'
    if topic.serialization_format != 'cdr':
        return f'serialization format {topic.serialization_format!r} is not CDR'
    if not _TYPE_NAME.fullmatch(topic.msgtype):
        return f'unknown message type {topic.msgtype!r} (not a ROS 2 package/msg/Name)'
    problem = importable(topic.msgtype)
    if problem:
        return f'message type {topic.msgtype} is not importable here ({problem})'
    return None


def plan_playback(
    bag_name: str,
    topics: dict[str, BagTopic],
    *,
    importable: Callable[[str], str | None],
    selected: Sequence[str] = (),
    remaps: dict[str, str] | None = None,
    image_qos: TopicQos = SENSOR_DATA_QOS,
    require_images: bool = True,
    clock_topic: str | None = None,
) -> PlaybackPlan:
    """Decide which bag topics are published, under which names and QoS.

    ``importable(msgtype)`` returns None when the type's Python class imports, else why not.
    Camera topics (``sensor_msgs/Image``, and ``CompressedImage`` as image_transport's
    ``compressed`` and ``compressedDepth`` transports publish it) get ``image_qos`` (sensor
    data by default: what the node subscribes with); other topics the QoS they were recorded
    with, else reliable. ``clock_topic``: where the player publishes the bag time itself
    (``replay --clock``); a bag topic that would be published there (a simulation's
    recorded ``/clock``) is skipped, or else its clock and the player's would alternate.
    Errors: a selected or remapped topic that the bag lacks, a remapped topic that
    ``selected`` leaves out, a selected topic that must be skipped, nothing to publish, and
    (unless ``require_images`` is off) no camera topic to publish.
    """
    remaps = remaps or {}
    selected = list(dict.fromkeys(selected))  # --topics /a /a: /a once, in the order given
    for name in [*selected, *remaps]:
        if name not in topics:
            raise BagError(f'{bag_name}: no topic {name} in the bag (it has {sorted(topics)})')
    # A remap of a topic that --topics leaves out would rename nothing, silently.
    for name, target in remaps.items():
        if selected and name not in selected:
            raise BagError(f'{bag_name}: --remap {name}:={target}: {name} is not played '
                           f'(--topics {" ".join(selected)}); add it to --topics')
    candidates = [topics[name] for name in selected] if selected else list(topics.values())
    played: list[PlayedTopic] = []
    skipped: dict[str, str] = {}
    for topic in candidates:
        reason = _skip_reason(topic, importable)
        if not reason and remaps.get(topic.name, topic.name) == clock_topic:
            reason = (f'--clock publishes {clock_topic} itself (the bag time), and the recorded '
                      f'clock would alternate with it; replay without --clock to publish the '
                      f'recorded one')
        if reason:
            if selected:
                raise BagError(f'{bag_name}: topic {topic.name} cannot be replayed: {reason}')
            skipped[topic.name] = reason
            continue
        qos = image_qos if topic.is_camera else (topic.offered_qos or DEFAULT_QOS)
        played.append(PlayedTopic(topic.name, remaps.get(topic.name, topic.name),
                                  topic.msgtype, qos))
    targets: dict[str, PlayedTopic] = {}
    for p in played:
        other = targets.setdefault(p.topic, p)
        if other.msgtype != p.msgtype:
            raise BagError(f'{bag_name}: {other.bag_topic} ({other.msgtype}) and {p.bag_topic} '
                           f'({p.msgtype}) would both be published on {p.topic}')
    if not played:
        reasons = '; '.join(f'{t}: {r}' for t, r in skipped.items()) or 'the bag has no topics'
        raise BagError(f'{bag_name}: nothing to replay ({reasons})')
    if require_images and not any(topics[p.bag_topic].is_camera for p in played):
        listed = ', '.join(f'{t.name} [{t.type_text}]' for t in topics.values())
        cameras = [t.name for t in topics.values() if t.is_camera]
        what = ('--topics selects no sensor_msgs/msg/Image or CompressedImage topic (the bag '
                f'has: {listed})' if selected and cameras else
                f'no sensor_msgs/msg/Image or CompressedImage topic to replay (topics: {listed})')
        raise BagError(f'{bag_name}: {what}; --allow-no-images plays it all the same')
    return PlaybackPlan(played, skipped)


# --rate's range. Past it a rate was as good as none: at 1e-320 every message after the first
# was due at an infinite time, the player waited forever; at 1e308 every message was due at
# once (as at inf, refused), and --clock ended in an OverflowError traceback.
MIN_RATE, MAX_RATE = 1e-3, 1e3


@dataclass(frozen=True)
class PlaybackSchedule:
    """When each message is due, in seconds after playback started.

    Due times are absolute offsets from one start instant (``bag time - origin) / rate``), so
    a late message delays nothing after it: sleeping "the gap since the previous message"
    instead would add every wake-up delay to all later messages and drift.
    """

    origin_ns: int  # bag time that plays at offset 0
    loop_period_ns: int  # bag time between the same message in two successive loops
    rate: float

    def due_s(self, timestamp_ns: int, loop: int = 0) -> float:
        return (timestamp_ns - self.origin_ns + loop * self.loop_period_ns) / 1e9 / self.rate


def make_schedule(
    bag_name: str,
    start_ns: int,
    end_ns: int,
    message_count: int,
    *,
    rate: float = 1.0,
    start_offset_s: float = 0.0,
) -> PlaybackSchedule:
    """Schedule for a bag spanning ``start_ns..end_ns``, played from ``start_offset_s`` on.

    A loop lasts the played span plus one mean message interval, so the first message of the
    next loop follows the last one as it would follow its predecessor (a bag of one message,
    or of messages all at one time, repeats every second).
    """
    if not 0 < rate < math.inf:  # inf: every message at once, and no bag time for /clock
        raise BagError(f'rate must be positive and finite, got {rate}')
    if not MIN_RATE <= rate <= MAX_RATE:
        raise BagError(f'rate must be from {MIN_RATE:g} to {MAX_RATE:g} (times the recorded '
                       f'speed), got {rate}')
    if not start_offset_s >= 0:
        raise BagError(f'start offset must not be negative, got {start_offset_s}')
    duration_ns = end_ns - start_ns
    if start_offset_s * 1e9 > duration_ns:  # before rounding: inf has no nanosecond count
        raise BagError(f'{bag_name}: start offset {start_offset_s:g} s is past the end of the '
                       f'bag ({duration_ns / 1e9:.3f} s long)')
    origin_ns = start_ns + round(start_offset_s * 1e9)
    mean_gap_ns = duration_ns // (message_count - 1) if message_count > 1 else 0
    # No interval to repeat them after: a pass of no length looped at once, without end.
    mean_gap_ns = mean_gap_ns or 1_000_000_000
    return PlaybackSchedule(origin_ns, end_ns - origin_ns + mean_gap_ns, rate)


@dataclass(frozen=True)
class BagClock:
    """The bag time of the playback position, published on ``/clock`` by ``replay --clock``.

    The inverse of :meth:`PlaybackSchedule.due_s`: ``elapsed_s`` after the start instant the
    position is ``origin + elapsed_s * rate``, and with ``loop`` it goes back to the origin
    every loop period, as the messages do. So a message is published when the clock reads
    its bag timestamp. Ticks are due at ``index / hz`` after the start instant: absolute, like
    the messages, so late wake-ups do not accumulate.
    """

    schedule: PlaybackSchedule
    hz: float
    loop: bool = False

    def bag_time_ns(self, elapsed_s: float) -> int:
        position_ns = max(0, round(elapsed_s * self.schedule.rate * 1e9))
        if self.loop:
            position_ns %= self.schedule.loop_period_ns
        return self.schedule.origin_ns + position_ns

    def pass_index(self, elapsed_s: float) -> int:
        """Which pass over the bag the clock reads at ``elapsed_s`` (0 without ``loop``)."""
        if not self.loop:
            return 0
        position_ns = max(0, round(elapsed_s * self.schedule.rate * 1e9))
        return position_ns // self.schedule.loop_period_ns

    def lag_warning(self) -> str:
        """Why a node on this clock would misjudge fresh frames ('' when it would not).

        Between ticks the clock stands still, so a node's now trails the stamps of the
        messages published meanwhile by up to one tick's worth of bag time (``rate / hz``),
        and the age of its last message grows by that much at each tick.
        """
        step_s = self.schedule.rate / self.hz
        if step_s <= COARSE_TICK_S:
            return ''
        return (f'--clock {self.hz:g} at --rate {self.schedule.rate:g}: /clock advances '
                f'{step_s:.3g} s of bag time per tick, so a node on use_sim_time sees stamps '
                f'up to that far in its future and the age of its last frame jump by as much '
                f'(the segmentation node rejects stamps over future_tolerance_s ahead and calls '
                f'a sensor stale after timeout_s, 0.5 s each by default); --clock '
                f'{math.ceil(40 * self.schedule.rate)} ticks every 25 ms of bag time')

    def tick_s(self, index: int) -> float:
        """When tick ``index`` is due, in seconds after the start instant."""
        return index / self.hz

    def next_tick(self, published: int, elapsed_s: float) -> int:
        """The tick to publish after tick ``published`` went out at ``elapsed_s``: the next
        one, or after a stall the first one still ahead (missed ticks are dropped, not sent
        in a burst of stale times)."""
        return max(published + 1, math.floor(elapsed_s * self.hz) + 1)
