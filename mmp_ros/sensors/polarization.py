"""Polarization: raw 2x2 polarizer mosaics (or precomputed AoLP/DoLP) to the model's 3 channels.

A division-of-focal-plane sensor (Sony IMX250MZR and relatives) puts a linear polarizer
at 0, 45, 90 or 135 degrees over each pixel of every 2x2 block. From the four intensities
of a block, with the conventions of the shared samples' README:

    S0 = (I0 + I45 + I90 + I135) / 2,   S1 = I0 - I90,   S2 = I45 - I135
    DoLP = sqrt(S1^2 + S2^2) / S0  (clipped to [0, 1], 0 where S0 = 0)
    AoLP = atan2(S2, S1) / 2 mod pi

AoLP is pi-periodic, so the model sees (DoLP cos 2 AoLP, DoLP sin 2 AoLP, DoLP): smooth
across 0 = pi, and well defined where DoLP -> 0 and the angle is noise. The first two
channels are simply S1/S0 and S2/S0 (scaled down where DoLP was clipped).

Resolution (``PolarizationSettings.resolution``), measured in ``scripts/bench_sensors.py``:

- ``half`` (default): one output pixel per 2x2 block, no interpolation. Each angle is
  sampled where it was measured; the model resizes its inputs anyway. Fastest.
- ``quarter``: one output pixel per 4x4 block (the four same-angle pixels averaged before
  the Stokes parameters): less noise, the grid of the shared samples' aolp.npy/dolp.npy.
- ``full``: bilinear demosaicing of each angle to every pixel (OpenCV's Bayer
  interpolation, as polanalyser does), registered to the mosaic's pixel grid; about four
  times the work, and interpolation invents false polarization at sharp edges.

Precomputed input: a 2-channel float image (``32FC2``/``64FC2``) with channel 0 = AoLP in
radians (any real value, taken mod pi) and channel 1 = DoLP in [0, 1] (clipped), e.g. what
a vendor driver publishes after on-camera processing. It keeps its own resolution; the
``resolution`` setting applies to mosaics only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mmp_ros.sensors.frame import SensorInputError

ANGLES = (0, 45, 90, 135)  # the order of intensity stacks in this module
IMX250MZR = ((90, 45), (135, 0))  # (row, col) of a 2x2 block -> polarizer angle, degrees
MOSAIC_ENCODINGS = ('mono8', '8UC1', 'mono16', '16UC1')
PRECOMPUTED_ENCODINGS = ('32FC2', '64FC2')
ACCEPTED_ENCODINGS = MOSAIC_ENCODINGS + PRECOMPUTED_ENCODINGS
RESOLUTIONS = ('half', 'quarter', 'full')

# OpenCV's Bayer demosaicing interpolates the two "colour" sites of a 2x2 block to every
# pixel: for each code, (channel of the BGR output, (row, col) of the site it comes from).
_BAYER_SITES = {
    cv2.COLOR_BayerBG2BGR: ((2, (0, 0)), (0, (1, 1))),
    cv2.COLOR_BayerGR2BGR: ((0, (0, 1)), (2, (1, 0))),
}


@dataclass(frozen=True)
class PolarizationSettings:
    """Mosaic layout and output resolution (see the module docstring)."""

    layout: tuple[tuple[int, int], tuple[int, int]] = IMX250MZR
    resolution: str = 'half'

    def __post_init__(self) -> None:
        try:
            well_formed = len(self.layout) == 2 and all(len(row) == 2 for row in self.layout)
            angles = sorted(angle for row in self.layout for angle in row)
        except TypeError:
            well_formed = False
        if not well_formed or angles != sorted(ANGLES):
            raise SensorInputError(
                f'mosaic layout must place 0, 45, 90 and 135 deg once each in a 2x2 block, '
                f'got {self.layout}'
            )
        if self.resolution not in RESOLUTIONS:
            raise SensorInputError(
                f'polarization resolution must be one of {RESOLUTIONS}, got '
                f'{self.resolution!r}'
            )

    def site(self, angle: int) -> tuple[int, int]:
        """(row, col) of the pixel with polarizer ``angle`` inside a 2x2 block."""
        for r, row in enumerate(self.layout):
            for c, value in enumerate(row):
                if value == angle:
                    return r, c
        raise SensorInputError(f'no {angle} deg pixel in layout {self.layout}')


def _check_mosaic(mosaic: np.ndarray) -> np.ndarray:
    if mosaic.ndim == 3 and mosaic.shape[2] == 1:
        mosaic = mosaic[..., 0]
    if mosaic.ndim != 2:
        raise SensorInputError(f'a polarizer mosaic is one channel, got shape {mosaic.shape}')
    height, width = mosaic.shape
    if height % 2 or width % 2:
        raise SensorInputError(
            f'a 2x2 polarizer mosaic needs even width and height, got {width}x{height}'
        )
    return mosaic


def mosaic_intensities(
    mosaic: np.ndarray, settings: PolarizationSettings | None = None
) -> np.ndarray:
    """(H, W) mosaic -> (4, H', W') float32 intensities in :data:`ANGLES` order.

    H' x W' is H/2 x W/2 ('half'), H/4 x W/4 ('quarter'; odd leftover 2x2 blocks at the
    bottom/right edge are dropped) or H x W ('full'); for both, a mosaic under 4x4 is refused.
    """
    settings = settings or PolarizationSettings()
    mosaic = _check_mosaic(mosaic)
    if settings.resolution == 'full':
        if min(mosaic.shape) < 4:  # OpenCV's bilinear demosaicing returns black below 3x3
            raise SensorInputError(
                f'full resolution needs a mosaic of at least 4x4 pixels, got '
                f'{mosaic.shape[1]}x{mosaic.shape[0]}'
            )
        return _demosaic_bilinear(mosaic, settings)
    stack = np.empty((4, mosaic.shape[0] // 2, mosaic.shape[1] // 2), dtype=np.float32)
    for index, angle in enumerate(ANGLES):
        r, c = settings.site(angle)
        stack[index] = mosaic[r::2, c::2]
    if settings.resolution == 'quarter':
        h, w = stack.shape[1] // 2 * 2, stack.shape[2] // 2 * 2
        if h == 0 or w == 0:
            raise SensorInputError(
                f'quarter resolution needs a mosaic of at least 4x4 pixels, got '
                f'{mosaic.shape[1]}x{mosaic.shape[0]}'
            )
        # four strided adds: several times faster than reshape(...).mean(axis=(2, 4))
        total = stack[:, 0:h:2, 0:w:2] + stack[:, 1:h:2, 0:w:2]
        total += stack[:, 0:h:2, 1:w:2]
        total += stack[:, 1:h:2, 1:w:2]
        stack = np.multiply(total, np.float32(0.25), out=total)
    return stack


def _demosaic_bilinear(mosaic: np.ndarray, settings: PolarizationSettings) -> np.ndarray:
    if mosaic.dtype not in (np.uint8, np.uint16):
        raise SensorInputError(f'demosaicing needs uint8 or uint16, got {mosaic.dtype}')
    mosaic = np.ascontiguousarray(mosaic)
    angle_at = {(r, c): angle for r, row in enumerate(settings.layout) for c, angle in
                enumerate(row)}
    stack = np.empty((4, *mosaic.shape), dtype=np.float32)
    for code, sites in _BAYER_SITES.items():
        interpolated = cv2.cvtColor(mosaic, code)
        for channel, site in sites:
            stack[ANGLES.index(angle_at[site])] = interpolated[..., channel]
    return stack


def stokes_from_intensities(intensities: np.ndarray) -> tuple[np.ndarray, ...]:
    """(4, ...) intensities at 0/45/90/135 deg -> linear Stokes (S0, S1, S2)."""
    i0, i45, i90, i135 = intensities
    s0 = (i0 + i45 + i90 + i135) * np.float32(0.5)
    return s0, i0 - i90, i45 - i135


def representation_from_stokes(s0: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Stokes -> (H, W, 3) float32 (DoLP cos 2 AoLP, DoLP sin 2 AoLP, DoLP).

    Computed on contiguous planes and interleaved once at the end: strided per-channel
    arithmetic on the (H, W, 3) output is several times slower.
    """
    with np.errstate(divide='ignore'):
        inverse = np.reciprocal(np.asarray(s0, dtype=np.float32))
    inverse[~np.isfinite(inverse) | (inverse < 0)] = 0.0  # S0 = 0: no light, no polarization
    cos_part = np.multiply(s1, inverse, dtype=np.float32)
    sin_part = np.multiply(s2, inverse, dtype=np.float32)
    dolp = np.sqrt(cos_part * cos_part + sin_part * sin_part)
    over = dolp > 1.0
    if over.any():  # noise can push S1^2 + S2^2 above S0^2: keep the angle, clip DoLP
        scale = np.ones_like(dolp)
        np.divide(1.0, dolp, out=scale, where=over)
        cos_part *= scale
        sin_part *= scale
        np.minimum(dolp, 1.0, out=dolp)
    return cv2.merge([cos_part, sin_part, dolp])


