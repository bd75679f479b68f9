"""``mmp_ros dropout --schedule FILE``: make sensors fail on a schedule, between source and node.

For every sensor the node subscribes to ``source/<sensor>/image`` and republishes on
``<sensor>/image`` (both remappable; sensor-data QoS on both sides, as a camera driver
publishes); with ``sensors.<sensor>.transport`` ``compressed`` or ``compressedDepth``, as the
segmentation node names it, image_transport's ``sensor_msgs/CompressedImage`` topics
``<base>/<transport>`` of both instead. While no fault of a sensor is open, its messages are
republished as the serialized bytes that came in, never deserialized; a fault decodes only what
it rewrites (a compressed message's pixels are decompressed, changed and compressed again as
they came). The logic lives in :class:`mmp_ros.dropout.DropoutEngine`; this module converts
and keeps time.

The node publishes its own fault timeline on ``dropout/events`` (``std_msgs/String`` JSON,
reliable + transient local, deep enough for the whole schedule, so a late evaluator still gets
every event): first the schedule itself, then one message per window start and end with the
sensor, the kind, the scheduled and the applied time since start, and ROS and wall time.
Format and examples: ``docs/dropout.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from builtin_interfaces.msg import Time
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from mmp_ros.cli import non_negative_int, split_ros_arguments
from mmp_ros.core.parameters import (
    ParameterError,
    ParameterSpec,
    sensor_parameter,
    transports,
    unknown_parameters,
)
from mmp_ros.dropout import DropoutEngine, FaultEvent, Received, Schedule, ScheduleError
from mmp_ros.dropout.engine import (
    Outgoing,
    Restamped,
    ScheduleClock,
    StampedImage,
    Truncated,
)
from mmp_ros.dropout.faults import truncated_bytes
from mmp_ros.errors import InputError
from mmp_ros.modalities import MODALITIES
from mmp_ros.ros.context import parameter_refusal, spin_node
from mmp_ros.ros.image_msg import (
    compressed_image_fields,
    to_image_fields,
    to_image_msg,
    transport_topic,
)
from mmp_ros.ros.names import topic_name_problem
from mmp_ros.sensors.compressed import compress_image, recompression
from mmp_ros.sensors.frame import SensorInputError

INPUT_TOPIC = 'source/{sensor}/image'
OUTPUT_TOPIC = '{sensor}/image'
EVENTS_TOPIC = 'dropout/events'
NODE_NAME = 'dropout'
# Window boundaries and delayed releases are checked this often: a boundary is applied at most
# one period late (the events say when exactly), a delayed message released at most that late.
TICK_PERIOD_S = 0.01
# A sensor's repeated warnings (unreadable input, rewritten images its transport cannot
# carry) are logged at most this often, per sensor and kind of warning.
WARN_PERIOD_S = 5.0
NS = 1_000_000_000
SEED_MAX = 2**31 - 1  # the seed parameter's range; --seed is checked against it before ROS


class ParameterValueError(InputError, ValueError):
    """A value given for one of the node's parameters that it cannot take."""


class TransportError(InputError, ValueError):
    """A ``sensors.<sensor>.transport`` (``--transport``) the node cannot take."""


