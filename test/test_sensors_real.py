"""The real samples in shared/data/real decode to what their meta.yaml records.

Tolerances: meta.yaml prints 6 significant digits, so ranges and means are compared with
a relative tolerance of 1e-5 and invalid fractions (exact pixel counts) to 1e-6.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml
from conftest import needs

from mmp_ros.sensors import (
    DepthSettings,
    PolarizationSettings,
    ThermalSettings,
    decode_frame,
)
from mmp_ros.sensors.files import aolp_dolp_fields, fields_from_file
from mmp_ros.sensors.image import array_to_image
from mmp_ros.sensors.polarization import aolp_dolp_from_representation

DEPTH_SAMPLES = ('tum_rgbd', 'nyu_raw', 'sunrgbd', 'middlebury_motorcycle')
POLARIZATION_SAMPLES = {'polanalyser_fruits': 'fruits', 'polanalyser_camera': 'camera'}
RTOL = 1e-5


def meta(folder):
    return yaml.safe_load((folder / 'meta.yaml').read_text())


def angle_error(a, b):
    d = np.mod(np.asarray(a, np.float64) - b, np.pi)
    return np.minimum(d, np.pi - d)


@pytest.mark.parametrize('sample', DEPTH_SAMPLES)
@pytest.mark.parametrize('file, encoding', [('depth_mm.png', '16UC1'), ('depth_m.npy', '32FC1')])
def test_depth_matches_meta(real_data, sample, file, encoding):
    folder = real_data / sample
    recorded = meta(folder)['files'][file]
    frame = decode_frame('depth', fields_from_file(folder / file, encoding))
    metres = frame.data[..., 0][frame.valid]
    scale = 1000.0 if encoding == '16UC1' else 1.0  # the mm file records millimetres
    assert frame.data.shape[:2] == tuple(recorded['shape'])
    assert frame.stats.invalid_fraction == pytest.approx(recorded['invalid_fraction'], abs=1e-6)
    assert metres.min() * scale == pytest.approx(recorded['min'], rel=RTOL)
    assert metres.max() * scale == pytest.approx(recorded['max'], rel=RTOL)
    assert metres.mean(dtype=np.float64) * scale == pytest.approx(recorded['mean'], rel=RTOL)
    assert not frame.data[..., 0][~frame.valid].any()  # invalid pixels are exactly 0


def test_depth_range_cuts_the_far_kinect_readings(real_data):
    """meta.yaml: 7149 valid sunrgbd pixels lie at or beyond 8.192 m."""
    folder = real_data / 'sunrgbd'
    fields = fields_from_file(folder / 'depth_mm.png', '16UC1')
    full = decode_frame('depth', fields)
    near = decode_frame('depth', fields, DepthSettings(max_m=8.191))
    pixels = fields.height * fields.width
    extra = near.stats.invalid_fraction - full.stats.invalid_fraction
    assert round(extra * pixels) == 7149
    assert near.data.max() <= 8.191


def test_flir_counts_to_celsius(real_data):
    folder = real_data / 'flirpy_radiometric'
    recorded = meta(folder)['files']['thermal_celsius.npy']
    settings = ThermalSettings('counts_linear', gain=0.04, offset=-273.15, unit='celsius')
    frame = decode_frame('thermal', fields_from_file(folder / 'thermal_raw.png', 'mono16'),
                         settings)
    celsius = frame.data[..., 0]
    # float32 holds ~280 K to about 3e-5 K; the recorded values are rounded to 0.01 degC
    assert celsius.min() == pytest.approx(recorded['min'], abs=1e-3)
    assert celsius.max() == pytest.approx(recorded['max'], abs=1e-3)
    assert celsius.mean(dtype=np.float64) == pytest.approx(recorded['mean'], abs=1e-4)
    np.testing.assert_allclose(celsius, np.load(folder / 'thermal_celsius.npy'), atol=1e-4)
    assert frame.stats.invalid_fraction == 0.0 and frame.valid is None


@pytest.mark.parametrize('sample', POLARIZATION_SAMPLES)
def test_mosaic_matches_shipped_aolp_dolp(real_data, sample):
    """Same 4x4-block grid as the README's reference computation ('quarter' resolution).

    Tolerance: DoLP 1e-6 absolute (float32 here, float64 in the reference; measured
    1.2e-7); AoLP compared modulo pi where DoLP > 0.02 (below that the angle is noise and
    float rounding could move it anywhere), at most 1e-5 rad (measured 2.4e-7).
    """
    folder = real_data / sample
    fields = fields_from_file(folder / f'{POLARIZATION_SAMPLES[sample]}_IMX250MZR.png', 'mono8')
    frame = decode_frame('polarization', fields, PolarizationSettings(resolution='quarter'))
    aolp, dolp = aolp_dolp_from_representation(frame.data)
    ref_aolp, ref_dolp = np.load(folder / 'aolp.npy'), np.load(folder / 'dolp.npy')
    assert aolp.shape == ref_aolp.shape == (512, 612)
    np.testing.assert_allclose(dolp, ref_dolp, atol=1e-6)
    polarized = ref_dolp > 0.02
    assert polarized.mean() > 0.5  # the comparison covers most of the image
    assert angle_error(aolp, ref_aolp)[polarized].max() < 1e-5


@pytest.mark.parametrize('sample', POLARIZATION_SAMPLES)
def test_half_resolution_dolp_mean_matches_meta(real_data, sample):
    """meta.yaml records the mean DoLP of the plain 2x2 super-pixel decode."""
    folder = real_data / sample
    recorded = meta(folder)['files']['dolp.npy']['for_comparison_plain_2x2_superpixel_dolp_mean']
    fields = fields_from_file(folder / f'{POLARIZATION_SAMPLES[sample]}_IMX250MZR.png', 'mono8')
    frame = decode_frame('polarization', fields)
    assert frame.data.shape == (1024, 1224, 3)
    assert frame.data[..., 2].mean(dtype=np.float64) == pytest.approx(recorded, rel=RTOL)


def test_full_resolution_agrees_with_polanalyser_on_real_pixels(real_data):
    pa = needs('polanalyser')
    mosaic = cv2.imread(str(real_data / 'polanalyser_fruits' / 'fruits_IMX250MZR.png'),
                        cv2.IMREAD_UNCHANGED)[800:1056, 1000:1320]
    frame = decode_frame('polarization', array_to_image(mosaic, 'mono8'),
                         PolarizationSettings(resolution='full'))
    aolp, dolp = aolp_dolp_from_representation(frame.data)
    intensities = pa.demosaicing(mosaic, pa.COLOR_PolarMono)  # I0, I45, I90, I135
    stokes = pa.calcStokes(intensities, np.deg2rad([0, 45, 90, 135]))
    ref_dolp = np.clip(pa.cvtStokesToDoLP(stokes), 0, 1)
    np.testing.assert_allclose(dolp, ref_dolp, atol=1e-5)
    polarized = ref_dolp > 0.02
    assert angle_error(aolp, pa.cvtStokesToAoLP(stokes))[polarized].max() < 1e-3


@pytest.mark.parametrize('sample', POLARIZATION_SAMPLES)
def test_shipped_aolp_dolp_decode_as_precomputed_input(real_data, sample):
    folder = real_data / sample
    frame = decode_frame('polarization', aolp_dolp_fields(folder))
    aolp, dolp = aolp_dolp_from_representation(frame.data)
    ref_aolp, ref_dolp = np.load(folder / 'aolp.npy'), np.load(folder / 'dolp.npy')
    np.testing.assert_allclose(dolp, ref_dolp, atol=1e-7)
    assert angle_error(aolp, ref_aolp)[ref_dolp > 1e-3].max() < 1e-4


@pytest.mark.parametrize('sample', DEPTH_SAMPLES)
def test_rgb_matches_meta(real_data, sample):
    folder = real_data / sample
    recorded = meta(folder)['files']['rgb.png']
    for encoding in ('bgr8', 'rgb8'):
        frame = decode_frame('rgb', fields_from_file(folder / 'rgb.png', encoding))
        assert frame.data.shape == tuple(recorded['shape'])
        assert frame.data.min() * 255 == pytest.approx(recorded['min'], abs=1e-4)
        assert frame.data.max() * 255 == pytest.approx(recorded['max'], abs=1e-4)
        assert frame.data.mean(dtype=np.float64) * 255 == pytest.approx(recorded['mean'],
                                                                         rel=RTOL)
    # the same picture whichever order the camera sends
    bgr = decode_frame('rgb', fields_from_file(folder / 'rgb.png', 'bgr8'))
    np.testing.assert_array_equal(frame.data, bgr.data)
