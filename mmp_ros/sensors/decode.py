"""One entry point per direction: message fields -> SensorFrame, and arrays -> message fields.

The node (``mmp_ros/ros/``) and the training data loaders both call :func:`decode_frame`,
so a model is trained on exactly what it will see at run time. :func:`encode_frame` is
the way back, for the bag writer, the scene generator and the dropout simulator.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from mmp_ros.sensors import depth, polarization, rgb, thermal
from mmp_ros.sensors.depth import DepthSettings
from mmp_ros.sensors.frame import FrameStats, SensorFrame, SensorInputError
from mmp_ros.sensors.image import (
    EncodingSpec,
    ImageFields,
    array_to_image,
    check_layout,
    image_to_array,
    pixel_bytes_without_padding,
)
from mmp_ros.sensors.polarization import PolarizationSettings
from mmp_ros.sensors.thermal import ThermalSettings

ModalitySettings = DepthSettings | ThermalSettings | PolarizationSettings | None

# modality -> (its settings type, or None where it has no settings; accepted encodings)
MODALITY_INPUTS: dict[str, tuple[type | None, tuple[str, ...]]] = {
    'rgb': (None, rgb.ACCEPTED_ENCODINGS),
    'depth': (DepthSettings, depth.ACCEPTED_ENCODINGS),
    'polarization': (PolarizationSettings, polarization.ACCEPTED_ENCODINGS),
    'thermal': (ThermalSettings, tuple(dict.fromkeys(sum(thermal.SEMANTICS.values(), ())))),
}
THUMBNAIL_SIZE = 16
FINGERPRINT_BYTES = 16


def default_settings(modality: str) -> ModalitySettings:
    """The settings a modality decodes with when none are given."""
    settings_type, _ = _inputs(modality)
    return None if settings_type is None else settings_type()


def _inputs(modality: str) -> tuple[type | None, tuple[str, ...]]:
    try:
        return MODALITY_INPUTS[modality]
    except KeyError:
        raise SensorInputError(
            f'unknown modality {modality!r}; known: {list(MODALITY_INPUTS)}'
        ) from None


def _checked_settings(modality: str, settings: ModalitySettings) -> ModalitySettings:
    settings_type, _ = _inputs(modality)
    if settings is None:
        return default_settings(modality)
    if settings_type is None or not isinstance(settings, settings_type):
        expected = 'no settings' if settings_type is None else settings_type.__name__
        raise SensorInputError(
            f'{modality} takes {expected}, got {type(settings).__name__}'
        )
    return settings


def _check_encoding(modality: str, encoding: str) -> None:
    _, accepted = _inputs(modality)
    if encoding not in accepted:
        raise SensorInputError(
            f'encoding {encoding!r} is not accepted for {modality}; it takes '
            f'{", ".join(accepted)}'
        )


def decode_frame(
    modality: str, fields: ImageFields, settings: ModalitySettings = None
) -> SensorFrame:
    """Decode one image message into the modality's physical representation.

    Raises SensorInputError (and only that) for anything wrong with the message or with
    the settings given for it. A frame with no valid pixel is not an error: it decodes,
    and its ``invalid_fraction`` of 1.0 tells the health checks.
    """
    settings = _checked_settings(modality, settings)
    spec = check_layout(fields)
    _check_encoding(modality, fields.encoding)
    raw = image_to_array(fields)
    valid: np.ndarray | None = None
    if modality == 'rgb':
        data = rgb.decode_rgb(raw, fields.encoding)
    elif modality == 'depth':
        data, valid = depth.decode_depth(raw, fields.encoding, settings)
    elif modality == 'thermal':
        data = thermal.decode_thermal(raw, fields.encoding, settings)
        if spec.dtype.kind == 'f':  # a float below absolute zero is no temperature either
            data, valid = _zero_invalid(data, np.isfinite(data[..., 0])
                                        & (data[..., 0] >= -thermal.KELVIN_AT_0C))
        elif settings.semantics == 'planck':
            data, valid = _zero_non_finite(data)
    else:
        data = polarization.decode_polarization(raw, fields.encoding, settings)
        if spec.dtype.kind == 'f':
            data, valid = _zero_non_finite(data)
    return SensorFrame(modality, data, valid, frame_stats(fields, spec, raw, data, valid))


def _zero_non_finite(data: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Set pixels with any non-finite channel to 0; their mask, or None if there were none."""
    finite = np.isfinite(data[..., 0])
    for channel in range(1, data.shape[2]):  # per plane: all(axis=2) is ten times slower
        finite &= np.isfinite(data[..., channel])
    return _zero_invalid(data, finite)


