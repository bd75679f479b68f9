"""A dropout schedule: which sensor fails how, from when to when, read from YAML.

Times are seconds from the dropout node's start, so one schedule file reproduces the same
experiment on a live robot, a replayed bag or a synthetic source. Random faults (noise, drop,
a partial NaN flood) draw from a generator seeded per fault from the schedule's ``seed``, so
two runs fed the same frames inject exactly the same corruption.

The file format is documented in ``docs/dropout.md``; every mistake in a file is reported as a
:class:`ScheduleError` naming the file, the line, the sensor and what is wrong, before any
node starts.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmp_ros.errors import InputError
from mmp_ros.modalities import MODALITIES
from mmp_ros.sensors.image import ENCODINGS
from mmp_ros.yaml_keys import key_given_twice


class ScheduleError(InputError, ValueError):
    """A schedule that cannot be run; the message names the file, line and fault."""


class FaultKind(enum.Enum):
    """What happens to a sensor's messages while its fault window is open."""

    KILL = 'kill'  # nothing is published
    FREEZE = 'freeze'  # the last frame before the window, re-stamped with each new header
    BLANK = 'blank'  # every pixel zero (or the encoding's maximum: a saturated sensor)
    NAN = 'nan'  # float encodings: NaN pixels; integer encodings: zeros (their invalid value)
    NOISE = 'noise'  # additive Gaussian noise in the encoding's own units, clipped to its range
    DELAY = 'delay'  # each message held back by delay_s (bounded queue)
    DROP = 'drop'  # each message dropped with probability fraction
    RESIZE = 'resize'  # a valid image of another size
    ENCODING = 'encoding'  # a valid image in another encoding
    TRUNCATE = 'truncate'  # header fields unchanged, data cut short: a malformed message


# Per kind: parameter -> (default or REQUIRED, checker). A checker returns the cleaned value
# or raises ValueError with a sentence saying what the value must be.
REQUIRED = object()


def _positive_float(value: Any) -> float:
    number = _finite_float(value)
    if number <= 0:
        raise ValueError(f'must be > 0, got {value!r}')
    return number


def _fraction(value: Any) -> float:
    number = _finite_float(value)
    if not 0.0 < number <= 1.0:
        raise ValueError(f'must be in (0, 1], got {value!r}')
    return number


def _keep_fraction(value: Any) -> float:
    number = _finite_float(value)
    if not 0.0 <= number < 1.0:
        raise ValueError(f'must be in [0, 1) (1 would keep the whole message), got {value!r}')
    return number


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f'must be a whole number > 0, got {value!r}')
    return value


# A number with an exponent that YAML 1.1 (PyYAML) reads as text: without a dot in the
# mantissa (5e-2) or without a sign on the exponent (1.0e9, 2.5E3).
_TEXT_EXPONENT = re.compile(r'[-+]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)[eE][-+]?\d+')
# Largest side a resize fault makes: above any camera mode (8192 x 8192 rgb8 is 192 MiB).
MAX_IMAGE_SIDE = 8192


def _image_side(value: Any) -> int:
    side = _positive_int(value)
    if side > MAX_IMAGE_SIDE:
        raise ValueError(f'must be at most {MAX_IMAGE_SIDE} pixels, got {side}')
    return side


def _finite_float(value: Any) -> float:
    if isinstance(value, str) and _TEXT_EXPONENT.fullmatch(value.strip()):
        raise ValueError(f'must be a number, got the text {value!r}: YAML reads an exponent '
                         'as a number only with a dot in the mantissa and a sign on the '
                         'exponent (5.0e-2, 1.0e+9), or write it out (0.05)')
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'must be a number, got {value!r}')
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range: YAML reads any number of digits
        raise ValueError(f'must be finite, got a number of {len(str(value))} digits') from None
    if not math.isfinite(number):
        raise ValueError(f'must be finite, got {value!r}')
    return number


def _fill(value: Any) -> str:
    if value not in ('zero', 'max'):
        raise ValueError(f"must be 'zero' or 'max', got {value!r}")
    return value


def _encoding(value: Any) -> str:
    if not isinstance(value, str) or value not in ENCODINGS:
        raise ValueError(f'must be an image encoding such as rgb8, mono8, 16UC1, got {value!r}')
    return value


PARAMETERS: dict[FaultKind, dict[str, tuple[Any, Any]]] = {
    FaultKind.KILL: {},
    FaultKind.FREEZE: {},
    FaultKind.BLANK: {'fill': ('zero', _fill)},
    FaultKind.NAN: {'fraction': (1.0, _fraction)},
    FaultKind.NOISE: {'sigma': (REQUIRED, _positive_float)},
    FaultKind.DELAY: {'delay_s': (REQUIRED, _positive_float), 'max_queue': (100, _positive_int)},
    FaultKind.DROP: {'fraction': (REQUIRED, _fraction)},
    FaultKind.RESIZE: {'height': (REQUIRED, _image_side), 'width': (REQUIRED, _image_side)},
    FaultKind.ENCODING: {'encoding': (REQUIRED, _encoding)},
    FaultKind.TRUNCATE: {'keep_fraction': (0.5, _keep_fraction)},
}

