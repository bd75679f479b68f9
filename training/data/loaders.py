"""Readers for the published layouts of NYUDv2, MCubeS and FMB, and for our own written data.

Each maps its dataset's modalities onto ours by configuration and yields the common sample
dict of ``training.data.dataset`` (one tensor per modality, ``available``, ``label``). A
modality the dataset does not have is zeros with ``available`` False; MCubeS's near-infrared
is not thermal and is dropped unless the configuration explicitly asks to use it as a thermal
proxy. Every reader checks its folder when it is built and names the first missing or
inconsistent file; a file whose size disagrees with its sample's RGB image is reported when
read.

Layouts (as the datasets are distributed and as the common multimodal-segmentation code reads
them):

- NYUDv2: ``RGB/<name>.jpg``, ``Depth/<name>.png`` (16-bit, mm), ``Label/<name>.png``
  (NYU-40 ids, 0 = unlabelled), ``train.txt`` / ``test.txt`` listing names.
- MCubeS: ``polL_color/<name>.png``, ``polL_aolp_sin/<name>.npy``, ``polL_aolp_cos/<name>.npy``,
  ``polL_dolp/<name>.npy``, ``NIR_warped/<name>.png``, ``GT/<name>.png`` (20 material ids,
  255 = unlabelled), ``list_folder/{train,val,test}.txt``.
- FMB: ``{train,test}/Visible/<name>.png``, ``{train,test}/Infrared/<name>.png`` (8-bit,
  display-scaled), ``{train,test}/Label/<name>.png`` (15 ids).
"""

from __future__ import annotations

import colorsys
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mmp_ros.sensors import SensorInputError
from training.data.classes import IGNORE_LABEL
from training.data.dataset import to_sample
from training.data.decode import (
    decode_depth_m,
    decode_depth_mm,
    decode_polarization_mosaic,
    decode_rgb,
    decode_thermal,
    polarization_from_intensities,
)
from training.data.layout import DatasetLayoutError, read_manifest, read_polarization
from training.data.physics import PlanckCalibration
from training.data.scene import MAX_SIDE
from training.datasets import DatasetError

NYU40_CLASSES = (
    'wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door', 'window', 'bookshelf',
    'picture', 'counter', 'blinds', 'desk', 'shelves', 'curtain', 'dresser', 'pillow', 'mirror',
    'floor mat', 'clothes', 'ceiling', 'books', 'refrigerator', 'television', 'paper', 'towel',
    'shower curtain', 'box', 'whiteboard', 'person', 'night stand', 'toilet', 'sink', 'lamp',
    'bathtub', 'bag', 'otherstructure', 'otherfurniture', 'otherprop',
)  # fmt: skip
MCUBES_CLASSES = (
    'asphalt', 'concrete', 'metal', 'road_marking', 'fabric', 'glass', 'plaster', 'plastic',
    'rubber', 'sand', 'gravel', 'ceramic', 'cobblestone', 'brick', 'grass', 'wood', 'leaf',
    'water', 'human', 'sky',
)  # fmt: skip
FMB_CLASSES = (
    'background', 'road', 'sidewalk', 'building', 'lamp', 'sign', 'vegetation', 'sky', 'person',
    'car', 'truck', 'bus', 'motorcycle', 'bicycle', 'pole',
)  # fmt: skip


def distinct_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """``count`` RGB colours, hues a golden angle apart at two brightnesses: the palette of
    a dataset that publishes none (a trained model keeps it beside the class names)."""
    return tuple(
        tuple(round(255 * c) for c in colorsys.hsv_to_rgb((k * 0.618034) % 1.0, 0.75,
                                                            0.95 if k % 2 else 0.7))
        for k in range(count)
    )


def _options(cls: type, config):
    """``config`` as the dataclass ``cls``: ``data.params`` in YAML gives its fields as a
    mapping (an unknown field is the TypeError that ``build_dataset`` names)."""
    return cls(**config) if isinstance(config, Mapping) else config


