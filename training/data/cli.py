"""``synth-dataset``: render synthetic RGB + depth + polarization + thermal scenes to disk.

The layout is documented in ``training.data.layout`` and docs/generator.md. Writing is
deterministic: the same arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from mmp_ros.atomic import replace_atomically
from mmp_ros.cli import positive_int
from mmp_ros.errors import InputError, OutputFolderError, output_folder
from training.data.layout import (
    FOLDERS,
    MANIFEST,
    DatasetLayoutError,
    manifest,
    read_manifest,
    write_frame,
)
from training.data.render import render
from training.data.scene import (
    SPLIT_CAPACITY,
    SPLITS,
    frame_size_problem,
    make_split,
    sample_scene,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('out', type=Path, help='folder to write the dataset into')
    parser.add_argument(
        '--split', action='append', metavar='NAME=COUNT',
        help=f'split and number of scenes, repeatable; splits: {", ".join(SPLITS)} '
        '(default: train=200 val=50 test=50 ood=50)',
    )  # fmt: skip
    parser.add_argument('--size', type=int, nargs=2, default=(480, 640), metavar=('H', 'W'))
    parser.add_argument('--start', type=int, default=0, help='first scene index of every split')
    parser.add_argument(
        '--polarization', choices=('mosaic', 'intensities'), default='mosaic',
        help='store the raw IMX250MZR mosaic or the four polarizer planes',
    )  # fmt: skip
    parser.add_argument(
        '--depth', choices=('16UC1', '32FC1'), default='16UC1',
        help='depth as 16-bit millimetre PNG or float32 metre .npy',
    )  # fmt: skip
    parser.add_argument('--jobs', type=positive_int, default=1, help='worker processes')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


class SynthDatasetError(InputError, ValueError):
    """Arguments of ``synth-dataset`` that cannot give a dataset that reads back."""


def _parse_splits(items: list[str] | None) -> dict[str, int]:
    if not items:
        return {'train': 200, 'val': 50, 'test': 50, 'ood': 50}
    splits: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition('=')
        if not sep or name not in SPLITS or not count.isdigit() or int(count) <= 0:
            raise SynthDatasetError(
                f'--split expects NAME=COUNT with NAME in {list(SPLITS)}, got {item!r}'
            )
        if name in splits:
            raise SynthDatasetError(f'--split {name} given twice ({name}={splits[name]}, '
                                    f'{item}): give each split once')
        splits[name] = int(count)
    return splits


def _merged_splits(out: Path, fresh: dict) -> dict[str, list[str]]:
    """``fresh``'s splits, and those a ``dataset.json`` already in ``out`` lists (the same
    split's scenes joined): writing more scenes into a dataset folder keeps what it holds.
    A folder of another size, encoding or generator version is refused."""
    if not (out / MANIFEST).is_file():
        return fresh['splits']
    try:
        old = read_manifest(out)
    except DatasetLayoutError as exc:
        raise SynthDatasetError(f'{exc}; write into another folder') from None
    fresh = json.loads(json.dumps(fresh))  # tuples as the file holds them: lists
    differ = []
    for key in ('generator_version', 'size', 'encodings', 'class_names'):
        was, now = old.get(key), fresh[key]
        if isinstance(was, dict) and isinstance(now, dict):  # encodings: name the modality
            differ += [f'{key}.{k}: {was.get(k)!r} -> {now.get(k)!r}'
                       for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)]
        elif was != now:
            differ.append(f'{key}: {was!r} -> {now!r}')
    if differ:
        raise SynthDatasetError(f'{out} holds a dataset written otherwise ({"; ".join(differ)}): '
                                'write into another folder')
    splits = {name: list(stems) for name, stems in old['splits'].items()}
    for name, stems in fresh['splits'].items():
        splits[name] = sorted(set(splits.get(name, ())) | set(stems))
    return splits


def _write_one(job: tuple[Path, str, int, int, int, str, str]) -> None:
    split_dir, split, seed, height, width, polarization, depth = job
    scene = sample_scene(seed, width, height, split)
    write_frame(split_dir, scene, render(scene), polarization, depth)


def write_dataset(
    out: Path,
    splits: dict[str, int],
    size: tuple[int, int] = (480, 640),
    *,
    start: int = 0,
    polarization: str = 'mosaic',
    depth: str = '16UC1',
    jobs: int = 1,
    progress: bool = False,
) -> dict:
    """Render and write every split; returns the manifest written to ``dataset.json``, which
    lists the splits and scenes ``out`` held before too."""
    height, width = size
    seeds = {name: [make_split(name, start + i) for i in range(n)] for name, n in splits.items()}
    data = manifest(size, seeds, polarization, depth)
    written = data['splits']
    data['splits'] = _merged_splits(out, data)  # a folder written otherwise: refused up front
    work = []
    for name, split_seeds in seeds.items():
        for folder in FOLDERS:
            (out / name / folder).mkdir(parents=True, exist_ok=True)
        work += [(out / name, name, s, height, width, polarization, depth) for s in split_seeds]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(work), unit='scene', desc='synth-dataset')
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for _ in pool.map(_write_one, work, chunksize=4):
                if bar is not None:
                    bar.update()
    else:
        for job in work:
            _write_one(job)
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    # merged again with what the folder lists now: a synth-dataset run into it meanwhile (val
    # in one terminal, train in another) had its splits dropped by the one that ended last
    data['splits'] = _merged_splits(out, data | {'splits': written})
    # whole or not at all: written in place, a stop in that time left a dataset whose scenes
    # no reader, nor a later synth-dataset into it, took ('not valid JSON')
    text = json.dumps(data, indent=1, sort_keys=True)
    replace_atomically(out / MANIFEST, lambda partial: partial.write_text(text))
    return data


def run(args: argparse.Namespace) -> int:
    """Check every argument before anything is written; a bad one is a
    :class:`SynthDatasetError`, which ``mmp_ros`` prints as one line (exit status 2)."""
    splits = _parse_splits(args.split)
    height, width = args.size
    if problem := frame_size_problem(height, width):
        raise SynthDatasetError(f'--size {problem}')
    if args.polarization == 'mosaic' and (height % 2 or width % 2):
        raise SynthDatasetError(f'--size {height} {width}: the 2x2 polarizer mosaic needs an '
                                'even height and width (or --polarization intensities)')
    if not 0 <= args.start <= SPLIT_CAPACITY - max(splits.values()):
        last = args.start + max(splits.values()) - 1
        raise SynthDatasetError(f'--start {args.start}: scenes {args.start} to {last} asked '
                                'for, but the scenes of a split are numbered from 0 to '
                                f'{SPLIT_CAPACITY - 1}')
    output_folder(args.out, 'out')
    try:
        write_dataset(
            args.out,
            splits,
            (height, width),
            start=args.start,
            polarization=args.polarization,
            depth=args.depth,
            jobs=args.jobs,
            progress=not args.quiet,
        )
    except OSError as exc:  # a file where a split's folder goes, a full disk, no permission
        if isinstance(exc, InputError):
            raise
        raise OutputFolderError(f'out {args.out}: cannot write the dataset ({exc})') from None
    except BrokenProcessPool:  # was a traceback: a worker killed, by the OOM killer as a rule
        raise SynthDatasetError(f'a worker process of --jobs {args.jobs} ended abruptly (killed, '
                                'as for lack of memory); dataset.json was not updated: run it '
                                'again with fewer --jobs') from None
    total = sum(splits.values())
    print(f'synth-dataset: wrote {total} scenes of {height}x{width} to {args.out}')
    return 0


if __name__ == '__main__':
    from mmp_ros.cli import main

    sys.exit(main(['synth-dataset', *sys.argv[1:]]))
