"""How faithfully a replay reproduced a bag's timing: compare inter-arrival times."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

import numpy as np


@dataclass(frozen=True)
class TimingReport:
    compared: int  # gaps (consecutive pairs both present) or messages compared
    error_p50_ms: float
    error_p90_ms: float
    error_p95_ms: float
    error_max_ms: float


def compare_intervals(bag_ns: Mapping[int, int], arrival_s: Mapping[int, float]) -> TimingReport:
    """|received gap - bag gap| for each pair of consecutive messages that both arrived.

    ``bag_ns``: message index -> bag timestamp; ``arrival_s``: index -> monotonic arrival.
    """
    indices = sorted(arrival_s)
    errors = [
        abs((arrival_s[b] - arrival_s[a]) - (bag_ns[b] - bag_ns[a]) / 1e9) * 1e3
        for a, b in pairwise(indices)
        if b == a + 1
    ]
    return _report(np.array(errors))


class Lateness:
    """How late a player published, over its most recent ``window`` messages."""

    def __init__(self, window: int = 10_000) -> None:
        self._late_ms: deque[float] = deque(maxlen=window)
        self.count = 0

    def add(self, late_s: float) -> None:
        self._late_ms.append(max(0.0, late_s) * 1e3)
        self.count += 1

    def describe(self) -> str:
        if not self._late_ms:
            return 'nothing published'
        p50, p95 = np.percentile(self._late_ms, [50, 95])
        over = f' (over the last {len(self._late_ms)})' if self.count > len(self._late_ms) else ''
        return (f'published {self.count} messages, late by p50 {p50:.2f} ms, p95 {p95:.2f} ms, '
                f'max {max(self._late_ms):.2f} ms{over}')


def compare_offsets(bag_ns: Mapping[int, int], times_s: Mapping[int, float]) -> TimingReport:
    """|time - bag time| after removing the median offset: drift and lateness over the run.

    Gap errors cannot see a player that adds a little to every wait (its gaps are all about
    right, its schedule slides); offsets from one reference can.
    """
    offsets = np.array([times_s[i] - bag_ns[i] / 1e9 for i in sorted(times_s)])
    return _report(np.abs(offsets - np.median(offsets)) * 1e3 if offsets.size else offsets)


def _report(errors_ms: np.ndarray) -> TimingReport:
    if not errors_ms.size:
        return TimingReport(0, *[float('nan')] * 4)
    p50, p90, p95 = np.percentile(errors_ms, [50, 90, 95])
    return TimingReport(errors_ms.size, float(p50), float(p90), float(p95), float(errors_ms.max()))
