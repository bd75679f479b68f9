"""The dropout node across processes: a source, the node, and a checker on loopback DDS.

A source process publishes a 48x64 rgb8 stream whose pixels and ``frame_id`` both carry the
frame's sequence number; the node (``python -m mmp_ros.ros.dropout_node``) kills rgb for one
window and freezes it for the next. The checker, in this process, sees a gap where the kill
was and, during the freeze, identical pixels (an earlier frame's) under the new headers
(``frame_id`` and stamps still advancing), then a live stream again, and the whole timeline on
``dropout/events``. It waits on conditions with deadlines; nothing depends on a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Seconds after the node's start. Fast DDS discovery between a new participant and running
# ones takes from a few ms to about 3 s here (its announcement period), so the first window
# opens only after 4 s of live stream.
KILL = (4.0, 5.0)
FREEZE = (5.5, 6.5)
MARGIN_S = 0.1  # delivery and tick slack around a window boundary
DEADLINE_S = 20.0

SOURCE = """
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from mmp_ros.ros.context import init_ros

with init_ros():
    node = rclpy.create_node('dropout_test_source')
    publisher = node.create_publisher(Image, 'source/rgb/image', qos_profile_sensor_data)
    start = time.monotonic()
    seq = 0
    while time.monotonic() - start < 40.0:  # the test stops it long before; a safety net
        msg = Image(height=48, width=64, encoding='rgb8', step=64 * 3)
        msg.data = np.full(48 * 64 * 3, seq % 256, dtype=np.uint8).tobytes()
        msg.header.frame_id = str(seq)
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
        seq += 1
        time.sleep(max(0.0, start + seq / 30.0 - time.monotonic()))
    node.destroy_node()
"""


def _stop(process: subprocess.Popen) -> str:
    """SIGINT (a ROS process's normal stop), then kill past a deadline; its stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stderr.read() if process.stderr else ''


def spin_for(executor, condition, processes: list[subprocess.Popen], timeout_s: float) -> None:
    """Spin until ``condition()`` or the deadline; fail at once if a child process died."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f'a child exited early (rc {process.returncode}): {_stop(process)}')
        executor.spin_once(timeout_sec=0.05)


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(60)
def test_kill_then_freeze_across_processes(tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from mmp_ros.dds import apply_dds_profile

    schedule = tmp_path / 'schedule.yaml'
    schedule.write_text(
        'faults:\n'
        f'  - {{sensor: rgb, kind: kill, start: {KILL[0]}, end: {KILL[1]}}}\n'
        f'  - {{sensor: rgb, kind: freeze, start: {FREEZE[0]}, end: {FREEZE[1]}}}\n'
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    apply_dds_profile(env)
    apply_dds_profile()  # the checker below too: the same transports as its peers

    frames: list[tuple[int, int, int]] = []  # (stamp_ns, frame_id seq, pixel value)
    events: list[dict] = []
    context = rclpy.Context()
    rclpy.init(context=context)
    processes = []
    try:
        node = rclpy.create_node('dropout_test_checker', context=context)
        node.create_subscription(
            Image, 'rgb/image',
            lambda m: frames.append((
                m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec,
                int(m.header.frame_id), m.data[0],
            )),
            qos_profile_sensor_data,
        )
        node.create_subscription(
            String, 'dropout/events', lambda m: events.append(json.loads(m.data)),
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL),
        )
        source_frames = []
        node.create_subscription(
            Image, 'source/rgb/image', source_frames.append, qos_profile_sensor_data)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        processes.append(subprocess.Popen(
            [sys.executable, '-c', SOURCE], env=env, stderr=subprocess.PIPE, text=True))
        # The schedule's clock starts with the node: start it only once the source is
        # flowing, so that there is a live stream before the first window.
        spin_for(executor, lambda: bool(source_frames), processes, DEADLINE_S)
        assert source_frames, 'the source published nothing'
        processes.append(subprocess.Popen(
            [sys.executable, '-m', 'mmp_ros.ros.dropout_node', '--schedule', str(schedule),
             '--sensors', 'rgb'],
            env=env, stderr=subprocess.PIPE, text=True))

        def done() -> bool:
            ends = [e for e in events if e['event'] == 'end' and e['kind'] == 'freeze']
            return bool(ends) and sum(f[0] / 1e9 > ends[0]['ros_time'] for f in frames) >= 10

        spin_for(executor, done, processes, DEADLINE_S)
        assert done(), f'timeline incomplete after {DEADLINE_S} s: {events}, {len(frames)} frames'
    finally:
        logs = [_stop(p) for p in processes]
        rclpy.try_shutdown(context=context)

    # The timeline: the schedule first, then each window's start and end, once, in order.
    assert events[0]['event'] == 'schedule' and len(events[0]['faults']) == 2
    timeline = [(e['event'], e['kind'], e['index']) for e in events[1:]]
    assert timeline == [('start', 'kill', 0), ('end', 'kill', 0),
                        ('start', 'freeze', 1), ('end', 'freeze', 1)], logs
    for event in events[1:]:
        assert event['sensor'] == 'rgb'
        assert event['scheduled_s'] <= event['elapsed_s'] < event['scheduled_s'] + MARGIN_S
        assert abs(event['wall_time'] - event['ros_time']) < 1.0  # ROS time is system time
    kill_start, kill_end, freeze_start, freeze_end = (e['ros_time'] for e in events[1:])

    def between(low: float, high: float) -> list[tuple[int, int, int]]:
        return [f for f in frames if low + MARGIN_S < f[0] / 1e9 < high - MARGIN_S]

    live = [f for f in frames if f[0] / 1e9 < kill_start or f[0] / 1e9 > freeze_end]
    assert len(live) > 20
    assert all(value == seq % 256 for _, seq, value in live)  # untouched outside the windows

    assert between(kill_start, kill_end) == [], 'frames got through the kill window'
    before = [f for f in frames if f[0] / 1e9 < kill_start]
    after = [f for f in frames if f[0] / 1e9 > kill_end]
    assert len(before) >= 5 and after
    assert after[0][0] - before[-1][0] > (kill_end - kill_start - 2 * MARGIN_S) * 1e9

    frozen = between(freeze_start, freeze_end)
    assert len(frozen) >= 10, f'only {len(frozen)} frames in a 1 s freeze of a 30 Hz stream'
    assert len({value for _, _, value in frozen}) == 1
    last_live = max(f for f in frames if f[0] / 1e9 < freeze_start)
    assert frozen[0][2] == last_live[2], 'the freeze must hold the last frame before it'
    stamps = [stamp for stamp, _, _ in frozen]
    seqs = [seq for _, seq, _ in frozen]
    assert stamps == sorted(set(stamps)) and seqs == sorted(set(seqs))  # new headers each time
    assert all(seq % 256 != frozen[0][2] for seq in seqs[1:])
