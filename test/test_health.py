"""Every health rule and every transition, on a fake clock (no rclpy, no sleeps)."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from mmp_ros.core.health import (
    HealthConfig,
    HealthConfigError,
    HealthMonitor,
    Level,
    SensorState,
)
from mmp_ros.sensors.decode import decode_frame
from mmp_ros.sensors.frame import FrameStats
from mmp_ros.sensors.image import array_to_image

PERIOD = 1.0 / 30.0
T0 = 1000.0  # node clock at the first message; stamps equal receive times unless a test says


def stats(
    seed: int, *, all_zero: bool = False, saturated: bool = False, invalid: float = 0.0
) -> FrameStats:
    """Stats of a distinct frame per ``seed`` (equal seeds: identical frames)."""
    thumbnail = np.random.default_rng(seed).random((16, 16), dtype=np.float32)
    return FrameStats(
        fingerprint=hashlib.blake2b(thumbnail.tobytes(), digest_size=16).digest(),
        all_zero=all_zero,
        saturated=saturated,
        invalid_fraction=invalid,
        thumbnail=thumbnail,
    )


class Stream:
    """A sensor publishing at 30 Hz into a monitor, with the clock under the test's control."""

    def __init__(self, **config: float) -> None:
        self.monitor = HealthMonitor('depth', HealthConfig(**config))
        self.now = T0
        self.seed = 0

    def frame(self, frame_stats: FrameStats | None = None, stamp: float | None = None):
        self.seed += 1
        verdict = self.monitor.observe(
            self.now if stamp is None else stamp, self.now, frame_stats or stats(self.seed)
        )
        self.now += PERIOD
        return verdict

    def frames(self, count: int, **kwargs) -> None:
        for _ in range(count):
            self.frame(**kwargs)

    def status(self):
        return self.monitor.status(self.now)


def test_never_received_is_error_and_masked():
    monitor = HealthMonitor('thermal')
    status = monitor.status(T0 + 100.0)
    assert status.state is SensorState.NEVER_SEEN
    assert status.level is Level.ERROR and not status.usable
    assert 'nothing received' in status.message


def test_first_good_frame_is_used_at_once():
    stream = Stream()
    assert stream.frame().accepted
    status = stream.status()
    assert status.state is SensorState.OK and status.level is Level.OK and status.usable


def test_ok_stale_recovering_ok():
    stream = Stream(timeout_s=0.5, recovery_frames=3)
    stream.frames(10)
    assert stream.status().usable
    last = stream.now - PERIOD
    assert stream.monitor.status(last + 0.49).usable  # just inside the timeout
    status = stream.monitor.status(last + 0.51)
    assert status.state is SensorState.STALE and status.level is Level.ERROR
    assert not status.usable and 'no message for' in status.message
    stream.now = last + 0.6
    # First frames after the gap: good, but the sensor has to prove itself again.
    for count in (1, 2):
        assert stream.frame().accepted
        status = stream.status()
        assert status.state is SensorState.RECOVERING and status.level is Level.WARN
        assert not status.usable and f'{count}/3' in status.message
    stream.frame()
    status = stream.status()
    assert status.state is SensorState.OK and status.usable
    assert status.values['stale_events'] == '1' and status.values['recoveries'] == '1'


def test_a_stale_sensors_reason_is_the_silence_not_an_earlier_fault():
    # The reason value named the fault of an earlier state: 'nothing received since start'
    # for a camera that sent frames then stopped, or a bad stamp it had recovered from.
    for first in ({}, {'stamp': 0.0}):
        stream = Stream(recovery_frames=1)
        stream.frame(**first)
        stream.frames(3)
        stream.now += 2.0
        status = stream.status()
        assert status.state is SensorState.STALE
        assert status.values['reason'] == status.message
        assert status.message.startswith('stale: no message for')


def test_a_gap_nobody_polled_still_counts_as_stale():
    stream = Stream(timeout_s=0.5, recovery_frames=2)
    stream.frames(5)
    stream.now += 2.0  # no status() call during the gap
    stream.frame()
    assert stream.status().state is SensorState.RECOVERING