def representation_from_aolp_dolp(aolp: np.ndarray, dolp: np.ndarray) -> np.ndarray:
    """AoLP (radians) and DoLP arrays -> (H, W, 3) float32 representation."""
    aolp = np.asarray(aolp, dtype=np.float32)
    dolp = np.clip(np.asarray(dolp, dtype=np.float32), 0.0, 1.0)
    if aolp.shape != dolp.shape or aolp.ndim != 2:
        raise SensorInputError(
            f'AoLP and DoLP must be (H, W) arrays of one shape, got {aolp.shape} and '
            f'{dolp.shape}'
        )
    twice = 2.0 * aolp
    return cv2.merge([dolp * np.cos(twice), dolp * np.sin(twice), dolp])


def aolp_dolp_from_representation(representation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The inverse: (H, W, 3) -> (AoLP in [0, pi), DoLP); AoLP is 0 where DoLP is 0."""
    aolp = np.mod(0.5 * np.arctan2(representation[..., 1], representation[..., 0]), np.pi)
    return aolp.astype(np.float32), representation[..., 2].astype(np.float32)


def decode_polarization(
    raw: np.ndarray, encoding: str, settings: PolarizationSettings | None = None
) -> np.ndarray:
    """(H, W, C) raw pixels -> (H', W', 3) float32 representation (see module docstring)."""
    if encoding in MOSAIC_ENCODINGS:
        s0, s1, s2 = stokes_from_intensities(mosaic_intensities(raw, settings))
        return representation_from_stokes(s0, s1, s2)
    if encoding in PRECOMPUTED_ENCODINGS:
        return representation_from_aolp_dolp(raw[..., 0], raw[..., 1])
    raise SensorInputError(
        f'polarization accepts a raw mosaic ({", ".join(MOSAIC_ENCODINGS)}) or AoLP/DoLP '
        f'({", ".join(PRECOMPUTED_ENCODINGS)}), got {encoding!r}'
    )


def intensities_from_stokes(s0: np.ndarray, dolp: np.ndarray, aolp: np.ndarray) -> np.ndarray:
    """What ideal polarizers at 0/45/90/135 deg see: (4, H, W) float32.

    Malus's law for partially linearly polarized light:
    I(theta) = S0 / 2 * (1 + DoLP * cos(2 (theta - AoLP))).
    """
    s0, dolp, aolp = (np.asarray(v, dtype=np.float32) for v in (s0, dolp, aolp))
    return np.stack(
        [
            0.5 * s0 * (1.0 + dolp * np.cos(2.0 * (np.deg2rad(np.float32(theta)) - aolp)))
            for theta in ANGLES
        ]
    ).astype(np.float32)


def encode_mosaic(
    intensities: np.ndarray,
    encoding: str = 'mono8',
    settings: PolarizationSettings | None = None,
) -> np.ndarray:
    """(4, H, W) intensities in :data:`ANGLES` order -> (2H, 2W) raw mosaic.

    Intensities are in the encoding's counts; they are rounded and clipped like a real
    sensor's ADC.
    """
    settings = settings or PolarizationSettings()
    if encoding not in MOSAIC_ENCODINGS:
        raise SensorInputError(f'a mosaic is {", ".join(MOSAIC_ENCODINGS)}, got {encoding!r}')
    intensities = np.asarray(intensities)
    if intensities.ndim != 3 or intensities.shape[0] != 4:
        raise SensorInputError(
            f'mosaic encoding needs (4, H, W) intensities, got {intensities.shape}'
        )
    dtype = np.uint8 if encoding in ('mono8', '8UC1') else np.uint16
    top = np.iinfo(dtype).max
    counts = np.clip(np.rint(intensities), 0, top).astype(dtype)
    _, height, width = counts.shape
    mosaic = np.empty((2 * height, 2 * width), dtype=dtype)
    for index, angle in enumerate(ANGLES):
        r, c = settings.site(angle)
        mosaic[r::2, c::2] = counts[index]
    return mosaic
