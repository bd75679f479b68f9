"""``mmp_ros bench-dds``: how many camera-sized images reach another process, and how fast.

One child process publishes ``width x height`` rgb8 images at ``rate`` Hz with the package's
set-up (``init_ros``, sensor-data QoS like a camera driver); another receives them with
sensor-data QoS (best effort), as the segmentation node does. Delivery is counted by sequence
number (carried in ``header.frame_id``), latency from ``header.stamp`` to the receive callback.
With ``--no-profile`` the same run is repeated on Fast DDS's built-in transports and printed
beside it: the measurement behind the shipped profile (docs/dds.md).

Both children start only when each has matched the other (DDS matched events, with a
deadline), and the receiver stops when the publisher's count of sent frames has arrived on a
reliable topic and either every frame is in or a short drain deadline has passed.

The two shut down one after the other: the publisher waits, idle, until the parent closes its
stdin, which the parent does once the receiver has exited. Fast DDS 3.2 (the Kilted wheels) can
deadlock a participant that is being deleted while it is still handling the other side's
endpoints going away: ``rmw`` first clears the participant's listener, which waits for the
running discovery callbacks, and one of them is blocked on a mutex (seen with gdb in 1 run of
55 when both ended at once; docs/dds.md). A child that printed its result but does not exit
in time is killed with a warning, and its result is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from mmp_ros.cli import positive_float, positive_int
from mmp_ros.dds import apply_dds_profile, domain_id_problem, reserve_domain_id
from mmp_ros.errors import InputError

DISCOVERY_TIMEOUT_S = 20.0
DRAIN_S = 1.0  # after the publisher's "done": how long stragglers may take
TEARDOWN_S = 10.0  # after a child's result: how long its ROS shutdown may take


@dataclass(frozen=True)
class DeliveryResult:
    """One run's figures, computed from what each side reported."""

    profile: bool
    sent: int
    received: int
    latency_p50_ms: float
    latency_p95_ms: float
    user_profile: bool = False  # the profile run used the user's profile, not the package's

    @property
    def delivery(self) -> float:
        return self.received / self.sent if self.sent else 0.0


def summarize(profile: bool, sent: int, latencies_ms: list[float]) -> DeliveryResult:
    """Percentiles of the received frames' latencies; NaN where nothing arrived."""
    lat = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95 = np.percentile(lat, [50, 95]) if lat.size else (float('nan'), float('nan'))
    return DeliveryResult(profile, sent, int(lat.size), float(p50), float(p95))


def format_results(results: list[DeliveryResult], width: int, height: int, rate: float) -> str:
    """A side-by-side table, one column per run."""
    names = [
        ('user profile' if r.user_profile else 'mmp_ros profile') if r.profile else 'no profile'
        for r in results
    ]
    rows = [
        ('frames sent', [f'{r.sent}' for r in results]),
        ('frames received', [f'{r.received}' for r in results]),
        ('delivery', [f'{100 * r.delivery:.1f} %' for r in results]),
        ('latency p50', [f'{r.latency_p50_ms:.2f} ms' for r in results]),
        ('latency p95', [f'{r.latency_p95_ms:.2f} ms' for r in results]),
    ]
    lines = [f'{width}x{height} rgb8 at {rate:g} Hz, best effort, two processes']
    lines.append(f'{"":18}' + ''.join(f'{n:>18}' for n in names))
    lines += [f'{label:18}' + ''.join(f'{v:>18}' for v in values) for label, values in rows]
    return '\n'.join(lines)