class DropoutNode(Node):
    """Republishes each sensor's images, failing them as the schedule says."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        schedule_file = self._declared(
            'schedule_file', '', 'a file name',
            ParameterDescriptor(description='YAML dropout schedule (docs/dropout.md)',
                                read_only=True),
        )
        seed = self._declared(
            'seed', -1, f"a whole number from -1 (the schedule's) to {SEED_MAX}",
            ParameterDescriptor(
                description="seed of the random faults; -1 keeps the schedule's own",
                integer_range=[IntegerRange(from_value=-1, to_value=SEED_MAX, step=1)],
                read_only=True,
            ),
        )
        sensors = self._declared(
            'sensors', list(MODALITIES), 'a list of one or more sensor names',
            ParameterDescriptor(description='sensors to forward; a schedule may name only these',
                                read_only=True),
        )
        given = []  # --transport of another sensor
        for override in kwargs.get('parameter_overrides') or ():
            sensor = override.name.removeprefix('sensors.').removesuffix('.transport')
            if override.name == sensor_parameter(sensor, 'transport'):
                given.append((sensor, override.value))
        # before the warning below, which named its parameter as one misspelt
        check_transports_forwarded(given, sensors)
        self._warn_unknown_parameters(
            [*self._parameters, *(sensor_parameter(s, 'transport') for s in sensors)])
        if not schedule_file:
            raise ScheduleError('parameter schedule_file is empty: give a dropout schedule')
        check_sensor_names(sensors)
        schedule = Schedule.from_yaml(Path(schedule_file), sensors=tuple(sensors))
        self._transports = {
            sensor: self._declare_transport(sensor) for sensor in schedule.sensors
        }
        if seed >= 0:
            schedule = Schedule(schedule.faults, seed, schedule.sensors, schedule.source)
        self.schedule = schedule
        self.engine = DropoutEngine(schedule)
        self._fault_index = {id(f): i for i, f in enumerate(schedule.faults)}
        self._schedule_clock = ScheduleClock()
        self._finished = not schedule.faults
        self._unreadable_reported = dict.fromkeys(schedule.sensors, 0)
        self._warned_at: dict[tuple[str, str], float] = {}  # (sensor, kind): monotonic time

        self._events = self.create_publisher(
            String, EVENTS_TOPIC,
            QoSProfile(
                depth=2 * len(schedule.faults) + 1,  # the schedule and every start and end
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL,
            ),
        )
        self._outputs = {}
        self._types: dict[str, type] = {}
        for sensor in schedule.sensors:
            transport = self._transports[sensor]
            output, self._types[sensor] = transport_topic(
                self, OUTPUT_TOPIC.format(sensor=sensor), transport)
            source, _ = transport_topic(self, INPUT_TOPIC.format(sensor=sensor), transport)
            self._outputs[sensor] = self.create_publisher(
                self._types[sensor], output, qos_profile_sensor_data
            )
            self.create_subscription(
                self._types[sensor], source, partial(self._on_message, sensor),
                qos_profile_sensor_data, raw=True,
            )
            if transport != 'raw':
                self.get_logger().info(f'{sensor}: {transport} transport, {source} -> {output}')
        # On the steady clock: the node's, on wall time, is the system clock, and a step of it
        # back (NTP) stalled the timer for as long: windows closed late, delayed messages held.
        self._tick_timer = self.create_timer(TICK_PERIOD_S, self._on_tick,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(schedule.describe())
        self._now()  # start the schedule now, unless simulated time has not begun

    def _declared(self, name: str, default, expected: str, descriptor: ParameterDescriptor):
        """The value of a parameter declared now; a value given for it (-p, --params-file) of
        another type or out of range stops the node with one line saying what it must be,
        where rclpy's exception ended the command in a traceback (so did an empty list)."""
        given = self._parameter_overrides.get(name)
        try:
            value = self.declare_parameter(name, default, descriptor).value
        except ParameterException:
            value = None
        if value is None or value == []:
            if given is None or given.value in (None, []):  # -p sensors:=[] is not even typed
                got = 'an empty list'
            else:
                got = f'{given.type_.name.lower().replace("_", " ")} {given.value!r}'
            raise ParameterValueError(f'{name} must be {expected}, got {got}')
        return value

    def _warn_unknown_parameters(self, known: list[str]) -> None:
        """Name the values given (-p, --params-file) for parameters the node does not have, as
        the segmentation node does: rclpy drops them without a word, so a misspelt
        ``schedul_file`` or ``sede`` left the default in force unnoticed."""
        unknown = unknown_parameters(
            self._parameter_overrides, known,
            qos_hint='its topics are sensor-data QoS, as a camera driver publishes')
        if unknown:
            self.get_logger().warning(
                f'ignoring values for parameters this node does not have: {", ".join(unknown)}'
            )

    def _declare_transport(self, sensor: str) -> str:
        """The ``sensors.<sensor>.transport`` parameter: the segmentation node's, of the same
        name and choices (compressedDepth for depth only, as it carries depth only; any
        transport for a sensor the segmentation node does not know)."""
        spec = ParameterSpec(
            sensor_parameter(sensor, 'transport'), 'raw',
            f'how {sensor} images arrive and leave (image_transport): raw '
            f'(sensor_msgs/Image on source/{sensor}/image and {sensor}/image), compressed or '
            'compressedDepth (sensor_msgs/CompressedImage on <base>/<transport>)',
            choices=transports(sensor if sensor in MODALITIES else 'depth'), read_only=True,
        )
        try:
            transport = self.declare_parameter(
                spec.name, spec.default,
                ParameterDescriptor(description=spec.description, read_only=True),
            ).value
            spec.check(transport)
        except ParameterError as error:
            raise TransportError(str(error)) from None
        except ParameterException as error:  # a value of another type (-p ...:=3)
            raise TransportError(parameter_refusal(error)) from None
        return transport

    def _now(self) -> tuple[float, int, float] | None:
        """(seconds since the schedule's start, ROS time ns, wall time s); None before it.

        Read once per callback, so an event carries the time at which its boundary was
        applied. The start is the node's start; under ``use_sim_time`` the first non-zero
        time from ``/clock``, so a schedule runs against a replayed bag's time (and goes on
        counting when a looping replay's clock jumps back: :class:`ScheduleClock`). On wall
        time the schedule runs on the monotonic clock: a step of the system clock (NTP) 30 s
        forward ended a 10 s window at once.
        """
        clock = self.get_clock()
        now_ns, wall = clock.now().nanoseconds, time.time()
        started = self._schedule_clock.start_ns is not None
        elapsed = self._schedule_clock.elapsed(
            now_ns if clock.ros_time_is_active else time.monotonic_ns())
        if elapsed is None:
            return None
        if not started:
            self._publish_event({
                'event': 'schedule',
                'source': self.schedule.source,
                'seed': self.schedule.seed,
                'sensors': list(self.schedule.sensors),
                'faults': [f.as_dict() for f in self.schedule.faults],
                'ros_time': now_ns / NS,
                'wall_time': wall,
            })
        return elapsed, now_ns, wall

    def _on_message(self, sensor: str, raw: bytes) -> None:
        clock = self._now()
        if clock is None:
            self._outputs[sensor].publish(raw)
            return
        if self._types[sensor] is Image:
            received = Received(raw, partial(_decode, raw))
        else:
            received = Received(raw, partial(_decode_compressed, raw),
                                partial(_read_header, raw, CompressedImage))
        for outgoing in self.engine.on_message(sensor, received, clock[0]):
            self._publish(sensor, outgoing)
        self._report(*clock)

    def _on_tick(self) -> None:
        clock = self._now()
        if clock is None:
            return
        for sensor, released in self.engine.on_tick(clock[0]).items():
            for outgoing in released:
                self._publish(sensor, outgoing)
        self._report(*clock)

    def _publish(self, sensor: str, outgoing: Outgoing) -> None:
        if isinstance(outgoing, Received):
            self._outputs[sensor].publish(outgoing.raw)
            return
        try:
            msg = to_message(outgoing, self._types[sensor])
        except SensorInputError as error:  # a rewritten image its transport cannot carry
            self._warn(sensor, 'not published',
                       f'{sensor}: a rewritten image was not published: {error}')
            return
        self._outputs[sensor].publish(msg)

    def _warn(self, sensor: str, kind: str, message: str) -> bool:
        """Log ``message`` unless this sensor's warning of this kind was logged less than
        WARN_PERIOD_S ago; whether it was logged. rclpy's ``throttle_duration_sec`` is per line
        of code: one sensor's warnings kept another's from being logged at all."""
        now = time.monotonic()
        if now < self._warned_at.get((sensor, kind), -math.inf) + WARN_PERIOD_S:
            return False
        self._warned_at[sensor, kind] = now
        self.get_logger().warning(message)
        return True

    def _report(self, elapsed: float, now_ns: int, wall: float) -> None:
        """Publish and log the windows that opened or closed; warn about unreadable input."""
        for event in self.engine.take_events():
            self._publish_fault_event(event, now_ns, wall)
        for sensor, reported in self._unreadable_reported.items():
            stats = self.engine.stats(sensor)
            if stats.unreadable > reported and self._warn(
                sensor, 'unreadable',
                f'{sensor}: {stats.unreadable} unreadable message(s) passed on unchanged so '
                f'far; last: {stats.last_error}',
            ):
                self._unreadable_reported[sensor] = stats.unreadable
        if not self._finished and self.engine.finished(elapsed):
            self._finished = True
            counts = '; '.join(
                f'{s} {st.received} in, {st.passed} passed, {st.rewritten} rewritten, '
                f'{st.withheld} withheld'
                for s, st in ((s, self.engine.stats(s)) for s in self.schedule.sensors)
            )
            self.get_logger().info(f'schedule complete, every sensor passes through ({counts})')

    def _publish_fault_event(self, event: FaultEvent, now_ns: int, wall: float) -> None:
        fault = event.fault
        self.get_logger().info(
            f'{event.event} {fault.describe()} at {event.elapsed_s:.3f} s'
        )
        self._publish_event({
            'event': event.event,
            'index': self._fault_index[id(fault)],
            **fault.as_dict(),
            'scheduled_s': event.scheduled_s,
            'elapsed_s': event.elapsed_s,
            'ros_time': now_ns / NS,
            'wall_time': wall,
        })

    def _publish_event(self, payload: dict) -> None:
        self._events.publish(String(data=json.dumps(payload)))


