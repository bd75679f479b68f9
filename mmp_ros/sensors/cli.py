"""``mmp_ros decode``: decode real sample files exactly as the node would, and say what they hold.

Files named by the conventions of ``shared/data/real`` (``depth_mm.png``, ``rgb.png``,
``*_IMX250MZR.png``, ...) need no options, so ``mmp_ros decode ../shared/data/real``
walks every sample; any other file needs ``--modality`` (and ``--encoding`` where its
pixels allow more than one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from mmp_ros.cli import positive_int
from mmp_ros.sensors.decode import MODALITY_INPUTS, ModalitySettings, decode_frame
from mmp_ros.sensors.depth import DepthSettings
from mmp_ros.sensors.files import (
    AOLP_FILE,
    DOLP_FILE,
    SAMPLE_FILES,
    aolp_dolp_fields,
    default_encoding,
    fields_from_pixels,
    read_array,
    sample_kind,
)
from mmp_ros.sensors.frame import SensorFrame, SensorInputError
from mmp_ros.sensors.image import ImageFields
from mmp_ros.sensors.polarization import MOSAIC_ENCODINGS, RESOLUTIONS, PolarizationSettings
from mmp_ros.sensors.thermal import SEMANTICS, UNITS, PlanckCalibration, ThermalSettings

# The decoders' options (their parser default is None, to tell one given): flag -> (modality,
# what a frame of it must be decoded as for the option to change it, None for any). One
# given where no frame decoded is such would change nothing: it is refused.
FRAME_OPTIONS = {
    '--min-m': ('depth', None), '--max-m': ('depth', None), '--semantics': ('thermal', None),
    '--gain': ('thermal', 'counts_linear'), '--offset': ('thermal', 'counts_linear'),
    '--unit': ('thermal', 'counts_linear'), '--planck': ('thermal', 'planck'),
    '--layout': ('polarization', 'mosaic'), '--resolution': ('polarization', 'mosaic'),
}
DEFAULTS = {'min_m': 0.0, 'max_m': float('inf'), 'gain': 0.04, 'offset': 0.0, 'unit': 'kelvin',
            'layout': '90,45,135,0', 'resolution': 'half'}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('paths', nargs='+', type=Path, help='image/.npy files or folders')
    parser.add_argument('--modality', choices=tuple(MODALITY_INPUTS),
                        help='what the file holds (default: from the file name; the files '
                        'of a folder always go by their names)')
    parser.add_argument('--encoding', help='sensor_msgs/Image encoding to publish it as '
                        '(default: from the file name or the pixels)')
    parser.add_argument('--repeat', type=positive_int, default=5,
                        help='decode this many times and report the median time (default 5)')
    depth = parser.add_argument_group('depth')
    depth.add_argument('--min-m', type=float, help='nearest valid depth, m')
    depth.add_argument('--max-m', type=float, help='farthest valid, m')
    thermal = parser.add_argument_group('thermal')
    thermal.add_argument('--semantics', choices=tuple(SEMANTICS),
                         help='what a pixel means (default: counts_linear for integer '
                         'pixels, celsius for floats)')
    thermal.add_argument('--gain', type=float,
                         help='counts_linear: units per count (default 0.04, FLIR TLinear)')
    thermal.add_argument('--offset', type=float,
                         help='counts_linear: offset in --unit (default 0)')
    thermal.add_argument('--unit', choices=UNITS,
                         help='counts_linear: unit of gain * counts + offset (default kelvin)')
    thermal.add_argument('--planck', type=float, nargs=5, metavar=('R1', 'R2', 'B', 'F', 'O'),
                         help='planck: the camera\'s constants (default: typical FLIR)')
    polar = parser.add_argument_group('polarization')
    polar.add_argument('--layout',
                       help='polarizer angles of a 2x2 block, row by row (default IMX250MZR '
                       '90,45,135,0)')
    polar.add_argument('--resolution', choices=RESOLUTIONS,
                       help='output grid: 2x2 blocks, 4x4 blocks or every pixel')


def _option(args: argparse.Namespace, name: str):
    value = getattr(args, name)
    return DEFAULTS[name] if value is None else value


def _semantics(args: argparse.Namespace, encoding: str) -> str:
    return args.semantics or ('celsius' if 'F' in encoding else 'counts_linear')


def _decoded_as(args: argparse.Namespace, modality: str, encoding: str) -> str | None:
    """What FRAME_OPTIONS says a frame is decoded as: a thermal frame's semantics, mosaic for
    a polarization mosaic (else its encoding), None for the others."""
    if modality == 'thermal':
        return _semantics(args, encoding)
    if modality == 'polarization':
        return 'mosaic' if encoding in MOSAIC_ENCODINGS else encoding
    return None


def unused_option(args: argparse.Namespace, jobs) -> str | None:
    """Why an option given is for no frame of ``jobs`` (it would be ignored), None if each
    given is for one."""
    frames = {(modality, _decoded_as(args, modality, fields.encoding))
              for _, modality, fields in jobs}
    for flag, (modality, kind) in FRAME_OPTIONS.items():
        if getattr(args, flag[2:].replace('-', '_')) is None:
            continue
        if not any(m == modality and kind in (None, k) for m, k in frames):
            frames_for = {None: f'{modality} frames', 'mosaic': 'polarization mosaics'}.get(
                kind, f'{modality} frames decoded as {kind} (--semantics {kind})')
            decoded = ', '.join(sorted(f'{m} ({k})' if k else m for m, k in frames))
            return (f'{flag} is an option for {frames_for}, and none is decoded here (the '
                    f'frames: {decoded})')
    return None


def _settings(args: argparse.Namespace, modality: str, encoding: str) -> ModalitySettings:
    if modality == 'depth':
        return DepthSettings(_option(args, 'min_m'), _option(args, 'max_m'))
    if modality == 'polarization':
        text = _option(args, 'layout')
        try:
            angles = [int(a) for a in text.split(',')]
        except ValueError:
            angles = []
        if len(angles) != 4:
            raise SensorInputError(f'--layout needs four integer angles, got {text!r}')
        layout = ((angles[0], angles[1]), (angles[2], angles[3]))
        return PolarizationSettings(layout=layout, resolution=_option(args, 'resolution'))
    if modality == 'thermal':
        planck = PlanckCalibration(*args.planck) if args.planck else PlanckCalibration()
        return ThermalSettings(_semantics(args, encoding), _option(args, 'gain'),
                               _option(args, 'offset'), _option(args, 'unit'), planck)
    return None


def _jobs(args: argparse.Namespace) -> list[tuple[str, str, ImageFields]]:
    """(label, modality, fields) for every frame the paths name."""
    jobs = []
    for path in args.paths:
        if path.is_dir():
            found = len(jobs)
            for file in sorted(path.iterdir()):
                if sample_kind(file):
                    jobs.append(_file_job(args, file, *sample_kind(file)))
            if (path / AOLP_FILE).is_file() and (path / DOLP_FILE).is_file():
                jobs.append(_aolp_dolp_job(path))
            if len(jobs) == found:
                raise SensorInputError(
                    f'{path}: no file in this folder has a sample name '
                    f'({", ".join(SAMPLE_FILES)}, {AOLP_FILE} + {DOLP_FILE}); name the '
                    'files themselves, with --modality')
        elif path.name in (AOLP_FILE, DOLP_FILE) and args.modality in (None, 'polarization') \
                and args.encoding in (None, '32FC2'):
            # Either file of the pair stands for the pair, one (AoLP, DoLP) frame, as in a
            # folder; named both, it is decoded once.
            job = _aolp_dolp_job(path.parent)
            if job[0] not in {label for label, _, _ in jobs}:
                jobs.append(job)
        else:
            modality, encoding = args.modality, args.encoding
            if modality is None:
                kind = sample_kind(path)
                if kind is None:
                    raise SensorInputError(
                        f'{path}: give --modality (rgb, depth, polarization or thermal); '
                        f'the name is none of the sample names {list(SAMPLE_FILES)}')
                modality, encoding = kind[0], encoding or kind[1]
            jobs.append(_file_job(args, path, modality, encoding))
    return jobs


def _aolp_dolp_job(folder: Path) -> tuple[str, str, ImageFields]:
    return str(folder / f'{AOLP_FILE}+{DOLP_FILE}'), 'polarization', aolp_dolp_fields(folder)


def _file_job(args, path: Path, modality: str, encoding: str | None):
    pixels = read_array(path)  # its errors name the file
    try:  # these name the pixels and the encoding: which file of a folder, the path says
        encoding = args.encoding or encoding or default_encoding(pixels, modality)
        fields = fields_from_pixels(pixels, encoding, bgr_order=path.suffix != '.npy')
    except SensorInputError as exc:
        raise SensorInputError(f'{path}: {exc}') from None
    return str(path), modality, fields


def describe(label: str, fields: ImageFields, frame: SensorFrame, seconds: float) -> str:
    """A few lines on what one decoded frame holds."""
    data, valid, stats = frame.data, frame.valid, frame.stats
    lines = [
        f'{label}: {frame.modality} {fields.encoding} {fields.width}x{fields.height} '
        f'(step {fields.step} B)',
        f'  data {data.shape} {data.dtype}',
    ]
    for channel in range(data.shape[2]):
        values = data[..., channel] if valid is None else data[..., channel][valid]
        if values.size:
            lines.append(
                f'  ch{channel}: min {values.min():.6g}  max {values.max():.6g}  '
                f'mean {values.mean(dtype=np.float64):.6g}'
                + ('' if valid is None else '  (valid pixels)')
            )
        else:
            lines.append(f'  ch{channel}: no valid pixel')
    lines.append(
        f'  invalid {stats.invalid_fraction:.6g}  all_zero {stats.all_zero}  '
        f'saturated {stats.saturated}  fingerprint {stats.fingerprint.hex()}'
    )
    lines.append(f'  decode {seconds * 1e3:.2f} ms (median)')
    return '\n'.join(lines)


def run(args: argparse.Namespace) -> int:
    failures = 0
    try:
        jobs = _jobs(args)
    except SensorInputError as exc:
        print(f'mmp_ros decode: {exc}', file=sys.stderr)
        return 2
    if unused := unused_option(args, jobs):
        print(f'mmp_ros decode: {unused}', file=sys.stderr)
        return 2
    for label, modality, fields in jobs:
        try:
            settings = _settings(args, modality, fields.encoding)
            times = []
            for _ in range(max(1, args.repeat)):
                start = time.perf_counter()
                frame = decode_frame(modality, fields, settings)
                times.append(time.perf_counter() - start)
        except SensorInputError as exc:
            print(f'{label}: error: {exc}', file=sys.stderr)
            failures += 1
            continue
        print(describe(label, fields, frame, float(np.median(times))))
    return 2 if failures else 0  # a frame, or a setting, the decoder refused: bad input
