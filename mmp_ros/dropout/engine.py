"""The dropout simulator's logic: which message goes out, when, and what it looks like.

The node (``mmp_ros/ros/dropout_node.py``) only converts: it hands every incoming message to
:meth:`DropoutEngine.on_message` and calls :meth:`DropoutEngine.on_tick` from a timer, passing
the seconds elapsed since its start; it publishes what comes back and publishes the fault
events of :meth:`DropoutEngine.take_events`. No clock is read here, so every behaviour is
tested with plain numbers.

Messages arrive as :class:`Received`: the serialized bytes, opaque to this module, plus a
decoder that runs at most once. A message that no active fault touches goes out as the same
:class:`Received` and the node republishes its bytes as they came; only faults that need the
header or the pixels decode it (kill, drop and delay never do; freeze reads headers only, and
truncate nothing: both go out as the message they came as, re-stamped or cut, so they work
alike on every message type the node forwards, raw or compressed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mmp_ros.dropout.faults import apply, withholds
from mmp_ros.dropout.schedule import Fault, FaultKind, Schedule
from mmp_ros.sensors.frame import SensorInputError
from mmp_ros.sensors.image import ImageFields


@dataclass(frozen=True)
class StampedImage:
    """An image message as this package rewrites it: header stamp, frame id, pixel fields.

    ``compression``: how the message came compressed, for the node to encode the rewritten
    fields the same way (opaque here, carried over to the rewritten image); None for a raw
    ``sensor_msgs/Image``.
    """

    stamp_ns: int
    frame_id: str
    fields: ImageFields
    compression: Any = None


class Received:
    """One message as it came from the source: its raw form and a once-only decoder.

    ``raw`` is whatever the node can republish unchanged (serialized CDR bytes in the node);
    ``image()`` decodes it on first use and caches the result. ``header``, when given, reads
    just ``(stamp_ns, frame_id)``, more cheaply than ``image()`` (which a compressed
    message's pixels make slow, and a corrupt payload makes fail).
    """

    __slots__ = ('_decode', '_header', '_image', 'raw')

    def __init__(
        self,
        raw: object,
        decode: Callable[[], StampedImage],
        header: Callable[[], tuple[int, str]] | None = None,
    ) -> None:
        self.raw = raw
        self._decode = decode
        self._header = header
        self._image: StampedImage | None = None

    def image(self) -> StampedImage:
        if self._image is None:
            self._image = self._decode()
        return self._image

    def header(self) -> tuple[int, str]:
        """``(stamp_ns, frame_id)`` of the message."""
        if self._image is None and self._header is not None:
            return self._header()
        image = self.image()
        return image.stamp_ns, image.frame_id

    @property
    def decoded(self) -> bool:
        return self._image is not None


@dataclass(frozen=True)
class Restamped:
    """``message`` as it came, under another header: a frozen frame, never decoded."""

    message: Received
    stamp_ns: int
    frame_id: str


@dataclass(frozen=True)
class Truncated:
    """``message`` with its header unchanged and its ``data`` cut to ``keep_fraction`` of its
    bytes (:func:`mmp_ros.dropout.faults.truncate`), never decoded."""

    message: Received
    keep_fraction: float


Outgoing = Received | StampedImage | Restamped | Truncated
"""What to publish: a :class:`Received` goes out byte for byte, a StampedImage re-encoded,
a :class:`Restamped` or :class:`Truncated` as its message with the one change."""


@dataclass(frozen=True)
class FaultEvent:
    """A fault window opening (``start``) or closing (``end``), as the engine applied it."""

    event: str  # 'start' | 'end'
    fault: Fault
    elapsed_s: float  # when the engine saw the boundary (>= the scheduled time, by < a tick)

    @property
    def scheduled_s(self) -> float:
        return self.fault.start_s if self.event == 'start' else self.fault.end_s


class ScheduleClock:
    """Seconds since the schedule's start, from the node clock's readings in nanoseconds.

    The start is the first non-zero reading (a node on ``use_sim_time`` reads 0 until the
    first ``/clock``; on wall time the node reads the monotonic clock). A reading before the
    previous one (simulated time jumping back when ``mmp_ros replay --loop --clock`` starts
    over) does not rewind the schedule: the elapsed time goes on from where it was, so an open
    window still closes on time and the later ones still open, once each.
    """

    def __init__(self) -> None:
        self.start_ns: int | None = None  # the first reading: time 0 of the schedule
        self._offset_ns = 0  # how far the clock has jumped back, in all
        self._last_ns = 0

    def elapsed(self, now_ns: int) -> float | None:
        """Seconds since the start (never decreasing); None while the clock reads 0."""
        if self.start_ns is None:
            if now_ns == 0:
                return None
            self.start_ns = now_ns
        elif now_ns < self._last_ns:
            self._offset_ns += self._last_ns - now_ns
        self._last_ns = now_ns
        return (now_ns + self._offset_ns - self.start_ns) / 1e9


@dataclass
class SensorStats:
    """Per-sensor counters: what the simulator did, for logs and tests."""

    received: int = 0
    passed: int = 0  # published unchanged (possibly late, under a delay fault)
    rewritten: int = 0  # published with other pixels, size, encoding, data or stamp
    withheld: int = 0  # killed, dropped, or pushed out of a full delay queue
    unreadable: int = 0  # a pixel fault met a message it could not read; passed unchanged
    last_error: str = ''


@dataclass
class _Channel:
    """One sensor's state: its faults in time order, the open one, freeze and delay state."""

    faults: list[tuple[Fault, np.random.Generator]]
    next_index: int = 0
    current: tuple[Fault, np.random.Generator] | None = None
    last: Received | None = None  # the source's most recent message (freeze's frame)
    frozen: Received | None = None
    delayed: deque[tuple[float, Received]] = field(default_factory=deque)
    stats: SensorStats = field(default_factory=SensorStats)


class DropoutEngine:
    """Applies a :class:`Schedule` to the message streams of its sensors.

    All times are seconds since the node started (``elapsed_s``), non-decreasing between
    calls. A window is open for ``start_s <= elapsed_s < end_s``; a call that jumps over a
    whole window still reports both of its events, so the published timeline is complete.
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._channels: dict[str, _Channel] = {sensor: _Channel([]) for sensor in schedule.sensors}
        for index, fault in enumerate(schedule.faults):
            # One generator per fault, seeded by its place in the schedule: the corruption of
            # one sensor does not depend on how many messages the others delivered.
            rng = np.random.default_rng([schedule.seed, index])
            self._channels[fault.sensor].faults.append((fault, rng))
        self._events: list[FaultEvent] = []

    @property
    def sensors(self) -> tuple[str, ...]:
        return self.schedule.sensors

    def stats(self, sensor: str) -> SensorStats:
        return self._channels[sensor].stats

    def active(self, sensor: str) -> Fault | None:
        """The fault open for ``sensor`` as of the last call, if any."""
        current = self._channels[sensor].current
        return None if current is None else current[0]

    def finished(self, elapsed_s: float) -> bool:
        """Every window has closed and nothing is held back."""
        return elapsed_s >= self.schedule.duration_s and not any(
            channel.delayed for channel in self._channels.values()
        )

    def take_events(self) -> list[FaultEvent]:
        """The window boundaries crossed since the previous call, in the order applied."""
        events, self._events = self._events, []
        return events

    def on_tick(self, elapsed_s: float) -> dict[str, list[Outgoing]]:
        """Advance every sensor to ``elapsed_s``: open/close windows, release delayed messages."""
        released: dict[str, list[Outgoing]] = {}
        for sensor, channel in self._channels.items():
            out = self._advance(channel, elapsed_s)
            out += self._release_due(channel, elapsed_s)
            if out:
                released[sensor] = out
        return released

    def on_message(self, sensor: str, message: Received, elapsed_s: float) -> list[Outgoing]:
        """What to publish now for ``message`` of ``sensor`` (possibly nothing, or more)."""
        channel = self._channels[sensor]
        channel.stats.received += 1
        out = self._advance(channel, elapsed_s)
        out += self._release_due(channel, elapsed_s)
        if channel.current is None:
            channel.last = message
            channel.stats.passed += 1
            return [*out, message]
        fault, rng = channel.current
        kind = fault.kind
        if kind is FaultKind.FREEZE:
            out += self._freeze(channel, message)
            channel.last = message  # what the source sent: a freeze right after holds it
            return out
        channel.last = message
        if kind is FaultKind.DELAY:
            channel.delayed.append((elapsed_s + fault.params['delay_s'], message))
            if len(channel.delayed) > fault.params['max_queue']:
                channel.delayed.popleft()
                channel.stats.withheld += 1
            return out
        if kind in (FaultKind.KILL, FaultKind.DROP):
            # Decided without decoding: a killed or dropped message is never looked at.
            if withholds(fault, rng):
                channel.stats.withheld += 1
                return out
            channel.stats.passed += 1
            return [*out, message]
        return out + self._rewrite(channel, fault, rng, message)

    def _rewrite(
        self, channel: _Channel, fault: Fault, rng: np.random.Generator, message: Received
    ) -> list[Outgoing]:
        if fault.kind is FaultKind.TRUNCATE:  # needs no readable pixels, nor any decoding
            channel.stats.rewritten += 1
            return [Truncated(message, fault.params['keep_fraction'])]
        try:
            image = message.image()  # a compressed message's pixels may not decode
            fields = apply(fault, image.fields, rng)
        except SensorInputError as error:
            channel.stats.unreadable += 1
            channel.stats.last_error = f'{fault.describe()}: {error}'
            channel.stats.passed += 1
            return [message]
        if fields is None:
            channel.stats.withheld += 1
            return []
        channel.stats.rewritten += 1
        return [replace(image, fields=fields)]

    def _freeze(self, channel: _Channel, message: Received) -> list[Outgoing]:
        """The frozen frame under this message's header: a stuck driver's output.

        Re-publishing on each incoming message keeps the source's rate and its stamps moving,
        as a camera whose pipeline hangs while its driver keeps publishing does. With no frame
        seen before the window, the first one inside it becomes the frozen frame. Only the
        incoming headers are read: the frozen frame goes out as it came (the same pixels, or
        the same compressed bytes), also one whose pixels would not decode.
        """
        if channel.frozen is None:
            channel.frozen = message
            channel.stats.passed += 1
            return [message]
        stamp_ns, frame_id = message.header()
        channel.stats.rewritten += 1
        return [Restamped(channel.frozen, stamp_ns, frame_id)]

    def _advance(self, channel: _Channel, elapsed_s: float) -> list[Outgoing]:
        """Close and open windows up to ``elapsed_s``; return messages a closing delay frees."""
        out: list[Outgoing] = []
        while True:
            if channel.current is not None:
                fault = channel.current[0]
                if elapsed_s < fault.end_s:
                    return out
                out += self._close(channel, elapsed_s)
                continue
            if channel.next_index >= len(channel.faults):
                return out
            fault, rng = channel.faults[channel.next_index]
            if elapsed_s < fault.start_s:
                return out
            channel.next_index += 1
            channel.current = (fault, rng)
            if fault.kind is FaultKind.FREEZE:
                channel.frozen = channel.last
            self._events.append(FaultEvent('start', fault, elapsed_s))

    def _close(self, channel: _Channel, elapsed_s: float) -> list[Outgoing]:
        """End the open window; messages still held by a delay go out at once, in order."""
        assert channel.current is not None
        fault = channel.current[0]
        channel.current = None
        channel.frozen = None
        flushed = [message for _, message in channel.delayed]
        channel.delayed.clear()
        channel.stats.passed += len(flushed)
        self._events.append(FaultEvent('end', fault, elapsed_s))
        return flushed

    @staticmethod
    def _release_due(channel: _Channel, elapsed_s: float) -> list[Outgoing]:
        out: list[Outgoing] = []
        while channel.delayed and channel.delayed[0][0] <= elapsed_s:
            out.append(channel.delayed.popleft()[1])
            channel.stats.passed += 1
        return out


__all__ = [
    'DropoutEngine',
    'FaultEvent',
    'Outgoing',
    'Received',
    'Restamped',
    'ScheduleClock',
    'SensorStats',
    'StampedImage',
    'Truncated',
]
