"""FrameAssembler: anchor choice, max age, missing / late / early / duplicated stamps."""

from __future__ import annotations

import numpy as np
import pytest

from mmp_ros.core.assembler import AssemblerConfigError, FrameAssembler
from mmp_ros.modalities import MODALITIES
from mmp_ros.sensors.frame import FrameStats, SensorFrame

ALL_USABLE = dict.fromkeys(MODALITIES, True)


def frame(modality: str, value: float = 0.0) -> SensorFrame:
    channels = {'rgb': 3, 'depth': 1, 'polarization': 3, 'thermal': 1}[modality]
    data = np.full((4, 5, channels), value, dtype=np.float32)
    stats = FrameStats(b'', False, False, 0.0, np.zeros((16, 16), np.float32))
    return SensorFrame(modality, data, None, stats)


def feed(assembler: FrameAssembler, stamps: dict[str, list[float]]) -> None:
    for modality, values in stamps.items():
        for stamp in values:
            assembler.add(modality, stamp, frame(modality, stamp), frame_id=f'{modality}_link')


def test_all_present_bundle_takes_the_rgb_anchor_header():
    assembler = FrameAssembler(MODALITIES, max_age_s=0.05)
    feed(assembler, {'rgb': [10.0], 'depth': [10.01], 'polarization': [9.98], 'thermal': [10.0]})
    bundle = assembler.assemble(ALL_USABLE)
    assert bundle.anchor == 'rgb' and bundle.stamp == 10.0 and bundle.frame_id == 'rgb_link'
    assert bundle.available.tolist() == [True, True, True, True]
    assert bundle.frames['depth'].stamp == 10.01 and bundle.missing == {}


def test_nearest_frame_is_chosen_among_cached_ones():
    assembler = FrameAssembler(MODALITIES, max_age_s=0.05)
    feed(assembler, {'depth': [9.90, 9.97, 10.02, 10.06], 'rgb': [10.0]})
    bundle = assembler.assemble(ALL_USABLE)
    assert bundle.frames['depth'].stamp == 10.02


def test_missing_modality_is_reported():
    assembler = FrameAssembler(MODALITIES)
    feed(assembler, {'rgb': [10.0], 'depth': [10.0]})
    bundle = assembler.assemble(ALL_USABLE)
    assert bundle.available.tolist() == [True, True, False, False]
    assert bundle.missing == {'polarization': 'no frame received', 'thermal': 'no frame received'}


def test_unhealthy_modality_is_missing_even_with_fresh_frames():
    assembler = FrameAssembler(MODALITIES)
    feed(assembler, {'rgb': [10.0], 'thermal': [10.0]})
    bundle = assembler.assemble({**ALL_USABLE, 'thermal': False})
    assert 'thermal' not in bundle.frames and bundle.missing['thermal'] == 'sensor unhealthy'


def test_late_frame_beyond_max_age_is_missing():
    assembler = FrameAssembler(MODALITIES, max_age_s={'thermal': 0.1})
    feed(assembler, {'rgb': [10.0], 'thermal': [9.85]})
    bundle = assembler.assemble(ALL_USABLE)
    assert 'thermal' not in bundle.frames
    assert '-0.150 s from the anchor' in bundle.missing['thermal']


def test_early_frame_within_max_age_is_used_and_beyond_it_is_not():
    assembler = FrameAssembler(MODALITIES, max_age_s=0.05)
    feed(assembler, {'rgb': [10.0], 'depth': [10.04], 'thermal': [10.08]})
    bundle = assembler.assemble(ALL_USABLE)
    assert 'depth' in bundle.frames and 'thermal' not in bundle.frames


def test_late_arriving_frame_is_inserted_in_stamp_order():
    assembler = FrameAssembler(MODALITIES, cache_depth=3, max_age_s=0.02)
    feed(assembler, {'depth': [10.0, 10.2, 10.1]})  # 10.1 arrived after 10.2
    feed(assembler, {'rgb': [10.1]})
    assert assembler.assemble(ALL_USABLE).frames['depth'].stamp == 10.1


def test_duplicated_stamp_is_ignored_and_anchor_is_not_reused():
    assembler = FrameAssembler(MODALITIES)
    assert assembler.add('rgb', 10.0, frame('rgb', 1.0))
    assert not assembler.add('rgb', 10.0, frame('rgb', 2.0))
    bundle = assembler.assemble(ALL_USABLE)
    assert float(bundle.frames['rgb'].frame.data[0, 0, 0]) == 1.0
    assert assembler.assemble(ALL_USABLE) is None  # same anchor: nothing new to infer on
    assembler.add('rgb', 10.033, frame('rgb'))
    assert assembler.assemble(ALL_USABLE).stamp == 10.033