def test_frozen_after_n_identical_frames_then_recovers():
    stream = Stream(frozen_frames=4, recovery_frames=2)
    stream.frames(5)
    same = stats(999)
    for _ in range(3):  # identical, but not yet N in a row
        assert stream.frame(same).accepted
        assert stream.status().usable
    verdict = stream.frame(same)
    assert not verdict.accepted and verdict.reason.startswith('frozen')
    status = stream.status()
    assert status.state is SensorState.FROZEN and status.level is Level.ERROR
    assert not status.usable
    assert not stream.frame(same).accepted  # still frozen
    stream.frame()
    assert stream.status().state is SensorState.RECOVERING
    stream.frame()
    assert stream.status().state is SensorState.OK


def test_frozen_detects_near_identical_frames_by_thumbnail():
    stream = Stream(frozen_frames=3, frozen_max_difference=1e-3)
    base = stats(7)
    for i in range(3):
        jittered = FrameStats(
            fingerprint=bytes([i]) * 16,  # re-encoded: the bytes differ every time
            all_zero=False,
            saturated=False,
            invalid_fraction=0.0,
            thumbnail=base.thumbnail + np.float32(1e-4 * i),
        )
        verdict = stream.frame(jittered)
    assert not verdict.accepted and stream.status().state is SensorState.FROZEN


def test_a_static_scene_with_noise_is_not_frozen():
    stream = Stream(frozen_frames=3, frozen_max_difference=1e-4)
    base = stats(7)
    rng = np.random.default_rng(0)
    for i in range(10):
        noisy = FrameStats(bytes([i]) * 16, False, False, 0.0,
                           base.thumbnail + rng.normal(0, 0.01, (16, 16)).astype(np.float32))
        assert stream.frame(noisy).accepted
    assert stream.status().state is SensorState.OK


@pytest.mark.parametrize(
    ('kwargs', 'reason'),
    [
        ({'all_zero': True, 'invalid': 1.0}, 'blank'),
        ({'saturated': True}, 'saturated'),
        ({'invalid': 0.97}, 'invalid pixels 97%'),
    ],
)
def test_blank_saturated_and_nan_flood_are_masked(kwargs, reason):
    stream = Stream(recovery_frames=2)
    stream.frames(3)
    verdict = stream.frame(stats(500, **kwargs))
    assert not verdict.accepted and reason in verdict.reason
    status = stream.status()
    assert status.state is SensorState.INVALID and status.level is Level.ERROR
    assert not status.usable and reason in status.message
    stream.frames(2)
    assert stream.status().state is SensorState.OK


def test_invalid_fraction_between_warn_and_error_warns_but_is_used():
    stream = Stream(invalid_warn_fraction=0.3, invalid_error_fraction=0.9)
    stream.frame(stats(1, invalid=0.5))
    status = stream.status()
    assert status.usable and status.level is Level.WARN and 'invalid pixels 50%' in status.message
    stream.frame(stats(2, invalid=0.1))
    assert stream.status().level is Level.OK


def test_stamp_going_backwards_is_rejected_then_recovers():
    stream = Stream(recovery_frames=2)
    stream.frames(5)
    verdict = stream.frame(stamp=stream.now - 10.0)
    assert not verdict.accepted and 'backwards by' in verdict.reason
    assert stream.status().state is SensorState.INVALID
    stream.frames(2)  # stamps move forward from the new (earlier) time base: a bag loop
    assert stream.status().state is SensorState.OK


def test_frames_under_way_when_the_clock_jumps_back_are_dropped_unjudged():
    """replay --loop --clock: the clock goes back 4 s to the bag's start, and a frame sent
    just before, stamped on the old time, arrives after it. It was '3.960 s in the future':
    the sensor masked for recovery_frames frames at the loop, which the restart is for."""
    stream = Stream(recovery_frames=5)
    stream.frames(10)
    jumped_from, stamp = stream.now, stream.now - PERIOD
    stream.now -= 4.0
    stream.monitor.restart(jumped_from)
    verdict = stream.frame(stamp=stamp)
    assert not verdict.accepted and 'before the clock jumped back' in verdict.reason
    assert not verdict.judged  # the node does not count it as a frame (anchor_frames)
    assert stream.status().state is SensorState.NEVER_SEEN
    assert stream.status().values['bad_stamp'] == '0'
    assert stream.frame().accepted and stream.status().usable  # the new pass: used at once
    # From its first frame on the new time on, a stamp in the future is one again.
    verdict = stream.frame(stamp=jumped_from - PERIOD)
    assert not verdict.accepted and 'in the future' in verdict.reason and verdict.judged


