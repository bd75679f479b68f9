"""The engine: windows open and close on time, and each kind publishes what it should."""

from __future__ import annotations

import numpy as np
import pytest

from mmp_ros.dropout import DropoutEngine, Received, Schedule, StampedImage
from mmp_ros.dropout.engine import Restamped, Truncated
from mmp_ros.sensors.frame import SensorInputError
from mmp_ros.sensors.image import array_to_image, image_to_array

RATE_HZ = 20.0


def frame(index: int) -> Received:
    """Message ``index`` of a 20 Hz rgb8 stream whose pixels encode the index."""
    image = StampedImage(
        stamp_ns=int(index / RATE_HZ * 1e9),
        frame_id='camera',
        fields=array_to_image(np.full((4, 6, 3), index % 256, dtype=np.uint8), 'rgb8'),
    )
    return Received(raw=('raw', index), decode=lambda: image)


def undecodable(index: int) -> Received:
    def refuse() -> StampedImage:
        raise AssertionError('this fault must not decode the message')

    return Received(raw=('raw', index), decode=refuse)


def engine(text: str) -> DropoutEngine:
    return DropoutEngine(Schedule.from_yaml('faults:\n' + text))


def feed(dropout: DropoutEngine, sensor: str, count: int, *, make=frame, rate_hz=RATE_HZ):
    """Feed ``count`` frames at ``rate_hz`` (a tick before each); return (index, outgoing)."""
    out = []
    for index in range(count):
        elapsed = index / rate_hz
        for released in dropout.on_tick(elapsed).get(sensor, []):
            out.append((index, released))
        out += [(index, o) for o in dropout.on_message(sensor, make(index), elapsed)]
    return out


def test_no_fault_passes_the_same_message_without_decoding():
    dropout = engine('  - {sensor: depth, kind: kill, start: 0, end: 10}\n')
    out = feed(dropout, 'rgb', 30, make=undecodable)
    assert [o.raw for _, o in out] == [('raw', i) for i in range(30)]
    assert dropout.stats('rgb').passed == 30


def test_kill_window_withholds_without_decoding_and_reports_both_boundaries():
    dropout = engine('  - {sensor: rgb, kind: kill, start: 0.5, end: 1.0}\n')
    out = feed(dropout, 'rgb', 30, make=undecodable)
    sent = [o.raw[1] for _, o in out]
    assert sent == list(range(10)) + list(range(20, 30))
    events = dropout.take_events()
    assert [(e.event, e.fault.kind.value, e.elapsed_s) for e in events] == [
        ('start', 'kill', 0.5), ('end', 'kill', 1.0)]
    assert dropout.take_events() == []
    assert dropout.stats('rgb').withheld == 10


def test_freeze_repeats_the_last_frame_under_new_stamps():
    dropout = engine('  - {sensor: rgb, kind: freeze, start: 0.5, end: 1.0}\n')
    out = feed(dropout, 'rgb', 30)
    frozen = [o for i, o in out if 10 <= i < 20]
    assert len(frozen) == 10 and all(isinstance(o, Restamped) for o in frozen)
    assert [o.stamp_ns for o in frozen] == [int(i / RATE_HZ * 1e9) for i in range(10, 20)]
    assert all(o.message.raw == ('raw', 9) for o in frozen)  # frame 9, as it came
    assert all(o.frame_id == 'camera' for o in frozen)
    after = [o for i, o in out if i >= 20]
    assert [o.raw[1] for o in after] == list(range(20, 30))  # live again, untouched


def test_freeze_from_the_start_holds_the_first_frame_it_sees():
    dropout = engine('  - {sensor: rgb, kind: freeze, start: 0, end: 1}\n')
    out = feed(dropout, 'rgb', 5)
    assert out[0][1].raw == ('raw', 0)
    assert all(o.message.raw == ('raw', 0) for _, o in out[1:])


def test_a_freeze_right_after_a_kill_holds_the_last_frame_the_source_sent():
    dropout = engine('  - {sensor: rgb, kind: kill, start: 0.5, end: 1.0}\n'
                     '  - {sensor: rgb, kind: freeze, start: 1.0, end: 1.5}\n')
    out = feed(dropout, 'rgb', 30)
    frozen = [o for i, o in out if 20 <= i < 30]
    assert all(o.message.raw == ('raw', 19) for o in frozen)


@pytest.mark.parametrize('first_start', [0.0, 0.5])
def test_a_freeze_right_after_a_freeze_holds_the_last_frame_the_source_sent(first_start):
    # The frames of a freeze window were not remembered as the source's: after a freeze from
    # 0 (no frame before it) the next freeze let its first frame through live and held that
    # one, and after a freeze with a frame before it held that earlier frame still.
    dropout = engine(f'  - {{sensor: rgb, kind: freeze, start: {first_start}, end: 1.0}}\n'
                     '  - {sensor: rgb, kind: freeze, start: 1.0, end: 1.5}\n')
    out = feed(dropout, 'rgb', 30)
    second = [o for i, o in out if 20 <= i < 30]
    assert len(second) == 10
    assert all(isinstance(o, Restamped) and o.message.raw == ('raw', 19) for o in second)