def test_cache_keeps_only_the_newest_frames():
    assembler = FrameAssembler(MODALITIES, cache_depth=2, max_age_s=5.0)
    feed(assembler, {'depth': [1.0, 2.0, 3.0], 'rgb': [1.0]})
    # 1.0 was evicted: the nearest left to anchor 1.0 is 2.0.
    assert assembler.assemble(ALL_USABLE).frames['depth'].stamp == 2.0


def test_dead_anchor_hands_over_to_the_freshest_usable_stream():
    assembler = FrameAssembler(MODALITIES, max_age_s=0.05)
    feed(assembler, {'rgb': [10.0], 'depth': [10.5], 'thermal': [10.52]})
    bundle = assembler.assemble({**ALL_USABLE, 'rgb': False})
    assert bundle.anchor == 'thermal' and bundle.stamp == 10.52
    assert bundle.frame_id == 'thermal_link' and 'depth' in bundle.frames
    assert bundle.camera == 'thermal'


def test_freshest_anchor():
    assembler = FrameAssembler(MODALITIES, anchor='freshest')
    feed(assembler, {'rgb': [10.0], 'depth': [10.03]})
    assert assembler.assemble(ALL_USABLE).anchor == 'depth'


def test_timer_anchor_uses_the_callers_clock_every_call():
    assembler = FrameAssembler(MODALITIES, anchor='timer', max_age_s=0.1)
    feed(assembler, {'rgb': [10.0], 'depth': [10.02]})
    first = assembler.assemble(ALL_USABLE, now=10.05)
    second = assembler.assemble(ALL_USABLE, now=10.06)
    assert first.anchor == 'timer' and first.stamp == 10.05 and first.frame_id == 'depth_link'
    assert first.camera == 'depth'  # the stream whose frame_id it carries
    assert second.stamp == 10.06
    assert assembler.assemble(ALL_USABLE, now=10.5) is None  # everything too old


def test_the_timer_anchor_gives_nothing_while_the_clock_stands_still():
    # A paused simulation, or a bag on /clock that has ended: the node published the same
    # bundle under the same stamp at max_rate_hz (19 labels in 1 s, 2 distinct stamps).
    assembler = FrameAssembler(MODALITIES, anchor='timer', max_age_s=0.1)
    feed(assembler, {'rgb': [10.0]})
    assert assembler.assemble(ALL_USABLE, now=10.05).stamp == 10.05
    assert assembler.assemble(ALL_USABLE, now=10.05) is None
    assert assembler.assemble(ALL_USABLE, now=10.06).stamp == 10.06
    # A clock that went back (a looping bag): bundles at the new time.
    feed(assembler, {'rgb': [5.0]})
    assert assembler.assemble(ALL_USABLE, now=5.01).stamp == 5.01


def test_the_timer_anchor_says_why_its_instants_matched_no_frame_and_since_when():
    # Cameras stamping an hour behind the node's clock (a replay without --restamp): no
    # bundle ever, and nothing said why (the model status read 'waiting for the first bundle').
    assembler = FrameAssembler(MODALITIES, anchor='timer', max_age_s=0.1)
    feed(assembler, {'rgb': [6400.0]})
    assert assembler.assemble(ALL_USABLE, now=10000.0) is None
    assert assembler.assemble(ALL_USABLE, now=10000.1) is None
    assert assembler.unmatched_since == 10000.0
    assert assembler.unmatched['rgb'] == (
        'nearest frame -3600.100 s from the anchor (max_age_s 0.1)')
    assert assembler.unmatched['depth'] == 'no frame received'
    feed(assembler, {'rgb': [10000.15]})
    assert assembler.assemble(ALL_USABLE, now=10000.2) is not None
    assert assembler.unmatched == {}
    assert assembler.assemble(ALL_USABLE, now=10000.4) is None
    assert assembler.unmatched_since == 10000.4


def test_nothing_usable_gives_no_bundle():
    assembler = FrameAssembler(MODALITIES)
    feed(assembler, {'rgb': [10.0], 'depth': [10.0]})
    assert assembler.assemble(dict.fromkeys(MODALITIES, False)) is None


