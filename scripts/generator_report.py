"""Modality-information report: which classes need which modality, and the ceiling per subset.

Writes docs/generator_ceiling.json (importable numbers for the evaluation tables) and
docs/img/generator_information.png, and prints the Markdown tables of docs/generator.md.

    PYTHONPATH=. python scripts/generator_report.py [--scenes 300]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import cv2
import matplotlib.pyplot as plt
import numpy as np

from mmp_ros.cli import positive_int
from mmp_ros.errors import InputError, output_file
from mmp_ros.modalities import MODALITIES, nonempty_subsets, subset_label
from training.data.ceiling import (
    class_ceiling,
    confusion_groups,
    design_report,
    identifiable_classes,
    information_ceiling,
)
from training.data.classes import CLASS_NAMES
from training.data.decode import polarization_from_intensities
from training.data.render import IMX250MZR_LAYOUT, POLARIZATION_ANGLES, render
from training.data.scene import (
    SPLIT_CAPACITY,
    SPLITS,
    frame_size_problem,
    make_split,
    sample_scene,
)


def pixel_counts(split: str, scenes: int, size: tuple[int, int]) -> np.ndarray:
    """Label histogram of the first ``scenes`` scenes of ``split`` at ``size`` = (H, W)."""
    counts = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    for index in range(scenes):
        images = render(sample_scene(make_split(split, index), size[1], size[0], split))
        counts += np.bincount(images.label.ravel(), minlength=len(CLASS_NAMES))[: len(counts)]
    return counts


def block_dolp(mosaic: np.ndarray) -> np.ndarray:
    """DoLP on 4x4 blocks (each angle: the mean of its four pixels), as the real samples."""
    h, w = (mosaic.shape[0] // 4) * 4, (mosaic.shape[1] // 4) * 4
    planes = []
    for angle in POLARIZATION_ANGLES:
        row, col = next((r, c) for r in (0, 1) for c in (0, 1) if IMX250MZR_LAYOUT[r][c] == angle)
        sub = mosaic[row:h:2, col:w:2].astype(np.float32)
        planes.append(sub.reshape(h // 4, 2, w // 4, 2).mean(axis=(1, 3)))
    return polarization_from_intensities(np.stack(planes))[2]


REAL_DEPTH = ('nyu_raw', 'tum_rgbd', 'sunrgbd')  # their depth_mm.png
REAL_POLARIZATION = ('polanalyser_fruits', 'polanalyser_camera')  # their dolp.npy
REAL_SAMPLES = (*(f'{s}/depth_mm.png' for s in REAL_DEPTH),
                *(f'{s}/dolp.npy' for s in REAL_POLARIZATION))


def statistics(split: str, scenes: int, real: Path) -> dict:
    """Depth holes and DoLP of generated frames beside the real samples of ../shared/data/real."""
    invalid, dolp = [], []
    for index in range(scenes):
        images = render(sample_scene(make_split(split, index), 320, 240, split))
        invalid.append(float((images.depth_mm == 0).mean()))
        dolp.append(block_dolp(images.polarization_mosaic).ravel())
    generated = {
        'depth_invalid_fraction_mean': float(np.mean(invalid)),
        'depth_invalid_fraction_p10_p90': np.percentile(invalid, [10, 90]).round(4).tolist(),
        'dolp_p10_p50_p90': np.percentile(np.concatenate(dolp), [10, 50, 90]).round(4).tolist(),
        'scenes': scenes,
        'size': [240, 320],
    }
    measured = {}
    for sample in REAL_DEPTH:
        depth = cv2.imread(str(real / sample / 'depth_mm.png'), cv2.IMREAD_UNCHANGED)
        if depth is not None:
            measured[f'{sample}_depth_invalid_fraction'] = round(float((depth == 0).mean()), 4)
    for sample in REAL_POLARIZATION:
        path = real / sample / 'dolp.npy'
        if path.is_file():
            measured[f'{sample}_dolp_p10_p50_p90'] = np.percentile(
                np.load(path), [10, 50, 90]).round(4).tolist()
    return {'generated': generated, 'real_samples': measured}


def build_report(counts: np.ndarray, split: str, scenes: int, size) -> dict:
    design = design_report()
    subsets = {}
    for subset in nonempty_subsets():
        groups = [[CLASS_NAMES[c] for c in g] for g in confusion_groups(subset) if len(g) > 1]
        subsets[subset_label(subset)] = {
            'modalities': list(subset),
            'ceiling_miou': information_ceiling(subset),
            'ceiling_miou_pixel_weighted': information_ceiling(subset, counts),
            'class_iou': dict(zip(CLASS_NAMES, class_ceiling(subset).round(4).tolist(),
                                  strict=True)),
            'identifiable': [CLASS_NAMES[c] for c in identifiable_classes(subset)],
            'look_alike_groups': groups,
        }
    return {
        'description': (
            'Information ceiling of the synthetic generator: the mIoU of a perfect segmenter '
            'that labels each object at random among the classes that look identical with '
            'the available modalities (training/data/ceiling.py). ceiling_miou weights every '
            'class equally; ceiling_miou_pixel_weighted uses the label histogram below.'
        ),
        'class_names': list(CLASS_NAMES),
        'modalities': list(MODALITIES),
        'pixel_counts': {'split': split, 'scenes': scenes, 'size': list(size),
                         'counts': dict(zip(CLASS_NAMES, counts.tolist(), strict=True))},
        'needed_modalities': design['needed_modalities'],
        'classes_needing': design['classes_needing'],
        'identifiable_without': design['identifiable_without'],
        'every_modality_matters': design['every_modality_matters'],
        'half_identifiable_without_any_one': design['half_identifiable_without_any_one'],
        'subsets': subsets,
    }


def draw(report: dict, out: Path) -> None:
    names = report['class_names']
    singles = np.array([[1.0 if n in report['subsets'][m]['identifiable'] else 0.0
                         for m in MODALITIES] for n in names])
    needed = np.array([[m in report['needed_modalities'][n] for m in MODALITIES] for n in names])
    fig, (ax_m, ax_b) = plt.subplots(1, 2, figsize=(13, 5.2),
                                     gridspec_kw={'width_ratios': [1, 1.7]})
    ax_m.imshow(singles, cmap='Greens', vmin=-0.3, vmax=1.3, aspect='auto')
    for i in range(len(names)):
        for j in range(len(MODALITIES)):
            if needed[i, j]:
                ax_m.text(j, i, 'needed', ha='center', va='center', fontsize=8, color='darkred',
                          fontweight='bold')
            elif singles[i, j]:
                ax_m.text(j, i, 'alone', ha='center', va='center', fontsize=7, color='white')
    ax_m.set_xticks(range(len(MODALITIES)), MODALITIES, rotation=20)
    ax_m.set_yticks(range(len(names)), names)
    ax_m.set_title('green/"alone": identifiable with this modality only\n'
                   '"needed": lost without this modality', fontsize=9)
    labels = list(report['subsets'])
    uniform = [report['subsets'][k]['ceiling_miou'] for k in labels]
    weighted = [report['subsets'][k]['ceiling_miou_pixel_weighted'] for k in labels]
    x = np.arange(len(labels))
    ax_b.bar(x - 0.2, uniform, 0.4, label='classes weighted equally')
    ax_b.bar(x + 0.2, weighted, 0.4, label='weighted by test-split pixel counts')
    ax_b.set_xticks(x, labels, rotation=60, ha='right', fontsize=8)
    ax_b.set_ylim(0, 1.05)
    ax_b.set_ylabel('information ceiling (mIoU)')
    ax_b.set_title('Best mIoU reachable with each modality subset', fontsize=10)
    ax_b.legend(fontsize=8, loc='lower right')
    ax_b.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def markdown(report: dict) -> str:
    lines = ['| subset | ceiling mIoU (classes equal) | ceiling mIoU (pixel-weighted) | '
             'look-alike groups |', '| --- | --- | --- | --- |']
    for label, entry in report['subsets'].items():
        groups = '; '.join('{' + ', '.join(g) + '}' for g in entry['look_alike_groups']) or '—'
        lines.append(f"| {label} | {entry['ceiling_miou']:.3f} | "
                     f"{entry['ceiling_miou_pixel_weighted']:.3f} | {groups} |")
    lines += ['', '| class | needs | identifiable alone with |', '| --- | --- | --- |']
    for name in report['class_names']:
        alone = [m for m in MODALITIES if name in report['subsets'][m]['identifiable']]
        lines.append(f"| {name} | {', '.join(report['needed_modalities'][name]) or '—'} | "
                     f"{', '.join(alone) or '—'} |")
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--split', default='test', choices=SPLITS)
    parser.add_argument('--scenes', type=positive_int, default=300)
    parser.add_argument('--size', type=positive_int, nargs=2, default=(120, 160),
                        metavar=('H', 'W'))
    # text, not a Path: output_file refuses a path ending with a slash (a Path drops it)
    parser.add_argument('--json', default='docs/generator_ceiling.json')
    parser.add_argument('--figure', default='docs/img/generator_information.png')
    parser.add_argument('--real', type=Path,
                        default=Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'real',
                        help='the shared real sensor samples, for the statistics beside ours')
    args = parser.parse_args(argv)
    if problem := frame_size_problem(*args.size):
        parser.error(f'--size {problem}')
    if args.scenes > SPLIT_CAPACITY:  # was a SceneError traceback after 10 million renders
        parser.error(f'--scenes {args.scenes}: a split has {SPLIT_CAPACITY} scenes')
    try:  # both before the scenes: not the JSON written and the figure failing after them
        args.json = output_file(args.json, '--json', 'generator_ceiling.json')
        args.figure = output_file(args.figure, '--figure', 'generator_information.png')
    except InputError as exc:
        parser.error(str(exc))
    missing = [name for name in REAL_SAMPLES if not (args.real / name).is_file()]
    if missing:  # else the report's real-sample figures would be left out without a word
        parser.error(f'--real {args.real}: no {", ".join(missing)} (the real samples of '
                     'shared/data/real)')
    counts = pixel_counts(args.split, args.scenes, tuple(args.size))
    report = build_report(counts, args.split, args.scenes, tuple(args.size))
    report['statistics'] = statistics(args.split, 60, args.real)
    args.json.write_text(json.dumps(report, indent=1) + '\n')
    draw(report, args.figure)
    print(markdown(report))
    print(json.dumps(report['statistics'], indent=1))
    print(f'\nwrote {args.json} and {args.figure}')
    return 0 if report['every_modality_matters'] and report[
        'half_identifiable_without_any_one'] else 1


if __name__ == '__main__':
    raise SystemExit(main())