def headers_only(index: int) -> Received:
    """Frame ``index`` whose header reads without its pixels, which refuse to decode (a
    compressed message whose payload is corrupt)."""
    def refuse() -> StampedImage:
        raise SensorInputError('truncated JPEG')

    return Received(raw=('raw', index), decode=refuse,
                    header=lambda: (int(index / RATE_HZ * 1e9), f'camera{index}'))


def test_freeze_and_truncate_never_decode_pixels():
    # Freeze reads the headers only, truncate nothing: both work on a message type whose
    # pixels the engine never sees (or that would not decode), compressed or raw.
    dropout = engine('  - {sensor: rgb, kind: freeze, start: 0.5, end: 1.0}\n'
                     '  - {sensor: rgb, kind: truncate, start: 1.0, end: 1.5, '
                     'keep_fraction: 0.25}\n')
    out = feed(dropout, 'rgb', 30, make=headers_only)
    frozen = [o for i, o in out if 10 <= i < 20]
    assert [(o.message.raw, o.stamp_ns, o.frame_id) for o in frozen] == [
        (('raw', 9), int(i / RATE_HZ * 1e9), f'camera{i}') for i in range(10, 20)]
    cut = [o for i, o in out if 20 <= i < 30]
    assert all(isinstance(o, Truncated) and o.keep_fraction == 0.25 for o in cut)
    assert [o.message.raw for o in cut] == [('raw', i) for i in range(20, 30)]
    stats = dropout.stats('rgb')
    assert (stats.rewritten, stats.unreadable) == (20, 0)


def test_a_pixel_fault_keeps_the_compression_and_passes_what_does_not_decode():
    dropout = engine('  - {sensor: rgb, kind: blank, start: 0, end: 1}\n')
    image = StampedImage(5, 'camera', array_to_image(np.ones((2, 2, 3), np.uint8), 'rgb8'),
                         compression={'format': 'jpeg'})
    [out] = dropout.on_message('rgb', Received(raw='jpeg', decode=lambda: image), 0.1)
    assert (out.stamp_ns, out.frame_id, out.compression) == (5, 'camera', {'format': 'jpeg'})
    assert not image_to_array(out.fields).any()
    corrupt = headers_only(3)
    assert dropout.on_message('rgb', corrupt, 0.2) == [corrupt]  # as a raw one: on, unchanged
    stats = dropout.stats('rgb')
    assert stats.unreadable == 1 and 'truncated JPEG' in stats.last_error


def test_delay_releases_each_message_delay_s_later_and_flushes_at_the_end():
    # 16 Hz and 0.25 s: times exact in binary, so "due" is not a rounding question.
    dropout = engine('  - {sensor: rgb, kind: delay, start: 0.5, end: 1.25, delay_s: 0.25}\n')
    out = feed(dropout, 'rgb', 30, make=undecodable, rate_hz=16.0)
    when = {o.raw[1]: i for i, o in out}
    assert sorted(when) == list(range(30))  # nothing lost
    for index in range(8, 16):
        assert when[index] == index + 4  # 0.25 s = 4 frames at 16 Hz
    assert all(when[i] == 20 for i in range(16, 20))  # still held at the end: out at once
    assert all(when[i] == i for i in range(20, 30))
    assert [o.raw[1] for _, o in out] == list(range(30))  # order kept


def test_delay_queue_is_bounded():
    dropout = engine(
        '  - {sensor: rgb, kind: delay, start: 0, end: 2, delay_s: 1.0, max_queue: 5}\n')
    for index in range(10):
        assert dropout.on_message('rgb', frame(index), index * 0.01) == []
    released = dropout.on_tick(1.5)['rgb']
    assert [o.raw[1] for o in released] == [5, 6, 7, 8, 9]
    assert dropout.stats('rgb').withheld == 5


def test_drop_fraction_is_seeded_per_fault():
    text = '  - {sensor: thermal, kind: drop, start: 0, end: 100, fraction: 0.5}\n'

    def kept(seed: int) -> list[int]:
        dropout = DropoutEngine(Schedule.from_yaml(f'seed: {seed}\nfaults:\n{text}'))
        return [o.raw[1] for _, o in feed(dropout, 'thermal', 400, make=undecodable)]

    first = kept(1)
    assert 150 < len(first) < 250
    assert kept(1) == first
    assert kept(2) != first


