"""Generator speed: frames per second at 160x128 and 640x480, one process, median of frames.

Each frame is a new scene (sampling, ray casting, all four sensors, labels); 'sample' adds the
decoding into the model's float tensors (the torch Dataset's __getitem__). The machine is
shared, so the median per-frame time is reported, with the cores this process may use.

    PYTHONPATH=. python scripts/bench_generator.py [--frames 60] [--json docs/generator_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from mmp_ros.cli import positive_int
from mmp_ros.errors import InputError, output_file
from training.data.dataset import SyntheticDataset
from training.data.render import render
from training.data.scene import SPLIT_CAPACITY, make_split, sample_scene

TARGETS = {(128, 160): 30.0, (480, 640): 3.0}  # frames/s the issue asks for


def time_frames(size: tuple[int, int], frames: int, stage: str) -> list[float]:
    height, width = size
    dataset = SyntheticDataset('train', size, frames + 2, polarization='mosaic')
    dataset[0]  # warm caches and lazy imports
    times = []
    for index in range(1, frames + 1):
        start = time.perf_counter()
        if stage == 'render':
            render(sample_scene(make_split('train', index), width, height))
        else:
            dataset[index]
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=positive_int, default=60)
    # text, not a Path: output_file refuses a path ending with a slash (a Path drops it)
    parser.add_argument('--json', default=None)
    args = parser.parse_args(argv)
    # Each frame is a new train scene, after a warm-up one and one spare: was a SceneError.
    if args.frames > SPLIT_CAPACITY - 2:
        parser.error(f'--frames {args.frames}: at most {SPLIT_CAPACITY - 2} (each frame is a '
                     f'new scene of a split of {SPLIT_CAPACITY} scenes)')
    if args.json is not None:  # its folder now: not after the frames it would lose
        try:
            args.json = output_file(args.json, '--json')
        except InputError as exc:
            parser.error(str(exc))
    cores = len(os.sched_getaffinity(0))
    results = []
    for size, target in TARGETS.items():
        for stage in ('render', 'sample'):
            frames = args.frames if size[0] < 200 else max(args.frames // 3, 10)
            times = np.array(time_frames(size, frames, stage))
            median = float(np.median(times))
            row = {
                'size': f'{size[1]}x{size[0]}',
                'stage': stage,
                'frames': frames,
                'median_ms': round(median * 1000, 2),
                'p90_ms': round(float(np.percentile(times, 90)) * 1000, 2),
                'fps_median': round(1 / median, 1),
                'target_fps': target,
                'meets_target': 1 / median >= target,
            }
            results.append(row)
            print(f"{row['size']:>8} {stage:>6}: {row['median_ms']:7.2f} ms median "
                  f"(p90 {row['p90_ms']:.2f}) = {row['fps_median']:6.1f} frames/s "
                  f"[target {target:g}: {'ok' if row['meets_target'] else 'MISSED'}]")
    report = {
        'cores_available': cores,
        'cpu': platform.processor() or platform.machine(),
        'python': platform.python_version(),
        'numpy': np.__version__,
        'results': results,
    }
    print(f'cores available to this process: {cores}')
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + '\n')
        print(f'wrote {args.json}')
    return 0 if all(r['meets_target'] for r in results) else 1


if __name__ == '__main__':
    raise SystemExit(main())