def check_sensor_names(sensors: Sequence[str]) -> None:
    """Refuse a sensor name that does not make valid topic names, before any topic is made."""
    for sensor in sensors:
        for topic in (INPUT_TOPIC.format(sensor=sensor), OUTPUT_TOPIC.format(sensor=sensor)):
            if topic_name_problem(topic, NODE_NAME):
                raise ScheduleError(
                    f'sensor {sensor!r} makes the invalid topic name {topic!r}; a sensor name '
                    "is letters, digits and '_', not starting with a digit"
                )


def check_transports_forwarded(transports: Sequence[tuple[str, str]],
                               sensors: Sequence[str]) -> None:
    """Refuse a ``--transport`` for a sensor the node does not forward (its parameter would be
    declared by no one, and the transport ignored)."""
    for sensor, transport in transports:
        if sensor not in sensors:
            raise TransportError(
                f'--transport {sensor}={transport}: {sensor!r} is not among the sensors '
                f'forwarded, {list(sensors)}'
            )


def _decode(raw: bytes) -> StampedImage:
    msg = deserialize_message(raw, Image)
    stamp_ns = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
    return StampedImage(stamp_ns, msg.header.frame_id, to_image_fields(msg))


def _decode_compressed(raw: bytes) -> StampedImage:
    """The raw image a ``CompressedImage`` carries, and how to compress it again; raises
    SensorInputError for a payload that does not decode."""
    msg = deserialize_message(raw, CompressedImage)
    stamp_ns = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
    return StampedImage(stamp_ns, msg.header.frame_id, compressed_image_fields(msg),
                        recompression(msg.format, msg.data))