def test_pixel_faults_keep_the_header_and_rewrite_the_fields():
    dropout = engine('  - {sensor: rgb, kind: blank, start: 0, end: 1}\n'
                     '  - {sensor: rgb, kind: resize, start: 1, end: 2, height: 2, width: 3}\n')
    out = feed(dropout, 'rgb', 40)
    blank = [o for i, o in out if i < 20]
    assert all(not image_to_array(o.fields).any() for o in blank)
    assert [o.stamp_ns for o in blank] == [int(i / RATE_HZ * 1e9) for i in range(20)]
    assert {(o.fields.height, o.fields.width) for i, o in out if i >= 20} == {(2, 3)}


def test_a_message_a_pixel_fault_cannot_read_passes_unchanged_and_is_counted():
    dropout = engine('  - {sensor: rgb, kind: noise, start: 0, end: 1, sigma: 3}\n')
    bad = StampedImage(0, 'camera', array_to_image(np.zeros((2, 2, 3), np.uint8), 'rgb8'))
    bad = StampedImage(0, 'camera', type(bad.fields)(2, 2, 'rgb8', False, 6, b'\0' * 5))
    message = Received(raw='broken', decode=lambda: bad)
    assert dropout.on_message('rgb', message, 0.1) == [message]
    stats = dropout.stats('rgb')
    assert stats.unreadable == 1 and 'truncated data' in stats.last_error


def test_a_tick_that_jumps_over_a_window_still_reports_it():
    dropout = engine('  - {sensor: depth, kind: kill, start: 1, end: 2}\n'
                     '  - {sensor: depth, kind: blank, start: 2, end: 3}\n')
    dropout.on_tick(0.0)
    assert dropout.take_events() == []
    dropout.on_tick(2.5)
    events = [(e.event, e.fault.kind.value, e.scheduled_s) for e in dropout.take_events()]
    assert events == [('start', 'kill', 1.0), ('end', 'kill', 2.0), ('start', 'blank', 2.0)]
    assert dropout.active('depth').kind.value == 'blank'
    assert not dropout.finished(2.5)
    dropout.on_tick(3.0)
    assert dropout.active('depth') is None and dropout.finished(3.0)


@pytest.mark.parametrize('sensor', ['rgb', 'depth', 'polarization', 'thermal'])
def test_windows_of_one_sensor_leave_the_others_alone(sensor):
    dropout = engine(f'  - {{sensor: {sensor}, kind: kill, start: 0, end: 10}}\n')
    for other in dropout.sensors:
        sent = feed(dropout, other, 5, make=undecodable)
        assert len(sent) == (0 if other == sensor else 5)


def test_the_pure_part_imports_no_ros():
    import subprocess
    import sys

    from conftest import repo_env

    code = ('import sys, mmp_ros.dropout\n'
            'assert not any(m.split(".")[0] in ("rclpy", "sensor_msgs") for m in sys.modules)')
    subprocess.run([sys.executable, '-c', code], check=True, env=repo_env())


def test_schedule_clock_starts_at_the_first_nonzero_reading_and_never_runs_back():
    from mmp_ros.dropout.engine import ScheduleClock

    clock = ScheduleClock()
    assert clock.elapsed(0) is None  # use_sim_time before the first /clock
    assert clock.elapsed(100_000_000_000) == 0.0
    assert clock.elapsed(104_000_000_000) == 4.0
    # A looping replay's clock goes back to the bag's start: the schedule goes on.
    assert clock.elapsed(100_000_000_000) == 4.0
    assert clock.elapsed(101_500_000_000) == 5.5
    assert clock.start_ns == 100_000_000_000


def test_a_window_open_when_a_looping_bag_starts_over_still_closes_and_later_ones_open():
    # Bag time of a 3 s bag replayed with --loop: 0..3 s, 0..3 s, ... The kill is open at the
    # first jump back; before, it stayed open for good and the depth window never came.
    from mmp_ros.dropout.engine import ScheduleClock

    dropout = engine('  - {sensor: rgb, kind: kill, start: 2, end: 4}\n'
                     '  - {sensor: depth, kind: blank, start: 5, end: 6}\n')
    clock = ScheduleClock()
    sent = []
    for lap in range(3):
        for index in range(60):
            elapsed = clock.elapsed(50_000_000_000 + index * 50_000_000)
            dropout.on_tick(elapsed)
            sent += [(lap, index) for _ in dropout.on_message('rgb', undecodable(index), elapsed)]
    events = [(e.event, e.fault.sensor, e.scheduled_s) for e in dropout.take_events()]
    assert events == [('start', 'rgb', 2.0), ('end', 'rgb', 4.0),
                      ('start', 'depth', 5.0), ('end', 'depth', 6.0)]
    # Killed: 2 to 2.95 s in lap 0, then 2.95 (the jump counts as no time) to 4 s in lap 1.
    assert len(sent) == 180 - 20 - 21
    assert [i for lap, i in sent if lap == 2] == list(range(60))
