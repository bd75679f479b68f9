"""Put together what the model sees at one instant, whatever the sensors are doing.

An N-way approximate-time synchronizer emits only when every input has a message, so one
dead sensor stops all output. :class:`FrameAssembler` instead keeps a small cache per
modality and builds a :class:`FrameBundle` around an *anchor* stamp: for each modality, the
cached frame nearest in stamp within that modality's ``max_age_s``, provided its sensor is
usable now; everything else is missing, and says why. It holds no clock and no ROS types:
the node feeds it frames and health verdicts and asks for the bundle to infer on.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmp_ros.modalities import check_modalities
from mmp_ros.sensors.frame import SensorFrame

ANCHOR_FRESHEST = 'freshest'  # the newest frame of any usable modality
ANCHOR_TIMER = 'timer'  # the caller's clock; one bundle per call


class AssemblerConfigError(ValueError):
    """An assembler setting is invalid; the message names it."""


@dataclass(frozen=True)
class StampedFrame:
    """A decoded frame with the header it came with."""

    stamp: float  # header.stamp in seconds
    frame_id: str
    frame: SensorFrame
    header: Any = None  # the message header, opaque here: outputs echo the anchor's exactly


@dataclass(frozen=True)
class FrameBundle:
    """The model's input at one anchor stamp: real frames, and what is missing and why."""

    modalities: tuple[str, ...]  # canonical order, the order of ``available``
    anchor: str  # the modality whose frame set the stamp, or 'timer'
    stamp: float  # the anchor stamp: the header stamp of every output
    frame_id: str  # the anchor frame's frame_id: the header frame_id of every output
    camera: str  # the modality whose frame gave frame_id: the outputs are on its image grid
    frames: dict[str, StampedFrame]  # only the available modalities
    missing: dict[str, str]  # modality -> why it is not in this bundle
    header: Any = None  # the anchor frame's header; None for the timer anchor

    @property
    def available(self) -> np.ndarray:
        """(M,) bool in ``modalities`` order."""
        return np.array([m in self.frames for m in self.modalities], dtype=bool)


