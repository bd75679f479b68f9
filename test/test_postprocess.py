"""Postprocessing: labels at camera resolution, no-prediction, palette, overlay legend."""

from __future__ import annotations

import numpy as np
import pytest

from mmp_ros.core.postprocess import (
    MISSING_COLOUR,
    NO_PREDICTION,
    PROJECTED_COLOUR,
    REAL_COLOUR,
    PostprocessError,
    colorize,
    modality_marks,
    overlay,
    palette_array,
    substitution,
    to_camera_resolution,
    visualize,
)
from mmp_ros.sensors.frame import FrameStats, SensorFrame

STATS = FrameStats(b'', False, False, 0.0, np.zeros((16, 16), np.float32))


def test_labels_are_resized_nearest_to_camera_resolution():
    labels = np.array([[0, 1], [2, 1]], np.int32)
    confidence = np.full((2, 2), 0.9, np.float32)
    seg = to_camera_resolution(labels, confidence, (4, 6), num_classes=3)
    assert seg.labels.shape == (4, 6) and seg.labels.dtype == np.uint8
    assert seg.confidence.shape == (4, 6) and seg.confidence.dtype == np.float32
    assert set(np.unique(seg.labels)) == {0, 1, 2}  # nearest: no invented in-between classes
    assert seg.labels[0, 0] == 0 and seg.labels[3, 0] == 2


def test_low_confidence_and_out_of_range_labels_become_no_prediction():
    labels = np.array([[0, 1], [7, -1]], np.int32)
    confidence = np.array([[0.2, 0.9], [0.9, 0.9]], np.float32)
    seg = to_camera_resolution(labels, confidence, (2, 2), num_classes=3, min_confidence=0.5)
    assert seg.labels.tolist() == [[NO_PREDICTION, 1], [NO_PREDICTION, NO_PREDICTION]]


def test_too_many_classes_for_mono8_is_refused():
    with pytest.raises(PostprocessError, match='mono8'):
        to_camera_resolution(np.zeros((2, 2), np.int32), np.zeros((2, 2)), (2, 2),
                             num_classes=300)


def test_colorize_uses_the_palette_and_black_for_no_prediction():
    table = palette_array([(10, 20, 30), (200, 100, 0)])
    color = colorize(np.array([[0, 1, NO_PREDICTION]], np.uint8), table)
    assert color.tolist() == [[[10, 20, 30], [200, 100, 0], [0, 0, 0]]]


def test_marks_say_projected_for_mmp_and_missing_for_zero_fill_models():
    names = ('rgb', 'depth')
    assert modality_marks(names, [True, False], 'mmp') == {'rgb': 'real', 'depth': 'projected'}
    assert modality_marks(names, [True, False], 'dropout') == {'rgb': 'real', 'depth': 'missing'}


def test_substitution_names_what_each_method_puts_in_place_of_a_missing_modality():
    assert substitution('mmp') == substitution('mmp_adapt') == 'projected'
    assert substitution('mask_token') == 'replaced by the learned mask token'
    assert substitution('none') == substitution('dropout') == 'zero-filled'


def test_overlay_blends_and_draws_one_legend_tag_per_modality():
    background = np.full((120, 160, 3), 100, np.uint8)
    color = np.zeros((120, 160, 3), np.uint8)
    color[..., 0] = 200
    marks = {'rgb': 'real', 'depth': 'projected', 'thermal': 'missing'}
    out = overlay(background, color, marks, alpha=0.5)
    assert out.shape == (120, 160, 3) and out.dtype == np.uint8
    assert out[-1, -1].tolist() == [150, 50, 50]  # away from the legend: a plain blend
    legend = out[:60, :40].reshape(-1, 3).tolist()
    for colour in (REAL_COLOUR, PROJECTED_COLOUR, MISSING_COLOUR):
        assert list(colour) in legend


def test_overlay_resizes_a_background_of_another_size():
    out = overlay(np.zeros((30, 40, 3), np.uint8), np.zeros((60, 80, 3), np.uint8), {})
    assert out.shape == (60, 80, 3)


def test_visualize_every_modality_as_rgb8():
    rng = np.random.default_rng(0)
    frames = [
        SensorFrame('rgb', rng.random((8, 8, 3), dtype=np.float32), None, STATS),
        SensorFrame('depth', rng.random((8, 8, 1), dtype=np.float32) * 4,
                    rng.random((8, 8)) > 0.3, STATS),
        SensorFrame('polarization', rng.random((8, 8, 3), dtype=np.float32), None, STATS),
        SensorFrame('thermal', 20 + 10 * rng.random((8, 8, 1), dtype=np.float32), None, STATS),
    ]
    for frame in frames:
        image = visualize(frame)
        assert image.shape == (8, 8, 3) and image.dtype == np.uint8
        assert image.any()
    depth = frames[1]
    assert not visualize(depth)[~depth.valid].any()  # holes stay black


def test_a_weakly_polarized_scene_is_seen_with_its_angles_in_colour():
    # DoLP of a few percent, as real scenes have: as raw brightness it was nearly black
    from mmp_ros.sensors.polarization import representation_from_aolp_dolp

    aolp = np.zeros((8, 8), np.float32)
    aolp[:, 4:] = np.pi / 2  # two surfaces polarized at right angles
    dolp = np.full((8, 8), 0.03, np.float32)
    frame = SensorFrame('polarization', representation_from_aolp_dolp(aolp, dolp), None, STATS)
    image = visualize(frame)
    assert image.max(axis=2).min() >= 250  # bright where polarized
    assert not np.array_equal(image[0, 0], image[0, 7])  # angles told apart by hue
    unpolarized = SensorFrame('polarization', np.zeros((8, 8, 3), np.float32), None, STATS)
    assert not visualize(unpolarized).any()


def test_labels_are_sampled_at_pixel_centres_so_a_symmetric_map_stays_symmetric():
    """cv2.INTER_NEAREST takes source floor(x * scale): 3 labels to 5 pixels gave
    [0, 0, 1, 1, 2], half a camera pixel right of the confidence (sampled at centres)."""
    labels = np.array([[0, 1, 2]], np.int32)
    confidence = np.full((1, 3), 0.9, np.float32)
    seg = to_camera_resolution(labels, confidence, (1, 5), num_classes=3)
    assert seg.labels.tolist() == [[0, 0, 1, 2, 2]]
    column = to_camera_resolution(labels.T.copy(), confidence.T.copy(), (5, 1), num_classes=3)
    assert column.labels[:, 0].tolist() == [0, 0, 1, 2, 2]


def test_a_nan_confidence_is_no_prediction_even_with_min_confidence_zero():
    # NaN logits (an FP16 overflow) give a NaN softmax and an arbitrary argmax; the pixel
    # kept that class with confidence 0, since nothing is below min_confidence 0.
    labels = np.array([[0, 1], [2, 1]], np.int32)
    confidence = np.array([[np.nan, 0.9], [0.8, np.nan]], np.float32)
    seg = to_camera_resolution(labels, confidence, (2, 2), num_classes=3)
    assert seg.labels.tolist() == [[NO_PREDICTION, 1], [2, NO_PREDICTION]]
    assert seg.confidence.tolist() == [[0.0, pytest.approx(0.9)], [pytest.approx(0.8), 0.0]]
    grown = to_camera_resolution(labels, confidence, (4, 4), num_classes=3)
    assert grown.labels[0, 0] == NO_PREDICTION and grown.labels[3, 3] == NO_PREDICTION