def test_after_a_jump_back_a_sensor_heard_before_is_not_an_error_until_it_falls_silent():
    """At each pass of replay --loop --clock every sensor was ERROR 'nothing received since
    start' until its first frame of the new pass (a 9 Hz camera for up to 110 ms), and the
    model 'no usable sensor': /diagnostics went to ERROR at every loop."""
    stream = Stream(timeout_s=0.5)
    stream.frames(10)
    jumped_from = stream.now
    stream.now -= 4.0
    stream.monitor.restart(jumped_from, stream.now)
    status = stream.status()
    assert status.level is Level.OK and status.state is SensorState.OK, status
    assert 'since start' not in status.message
    stream.now += 0.6  # nothing on the new time within timeout_s: silent, as it is
    status = stream.status()
    assert status.state is SensorState.STALE and 'no message for 0.60 s' in status.message
    assert stream.frame().accepted  # then it is back, after a stale gap
    stream.frames(5)
    assert stream.status().usable
    # Its first frame within timeout_s of the jump is used at once.
    stream.monitor.restart(stream.now + 4.0, stream.now)
    assert stream.frame().accepted and stream.status().usable
    # A sensor never heard before the jump is still 'nothing received since start'.
    silent = HealthMonitor('thermal')
    silent.restart(T0 + 4.0, T0)
    status = silent.status(T0 + 0.1)
    assert status.level is Level.ERROR and 'nothing received since start' in status.message


@pytest.mark.parametrize('fault', ['blank', 'stale'])
def test_after_a_jump_back_a_sensor_at_fault_then_is_not_called_ok(fault):
    stream = Stream(timeout_s=0.5)
    stream.frames(10)
    if fault == 'blank':
        stream.frames(3, frame_stats=stats(0, all_zero=True))
    else:
        stream.now += 1.0
    jumped_from = stream.now
    stream.now -= 4.0
    stream.monitor.restart(jumped_from, stream.now)
    assert stream.status().level is Level.ERROR and not stream.status().usable
    assert stream.frame().accepted and stream.status().usable  # judged afresh


def test_after_a_jump_back_a_camera_stamping_ahead_is_still_caught():
    # Its stamps are in the future on the new time too, nowhere near the old one.
    stream = Stream()
    stream.frames(10)
    jumped_from = stream.now
    stream.now -= 30.0
    stream.monitor.restart(jumped_from)
    verdict = stream.frame(stamp=stream.now + 2.0)
    assert not verdict.accepted and 'in the future' in verdict.reason


def test_repeated_stamp_is_rejected():
    stream = Stream()
    stream.frame(stamp=T0)
    verdict = stream.frame(stamp=T0)
    assert not verdict.accepted and 'repeated' in verdict.reason


def test_stamp_in_the_future_and_zero_stamp_are_rejected():
    stream = Stream(future_tolerance_s=0.2)
    verdict = stream.frame(stamp=stream.now + 0.5)
    assert not verdict.accepted and 'in the future' in verdict.reason
    verdict = stream.frame(stamp=0.0)
    assert not verdict.accepted and 'does not set header.stamp' in verdict.reason
    assert stream.status().values['bad_stamp'] == '2'


def test_negative_stamp_is_called_negative_not_zero():
    """A driver that writes sec < 0 (an unsynchronised clock, a signed overflow) does set the
    stamp: 'stamp is zero' sent its user looking for a missing assignment."""
    stream = Stream()
    verdict = stream.frame(stamp=-1.5)
    assert not verdict.accepted
    assert verdict.reason == 'stamp is negative: header.stamp is -1.500000000 s'
    assert stream.status().values['bad_stamp'] == '1'


def test_future_stamp_within_tolerance_is_fine():
    stream = Stream(future_tolerance_s=0.2)
    assert stream.frame(stamp=stream.now + 0.1).accepted


def test_bad_message_is_masked_with_its_reason():
    stream = Stream(recovery_frames=1)
    stream.frames(3)
    verdict = stream.monitor.observe_error(stream.now, "encoding 'rgb8' is not a depth encoding")
    assert not verdict.accepted
    status = stream.status()
    assert status.state is SensorState.INVALID and not status.usable
    assert status.message == "bad message: encoding 'rgb8' is not a depth encoding"
    assert status.values['bad_message'] == '1'
    stream.frame()
    assert stream.status().state is SensorState.OK


