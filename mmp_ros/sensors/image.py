"""``sensor_msgs/Image`` fields <-> numpy, without importing ROS.

``mmp_ros/ros/`` copies the six fields of a real message into :class:`ImageFields` (the
``data`` buffer is passed through, not copied); everything else in the package works on
that dataclass and on numpy arrays, so it is testable without rclpy and the same code
decodes bag files for training.

Arrays are always ``(height, width, channels)`` in the channel order the encoding stores
(``bgr8`` stays B, G, R here; :func:`mmp_ros.sensors.rgb.decode_rgb` reorders), in native
byte order and C-contiguous. When the message needs no conversion (no row padding, native
byte order) the array is a read-only view of the message buffer: no copy at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmp_ros.sensors.frame import SensorInputError

# The named encodings of sensor_msgs/image_encodings.hpp that this package meets:
# encoding -> (numpy dtype, channels).
_NAMED: dict[str, tuple[str, int]] = {
    'rgb8': ('u1', 3),
    'bgr8': ('u1', 3),
    'rgba8': ('u1', 4),
    'bgra8': ('u1', 4),
    'mono8': ('u1', 1),
    'rgb16': ('u2', 3),
    'bgr16': ('u2', 3),
    'rgba16': ('u2', 4),
    'bgra16': ('u2', 4),
    'mono16': ('u2', 1),
} | {
    f'bayer_{pattern}{bits}': (code, 1)  # a colour camera's raw mosaic, one value a pixel
    for bits, code in ((8, 'u1'), (16, 'u2'))
    for pattern in ('rggb', 'bggr', 'gbrg', 'grbg')
}
# The OpenCV-style generic encodings: <depth>C<n>.
_DEPTHS: dict[str, str] = {
    '8U': 'u1',
    '8S': 'i1',
    '16U': 'u2',
    '16S': 'i2',
    '32S': 'i4',
    '32F': 'f4',
    '64F': 'f8',
}

ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    name: (np.dtype(code), channels) for name, (code, channels) in _NAMED.items()
} | {
    f'{depth}C{channels}': (np.dtype(code), channels)
    for depth, code in _DEPTHS.items()
    for channels in range(1, 5)
}
"""Every encoding this package reads and writes: name -> (dtype, channels)."""

MAX_PIXELS = 1 << 26  # 67 Mpx (8192 x 8192): far above any camera's frame
"""The most pixels a frame may have: the largest ``max_pixels`` a decoder takes."""


def check_pixel_count(width: int, height: int, max_pixels: int, what: str) -> None:
    """SensorInputError where a frame of ``width`` x ``height`` is over ``max_pixels``.

    Checked on the size a header declares, before anything of that size is decoded or
    allocated: a corrupt or hostile header costs no more than a frame of ``max_pixels``.
    ``what`` starts the message (``'Image of'``, ``'CompressedImage declares'``).
    """
    if width * height > max_pixels:
        raise SensorInputError(
            f'{what} {width}x{height} pixels, over max_pixels {max_pixels:,}: a corrupt '
            'header, or a camera larger than max_pixels allows'
        )

@dataclass(frozen=True)
class EncodingSpec:
    """What one encoding name means for the bytes: element type and channel count."""

    name: str
    dtype: np.dtype  # native byte order
    channels: int

    @property
    def pixel_bytes(self) -> int:
        return self.dtype.itemsize * self.channels

    @property
    def max_value(self) -> float | None:
        """The largest raw value (for saturation checks); None for floating point."""
        if self.dtype.kind in 'ui':
            return int(np.iinfo(self.dtype).max)
        return None


def encoding_spec(encoding: str) -> EncodingSpec:
    """The spec of ``encoding``, or SensorInputError naming it and the known ones."""
    try:
        dtype, channels = ENCODINGS[encoding]
    except (KeyError, TypeError):
        named = ', '.join(_NAMED)
        raise SensorInputError(
            f'unknown image encoding {encoding!r}; known: {named} and '
            '{8U,8S,16U,16S,32S,32F,64F}C{1..4}'
        ) from None
    return EncodingSpec(encoding, dtype, channels)


@dataclass(frozen=True)
class ImageFields:
    """The fields of a ``sensor_msgs/Image`` that describe its pixels (header left out).

    ``data`` is any buffer (``bytes``, ``bytearray``, ``memoryview``, the ``array.array``
    rclpy hands out); it is not copied.
    """

    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int  # bytes per row, padding included
    data: bytes

    @property
    def nbytes(self) -> int:
        return memoryview(self.data).nbytes


def check_layout(fields: ImageFields) -> EncodingSpec:
    """Check that the fields describe a readable image; return the encoding's spec.

    Raises SensorInputError for an unknown encoding, an empty image, a step shorter than
    one row, or a data buffer whose size is not step * height.
    """
    spec = encoding_spec(fields.encoding)
    height, width, step = fields.height, fields.width, fields.step
    if height <= 0 or width <= 0:
        raise SensorInputError(f'empty image: {width}x{height} pixels ({fields.encoding})')
    row = width * spec.pixel_bytes
    if step < row:
        raise SensorInputError(
            f'step {step} B is smaller than one row of {width} px x {spec.pixel_bytes} B = '
            f'{row} B ({fields.encoding})'
        )
    nbytes, expected = fields.nbytes, step * height
    if nbytes < expected:
        raise SensorInputError(
            f'truncated data: {nbytes} B, but step * height = {step} * {height} = {expected} B'
        )
    if nbytes > expected:
        raise SensorInputError(
            f'data holds {nbytes} B, more than step * height = {step} * {height} = '
            f'{expected} B: height, step or encoding does not match the buffer'
        )
    return spec


def raw_view(fields: ImageFields) -> np.ndarray:
    """The pixels as stored: (H, W, C) view of the buffer in the message's byte order.

    Strided over the row padding; no copy, no validation beyond :func:`check_layout`.
    """
    spec = check_layout(fields)
    dtype = spec.dtype.newbyteorder('>' if fields.is_bigendian else '<')
    buffer = np.frombuffer(fields.data, dtype=np.uint8)
    return np.ndarray(
        (fields.height, fields.width, spec.channels),
        dtype=dtype,
        buffer=buffer,
        strides=(fields.step, spec.pixel_bytes, spec.dtype.itemsize),
    )


def image_to_array(fields: ImageFields) -> np.ndarray:
    """The message's pixels as a C-contiguous (H, W, C) array in native byte order.

    A read-only view of ``fields.data`` when the rows are unpadded and the byte order is
    native; otherwise exactly one copy (which drops the padding and swaps the bytes).
    """
    view = raw_view(fields)
    if view.dtype.isnative and view.flags.c_contiguous:
        return view
    return np.ascontiguousarray(view, dtype=view.dtype.newbyteorder('='))


def array_to_image(
    array: np.ndarray, encoding: str, *, step: int | None = None, is_bigendian: bool = False
) -> ImageFields:
    """Pack an (H, W) or (H, W, C) array into message fields.

    The array's element type must be the encoding's (``uint16`` for ``16UC1``, ...): a
    silent cast would hide a unit or range mistake in whoever produced it. ``step`` adds
    row padding (zero bytes) when larger than one row.
    """
    spec = encoding_spec(encoding)
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.ndim != 3 or array.shape[2] != spec.channels:
        raise SensorInputError(
            f'{encoding} needs (H, W, {spec.channels}) pixels, got an array of shape '
            f'{array.shape}'
        )
    if array.dtype.newbyteorder('=') != spec.dtype:
        raise SensorInputError(
            f'{encoding} stores {spec.dtype.name}, got {array.dtype.name}: convert the array '
            'to the encoding\'s type first'
        )
    height, width = array.shape[:2]
    row = width * spec.pixel_bytes
    step = row if step is None else int(step)
    if step < row:
        raise SensorInputError(
            f'step {step} B is smaller than one row of {width} px x {spec.pixel_bytes} B = '
            f'{row} B ({encoding})'
        )
    big = bool(is_bigendian) and spec.dtype.itemsize > 1
    dtype = spec.dtype.newbyteorder('>' if big else '<')
    if step == row:
        data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    else:
        buffer = bytearray(step * height)
        padded = np.ndarray(
            array.shape,
            dtype=dtype,
            buffer=buffer,
            strides=(step, spec.pixel_bytes, spec.dtype.itemsize),
        )
        padded[...] = array
        data = bytes(buffer)
    return ImageFields(height, width, encoding, big, step, data)


def pixel_bytes_without_padding(fields: ImageFields) -> list[memoryview]:
    """The raw pixel bytes row by row (or as one block when unpadded), without copying."""
    spec = check_layout(fields)
    row = fields.width * spec.pixel_bytes
    buffer = memoryview(fields.data).cast('B')
    if fields.step == row:
        return [buffer[: row * fields.height]]
    return [buffer[r * fields.step : r * fields.step + row] for r in range(fields.height)]

