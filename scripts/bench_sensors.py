#!/usr/bin/env python3
"""Median decode times of the sensor layer, compressedDepth, and polarization against
polanalyser.

Budget (issue #2): 640x480 at 30 Hz per stream on a 2-core machine, so each decode should
stay around 1-2 ms. Inputs are the real samples of ../shared/data/real, cropped to
640x480 where they are larger. Times are wall-clock medians of repeated calls in one
thread; on a loaded machine expect noise, so compare figures from one run only.

    PYTHONPATH=. python scripts/bench_sensors.py [--repeat 50] [--data ../shared/data/real]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from mmp_ros.cli import positive_int
from mmp_ros.sensors import (
    DepthSettings,
    PolarizationSettings,
    ThermalSettings,
    decode_frame,
    encode_frame,
    image_to_array,
)
from mmp_ros.sensors.compressed import compress_image, decompress_image
from mmp_ros.sensors.image import ImageFields, array_to_image
from mmp_ros.sensors.polarization import (
    aolp_dolp_from_representation,
    mosaic_intensities,
    representation_from_stokes,
    stokes_from_intensities,
)

HEIGHT, WIDTH = 480, 640
REPO = Path(__file__).resolve().parents[1]


def median_ms(function: Callable[[], object], repeat: int) -> float:
    function()  # warm caches and lookup tables
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def crop(pixels: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.ascontiguousarray(pixels[:height, :width])


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def decode_cases(data: Path) -> list[tuple[str, str, ImageFields, object]]:
    """(label, modality, fields, settings) at 640x480."""
    bgr = crop(read(data / 'tum_rgbd' / 'rgb.png'))
    depth_mm = crop(read(data / 'tum_rgbd' / 'depth_mm.png'))
    depth_m = crop(np.load(data / 'tum_rgbd' / 'depth_m.npy'))
    counts = crop(read(data / 'flirpy_radiometric' / 'thermal_raw.png'))
    celsius = counts.astype(np.float32) * np.float32(0.04) - np.float32(273.15)
    mosaic = crop(read(data / 'polanalyser_fruits' / 'fruits_IMX250MZR.png'))
    aolp = crop(np.load(data / 'polanalyser_fruits' / 'aolp.npy'))
    dolp = crop(np.load(data / 'polanalyser_fruits' / 'dolp.npy'))
    rgb = bgr[..., ::-1]
    planck = ThermalSettings('planck')
    return [
        ('rgb rgb8', 'rgb', encode_frame('rgb', rgb, 'rgb8'), None),
        ('rgb bgr8', 'rgb', array_to_image(bgr, 'bgr8'), None),
        ('rgb bgra8', 'rgb', encode_frame('rgb', rgb, 'bgra8'), None),
        ('rgb mono8', 'rgb', encode_frame('rgb', rgb, 'mono8'), None),
        ('depth 16UC1', 'depth', array_to_image(depth_mm, '16UC1'), None),
        ('depth 16UC1 0.5-8 m', 'depth', array_to_image(depth_mm, '16UC1'),
         DepthSettings(0.5, 8.0)),
        ('depth 16UC1 big-endian', 'depth',
         array_to_image(depth_mm, '16UC1', is_bigendian=True), None),
        ('depth 32FC1', 'depth', array_to_image(depth_m, '32FC1'), None),
        ('thermal mono16 counts_linear', 'thermal', array_to_image(counts, 'mono16'), None),
        ('thermal mono16 centikelvin', 'thermal', array_to_image(counts, 'mono16'),
         ThermalSettings('centikelvin')),
        ('thermal mono16 planck', 'thermal', encode_frame('thermal', celsius, 'mono16', planck),
         planck),
        ('thermal 32FC1 celsius', 'thermal', array_to_image(celsius, '32FC1'),
         ThermalSettings('celsius')),
        ('polarization mono8 half', 'polarization', array_to_image(mosaic, 'mono8'), None),
        ('polarization mono8 quarter', 'polarization', array_to_image(mosaic, 'mono8'),
         PolarizationSettings(resolution='quarter')),
        ('polarization mono8 full', 'polarization', array_to_image(mosaic, 'mono8'),
         PolarizationSettings(resolution='full')),
        ('polarization mono16 half', 'polarization',
         array_to_image(mosaic.astype(np.uint16) << 4, 'mono16'), None),
        ('polarization 32FC2 aolp/dolp 160x120', 'polarization',
         array_to_image(np.stack([aolp[:120, :160], dolp[:120, :160]], -1), '32FC2'), None),
    ]


def polanalyser_aolp_dolp(mosaic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """polanalyser's documented pipeline (bilinear demosaic, Stokes, AoLP, DoLP): the
    independent reference the package's own decoder is timed and compared against."""
    import polanalyser as pa

    intensities = pa.demosaicing(mosaic, pa.COLOR_PolarMono)
    stokes = pa.calcStokes(intensities, np.deg2rad([0, 45, 90, 135]))
    return pa.cvtStokesToAoLP(stokes), pa.cvtStokesToDoLP(stokes)


def ours_representation(mosaic: np.ndarray, resolution: str) -> np.ndarray:
    settings = PolarizationSettings(resolution=resolution)
    return representation_from_stokes(*stokes_from_intensities(
        mosaic_intensities(mosaic, settings)))


def disagreement(mosaic: np.ndarray) -> tuple[float, float]:
    """Largest DoLP difference, and largest AoLP difference (degrees, modulo 180, where
    polanalyser's DoLP > 0.01), between the package's full-resolution decode and
    polanalyser's on ``mosaic``: both ~0 when the two agree."""
    their_aolp, their_dolp = polanalyser_aolp_dolp(mosaic)
    their_dolp = np.clip(np.nan_to_num(their_dolp), 0, 1)
    our_aolp, our_dolp = aolp_dolp_from_representation(ours_representation(mosaic, 'full'))
    angle = np.mod(our_aolp.astype(np.float64) - their_aolp, np.pi)
    angle = np.minimum(angle, np.pi - angle)[their_dolp > 0.01]
    return (float(np.abs(our_dolp - their_dolp).max()),
            float(np.degrees(angle.max())) if angle.size else 0.0)


