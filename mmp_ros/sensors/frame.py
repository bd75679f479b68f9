"""What one decoded sensor message becomes: the hand-off from the sensor layer to the core."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class SensorInputError(ValueError):
    """A message that cannot be decoded; the message says what is wrong with it.

    The node catches exactly this type, marks the sensor unhealthy with the message as the
    reason, and keeps running.
    """


@dataclass(frozen=True)
class FrameStats:
    """Cheap facts about the raw pixels that the health checks need (DESIGN §5).

    ``all_zero`` and ``saturated`` look at the colour channels of ``rgba8``/``bgra8`` (and
    their 16-bit forms) alone: alpha is no measurement (a capped camera sends black with
    alpha 255).
    """

    fingerprint: bytes  # digest of the raw pixel bytes (row padding excluded): frozen streams
    all_zero: bool  # every raw pixel is zero: blank
    saturated: bool  # every raw pixel at full scale: the encoding's, or a 10/12/14-bit sensor's
    # share of pixels outside ``valid``: depth NaN, 0, ±Inf or out of range; float thermal
    # non-finite or below absolute zero; Planck thermal and float polarization non-finite
    invalid_fraction: float
    thumbnail: np.ndarray  # (16, 16) float32 of the representation: near-identical frames


@dataclass(frozen=True)
class SensorFrame:
    """One decoded frame in the modality's physical representation (docs/architecture.md)."""

    modality: str
    data: np.ndarray  # (H, W, C) float32
    valid: np.ndarray | None  # (H, W) bool where the modality has invalid pixels, else None
    stats: FrameStats

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.data.shape[0], self.data.shape[1]
