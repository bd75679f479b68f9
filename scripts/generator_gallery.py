"""Draw a gallery of synthetic scenes: every modality and the labels, one scene per row.

    PYTHONPATH=. python scripts/generator_gallery.py --scenes 11 13 1 15 14

redraws docs/img/generator_gallery.png, the default --out.
"""

from __future__ import annotations

import argparse
import io

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from mmp_ros.cli import non_negative_int, positive_int
from mmp_ros.errors import InputError, output_file
from training.data.classes import CLASS_NAMES, PALETTE
from training.data.decode import decode_frame
from training.data.render import render
from training.data.scene import (
    SPLIT_CAPACITY,
    SPLITS,
    frame_size_problem,
    make_split,
    sample_scene,
)


def polarization_colour(pol: np.ndarray) -> np.ndarray:
    """AoLP as hue, DoLP as saturation and value (the usual polarization false colour)."""
    aolp = (np.arctan2(pol[1], pol[0]) / 2) % np.pi
    dolp = np.clip(pol[2] * 2.5, 0, 1)
    hsv = np.stack([aolp / np.pi, np.ones_like(dolp), dolp], axis=-1)
    return matplotlib.colors.hsv_to_rgb(hsv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # text, not a Path: output_file refuses a path ending with a slash (a Path drops it)
    parser.add_argument('--out', default='docs/img/generator_gallery.png')
    parser.add_argument('--split', default='train', choices=SPLITS)
    parser.add_argument('--scenes', type=non_negative_int, nargs='+', default=[0, 3, 7, 11])
    parser.add_argument('--size', type=positive_int, nargs=2, default=[480, 640],
                        metavar=('H', 'W'))
    args = parser.parse_args(argv)
    try:  # before the scenes are rendered
        args.out = output_file(args.out, '--out', 'generator_gallery.png')
    except InputError as exc:
        parser.error(str(exc))

    height, width = args.size
    if problem := frame_size_problem(height, width):
        parser.error(f'--size {problem}')
    if height % 2 or width % 2:  # the polarization panel decodes the mosaic
        parser.error(f'--size {height} {width}: the 2x2 polarizer mosaic needs an even height '
                     'and width')
    if beyond := [i for i in args.scenes if i >= SPLIT_CAPACITY]:  # was a SceneError traceback
        parser.error(f'--scenes {beyond[0]}: the scenes of a split are numbered from 0 to '
                     f'{SPLIT_CAPACITY - 1}')
    palette = np.array(PALETTE, dtype=np.uint8)
    columns = ('RGB', 'depth (m)', 'polarization: AoLP hue, DoLP', 'thermal (°C)', 'labels')
    fig, axes = plt.subplots(
        len(args.scenes), len(columns), figsize=(3.2 * len(columns), 2.5 * len(args.scenes))
    )
    axes = np.atleast_2d(axes)
    for row, index in enumerate(args.scenes):
        scene = sample_scene(make_split(args.split, index), width, height)
        images = render(scene)
        rep = decode_frame(images, polarization='mosaic')
        depth = np.where(rep['depth'][0] > 0, rep['depth'][0], np.nan)
        panels = (
            (images.rgb, {}),
            (depth, {'cmap': 'turbo', 'vmin': 0.5, 'vmax': 6.0}),
            (polarization_colour(rep['polarization']), {}),
            (rep['thermal'][0], {'cmap': 'inferno'}),
            (palette[images.label], {}),
        )
        for col, (image, kwargs) in enumerate(panels):
            ax = axes[row, col]
            shown = ax.imshow(image, **kwargs)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=9)
            if col in (1, 3):
                fig.colorbar(shown, ax=ax, fraction=0.035, pad=0.02)
        axes[row, 0].set_ylabel(
            f'{args.split} #{index}\n{scene.lighting.condition}, '
            f'{scene.thermal.ambient_k - 273.15:.0f} °C', fontsize=8
        )
    handles = [
        matplotlib.patches.Patch(color=np.array(c) / 255, label=n)
        for n, c in zip(CLASS_NAMES, PALETTE, strict=True)
    ]
    fig.legend(handles=handles, loc='lower center', ncol=7, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=72, format='png')
    # sensor noise compresses badly: a 256-colour palette keeps the README light
    Image.open(buffer).convert('RGB').quantize(256).save(args.out, optimize=True)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
