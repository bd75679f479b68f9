"""Polarization: mosaic -> Stokes -> (DoLP cos 2φ, DoLP sin 2φ, DoLP), against polanalyser."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs

from mmp_ros.sensors import PolarizationSettings, SensorInputError, decode_frame, encode_frame
from mmp_ros.sensors.image import array_to_image
from mmp_ros.sensors.polarization import (
    ANGLES,
    aolp_dolp_from_representation,
    encode_mosaic,
    intensities_from_stokes,
    mosaic_intensities,
    representation_from_aolp_dolp,
    representation_from_stokes,
    stokes_from_intensities,
)


def angle_error(a, b):
    """Distance between two AoLP arrays modulo pi (radians)."""
    d = np.mod(np.asarray(a, np.float64) - b, np.pi)
    return np.minimum(d, np.pi - d)


def scene(height=24, width=32, seed=0):
    """A smooth synthetic polarization field: (S0, DoLP, AoLP) per 2x2 block."""
    rng = np.random.default_rng(seed)
    s0 = rng.uniform(20000, 60000, (height, width))
    dolp = rng.uniform(0.0, 0.9, (height, width))
    aolp = rng.uniform(0.0, np.pi, (height, width))
    return s0, dolp, aolp


def test_half_resolution_recovers_aolp_and_dolp():
    s0, dolp, aolp = scene()
    mosaic = encode_mosaic(intensities_from_stokes(s0, dolp, aolp), 'mono16')
    frame = decode_frame('polarization', array_to_image(mosaic, 'mono16'))
    assert frame.data.shape == (24, 32, 3) and frame.data.dtype == np.float32
    got_aolp, got_dolp = aolp_dolp_from_representation(frame.data)
    np.testing.assert_allclose(got_dolp, dolp, atol=1e-4)  # 16-bit rounding only
    assert angle_error(got_aolp, aolp)[dolp > 0.05].max() < 1e-3


def test_representation_is_pi_periodic_and_matches_its_definition():
    s0, dolp, aolp = scene(seed=1)
    rep = representation_from_aolp_dolp(aolp, dolp)
    np.testing.assert_allclose(rep, representation_from_aolp_dolp(aolp + np.pi, dolp), atol=1e-5)
    np.testing.assert_allclose(rep[..., 0], dolp * np.cos(2 * aolp), atol=1e-6)
    np.testing.assert_allclose(rep[..., 1], dolp * np.sin(2 * aolp), atol=1e-6)
    stokes = stokes_from_intensities(intensities_from_stokes(s0, dolp, aolp))
    np.testing.assert_allclose(representation_from_stokes(*stokes), rep, atol=1e-4)


def test_dolp_is_clipped_and_dark_pixels_are_unpolarized():
    s0 = np.array([[10.0, 0.0]], np.float32)
    s1 = np.array([[30.0, 5.0]], np.float32)  # DoLP 5 before clipping; then S0 = 0
    s2 = np.array([[40.0, 5.0]], np.float32)
    rep = representation_from_stokes(s0, s1, s2)
    np.testing.assert_allclose(rep[0, 0], [0.6, 0.8, 1.0], atol=1e-6)  # angle kept
    assert rep[0, 1].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize('layout', [((90, 45), (135, 0)), ((0, 45), (135, 90)),
                                    ((45, 0), (90, 135))])
@pytest.mark.parametrize('resolution', ['half', 'full'])
def test_layout_puts_each_angle_where_it_was_measured(layout, resolution):
    settings = PolarizationSettings(layout=layout, resolution=resolution)
    values = {0: 10, 45: 20, 90: 30, 135: 40}
    mosaic = np.empty((8, 8), np.uint8)
    for r in range(2):
        for c in range(2):
            mosaic[r::2, c::2] = values[layout[r][c]]
    stack = mosaic_intensities(mosaic, settings)
    for index, angle in enumerate(ANGLES):
        interior = stack[index] if resolution == 'half' else stack[index, 2:-2, 2:-2]
        assert np.all(interior == values[angle]), (angle, interior)


def test_quarter_resolution_averages_4x4_blocks():
    rng = np.random.default_rng(3)
    mosaic = rng.integers(0, 256, (8, 12), dtype=np.uint8)
    stack = mosaic_intensities(mosaic, PolarizationSettings(resolution='quarter'))
    assert stack.shape == (4, 2, 3)
    i90 = mosaic[0::2, 0::2].astype(np.float64)  # IMX250MZR: 90 deg at (0, 0)
    expected = i90.reshape(2, 2, 3, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(stack[ANGLES.index(90)], expected, rtol=1e-6)


def test_encode_mosaic_inverts_the_layout():
    rng = np.random.default_rng(4)
    intensities = rng.integers(0, 4096, (4, 6, 5)).astype(np.float32)
    for layout in [((90, 45), (135, 0)), ((135, 0), (45, 90))]:
        settings = PolarizationSettings(layout=layout)
        mosaic = encode_mosaic(intensities, 'mono16', settings)
        assert mosaic.shape == (12, 10)
        np.testing.assert_array_equal(mosaic_intensities(mosaic, settings), intensities)


def test_agrees_with_polanalyser_full_resolution():
    """Same bilinear demosaic and Stokes convention: AoLP/DoLP agree to float precision."""
    pa = needs('polanalyser')
    rng = np.random.default_rng(5)
    s0, dolp, aolp = scene(32, 40, seed=5)
    intensities = intensities_from_stokes(s0 / 260.0, dolp, aolp)
    mosaic = encode_mosaic(intensities + rng.normal(0, 2, intensities.shape), 'mono8')
    ours = decode_frame('polarization', array_to_image(mosaic, 'mono8'),
                        PolarizationSettings(resolution='full')).data
    i0, i45, i90, i135 = pa.demosaicing(mosaic, pa.COLOR_PolarMono)
    stokes = pa.calcStokes([i0, i45, i90, i135], np.deg2rad([0, 45, 90, 135]))
    their_dolp = np.clip(np.nan_to_num(pa.cvtStokesToDoLP(stokes)), 0, 1)
    their_aolp = pa.cvtStokesToAoLP(stokes)
    our_aolp, our_dolp = aolp_dolp_from_representation(ours)
    np.testing.assert_allclose(our_dolp, their_dolp, atol=1e-5)
    assert angle_error(our_aolp, their_aolp)[their_dolp > 0.01].max() < 1e-4


def test_agrees_with_polanalyser_stokes_at_half_resolution():
    pa = needs('polanalyser')
    rng = np.random.default_rng(6)
    mosaic = rng.integers(0, 4096, (16, 20), dtype=np.uint16)
    intensities = mosaic_intensities(mosaic)
    ours = stokes_from_intensities(intensities)
    theirs = pa.calcStokes(list(intensities), np.deg2rad(ANGLES))
    for index in range(3):
        np.testing.assert_allclose(ours[index], theirs[..., index], rtol=1e-5, atol=1e-2)


def test_precomputed_aolp_dolp_input():
    _, dolp, aolp = scene(6, 8, seed=7)
    stacked = np.stack([aolp + np.pi, dolp], axis=-1).astype(np.float32)  # any AoLP mod pi
    fields = encode_frame('polarization', stacked, '32FC2')
    frame = decode_frame('polarization', fields)
    got_aolp, got_dolp = aolp_dolp_from_representation(frame.data)
    np.testing.assert_allclose(got_dolp, dolp, atol=1e-6)
    assert angle_error(got_aolp, aolp).max() < 1e-5
    assert frame.valid is None


def test_precomputed_non_finite_pixels_are_masked():
    stacked = np.zeros((2, 2, 2), np.float32)
    stacked[0, 0, 0] = np.nan
    frame = decode_frame('polarization', array_to_image(stacked, '32FC2'))
    assert frame.valid.tolist() == [[False, True], [True, True]]
    assert frame.stats.invalid_fraction == 0.25 and np.isfinite(frame.data).all()


def test_odd_mosaic_is_refused():
    with pytest.raises(SensorInputError, match='even width and height, got 5x4'):
        decode_frame('polarization', array_to_image(np.zeros((4, 5), np.uint8), 'mono8'))


@pytest.mark.parametrize('resolution', ['quarter', 'full'])
@pytest.mark.parametrize('shape', [(2, 2), (2, 8), (8, 2)])
def test_mosaic_too_small_for_quarter_or_full_resolution_is_refused(shape, resolution):
    """'full' of a mosaic 2 pixels high or wide was all zeros (OpenCV's demosaicing gives
    black below 3x3), decoded as an unpolarized frame; 4x4 decodes."""
    fields = array_to_image(np.full(shape, 60, np.uint8), 'mono8')
    with pytest.raises(SensorInputError, match=f'{resolution} resolution needs a mosaic of at '
                       f'least 4x4 pixels, got {shape[1]}x{shape[0]}'):
        decode_frame('polarization', fields, PolarizationSettings(resolution=resolution))
    mosaic = encode_mosaic(np.array([60, 40, 20, 40]).reshape(4, 1, 1) * np.ones((4, 2, 2)))
    frame = decode_frame('polarization', array_to_image(mosaic, 'mono8'),
                         PolarizationSettings(resolution=resolution))
    np.testing.assert_allclose(frame.data[..., 2], 0.5, atol=1e-6)  # S0 = 80, S1 = 40: not 0


def test_bad_layout_and_encoding_are_refused():
    with pytest.raises(SensorInputError, match='0, 45, 90 and 135 deg once each'):
        PolarizationSettings(layout=((0, 45), (90, 90)))
    with pytest.raises(SensorInputError, match='once each in a 2x2 block'):
        PolarizationSettings(layout=(0, 45, 90, 135))
    with pytest.raises(SensorInputError, match='resolution must be one of'):
        PolarizationSettings(resolution='double')
    with pytest.raises(SensorInputError, match="'rgb8' is not accepted for polarization"):
        decode_frame('polarization', array_to_image(np.zeros((2, 2, 3), np.uint8), 'rgb8'))
