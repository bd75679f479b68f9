"""Depth per REP 117/118: metres, invalid = 0, explicit validity mask, configurable range."""

from __future__ import annotations

import numpy as np
import pytest

from mmp_ros.sensors import ENCODINGS, DepthSettings, SensorInputError, decode_frame, encode_frame
from mmp_ros.sensors.image import array_to_image


def test_16uc1_is_millimetres_with_zero_invalid():
    raw = np.array([[0, 1, 1500], [65535, 0, 250]], dtype=np.uint16)
    frame = decode_frame('depth', array_to_image(raw, '16UC1'))
    expected = np.array([[0, 0.001, 1.5], [65.535, 0, 0.25]], dtype=np.float32)
    np.testing.assert_allclose(frame.data[..., 0], expected, rtol=1e-6)
    assert frame.data.shape == (2, 3, 1) and frame.data.dtype == np.float32
    np.testing.assert_array_equal(frame.valid, raw != 0)
    assert frame.stats.invalid_fraction == pytest.approx(2 / 6)


def test_32fc1_nan_inf_zero_and_negative_are_invalid():
    raw = np.array([[np.nan, np.inf, -np.inf, 0.0, -1.0, 2.5]], dtype=np.float32)
    frame = decode_frame('depth', array_to_image(raw, '32FC1'))
    assert frame.valid.tolist() == [[False] * 5 + [True]]
    assert frame.data[..., 0].tolist() == [[0, 0, 0, 0, 0, 2.5]]
    assert np.isfinite(frame.data).all()
    assert frame.stats.invalid_fraction == pytest.approx(5 / 6)


def test_range_limits_mark_pixels_invalid():
    raw = np.array([[100, 499, 500, 4000, 4001]], dtype=np.uint16)
    settings = DepthSettings(min_m=0.5, max_m=4.0)
    frame = decode_frame('depth', array_to_image(raw, '16UC1'), settings)
    assert frame.valid.tolist() == [[False, False, True, True, False]]
    np.testing.assert_allclose(frame.data[0, :, 0], [0, 0, 0.5, 4.0, 0], rtol=1e-6)


@pytest.mark.parametrize('value', [np.nan, np.inf, 0.0])
def test_frame_without_valid_pixels_decodes(value):
    raw = np.full((48, 64), value, dtype=np.float32)
    frame = decode_frame('depth', array_to_image(raw, '32FC1'))
    assert frame.stats.invalid_fraction == 1.0
    assert not frame.valid.any()
    assert not frame.data.any()
    assert frame.stats.thumbnail.shape == (16, 16)


def test_all_zero_16uc1_is_blank_and_fully_invalid():
    frame = decode_frame('depth', array_to_image(np.zeros((4, 4), np.uint16), '16UC1'))
    assert frame.stats.all_zero and frame.stats.invalid_fraction == 1.0
    assert not frame.stats.saturated


def test_bad_range_settings_are_refused():
    with pytest.raises(SensorInputError, match='0 <= min_m < max_m'):
        DepthSettings(min_m=3.0, max_m=2.0)


@pytest.mark.parametrize('encoding', ['rgb8', 'mono16', '16SC1', '32FC2'])
def test_other_encodings_are_not_depth(encoding):
    dtype, channels = ENCODINGS[encoding]
    fields = array_to_image(np.zeros((2, 2, channels), dtype), encoding)
    with pytest.raises(SensorInputError, match=f"'{encoding}' is not accepted for depth"):
        decode_frame('depth', fields)


def test_encode_16uc1_and_32fc1_round_trip():
    metres = np.array([[0.0, np.nan, 1.2346, 70.0, -1.0, 0.0004]], dtype=np.float32)
    mm = encode_frame('depth', metres, '16UC1')
    back = decode_frame('depth', mm)
    # 70 m does not fit 16 bits and 0.4 mm rounds to 0: both stored as "no reading"
    assert back.valid.tolist() == [[False, False, True, False, False, False]]
    assert back.data[0, 2, 0] == pytest.approx(1.235, abs=1e-6)  # rounded to mm
    floats = encode_frame('depth', metres, '32FC1')
    stored = np.frombuffer(floats.data, np.float32)
    assert np.isnan(stored[[0, 1, 4]]).all()  # invalid written as NaN (REP 117)
    back = decode_frame('depth', floats)
    np.testing.assert_array_equal(back.data[0, [2, 3, 5], 0], metres[0, [2, 3, 5]])


@pytest.mark.parametrize('millimetres', [700, 1300, 4100, 7000])
def test_16uc1_reading_at_the_range_limit_is_valid(millimetres):
    """0.001 in float32 times 7000 is 7.0000005 m: a reading of exactly max_m was dropped."""
    raw = np.array([[millimetres]], dtype=np.uint16)
    metres = millimetres / 1000
    for settings in (DepthSettings(max_m=metres), DepthSettings(min_m=metres)):
        frame = decode_frame('depth', array_to_image(raw, '16UC1'), settings)
        assert frame.valid.tolist() == [[True]]
        assert frame.data[0, 0, 0] == np.float32(metres)


def test_16uc1_metres_are_the_nearest_float32_to_millimetres_over_1000():
    raw = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    frame = decode_frame('depth', array_to_image(raw, '16UC1'))
    np.testing.assert_array_equal(frame.data[..., 0], (raw / 1000).astype(np.float32))