def test_bad_messages_alone_keep_the_sensor_out_of_stale():
    stream = Stream(timeout_s=0.5)
    for _ in range(30):
        stream.monitor.observe_error(stream.now, 'truncated data')
        stream.now += PERIOD
    # Messages arrive (so not stale) but none is usable.
    status = stream.status()
    assert status.state is SensorState.INVALID and 'truncated' in status.message


def test_flapping_sensor_stays_masked():
    stream = Stream(recovery_frames=3)
    stream.frames(3)
    for _ in range(20):  # good, good, blank, good, good, blank, ...
        stream.frames(2)
        stream.frame(stats(0, all_zero=True))
        assert not stream.status().usable
    stream.frames(3)
    assert stream.status().usable


def test_rate_check_warns_and_errors_but_keeps_the_sensor():
    stream = Stream(expected_rate_hz=30.0, rate_window_s=1.0, timeout_s=1.0)
    stream.frames(40)
    assert stream.status().level is Level.OK
    monitor, now = stream.monitor, stream.now
    for i in range(60):  # 20 Hz for 3 s
        monitor.observe(now + i * 0.05, now + i * 0.05, stats(1000 + i))
    status = monitor.status(now + 59 * 0.05)
    assert status.level is Level.WARN and status.usable and 'rate 20.0 Hz' in status.message
    now += 3.0
    for i in range(30):  # 10 Hz
        monitor.observe(now + i * 0.1, now + i * 0.1, stats(2000 + i))
    status = monitor.status(now + 29 * 0.1)
    assert status.level is Level.ERROR and status.usable and status.state is SensorState.OK


def test_a_slow_stream_with_arrival_jitter_is_at_its_rate():
    """2 Hz, each message up to 20 ms early or late: a 2 s window holds 3 to 5 of them, so
    counting them read 1.5 Hz half the time (WARN against the 2 Hz expected)."""
    monitor = HealthMonitor('thermal', HealthConfig(expected_rate_hz=2.0, timeout_s=1.0))
    rng = np.random.default_rng(0)
    stamps = T0 + np.arange(40) * 0.5
    arrivals = stamps + rng.uniform(-0.02, 0.02, stamps.size)
    levels = set()
    for now in np.arange(T0 - 0.04, arrivals[-1], 0.02):  # the node's health period
        for i in np.flatnonzero((arrivals > now - 0.02) & (arrivals <= now)):
            monitor.observe(stamps[i], arrivals[i], stats(i))
        if now > arrivals[0]:
            levels.add(monitor.status(now).level)
    assert levels == {Level.OK}


def test_no_rate_verdict_before_a_full_window():
    stream = Stream(expected_rate_hz=30.0, rate_window_s=2.0)
    stream.frames(3)
    assert stream.status().level is Level.OK


def test_rate_check_disabled_with_zero_expected_rate():
    stream = Stream(expected_rate_hz=0.0, rate_window_s=0.5, timeout_s=2.0)
    for i in range(10):
        stream.monitor.observe(T0 + i, T0 + i, stats(i))
    assert stream.monitor.status(T0 + 9.5).level is Level.OK


def test_thresholds_change_at_run_time():
    stream = Stream(timeout_s=0.5)
    stream.frames(3)
    later = stream.now + 0.6
    assert stream.monitor.status(later).state is SensorState.STALE
    stream.monitor.reconfigure(timeout_s=2.0)
    assert stream.monitor.status(later).usable


def test_disabled_sensor_is_masked_but_not_an_error():
    monitor = HealthMonitor('polarization')
    monitor.disable()
    status = monitor.status(T0)
    assert status.state is SensorState.DISABLED and status.level is Level.OK
    assert not status.usable
    # in /diagnostics as every other state is, and as a sensor the model takes no input from
    # is ('state: DISABLED'); a disabled camera's status had no 'state' value at all
    assert status.values == {'state': 'DISABLED'}


def test_status_values_carry_rate_age_stamp_and_counters():
    stream = Stream()
    stream.frames(4)
    values = stream.status().values
    assert float(values['age_s']) == pytest.approx(PERIOD, abs=1e-3)
    assert float(values['last_stamp']) == pytest.approx(T0 + 3 * PERIOD)
    assert values['received'] == '4' and values['accepted'] == '4'
    assert {'rate_hz', 'expected_rate_hz', 'timeout_s', 'state'} <= set(values)


