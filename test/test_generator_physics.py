"""The generator's physics against closed forms, and the rendered images against the physics."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.classes import CLASS_INDEX
from training.data.decode import decode_frame, demosaic, polarization_from_intensities
from training.data.geometry import cast
from training.data.physics import (
    KELVIN,
    PlanckCalibration,
    brewster_angle,
    diffuse_dolp,
    fresnel_reflectance,
    kinect_depth_sigma,
    schlick,
    schlick_f0,
    specular_dolp,
    specular_dolp_closed_form,
)
from training.data.render import mosaic, render
from training.data.scene import make_split, sample_scene


def test_specular_dolp_is_one_at_brewster_angle_for_glass():
    theta = brewster_angle(1.5)
    assert np.rad2deg(theta) == pytest.approx(56.31, abs=0.01)
    assert specular_dolp(theta, 1.5) == pytest.approx(1.0, abs=1e-12)
    assert specular_dolp_closed_form(theta, 1.5) == pytest.approx(1.0, abs=1e-12)
    # and below 1 on either side
    assert specular_dolp(theta - 0.1, 1.5) < 0.99
    assert specular_dolp(theta + 0.1, 1.5) < 0.99


@pytest.mark.parametrize('n', [1.3, 1.5, 1.8])
def test_specular_dolp_from_fresnel_equals_its_closed_form(n):
    theta = np.linspace(0.01, np.pi / 2 - 0.01, 200)
    np.testing.assert_allclose(specular_dolp(theta, n), specular_dolp_closed_form(theta, n),
                               atol=1e-9)


@pytest.mark.parametrize('n', [1.3, 1.5, 1.8])
def test_diffuse_dolp_matches_fresnel_transmission_out_of_the_medium(n):
    """Diffuse DoLP = (T_p - T_s) / (T_p + T_s) for light refracted out at emittance theta."""
    theta = np.linspace(0.0, np.pi / 2 - 1e-3, 200)
    inside = np.arcsin(np.sin(theta) / n)  # Snell: the internal angle
    r_s, r_p = fresnel_reflectance(inside, 1 / n)  # reflectances from inside the medium
    expected = ((1 - r_p) - (1 - r_s)) / ((1 - r_p) + (1 - r_s))
    np.testing.assert_allclose(diffuse_dolp(theta, n), expected, atol=1e-9)
    assert diffuse_dolp(0.0, n) == pytest.approx(0.0)
    assert np.all(np.diff(diffuse_dolp(theta, n)) > 0)  # grows towards grazing emittance


def test_metal_reflects_strongly_and_polarizes_weakly_compared_with_glass():
    theta = np.deg2rad(60.0)
    r_s, r_p = fresnel_reflectance(theta, complex(1.2, 7.0))
    assert (r_s + r_p) / 2 > 0.85
    assert specular_dolp(theta, complex(1.2, 7.0)) < 0.2 < specular_dolp(theta, 1.5)


def test_schlick_matches_fresnel_at_normal_incidence_and_grazing():
    f0 = schlick_f0(1.5)
    assert f0 == pytest.approx(0.04)
    r_s, r_p = fresnel_reflectance(0.0, 1.5)
    assert (r_s + r_p) / 2 == pytest.approx(f0)
    assert schlick(0.0, f0) == pytest.approx(1.0)


def test_thermal_counts_increase_monotonically_with_temperature_and_invert():
    calib = PlanckCalibration()
    kelvin = np.linspace(-30, 150, 1000) + KELVIN
    counts = calib.counts_from_kelvin(kelvin)
    assert np.all(np.diff(counts) > 0)
    assert counts.min() > 0 and counts.max() < 65535  # fits mono16
    np.testing.assert_allclose(calib.kelvin_from_counts(counts), kelvin, atol=1e-6)


def test_low_emissivity_metal_reads_close_to_the_reflected_temperature():
    calib = PlanckCalibration()
    t_object, t_reflected, emissivity = 22.0 + KELVIN, 12.0 + KELVIN, 0.08
    radiance = emissivity * calib.radiance(t_object) + (1 - emissivity) * calib.radiance(
        t_reflected
    )
    apparent = calib.kelvin_from_radiance(radiance)
    assert abs(apparent - t_reflected) < 1.0 < abs(apparent - t_object)


def _scene_with(class_name: str, split: str = 'train', size=(96, 128)):
    """The first scene of ``split`` in which ``class_name`` covers at least 150 pixels."""
    for index in range(200):
        scene = sample_scene(make_split(split, index), size[1], size[0])
        images = render(scene)
        if (images.label == CLASS_INDEX[class_name]).sum() >= 150:
            return scene, images
    raise AssertionError(f'no scene shows {class_name}')


def test_rendered_metal_reads_its_reflected_surroundings_and_a_hot_object_reads_hot():
    scene, images = _scene_with('metal')
    celsius = decode_frame(images)['thermal'][0]
    metal = celsius[images.label == CLASS_INDEX['metal']]
    reflected = scene.thermal.reflected_k - KELVIN
    ambient = scene.thermal.ambient_k - KELVIN
    assert abs(np.median(metal) - reflected) < 0.25 * (ambient - reflected) + 0.2
    scene, images = _scene_with('red_hot')
    celsius = decode_frame(images)['thermal'][0]
    hot = np.median(celsius[images.label == CLASS_INDEX['red_hot']])
    wall = np.median(celsius[images.label == CLASS_INDEX['wall']])
    assert hot > wall + 15


def test_rendered_depth_noise_grows_with_the_square_of_distance():
    errors, depths = [], []
    for index in range(3):
        scene = sample_scene(make_split('train', index), 320, 240)
        geometry = cast(scene)
        images = render(scene, geometry)
        valid = images.depth_mm > 0
        errors.append(images.depth_mm[valid].astype(np.float64) / 1000 - geometry.depth[valid])
        depths.append(geometry.depth[valid])
    error, depth = np.concatenate(errors), np.concatenate(depths)
    sigmas, centres = [], []
    for lo in (1.5, 2.5, 3.5, 4.5):
        sel = (depth >= lo) & (depth < lo + 0.4)
        assert sel.sum() > 500, lo
        sigmas.append(error[sel].std())
        centres.append(depth[sel].mean())
    assert np.all(np.diff(sigmas) > 0)
    np.testing.assert_allclose(sigmas, kinect_depth_sigma(np.array(centres)), rtol=0.2)


def test_depth_has_holes_on_glass_and_dark_rubber_and_none_on_matte_paint():
    for name, low, high in (('window', 0.99, 1.0), ('black_rubber', 0.5, 0.99),
                            ('red_matte', 0.0, 0.1)):
        _, images = _scene_with(name)
        mask = images.label == CLASS_INDEX[name]
        hole_share = (images.depth_mm[mask] == 0).mean()
        assert low <= hole_share <= high, (name, hole_share)


def test_stokes_decoding_recovers_a_known_polarization_state():
    dolp, aolp = 0.3, np.deg2rad(30.0)
    s0 = 2000.0
    s1, s2 = s0 * dolp * np.cos(2 * aolp), s0 * dolp * np.sin(2 * aolp)
    planes = np.stack(
        [np.full((4, 6), v) for v in ((s0 + s1) / 2, (s0 + s2) / 2, (s0 - s1) / 2, (s0 - s2) / 2)]
    )
    rep = polarization_from_intensities(planes)
    np.testing.assert_allclose(rep[:, 0, 0], [dolp * np.cos(2 * aolp), dolp * np.sin(2 * aolp),
                                              dolp], atol=1e-6)
    # through the IMX250MZR mosaic and back, a uniform field is unchanged
    rebuilt = polarization_from_intensities(demosaic(mosaic(planes.astype(np.uint16))))
    np.testing.assert_allclose(rebuilt, polarization_from_intensities(planes.astype(np.uint16)),
                               atol=1e-6)


def test_glossy_paint_is_more_polarized_than_the_same_matte_paint():
    """Gloss shows in polarization (the designed cue) while RGB stays nearly the same."""
    dolp = {}
    rgb = {}
    for name in ('red_glossy', 'red_matte'):
        values_d, values_c = [], []
        for index in range(120):
            scene = sample_scene(make_split('train', index), 128, 96)
            if scene.lighting.condition != 'normal':
                continue
            images = render(scene)
            mask = images.label == CLASS_INDEX[name]
            if mask.sum() < 100:
                continue
            rep = decode_frame(images)
            values_d.append(np.median(rep['polarization'][2][mask]))
            values_c.append(rep['rgb'][:, mask].mean(axis=1))
            if len(values_d) == 4:
                break
        dolp[name] = np.mean(values_d)
        rgb[name] = np.mean(values_c, axis=0)
    assert dolp['red_glossy'] > 1.5 * dolp['red_matte']
    assert np.abs(rgb['red_glossy'] - rgb['red_matte']).max() < 0.12