def test_clear_forgets_frames_from_before_a_fault():
    assembler = FrameAssembler(MODALITIES, max_age_s=1.0)
    feed(assembler, {'rgb': [10.0], 'depth': [10.0]})
    assembler.clear('depth')
    assert 'depth' not in assembler.assemble(ALL_USABLE).frames


def test_streams_whose_clock_went_back_are_used_again_after_their_fault():
    """A bag loop or a driver restart: every stream jumps back; its health check rejects the
    first frame (the cache is cleared) and, once it recovers, bundles resume at the new time."""
    assembler = FrameAssembler(MODALITIES, max_age_s=0.05)
    feed(assembler, {'rgb': [100.0], 'depth': [100.0]})
    assert assembler.assemble(ALL_USABLE).stamp == 100.0
    for modality in ('rgb', 'depth'):
        assembler.clear(modality)  # the node's reaction to 'stamp went backwards'
    feed(assembler, {'rgb': [1.0], 'depth': [1.0]})
    bundle = assembler.assemble(ALL_USABLE)
    assert bundle.stamp == 1.0 and bundle.available.tolist() == [True, True, False, False]
    assert assembler.assemble(ALL_USABLE) is None  # still used once
    feed(assembler, {'rgb': [1.033]})
    assert assembler.assemble(ALL_USABLE).stamp == 1.033


def test_a_stream_back_from_a_fault_on_the_same_clock_does_not_anchor_an_earlier_output():
    # rgb froze; depth anchored 10.05; rgb's first good frame, 10.04, is older than that output
    assembler = FrameAssembler(MODALITIES, max_age_s=0.05)
    feed(assembler, {'rgb': [10.0], 'depth': [10.0, 10.05]})
    assert assembler.assemble(ALL_USABLE).stamp == 10.0
    assembler.clear('rgb')
    assert assembler.assemble({**ALL_USABLE, 'rgb': False}).stamp == 10.05
    feed(assembler, {'rgb': [10.04]})
    assert assembler.assemble(ALL_USABLE) is None
    feed(assembler, {'rgb': [10.07]})
    assert assembler.assemble(ALL_USABLE).stamp == 10.07


def test_an_older_frame_of_a_stream_that_did_not_fail_is_not_used_after_a_newer_anchor():
    assembler = FrameAssembler(MODALITIES, max_age_s=0.05)
    feed(assembler, {'rgb': [10.0], 'thermal': [10.02]})
    assert assembler.assemble({**ALL_USABLE, 'rgb': False}).stamp == 10.02
    assert assembler.assemble(ALL_USABLE) is None  # rgb 10.0 is older than the last output


def test_a_camera_whose_stamps_lag_the_others_by_seconds_anchors_again_at_once_after_an_outage():
    """RGB's clock 3 s behind depth's: while RGB was down depth anchored the outputs at its
    time, and RGB back, its frames were 3 s behind them: no output for 3 s, until RGB's
    stamps passed depth's, with depth live all along. Its frames anchor again at once."""
    assembler = FrameAssembler(MODALITIES, max_age_s=0.1)
    feed(assembler, {'rgb': [7.0], 'depth': [10.0]})
    assert assembler.assemble(ALL_USABLE).stamp == 7.0
    feed(assembler, {'depth': [10.033]})
    assert assembler.assemble({**ALL_USABLE, 'rgb': False}).stamp == 10.033
    feed(assembler, {'rgb': [7.066], 'depth': [10.066]})
    bundle = assembler.assemble(ALL_USABLE)
    assert (bundle.anchor, bundle.stamp) == ('rgb', 7.066)
    # the offset said in the model's status: depth's nearest frame is seconds from the anchor
    assert bundle.missing['depth'] == 'nearest frame +2.934 s from the anchor (max_age_s 0.1)'
    assert assembler.assemble(ALL_USABLE) is None  # each anchor frame once
    # The other way round: depth 3 s behind RGB takes over at once when RGB goes down.
    feed(assembler, {'rgb': [7.1], 'depth': [10.1]})
    assert assembler.assemble(ALL_USABLE).stamp == 7.1
    assembler = FrameAssembler(MODALITIES, max_age_s=0.1)
    feed(assembler, {'rgb': [10.0], 'depth': [7.0]})
    assert assembler.assemble(ALL_USABLE).stamp == 10.0
    feed(assembler, {'depth': [7.033]})
    assert assembler.assemble({**ALL_USABLE, 'rgb': False}).stamp == 7.033
    assert assembler.assemble({**ALL_USABLE, 'rgb': False}) is None


