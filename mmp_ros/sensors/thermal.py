"""Thermal images to degrees Celsius, whatever the camera publishes.

Thermal drivers disagree on what a pixel means, and the encoding alone does not say:
a ``mono16`` pixel may be linear counts (FLIR "TLinear", T = counts * gain + offset),
centi-Kelvin, or raw radiometric counts that need FLIR's Planck curve. The
``semantics`` setting says which; the encoding must then match it:

============== ============================ ==========================================
semantics      encodings                    degrees Celsius
============== ============================ ==========================================
counts_linear  mono8, 8UC1, mono16, 16UC1   counts * gain + offset (in ``unit``)
centikelvin    mono16, 16UC1                counts / 100 - 273.15
planck         mono16, 16UC1                :meth:`PlanckCalibration.kelvin_from_counts`
celsius        32FC1, 64FC1                 the value
kelvin         32FC1, 64FC1                 value - 273.15
============== ============================ ==========================================

An 8-bit thermal image (an AGC'd display image with a known span) is ``counts_linear``
too: :meth:`ThermalSettings.linear_range` builds gain and offset from the span.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from mmp_ros.sensors.frame import SensorInputError

KELVIN_AT_0C = 273.15

SEMANTICS: dict[str, tuple[str, ...]] = {
    'counts_linear': ('mono8', '8UC1', 'mono16', '16UC1'),
    'centikelvin': ('mono16', '16UC1'),
    'planck': ('mono16', '16UC1'),
    'celsius': ('32FC1', '64FC1'),
    'kelvin': ('32FC1', '64FC1'),
}
UNITS = ('celsius', 'kelvin')


def _floating(values: np.ndarray | float) -> np.ndarray:
    """``values`` as a floating array: float32/float64 kept, anything else float64."""
    array = np.asarray(values)
    return array if array.dtype.kind == 'f' else array.astype(np.float64)


@dataclass(frozen=True)
class PlanckCalibration:
    """FLIR's radiometric calibration: raw counts S <-> object temperature T in Kelvin.

    ``S = R1 / (R2 * (exp(B / T) - F)) - O`` and its inverse
    ``T = B / ln(R1 / (R2 * (S + O)) + F)``, with the camera's PlanckR1, PlanckR2,
    PlanckB, PlanckF and PlanckO (exiftool reads them from a radiometric JPEG or TIFF).
    This is the blackbody relation alone: emissivity 1, no atmosphere or window terms.

    The defaults are typical FLIR values, not any one camera's calibration:
    R1 = 17096.453, B = 1428 and F = 1 are what FLIR Vue Pro R / Duo Pro R files report;
    R2 and O differ per unit (R2 = 0.046642166, O = -342 are one such unit's, as seen in
    public example files). They map 0 degC to about 2300 counts and 100 degC to about
    8600, inside a 14-bit range. Use your camera's constants for real measurements.
    """

    r1: float = 17096.453
    r2: float = 0.046642166
    b: float = 1428.0
    f: float = 1.0
    o: float = -342.0

    def __post_init__(self) -> None:
        if not (self.r1 > 0 and self.r2 > 0 and self.b > 0):
            raise SensorInputError(
                f'Planck constants R1, R2 and B must be positive, got {self}'
            )
        if not all(math.isfinite(v) for v in (self.r1, self.r2, self.b, self.f, self.o)):
            raise SensorInputError(f'Planck constants must be finite, got {self}')

    def counts_from_kelvin(self, t_kelvin: np.ndarray | float) -> np.ndarray:
        """Raw counts (float, not rounded) for object temperatures in Kelvin (> 0)."""
        t = _floating(t_kelvin)
        with np.errstate(over='ignore', divide='ignore'):  # T -> 0 K: exp overflows, S -> -O
            return self.r1 / (self.r2 * (np.exp(self.b / t) - self.f)) - self.o

    def kelvin_from_counts(self, counts: np.ndarray | float) -> np.ndarray:
        """Object temperature in Kelvin for raw counts; NaN where no temperature fits.

        Counts at or below ``-O`` (or so high that the logarithm's argument is not above
        1) lie outside the curve: the result there is NaN, not an exception, so one bad
        pixel does not lose a frame.
        """
        s = _floating(counts)
        with np.errstate(divide='ignore', invalid='ignore'):
            ratio = self.r1 / (self.r2 * (s + self.o)) + self.f
            t = self.b / np.log(ratio)
            return np.where((s + self.o > 0) & (ratio > 1), t, np.nan)


@dataclass(frozen=True)
class ThermalSettings:
    """How to turn this camera's pixels into degrees Celsius (see the module docstring).

    ``gain`` and ``offset`` are for 'counts_linear' and give T in ``unit``;
    ``planck`` is for 'planck'. The defaults are FLIR's TLinear high-resolution mode
    (0.04 K per count).
    """

    semantics: str = 'counts_linear'
    gain: float = 0.04
    offset: float = 0.0
    unit: str = 'kelvin'
    planck: PlanckCalibration = field(default_factory=PlanckCalibration)

    def __post_init__(self) -> None:
        if self.semantics not in SEMANTICS:
            raise SensorInputError(
                f'unknown thermal semantics {self.semantics!r}; known: {list(SEMANTICS)}'
            )
        if self.unit not in UNITS:
            raise SensorInputError(f'thermal unit must be one of {UNITS}, got {self.unit!r}')
        if not (math.isfinite(self.gain) and self.gain != 0 and math.isfinite(self.offset)):
            raise SensorInputError(
                f'thermal gain must be finite and non-zero and offset finite, got '
                f'gain={self.gain}, offset={self.offset}'
            )

    @classmethod
    def linear_range(
        cls, t_min_c: float, t_max_c: float, encoding: str = 'mono8'
    ) -> ThermalSettings:
        """Settings for an image whose full pixel range spans ``[t_min_c, t_max_c]`` degC."""
        top = {'mono8': 255, '8UC1': 255, 'mono16': 65535, '16UC1': 65535}.get(encoding)
        if top is None:
            raise SensorInputError(f'a linear range needs an integer encoding, got {encoding}')
        if not t_max_c > t_min_c:
            raise SensorInputError(f'empty thermal range [{t_min_c}, {t_max_c}] degC')
        return cls('counts_linear', (t_max_c - t_min_c) / top, t_min_c, 'celsius')

    @property
    def offset_c(self) -> float:
        """The 'counts_linear' offset in degrees Celsius."""
        return self.offset - (KELVIN_AT_0C if self.unit == 'kelvin' else 0.0)

    def check_encoding(self, encoding: str) -> None:
        accepted = SEMANTICS[self.semantics]
        if encoding not in accepted:
            taking = [name for name, encodings in SEMANTICS.items() if encoding in encodings]
            hint = ''
            if taking:  # decode_frame refuses the others first, naming what thermal takes
                names = (f'{", ".join(taking[:-1])} or {taking[-1]}' if len(taking) > 1
                         else taking[0])
                hint = f': set sensors.thermal.semantics (mmp_ros decode: --semantics) to {names}'
            if taking == ['counts_linear']:  # 8-bit: an AGC'd image, its span is the scale
                hint += ", with gain, offset and unit for the image's span"
            raise SensorInputError(
                f'thermal semantics {self.semantics!r} takes {", ".join(accepted)}, got '
                f'{encoding!r}{hint}'
            )


@functools.lru_cache(maxsize=8)
def _planck_celsius_table(planck: PlanckCalibration) -> np.ndarray:
    """degC for every 16-bit count: one table lookup per pixel instead of exp and log."""
    counts = np.arange(65536, dtype=np.float64)
    table = (planck.kelvin_from_counts(counts) - KELVIN_AT_0C).astype(np.float32)
    table.flags.writeable = False
    return table


def decode_thermal(
    raw: np.ndarray, encoding: str, settings: ThermalSettings | None = None
) -> np.ndarray:
    """(H, W, 1) raw pixels -> (H, W, 1) float32 degrees Celsius (NaN where undefined)."""
    settings = settings or ThermalSettings()
    settings.check_encoding(encoding)
    semantics = settings.semantics
    if semantics == 'counts_linear':
        celsius = np.multiply(raw, np.float32(settings.gain), dtype=np.float32)
        celsius += np.float32(settings.offset_c)
    elif semantics == 'centikelvin':
        celsius = np.multiply(raw, np.float32(0.01), dtype=np.float32)
        celsius -= np.float32(KELVIN_AT_0C)
    elif semantics == 'planck':
        celsius = _planck_celsius_table(settings.planck)[raw]
    elif semantics == 'celsius':
        celsius = np.array(raw, dtype=np.float32)
    else:  # kelvin
        celsius = np.subtract(raw, np.float32(KELVIN_AT_0C), dtype=np.float32)
    return celsius


def encode_thermal(
    celsius: np.ndarray, settings: ThermalSettings | None = None, encoding: str | None = None
) -> np.ndarray:
    """Degrees Celsius (H, W) -> raw pixels (H, W) as this camera would publish them.

    Integer encodings are rounded and clipped to the type's range (a real camera
    saturates too); ``encoding`` defaults to the first one the semantics accepts with
    16 bits (``mono16``) or ``32FC1``.
    """
    settings = settings or ThermalSettings()
    encoding = encoding or {'celsius': '32FC1', 'kelvin': '32FC1'}.get(
        settings.semantics, 'mono16'
    )
    settings.check_encoding(encoding)
    celsius = np.asarray(celsius, dtype=np.float64)
    if celsius.ndim == 3 and celsius.shape[2] == 1:
        celsius = celsius[..., 0]
    semantics = settings.semantics
    if semantics == 'celsius':
        return celsius.astype(np.float32 if encoding == '32FC1' else np.float64)
    if semantics == 'kelvin':
        return (celsius + KELVIN_AT_0C).astype(np.float32 if encoding == '32FC1' else np.float64)
    if semantics == 'counts_linear':
        counts = (celsius - settings.offset_c) / settings.gain
    elif semantics == 'centikelvin':
        counts = (celsius + KELVIN_AT_0C) * 100.0
    else:  # planck
        counts = settings.planck.counts_from_kelvin(celsius + KELVIN_AT_0C)
    dtype = np.uint8 if encoding in ('mono8', '8UC1') else np.uint16
    limits = np.iinfo(dtype)
    return np.clip(np.rint(np.nan_to_num(counts)), limits.min, limits.max).astype(dtype)