@pytest.mark.parametrize(
    'bad',
    [
        {'timeout_s': 0.0},
        {'rate_warn_ratio': 0.3, 'rate_error_ratio': 0.5},
        {'frozen_frames': 1},
        {'invalid_warn_fraction': 0.99, 'invalid_error_fraction': 0.9},
        {'recovery_frames': 0},
    ],
)
def test_invalid_thresholds_are_refused_with_their_name(bad):
    with pytest.raises(HealthConfigError, match=next(iter(bad))):
        HealthConfig(**bad)


def test_rate_is_measured_afresh_after_a_stale_gap():
    stream = Stream(expected_rate_hz=30.0, rate_window_s=1.0, timeout_s=0.5, recovery_frames=2)
    stream.frames(40)
    stream.now += 0.8  # stale gap
    stream.frames(10)  # recovered, 0.33 s of frames: no full window yet, so no rate verdict
    status = stream.status()
    assert status.state is SensorState.OK and status.level is Level.OK


def test_rate_is_measured_afresh_after_the_clock_steps_back():
    # An NTP step of the wall clock 60 s back, the camera stamping on the new time: the
    # arrivals of the last 2 s before the step stayed in the window for a minute, and a
    # camera slowed to 20 Hz read 50 Hz, at OK.
    stream = Stream(expected_rate_hz=30.0, rate_window_s=2.0)
    stream.frames(90)
    now = stream.now - 60.0
    monitor = stream.monitor
    for i in range(80):  # 20 Hz for 4 s
        monitor.observe(now + i * 0.05, now + i * 0.05, stats(1000 + i))
    status = monitor.status(now + 79 * 0.05)
    assert status.state is SensorState.OK and status.usable  # recovered from the step
    assert status.level is Level.WARN and 'rate 20.0 Hz' in status.message
    assert status.values['rate_hz'] == '20.00'


def test_arrivals_are_timed_on_their_own_clock_across_a_step_of_the_stamps_clock():
    # The node's wall clock (stamps) stepped 2 s forward; the monotonic clock (arrivals) did
    # not: a 30 Hz camera stays OK, neither stale nor slow.
    monitor = HealthMonitor('rgb', HealthConfig(timeout_s=0.5))
    for i in range(120):
        wall = T0 + i * PERIOD + (2.0 if i >= 60 else 0.0)
        verdict = monitor.observe(wall, wall, stats(i), arrival=i * PERIOD)
        assert verdict.accepted, (i, verdict.reason)
        status = monitor.status(i * PERIOD + 0.02)
        assert status.state is SensorState.OK and status.level is Level.OK, (i, status.message)
    assert monitor.status(119 * PERIOD).values['stale_events'] == '0'


@pytest.mark.parametrize(
    ('sample', 'file', 'modality', 'encoding', 'sigma'),
    [
        ('tum_rgbd', 'depth_mm.png', 'depth', '16UC1', 2.0),  # 2 mm: a depth camera at 1 m
        ('tum_rgbd', 'rgb.png', 'rgb', 'rgb8', 0.5),  # half a count: a denoised 8-bit camera
    ],
)
def test_a_real_camera_facing_a_still_scene_is_not_frozen_by_default(
    real_data, sample, file, modality, encoding, sigma
):
    """Each frame a fresh noise draw of one real frame, decoded as the node does: the
    thumbnails differ by 6e-5 (depth, metres) and 7e-5 (rgb), well inside what averaging
    over a 16x16 cell leaves of the noise; the frames themselves are never identical."""
    pixels = cv2.imread(str(real_data / sample / file), cv2.IMREAD_UNCHANGED)
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    rng = np.random.default_rng(0)
    stream = Stream()
    for _ in range(2 * stream.monitor.config.frozen_frames):
        noisy = pixels + rng.normal(0.0, sigma, pixels.shape)
        if modality == 'depth':
            noisy[pixels == 0] = 0  # no return stays no return
        top = np.iinfo(pixels.dtype).max
        noisy = np.clip(np.rint(noisy), 0, top).astype(pixels.dtype)
        frame = decode_frame(modality, array_to_image(noisy, encoding))
        assert stream.frame(frame.stats).accepted
    assert stream.status().state is SensorState.OK