# Keys of a fault entry that are not parameters.
_ENTRY_KEYS = ('sensor', 'kind', 'start', 'end', 'duration')


@dataclass(frozen=True)
class Fault:
    """One fault window of one sensor: active for ``start_s <= t < end_s``."""

    sensor: str
    kind: FaultKind
    start_s: float
    end_s: float
    params: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0  # line of the entry in its file (1-based); 0 when built in code

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and math.isfinite(self.end_s)):
            raise ScheduleError(f'{self.describe()}: start and end must be finite seconds')
        if self.start_s < 0:
            raise ScheduleError(f'{self.describe()}: start {self.start_s} s is before the start')
        if self.end_s <= self.start_s:
            raise ScheduleError(
                f'{self.describe()}: end {self.end_s} s must be after start {self.start_s} s'
            )

    def active(self, elapsed_s: float) -> bool:
        return self.start_s <= elapsed_s < self.end_s

    def describe(self) -> str:
        """``thermal noise [12, 18) s (sigma=200)``: for logs and error messages."""
        params = ', '.join(f'{k}={v}' for k, v in self.params.items())
        return (
            f'{self.sensor} {self.kind.value} [{self.start_s:g}, {self.end_s:g}) s'
            + (f' ({params})' if params else '')
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as published on the events topic."""
        return {
            'sensor': self.sensor,
            'kind': self.kind.value,
            'start_s': self.start_s,
            'end_s': self.end_s,
            'params': dict(self.params),
        }


@dataclass(frozen=True)
class Schedule:
    """Every fault of one experiment, sorted by start time, and the seed of its randomness."""

    faults: tuple[Fault, ...]
    seed: int = 0
    sensors: tuple[str, ...] = MODALITIES
    source: str = '<schedule>'

    def __post_init__(self) -> None:
        twice = sorted({s for s in self.sensors if self.sensors.count(s) > 1})
        if twice:
            raise ScheduleError(
                f'sensors {list(self.sensors)}: {twice} listed twice; each sensor is forwarded '
                'once'
            )
        for fault in self.faults:
            if fault.sensor not in self.sensors:
                raise ScheduleError(
                    f'{self._where(fault)}unknown sensor {fault.sensor!r} in '
                    f'{fault.describe()}; known sensors are {list(self.sensors)}'
                )
        by_sensor: dict[str, list[Fault]] = {}
        for fault in sorted(self.faults, key=lambda f: f.start_s):
            earlier = by_sensor.setdefault(fault.sensor, [])
            if earlier and fault.start_s < earlier[-1].end_s:
                raise ScheduleError(
                    f'{self._where(fault)}overlapping windows for sensor {fault.sensor!r}: '
                    f'{fault.describe()} starts before {earlier[-1].describe()}'
                    + (f' (line {earlier[-1].line})' if earlier[-1].line else '')
                    + ' has ended; a sensor has one fault at a time'
                )
            earlier.append(fault)
        # Faults that start together in the canonical sensor order (others after, by name),
        # not --sensors': a fault's place seeds its randomness, which the order the sensors
        # are listed in must not change.
        ordered = sorted(self.faults, key=lambda f: (
            f.start_s, MODALITIES.index(f.sensor) if f.sensor in MODALITIES else len(MODALITIES),
            f.sensor))
        object.__setattr__(self, 'faults', tuple(ordered))

    def _where(self, fault: Fault) -> str:
        return f'{self.source}:{fault.line}: ' if fault.line else f'{self.source}: '

    @property
    def duration_s(self) -> float:
        """When the last fault ends (0 for an empty schedule)."""
        return max((f.end_s for f in self.faults), default=0.0)

    def describe(self) -> str:
        """The timeline, one fault a line, for ``--check`` and the node's start-up log."""
        lines = [f'{self.source}: {len(self.faults)} faults, seed {self.seed}']
        lines += [f'  {f.describe()}' for f in self.faults]
        return '\n'.join(lines)

    @classmethod
    def from_yaml(
        cls, text_or_path: str | Path, sensors: Sequence[str] = MODALITIES
    ) -> Schedule:
        """Read a schedule from YAML text or from a file (a ``Path``, or a string naming one).

        A string is taken as a path when it has no newline and names an existing file, so
        both ``from_yaml(Path('config/dropout_demo.yaml'))`` and ``from_yaml(text)`` work.
        """
        if isinstance(text_or_path, Path) or (
            '\n' not in text_or_path and Path(text_or_path).is_file()
        ):
            path = Path(text_or_path)
            try:
                text = path.read_text(encoding='utf-8')
            except (OSError, UnicodeDecodeError) as error:
                raise ScheduleError(f'cannot read schedule {path}: {error}') from None
            return parse_schedule(text, sensors=sensors, source=str(path))
        return parse_schedule(text_or_path, sensors=sensors)


def parse_schedule(
    text: str, *, sensors: Sequence[str] = MODALITIES, source: str = '<schedule>'
) -> Schedule:
    """Parse and validate schedule YAML; see :meth:`Schedule.from_yaml`."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # One line, at the line where the parser gave up (str(error) spans several).
        mark = getattr(error, 'problem_mark', None)
        where = f'{source}:{mark.line + 1}' if mark else source
        parts = (getattr(error, 'context', None), getattr(error, 'problem', None))
        what = ': '.join(filter(None, parts)) or ' '.join(str(error).split())
        raise ScheduleError(f'{where}: not valid YAML: {what}') from None
    twice = key_given_twice(root)
    if twice:
        key, first, line = twice
        raise ScheduleError(f'{source}:{line}: key {key!r} given twice in one mapping (first '
                            f'on line {first}); YAML would keep only the last')
    if not isinstance(document, dict):
        raise ScheduleError(
            f"{source}: a schedule is a mapping with a 'faults' list (and optionally 'seed')"
        )
    unknown = sorted(set(document) - {'seed', 'faults'})
    if unknown:
        raise ScheduleError(f"{source}: unknown top-level keys {unknown}; expected 'seed', "
                            "'faults'")
    seed = document.get('seed', 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ScheduleError(f'{source}: seed must be a whole number >= 0, got {seed!r}')
    entries = document.get('faults')
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ScheduleError(f"{source}: 'faults' must be a list of fault entries")
    entry_nodes = _faults_node(root)
    faults: list[Fault] = []
    for index, entry in enumerate(entries):
        line = entry_nodes[index].start_mark.line + 1 if index < len(entry_nodes) else 0
        faults += _parse_entry(entry, line=line, index=index, source=source)
    return Schedule(tuple(faults), seed=seed, sensors=tuple(sensors), source=source)


def _faults_node(root: yaml.Node | None) -> list[yaml.Node]:
    """The YAML nodes of the fault entries, for their line numbers."""
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == 'faults' and isinstance(value, yaml.SequenceNode):
                return list(value.value)
    return []


def _parse_entry(entry: Any, *, line: int, index: int, source: str) -> list[Fault]:
    where = f'{source}:{line}: fault #{index + 1}' if line else f'{source}: fault #{index + 1}'
    if not isinstance(entry, dict):
        raise ScheduleError(f'{where}: an entry is a mapping with sensor, kind, start, end')
    for key in ('sensor', 'kind', 'start'):
        if key not in entry:
            raise ScheduleError(f'{where}: missing {key!r}')
    sensors = entry['sensor'] if isinstance(entry['sensor'], list) else [entry['sensor']]
    if not sensors or not all(isinstance(s, str) for s in sensors):
        raise ScheduleError(f'{where}: sensor must be a name or a list of names')
    where = f'{where} ({"+".join(sensors)})'
    if len(set(sensors)) != len(sensors):
        raise ScheduleError(f'{where}: a sensor is listed twice')
    try:
        kind = FaultKind(entry['kind'])
    except ValueError:
        known = ', '.join(k.value for k in FaultKind)
        raise ScheduleError(
            f'{where}: unknown kind {entry["kind"]!r}; known kinds: {known}'
        ) from None
    where = f'{where} {kind.value}'
    try:
        start = _finite_float(entry['start'])
    except ValueError as error:
        raise ScheduleError(f'{where}: start {error}') from None
    if ('end' in entry) == ('duration' in entry):
        raise ScheduleError(f"{where}: give exactly one of 'end' and 'duration'")
    end_key = 'end' if 'end' in entry else 'duration'
    try:
        if end_key == 'end':
            end = _finite_float(entry['end'])
        else:
            end = start + _positive_float(entry['duration'])
    except ValueError as error:
        raise ScheduleError(f'{where}: {end_key} {error}') from None
    spec = PARAMETERS[kind]
    extra = sorted(set(entry) - set(_ENTRY_KEYS) - set(spec))
    if extra:
        allowed = ', '.join(spec) or 'none'
        raise ScheduleError(
            f'{where}: unknown parameter(s) {extra}; {kind.value} takes: {allowed}'
        )
    params: dict[str, Any] = {}
    for name, (default, check) in spec.items():
        if name not in entry:
            if default is REQUIRED:
                raise ScheduleError(f'{where}: missing parameter {name!r}')
            params[name] = default
            continue
        try:
            params[name] = check(entry[name])
        except ValueError as error:
            raise ScheduleError(f'{where}: {name} {error}') from None
    faults = []
    for sensor in sensors:
        try:
            faults.append(Fault(sensor, kind, start, end, dict(params), line=line))
        except ScheduleError as error:
            raise ScheduleError(f'{source}:{line}: {error}' if line else str(error)) from None
    return faults


__all__ = ['PARAMETERS', 'Fault', 'FaultKind', 'Schedule', 'ScheduleError', 'parse_schedule']
