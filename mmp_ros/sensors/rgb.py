"""Colour images to RGB in [0, 1], whatever channel order the camera publishes."""

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
}
# encoding -> indices of its stored channels in an (H, W, 3) RGB array
FROM_RGB: dict[str, list[int]] = {
    'rgb8': [0, 1, 2],
    'bgr8': [2, 1, 0],
    'rgba8': [0, 1, 2],
    'bgra8': [2, 1, 0],
}
ACCEPTED_ENCODINGS = tuple(TO_RGB)
_SCALE = np.float32(1.0 / 255.0)


def _check(encoding: str) -> None:
    if encoding not in TO_RGB:
        raise SensorInputError(f'rgb accepts {", ".join(ACCEPTED_ENCODINGS)}, got {encoding!r}')


def to_rgb_order(raw: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, C) stored uint8 pixels -> (H, W, 3) uint8 in R, G, B order."""
    _check(encoding)
    code = TO_RGB[encoding]
    return raw if code is None else cv2.cvtColor(raw, code)


def decode_rgb(raw: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, C) uint8 pixels -> (H, W, 3) float32 RGB in [0, 1] (C-contiguous)."""
    return np.multiply(to_rgb_order(raw, encoding), _SCALE, dtype=np.float32)


def encode_rgb(rgb: np.ndarray, encoding: str = 'rgb8') -> np.ndarray:
    """(H, W, 3) RGB, float in [0, 1] or uint8 -> (H, W, C) uint8 pixels of ``encoding``.

    Alpha is written opaque (255); ``mono8`` takes the ITU-R BT.601 luma.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise SensorInputError(f'rgb needs (H, W, 3) pixels, got {rgb.shape}')
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.rint(np.asarray(rgb, dtype=np.float32) * 255.0), 0, 255).astype(
            np.uint8
        )
    _check(encoding)
    if encoding == 'mono8':
        luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., np.newaxis]
    stored = rgb[..., FROM_RGB[encoding]]
    if encoding in ('rgba8', 'bgra8'):
        alpha = np.full((*rgb.shape[:2], 1), 255, dtype=np.uint8)
        stored = np.concatenate([stored, alpha], axis=2)
    return np.ascontiguousarray(stored)