def _zero_invalid(data: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Set the pixels outside ``valid`` (H, W) to 0; ``valid``, or None if all are."""
    if valid.all():
        return data, None
    data[~valid] = 0.0
    return data, valid


# Sensor bit depths whose full scale a wider integer image may carry: a 12-bit camera
# publishes mono16 with 4095 at saturation, never 65535, or with its bits in the top of the
# word (MSB-aligned, as many machine-vision drivers unpack Mono12) 65520.
FULL_SCALES = frozenset({*(2**bits - 1 for bits in (8, 10, 12, 14, 16)),
                         *((2**bits - 1) << (16 - bits) for bits in (10, 12, 14))})
ALPHA_ENCODINGS = frozenset(rgb.ALPHA_ENCODINGS)  # blank / saturated look at colour alone


def _at_full_scale(raw: np.ndarray, spec: EncodingSpec) -> bool:
    """Every raw pixel at the full scale of the encoding or of a narrower sensor in it."""
    top = spec.max_value
    if top is None or raw.size == 0:
        return False
    low = int(raw.min())  # a live frame's minimum is no full scale: one pass, no max
    return (low == top or low in FULL_SCALES) and int(raw.max()) == low


def frame_stats(
    fields: ImageFields,
    spec: EncodingSpec,
    raw: np.ndarray,
    data: np.ndarray,
    valid: np.ndarray | None,
) -> FrameStats:
    """The cheap facts the health checks need about one frame (DESIGN §5)."""
    digest = hashlib.blake2b(digest_size=FINGERPRINT_BYTES)
    for row in pixel_bytes_without_padding(fields):
        digest.update(row)
    invalid = 0.0 if valid is None else 1.0 - np.count_nonzero(valid) / valid.size
    # alpha is no measurement: a capped bgra8 camera sends black pixels with alpha 255
    pixels = raw[..., :3] if fields.encoding in ALPHA_ENCODINGS else raw
    return FrameStats(
        fingerprint=digest.digest(),
        all_zero=not pixels.any(),
        saturated=_at_full_scale(pixels, spec),
        invalid_fraction=float(invalid),
        thumbnail=thumbnail(data),
    )


def thumbnail(data: np.ndarray) -> np.ndarray:
    """(16, 16) float32 area average of channel 0: near-identical frames look alike here."""
    plane = np.ascontiguousarray(data[..., 0], dtype=np.float32)
    return cv2.resize(plane, (THUMBNAIL_SIZE, THUMBNAIL_SIZE), interpolation=cv2.INTER_AREA)


def encode_frame(
    modality: str,
    values: np.ndarray,
    encoding: str,
    settings: ModalitySettings = None,
    *,
    step: int | None = None,
    is_bigendian: bool = False,
) -> ImageFields:
    """Arrays in physical units -> the message fields a camera would publish.

    ``values`` per modality: rgb (H, W, 3) RGB in [0, 1] (or uint8); depth (H, W) metres
    (0, NaN or ±Inf = invalid); thermal (H, W) degrees Celsius, stored by the settings'
    semantics; polarization (4, H, W) intensities at 0/45/90/135 deg in counts for a
    mosaic encoding (the mosaic is 2H x 2W), or (H, W, 2) AoLP (radians) and DoLP for
    ``32FC2``/``64FC2``.
    """
    settings = _checked_settings(modality, settings)
    _check_encoding(modality, encoding)
    if modality == 'rgb':
        pixels = rgb.encode_rgb(values, encoding)
    elif modality == 'depth':
        pixels = depth.encode_depth(values, encoding)
    elif modality == 'thermal':
        pixels = thermal.encode_thermal(values, settings, encoding)
    elif encoding in polarization.MOSAIC_ENCODINGS:
        pixels = polarization.encode_mosaic(values, encoding, settings)
    else:
        pixels = np.asarray(values, dtype=np.float32 if encoding == '32FC2' else np.float64)
    return array_to_image(pixels, encoding, step=step, is_bigendian=is_bigendian)
