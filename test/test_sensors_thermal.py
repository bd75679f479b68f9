"""Thermal to degrees Celsius by the configured semantics; FLIR's Planck curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmp_ros.sensors import (
    PlanckCalibration,
    SensorInputError,
    ThermalSettings,
    decode_frame,
    encode_frame,
)
from mmp_ros.sensors.image import array_to_image


def decode(raw, encoding, settings):
    return decode_frame('thermal', array_to_image(raw, encoding), settings)


def test_counts_linear_in_kelvin_and_celsius_agree():
    counts = np.array([[0, 6829, 7000, 65535]], dtype=np.uint16)
    kelvin = decode(counts, 'mono16', ThermalSettings('counts_linear', 0.04, 0.0, 'kelvin'))
    celsius = decode(counts, '16UC1', ThermalSettings('counts_linear', 0.04, -273.15, 'celsius'))
    expected = counts.astype(np.float64) * 0.04 - 273.15
    np.testing.assert_allclose(kelvin.data[..., 0], expected, atol=2e-3)
    np.testing.assert_allclose(celsius.data[..., 0], expected, atol=2e-3)
    assert kelvin.valid is None and kelvin.stats.invalid_fraction == 0.0
    assert kelvin.stats.fingerprint == celsius.stats.fingerprint  # same bytes, same digest


def test_centikelvin():
    counts = np.array([[27315, 31315, 0]], dtype=np.uint16)
    frame = decode(counts, 'mono16', ThermalSettings('centikelvin'))
    np.testing.assert_allclose(frame.data[0, :, 0], [0.0, 40.0, -273.15], atol=1e-3)


@pytest.mark.parametrize('semantics, offset', [('celsius', 0.0), ('kelvin', 273.15)])
def test_float_semantics(semantics, offset):
    values = np.array([[-20.5, 0.0, 36.6]], dtype=np.float32) + np.float32(offset)
    frame = decode(values, '32FC1', ThermalSettings(semantics))
    np.testing.assert_allclose(frame.data[0, :, 0], [-20.5, 0.0, 36.6], atol=1e-4)


def test_float_thermal_non_finite_pixels_are_masked():
    values = np.array([[20.0, np.nan, np.inf]], dtype=np.float32)
    frame = decode(values, '32FC1', ThermalSettings('celsius'))
    assert frame.valid.tolist() == [[True, False, False]]
    assert frame.data[0, :, 0].tolist() == [20.0, 0.0, 0.0]
    assert frame.stats.invalid_fraction == pytest.approx(2 / 3)


@pytest.mark.parametrize('semantics, offset', [('celsius', 0.0), ('kelvin', 273.15)])
def test_float_thermal_below_absolute_zero_is_masked(semantics, offset):
    # was: -300 degC (a garbage float) passed as a valid pixel without a word
    values = np.array([[-300.0, -273.15, 20.0, -1e30]], dtype=np.float64) + offset
    frame = decode(values.astype(np.float32), '32FC1', ThermalSettings(semantics))
    assert frame.valid.tolist() == [[False, True, True, False]]
    np.testing.assert_allclose(frame.data[0, :, 0], [0.0, -273.15, 20.0, 0.0], atol=1e-4)
    assert frame.stats.invalid_fraction == pytest.approx(0.5)


def test_mono8_is_a_linear_range():
    settings = ThermalSettings.linear_range(-10.0, 40.0)
    frame = decode(np.array([[0, 51, 255]], dtype=np.uint8), 'mono8', settings)
    np.testing.assert_allclose(frame.data[0, :, 0], [-10.0, 0.0, 40.0], atol=1e-4)
    assert decode(np.full((2, 2), 255, np.uint8), 'mono8', settings).stats.saturated


def test_planck_matches_the_closed_form():
    planck = PlanckCalibration()
    t = np.array([250.0, 273.15, 300.0, 373.15])
    expected = planck.r1 / (planck.r2 * (np.exp(planck.b / t) - planck.f)) - planck.o
    np.testing.assert_allclose(planck.counts_from_kelvin(t), expected, rtol=1e-12)
    np.testing.assert_allclose(planck.kelvin_from_counts(expected), t, rtol=1e-10)
    # documented: 0 degC about 2300 counts, 100 degC about 8600, inside 14 bits
    assert 2200 < planck.counts_from_kelvin(273.15) < 2400
    assert 8400 < planck.counts_from_kelvin(373.15) < 8800 < 2**14


def test_planck_is_vectorised_and_keeps_float32():
    planck = PlanckCalibration(r1=21106.77, r2=0.012545258, b=1501.0, f=1.0, o=-7340.0)
    t = np.linspace(240.0, 420.0, 64, dtype=np.float32).reshape(8, 8)
    counts = planck.counts_from_kelvin(t)
    assert counts.shape == (8, 8) and counts.dtype == np.float32
    np.testing.assert_allclose(planck.kelvin_from_counts(counts), t, rtol=1e-5)
    assert np.all(np.diff(counts.ravel()) > 0)  # hotter is brighter


def test_planck_counts_below_the_curve_are_nan_not_errors():
    planck = PlanckCalibration()
    assert np.isnan(planck.kelvin_from_counts(np.array([0.0, 342.0]))).all()


def test_planck_decode_and_encode_round_trip():
    settings = ThermalSettings('planck')
    celsius = np.array([[-20.0, 0.0, 25.0, 80.0]], dtype=np.float32)
    fields = encode_frame('thermal', celsius, 'mono16', settings)
    frame = decode_frame('thermal', fields, settings)
    # one count is about 0.03 K near 0 degC with these constants
    np.testing.assert_allclose(frame.data[0, :, 0], celsius[0], atol=0.05)
    low = decode(np.array([[0, 5000]], dtype=np.uint16), 'mono16', settings)
    assert low.valid.tolist() == [[False, True]] and low.data[0, 0, 0] == 0.0


@pytest.mark.parametrize(
    'semantics, encoding',
    [('counts_linear', 'mono16'), ('centikelvin', 'mono16'), ('celsius', '32FC1'),
     ('kelvin', '32FC1'), ('counts_linear', 'mono8')],
)
def test_encode_then_decode(semantics, encoding):
    settings = (ThermalSettings.linear_range(-20.0, 60.0) if encoding == 'mono8'
                else ThermalSettings(semantics))
    celsius = np.linspace(-15.0, 55.0, 12, dtype=np.float32).reshape(3, 4)
    frame = decode_frame('thermal', encode_frame('thermal', celsius, encoding, settings),
                         settings)
    step = {'mono8': 80 / 255, 'mono16': 0.04}.get(encoding, 1e-4)
    np.testing.assert_allclose(frame.data[..., 0], celsius, atol=step / 2 + 1e-4)


def test_semantics_and_encoding_must_match():
    with pytest.raises(SensorInputError, match="semantics 'celsius' takes 32FC1, 64FC1"):
        decode(np.zeros((2, 2), np.uint16), 'mono16', ThermalSettings('celsius'))
    with pytest.raises(SensorInputError, match="'rgb8' is not accepted for thermal"):
        decode(np.zeros((2, 2, 3), np.uint8), 'rgb8', ThermalSettings())


def test_a_mismatch_names_the_setting_and_the_semantics_that_take_the_encoding():
    """An AGC'd mono8 camera under the node's default 'planck' was told only what planck
    takes: the message names the parameter to change and the semantics that reads mono8."""
    with pytest.raises(SensorInputError) as caught:
        decode(np.zeros((2, 2), np.uint8), 'mono8', ThermalSettings('planck'))
    assert str(caught.value) == (
        "thermal semantics 'planck' takes mono16, 16UC1, got 'mono8': set "
        'sensors.thermal.semantics (mmp_ros decode: --semantics) to counts_linear, with gain, '
        "offset and unit for the image's span"
    )
    with pytest.raises(SensorInputError, match=r"--semantics\) to celsius or kelvin$"):
        decode(np.zeros((2, 2), np.float32), '32FC1', ThermalSettings('planck'))


def test_bad_settings_are_refused():
    with pytest.raises(SensorInputError, match='unknown thermal semantics'):
        ThermalSettings('fahrenheit')
    with pytest.raises(SensorInputError, match='unit must be one of'):
        ThermalSettings(unit='rankine')
    with pytest.raises(SensorInputError, match='gain must be finite and non-zero'):
        ThermalSettings(gain=0.0)
    with pytest.raises(SensorInputError, match='must be positive'):
        PlanckCalibration(r1=-1.0)
    # NaN F or O made every pixel invalid, infinite R1 every pixel -273.15 degC: no error
    for constants in ({'f': math.nan}, {'o': math.inf}, {'r1': math.inf}, {'b': math.inf}):
        with pytest.raises(SensorInputError, match='Planck constants must be finite'):
            PlanckCalibration(**constants)
    with pytest.raises(SensorInputError, match='thermal takes ThermalSettings'):
        decode(np.zeros((2, 2), np.uint16), 'mono16', PlanckCalibration())