@pytest.mark.parametrize(
    'kwargs',
    [{'anchor': 'lidar'}, {'max_age_s': 0.0}, {'max_age_s': {'sonar': 0.1}}, {'cache_depth': 0}],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(AssemblerConfigError):
        FrameAssembler(MODALITIES, **kwargs)


def test_bundle_echoes_the_anchor_header_untouched():
    assembler = FrameAssembler(MODALITIES)
    header = object()
    assembler.add('rgb', 10.0, frame('rgb'), 'cam', header=header)
    assert assembler.assemble(ALL_USABLE).header is header


def test_latency_window_percentiles():
    from mmp_ros.core.latency import LatencyWindow

    window = LatencyWindow(size=100)
    assert window.percentile(50) is None
    for value in range(1, 201):  # only the last 100 (101..200) are kept
        window.add(float(value))
    assert len(window) == 100
    assert window.percentile(50) == pytest.approx(150.5)
    assert window.percentile(95) == pytest.approx(195.05)


def test_the_recent_output_rate_follows_a_slowdown_hours_into_a_run_and_stays_small():
    # An hour at 30 Hz, then 12 s at 3 Hz: an average since start read 29.9 Hz.
    from mmp_ros.core.latency import RecentRate

    rate = RecentRate(window_s=10.0)
    for i in range(30 * 3600):
        rate.add(i / 30)
    assert rate.rate(3600.0) == pytest.approx(30.0)
    assert len(rate) <= 301
    for i in range(1, 37):
        rate.add(3600.0 + i / 3)
    assert rate.rate(3612.0) == pytest.approx(3.0)
    assert len(rate) <= 31
    assert rate.rate(3700.0) == 0.0  # nothing published for 88 s
    assert len(rate) == 0


def test_the_recent_output_rate_is_measured_afresh_after_the_clock_steps_back():
    # An NTP step of the wall clock 60 s back: the outputs of the 10 s before the step, later
    # than every one after it, read 0.00 Hz for 55 s, then hundreds of Hz.
    from mmp_ros.core.latency import RecentRate

    rate = RecentRate(window_s=10.0)
    for i in range(30 * 20):
        rate.add(1000.0 + i / 30)
    for i in range(30 * 5):
        rate.add(960.0 + i / 30)
    assert rate.rate(965.0) == pytest.approx(30.0)


def test_the_recent_cpu_share_follows_a_change_hours_into_a_run_and_stays_small():
    from mmp_ros.core.latency import RecentShare

    share = RecentShare(0.0, window_s=10.0)
    total = 0.0
    for i in range(1, 50 * 3600 + 1):  # an hour, read every 20 ms, 1 % busy
        total += 0.0002
        share.update(i / 50, total)
    assert len(share) <= 502
    for i in range(1, 50 * 12 + 1):  # then 12 s at 50 % busy
        total += 0.01
        last = share.update(3600.0 + i / 50, total)
    assert last == pytest.approx(0.5)
    assert len(share) <= 502


def test_a_stream_back_from_a_clock_jump_with_the_anchor_does_not_anchor_an_earlier_output():
    """A bag loop: every stream's clock went back. RGB anchors the outputs at the new time with
    depth's frames in them; when RGB goes down, depth's newest frame, already used and older
    than the last output, must not anchor an output stamped back in time."""
    assembler = FrameAssembler(MODALITIES, max_age_s=0.05)
    feed(assembler, {'rgb': [100.0], 'depth': [100.0]})
    assert assembler.assemble(ALL_USABLE).stamp == 100.0
    for modality in ('rgb', 'depth'):
        assembler.clear(modality)
    feed(assembler, {'depth': [1.02], 'rgb': [1.033]})
    assert assembler.assemble(ALL_USABLE).frames['depth'].stamp == 1.02
    assert assembler.assemble({**ALL_USABLE, 'rgb': False}) is None
    feed(assembler, {'depth': [1.053]})
    assert assembler.assemble({**ALL_USABLE, 'rgb': False}).stamp == 1.053


def reference_bundle(received, usable, anchor, ages, depth, last_stamp, anchored):
    """Brute force: each cache is the ``depth`` newest distinct stamps received; the anchor is
    the preferred stream's newest, else the freshest usable stream's; every other usable stream
    gives its cached stamp nearest to it, if within its max age. None: no new anchor (one at
    or before the last output by at most its max age, or one the stream anchored already)."""
    caches = {m: sorted(received[m])[-depth:] for m in MODALITIES}
    newest = {m: caches[m][-1] for m in MODALITIES if usable[m] and caches[m]}
    if not newest:
        return None
    chosen = anchor if anchor in newest else max(newest, key=newest.get)
    stamp = newest[chosen]
    if 0 <= last_stamp - stamp <= ages[chosen] or stamp <= anchored.get(chosen, -np.inf):
        return None
    frames = {}
    for m in MODALITIES:
        if usable[m] and caches[m]:
            distance = min(abs(s - stamp) for s in caches[m])
            if distance <= ages[m]:
                frames[m] = distance
    return chosen, stamp, frames


@pytest.mark.parametrize('seed', range(40))
def test_bundles_match_a_brute_force_reference_on_jittered_dropped_reordered_stamps(seed):
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(1, 7))
    anchor = str(rng.choice(['rgb', 'depth', 'freshest']))
    ages = {m: float(rng.choice([0.01, 0.03, 0.05, 0.2])) for m in MODALITIES}
    assembler = FrameAssembler(MODALITIES, anchor=anchor, max_age_s=ages, cache_depth=depth)
    arrivals = []
    for m in MODALITIES:
        period, t = 1 / float(rng.choice([5, 10, 30, 60])), rng.random() * 0.05
        while t < 2:
            if rng.random() > 0.2:  # 20 % dropped
                stamp = round(t + rng.normal(0, 0.003), int(rng.choice([2, 3])))  # ties too
                arrivals.append((t + abs(rng.normal(0.01, 0.02)), m, stamp))  # reordered
            t += period
    received = {m: set() for m in MODALITIES}
    last_stamp, anchors_used, anchored = -np.inf, set(), {}
    for _, modality, stamp in sorted(arrivals):
        assembler.add(modality, stamp, frame(modality, stamp), f'{modality}_link')
        received[modality].add(stamp)
        usable = {m: bool(rng.random() > 0.1) for m in MODALITIES}
        bundle = assembler.assemble(usable)
        expected = reference_bundle(received, usable, anchor, ages, depth, last_stamp, anchored)
        if expected is None:
            assert bundle is None
            continue
        chosen, stamp_, frames = expected
        assert (bundle.anchor, bundle.stamp, bundle.frame_id) == (chosen, stamp_, f'{chosen}_link')
        assert (chosen, stamp_) not in anchors_used
        assert {m: abs(f.stamp - stamp_) for m, f in bundle.frames.items()} == frames
        anchors_used.add((chosen, stamp_))
        last_stamp = anchored[chosen] = stamp_


