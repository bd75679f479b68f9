"""Depth images per REP 117/118: metres with an explicit validity mask.

REP 118 depth images come as ``16UC1`` (millimetres, 0 = no reading) or ``32FC1``
(metres; REP 117: NaN = invalid, -Inf = too close, +Inf = too far, and 0 is treated as
invalid as well since no sensor measures zero distance). The representation is metres
as float32 with every invalid pixel set to 0 and a separate boolean ``valid`` mask, so
the model never sees NaN and the health checks can count what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmp_ros.sensors.frame import SensorInputError

ACCEPTED_ENCODINGS = ('16UC1', '32FC1')
MM_PER_M = 1000.0


@dataclass(frozen=True)
class DepthSettings:
    """Which readings count as valid.

    Readings outside ``[min_m, max_m]`` are invalid (a sensor's rated range; beyond it
    values are noise, e.g. the >8 m readings of a Kinect v1).
    """

    min_m: float = 0.0
    max_m: float = math.inf

    def __post_init__(self) -> None:
        if not (self.min_m >= 0.0 and self.max_m > self.min_m):
            raise SensorInputError(
                f'depth range needs 0 <= min_m < max_m, got min_m={self.min_m}, '
                f'max_m={self.max_m}'
            )


def decode_depth(
    raw: np.ndarray, encoding: str, settings: DepthSettings = DepthSettings()
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 1) raw depth -> ((H, W, 1) float32 metres with invalid = 0, (H, W) bool valid)."""
    if encoding == '16UC1':
        # a division, not * 0.001: it gives the float32 nearest to mm / 1000, so a reading
        # of exactly max_m (7000 mm against 7.0 m) is not 1 ulp above it and dropped
        metres = np.divide(raw, np.float32(MM_PER_M), dtype=np.float32)
        valid = raw[..., 0] != 0
    elif encoding == '32FC1':
        metres = np.array(raw, dtype=np.float32)  # our own copy: invalid pixels get zeroed
        # NaN and ±Inf compare False to everything, so one comparison drops them and 0.
        valid = metres[..., 0] > 0.0
        valid &= metres[..., 0] < np.inf
    else:
        raise SensorInputError(
            f'depth accepts {", ".join(ACCEPTED_ENCODINGS)} (REP 118), got {encoding!r}'
        )
    plane = metres[..., 0]
    if settings.min_m > 0.0:
        valid &= plane >= settings.min_m
    if settings.max_m < math.inf:
        valid &= plane <= settings.max_m
    np.copyto(plane, 0.0, where=~valid)
    return metres, valid


def encode_depth(
    metres: np.ndarray, encoding: str = '16UC1', valid: np.ndarray | None = None
) -> np.ndarray:
    """Metres (H, W) or (H, W, 1) -> raw depth pixels (H, W) of ``encoding``.

    Invalid pixels (``~valid``, and anything not finite and positive) become 0 in
    ``16UC1`` and NaN in ``32FC1`` (REP 117's "no reading"; why it is missing is unknown
    here). In ``16UC1`` values that round to 0 mm or beyond 65.535 m cannot be stored and
    become 0 (invalid) too.
    """
    metres = np.asarray(metres, dtype=np.float32)
    if metres.ndim == 3 and metres.shape[2] == 1:
        metres = metres[..., 0]
    if metres.ndim != 2:
        raise SensorInputError(f'depth needs an (H, W) array of metres, got {metres.shape}')
    good = np.isfinite(metres) & (metres > 0.0)
    if valid is not None:
        good &= np.asarray(valid, dtype=bool).reshape(metres.shape)
    if encoding == '16UC1':
        millimetres = np.rint(np.where(good, metres, 0.0) * MM_PER_M)
        millimetres[millimetres > np.iinfo(np.uint16).max] = 0
        return millimetres.astype(np.uint16)
    if encoding == '32FC1':
        return np.where(good, metres, np.float32(np.nan)).astype(np.float32)
    raise SensorInputError(
        f'depth accepts {", ".join(ACCEPTED_ENCODINGS)} (REP 118), got {encoding!r}'
    )