def test_a_repeated_real_frame_is_frozen_by_default(real_data):
    depth_mm = cv2.imread(str(real_data / 'tum_rgbd' / 'depth_mm.png'), cv2.IMREAD_UNCHANGED)
    frame = decode_frame('depth', array_to_image(depth_mm, '16UC1'))
    stream = Stream()
    for _ in range(stream.monitor.config.frozen_frames - 1):
        assert stream.frame(frame.stats).accepted
    verdict = stream.frame(frame.stats)
    assert not verdict.accepted and stream.status().state is SensorState.FROZEN


def test_the_rate_window_stays_bounded_when_the_clock_stops_while_frames_arrive():
    # a paused simulation's clock: nothing is ever older than the window, and the arrival
    # times grew by one a frame for as long as it lasted
    monitor = HealthMonitor('depth', HealthConfig())
    frame = stats(1)
    for k in range(65_000):
        monitor.observe(T0 - 1.0 + k * 1e-6, T0, frame)  # stamps advance, the clock does not
    assert len(monitor._receive_times) <= 60_000  # 60 s at 1000 Hz: the parameters' largest


def test_a_bad_message_s_long_reason_is_cut():
    from mmp_ros.core.health import MAX_REASON_CHARS

    stream = Stream()
    # was: a 1 MB encoding string quoted in the reason went out whole in every diagnostics
    # period (the decoders quote what the sender wrote)
    reason = f"encoding {'x' * 1_000_000!r} is not an rgb encoding"
    stream.monitor.observe_error(stream.now, reason)
    message = stream.status().message
    assert message.startswith("bad message: encoding 'xxx")
    assert message.endswith(f'... ({len(reason):,} characters)')
    assert len(message) < MAX_REASON_CHARS + 50
    stream.monitor.observe_error(stream.now, 'truncated data')
    assert stream.status().message == 'bad message: truncated data'


def test_on_sim_time_a_frame_stamped_zero_is_the_first_frame_of_the_simulation():
    """Gazebo and Isaac Sim start /clock at 0 and stamp their cameras' first frame 0.0: it was
    'stamp is zero' (INVALID), the camera masked for recovery_frames frames and the model
    'no usable sensor' at every simulation start. A zero stamp on wall time stays refused."""
    monitor = HealthMonitor('rgb', HealthConfig(recovery_frames=5))
    assert monitor.observe(0.0, 0.005, stats(1), sim_time=True).accepted
    assert monitor.status(0.005).state is SensorState.OK
    assert monitor.observe(PERIOD, PERIOD + 0.005, stats(2), sim_time=True).accepted
    status = monitor.status(PERIOD + 0.005)
    assert status.state is SensorState.OK and status.usable
    assert status.values['bad_stamp'] == '0' and status.values['last_stamp'] == f'{PERIOD:.6f}'
    wall = HealthMonitor('rgb')
    verdict = wall.observe(0.0, 0.005, stats(1))
    assert not verdict.accepted and 'does not set header.stamp' in verdict.reason


def test_on_sim_time_a_zero_stamp_is_refused_past_the_start_or_when_repeated():
    # A driver that does not set the stamp, in a simulation that runs for a while.
    late = HealthMonitor('rgb', HealthConfig(timeout_s=0.5))
    verdict = late.observe(0.0, 0.6, stats(1), sim_time=True)
    assert not verdict.accepted and verdict.reason.startswith('stamp is zero')
    early = HealthMonitor('rgb')
    assert early.observe(0.0, 0.01, stats(1), sim_time=True).accepted
    verdict = early.observe(0.0, 0.01 + PERIOD, stats(2), sim_time=True)
    assert not verdict.accepted and 'repeated' in verdict.reason
    for bad in (-0.001, float('nan')):
        assert not HealthMonitor('rgb').observe(bad, 0.01, stats(1), sim_time=True).accepted


def test_after_a_simulator_reset_its_first_frame_stamped_zero_is_used():
    # The reset takes /clock back to 0 (a jump back): the camera's next frame is stamped 0.
    monitor = HealthMonitor('rgb')
    for i in range(30):
        monitor.observe(1.0 + i * PERIOD, 1.0 + i * PERIOD, stats(i), sim_time=True)
    jumped_from = 1.0 + 30 * PERIOD
    monitor.restart(jumped_from, 0.0)
    assert monitor.observe(0.0, 0.004, stats(100), sim_time=True).accepted
    assert monitor.status(0.004).usable
