"""Rolling figures for the model's diagnostics: latency percentiles (p50 / p95 over recent
runs), the output rate and the callbacks' CPU share over the last seconds.

Each describes the recent past, never the whole run: after hours at 30 Hz an average since
start hardly moves when the rate halves, and it keeps a value per run.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class LatencyWindow:
    """The last ``size`` latencies in seconds, with their percentiles."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100), or None before the first value."""
        if not self._values:
            return None
        return float(np.percentile(np.fromiter(self._values, float), q))


class RecentRate:
    """Events per second over the last ``window_s`` seconds, from their intervals (as a
    sensor's rate is measured); 0 with fewer than two events in the window."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        if self._times and now < self._times[-1]:
            # The clock stepped back (NTP on wall time): events from before the step read
            # 0 Hz for as long as it, measured across it.
            self._times.clear()
        self._times.append(now)
        self._forget(now)

    def __len__(self) -> int:
        return len(self._times)

    def rate(self, now: float) -> float:
        self._forget(now)
        times = self._times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def _forget(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()


class RecentShare:
    """The share of time a running total (seconds of CPU, say) grew by, over about the last
    ``window_s`` seconds: from the newest reading at least that old, or the first one."""

    def __init__(self, now: float, total: float = 0.0, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._readings: deque[tuple[float, float]] = deque([(now, total)])

    def __len__(self) -> int:
        return len(self._readings)

    def update(self, now: float, total: float) -> float:
        """Note the total at ``now``; the share since the window's start."""
        readings = self._readings
        readings.append((now, total))
        while len(readings) > 2 and readings[1][0] <= now - self.window_s:
            readings.popleft()
        then, before = readings[0]
        return (total - before) / (now - then) if now > then else 0.0
