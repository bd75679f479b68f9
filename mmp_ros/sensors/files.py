"""Image files on disk -> the message fields a camera would have published.

Real samples (``shared/data/real``) and datasets store frames as PNG or ``.npy``; wrapping
them in :class:`ImageFields` lets them go through exactly the decoding a live message
does. OpenCV reads colour files in B, G, R order, so a 3-channel PNG is ``bgr8`` as read
and becomes ``rgb8`` by a reorder.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import cv2
import numpy as np

from mmp_ros.sensors.frame import SensorInputError
from mmp_ros.sensors.image import ImageFields, array_to_image

# File-name conventions of shared/data/real (its README): pattern -> (modality, encoding);
# None: the encoding follows from the pixels (8- or 16-bit mosaic).
SAMPLE_FILES: dict[str, tuple[str, str | None]] = {
    'rgb.png': ('rgb', 'bgr8'),
    'depth_mm.png': ('depth', '16UC1'),
    'depth_m.npy': ('depth', '32FC1'),
    'thermal_raw.png': ('thermal', 'mono16'),
    'thermal_celsius.npy': ('thermal', '32FC1'),
    '*_IMX250MZR.png': ('polarization', None),
}
AOLP_FILE, DOLP_FILE = 'aolp.npy', 'dolp.npy'  # precomputed polarization, paired


def read_array(path: Path | str) -> np.ndarray:
    """The pixels of a PNG/PPM/PGM/JPEG/TIFF (unchanged bit depth) or ``.npy`` file."""
    path = Path(path)
    if not path.is_file():
        raise SensorInputError(f'no such file: {path}')
    if path.suffix == '.npy':
        try:
            pixels = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # truncated, pickled, not .npy at all
            # numpy calls anything without the .npy magic pickled and suggests unpickling it
            reason = 'no .npy file, or pickled objects' if 'pickle' in str(exc) else exc
            raise SensorInputError(
                f'{path} is not a .npy array numpy can read: {reason}'
            ) from None
        if not isinstance(pixels, np.ndarray):  # an .npz archive under a .npy name
            pixels.close()
            raise SensorInputError(f'{path} is an .npz archive, not one .npy array')
    else:
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise SensorInputError(f'{path} is not an image OpenCV can read')
    if pixels.ndim not in (2, 3):
        raise SensorInputError(
            f'{path}: an image is an (H, W) or (H, W, C) array, got shape {pixels.shape}'
        )
    return pixels


def sample_kind(path: Path | str) -> tuple[str, str | None] | None:
    """(modality, encoding) that the file's name stands for, or None if it follows none."""
    name = Path(path).name
    for pattern, kind in SAMPLE_FILES.items():
        if fnmatch.fnmatch(name, pattern):
            return kind
    return None


def default_encoding(pixels: np.ndarray, modality: str) -> str:
    """The encoding a camera of ``modality`` would use for pixels of this type and shape."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    kind = (pixels.dtype.str[1:], channels)
    if modality == 'rgb':
        table = {('u1', 3): 'bgr8', ('u1', 4): 'bgra8', ('u1', 1): 'mono8',
                 ('u2', 3): 'bgr16', ('u2', 4): 'bgra16', ('u2', 1): 'mono16'}
    elif modality == 'depth':
        table = {('u2', 1): '16UC1', ('f4', 1): '32FC1'}
    elif modality == 'polarization':
        table = {('u1', 1): 'mono8', ('u2', 1): 'mono16', ('f4', 2): '32FC2'}
    else:
        table = {('u1', 1): 'mono8', ('u2', 1): 'mono16', ('f4', 1): '32FC1'}
    if kind not in table:
        raise SensorInputError(
            f'no {modality} encoding for {channels}-channel {pixels.dtype} pixels; '
            'give --encoding'
        )
    return table[kind]


def fields_from_pixels(pixels: np.ndarray, encoding: str, *, bgr_order: bool) -> ImageFields:
    """Wrap pixels as ``encoding``; ``bgr_order``: colour channels are stored B, G, R(, A)."""
    if bgr_order and pixels.ndim == 3 and pixels.shape[2] in (3, 4) and encoding in (
        'rgb8', 'rgba8', 'rgb16', 'rgba16'
    ):
        pixels = np.concatenate([pixels[..., 2::-1], pixels[..., 3:]], axis=2)
    return array_to_image(pixels, encoding)


def fields_from_file(path: Path | str, encoding: str) -> ImageFields:
    """Read ``path`` and wrap it as a message of ``encoding``.

    ``.npy`` files hold numpy arrays as they are; other files are read by OpenCV, whose
    colour order is B, G, R.
    """
    path = Path(path)
    return fields_from_pixels(read_array(path), encoding, bgr_order=path.suffix != '.npy')


def aolp_dolp_fields(folder: Path | str) -> ImageFields:
    """A folder's ``aolp.npy`` and ``dolp.npy`` as one ``32FC2`` (AoLP, DoLP) message."""
    folder = Path(folder)
    aolp, dolp = read_array(folder / AOLP_FILE), read_array(folder / DOLP_FILE)
    if aolp.shape != dolp.shape:
        raise SensorInputError(f'{folder}: AoLP {aolp.shape} and DoLP {dolp.shape} differ')
    return array_to_image(np.stack([aolp, dolp], axis=-1).astype(np.float32), '32FC2')
