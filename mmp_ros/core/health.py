"""Per-sensor health: is this stream alive, sane, and trustworthy enough to feed the model?

One :class:`HealthMonitor` per sensor, fed with every message the node receives (a decoded
frame's :class:`~mmp_ros.sensors.frame.FrameStats`, or the reason it could not be decoded)
and asked for a :class:`HealthStatus` whenever the node needs one. Time is always passed in
(``now``, in seconds on the node's clock), never read here, so every rule and every
transition is testable with a fake clock and no sleeps.

The checks follow DESIGN §5:

=================  ============================================  ====================
check              rule                                          effect
=================  ============================================  ====================
never received     nothing since start                           ERROR, masked
stale              receive age > ``timeout_s``                   ERROR, masked
rate               windowed rate vs ``expected_rate_hz``         WARN / ERROR
stamp              in the future, repeated or going backwards    ERROR, masked
frozen             same content for ``frozen_frames`` frames     ERROR, masked
blank / saturated  all zero, or all at the encoding's maximum    ERROR, masked
invalid fraction   share of invalid pixels above warn / error    WARN / ERROR+masked
bad message        wrong encoding, size, truncated data          ERROR, masked
recovering         ``recovery_frames`` good frames after a fault WARN, still masked
=================  ============================================  ====================

A sensor that has been masked for any reason is used again only after ``recovery_frames``
consecutive good frames: a flapping stream therefore stays masked instead of toggling the
model's input at the rate of its faults.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from enum import Enum, IntEnum

import numpy as np

from mmp_ros.sensors.frame import FrameStats

# Arrival times the rate is measured from: the window prunes them by the clock, and a clock
# that stops while frames still arrive (a paused simulation) would let them grow without end.
# The parameters' largest window and rate (60 s at 1000 Hz) fit.
MAX_RATE_SAMPLES = 60_000
MAX_REASON_CHARS = 500  # a bad message's reason, as /diagnostics and the log carry it


def status_node(name: str, namespace: str) -> str:
    """What the /diagnostics statuses of node ``name`` in ``namespace`` begin with
    ('<node>: rgb'): the node's name in the root namespace ('mmp_segmentation', as
    diagnostic_updater names statuses), its fully qualified name in any other
    ('/robot1/mmp_segmentation', as diagnostic_updater's use_fqn does). Nodes of one name in
    two namespaces share the absolute /diagnostics, and rqt_robot_monitor and
    diagnostic_aggregator key statuses by name: without the namespace two robots' rgb
    statuses were one."""
    namespace = namespace.rstrip('/')
    return f'{namespace}/{name}' if namespace else name


class Level(IntEnum):
    """Severity, with the byte values of ``diagnostic_msgs/DiagnosticStatus``."""

    OK = 0
    WARN = 1
    ERROR = 2


class SensorState(str, Enum):
    """Where a sensor stands; every state but OK keeps the modality out of the model."""

    NEVER_SEEN = 'NEVER_SEEN'
    OK = 'OK'
    STALE = 'STALE'
    FROZEN = 'FROZEN'
    INVALID = 'INVALID'
    RECOVERING = 'RECOVERING'
    DISABLED = 'DISABLED'


class HealthConfigError(ValueError):
    """A health threshold is out of range; the message names the parameter and the range."""


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds of one sensor's checks (node parameters ``sensors.<modality>.*``)."""

    timeout_s: float = 0.5
    expected_rate_hz: float = 30.0  # 0 disables the rate check
    rate_window_s: float = 2.0
    rate_warn_ratio: float = 0.8  # measured / expected below this: WARN
    rate_error_ratio: float = 0.5  # below this: ERROR (frames are still used)
    future_tolerance_s: float = 0.5  # stamp ahead of the node's clock by more: ERROR
    frozen_frames: int = 10  # this many identical frames in a row: FROZEN
    # Mean |thumbnail difference| counted as identical; 0: identical only. A live camera facing
    # a still scene differs by as little as 1e-5 (its noise averaged over a cell, docs/node.md).
    frozen_max_difference: float = 0.0
    invalid_warn_fraction: float = 0.5
    invalid_error_fraction: float = 0.95
    recovery_frames: int = 5

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise HealthConfigError(f'{name}={getattr(self, name)!r} must be {rule}')

        need(self.timeout_s > 0, 'timeout_s', '> 0')
        need(self.expected_rate_hz >= 0, 'expected_rate_hz', '>= 0 (0 disables the check)')
        need(self.rate_window_s > 0, 'rate_window_s', '> 0')
        need(0 < self.rate_error_ratio <= 1, 'rate_error_ratio', 'in (0, 1]')
        need(
            self.rate_error_ratio <= self.rate_warn_ratio <= 1,
            'rate_warn_ratio',
            f'in [rate_error_ratio={self.rate_error_ratio}, 1]',
        )
        need(self.future_tolerance_s >= 0, 'future_tolerance_s', '>= 0')
        need(self.frozen_frames >= 2, 'frozen_frames', '>= 2')
        need(self.frozen_max_difference >= 0, 'frozen_max_difference', '>= 0')
        need(0 < self.invalid_error_fraction <= 1, 'invalid_error_fraction', 'in (0, 1]')
        need(
            0 <= self.invalid_warn_fraction <= self.invalid_error_fraction,
            'invalid_warn_fraction',
            f'in [0, invalid_error_fraction={self.invalid_error_fraction}]',
        )
        need(self.recovery_frames >= 1, 'recovery_frames', '>= 1')


@dataclass(frozen=True)
class HealthStatus:
    """One sensor's verdict at one instant: what diagnostics publish and what masks the model."""

    modality: str
    state: SensorState
    level: Level
    message: str
    usable: bool  # may the model use this modality's frames now?
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FrameVerdict:
    """What :meth:`HealthMonitor.observe` decided about one message."""

    accepted: bool  # the frame itself is sound and may be cached for the assembler
    reason: str  # why not, or '' when accepted
    judged: bool = True  # False: under way at a jump back of the clock, dropped unjudged


@dataclass
class _Counters:
    received: int = 0
    accepted: int = 0
    bad_message: int = 0
    bad_stamp: int = 0
    frozen: int = 0
    blank: int = 0
    saturated: int = 0
    invalid: int = 0
    stale_events: int = 0
    recoveries: int = 0


class HealthMonitor:
    """The health of one sensor stream, updated per message and evaluated at any ``now``."""

    def __init__(self, modality: str, config: HealthConfig | None = None) -> None:
        self.modality = modality
        self.config = config or HealthConfig()
        self.enabled = True
        self._state = SensorState.NEVER_SEEN
        self._fault = 'nothing received since start'
        self._warning = ''
        self._good_streak = 0
        self._last_receive: float | None = None
        self._last_stamp: float | None = None
        self._last_fingerprint: bytes | None = None
        self._last_thumbnail: np.ndarray | None = None
        self._identical_run = 1
        self._receive_times: deque[float] = deque(maxlen=MAX_RATE_SAMPLES)
        self._first_receive: float | None = None
        self._stale_reported = False
        self._counters = _Counters()
        self._jumped_from: float | None = None  # the clock's reading before it jumped back

    # --- configuration -----------------------------------------------------------------

    def reconfigure(self, **changes: float) -> None:
        """Change thresholds at run time; the new values apply from the next message."""
        self.config = replace(self.config, **changes)

    def disable(self) -> None:
        """A sensor this robot does not have: always masked, never an error."""
        self.enabled = False

    def restart(self, jumped_from: float | None = None, now: float | None = None) -> None:
        """Forget every frame and verdict, as at start-up; the settings stay. With
        ``jumped_from`` and ``now``: the node's clock jumped from the one to the other (back,
        or forward by more than a ``timeout_s``).

        A sensor healthy at the jump (OK or recovering, not stale) is not 'nothing received
        since start' until its first frame on the new time (every sensor ERROR, and the model
        'no usable sensor', at each pass of a looping bag): it is OK, as if its last message
        had come at the jump, and stale if none comes within ``timeout_s``. Its first frame is
        used at once. One at fault then is judged afresh from its next frame, at ERROR
        meanwhile, as at start-up.

        Frames that were under way at the jump still carry the old time: judged by the new
        clock they would be in the future, and mask the sensor for ``recovery_frames``. Until
        the stream's first frame on the new time, one stamped ahead of the clock but within
        ``timeout_s`` before ``jumped_from`` (or ``future_tolerance_s`` after it) is dropped
        unjudged.
        """
        healthy = (
            jumped_from is not None and now is not None
            and self._state in (SensorState.OK, SensorState.RECOVERING)
            and jumped_from - self._last_receive <= self.config.timeout_s
        )
        enabled = self.enabled
        self.__init__(self.modality, self.config)
        self.enabled = enabled
        self._jumped_from = jumped_from
        if healthy:
            self._state, self._fault, self._last_receive = SensorState.OK, '', now

    # --- input -------------------------------------------------------------------------

    def observe(
        self, stamp: float, now: float, stats: FrameStats, sim_time: bool = False,
        arrival: float | None = None,
    ) -> FrameVerdict:
        """Judge one decoded frame with header stamp ``stamp`` received at ``now``.

        ``sim_time``: the node's clock is a simulator's (or a bag's) ``/clock``. A simulation
        starts at time 0, and its cameras stamp their first frame 0.0 (Gazebo, Isaac Sim): on
        sim time a zero stamp is that first instant while the clock is within ``timeout_s``
        of it. On wall time, or later on sim time, a zero stamp is a driver that does not
        set it, and refused.

        ``arrival``: the instant it came on the clock arrivals are timed on (the age, the
        stale rule and the rate; ``status`` takes that clock's time too), when that is not
        the one stamps are judged by: the node's wall clock, which NTP steps, judges the
        stamps, and the monotonic clock times the arrivals. Default ``now``.
        """
        if self._from_before_jump(stamp, now):
            return FrameVerdict(False, 'stamped before the clock jumped back: not judged',
                                judged=False)
        self._note_arrival(now if arrival is None else arrival)
        fault = self._stamp_fault(stamp, now, sim_time) or self._content_fault(stats)
        if fault:
            return self._reject(fault)
        warning = ''
        if stats.invalid_fraction >= self.config.invalid_warn_fraction:
            warning = f'invalid pixels {stats.invalid_fraction:.0%}'
        self._accept(warning)
        return FrameVerdict(True, '')

    def observe_error(self, now: float, reason: str) -> FrameVerdict:
        """A message that could not be decoded (wrong encoding, size, truncated data),
        received at ``now`` on the clock arrivals are timed on (``observe``'s ``arrival``).

        A reason over ``MAX_REASON_CHARS`` is cut there: it may quote what the sender wrote
        (an encoding or format string of any length), and goes out in every diagnostics
        period and log line.
        """
        self._note_arrival(now)
        self._counters.bad_message += 1
        if len(reason) > MAX_REASON_CHARS:
            reason = f'{reason[:MAX_REASON_CHARS]}... ({len(reason):,} characters)'
        return self._reject(f'bad message: {reason}')

    # --- output ------------------------------------------------------------------------

    def status(self, now: float) -> HealthStatus:
        """The verdict at ``now``; staleness is a matter of time, so it is decided here.
        ``now`` is on the clock arrivals are timed on (``observe``'s ``arrival``)."""
        if not self.enabled:
            return HealthStatus(self.modality, SensorState.DISABLED, Level.OK, 'disabled', False,
                                {'state': SensorState.DISABLED.value})
        if self._state is SensorState.NEVER_SEEN:
            return self._status(now, self._state, Level.ERROR, self._fault)
        age = now - self._last_receive
        if age > self.config.timeout_s:
            if not self._stale_reported:
                self._stale_reported = True
                self._counters.stale_events += 1
            message = f'stale: no message for {age:.2f} s (timeout {self.config.timeout_s:g} s)'
            return self._status(now, SensorState.STALE, Level.ERROR, message)
        if self._state is SensorState.RECOVERING:
            message = (
                f'recovering from "{self._fault}": {self._good_streak}/'
                f'{self.config.recovery_frames} good frames'
            )
            return self._status(now, self._state, Level.WARN, message)
        if self._state is not SensorState.OK:
            return self._status(now, self._state, Level.ERROR, self._fault)
        level, problems = Level.OK, []
        if self._warning:
            level, problems = Level.WARN, [self._warning]
        rate_level, rate_problem = self._rate_check(now)
        if rate_problem:
            level = max(level, rate_level)
            problems.append(rate_problem)
        message = '; '.join(problems) if problems else 'ok'
        return self._status(now, self._state, level, message, usable=True)

    # --- rules -------------------------------------------------------------------------

    def _note_arrival(self, now: float) -> None:
        cfg = self.config
        self._counters.received += 1
        if self._last_receive is not None and now - self._last_receive > cfg.timeout_s:
            # The gap was a stale period whether or not anyone asked for a status meanwhile.
            if not self._stale_reported:
                self._counters.stale_events += 1
            self._mask('stale: messages stopped for '
                       f'{now - self._last_receive:.2f} s', SensorState.RECOVERING)
            # The rate describes a live stream: measure it afresh, not across the gap.
            self._receive_times.clear()
            self._first_receive = None
        elif self._last_receive is not None and now < self._last_receive:
            # The clock stepped back (NTP on wall time, which fires no jump callback): the
            # arrivals before the step, later than every one after it, counted in the window
            # for as long as the step (60 Hz for a minute, at 30 Hz and a 60 s step).
            self._receive_times.clear()
            self._first_receive = None
        self._stale_reported = False
        self._last_receive = now
        if self._first_receive is None:
            self._first_receive = now
        self._receive_times.append(now)
        while self._receive_times and self._receive_times[0] <= now - cfg.rate_window_s:
            self._receive_times.popleft()

    def _from_before_jump(self, stamp: float, now: float) -> bool:
        jumped_from, cfg = self._jumped_from, self.config
        if jumped_from is None:
            return False
        if (stamp - now > cfg.future_tolerance_s
                and jumped_from - cfg.timeout_s <= stamp <= jumped_from + cfg.future_tolerance_s):
            return True
        self._jumped_from = None  # a frame on the new time: every frame is judged from here
        return False

    def _stamp_fault(self, stamp: float, now: float, sim_time: bool) -> str:
        simulation_start = sim_time and stamp == 0.0 and now <= self.config.timeout_s
        if not math.isfinite(stamp) or (stamp <= 0.0 and not simulation_start):
            self._counters.bad_stamp += 1
            if stamp < 0.0:
                return f'stamp is negative: header.stamp is {stamp:.9f} s'
            if stamp != 0.0:
                return f'stamp is not finite: header.stamp is {stamp}'
            return 'stamp is zero: the driver does not set header.stamp'
        if stamp - now > self.config.future_tolerance_s:
            self._counters.bad_stamp += 1
            return f'stamp {stamp - now:.3f} s in the future'
        previous, self._last_stamp = self._last_stamp, stamp
        if previous is not None and stamp <= previous:
            self._counters.bad_stamp += 1
            if stamp == previous:
                return 'stamp repeated: same header.stamp as the previous message'
            return f'stamp went backwards by {previous - stamp:.3f} s'
        return ''

    def _content_fault(self, stats: FrameStats) -> str:
        cfg = self.config
        if stats.all_zero:
            self._counters.blank += 1
            return 'blank: every pixel is zero'
        if stats.saturated:
            self._counters.saturated += 1
            return 'saturated: every pixel is at full scale'
        if stats.invalid_fraction >= cfg.invalid_error_fraction:
            self._counters.invalid += 1
            return (f'invalid pixels {stats.invalid_fraction:.0%} '
                    f'(error above {cfg.invalid_error_fraction:.0%})')
        same = self._last_fingerprint is not None and (
            stats.fingerprint == self._last_fingerprint
            or _mean_abs_difference(stats.thumbnail, self._last_thumbnail)
            <= cfg.frozen_max_difference
        )
        self._last_fingerprint, self._last_thumbnail = stats.fingerprint, stats.thumbnail
        self._identical_run = self._identical_run + 1 if same else 1
        if self._identical_run >= cfg.frozen_frames:
            self._counters.frozen += 1
            return f'frozen: the same image {self._identical_run} times in a row'
        return ''

    def _rate_check(self, now: float) -> tuple[Level, str]:
        cfg = self.config
        if cfg.expected_rate_hz <= 0 or self._first_receive is None:
            return Level.OK, ''
        if now - self._first_receive < cfg.rate_window_s:
            return Level.OK, ''  # not a full window yet: no verdict
        rate = self._rate(now)
        ratio = rate / cfg.expected_rate_hz
        if ratio < cfg.rate_error_ratio:
            return Level.ERROR, f'rate {rate:.1f} Hz, expected {cfg.expected_rate_hz:g} Hz'
        if ratio < cfg.rate_warn_ratio:
            return Level.WARN, f'rate {rate:.1f} Hz, expected {cfg.expected_rate_hz:g} Hz'
        return Level.OK, ''

    def _rate(self, now: float) -> float:
        window = self.config.rate_window_s
        recent = [t for t in self._receive_times if t > now - window]
        if len(recent) >= 2 and recent[-1] > recent[0]:
            # Intervals, not a count: a count over the window gains or loses a whole frame
            # with arrival jitter (-25 % at 2 Hz in a 2 s window). Silence is timeout_s's.
            return (len(recent) - 1) / (recent[-1] - recent[0])
        span = min(window, now - self._first_receive) if self._first_receive is not None else 0
        return len(recent) / span if span > 0 else 0.0

    # --- transitions -------------------------------------------------------------------

    def _reject(self, reason: str) -> FrameVerdict:
        state = SensorState.FROZEN if reason.startswith('frozen') else SensorState.INVALID
        self._mask(reason, state)
        return FrameVerdict(False, reason)

    def _mask(self, reason: str, state: SensorState) -> None:
        if self._state is SensorState.NEVER_SEEN and state is SensorState.RECOVERING:
            return
        self._state = state
        self._fault = reason
        self._good_streak = 0

    def _accept(self, warning: str) -> None:
        self._counters.accepted += 1
        self._warning = warning
        if self._state in (SensorState.NEVER_SEEN, SensorState.OK):
            # A sensor that never failed has nothing to prove: used from its first frame.
            self._state = SensorState.OK
            return
        self._state = SensorState.RECOVERING
        self._good_streak += 1
        if self._good_streak >= self.config.recovery_frames:
            self._state = SensorState.OK
            self._counters.recoveries += 1

    def _status(
        self, now: float, state: SensorState, level: Level, message: str, usable: bool = False
    ) -> HealthStatus:
        values = self._values(now, state, message)
        return HealthStatus(self.modality, state, level, message, usable, values)

    def _values(self, now: float, state: SensorState, message: str) -> dict[str, str]:
        values = {'state': state.value}
        if self._last_receive is not None:
            values['age_s'] = f'{now - self._last_receive:.3f}'
            values['rate_hz'] = f'{self._rate(now):.2f}'
        if self._last_stamp is not None:
            values['last_stamp'] = f'{self._last_stamp:.6f}'
        if state is SensorState.STALE:
            # Silence is decided here, not by a message: the fault of an earlier state (one
            # recovered from long ago, or 'nothing received since start') is not why.
            values['reason'] = message
        elif state is not SensorState.OK and self._fault:
            values['reason'] = self._fault
        if self._warning:
            values['warning'] = self._warning
        values['expected_rate_hz'] = f'{self.config.expected_rate_hz:g}'
        values['timeout_s'] = f'{self.config.timeout_s:g}'
        values.update({k: str(v) for k, v in vars(self._counters).items()})
        return values


def _mean_abs_difference(a: np.ndarray, b: np.ndarray | None) -> float:
    if b is None or a.shape != b.shape:
        return math.inf
    with np.errstate(invalid='ignore'):
        diff = np.abs(np.nan_to_num(a, nan=0.0) - np.nan_to_num(b, nan=0.0))
    return float(diff.mean())
