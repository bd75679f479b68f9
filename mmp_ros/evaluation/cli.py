"""``mmp_ros evaluate RUN_BAG``: score a recorded run and write its report.

The run must hold the node's ``/segmentation/labels`` and ``/diagnostics``, the dropout
simulator's ``/dropout/events`` and the synthetic bag's ``/ground_truth/labels`` (what
``python -m mmp_ros.demo`` records); ``--namespace /robot1`` reads all but ``/diagnostics``
under a namespace, ``--topic NAME=TOPIC`` names one topic, ``--node NAME`` the node whose
statuses to read where /diagnostics holds those of several. A bad bag ends the command with
status 2 and one line naming the file and topic, as ``mmp_ros replay`` does.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from mmp_ros.bags.errors import BagError
from mmp_ros.core.parameters import ParameterError
from mmp_ros.errors import OutputFolderError, output_file
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


# --topic NAME=TOPIC: the RunTopics fields a run's topics are read from
TOPIC_NAMES = ('labels', 'ground_truth', 'events', 'diagnostics', 'label_info', 'overlay')


def run_topics(namespace: str | None, overrides: list[str]):
    """The topics to read: the demo's, under ``namespace`` (all but ``/diagnostics``), with
    ``NAME=TOPIC`` overrides (a relative TOPIC is in the namespace, as for a node in it).
    BagError for an invalid namespace or topic name, or an unknown NAME."""
    from mmp_ros.evaluation.run import DEFAULT_TOPICS

    topics = DEFAULT_TOPICS
    if namespace is None and not overrides:
        return topics
    # rclpy's name checks: only for names given (evaluate itself needs no ROS)
    from mmp_ros.ros.names import namespace_problem, topic_name_problem

    prefix = ''
    if namespace is not None:
        namespace = namespace if namespace.startswith('/') else f'/{namespace}'  # as launch's
        if problem := namespace_problem(namespace):
            raise BagError(f'--namespace {namespace}: {problem}')
        topics, prefix = topics.in_namespace(namespace), namespace.rstrip('/')
    chosen = {}
    for item in overrides:
        name, sep, topic = item.partition('=')
        if not sep or not topic:
            raise BagError(f'--topic {item!r}: expected NAME=TOPIC')
        if name not in TOPIC_NAMES:
            raise BagError(f'--topic {item}: {name!r} is none of {", ".join(TOPIC_NAMES)}')
        topic = topic if topic.startswith('/') else f'{prefix}/{topic}'
        if problem := topic_name_problem(topic, 'evaluate'):
            raise BagError(f'--topic {item}: {problem}')
        if chosen.get(name, topic) != topic:  # the last would win, without a word
            raise BagError(f'--topic {item}: {name} is given twice ({chosen[name]}, {topic})')
        chosen[name] = topic
    topics = replace(topics, **chosen)
    required = [topics.labels, topics.ground_truth, topics.events, topics.diagnostics]
    if shared := sorted({t for t in required if required.count(t) > 1}):
        raise BagError(f'--topic: {", ".join(shared)} named for two streams; each needs a '
                       'topic of its own')
    return topics


def default_out(bag: str | Path) -> Path:
    """``<bag>_report`` beside the bag: for a storage file of a bag directory (one with its
    metadata.yaml) beside that directory, not in it among the bag's files."""
    path = Path(bag)
    if path.suffix in ('.mcap', '.db3') and (path.parent / 'metadata.yaml').is_file():
        path = path.parent
    if path.name in ('', '..'):  # '.', '..', 'run.mcap' in the bag directory: its name
        path = path.resolve()
    return Path(f'{path}_report')


