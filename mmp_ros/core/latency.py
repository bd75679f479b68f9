"""Rolling latency percentiles for the model's diagnostics (p50 / p95 over recent runs)."""

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