def measure(
    *,
    profile: bool,
    duration_s: float,
    rate_hz: float,
    width: int = 640,
    height: int = 480,
    discovery_timeout_s: float = DISCOVERY_TIMEOUT_S,
) -> DeliveryResult:
    """Run publisher and receiver as two child processes and summarize what they report."""
    env = dict(os.environ)
    # A benchmark between two local processes must neither reach other machines nor disturb
    # a running graph: loopback discovery, and a domain of its own unless one is given.
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    reserve_domain_id(env)
    setup = apply_dds_profile(env, profile=profile)
    print(f'bench-dds: {setup.describe()}', file=sys.stderr)
    problem = domain_id_problem(env)
    if problem:
        raise InputError(problem)
    prefix = f'/mmp_ros_bench_{os.getpid()}_{random.randrange(1 << 30)}'
    common = [
        '--prefix', prefix, '--rate', str(rate_hz), '--duration', str(duration_s),
        '--width', str(width), '--height', str(height),
        '--discovery-timeout', str(discovery_timeout_s),
    ] + ([] if profile else ['--no-profile'])
    child = [sys.executable, '-m', 'mmp_ros.ros.bench_dds']
    limit = 2 * discovery_timeout_s + duration_s + 15.0
    with subprocess.Popen(
        [*child, '--role', 'receive', *common], env=env, stdout=subprocess.PIPE, text=True
    ) as receiver, subprocess.Popen(
        [*child, '--role', 'publish', *common], env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    ) as publisher:
        try:
            received = child_result(receiver, 'receiver', limit)
            # The receiver has gone; `communicate` closes the publisher's stdin: its cue to end.
            sent = child_result(publisher, 'publisher', TEARDOWN_S)
        finally:
            for proc in (publisher, receiver):
                if proc.poll() is None:
                    proc.kill()
    result = summarize(profile, sent['sent'], received['latencies_ms'])
    return replace(result, user_profile=profile and not setup.profile_set_by_us)


def child_result(child: subprocess.Popen, role: str, timeout_s: float) -> dict:
    """The JSON line a child printed last; a child stuck in ROS shutdown after it is killed."""
    try:
        out, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        out, _ = child.communicate()
        if not out.strip():
            raise RuntimeError(f'bench-dds {role} reported nothing in {timeout_s:.0f} s') from None
        print(
            f'bench-dds: the {role} reported, then hung in ROS shutdown and was killed; its '
            'result is kept (Fast DDS participant deletion, see docs/dds.md)', file=sys.stderr,
        )
    else:
        if child.returncode:
            raise RuntimeError(
                f'bench-dds {role} failed (rc={child.returncode}); see its message above'
            )
    return json.loads(out.strip().splitlines()[-1])


def _publish(args: argparse.Namespace) -> int:
    import rclpy.qos
    from rclpy.duration import Duration
    from rclpy.event_handler import PublisherEventCallbacks
    from sensor_msgs.msg import Image
    from std_msgs.msg import Empty, UInt32

    from mmp_ros.ros.context import init_ros, spin_until

    with init_ros([], dds_profile=not args.no_profile):
        node = rclpy.create_node('mmp_ros_bench_publisher')
        try:
            matched = [0]
            ready = []
            events = PublisherEventCallbacks(
                matched=lambda info: matched.__setitem__(0, info.current_count)
            )
            image_pub = node.create_publisher(
                Image, f'{args.prefix}/image', rclpy.qos.qos_profile_sensor_data,
                event_callbacks=events,
            )
            done_pub = node.create_publisher(UInt32, f'{args.prefix}/done', _latched())
            node.create_subscription(Empty, f'{args.prefix}/ready', ready.append, _latched())
            if not spin_until(node, lambda: ready and matched[0] > 0, args.discovery_timeout):
                print('bench publisher: the receiver was not matched in time', file=sys.stderr)
                return 2
            msg = Image(height=args.height, width=args.width, encoding='rgb8', step=3 * args.width)
            msg.data = np.random.default_rng(0).integers(
                0, 256, args.height * args.width * 3, dtype=np.uint8
            ).tobytes()
            count = round(args.duration * args.rate)
            start = time.monotonic()
            for seq in range(count):
                # Absolute deadlines: a late frame does not shift the ones after it.
                delay = start + seq / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                msg.header.frame_id = str(seq)
                msg.header.stamp = node.get_clock().now().to_msg()
                image_pub.publish(msg)
            done_pub.publish(UInt32(data=count))
            done_pub.wait_for_all_acked(Duration(seconds=args.discovery_timeout))
            print(json.dumps({'sent': count}), flush=True)
            sys.stdin.read()  # until the parent closes it: the receiver has gone (module doc)
        finally:
            node.destroy_node()
    return 0