def depth_frames(data: Path) -> list[tuple[str, np.ndarray]]:
    """(label, uint16 millimetres) at 640x480: the real Kinect frame, and random depth with
    20 % holes scattered one by one (RVL's worst case: a run pair per hole)."""
    rng = np.random.default_rng(0)
    holes = rng.integers(500, 9000, (HEIGHT, WIDTH)).astype(np.uint16)
    holes[rng.random(holes.shape) < 0.2] = 0
    return [('real TUM depth', crop(read(data / 'tum_rgbd' / 'depth_mm.png'))),
            ('random, 20 % holes', holes)]


def scalar_rvl_decode() -> Callable[[np.ndarray, str], np.ndarray] | None:
    """The RVL decoder as it was before it was vectorized, kept in the tests as their
    reference; None where the tests are not beside the script."""
    path = REPO / 'test' / 'test_sensors_compressed.py'
    if not path.is_file():
        return None
    import importlib.util

    spec = importlib.util.spec_from_file_location('test_sensors_compressed', path)
    module = importlib.util.module_from_spec(spec)
    # The tests import their helpers (conftest) from their folder, which pytest puts on
    # sys.path and a run of this script does not.
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module.reference_rvl_decode


def print_compressed_depth(data: Path, repeat: int) -> None:
    scalar = scalar_rvl_decode()
    print(f'\ncompressedDepth 16UC1 decompress_image at {WIDTH}x{HEIGHT}, median of {repeat} '
          '(ms):')
    for label, millimetres in depth_frames(data):
        fields = array_to_image(millimetres, '16UC1')
        calls = {}
        for method in ('png', 'rvl'):
            format_, message = compress_image(fields, f'compressedDepth {method}',
                                              depth_max_m=65.535)
            calls[f'{method} ({len(message) // 1024} KiB)'] = (
                lambda f=format_, m=message: image_to_array(decompress_image(f, m)))
        if scalar is not None:  # the RVL image after the 12-byte header, as the decoder gets
            body = np.frombuffer(message, np.uint8)[12:]
            calls['rvl before vectorizing'] = lambda b=body: scalar(b, '')
        for call in calls.values():  # every one once first: the same malloc state for all
            assert (call().reshape(millimetres.shape) == millimetres).all()
        line = [f'{name} {median_ms(call, repeat):6.2f}' for name, call in calls.items()]
        print(f'  {label:20s}', ',  '.join(line))


SAMPLES = ('tum_rgbd/rgb.png', 'tum_rgbd/depth_mm.png', 'tum_rgbd/depth_m.npy',
           'flirpy_radiometric/thermal_raw.png', 'polanalyser_fruits/fruits_IMX250MZR.png',
           'polanalyser_fruits/aolp.npy', 'polanalyser_fruits/dolp.npy')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=positive_int, default=50)
    parser.add_argument('--data', type=Path, default=REPO.parent / 'shared' / 'data' / 'real')
    args = parser.parse_args(argv)
    missing = [name for name in SAMPLES if not (args.data / name).is_file()]
    if missing:
        parser.error(f'--data {args.data}: no {", ".join(missing)} (the real samples of '
                     'shared/data/real)')

    print(f'decode_frame at {WIDTH}x{HEIGHT}, median of {args.repeat} (ms):')
    for label, modality, fields, settings in decode_cases(args.data):
        total = median_ms(lambda m=modality, f=fields, s=settings: decode_frame(m, f, s),
                          args.repeat)
        unpack = median_ms(lambda f=fields: image_to_array(f), args.repeat)
        digest = median_ms(
            lambda f=fields: hashlib.blake2b(f.data, digest_size=16).digest(), args.repeat
        )
        print(f'  {label:38s} {total:6.2f}   (image_to_array {unpack:5.2f}, '
              f'blake2b {digest:5.2f})')

    print_compressed_depth(args.data, args.repeat)

    full = read(args.data / 'polanalyser_fruits' / 'fruits_IMX250MZR.png')
    print('\npolarization mosaic -> AoLP/DoLP representation, median (ms):')
    for name, mosaic in [('2448x2048', full), (f'{WIDTH}x{HEIGHT}', crop(full))]:
        repeat = max(3, args.repeat // 10) if mosaic.size > 1e6 else args.repeat
        theirs = median_ms(lambda m=mosaic: polanalyser_aolp_dolp(m), repeat)
        line = [f'  {name:10s} polanalyser (full res) {theirs:7.2f}']
        for resolution in ('full', 'half', 'quarter'):
            ours = median_ms(lambda m=mosaic, r=resolution: ours_representation(m, r), repeat)
            line.append(f'ours {resolution} {ours:6.2f}')
        print(',  '.join(line))
        demosaic_theirs = median_ms(lambda m=mosaic: __import__('polanalyser').demosaicing(m),
                                    repeat)
        demosaic_ours = median_ms(
            lambda m=mosaic: mosaic_intensities(m, PolarizationSettings(resolution='full')),
            repeat,
        )
        print(f'  {name:10s} demosaic only: polanalyser {demosaic_theirs:6.2f}, '
              f'ours full {demosaic_ours:6.2f}')
        dolp_error, aolp_error = disagreement(mosaic)
        print(f'  {name:10s} ours full against polanalyser: DoLP max |diff| {dolp_error:.1e}, '
              f'AoLP max |diff| {aolp_error:.1e} deg')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
