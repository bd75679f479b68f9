"""Preprocessing from the model's metadata: resize, invalid pixels, normalization, mask."""

from __future__ import annotations

import numpy as np
import pytest

from mmp_ros.core.preprocess import (
    PreprocessError,
    build_inputs,
    frame_to_input,
    resize_representation,
)
from mmp_ros.metadata import ModelMetadata, Normalization
from mmp_ros.modalities import INPUT_CHANNELS, MODALITIES
from mmp_ros.sensors.frame import FrameStats, SensorFrame

STATS = FrameStats(b'', False, False, 0.0, np.zeros((16, 16), np.float32))


def metadata(size=(6, 8)) -> ModelMetadata:
    return ModelMetadata(
        modalities=MODALITIES,
        input_channels=dict(INPUT_CHANNELS),
        normalization={
            'rgb': Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
            'depth': Normalization((2.0,), (1.0,)),
            'polarization': Normalization((0.0, 0.0, 0.2), (0.1, 0.1, 0.1)),
            'thermal': Normalization((20.0,), (10.0,)),
        },
        input_size=size,
        class_names=('floor', 'wall'),
        palette=((0, 0, 255), (255, 0, 0)),
        method='mmp',
    )


def test_depth_holes_do_not_bleed_into_valid_neighbours():
    data = np.full((4, 4, 1), 3.0, np.float32)
    valid = np.ones((4, 4), bool)
    data[:, :2] = 0.0
    valid[:, :2] = False  # left half invalid
    out = resize_representation(data, valid, (2, 2))
    assert out[:, 1, 0].tolist() == [3.0, 3.0]  # not averaged with the zeros
    assert out[:, 0, 0].tolist() == [0.0, 0.0]  # nothing valid under it: stays invalid (0)


def test_upscaling_with_mask_keeps_valid_values():
    data = np.array([[[1.0], [5.0]]], np.float32)  # (1, 2, 1)
    valid = np.array([[True, False]])
    out = resize_representation(data, valid, (2, 4))
    assert np.allclose(out[out > 0], 1.0)


def test_resize_without_mask_averages_when_shrinking():
    data = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    out = resize_representation(data, None, (2, 2))
    assert out.shape == (2, 2, 1)
    assert out[0, 0, 0] == pytest.approx(np.mean([0, 1, 4, 5]))


def test_frame_to_input_normalizes_per_channel_in_chw():
    rgb = np.zeros((12, 16, 3), np.float32)
    rgb[..., 1] = 1.0
    out = frame_to_input(SensorFrame('rgb', rgb, None, STATS), metadata())
    assert out.shape == (3, 6, 8) and out.dtype == np.float32
    assert np.allclose(out[0], -2.0) and np.allclose(out[1], 2.0)


def test_build_inputs_fills_missing_with_zeros_and_masks_them():
    thermal = np.full((6, 8, 1), 30.0, np.float32)
    inputs, available = build_inputs({'thermal': SensorFrame('thermal', thermal, None, STATS)},
                                     metadata())
    assert available.tolist() == [[False, False, False, True]]
    assert set(inputs) == set(MODALITIES)
    assert inputs['rgb'].shape == (1, 3, 6, 8) and not inputs['rgb'].any()
    assert np.allclose(inputs['thermal'], 1.0)


def test_wrong_channel_count_is_refused_with_the_modality():
    bad = SensorFrame('depth', np.zeros((4, 4, 3), np.float32), None, STATS)
    with pytest.raises(PreprocessError, match='depth'):
        frame_to_input(bad, metadata())


def test_frames_of_a_modality_the_model_lacks_are_refused():
    meta = metadata()
    with pytest.raises(PreprocessError, match='lidar'):
        build_inputs({'lidar': SensorFrame('lidar', np.zeros((2, 2, 1)), None, STATS)}, meta)


def test_real_depth_with_holes_gives_finite_inputs_without_hole_bleed(real_data):
    import cv2

    from mmp_ros.sensors import array_to_image, decode_frame

    depth_mm = cv2.imread(str(real_data / 'tum_rgbd' / 'depth_mm.png'), cv2.IMREAD_UNCHANGED)
    frame = decode_frame('depth', array_to_image(depth_mm, '16UC1'))
    assert 0.0 < frame.stats.invalid_fraction < 1.0  # the sample has real holes
    inputs, available = build_inputs({'depth': frame}, metadata(size=(60, 80)))
    depth = inputs['depth'][0, 0] * 1.0 + 2.0  # undo (x - 2) / 1: metres again
    assert available[0, 1] and np.isfinite(depth).all()
    valid_mean = float(frame.data[..., 0][frame.valid].mean())
    # Masked averaging keeps resized values on the scale of valid readings; zero-filling
    # the holes before an area resize would drag them towards 0.
    kept = depth[depth > 0]
    assert abs(float(kept.mean()) - valid_mean) < 0.03 * valid_mean  # zero-filled: 6 % low


def _area_weights(source: int, target: int) -> np.ndarray:
    """Exact box-filter weights: output j averages input [j*s, (j+1)*s), s = source/target."""
    scale = source / target
    weights = np.zeros((target, source))
    for j in range(target):
        low, high = j * scale, (j + 1) * scale
        for i in range(int(np.floor(low)), min(int(np.ceil(high)), source)):
            weights[j, i] = max(0.0, min(high, i + 1) - max(low, i))
    return weights / weights.sum(axis=1, keepdims=True)


def _linear_weights(source: int, target: int) -> np.ndarray:
    """Half-pixel-centre linear interpolation weights, edges clamped."""
    weights = np.zeros((target, source))
    for j in range(target):
        x = min(max((j + 0.5) * source / target - 0.5, 0.0), source - 1)
        low = int(np.floor(x))
        weights[j, low] += 1 - (x - low)
        weights[j, min(low + 1, source - 1)] += x - low
    return weights


@pytest.mark.parametrize('shape', [(120, 1600), (1, 1000), (1000, 1), (100, 3000)])
def test_a_frame_shrunk_along_one_axis_and_grown_along_the_other_is_averaged_not_sampled(shape):
    """One cv2.resize call point-sampled the shrinking axis of such a frame: column stripes
    of mean 0.5 in a 120x1600 frame came out as a flat 0.1."""
    height, width = shape
    size = (128, 160)
    data = np.zeros((height, width, 1), np.float32)
    data[:, ::2] = 1.0
    data += np.random.default_rng(0).random(data.shape).astype(np.float32) * 0.1

    def weights(source, target):
        return (_area_weights if target < source else _linear_weights)(source, target)

    expected = weights(height, size[0]) @ data[..., 0] @ weights(width, size[1]).T
    out = resize_representation(data, None, size)
    np.testing.assert_allclose(out[..., 0], expected, atol=1e-5)
    valid = np.ones((height, width), bool)
    np.testing.assert_allclose(resize_representation(data, valid, size), out, atol=1e-5)
