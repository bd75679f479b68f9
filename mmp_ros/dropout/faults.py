"""What one fault does to one image message, with no state and no clock.

The stateful kinds (freeze, delay) need the messages around this one and live in
:mod:`mmp_ros.dropout.engine`; everything here maps one :class:`ImageFields` to the fields to
publish instead, or to ``None`` when the message is to vanish.

Every output except ``truncate``'s is a well-formed message of its encoding (``data`` is
``step * height`` bytes), so that a downstream node is tested on what a broken sensor really
sends, not on a message no driver could produce; ``truncate`` is the one deliberately
malformed message.
"""

from __future__ import annotations

import numpy as np

from mmp_ros.dropout.schedule import Fault, FaultKind
from mmp_ros.sensors.image import ImageFields, array_to_image, encoding_spec, image_to_array
from mmp_ros.sensors.polarization import MOSAIC_ENCODINGS
from mmp_ros.sensors.rgb import BAYER, encode_rgb, to_rgb_order

STATEFUL_KINDS = frozenset({FaultKind.FREEZE, FaultKind.DELAY})


def apply(fault: Fault, fields: ImageFields, rng: np.random.Generator) -> ImageFields | None:
    """The fields to publish in place of ``fields`` while ``fault`` is active; None: drop it.

    ``rng`` is the fault's own generator (seeded from the schedule), used by noise, drop and a
    partial NaN flood only. Raises :class:`mmp_ros.sensors.frame.SensorInputError` when a
    fault that rewrites pixels meets a message whose pixels cannot be read (the caller passes
    such a message on unchanged), and ValueError for a stateful kind.
    """
    kind = fault.kind
    if kind in (FaultKind.KILL, FaultKind.DROP):
        return None if withholds(fault, rng) else fields
    if kind is FaultKind.TRUNCATE:
        return truncate(fields, fault.params['keep_fraction'])
    if kind is FaultKind.BLANK:
        return blank(fields, fill=fault.params['fill'])
    if kind is FaultKind.NAN:
        return nan_flood(fields, fault.params['fraction'], rng)
    if kind is FaultKind.NOISE:
        return add_noise(fields, fault.params['sigma'], rng, depth=fault.sensor == 'depth')
    if kind is FaultKind.RESIZE:
        return resize(fields, fault.params['height'], fault.params['width'],
                      mosaic=fault.sensor == 'polarization')
    if kind is FaultKind.ENCODING:
        return change_encoding(fields, fault.params['encoding'])
    raise ValueError(f'{kind.value} is not a per-message fault; DropoutEngine handles it')


def withholds(fault: Fault, rng: np.random.Generator) -> bool:
    """Whether a kill or drop fault swallows the next message; needs no look at it."""
    if fault.kind is FaultKind.KILL:
        return True
    return fault.kind is FaultKind.DROP and bool(rng.random() < fault.params['fraction'])


def _repack(array: np.ndarray, like: ImageFields, encoding: str | None = None) -> ImageFields:
    """Pack ``array`` in ``like``'s byte order (and row padding, when the width is unchanged)."""
    encoding = like.encoding if encoding is None else encoding
    spec = encoding_spec(encoding)
    # Row padding only carries over to rows of the same length.
    same_rows = encoding == like.encoding and array.shape[1] == like.width
    step = like.step if same_rows else None
    return array_to_image(
        array.astype(spec.dtype, copy=False), encoding, step=step,
        is_bigendian=like.is_bigendian,
    )


def blank(fields: ImageFields, *, fill: str = 'zero') -> ImageFields:
    """Every pixel zero (a dead or capped sensor) or at the encoding's maximum (saturated).

    For float encodings the maximum is +Inf, which a depth consumer reads as invalid.
    """
    pixels = image_to_array(fields)
    if fill == 'zero':
        value = 0
    elif pixels.dtype.kind == 'f':
        value = np.inf
    else:
        value = np.iinfo(pixels.dtype).max
    return _repack(np.full(pixels.shape, value, dtype=pixels.dtype), fields)


