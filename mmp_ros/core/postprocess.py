"""Model output -> what a robot and a person look at, at the camera's resolution.

Labels come back at the model's input size; they are resized (nearest) to the anchor
camera's resolution, and pixels the model is not confident about become
:data:`NO_PREDICTION`. The overlay is drawn over the RGB frame, or over the best stream
that is alive when RGB is not, and says in its legend which modalities were real and
which were projected by the model (or zero-filled, for models trained without MMP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mmp_ros.metadata import PROJECTION_METHODS
from mmp_ros.sensors.frame import SensorFrame

NO_PREDICTION = 255  # label value of a pixel without a prediction (mono8 output)
MAX_CLASSES = NO_PREDICTION  # class ids must fit below NO_PREDICTION in mono8

# Legend colours (RGB): a real stream, a projected one, a zero-filled one.
REAL_COLOUR = (40, 200, 60)
PROJECTED_COLOUR = (240, 160, 20)
MISSING_COLOUR = (220, 40, 40)


class PostprocessError(ValueError):
    """Model output that cannot be turned into messages; the message says why."""


@dataclass(frozen=True)
class Segmentation:
    """The outputs of one inference at camera resolution."""

    labels: np.ndarray  # (H, W) uint8, NO_PREDICTION where unsure
    confidence: np.ndarray  # (H, W) float32 in [0, 1]


def to_camera_resolution(
    labels: np.ndarray,
    confidence: np.ndarray,
    size: tuple[int, int],
    *,
    num_classes: int,
    min_confidence: float = 0.0,
) -> Segmentation:
    """Resize one sample's ``(h, w)`` labels and confidence to ``size = (height, width)``."""
    if labels.ndim != 2 or labels.shape != confidence.shape:
        raise PostprocessError(
            f'labels {labels.shape} and confidence {confidence.shape} must be the same (h, w)'
        )
    if num_classes > MAX_CLASSES:
        raise PostprocessError(f'{num_classes} classes do not fit mono8 labels (max 255)')
    conf = confidence.astype(np.float32)
    # A NaN confidence comes from NaN logits (an FP16 overflow, say): their argmax is no
    # prediction, whatever min_confidence is (0 keeps every other pixel).
    unknown = (labels < 0) | (labels >= num_classes) | np.isnan(conf)
    ids = np.where(unknown, NO_PREDICTION, labels).astype(np.uint8)
    conf = np.clip(np.nan_to_num(conf, nan=0.0), 0.0, 1.0)
    height, width = size
    if ids.shape != (height, width):
        # INTER_NEAREST_EXACT samples at pixel centres, like INTER_LINEAR for the confidence
        # and the input resize; INTER_NEAREST takes floor(x * scale) and shifts the labels
        # by half a camera pixel towards the bottom right.
        ids = cv2.resize(ids, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
        conf = cv2.resize(conf, (width, height), interpolation=cv2.INTER_LINEAR)
    out = np.where(conf < min_confidence, NO_PREDICTION, ids).astype(np.uint8)
    return Segmentation(out, conf)


def palette_array(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(256, 3) uint8 lookup table: class colours, black for :data:`NO_PREDICTION`."""
    table = np.zeros((256, 3), dtype=np.uint8)
    if len(palette) > MAX_CLASSES:
        raise PostprocessError(
            f'{len(palette)} classes do not fit mono8 labels (at most {MAX_CLASSES}: '
            f'{NO_PREDICTION} means no prediction)'
        )
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return table


def colorize(labels: np.ndarray, palette_table: np.ndarray) -> np.ndarray:
    """(H, W) uint8 labels -> (H, W, 3) uint8 RGB through :func:`palette_array`'s table."""
    return palette_table[labels]


def visualize(frame: SensorFrame) -> np.ndarray:
    """A sensor frame as (H, W, 3) uint8 RGB for a person: the overlay's background."""
    data = frame.data
    if frame.modality == 'rgb':
        return (np.clip(data, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if frame.modality == 'polarization':
        # AoLP as hue, DoLP as brightness up to the frame's 98th percentile: a scene's DoLP is
        # mostly a few percent, and as raw brightness the picture was nearly black.
        two_aolp = np.arctan2(data[..., 1], data[..., 0]) % (2.0 * np.pi)
        hue = np.minimum(two_aolp * (90.0 / np.pi), 179.0)  # OpenCV: hue 0..179, AoLP 0..180°
        dolp = np.clip(data[..., 2], 0.0, 1.0)
        value = np.clip(dolp / max(float(np.percentile(dolp, 98)), 1e-6), 0.0, 1.0)
        hsv = cv2.merge([hue.astype(np.uint8), np.full(hue.shape, 255, np.uint8),
                         (value * 255.0 + 0.5).astype(np.uint8)])
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    channel = data[..., 0]
    valid = np.isfinite(channel) if frame.valid is None else frame.valid & np.isfinite(channel)
    if not valid.any():
        return np.zeros((*channel.shape, 3), dtype=np.uint8)
    low, high = np.percentile(channel[valid], [2, 98])
    scaled = np.clip((channel - low) / max(high - low, 1e-6), 0.0, 1.0)
    scaled = np.where(valid, scaled, 0.0)
    colormap = cv2.COLORMAP_INFERNO if frame.modality == 'thermal' else cv2.COLORMAP_VIRIDIS
    bgr = cv2.applyColorMap((scaled * 255.0).astype(np.uint8), colormap)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def substitution(method: str) -> str:
    """What a model trained with ``method`` puts in place of a missing modality, in words."""
    if method in PROJECTION_METHODS:
        return 'projected'
    if method == 'mask_token':
        return 'replaced by the learned mask token'
    return 'zero-filled'


def modality_marks(
    modalities: Sequence[str], available: Sequence[bool], method: str
) -> dict[str, str]:
    """For each modality: 'real', 'projected' (MMP synthesized it) or 'missing' (zeros, or
    a learned token: nothing estimated from the other streams)."""
    absent = 'projected' if method in PROJECTION_METHODS else 'missing'
    return {m: 'real' if a else absent for m, a in zip(modalities, available, strict=True)}


def overlay(
    background: np.ndarray,
    color: np.ndarray,
    marks: Mapping[str, str],
    *,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend ``color`` over ``background`` (both (H, W, 3) uint8 RGB) and draw the legend.

    The legend is one tag per modality in the top-left corner: green when the stream was
    real, orange when the model projected it, red when it was zero-filled.
    """
    height, width = color.shape[:2]
    if background.shape[:2] != (height, width):
        background = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    blended = cv2.addWeighted(background, 1.0 - alpha, color, alpha, 0.0)
    colours = {'real': REAL_COLOUR, 'projected': PROJECTED_COLOUR, 'missing': MISSING_COLOUR}
    scale = max(0.3, min(height, width) / 600.0)
    thickness = max(1, round(scale * 1.5))
    x, y = 4, 4
    for name, mark in marks.items():
        text = f'{name}: {mark}'
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(blended, (x, y), (x + tw + 6, y + th + base + 4), colours[mark], -1)
        cv2.putText(blended, text, (x + 3, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), thickness, cv2.LINE_AA)
        y += th + base + 6
    return blended


def best_background(frames: Mapping[str, SensorFrame], preference: Sequence[str]) -> SensorFrame:
    """The frame to draw the overlay over: the first available in ``preference`` order."""
    for name in preference:
        if name in frames:
            return frames[name]
    raise PostprocessError('no frame to draw the overlay over')
