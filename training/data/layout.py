"""The on-disk layout of a written synthetic dataset (docs/generator.md), writer and checks.

```
<root>/dataset.json                      what was written: generator version, classes, palette,
                                         encodings, thermal calibration, per-split seeds
<root>/<split>/rgb/<seed>.png            rgb8, 8-bit RGB PNG
<root>/<split>/depth/<seed>.png          16UC1 millimetres, 16-bit PNG, 0 = invalid
        or    depth/<seed>.npy           32FC1 metres, float32, NaN = invalid
<root>/<split>/polarization/<seed>.png   raw IMX250MZR mosaic, 16-bit PNG holding 12-bit values
        or    polarization/<seed>.png    four planes (0, 45, 90, 135 deg) as a 16-bit RGBA PNG
<root>/<split>/thermal/<seed>.png        FLIR-style radiometric counts, 16-bit PNG
<root>/<split>/label/<seed>.png          class ids, 8-bit PNG, 255 = ignore
<root>/<split>/meta/<seed>.json          intrinsics, condition, temperatures, object list
```

File stems are the scene seeds (zero-padded to 8 digits), so a file names its own scene.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mmp_ros.errors import InputError
from mmp_ros.metadata import is_rgb
from training.data.classes import CLASS_NAMES, CLASSES, PALETTE
from training.data.physics import KELVIN
from training.data.render import (
    IMX250MZR_LAYOUT,
    POLARIZATION_ANGLES,
    POLARIZATION_BITS,
    THERMAL,
    SensorImages,
)
from training.data.scene import GENERATOR_VERSION, Scene

LAYOUT_VERSION = 1
MANIFEST = 'dataset.json'
FOLDERS = ('rgb', 'depth', 'polarization', 'thermal', 'label', 'meta')
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]


class DatasetLayoutError(InputError, ValueError):
    """A dataset folder that does not match its documented layout; says which file is wrong."""


def stem(seed: int) -> str:
    return f'{seed:08d}'


def manifest(
    size: tuple[int, int], splits: dict[str, list[int]], polarization: str, depth: str
) -> dict[str, Any]:
    """The dataset-level description written to ``dataset.json``."""
    c = THERMAL
    return {
        'layout_version': LAYOUT_VERSION,
        'generator_version': GENERATOR_VERSION,
        'size': list(size),
        'class_names': list(CLASS_NAMES),
        'palette': [list(p) for p in PALETTE],
        'ignore_label': 255,
        'encodings': {
            'rgb': 'rgb8',
            'depth': '16UC1' if depth == '16UC1' else '32FC1',
            'polarization': (
                {'format': 'mosaic', 'layout_deg': [list(r) for r in IMX250MZR_LAYOUT]}
                if polarization == 'mosaic'
                else {'format': 'intensities', 'angles_deg': list(POLARIZATION_ANGLES)}
            )
            | {'bits': POLARIZATION_BITS},
            'thermal': {
                'format': 'mono16 radiometric counts',
                'planck': {'r1': c.r1, 'r2': c.r2, 'b': c.b, 'f': c.f, 'o': c.o},
            },
            'label': 'mono8 class ids',
        },
        'splits': {name: [stem(s) for s in seeds] for name, seeds in splits.items()},
    }


def scene_meta(scene: Scene, images: SensorImages) -> dict[str, Any]:
    """Per-frame facts a user may want beside the images (all JSON-serializable)."""
    return {
        'seed': scene.seed,
        'split': scene.split,
        'intrinsics': images.intrinsics.tolist(),
        'camera_position_m': scene.camera.position.tolist(),
        'camera_rotation': scene.camera.rotation.tolist(),
        'condition': scene.lighting.condition,
        'ambient_c': scene.thermal.ambient_k - KELVIN,
        'reflected_c': scene.thermal.reflected_k - KELVIN,
        'objects': [
            {
                'instance': 2 + k,
                'class': CLASSES[o.class_index].name,
                'shape': o.shape,
                'center_m': o.center.tolist(),
                'temperature_c': o.temperature_k - KELVIN,
            }
            for k, o in enumerate(scene.objects)
        ],
    }


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image, PNG_FAST):
        raise OSError(f'could not write {path}')


def write_frame(
    split_dir: Path, scene: Scene, images: SensorImages, polarization: str, depth: str
) -> None:
    """Write one frame's files into ``split_dir`` (the folders must exist)."""
    name = stem(scene.seed)
    _write_png(split_dir / 'rgb' / f'{name}.png', np.ascontiguousarray(images.rgb[:, :, ::-1]))
    if depth == '16UC1':
        _write_png(split_dir / 'depth' / f'{name}.png', images.depth_mm)
    else:
        np.save(split_dir / 'depth' / f'{name}.npy', images.depth_m)
    if polarization == 'mosaic':
        pol = images.polarization_mosaic
    else:  # cv2 stores channel 0 as blue: reverse the first three so a viewer's R is 0 deg
        pol = np.ascontiguousarray(images.polarization[[2, 1, 0, 3]].transpose(1, 2, 0))
    _write_png(split_dir / 'polarization' / f'{name}.png', pol)
    _write_png(split_dir / 'thermal' / f'{name}.png', images.thermal)
    _write_png(split_dir / 'label' / f'{name}.png', images.label)
    (split_dir / 'meta' / f'{name}.json').write_text(
        json.dumps(scene_meta(scene, images), indent=1, sort_keys=True)
    )


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DatasetLayoutError(
            f'{path}: missing; not a synthetic dataset written by synth-dataset'
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetLayoutError(f'{path}: not valid JSON ({exc})') from exc
    if not isinstance(data, dict):
        raise DatasetLayoutError(f'{path}: a JSON object expected, got {type(data).__name__}')
    if data.get('layout_version') != LAYOUT_VERSION:
        raise DatasetLayoutError(
            f'{path}: layout_version {data.get("layout_version")!r}, this reader reads '
            f'{LAYOUT_VERSION}'
        )
    for key in ('size', 'class_names', 'encodings', 'splits'):
        if key not in data:
            raise DatasetLayoutError(f'{path}: lacks the {key!r} entry')
    splits, enc = data['splits'], data['encodings']
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise DatasetLayoutError(f'{path}: "splits" must map each split to a list of file stems, '
                                 f'got {splits!r:.80}')
    if not isinstance(data['class_names'], list):
        raise DatasetLayoutError(f'{path}: "class_names" must be a list')
    try:  # what a reader decodes by: a hand-edited file must not end in a KeyError
        depth, polarization = enc['depth'], enc['polarization']['format']
        planck = {key: enc['thermal']['planck'][key] for key in ('r1', 'r2', 'b', 'f', 'o')}
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetLayoutError(f'{path}: "encodings" is not as synth-dataset writes it '
                                 f'({type(exc).__name__}: {exc}); it needs depth, '
                                 'polarization.format and thermal.planck r1, r2, b, f, o'
                                 ) from None
    if depth not in ('16UC1', '32FC1') or polarization not in ('mosaic', 'intensities'):
        raise DatasetLayoutError(f'{path}: encodings depth {depth!r}, polarization format '
                                 f'{polarization!r}; known: 16UC1 or 32FC1, mosaic or '
                                 'intensities')
    for key, value in planck.items():  # a string was "'>' not supported ..." in the reader
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DatasetLayoutError(f'{path}: encodings.thermal.planck.{key} must be a number, '
                                     f'got {value!r}')
    palette = data.get('palette')  # none or empty: the reader makes one
    if palette and not (isinstance(palette, list) and len(palette) == len(data['class_names'])
                        and all(is_rgb(rgb) for rgb in palette)):
        raise DatasetLayoutError(f'{path}: "palette" must be one [r, g, b] of integers 0 to 255 '
                                 f'per class ({len(data["class_names"])}), got {palette!r:.80}')
    return data


def read_polarization(path: Path, fmt: str) -> np.ndarray:
    """The stored polarization file as (4, H, W) intensities or an (H, W) mosaic."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DatasetLayoutError(f'{path}: missing or not a readable image')
    if fmt == 'mosaic':
        if image.ndim != 2:
            raise DatasetLayoutError(f'{path}: a mosaic must have one channel, has {image.shape}')
    elif image.ndim != 3 or image.shape[2] != 4:
        raise DatasetLayoutError(f'{path}: four polarizer planes expected, shape {image.shape}')
    if image.dtype != np.uint16:  # 8-bit values were taken as 12-bit ones, coarser than written
        raise DatasetLayoutError(f'{path}: expected a 16-bit PNG of 12-bit values, got '
                                 f'{image.dtype} {image.shape}')
    return image if fmt == 'mosaic' else image.transpose(2, 0, 1)[[2, 1, 0, 3]]