def nan_flood(fields: ImageFields, fraction: float, rng: np.random.Generator) -> ImageFields:
    """NaN in a ``fraction`` of the pixels (all channels of each chosen pixel).

    Integer encodings have no NaN; their invalid value is 0 (REP 118: 16UC1 depth 0 = no
    return), so the chosen pixels become 0 there.
    """
    pixels = np.array(image_to_array(fields))
    invalid = np.nan if pixels.dtype.kind == 'f' else 0
    if fraction >= 1.0:
        pixels[...] = invalid
    else:
        chosen = rng.random(pixels.shape[:2]) < fraction
        pixels[chosen] = invalid
    return _repack(pixels, fields)


def add_noise(fields: ImageFields, sigma: float, rng: np.random.Generator, *,
              depth: bool = False) -> ImageFields:
    """Additive Gaussian noise of ``sigma`` in the encoding's raw units.

    Counts for integer encodings (sigma 20 on rgb8 is strong, on mono16 invisible), the stored
    unit for float ones (metres for 32FC1 depth). Integer results are rounded and clipped to
    the type's range; NaN and Inf stay what they were (REP 117: 32FC1 depth's no reading),
    and so do the zeros of ``16UC1`` (REP 118 depth: 0 = no reading) and, for a ``depth``
    camera, those of any encoding (drivers write 32FC1 holes as 0.0 too, and the node reads
    them as holes): noise does not make a depth camera see where it saw nothing. Elsewhere 0
    is a value like any other (0 °C in 32FC1 thermal, black in mono16).
    """
    pixels = image_to_array(fields)
    # float32 and in place: drawing the normals is most of the cost (about 10 ms for a
    # 640x480 rgb8 frame here) and float64 would double it. 32-bit integers need float64 to
    # hold their values exactly.
    work = np.float64 if pixels.dtype.kind in 'iu' and pixels.dtype.itemsize >= 4 else np.float32
    noise = rng.standard_normal(pixels.shape, dtype=work)
    noise *= work(sigma)
    if pixels.dtype.kind == 'f':
        noise = pixels + noise.astype(pixels.dtype, copy=False)
    else:
        info = np.iinfo(pixels.dtype)
        noise += pixels
        np.rint(noise, out=noise)
        np.clip(noise, info.min, info.max, out=noise)
    if depth or fields.encoding == '16UC1':
        noise[pixels == 0] = 0
    return _repack(noise, fields)


def resize(fields: ImageFields, height: int, width: int, *, mosaic: bool = False) -> ImageFields:
    """The same picture at ``height`` x ``width`` (nearest neighbour: any dtype, any channels;
    a Bayer mosaic in 2x2 cells, so that each pixel keeps its colour filter, and so is a
    polarizer mosaic, a one-channel image of a ``mosaic`` camera, so that each keeps its
    polarizer angle).

    A camera switched to another mode: well-formed, just not the size the consumer expects.
    """
    pixels = image_to_array(fields)
    mosaic = fields.encoding in BAYER or (mosaic and fields.encoding in MOSAIC_ENCODINGS)
    cell = 2 if mosaic else 1
    rows = _nearest(pixels.shape[0], height, cell)
    cols = _nearest(pixels.shape[1], width, cell)
    return _repack(pixels[rows][:, cols], fields)