@pytest.mark.parametrize('seed', range(40))
def test_outputs_go_back_in_time_only_for_an_anchor_whose_stamps_went_back_or_lag_them(seed):
    """Random faults (a cleared cache) and clock jumps back, of one stream or all (a bag loop):
    an output stamp at or before the last one needs an anchor whose stamps went back since its
    frames were last in an output, or whose newest frame is further than its max_age_s behind
    the last output (waiting for it would stall the outputs as long); never one it anchored."""
    rng = np.random.default_rng(seed)
    assembler = FrameAssembler(MODALITIES, anchor=str(rng.choice(['rgb', 'depth', 'freshest'])),
                               max_age_s=0.05, cache_depth=3)
    offset = dict.fromkeys(MODALITIES, 0.0)
    newest: dict[str, float] = {}
    went_back: set[str] = set()
    last_stamp, anchored = -np.inf, set()
    for step in range(300):
        modality = MODALITIES[int(rng.integers(0, 4))]
        if rng.random() < 0.01:
            for m in (MODALITIES if rng.random() < 0.5 else [modality]):
                offset[m] -= 5.0
                assembler.clear(m)
        if rng.random() < 0.03:
            assembler.clear(modality)
        stamp = round(0.01 * step + offset[modality] + rng.normal(0, 0.01), 3)
        if stamp < newest.get(modality, -np.inf):
            went_back.add(modality)
        newest[modality] = max(newest.get(modality, -np.inf), stamp)
        assembler.add(modality, stamp, frame(modality, stamp))
        bundle = assembler.assemble({m: bool(rng.random() > 0.2) for m in MODALITIES})
        if bundle is None:
            continue
        assert (
            bundle.stamp > last_stamp or bundle.anchor in went_back
            or last_stamp - bundle.stamp > 0.05
        ), (step, bundle.anchor)
        assert (bundle.anchor, bundle.stamp) not in anchored or bundle.anchor in went_back
        went_back -= set(bundle.frames)
        last_stamp = bundle.stamp
        anchored.add((bundle.anchor, bundle.stamp))
