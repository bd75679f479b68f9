"""Colour images to RGB in [0, 1], whatever channel order the camera publishes.

A Bayer mosaic (``bayer_rggb8`` ... ``bayer_grbg16``, the raw output of many machine-vision
cameras) is demosaiced bilinearly by OpenCV, as cv_bridge does; 16-bit values (``rgb16`` ...
``bgra16``, ``mono16`` and the 16-bit mosaics) are scaled by the full 16-bit range (65535 is
1.0), as cv_bridge's conversion to 8 bits does.
"""

from __future__ import annotations

import cv2
import numpy as np

from mmp_ros.sensors.frame import SensorInputError

# encoding -> OpenCV conversion to R, G, B order (alpha dropped, grey replicated); None: as is.
# OpenCV's shuffles run about three times faster than numpy's strided views here.
TO_RGB: dict[str, int | None] = {
    'rgb8': None,
    'bgr8': cv2.COLOR_BGR2RGB,
    'rgba8': cv2.COLOR_RGBA2RGB,
    'bgra8': cv2.COLOR_BGRA2RGB,
    'mono8': cv2.COLOR_GRAY2RGB,
    'rgb16': None,
    'bgr16': cv2.COLOR_BGR2RGB,
    'rgba16': cv2.COLOR_RGBA2RGB,
    'bgra16': cv2.COLOR_BGRA2RGB,
    'mono16': cv2.COLOR_GRAY2RGB,  # a monochrome (machine-vision, HDR) camera's 16 bits
}
# ROS names a Bayer pattern by the first two pixels of the first two rows; OpenCV by the
# second and third pixels of the second row: ROS's RGGB is OpenCV's BG.
BAYER: dict[str, int] = {
    f'bayer_{pattern}{bits}': code
    for bits in (8, 16)
    for pattern, code in (
        ('rggb', cv2.COLOR_BayerBG2RGB),
        ('bggr', cv2.COLOR_BayerRG2RGB),
        ('gbrg', cv2.COLOR_BayerGR2RGB),
        ('grbg', cv2.COLOR_BayerGB2RGB),
    )
}
TO_RGB |= BAYER
BAYER_MIN_SIZE = 3  # OpenCV's bilinear demosaicing returns black below 3x3
# encoding -> indices of its stored channels in an (H, W, 3) RGB array
FROM_RGB: dict[str, list[int]] = {
    f'{order}{bits}': channels
    for order, channels in (('rgb', [0, 1, 2]), ('bgr', [2, 1, 0]),
                            ('rgba', [0, 1, 2]), ('bgra', [2, 1, 0]))
    for bits in (8, 16)
}
ALPHA_ENCODINGS = tuple(e for e in FROM_RGB if e.startswith(('rgba', 'bgra')))
ACCEPTED_ENCODINGS = tuple(TO_RGB)
_SCALE = {np.dtype(np.uint8): np.float32(1.0 / 255.0),
          np.dtype(np.uint16): np.float32(1.0 / 65535.0)}


def _check(encoding: str) -> None:
    if encoding not in TO_RGB:
        raise SensorInputError(f'rgb accepts {", ".join(ACCEPTED_ENCODINGS)}, got {encoding!r}')


def to_rgb_order(raw: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, C) stored pixels -> (H, W, 3) in R, G, B order, of the same type."""
    _check(encoding)
    code = TO_RGB[encoding]
    if encoding in BAYER and min(raw.shape[:2]) < BAYER_MIN_SIZE:
        height, width = raw.shape[:2]
        raise SensorInputError(
            f'{encoding} is {width}x{height} pixels: demosaicing needs at least '
            f'{BAYER_MIN_SIZE}x{BAYER_MIN_SIZE}'
        )
    return raw if code is None else cv2.cvtColor(raw, code)


def decode_rgb(raw: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, C) uint8 (uint16 for 16-bit encodings) pixels -> (H, W, 3) float32 RGB in
    [0, 1]."""
    return np.multiply(to_rgb_order(raw, encoding), _SCALE[raw.dtype], dtype=np.float32)


def encode_rgb(rgb: np.ndarray, encoding: str = 'rgb8') -> np.ndarray:
    """(H, W, 3) RGB, float in [0, 1] or uint8 -> (H, W, C) pixels of ``encoding``.

    Alpha is written opaque (full scale); ``mono8`` and ``mono16`` take the ITU-R BT.601
    luma; a Bayer encoding keeps at each pixel the channel its colour filter passes. uint8
    input to a 16-bit encoding is scaled by 257 (255 becomes 65535).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise SensorInputError(f'rgb needs (H, W, 3) pixels, got {rgb.shape}')
    if encoding in BAYER:
        return _mosaic(rgb, encoding)
    _check(encoding)
    if encoding.endswith('16'):
        rgb = _stored_values(rgb, np.dtype(np.uint16))
    elif rgb.dtype != np.uint8:
        rgb = np.clip(np.rint(np.asarray(rgb, dtype=np.float32) * 255.0), 0, 255).astype(
            np.uint8
        )
    if encoding in ('mono8', 'mono16'):
        luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        top = np.iinfo(rgb.dtype).max
        return np.clip(np.rint(luma), 0, top).astype(rgb.dtype)[..., np.newaxis]
    stored = rgb[..., FROM_RGB[encoding]]
    if encoding in ALPHA_ENCODINGS:
        alpha = np.full((*rgb.shape[:2], 1), np.iinfo(rgb.dtype).max, dtype=rgb.dtype)
        stored = np.concatenate([stored, alpha], axis=2)
    return np.ascontiguousarray(stored)


def _stored_values(rgb: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(H, W, 3) RGB, float in [0, 1] or uint8 -> the same in ``dtype``'s full range."""
    top = np.iinfo(dtype).max
    if rgb.dtype == np.uint8:
        return rgb.astype(dtype) * dtype.type(top // 255)
    return np.clip(np.rint(np.asarray(rgb, dtype=np.float64) * top), 0, top).astype(dtype)


def _mosaic(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W, 1) Bayer mosaic: at each pixel the channel its filter passes."""
    pattern, bits = encoding[len('bayer_') : len('bayer_rggb')], encoding[len('bayer_rggb') :]
    dtype = np.dtype(np.uint8 if bits == '8' else np.uint16)
    values = _stored_values(rgb, dtype)
    mosaic = np.empty((*rgb.shape[:2], 1), dtype)
    for (row, col), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern, strict=True):
        mosaic[row::2, col::2, 0] = values[row::2, col::2, 'rgb'.index(colour)]
    return mosaic
