"""Raw sensor encodings -> the sensor representation of docs/architecture.md, as (C, H, W).

These are plain-numpy stand-ins for the shared decoders of ``mmp_ros.sensors``; each modality
is one small function, so switching a modality to the shared decoder is a one-line change in
:func:`decode_frame`.
"""

from __future__ import annotations

import cv2
import numpy as np

from training.data.physics import KELVIN, PlanckCalibration
from training.data.render import IMX250MZR_LAYOUT, POLARIZATION_ANGLES, THERMAL, SensorImages


def decode_rgb(rgb8: np.ndarray) -> np.ndarray:
    """rgb8 (H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(rgb8.transpose(2, 0, 1), dtype=np.float32) * np.float32(1 / 255)


def decode_depth_mm(depth_mm: np.ndarray) -> np.ndarray:
    """16UC1 millimetres (0 invalid) -> (1, H, W) float32 metres, invalid = 0."""
    return depth_mm.astype(np.float32)[None] * np.float32(1e-3)


def decode_depth_m(depth_m: np.ndarray) -> np.ndarray:
    """32FC1 metres (NaN, ±Inf or 0 invalid) -> (1, H, W) float32 metres, invalid = 0."""
    depth = depth_m.astype(np.float32, copy=True)
    depth[~np.isfinite(depth)] = 0.0
    return depth[None]


def polarization_from_intensities(intensities: np.ndarray) -> np.ndarray:
    """Four polarizer intensities (4, H, W) at 0, 45, 90, 135 deg -> (3, H, W) float32.

    S0 = (I0 + I45 + I90 + I135) / 2, S1 = I0 - I90, S2 = I45 - I135; the representation is
    (DoLP cos 2φ, DoLP sin 2φ, DoLP) = (S1 / S0, S2 / S0, |(S1, S2)| / S0), with DoLP clipped
    to 1 (noise can push it over) and everything 0 where nothing was measured.
    """
    i0, i45, i90, i135 = (intensities[k].astype(np.float32) for k in range(4))
    s0 = (i0 + i45 + i90 + i135) * np.float32(0.5)
    s1 = i0 - i90
    s2 = i45 - i135
    inv = np.where(s0 > 0, np.float32(1.0) / np.maximum(s0, np.float32(1e-6)), np.float32(0))
    dolp = np.sqrt(s1 * s1 + s2 * s2) * inv
    shrink = np.where(dolp > 1, np.float32(1.0) / np.maximum(dolp, np.float32(1e-6)), 1)
    out = np.stack([s1 * inv * shrink, s2 * inv * shrink, np.minimum(dolp, 1)])
    return out.astype(np.float32, copy=False)


def demosaic(raw: np.ndarray, layout=IMX250MZR_LAYOUT) -> np.ndarray:
    """2x2 polarizer mosaic (H, W) -> four full-resolution intensities (4, H, W) float32.

    Each angle's samples (one pixel in four) are spread by normalized bilinear convolution,
    which keeps the measured pixels exact and fills the rest from their neighbours.
    """
    h, w = raw.shape
    kernel = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], np.float32)
    out = np.empty((4, h, w), dtype=np.float32)
    for dr in (0, 1):
        for dc in (0, 1):
            sparse = np.zeros((h, w), dtype=np.float32)
            sparse[dr::2, dc::2] = raw[dr::2, dc::2]
            weight = np.zeros((h, w), dtype=np.float32)
            weight[dr::2, dc::2] = 1.0
            num = cv2.filter2D(sparse, -1, kernel, borderType=cv2.BORDER_REFLECT)
            den = cv2.filter2D(weight, -1, kernel, borderType=cv2.BORDER_REFLECT)
            out[POLARIZATION_ANGLES.index(layout[dr][dc])] = num / den
    return out


def decode_thermal(counts: np.ndarray, calibration: PlanckCalibration = THERMAL) -> np.ndarray:
    """Radiometric mono16 counts -> (1, H, W) float32 degrees Celsius (Planck inversion)."""
    kelvin = calibration.kelvin_from_counts(np.maximum(counts.astype(np.float64), 1.0))
    return (kelvin - KELVIN).astype(np.float32)[None]


def decode_frame(images: SensorImages, polarization: str = 'intensities') -> dict[str, np.ndarray]:
    """Every modality of a rendered frame in the sensor representation, (C, H, W) float32.

    ``polarization``: 'intensities' decodes the four polarizer planes, 'mosaic' goes through
    the raw 2x2 mosaic and :func:`demosaic`, as a node reading the camera's raw topic would.
    """
    if polarization == 'mosaic':
        pol = polarization_from_intensities(demosaic(images.polarization_mosaic))
    elif polarization == 'intensities':
        pol = polarization_from_intensities(images.polarization)
    else:
        raise ValueError(
            f"polarization source must be 'intensities' or 'mosaic', not {polarization!r}"
        )
    return {
        'rgb': decode_rgb(images.rgb),
        'depth': decode_depth_mm(images.depth_mm),
        'polarization': pol,
        'thermal': decode_thermal(images.thermal),
    }
