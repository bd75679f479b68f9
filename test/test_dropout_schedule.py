"""Schedule files: what parses, and that every mistake is named with its line and sensor."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmp_ros.dropout import Fault, FaultKind, Schedule, ScheduleError
from mmp_ros.dropout.schedule import PARAMETERS

REPO = Path(__file__).resolve().parents[1]

VALID = """\
seed: 7
faults:
  - {sensor: rgb, kind: kill, start: 2, end: 4}
  - sensor: [depth, thermal]
    kind: noise
    start: 5
    duration: 1.5
    sigma: 20
  - {sensor: rgb, kind: freeze, start: 4, end: 6}
  - {sensor: polarization, kind: nan, start: 0, end: 1}
"""


def test_valid_schedule_sorted_by_start_with_a_pair_expanded_and_defaults_filled():
    schedule = Schedule.from_yaml(VALID)
    assert schedule.seed == 7
    summary = [(f.sensor, f.kind, f.start_s, f.end_s) for f in schedule.faults]
    assert summary == [
        ('polarization', FaultKind.NAN, 0.0, 1.0),
        ('rgb', FaultKind.KILL, 2.0, 4.0),
        ('rgb', FaultKind.FREEZE, 4.0, 6.0),  # adjacent windows do not overlap
        ('depth', FaultKind.NOISE, 5.0, 6.5),
        ('thermal', FaultKind.NOISE, 5.0, 6.5),
    ]
    assert schedule.faults[0].params == {'fraction': 1.0}
    assert schedule.faults[3].params == {'sigma': 20.0}
    assert schedule.faults[1].line == 3
    assert schedule.duration_s == 6.5


def test_the_order_the_sensors_are_listed_in_does_not_change_the_faults_order():
    # a fault's place seeds its randomness: --sensors thermal depth ... drew other drops
    listed = ('thermal', 'polarization', 'depth', 'rgb')
    mine = Schedule.from_yaml(VALID, sensors=listed)
    assert [(f.sensor, f.start_s) for f in mine.faults] == \
        [(f.sensor, f.start_s) for f in Schedule.from_yaml(VALID).faults]


def test_every_kind_parses_with_its_parameters():
    values = {
        'fill': 'max', 'fraction': 0.25, 'sigma': 3, 'delay_s': 0.2, 'max_queue': 4,
        'height': 10, 'width': 12, 'encoding': 'mono8', 'keep_fraction': 0.1,
    }
    for index, (kind, spec) in enumerate(PARAMETERS.items()):
        params = ''.join(f', {name}: {values[name]}' for name in spec)
        text = f'faults:\n  - {{sensor: rgb, kind: {kind.value}, start: 0, end: 1{params}}}\n'
        fault = Schedule.from_yaml(text).faults[0]
        assert fault.kind is kind, index
        assert set(fault.params) == set(spec)


def test_empty_schedule_is_valid_and_seed_defaults_to_zero():
    schedule = Schedule.from_yaml('faults: []\n')
    assert schedule.faults == () and schedule.seed == 0 and schedule.duration_s == 0.0


@pytest.mark.parametrize(
    ('entry', 'expected'),
    [
        ('{sensor: lidar, kind: kill, start: 0, end: 1}', r":2: unknown sensor 'lidar'"),
        ('{sensor: rgb, kind: explode, start: 0, end: 1}', r":2: .*unknown kind 'explode'"),
        ('{sensor: rgb, kind: kill, start: 3, end: 3}', r':2: rgb kill .*must be after start'),
        ('{sensor: rgb, kind: kill, start: 3, end: 1}', r':2: .*end 1.0 s must be after'),
        ('{sensor: rgb, kind: noise, start: 0, end: 1}', r"\(rgb\) noise: missing .*'sigma'"),
        ('{sensor: rgb, kind: kill, start: 0, end: 1, sigma: 2}', r"unknown parameter.*'sigma'"),
        ('{sensor: rgb, kind: drop, start: 0, end: 1, fraction: 1.5}', r'fraction must be in'),
        ('{sensor: rgb, kind: encoding, start: 0, end: 1, encoding: rgb9}', r'image encoding'),
        ('{sensor: rgb, kind: encoding, start: 0, end: 1, encoding: [mono8]}',
         r"encoding must be an image encoding .*got \['mono8'\]"),
        ('{sensor: rgb, kind: resize, start: 0, end: 1, height: 0, width: 4}', r'height must'),
        ('{sensor: rgb, kind: resize, start: 0, end: 1, height: 8, width: 100000}',
         r'width must be at most 8192 pixels, got 100000'),
        ('{sensor: rgb, kind: delay, start: 0, end: 1, delay_s: 5e-2}',
         r"delay_s must be a number, got the text '5e-2': .* \(5.0e-2, 1.0e\+9\), or write it "
         r'out \(0.05\)'),
        # with a dot but no sign on the exponent, YAML 1.1 reads text too: only 'must be a
        # number' was said, of what the hint for 5e-2 recommended writing
        ('{sensor: rgb, kind: noise, start: 0, end: 1, sigma: 1.0e3}',
         r"sigma must be a number, got the text '1.0e3': .*a sign on the exponent"),
        ('{sensor: rgb, kind: kill, start: 0, end: 2.5E1}',
         r"end must be a number, got the text '2.5E1': .*a sign on the exponent"),
        ('{sensor: rgb, kind: kill, start: 0}', r"exactly one of 'end' and 'duration'"),
        ('{sensor: rgb, kind: kill, start: -1, end: 1}', r'before the start'),
        ('{sensor: rgb, kind: kill, start: 0, duration: -1}', r'duration must be > 0'),
        ('{kind: kill, start: 0, end: 1}', r"missing 'sensor'"),
        ('{sensor: [rgb, rgb], kind: kill, start: 0, end: 1}', r'listed twice'),
        ('{sensor: rgb, kind: kill, start: soon, end: 1}', r'start must be a number'),
        ('{sensor: rgb, kind: kill, start: 0, end: 1' + '0' * 400 + '}',
         r'end must be finite, got a number of 401 digits'),
        ('{sensor: rgb, kind: noise, start: 0, end: 1, sigma: 1' + '0' * 400 + '}',
         r'sigma must be finite'),
    ],
)
def test_bad_entries_are_named_with_their_line(entry, expected):
    with pytest.raises(ScheduleError, match=expected):
        Schedule.from_yaml(f'faults:\n  - {entry}\n')


def test_overlapping_windows_of_one_sensor_name_both_lines():
    text = (
        'faults:\n'
        '  - {sensor: depth, kind: kill, start: 0, end: 5}\n'
        '  - {sensor: rgb, kind: kill, start: 1, end: 2}\n'
        '  - {sensor: [thermal, depth], kind: blank, start: 4.5, end: 6}\n'
    )
    with pytest.raises(ScheduleError) as caught:
        Schedule.from_yaml(text)
    message = str(caught.value)
    assert message.startswith('<schedule>:4: overlapping windows for sensor')
    assert "'depth'" in message and '(line 2)' in message


def test_other_sensors_may_share_a_window():
    text = 'faults:\n  - {sensor: [rgb, depth], kind: kill, start: 0, end: 5}\n'
    assert len(Schedule.from_yaml(text).faults) == 2


def test_sensor_set_is_the_callers():
    text = 'faults:\n  - {sensor: lidar, kind: kill, start: 0, end: 1}\n'
    assert Schedule.from_yaml(text, sensors=('lidar',)).faults[0].sensor == 'lidar'
    with pytest.raises(ScheduleError, match=r"known sensors are \['rgb'\]"):
        Schedule.from_yaml(text, sensors=('rgb',))
    # Two channels of one name would forward each message twice.
    with pytest.raises(ScheduleError, match=r"\['rgb'\] listed twice"):
        Schedule.from_yaml('faults: []\n', sensors=('rgb', 'depth', 'rgb'))


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('faults: [\n', r'^<schedule>:2: not valid YAML: while parsing a flow node: '
                        r"expected the node content, but found '<stream end>'$"),
        ('faults:\n  - {sensor: rgb, [a]: 1}\n', r'^<schedule>:2: not valid YAML: while '
                                                  r'constructing a mapping: found unhashable'),
        ('- 1\n', "a mapping with a 'faults' list"),
        ('fault: []\n', "unknown top-level keys \\['fault'\\]"),
        ('seed: -2\nfaults: []\n', 'seed must be a whole number'),
        ('faults: {sensor: rgb}\n', "'faults' must be a list"),
        ('faults:\n  - kill rgb\n', ':2: fault #1: an entry is a mapping'),
    ],
)
def test_malformed_documents(text, expected):
    with pytest.raises(ScheduleError, match=expected):
        Schedule.from_yaml(text)


def test_a_key_given_twice_is_refused_not_overridden_by_the_last():
    # YAML keeps the last value of a repeated key without a word: a second faults: block
    # dropped the first block's faults, a repeated sigma the first value
    two_blocks = ('faults:\n  - {sensor: rgb, kind: kill, start: 5, end: 10}\n'
                  'faults:\n  - {sensor: depth, kind: kill, start: 1, end: 2}\n')
    with pytest.raises(ScheduleError, match=r"^<schedule>:3: key 'faults' given twice .*line 1"):
        Schedule.from_yaml(two_blocks)
    with pytest.raises(ScheduleError, match=r"^<schedule>:4: key 'sigma' given twice .*line 3"):
        Schedule.from_yaml('faults:\n  - sensor: rgb\n    sigma: 3\n    sigma: 30\n')
    # a merge key overridden by the entry's own keys, and a recursive alias, are no repeats
    merged = Schedule.from_yaml(
        'faults:\n  - &rgb {sensor: rgb, kind: noise, sigma: 3, start: 1, end: 2}\n'
        '  - {<<: *rgb, sensor: depth, sigma: 4}\n')
    assert [(f.sensor, f.params['sigma']) for f in merged.faults] == [('rgb', 3), ('depth', 4)]
    with pytest.raises(ScheduleError, match='an entry is a mapping'):
        Schedule.from_yaml('faults: &a [*a]\n')


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('faults:\n  - {sensor: rgb, kind: kill, start: 0, end: 1}\n'
                    '  - {sensor: sonar, kind: kill, start: 0, end: 1}\n')
    with pytest.raises(ScheduleError, match=rf'^{path}:3: unknown sensor'):
        Schedule.from_yaml(path)
    with pytest.raises(ScheduleError, match=rf'^{path}:3: unknown sensor'):
        Schedule.from_yaml(str(path))
    with pytest.raises(ScheduleError, match='cannot read schedule'):
        Schedule.from_yaml(tmp_path / 'missing.yaml')
    binary = tmp_path / 'schedule.bag'
    binary.write_bytes(b'\xff\xfe\x00 not text')
    with pytest.raises(ScheduleError, match=rf"^cannot read schedule {binary}: 'utf-8' codec"):
        Schedule.from_yaml(binary)


def test_fault_built_in_code_is_checked_too():
    with pytest.raises(ScheduleError, match='must be after start'):
        Fault('rgb', FaultKind.KILL, 2.0, 1.0)
    with pytest.raises(ScheduleError, match='unknown sensor'):
        Schedule((Fault('sonar', FaultKind.KILL, 0.0, 1.0),))


@pytest.mark.parametrize('path', sorted((REPO / 'config').glob('dropout_*.yaml')), ids=str)
def test_shipped_schedules_are_valid(path):
    schedule = Schedule.from_yaml(path)
    assert schedule.faults


def test_demo_schedule_fails_each_sensor_once_one_pair_together_and_all_recover():
    schedule = Schedule.from_yaml(REPO / 'config' / 'dropout_demo.yaml')
    alone = {f.sensor for f in schedule.faults
             if not any(g.sensor != f.sensor and g.start_s < f.end_s and f.start_s < g.end_s
                        for g in schedule.faults)}
    assert alone == set(schedule.sensors)
    pairs = {(f.sensor, g.sensor) for f in schedule.faults for g in schedule.faults
             if f.sensor < g.sensor and (f.start_s, f.end_s) == (g.start_s, g.end_s)}
    assert pairs