def _read_header(raw: bytes, message_type: type) -> tuple[int, str]:
    msg = deserialize_message(raw, message_type)
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec, msg.header.frame_id


def _stamp(stamp_ns: int) -> Time:
    return Time(sec=stamp_ns // NS, nanosec=stamp_ns % NS)


def _encode(image: StampedImage) -> Image | CompressedImage:
    """The message of a rewritten image: raw, or compressed as it came (SensorInputError
    where that compression cannot hold the new pixels, e.g. JPEG of 32FC1)."""
    if image.compression is None:
        return to_image_msg(image.fields, stamp=_stamp(image.stamp_ns), frame_id=image.frame_id)
    format, data = compress_image(image.fields, **image.compression)
    msg = CompressedImage(format=format, data=data)
    msg.header.stamp = _stamp(image.stamp_ns)
    msg.header.frame_id = image.frame_id
    return msg


def to_message(outgoing: StampedImage | Restamped | Truncated, message_type: type):
    """The message to publish for what the engine returned, of the sensor's ``message_type``
    (``Image`` or ``CompressedImage``). A frozen frame and a cut one are the message that
    came, deserialized, with a new header or a shorter ``data``: no pixel is decoded."""
    if isinstance(outgoing, StampedImage):
        return _encode(outgoing)
    msg = deserialize_message(outgoing.message.raw, message_type)
    if isinstance(outgoing, Restamped):
        msg.header.stamp = _stamp(outgoing.stamp_ns)
        msg.header.frame_id = outgoing.frame_id
    else:
        msg.data = truncated_bytes(msg.data, outgoing.keep_fraction)
    return msg


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options; an option left out leaves its ROS parameter as it was set (the
    schedule too: --ros-args -p schedule_file:=FILE or a --params-file may give it, and the
    node refuses to start where nothing does)."""
    parser.add_argument(
        '--schedule', type=Path,
        help='YAML dropout schedule (docs/dropout.md); default: the schedule_file parameter',
    )
    parser.add_argument(
        '--seed', type=_seed, default=None,
        help="seed of the random faults (default: schedule's)"
    )
    # Both repeatable ('extend'): a second --transport or --sensors adds to the first, where
    # argparse's default kept the last alone, without a word.
    parser.add_argument(
        '--sensors', nargs='+', action='extend', default=None, metavar='SENSOR',
        help=f'sensors to forward (default: the sensors parameter, {list(MODALITIES)})',
    )
    parser.add_argument(
        '--transport', nargs='+', action=_Transports, type=_transport, default=None,
        metavar='SENSOR=TRANSPORT',
        help='read and publish SENSOR through an image_transport transport, as the '
        "segmentation node's sensors.<m>.transport: raw, compressed (sensor_msgs/"
        'CompressedImage: JPEG, PNG or TIFF, each sent on in the format it came in; '
        'source/<m>/image/compressed -> <m>/image/compressed) or compressedDepth (depth only, '
        'PNG or RVL; .../compressedDepth); e.g. rgb=compressed '
        'depth=compressedDepth (repeatable). Default: the sensors.<m>.transport parameters, raw',
    )
    parser.add_argument(
        '--check', action='store_true', help='validate the schedule, print it, and exit'
    )
    parser.add_argument(
        '--no-dds-profile', action='store_true',
        help="run on Fast DDS's built-in transports instead of the package's profile",
    )


class _Transports(argparse.Action):
    """``--transport``'s pairs, added to those of an earlier ``--transport``; a sensor given
    two transports is refused."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = dict(getattr(namespace, self.dest) or ())
        for sensor, transport in values:
            if given.get(sensor, transport) != transport:
                raise argparse.ArgumentError(
                    self, f'{sensor} given two transports, {given[sensor]} and {transport}')
            given[sensor] = transport
        setattr(namespace, self.dest, list(given.items()))


def _transport(text: str) -> tuple[str, str]:
    """argparse ``type`` of ``--transport``: ``SENSOR=TRANSPORT``."""
    sensor, sep, transport = text.partition('=')
    if not sep or not sensor:
        raise argparse.ArgumentTypeError(f'expected SENSOR=TRANSPORT, got {text!r}')
    choices = transports(sensor if sensor in MODALITIES else 'depth')
    if transport not in choices:
        raise argparse.ArgumentTypeError(
            f'{sensor}: transport {transport!r} is not one of {list(choices)}')
    return sensor, transport


def _seed(text: str) -> int:
    """argparse ``type`` of ``--seed``: a whole number the ``seed`` parameter can hold."""
    value = non_negative_int(text)
    if value > SEED_MAX:
        raise argparse.ArgumentTypeError(f'must be at most {SEED_MAX}, got {value}')
    return value


def run(args: argparse.Namespace) -> int:
    # Only the options given override the node's parameters: a launch file or --ros-args -p
    # sets the others, and the node reads the schedule against its sensors parameter. A
    # schedule refused (ScheduleError) is printed by the caller, under its own name.
    overrides = []
    if args.sensors is not None:
        check_sensor_names(args.sensors)
        overrides.append(Parameter('sensors', value=list(args.sensors)))
    if args.schedule is not None:
        if args.check:  # no node: checked here, against --sensors or the defaults
            unread = _unread_by_check(args)
            if unread:
                raise ScheduleError(
                    f'--check cannot read {" and ".join(unread)} (it starts no ROS): it '
                    'checks against --sensors and --seed; give those instead'
                )
            schedule = Schedule.from_yaml(
                args.schedule, sensors=tuple(args.sensors or MODALITIES)
            )
            check_transports_forwarded(getattr(args, 'transport', None) or (), schedule.sensors)
            if args.seed is not None:  # the run --seed starts, as the node builds it
                schedule = Schedule(schedule.faults, args.seed, schedule.sensors,
                                    schedule.source)
            print(schedule.describe())
            return 0
        overrides.append(Parameter('schedule_file', value=str(args.schedule)))
    elif args.check:
        raise ScheduleError('--check needs --schedule')
    if args.seed is not None:
        overrides.append(Parameter('seed', value=args.seed))
    for sensor, transport in getattr(args, 'transport', None) or ():
        overrides.append(Parameter(sensor_parameter(sensor, 'transport'), value=transport))
    return spin_node(
        lambda: DropoutNode(parameter_overrides=overrides),
        list(getattr(args, 'ros_args', [])),
        dds_profile=not args.no_dds_profile,
    )


def _unread_by_check(args: argparse.Namespace) -> list[str]:
    """The ROS arguments that would set the sensors or seed ``--check`` shows, where no option
    of its own does: ``-p sensors:=...``, ``-p seed:=...``, a ``--params-file``. Read only by a
    started node, they would be ignored."""
    unset = {name for name in ('sensors', 'seed') if getattr(args, name) is None}
    ros_args = list(getattr(args, 'ros_args', []))
    unread = []
    for flag, value in zip(ros_args, ros_args[1:], strict=False):
        name = value.partition(':=')[0].rpartition(':')[2]  # 'dropout:seed:=3' names seed
        if unset and (flag == '--params-file' or (flag in ('-p', '--param') and name in unset)):
            unread.append(f'{flag} {value}')
    return unread


PROG = 'mmp_dropout_node'  # usage and errors name the program that was started


def main(argv: list[str] | None = None) -> int:
    """Entry point outside the ``mmp_ros`` CLI: the console script ``mmp_dropout_node`` (what
    ``ros2 run mmp_ros mmp_dropout_node`` starts) and ``python -m mmp_ros.ros.dropout_node``."""
    argv, ros_args = split_ros_arguments(list(sys.argv[1:] if argv is None else argv))
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.ros_args = ros_args
    try:
        return run(args)
    except InputError as error:  # a schedule_file, sensors or transport the node refused
        print(f'{PROG}: {error}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