def _receive(args: argparse.Namespace) -> int:
    import rclpy.qos
    from rclpy.event_handler import SubscriptionEventCallbacks
    from sensor_msgs.msg import Image
    from std_msgs.msg import Empty, UInt32

    from mmp_ros.ros.context import init_ros, spin_until

    latencies: dict[int, float] = {}
    done: list[int] = []
    matched = [0]

    def on_image(msg: Image) -> None:
        now_ns = time.time_ns()
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies[int(msg.header.frame_id)] = (now_ns - stamp_ns) / 1e6

    with init_ros([], dds_profile=not args.no_profile):
        node = rclpy.create_node('mmp_ros_bench_receiver')
        try:
            events = SubscriptionEventCallbacks(
                matched=lambda info: matched.__setitem__(0, info.current_count)
            )
            node.create_subscription(
                Image, f'{args.prefix}/image', on_image, rclpy.qos.qos_profile_sensor_data,
                event_callbacks=events,
            )
            node.create_subscription(
                UInt32, f'{args.prefix}/done', lambda m: done.append(m.data), _latched()
            )
            ready_pub = node.create_publisher(Empty, f'{args.prefix}/ready', _latched())
            if not spin_until(node, lambda: matched[0] > 0, args.discovery_timeout):
                print('bench receiver: the publisher was not matched in time', file=sys.stderr)
                return 2
            ready_pub.publish(Empty())
            run_limit = args.discovery_timeout + args.duration + 5.0
            if not spin_until(node, lambda: bool(done), run_limit):
                print('bench receiver: the publisher never said it was done', file=sys.stderr)
                return 2
            spin_until(node, lambda: len(latencies) >= done[0], DRAIN_S)
            print(json.dumps({'latencies_ms': list(latencies.values())}), flush=True)
        finally:
            node.destroy_node()
    return 0


def _latched():
    """Reliable, transient-local, depth 1: a control message that a late joiner still gets."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--duration', type=positive_float, default=10.0,
                        help='seconds of publishing')
    parser.add_argument('--rate', type=positive_float, default=30.0, help='frames per second')
    parser.add_argument('--width', type=positive_int, default=640)
    parser.add_argument('--height', type=positive_int, default=480)
    parser.add_argument(
        '--no-profile', action='store_true',
        help="also run on Fast DDS's built-in transports and print both side by side",
    )
    parser.add_argument(
        '--discovery-timeout', type=positive_float, default=DISCOVERY_TIMEOUT_S,
        help='seconds the two processes may take to find each other',
    )


def run(args: argparse.Namespace) -> int:
    if round(args.duration * args.rate) < 1:
        # Nothing would be sent, and the table would say 0 of 0 frames, 0.0 % delivery.
        raise InputError(
            f'--duration {args.duration:g} s at --rate {args.rate:g} Hz sends no frame'
        )
    runs = [True, False] if args.no_profile else [True]
    results = [
        measure(
            profile=profile, duration_s=args.duration, rate_hz=args.rate, width=args.width,
            height=args.height, discovery_timeout_s=args.discovery_timeout,
        )
        for profile in runs
    ]
    print(format_results(results, args.width, args.height, args.rate))
    print(json.dumps([asdict(r) | {'delivery': r.delivery} for r in results]))
    return 0


def _child_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description='bench-dds child process (internal)')
    add_arguments(parser)
    parser.add_argument('--role', choices=['publish', 'receive'], required=True)
    parser.add_argument('--prefix', required=True)
    args = parser.parse_args(argv)
    return _publish(args) if args.role == 'publish' else _receive(args)


if __name__ == '__main__':
    sys.exit(_child_main(sys.argv[1:]))
