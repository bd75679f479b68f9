"""``mmp_ros evaluate RUN_BAG``: score a recorded run and write its report.

The run must hold the node's ``/segmentation/labels`` and ``/diagnostics``, the dropout
simulator's ``/dropout/events`` and the synthetic bag's ``/ground_truth/labels`` (what
``python -m mmp_ros.demo`` records). A bad bag ends the command with status 2 and one line
naming the file and topic, as ``mmp_ros replay`` does.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from mmp_ros.bags.errors import BagError
from mmp_ros.core.parameters import ParameterError
from mmp_ros.share import share_file

DEFAULT_PARAMS = [str(share_file('config', 'mmp_segmentation.yaml'))]


def _seconds_or_auto(text: str) -> float | str:
    if text == 'auto':
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected seconds or "auto", got {text!r}') from None
    if not (value >= 0 and math.isfinite(value * 1e9)):  # it becomes whole nanoseconds
        raise argparse.ArgumentTypeError(f'must be a finite number >= 0, got {value}')
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag', help='recorded run (a rosbag2 directory or .mcap/.db3 file)')
    parser.add_argument('--out', type=Path, default=None,
                        help='report folder (default: <bag>_report beside the bag)')
    parser.add_argument('--params', nargs='+', default=DEFAULT_PARAMS, metavar='FILE',
                        help="the node's parameter files, in the order it loaded them (for "
                        'the detection bounds; default: config/mmp_segmentation.yaml)')
    parser.add_argument('--settle-after-cut', type=_seconds_or_auto, default=0.0, metavar='S',
                        help='leave out of the phase figures the label images less than S '
                        'seconds after a scene cut in the ground truth (synthetic bags jump '
                        'between scenes); "auto": one period of the slowest camera. Default 0')
    parser.add_argument('--strip', type=Path, default=None,
                        help='also write the image strip here (e.g. docs/img/demo_strip.png)')


def run(args: argparse.Namespace) -> int:
    from mmp_ros.evaluation.report import evaluate_run, write_report

    out = args.out or Path(f'{str(args.bag).rstrip("/")}_report')
    try:
        report = evaluate_run(args.bag, node_params=args.params,
                              settle_s=args.settle_after_cut)
        path = write_report(report, out, strip=args.strip)
    except (BagError, ParameterError, OSError) as exc:
        print(f'mmp_ros evaluate: {exc}', file=sys.stderr)
        return 2
    print(report.summary_table())
    print(f'report: {path}')
    return 0