def check_out(out: Path) -> None:
    """Before the run is read: ``out`` is a folder or can become one. A file in its place
    (or in place of a folder above it), or a folder that takes no file where it would be
    written (a read-only mount, as a bag's, beside which the default report goes), is an
    OutputFolderError naming --out; the report's files are written into
    ``out/.report.partial``, and these failed only once the run was scored, with '[Errno 20]
    Not a directory' or '[Errno 30] Read-only file system' alone."""
    for folder in (out, *out.parents):
        if folder.is_dir():
            try:  # nothing is made here: a folder made for a report that fails is removed
                with tempfile.NamedTemporaryFile(dir=folder, prefix='.write-test-'):
                    pass
            except OSError as exc:
                where = 'it' if folder == out else f'{folder} above it'
                raise OutputFolderError(f'--out {out}: cannot write into {where} '
                                        f'({exc.strerror or exc}); give a folder that takes '
                                        'the report') from None
            return
        if folder.exists() or folder.is_symlink():
            where = 'it' if folder == out else f'{folder} above it'
            what = 'a file' if folder.exists() else 'a link to nothing'
            raise OutputFolderError(f'--out {out}: {where} is {what}, not a folder; give the '
                                    'folder to write the report into (made if missing)')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag', help='recorded run (a rosbag2 directory or .mcap/.db3 file)')
    parser.add_argument('--out', type=Path, default=None,
                        help='report folder (default: <bag>_report beside the bag, also for a '
                        'storage file of a bag directory)')
    # Repeatable ('extend'), as the node's --params-file: a second --params adds its files.
    parser.add_argument('--params', nargs='+', action='extend', default=None, metavar='FILE',
                        help="the node's parameter files, in the order it loaded them (for "
                        'the detection bounds; default: config/mmp_segmentation.yaml); their '
                        'sections that ROS applies to the node (--node, --namespace) are read')
    parser.add_argument('--settle-after-cut', type=_seconds_or_auto, default=0.0, metavar='S',
                        help='leave out of the phase figures the label images less than S '
                        'seconds after a scene cut in the ground truth (synthetic bags jump '
                        'between scenes); "auto": one period of the slowest camera. Default 0')
    parser.add_argument('--namespace', default=None, metavar='NS',
                        help='namespace the run was recorded in (-r __ns:=/robot1, the launch '
                        "file's namespace): every topic read under it but /diagnostics "
                        '(whose statuses --node chooses)')
    parser.add_argument('--topic', action='append', default=[], metavar='NAME=TOPIC',
                        help=f'read one stream from another topic ({", ".join(TOPIC_NAMES)}; '
                        'a relative TOPIC is under --namespace), e.g. '
                        'ground_truth=/ground_truth/labels')
    parser.add_argument('--node', default=None, metavar='NAME',
                        help='the segmentation node whose /diagnostics statuses to read: they '
                        'are named "NAME: <modality>" (NAME: mmp_segmentation under the '
                        'default node name, else the name given with -r __node:=NAME), '
                        'outside the root namespace "/NS/NAME: <modality>" (found in '
                        '--namespace, or in the one namespace that has a node NAME). '
                        'Default: the only node whose statuses the bag holds, else the only '
                        'one in --namespace; needed where it holds several')
    # text, not a Path: Path('img/') is 'img', and the strip became a file of that name
    parser.add_argument('--strip', default=None,
                        help='also write the image strip here (e.g. docs/img/demo_strip.png)')


def run(args: argparse.Namespace) -> int:
    from mmp_ros.evaluation.report import evaluate_run, write_report

    out = args.out or default_out(args.bag)
    try:
        check_out(out)
        if args.strip is not None:  # a folder failed once the run was scored and reported
            output_file(args.strip, '--strip', 'strip.png')
        topics = run_topics(args.namespace, args.topic)
        report = evaluate_run(args.bag, node_params=args.params or DEFAULT_PARAMS,
                              topics=topics, settle_s=args.settle_after_cut, node=args.node,
                              namespace=args.namespace)
        path = write_report(report, out, strip=args.strip)
    except (BagError, ParameterError, OSError) as exc:
        print(f'mmp_ros evaluate: {exc}', file=sys.stderr)
        return 2
    print(report.summary_table())
    print(f'report: {path}')
    return 0