def _nearest(source: int, target: int, cell: int) -> np.ndarray:
    """For each of ``target`` indices, the source index nearest in place, picked cell by cell
    (``cell`` indices at a time) with each index keeping its place in its cell."""
    index = np.arange(target)
    cells = (index // cell) * max(source // cell, 1) // -(-target // cell)
    return np.minimum(cells * cell + index % cell, source - 1)


def change_encoding(fields: ImageFields, encoding: str) -> ImageFields:
    """The same picture in another encoding, e.g. ``mono8`` where ``rgb8`` was expected.

    Colour channels are averaged (to fewer: grey) or repeated (to more, alpha opaque), alpha
    dropped where the target has none (rgba8 -> rgb8 keeps the colour); values are rescaled
    from the source's range to the target's so the image still looks like itself (integer
    types by their full scale, float frames by their finite min..max to [0, 1]); colour is
    stored in the target's order (``bgr8`` as B, G, R). A Bayer mosaic is demosaiced first,
    and a Bayer target keeps at each pixel the colour its filter passes. The point is the
    unexpected encoding, not the values.
    """
    source = image_to_array(fields)
    if fields.encoding in BAYER:  # colour, not the mosaic's raw values read as grey
        source = to_rgb_order(source, fields.encoding)
    target = encoding_spec(encoding)
    unit = _to_unit(source)  # (H, W, C) float32 in [0, 1], NaN kept
    if _blue_first(fields.encoding):  # colour channels in R, G, B order from here on
        unit = _swap_red_blue(unit)
    channels = unit.shape[2]
    target_channels = 3 if encoding in BAYER else target.channels
    if target_channels < min(channels, 3):  # fewer colour channels: grey, alpha left out
        unit = unit[:, :, : min(channels, 3)].mean(axis=2, keepdims=True)
        unit = np.repeat(unit, target_channels, axis=2)
    elif target_channels == 3 and channels == 4:  # alpha dropped, colour kept
        unit = unit[:, :, :3]
    elif target_channels > channels:
        colour = np.repeat(unit[:, :, :1], 3, axis=2) if channels < 3 else unit[:, :, :3]
        alpha = np.ones(unit.shape[:2] + (1,), dtype=unit.dtype)
        unit = np.concatenate([colour, alpha], axis=2)[:, :, :target_channels]
    if encoding in BAYER:
        return _repack(encode_rgb(np.nan_to_num(unit, nan=0.0), encoding), fields, encoding)
    if _blue_first(encoding):
        unit = _swap_red_blue(unit)
    if target.dtype.kind == 'f':
        converted = unit
    else:
        info = np.iinfo(target.dtype)
        # float32 holds 8- and 16-bit values exactly; 32-bit ones need float64.
        work = np.float64 if target.dtype.itemsize >= 4 else np.float32
        scaled = np.nan_to_num(unit, nan=0.0).astype(work, copy=False) * work(info.max)
        converted = np.rint(scaled).clip(info.min, info.max)
    return _repack(converted, fields, encoding=encoding)


def _blue_first(encoding: str) -> bool:
    """Whether ``encoding`` stores its colour channels as B, G, R (bgr8, bgra16, ...)."""
    return encoding.startswith('bgr')


def _swap_red_blue(pixels: np.ndarray) -> np.ndarray:
    """R, G, B (+ alpha) <-> B, G, R (+ alpha)."""
    return pixels[:, :, [2, 1, 0, *range(3, pixels.shape[2])]]


def _to_unit(pixels: np.ndarray) -> np.ndarray:
    values = pixels.astype(np.float32)
    if pixels.dtype.kind == 'f':
        finite = np.isfinite(values)
        if not finite.any():
            return np.where(finite, 0.0, np.nan)
        low, high = values[finite].min(), values[finite].max()
        return np.where(finite, (values - low) / max(high - low, 1e-12), np.float32(np.nan))
    info = np.iinfo(pixels.dtype)
    return (values - np.float32(info.min)) / np.float32(info.max - info.min)


def truncate(fields: ImageFields, keep_fraction: float) -> ImageFields:
    """Header fields unchanged, ``data`` cut to ``keep_fraction`` of its bytes.

    A torn transfer or a buggy driver: the one fault whose output is not a valid image.
    Needs no readable pixels, so it also applies to a message that was already malformed.
    """
    return ImageFields(
        fields.height, fields.width, fields.encoding, fields.is_bigendian, fields.step,
        truncated_bytes(fields.data, keep_fraction),
    )


def truncated_bytes(data, keep_fraction: float) -> bytes:
    """The first ``keep_fraction`` of the bytes of ``data`` (any bytes-like): a torn
    transfer, of a raw image's pixels or of a compressed image's JPEG, PNG or RVL stream."""
    data = bytes(memoryview(data).cast('B'))
    return data[:int(len(data) * keep_fraction)]


__all__ = [
    'STATEFUL_KINDS',
    'add_noise',
    'apply',
    'blank',
    'change_encoding',
    'nan_flood',
    'resize',
    'truncate',
    'truncated_bytes',
    'withholds',
]