class FrameAssembler:
    """Per-modality frame caches and the anchor rule that turns them into bundles."""

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        anchor: str = 'rgb',
        max_age_s: float | Mapping[str, float] = 0.1,
        cache_depth: int = 5,
    ) -> None:
        self.modalities = check_modalities(modalities)
        if cache_depth < 1:
            raise AssemblerConfigError(f'cache_depth={cache_depth} must be >= 1')
        self._cache_depth = cache_depth
        self._caches: dict[str, list[StampedFrame]] = {m: [] for m in self.modalities}
        self._max_age: dict[str, float] = {}
        self.set_anchor(anchor)
        self.set_max_age(max_age_s)
        self._last_anchor_stamp = -np.inf
        # Each stream's newest stamp ever cached, and the streams whose clock went back behind
        # it after a fault (a bag loop, a driver restart): their next anchor frame is not held
        # against the earlier outputs' stamps, until one of their frames is in an output.
        self._newest: dict[str, float] = {}
        self._restarted: set[str] = set()
        self._anchored: dict[str, float] = {}  # each stream's newest frame that anchored a bundle
        # Why the timer's last instant gave no bundle though some sensor was usable: no frame
        # within its max_age_s (cameras on a clock off the node's, a replay's old stamps), by
        # modality, and the first such instant since the last bundle; empty once one is made.
        self.unmatched: dict[str, str] = {}
        self.unmatched_since = 0.0

    # --- configuration -----------------------------------------------------------------

    def set_anchor(self, anchor: str) -> None:
        known = (*self.modalities, ANCHOR_FRESHEST, ANCHOR_TIMER)
        if anchor not in known:
            raise AssemblerConfigError(f'anchor {anchor!r} is not one of {list(known)}')
        self.anchor = anchor
        self.unmatched = {}

    def set_max_age(self, max_age_s: float | Mapping[str, float]) -> None:
        if isinstance(max_age_s, Mapping):
            unknown = set(max_age_s) - set(self.modalities)
            if unknown:
                raise AssemblerConfigError(f'max_age_s for unknown modalities {sorted(unknown)}')
            ages = {m: float(max_age_s.get(m, self._max_age.get(m, 0.1))) for m in self.modalities}
        else:
            ages = dict.fromkeys(self.modalities, float(max_age_s))
        bad = {m: a for m, a in ages.items() if not a > 0}
        if bad:
            raise AssemblerConfigError(f'max_age_s must be > 0, got {bad}')
        self._max_age = ages

    # --- input -------------------------------------------------------------------------

    def add(
        self, modality: str, stamp: float, frame: SensorFrame, frame_id: str = '',
        header: Any = None,
    ) -> bool:
        """Cache a frame; a stamp already cached for that modality is ignored (False)."""
        cache = self._caches[modality]
        newest = self._newest.get(modality, -np.inf)
        if not cache and stamp < newest:  # cleared after a fault, and on an earlier clock
            self._restarted.add(modality)
            self._anchored.pop(modality, None)
        self._newest[modality] = max(newest, stamp)
        stamps = [f.stamp for f in cache]
        index = bisect.bisect_left(stamps, stamp)
        if index < len(cache) and cache[index].stamp == stamp:
            return False
        cache.insert(index, StampedFrame(stamp, frame_id, frame, header))
        del cache[: max(0, len(cache) - self._cache_depth)]
        return True

    def clear(self, modality: str) -> None:
        """Forget a modality's frames (its sensor failed: nothing before the fault is reused)."""
        self._caches[modality].clear()

    def latest(self, modality: str) -> StampedFrame | None:
        cache = self._caches[modality]
        return cache[-1] if cache else None

    # --- output ------------------------------------------------------------------------

    def assemble(self, usable: Mapping[str, bool], now: float | None = None) -> FrameBundle | None:
        """The bundle at the current anchor, or None when there is nothing new to infer on.

        ``usable`` holds each sensor's health verdict; ``now`` is needed only by the timer
        anchor. A frame anchor is used once: asking again before a newer anchor frame
        arrives returns None, so the model never runs twice on the same input; so is a timer
        instant (a clock that has not moved since the last bundle gives None).
        """
        candidates = {
            m: self._caches[m][-1] for m in self.modalities if usable.get(m) and self._caches[m]
        }
        if not candidates:
            return None
        if self.anchor == ANCHOR_TIMER:
            if now is None:
                raise AssemblerConfigError("the 'timer' anchor needs now")
            if now == self._last_anchor_stamp:
                # The clock stands still (a paused simulation, the end of a bag on /clock):
                # the same instant again would be the same bundle, under the same stamp.
                return None
            anchor, stamp, header = ANCHOR_TIMER, now, None
            camera = max(candidates, key=lambda m: candidates[m].stamp)
            frame_id = candidates[camera].frame_id
        else:
            if self.anchor in candidates:
                anchor = self.anchor
            else:  # the preferred anchor is down: the freshest usable stream takes over
                anchor = max(candidates, key=lambda m: candidates[m].stamp)
            camera, chosen = anchor, candidates[anchor]
            stamp, frame_id, header = chosen.stamp, chosen.frame_id, chosen.header
            # Its newest frame at or before the last output: within its max_age_s, the next
            # one is due (wait); further, its clock is off the one that anchored the last
            # output (a camera whose stamps lag the others' by seconds), and waiting for it
            # to catch up would stall the outputs as long: it anchors at its own time.
            behind = self._last_anchor_stamp - stamp
            if anchor not in self._restarted and (
                0 <= behind <= self._max_age[anchor]
                or stamp <= self._anchored.get(anchor, -np.inf)
            ):
                return None
        frames: dict[str, StampedFrame] = {}
        missing: dict[str, str] = {}
        for m in self.modalities:
            if not usable.get(m):
                missing[m] = 'sensor unhealthy'
                continue
            nearest = self._nearest(m, stamp)
            if nearest is None:
                missing[m] = 'no frame received'
            elif abs(nearest.stamp - stamp) > self._max_age[m]:
                missing[m] = (
                    f'nearest frame {nearest.stamp - stamp:+.3f} s from the anchor '
                    f'(max_age_s {self._max_age[m]:g})'
                )
            else:
                frames[m] = nearest
        if not frames:  # the timer's instant alone: a frame anchor is in its own bundle
            if not self.unmatched or stamp < self.unmatched_since:  # or the clock went back
                self.unmatched_since = stamp
            self.unmatched = missing
            return None
        self.unmatched = {}
        # A stream in this bundle is on the outputs' time now, whether it anchored it or not.
        self._restarted.difference_update(frames)
        self._last_anchor_stamp = stamp
        if anchor != ANCHOR_TIMER:
            self._anchored[anchor] = stamp
        return FrameBundle(
            self.modalities, anchor, stamp, frame_id, camera, frames, missing, header
        )

    def _nearest(self, modality: str, stamp: float) -> StampedFrame | None:
        cache = self._caches[modality]
        if not cache:
            return None
        return min(cache, key=lambda f: abs(f.stamp - stamp))
