"""Sensor representation -> model input, driven only by the model's own metadata.

The same functions serve the node and training (docs/architecture.md), so a model sees at
run time exactly the numbers it was trained on: resize to ``metadata.input_size``, then
``(x - mean) / std`` per channel, as float32 NCHW. Invalid pixels (depth holes) never
bleed into their neighbours: they are excluded from the resampling weights and stay 0 in
the representation, which is what the decoders and the training data produce.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from mmp_ros.metadata import ModelMetadata, Normalization
from mmp_ros.sensors.frame import SensorFrame


class PreprocessError(ValueError):
    """A frame does not fit the model (channel count, shape); the message says which."""


def _interpolation(source: int, target: int) -> int:
    return cv2.INTER_AREA if target < source else cv2.INTER_LINEAR


def _resize(data: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(H, W, C)`` float32 to ``size``: area average along an axis that shrinks, linear
    interpolation along one that grows.

    One ``cv2.resize`` call takes one interpolation for both axes, and its INTER_AREA
    averages only when neither axis grows: a frame shrunk along one axis and grown along
    the other (120x1600 to 128x160) was point-sampled along the shrinking axis, aliasing
    fine detail into wrong values. Such a frame is resized one axis at a time.
    """
    height, width = size
    source_h, source_w, channels = data.shape
    grows = height > source_h or width > source_w
    shrinks = height < source_h or width < source_w
    if grows and shrinks:
        rows = cv2.resize(data, (source_w, height),
                          interpolation=_interpolation(source_h, height))
        rows = rows.reshape(height, source_w, channels)
        out = cv2.resize(rows, (width, height), interpolation=_interpolation(source_w, width))
    else:
        interpolation = cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR
        out = cv2.resize(data, (width, height), interpolation=interpolation)
    return out.reshape(height, width, channels)


def resize_representation(
    data: np.ndarray, valid: np.ndarray | None, size: tuple[int, int]
) -> np.ndarray:
    """Resize ``(H, W, C)`` float32 to ``size = (height, width)``, respecting ``valid``.

    Downscaling averages (INTER_AREA) and upscaling interpolates (INTER_LINEAR), per axis.
    With a validity mask the resampling is normalized by the resampled mask, so an output
    pixel is the mean of the valid inputs under it, and 0 where none was valid.
    """
    if data.ndim != 3:
        raise PreprocessError(f'expected (H, W, C) data, got shape {data.shape}')
    height, width = size
    if data.shape[:2] == (height, width):
        out = data.astype(np.float32, copy=True)
        if valid is not None:
            out[~valid] = 0.0
        return out
    if valid is None:
        return _resize(data.astype(np.float32), size)
    weight = valid.astype(np.float32)[..., None]
    masked = np.where(valid[..., None], data, 0.0).astype(np.float32)
    summed = _resize(masked, size)
    coverage = _resize(weight, size)[..., 0]
    out = np.zeros_like(summed)
    covered = coverage > 1e-6
    out[covered] = summed[covered] / coverage[covered][:, None]
    return out


def normalize(data: np.ndarray, normalization: Normalization) -> np.ndarray:
    """``(x - mean) / std`` per channel of ``(H, W, C)`` data, as CHW float32."""
    mean = np.asarray(normalization.mean, dtype=np.float32)
    std = np.asarray(normalization.std, dtype=np.float32)
    if data.shape[2] != mean.size:
        raise PreprocessError(
            f'frame has {data.shape[2]} channels, normalization has {mean.size}'
        )
    return np.ascontiguousarray(((data - mean) / std).transpose(2, 0, 1), dtype=np.float32)


def frame_to_input(frame: SensorFrame, metadata: ModelMetadata) -> np.ndarray:
    """One frame as the model's ``(C, H, W)`` input for its modality."""
    channels = metadata.input_channels[frame.modality]
    if frame.data.ndim != 3 or frame.data.shape[2] != channels:
        raise PreprocessError(
            f'{frame.modality}: frame shape {frame.data.shape}, the model expects '
            f'{channels} channels'
        )
    resized = resize_representation(frame.data, frame.valid, metadata.input_size)
    return normalize(resized, metadata.normalization[frame.modality])


def build_inputs(
    frames: Mapping[str, SensorFrame], metadata: ModelMetadata
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The model's inputs for one sample: ``(inputs, available)`` with a batch of one.

    ``inputs[m]`` is ``(1, C, H, W)`` float32 for every modality of the model; a modality
    absent from ``frames`` gets zeros and ``available[0, i] = False``, so one graph serves
    every mask. ``available`` is ``(1, M)`` bool in ``metadata.modalities`` order.
    """
    unknown = set(frames) - set(metadata.modalities)
    if unknown:
        raise PreprocessError(f'frames for modalities the model does not take: {sorted(unknown)}')
    height, width = metadata.input_size
    inputs: dict[str, np.ndarray] = {}
    available = np.zeros((1, len(metadata.modalities)), dtype=bool)
    for index, name in enumerate(metadata.modalities):
        if name in frames:
            inputs[name] = frame_to_input(frames[name], metadata)[None]
            available[0, index] = True
        else:
            channels = metadata.input_channels[name]
            inputs[name] = np.zeros((1, channels, height, width), dtype=np.float32)
    return inputs, available
