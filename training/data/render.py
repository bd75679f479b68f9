"""Sensor models: one ray-cast scene becomes RGB, depth, polarization and thermal images.

Each sensor sees the same geometry through its own physics and noise and writes the encoding
its ROS driver would publish (rgb8, 16UC1 / 32FC1, a 12-bit IMX250MZR-style polarization
sensor, FLIR-style mono16 radiometric counts). All four are registered to the RGB camera's
pixel grid, as in NYUDv2, MCubeS and FMB.

Lighting is deliberately low-frequency (a sky/ground hemisphere and a large overhead panel):
under such light a smooth and a rough coat of the same paint have almost the same radiance,
while the smooth one's specular reflection keeps its Fresnel polarization and the rough one's
is depolarized by its randomly oriented microfacets. That is the physical reason gloss is a
polarization cue here and not an RGB one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.data.classes import CLASSES, DARK_LUMINANCE, MATERIALS, Material
from training.data.geometry import FLOOR, GeometryBuffers, cast
from training.data.physics import (
    PlanckCalibration,
    diffuse_dolp,
    fresnel_reflectance,
    kinect_depth_sigma,
    schlick,
    schlick_f0,
)
from training.data.scene import GENERATOR_VERSION, Scene

LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
IMX250MZR_LAYOUT = ((90, 45), (135, 0))  # polarizer angle (deg) at (row % 2, col % 2)
POLARIZATION_ANGLES = (0, 45, 90, 135)  # order of the four intensity planes
POLARIZATION_BITS = 12
ROUGH_DEPOLARIZATION = 0.08  # share of specular polarization a rough surface keeps
SCREEN_DOLP = 0.95  # an LCD emits through its front polarizer
SCREEN_AOLP_DEG = 45.0
LUT_SIZE = 256  # entries of the per-material polarization tables over cos(view angle)

DEPTH_RANGE = (0.5, 6.0)  # metres: nearer or farther, a Kinect v1 returns nothing
DEPTH_BASELINE = 0.075  # metres from the IR camera to the projector (along +x)
DEPTH_GRAZING_COS = float(np.cos(np.deg2rad(78.0)))
HOLE_PROBABILITY = {'metal': 0.7, 'glass': 1.0, 'dark': 0.8}

RGB_FULL_WELL = 8000.0  # electrons at the base gain
RGB_READ_NOISE = 4.0  # electrons
RGB_MAX_GAIN = 24.0
POLARIZATION_FULL_WELL = 10500.0  # electrons (Sony IMX250MZR)
POLARIZATION_TARGET = 0.35  # linear sensor, no gamma: exposed brighter than the RGB camera

THERMAL = PlanckCalibration()


@dataclass
class SensorImages:
    """One frame in ROS encodings, plus its labels and the camera intrinsics."""

    rgb: np.ndarray  # (H, W, 3) uint8, rgb8 (sRGB)
    depth_mm: np.ndarray  # (H, W) uint16, 16UC1, 0 = invalid
    depth_m: np.ndarray  # (H, W) float32, 32FC1, NaN = invalid
    polarization: np.ndarray  # (4, H, W) uint16 12-bit intensities at 0, 45, 90, 135 deg
    thermal: np.ndarray  # (H, W) uint16 radiometric counts (mono16), see THERMAL
    label: np.ndarray  # (H, W) uint8 class ids (255 = ignore)
    instance: np.ndarray  # (H, W) uint8: 0 floor, 1 walls, 2 + k object k
    intrinsics: np.ndarray  # (3, 3) float64

    @property
    def polarization_mosaic(self) -> np.ndarray:
        """The raw (H, W) uint16 frame of a 2x2 polarizer-mosaic sensor (IMX250MZR layout)."""
        return mosaic(self.polarization)


def mosaic(intensities: np.ndarray, layout=IMX250MZR_LAYOUT) -> np.ndarray:
    """Keep, at each pixel, only the intensity its on-chip polarizer passes."""
    out = np.empty(intensities.shape[1:], dtype=intensities.dtype)
    for dr in (0, 1):
        for dc in (0, 1):
            plane = POLARIZATION_ANGLES.index(layout[dr][dc])
            out[dr::2, dc::2] = intensities[plane, dr::2, dc::2]
    return out


# --- per-material tables ------------------------------------------------------------------


def _material_tables(materials: list[Material]) -> dict[str, np.ndarray]:
    """Polarization tables over cos(view angle), and scalar properties, one row per material."""
    cos_grid = np.linspace(0.0, 1.0, LUT_SIZE)
    theta = np.arccos(cos_grid)
    rho_d = np.zeros((len(materials), LUT_SIZE), dtype=np.float32)
    rho_s = np.zeros_like(rho_d)
    for i, m in enumerate(materials):
        r_s, r_p = fresnel_reflectance(theta, m.ior)
        specular = (r_s - r_p) / np.maximum(r_s + r_p, 1e-12)
        rho_s[i] = specular if m.smooth else ROUGH_DEPOLARIZATION * specular
        if not m.metal:  # light leaving a dielectric (diffuse, or transmitted by glass)
            rho_d[i] = diffuse_dolp(theta, m.ior.real)
    return {'rho_d': rho_d, 'rho_s': rho_s}


_MATERIAL_LIST = list(MATERIALS.values())
_MATERIAL_INDEX = {m.name: i for i, m in enumerate(_MATERIAL_LIST)}
_TABLES = _material_tables(_MATERIAL_LIST)


def _srgb_table(levels: int = 4096) -> np.ndarray:
    """8-bit sRGB code of each of ``levels`` linear values in [0, 1] (a lookup beats pow)."""
    x = np.linspace(0.0, 1.0, levels)
    encoded = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.clip(encoded * 255 + 0.5, 0, 255).astype(np.uint8)


_SRGB = _srgb_table()


def _noise_rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([GENERATOR_VERSION, seed, stream]))


def _blobs(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Spatially smooth uniform-ish noise in [0, 1]: holes come in blobs, not salt."""
    h, w = shape
    small = rng.random((max(h // cell, 2), max(w // cell, 2)), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


# --- the renderer ---------------------------------------------------------------------------


@dataclass
class _Surfaces:
    """Per-pixel reflectance and emitted light, (3, H, W) linear RGB."""

    albedo: np.ndarray
    window_light: np.ndarray | None  # unpolarized outdoor light entering through glass
    screen_light: np.ndarray | None  # linearly polarized light of LCD screens


@dataclass
class _Shading:
    """Per-pixel light reflected towards the camera, before the surface colour, (H, W)."""

    diffuse: np.ndarray  # multiplies the albedo
    specular: np.ndarray  # Fresnel-weighted reflection of the room light
    fresnel: np.ndarray  # unpolarized reflectance at the viewing angle


def render(scene: Scene, geometry: GeometryBuffers | None = None) -> SensorImages:
    """Render every sensor's image of ``scene`` (deterministic: same scene, same bytes)."""
    geo = cast(scene) if geometry is None else geometry
    light = scene.lighting
    # Per-instance tables: the room is instances 0 (floor) and 1 (walls), objects follow.
    classes = [0, 1] + [o.class_index for o in scene.objects]
    mats = [MATERIALS[CLASSES[c].material] for c in classes]
    inst = geo.instance.astype(np.intp)

    surfaces = _surfaces(scene, geo, mats, inst)
    f0 = np.array([schlick_f0(m.ior) for m in mats], dtype=np.float32)
    shading = _shade(geo, light, f0[inst])

    tint = light.tint.astype(np.float32)
    radiance = tint[:, None, None] * (
        surfaces.albedo * shading.diffuse[None] + shading.specular[None]
    )
    if surfaces.window_light is not None:
        radiance += surfaces.window_light * (1 - shading.fresnel)[None]
    if surfaces.screen_light is not None:
        radiance += surfaces.screen_light
    haze = None
    if light.haze_density > 0:
        haze = np.exp(-np.float32(light.haze_density) * geo.distance)
        radiance = radiance * haze[None] + _airlight(light)[:, None, None] * (1 - haze)[None]
    veil = None
    if light.glare_strength > 0:
        veil = _veiling_glare(light, scene.camera.height, scene.camera.width)
        radiance += veil[None] * np.array([1.0, 0.95, 0.85], dtype=np.float32)[:, None, None]

    # Each sensor draws its noise from a stream of its own, so changing one sensor's model
    # leaves the others' images unchanged.
    mat_index = np.array([_MATERIAL_INDEX[m.name] for m in mats], dtype=np.int16)
    polarization = _polarization_camera(
        geo, mat_index[inst], surfaces, shading, light, haze, veil, _noise_rng(scene.seed, 2)
    )
    depth_mm, depth_m = _depth_camera(scene, geo, mats, inst, veil, _noise_rng(scene.seed, 3))
    return SensorImages(
        rgb=_rgb_camera(radiance, _noise_rng(scene.seed, 1)),
        depth_mm=depth_mm,
        depth_m=depth_m,
        polarization=polarization,
        thermal=_thermal_camera(scene, geo, mats, inst, haze, _noise_rng(scene.seed, 4)),
        label=np.array(classes, dtype=np.uint8)[inst],
        instance=geo.instance.astype(np.uint8),
        intrinsics=scene.camera.intrinsics,
    )


def _surfaces(scene: Scene, geo: GeometryBuffers, mats: list[Material], inst) -> _Surfaces:
    """Albedo of every pixel (plain paints, wood planks, prints) and the light surfaces emit."""
    h, w = geo.instance.shape
    albedo_lut = np.array(
        [(0.0, 0.0, 0.0) if (m.metal or m.glass) else m.albedo for m in mats], dtype=np.float32
    ).T  # (3, instances): metal and glass only reflect specularly
    albedo = albedo_lut[:, inst]
    plank = (np.floor(geo.point[0] / 0.18).astype(np.int32) * 7 + 3) % 16
    plank_shade = (0.8 + 0.4 * ((np.arange(16) * 0.618) % 1.0)).astype(np.float32)
    albedo *= np.where(geo.instance == FLOOR, plank_shade[plank], np.float32(1.0))[None]
    window_light = screen_light = None
    for k, obj in enumerate(scene.objects):
        mat = obj.material
        if not (mat.printed or mat.screen or mat.glass):
            continue
        mask = geo.instance == 2 + k
        if not mask.any():
            continue
        lx, ly, lz = (geo.local[i][mask] for i in range(3))
        front = lz > obj.half_size[2] * 0.98 - 1e-4  # the face looking out of the wall
        if mat.glass:
            if window_light is None:
                window_light = np.zeros((3, h, w), dtype=np.float32)
            # the outdoor light is brighter at the top of the pane (sky above the horizon)
            grad = 0.8 + 0.4 * (ly / obj.half_size[1] + 1) / 2
            outdoor = scene.lighting.outdoor[:, None]
            window_light[:, mask] = (outdoor * grad[None] * front).astype(np.float32)
            continue
        tex = obj.texture
        th, tw = tex.shape[:2]
        col = np.clip(((lx / obj.half_size[0] + 1) / 2 * tw).astype(np.int32), 0, tw - 1)
        row = np.clip(((1 - ly / obj.half_size[1]) / 2 * th).astype(np.int32), 0, th - 1)
        values = tex[row, col].T.astype(np.float32)  # (3, n)
        if mat.printed:
            albedo[:, mask] = values
        else:
            if screen_light is None:
                screen_light = np.zeros((3, h, w), dtype=np.float32)
            screen_light[:, mask] = values * front
    return _Surfaces(albedo, window_light, screen_light)


def _shade(geo: GeometryBuffers, light, f0: np.ndarray) -> _Shading:
    """Hemisphere + key-light diffuse shading and a Schlick Fresnel specular reflection."""
    nx, ny, nz = geo.normal
    dy = geo.ray[1]
    cosv = geo.cos_view
    sky, ground, key = np.float32(light.sky), np.float32(light.ground), np.float32(light.key)
    lx, ly, lz = light.key_direction.astype(np.float32)
    n_dot_l = np.maximum(nx * lx + ny * ly + nz * lz, 0.0)
    irradiance = np.float32(np.pi) * (ground + (sky - ground) * 0.5 * (1 + ny)) + key * n_dot_l
    fresnel = schlick(cosv, f0)
    # mirror direction's elevation: r_y = d_y + 2 cos(view) n_y
    r_y = np.clip(dy + 2 * cosv * ny, -1.0, 1.0)
    env = ground + (sky - ground) * 0.5 * (1 + r_y)
    # the overhead panel's soft sheen: one wide lobe for every surface (see module docstring)
    hx, hy, hz = lx - geo.ray[0], ly - dy, lz - geo.ray[2]
    n_dot_h = np.maximum(nx * hx + ny * hy + nz * hz, 0.0) / np.sqrt(hx * hx + hy * hy + hz * hz)
    sheen = n_dot_h * n_dot_h
    sheen *= sheen
    sheen *= sheen  # (n.h)^8
    specular = fresnel * (env + key * np.float32(9.0 / (8 * np.pi)) * sheen)
    diffuse = irradiance * (1 - fresnel) * np.float32(1 / np.pi)
    return _Shading(diffuse, specular, fresnel)


def _airlight(light) -> np.ndarray:
    """Radiance of the haze itself: room light scattered towards the camera, (3,)."""
    return light.tint.astype(np.float32) * np.float32(1.3 * light.sky + 0.15 * light.key)


def _veiling_glare(light, height: int, width: int) -> np.ndarray:
    """Stray light of a bright source in the lens, falling off around its image, (H, W)."""
    gu, gv = light.glare_center
    u = (np.arange(width, dtype=np.float32) / width - gu)[None, :]
    v = ((np.arange(height, dtype=np.float32) / width) - gv * height / width)[:, None]
    return np.float32(light.glare_strength * light.key) / (1 + (u * u + v * v) / 0.004)


def _auto_exposure(
    luminance: np.ndarray, max_gain: float, target: float = 0.18
) -> tuple[float, float]:
    """Exposure putting the mean luminance at ``target``, and the analog gain it needed."""
    mean = float(luminance[::4, ::4].mean()) + 1e-6
    base = target / 0.35  # a normally lit room needs no gain
    exposure = min(target / mean, base * max_gain)
    return exposure, max(exposure / base, 1.0)


def _add_sensor_noise(signal: np.ndarray, gain: float, full_well: float,
                      rng: np.random.Generator) -> None:
    """Add to ``signal`` (float32, 1 = a full well at the base gain) in place Poisson shot noise
    (variance ~ signal) and read noise, both amplified by the gain."""
    std = np.sqrt(
        np.maximum(signal, 0) * np.float32(gain / full_well)
        + np.float32((RGB_READ_NOISE * gain / full_well) ** 2)
    )
    signal += std * rng.standard_normal(signal.shape, dtype=np.float32)


def _rgb_camera(radiance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Auto-exposure, Poisson-Gaussian sensor noise, clipping, sRGB gamma, 8 bits."""
    luminance = LUMA[0] * radiance[0] + LUMA[1] * radiance[1] + LUMA[2] * radiance[2]
    exposure, gain = _auto_exposure(luminance, RGB_MAX_GAIN)
    x = radiance * np.float32(exposure)
    _add_sensor_noise(x, gain, RGB_FULL_WELL, rng)
    index = np.clip(x * 4095 + 0.5, 0, 4095).astype(np.int16)
    return np.ascontiguousarray(_SRGB[index].transpose(1, 2, 0))


def _polarization_camera(
    geo: GeometryBuffers,
    material: np.ndarray,
    surfaces: _Surfaces,
    shading: _Shading,
    light,
    haze: np.ndarray | None,
    veil: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Stokes vector of diffuse + specular (+ emitted) light, then four polarizer intensities.

    Diffuse light is polarized parallel to the plane of emittance (AoLP = azimuth of the
    normal), specular light perpendicular to it (+90°), each with the Fresnel DoLP of the
    material at the viewing angle; a screen's light carries its own polarizer's angle.
    ``material`` holds each pixel's row of the material tables.
    """
    tint = light.tint.astype(np.float32)
    mono_tint = float(LUMA @ tint)
    weights = LUMA * tint  # monochrome response to each colour channel of the room light
    albedo = surfaces.albedo
    intensity_d = shading.diffuse * (
        weights[0] * albedo[0] + weights[1] * albedo[1] + weights[2] * albedo[2]
    )
    if surfaces.window_light is not None:
        intensity_d += (1 - shading.fresnel) * np.tensordot(LUMA, surfaces.window_light, axes=1)
    intensity_s = shading.specular * np.float32(mono_tint)
    lut = (geo.cos_view * (LUT_SIZE - 1)).astype(np.intp)
    rho_d = _TABLES['rho_d'][material, lut]
    rho_s = _TABLES['rho_s'][material, lut]
    s0 = intensity_d + intensity_s
    linear = rho_d * intensity_d - rho_s * intensity_s
    nxc, nyc = geo.normal_camera
    r2 = nxc * nxc + nyc * nyc + np.float32(1e-12)
    # AoLP counted anticlockwise from the sensor x axis as the image is viewed (y points down)
    s1 = linear * (nxc * nxc - nyc * nyc) / r2
    s2 = linear * (-2 * nxc * nyc) / r2
    if surfaces.screen_light is not None:
        e = np.tensordot(LUMA, surfaces.screen_light, axes=1)
        s0 += e
        a = np.deg2rad(2 * SCREEN_AOLP_DEG)
        s1 += np.float32(SCREEN_DOLP * np.cos(a)) * e
        s2 += np.float32(SCREEN_DOLP * np.sin(a)) * e
    if haze is not None:
        air = np.float32(LUMA @ _airlight(light))
        s0 = s0 * haze + air * (1 - haze)
        s1 *= haze
        s2 *= haze
    if veil is not None:
        s0 += veil * np.float32(0.95)
    exposure, gain = _auto_exposure(s0 * np.float32(0.5), RGB_MAX_GAIN, POLARIZATION_TARGET)
    half = np.float32(0.5 * exposure)
    planes = np.stack([s0 + s1, s0 + s2, s0 - s1, s0 - s2]) * half  # 0, 45, 90, 135 deg
    _add_sensor_noise(planes, gain, POLARIZATION_FULL_WELL, rng)
    top = 2**POLARIZATION_BITS - 1
    return np.clip(planes * top + 0.5, 0, top).astype(np.uint16)


def _depth_camera(scene, geo, mats, inst, veil, rng) -> tuple[np.ndarray, np.ndarray]:
    """Kinect-v1-like depth: z²-growing noise, mm steps, and the holes such cameras leave."""
    cam = scene.camera
    z = geo.depth
    noisy = z + kinect_depth_sigma(z).astype(np.float32) * rng.standard_normal(
        z.shape, dtype=np.float32
    )
    far = DEPTH_RANGE[1] - 4.0 * scene.lighting.haze_density  # haze scatters the IR pattern
    holes = (z < DEPTH_RANGE[0]) | (z > far) | (geo.cos_view < DEPTH_GRAZING_COS)
    # Projector shadow: the projector sits DEPTH_BASELINE to the right; a pixel is dark when
    # a nearer surface to its right covers it from the projector, i.e. when the projector
    # column u - f b / z is larger than that of some pixel further right.
    u = np.arange(cam.width, dtype=np.float32)[None, :]
    projector_col = u - np.float32(cam.fx * DEPTH_BASELINE) / np.maximum(z, 1e-3)
    right_min = np.minimum.accumulate(projector_col[:, ::-1], axis=1)[:, ::-1]
    holes[:, :-1] |= projector_col[:, :-1] > right_min[:, 1:] + 0.5
    # Surfaces that return too little of the IR pattern: mirrors, glass, very dark paint.
    p_hole = np.array(
        [
            HOLE_PROBABILITY['glass'] if m.glass else HOLE_PROBABILITY['metal'] if m.metal
            else HOLE_PROBABILITY['dark'] if m.luminance < DARK_LUMINANCE else 0.0
            for m in mats
        ],
        dtype=np.float32,
    )
    if p_hole.any():
        cell = max(cam.width // 40, 2)
        holes |= _blobs(rng, z.shape, cell) < p_hole[inst]
    if veil is not None:  # sunlight drowns the projected IR pattern
        holes |= veil > np.float32(0.6 * scene.lighting.key)
    mm = np.clip(np.rint(noisy * 1000), 1, 65535)
    depth_mm = np.where(holes, 0, mm).astype(np.uint16)
    depth_m = np.where(holes, np.float32(np.nan), depth_mm.astype(np.float32) / 1000)
    return depth_mm, depth_m.astype(np.float32)


def _thermal_camera(scene, geo, mats, inst, haze, rng) -> np.ndarray:
    """Radiometric counts: emitted + reflected radiance, optics blur, NETD and fixed pattern."""
    th = scene.thermal
    temps = np.array(
        [th.floor_k, th.ambient_k] + [o.temperature_k for o in scene.objects], dtype=np.float64
    )
    emissivity = np.array([m.emissivity for m in mats], dtype=np.float64)
    reflected = THERMAL.radiance(th.reflected_k)
    radiance_lut = emissivity * THERMAL.radiance(temps) + (1 - emissivity) * reflected
    radiance = radiance_lut.astype(np.float32)[inst]
    if haze is not None:  # long-wave infrared sees through haze about 20x better
        t_ir = np.exp(-np.float32(0.05 * scene.lighting.haze_density) * geo.distance)
        radiance = radiance * t_ir + np.float32(THERMAL.radiance(th.ambient_k)) * (1 - t_ir)
    sigma = 0.5 * scene.camera.width / 320
    radiance = cv2.GaussianBlur(radiance, (0, 0), sigma)
    slope = float(THERMAL.radiance(th.ambient_k + 0.5) - THERMAL.radiance(th.ambient_k - 0.5))
    netd = rng.uniform(0.03, 0.06)  # kelvin
    h, w = radiance.shape
    column_fpn = rng.normal(0.0, 0.6 * netd, size=(1, w)).astype(np.float32)
    # a smooth offset across the frame, as the shutter-less drift of a microbolometer
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    a, b, c = rng.normal(0.0, 0.15, size=3).astype(np.float32)
    drift = a * xx + b * yy + c * xx * yy
    noise = rng.standard_normal((h, w), dtype=np.float32) * np.float32(netd)
    counts = radiance - np.float32(THERMAL.o) + np.float32(slope) * (noise + column_fpn + drift)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