def _read_image(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise DatasetLayoutError(f'{path}: missing or not a readable image')
    return image


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetLayoutError(f'{path}: not a readable .npy array ({exc})') from exc


def _rgb_from_file(path: Path) -> np.ndarray:
    """An 8- or 16-bit colour image as float32 (3, H, W) in [0, 1], RGB order."""
    image = _read_image(path)
    if image.ndim != 3 or image.shape[2] < 3:
        raise DatasetLayoutError(f'{path}: a colour image is expected, got shape {image.shape}')
    rgb = image[:, :, 2::-1]
    if rgb.dtype == np.uint16:
        return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 65535
    return decode_rgb(np.ascontiguousarray(rgb))


def _read_names(list_file: Path) -> list[str]:
    if not list_file.is_file():
        raise DatasetLayoutError(f'{list_file}: split list missing')
    names = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetLayoutError(f'{list_file}: split list is empty')
    return names


class FolderDataset(Dataset):
    """Shared checks and sample assembly for datasets stored as one file per modality."""

    class_names: tuple[str, ...] = ()

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        """One colour per class, which training stores with the class names."""
        return distinct_palette(len(self.class_names))

    def __init__(self, root: str | Path, size: tuple[int, int] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(f'{self.root}: dataset folder does not exist')
        if size is not None and not (
                isinstance(size, (list, tuple)) and len(size) == 2
                and all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
                        and 1 <= s <= MAX_SIDE for s in size)):
            # int() cut 31.5 to 31 and let [32] and [0, 5] through, to fail in cv2 or an
            # IndexError (a traceback) when the first sample was read
            raise DatasetError(f'size must be (height, width), whole numbers of pixels from 1 '
                               f'to {MAX_SIDE}, got {size!r}')
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.names: list[str] = []

    def _require_dirs(self, *dirs: Path) -> None:
        for d in dirs:
            if not d.is_dir():
                raise DatasetLayoutError(f'{d}: folder missing from the dataset layout')

    def _require_files(self, paths_of) -> None:
        """Fail on the first sample lacking a file, naming it (checked once, up front)."""
        for name in self.names:
            for path in paths_of(name):
                if not path.is_file():
                    raise DatasetLayoutError(f'{path}: missing (sample {name!r} of {self.root})')

    def __len__(self) -> int:
        return len(self.names)

    def _label(self, path: Path, shape: tuple[int, int]) -> np.ndarray:
        raw = _read_image(path, cv2.IMREAD_UNCHANGED)
        if raw.ndim != 2:
            raise DatasetLayoutError(f'{path}: labels must be single-channel ids, got {raw.shape}')
        self._check_shape(path, raw.shape, shape)
        label = self._map_label(raw.astype(np.int64))
        bad = (label != IGNORE_LABEL) & ((label < 0) | (label >= len(self.class_names)))
        if bad.any():
            value = int(raw[bad][0])
            raise DatasetLayoutError(
                f'{path}: label id {value} is outside the {len(self.class_names)} classes '
                f'of {type(self).__name__}'
            )
        return label

    def _map_label(self, raw: np.ndarray) -> np.ndarray:
        return raw

    @staticmethod
    def _check_shape(path: Path, got: tuple[int, ...], want: tuple[int, int]) -> None:
        if tuple(got[:2]) != tuple(want):
            size = f'{got[1]}x{got[0]}' if len(got) >= 2 else f'of shape {tuple(got)}'
            raise DatasetLayoutError(
                f'{path}: size {size} differs from its RGB image {want[1]}x{want[0]}'
            )

    @staticmethod
    def _check_plane(path: Path, image: np.ndarray, kind: str, expected: str) -> None:
        """``image`` must be one plane (2-D) of dtype ``kind``: 'uint16', or 'float' for any
        float; another (an 8-bit or colour PNG, an integer array) would decode to wrong values."""
        dtype_ok = (np.issubdtype(image.dtype, np.floating) if kind == 'float'
                    else image.dtype == np.dtype(kind))
        if image.ndim != 2 or not dtype_ok:
            raise DatasetLayoutError(f'{path}: expected {expected}, got {image.dtype} '
                                     f'{image.shape}')

    def _linear_plane(self, path: Path, shape: tuple[int, int],
                      span: tuple[float, float]) -> np.ndarray:
        """An 8- or 16-bit image's first channel as (1, H, W) float32, its full scale mapped
        linearly onto ``span`` (MCubeS's NIR, FMB's display-scaled infrared)."""
        image = _read_image(path, cv2.IMREAD_UNCHANGED)
        if image.ndim == 3:
            image = image[..., 0]
        self._check_shape(path, image.shape, shape)
        scale = 65535.0 if image.dtype == np.uint16 else 255.0
        lo, hi = span
        return (lo + (hi - lo) * image.astype(np.float32) / scale)[None]

    def _finish(self, rep: dict[str, np.ndarray], label: np.ndarray) -> dict[str, torch.Tensor]:
        if self.size is not None and label.shape != self.size:
            h, w = self.size
            # Depth and labels by the nearest pixel centre (INTER_NEAREST_EXACT, aligned with
            # INTER_LINEAR's grid; INTER_NEAREST is half a pixel off), the rest linearly.
            nearest = {'depth': cv2.INTER_NEAREST_EXACT}
            rep = {
                k: np.stack([cv2.resize(ch, (w, h),
                                        interpolation=nearest.get(k, cv2.INTER_LINEAR))
                             for ch in v])
                for k, v in rep.items()
            }
            label = cv2.resize(label.astype(np.uint8), (w, h),
                               interpolation=cv2.INTER_NEAREST_EXACT)
        return to_sample(rep, label, label.shape)


@dataclass(frozen=True)
class NYUDv2Config:
    """Where NYUDv2's files are and how to read them."""

    rgb_dir: str = 'RGB'
    rgb_ext: str = '.jpg'
    depth_dir: str = 'Depth'
    depth_ext: str = '.png'
    depth_scale_m: float = 0.001  # metres per count of a 16-bit depth PNG (0 = invalid)
    label_dir: str = 'Label'
    label_zero_is_void: bool = True  # raw NYU-40: 0 unlabelled, 1..40 classes -> 0..39


class NYUDv2(FolderDataset):
    """NYUDv2 (RGB + depth, 40 classes): polarization and thermal are unavailable."""

    class_names = NYU40_CLASSES

    def __init__(
        self, root, split: str = 'train', config: NYUDv2Config = NYUDv2Config(), size=None
    ) -> None:
        super().__init__(root, size)
        c = self.config = _options(NYUDv2Config, config)
        self._require_dirs(self.root / c.rgb_dir, self.root / c.depth_dir, self.root / c.label_dir)
        self.names = _read_names(self.root / f'{split}.txt')
        self._require_files(lambda n: self._paths(n).values())

    def _paths(self, name: str) -> dict[str, Path]:
        c = self.config
        return {
            'rgb': self.root / c.rgb_dir / f'{name}{c.rgb_ext}',
            'depth': self.root / c.depth_dir / f'{name}{c.depth_ext}',
            'label': self.root / c.label_dir / f'{name}.png',
        }

    def _map_label(self, raw: np.ndarray) -> np.ndarray:
        if self.config.label_zero_is_void:
            return np.where(raw == 0, IGNORE_LABEL, raw - 1)
        return raw

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        paths = self._paths(self.names[index])
        rgb = _rgb_from_file(paths['rgb'])
        shape = rgb.shape[1:]
        depth_raw = _read_image(paths['depth'])
        self._check_shape(paths['depth'], depth_raw.shape, shape)
        if depth_raw.ndim != 2 or depth_raw.dtype != np.uint16:
            raise DatasetLayoutError(
                f"{paths['depth']}: depth must be a single-channel 16-bit PNG, got "
                f'{depth_raw.dtype} {depth_raw.shape} (8-bit depth has lost its metric scale)'
            )
        depth = decode_depth_mm(depth_raw) * np.float32(self.config.depth_scale_m / 1e-3)
        label = self._label(paths['label'], shape)
        return self._finish({'rgb': rgb, 'depth': depth}, label)


@dataclass(frozen=True)
class MCubeSConfig:
    """MCubeS's folders and how its modalities map onto ours.

    ``aolp_encoding``: the ``polL_aolp_sin/cos`` arrays hold sin/cos of the AoLP ('angle') or
    of twice the AoLP ('double_angle'). ``nir``: 'drop' (the default: NIR is reflected
    near-infrared, not thermal emission) or 'as_thermal', which feeds it into the thermal slot
    scaled linearly from [0, 1] to ``nir_as_thermal_c`` — a proxy the user must choose knowingly.
    """

    rgb_dir: str = 'polL_color'
    aolp_sin_dir: str = 'polL_aolp_sin'
    aolp_cos_dir: str = 'polL_aolp_cos'
    dolp_dir: str = 'polL_dolp'
    nir_dir: str = 'NIR_warped'
    label_dir: str = 'GT'
    list_dir: str = 'list_folder'
    aolp_encoding: str = 'angle'
    nir: str = 'drop'
    nir_as_thermal_c: tuple[float, float] = (0.0, 50.0)

    def __post_init__(self) -> None:
        if self.aolp_encoding not in ('angle', 'double_angle'):
            raise ValueError(
                f"aolp_encoding must be 'angle' or 'double_angle', not {self.aolp_encoding!r}"
            )
        if self.nir not in ('drop', 'as_thermal'):
            raise ValueError(f"nir must be 'drop' or 'as_thermal', not {self.nir!r}")


class MCubeS(FolderDataset):
    """MCubeS (RGB, AoLP, DoLP, NIR; 20 material classes): depth is unavailable."""

    class_names = MCUBES_CLASSES

    def __init__(
        self, root, split: str = 'train', config: MCubeSConfig = MCubeSConfig(), size=None
    ) -> None:
        super().__init__(root, size)
        c = self.config = _options(MCubeSConfig, config)
        dirs = [c.rgb_dir, c.aolp_sin_dir, c.aolp_cos_dir, c.dolp_dir, c.label_dir]
        if c.nir == 'as_thermal':
            dirs.append(c.nir_dir)
        self._require_dirs(*(self.root / d for d in dirs))
        self.names = _read_names(self.root / c.list_dir / f'{split}.txt')
        self._require_files(lambda n: self._paths(n).values())

    def _paths(self, name: str) -> dict[str, Path]:
        c = self.config
        paths = {
            'rgb': self.root / c.rgb_dir / f'{name}.png',
            'aolp_sin': self.root / c.aolp_sin_dir / f'{name}.npy',
            'aolp_cos': self.root / c.aolp_cos_dir / f'{name}.npy',
            'dolp': self.root / c.dolp_dir / f'{name}.npy',
            'label': self.root / c.label_dir / f'{name}.png',
        }
        if c.nir == 'as_thermal':
            paths['nir'] = self.root / c.nir_dir / f'{name}.png'
        return paths

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        paths = self._paths(self.names[index])
        rgb = _rgb_from_file(paths['rgb'])
        shape = rgb.shape[1:]
        arrays = {}
        for key in ('aolp_sin', 'aolp_cos', 'dolp'):
            a = _read_npy(paths[key]).astype(np.float32)
            if a.ndim == 3:  # some copies store three identical channels
                a = a[..., 0]
            self._check_shape(paths[key], a.shape, shape)
            arrays[key] = a
        sin, cos, dolp = arrays['aolp_sin'], arrays['aolp_cos'], np.clip(arrays['dolp'], 0, 1)
        if self.config.aolp_encoding == 'angle':
            cos2, sin2 = cos * cos - sin * sin, 2 * sin * cos
        else:
            cos2, sin2 = cos, sin
        rep = {'rgb': rgb, 'polarization': np.stack([dolp * cos2, dolp * sin2, dolp])}
        if self.config.nir == 'as_thermal':
            rep['thermal'] = self._linear_plane(paths['nir'], shape, self.config.nir_as_thermal_c)
        return self._finish(rep, self._label(paths['label'], shape))


@dataclass(frozen=True)
class FMBConfig:
    """FMB's folders and the temperature range its 8-bit infrared images are mapped onto.

    FMB's infrared frames are display-scaled 8-bit images, not radiometric: the value maps
    linearly from [0, 255] to ``infrared_c`` so the model sees a Celsius-like scale; set it to
    the span your own camera's thermal images cover.
    """

    visible_dir: str = 'Visible'
    infrared_dir: str = 'Infrared'
    label_dir: str = 'Label'
    infrared_c: tuple[float, float] = (0.0, 50.0)


class FMB(FolderDataset):
    """FMB (RGB + thermal infrared, 15 classes): depth and polarization are unavailable."""

    class_names = FMB_CLASSES

    def __init__(self, root, split: str = 'train', config: FMBConfig = FMBConfig(), size=None):
        super().__init__(root, size)
        c = self.config = _options(FMBConfig, config)
        self.split_dir = self.root / split
        visible = self.split_dir / c.visible_dir
        self._require_dirs(visible, self.split_dir / c.infrared_dir, self.split_dir / c.label_dir)
        self.names = sorted(p.stem for p in visible.glob('*.png'))
        if not self.names:
            raise DatasetLayoutError(f'{visible}: no .png images')
        self._require_files(lambda n: self._paths(n).values())

    def _paths(self, name: str) -> dict[str, Path]:
        c = self.config
        return {
            'rgb': self.split_dir / c.visible_dir / f'{name}.png',
            'thermal': self.split_dir / c.infrared_dir / f'{name}.png',
            'label': self.split_dir / c.label_dir / f'{name}.png',
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        paths = self._paths(self.names[index])
        rgb = _rgb_from_file(paths['rgb'])
        shape = rgb.shape[1:]
        thermal = self._linear_plane(paths['thermal'], shape, self.config.infrared_c)
        label = self._label(paths['label'], shape)
        return self._finish({'rgb': rgb, 'thermal': thermal}, label)


class SyntheticFolder(FolderDataset):
    """A dataset written by ``synth-dataset`` (layout in ``training.data.layout``)."""

    def __init__(self, root, split: str = 'train', size=None) -> None:
        super().__init__(root, size)
        self.manifest = read_manifest(self.root)
        self.class_names = tuple(self.manifest['class_names'])
        self._palette = tuple(tuple(int(c) for c in rgb) for rgb in (
            self.manifest.get('palette') or distinct_palette(len(self.class_names))))
        if split not in self.manifest['splits']:
            raise DatasetLayoutError(
                f'{self.root / "dataset.json"}: no split {split!r} (has '
                f'{sorted(self.manifest["splits"])})'
            )
        self.split_dir = self.root / split
        self._require_dirs(*(self.split_dir / d for d in ('rgb', 'depth', 'polarization',
                                                           'thermal', 'label')))
        self.names = list(self.manifest['splits'][split])
        enc = self.manifest['encodings']
        self.depth_ext = '.png' if enc['depth'] == '16UC1' else '.npy'
        self.polarization_format = enc['polarization']['format']
        p = enc['thermal']['planck']
        self.calibration = PlanckCalibration(p['r1'], p['r2'], p['b'], p['f'], p['o'])
        self._require_files(lambda n: self._paths(n).values())

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self._palette

    def _paths(self, name: str) -> dict[str, Path]:
        d = self.split_dir
        return {
            'rgb': d / 'rgb' / f'{name}.png',
            'depth': d / 'depth' / f'{name}{self.depth_ext}',
            'polarization': d / 'polarization' / f'{name}.png',
            'thermal': d / 'thermal' / f'{name}.png',
            'label': d / 'label' / f'{name}.png',
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        paths = self._paths(self.names[index])
        rgb = _rgb_from_file(paths['rgb'])
        shape = rgb.shape[1:]
        if self.depth_ext == '.png':
            raw = _read_image(paths['depth'])
            self._check_plane(paths['depth'], raw, 'uint16',
                              'depth as a single-channel 16-bit PNG of millimetres')
            self._check_shape(paths['depth'], raw.shape, shape)
            depth = decode_depth_mm(raw)
        else:
            raw = _read_npy(paths['depth'])
            self._check_plane(paths['depth'], raw, 'float', 'depth as a 2-D float array of metres')
            self._check_shape(paths['depth'], raw.shape, shape)
            depth = decode_depth_m(raw)
        pol_raw = read_polarization(paths['polarization'], self.polarization_format)
        self._check_shape(paths['polarization'], pol_raw.shape[-2:], shape)
        if self.polarization_format == 'mosaic':
            try:
                pol = decode_polarization_mosaic(pol_raw)
            except SensorInputError as exc:  # an odd-sized mosaic: the decoder names no file
                raise DatasetLayoutError(f"{paths['polarization']}: {exc}") from None
        else:
            pol = polarization_from_intensities(pol_raw)
        counts = _read_image(paths['thermal'])
        self._check_plane(paths['thermal'], counts, 'uint16',
                          'radiometric counts as a single-channel 16-bit PNG')
        self._check_shape(paths['thermal'], counts.shape, shape)
        rep = {
            'rgb': rgb,
            'depth': depth,
            'polarization': pol,
            'thermal': decode_thermal(counts, self.calibration),
        }
        return self._finish(rep, self._label(paths['label'], shape))
