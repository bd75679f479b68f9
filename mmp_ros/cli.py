"""The ``mmp_ros`` command line: one entry point, a subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so
``mmp_ros --help`` needs neither torch nor rclpy. An error in what the user gave
(:class:`mmp_ros.errors.InputError`) is printed as its message alone, with exit status 2.
SIGTERM (what ``docker stop``, systemd and ``ros2 launch`` send) stops every command as Ctrl-C
does, its clean-up included. The ROS processes (``RUN_UNTIL_STOPPED``: the nodes, ``record``,
``replay``) then exit with status 0 whenever the stop comes, during their start-up too, as ROS 2
nodes do: ``ros2 launch`` reports any other status as 'process has died'. Any other command
stopped before its work was done exits with status 130, for SIGTERM too.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys

from mmp_ros.errors import InputError
from mmp_ros.stops import restore_handlers, stop_received, stops_as_interrupt

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    'train': (
        'training.train',
        'train a model (YAML config, key=value overrides; torchrun for DDP)',
    ),
    'evaluate-model': ('training.evaluate', 'mIoU of checkpoints for every modality subset'),
    'adapt-data': ('training.adapt', 'label-free mmp_adapt on a dataset config'),
    'run': ('mmp_ros.ros.run', 'run the segmentation node (arguments after --ros-args go to ROS)'),
    'decode': ('mmp_ros.sensors.cli', 'decode a real sensor sample and print what it holds'),
    'bench-dds': ('mmp_ros.ros.bench_dds', 'measure two-process image delivery over DDS'),
    'synth-dataset': (
        'training.data.cli',
        'render a synthetic RGB + depth + polarization + thermal dataset to disk',
    ),
    'replay': ('mmp_ros.ros.replay', 'play a rosbag2 (MCAP or sqlite3) into live topics, on time'),
    'record': ('mmp_ros.ros.record', 'record live topics into a rosbag2 (MCAP or sqlite3)'),
    'recover-bag': (
        'mmp_ros.bags.recovery',
        'a complete rosbag2 from an MCAP recording that was killed before it closed',
    ),
    'export': (
        'training.export',
        'export a checkpoint to one ONNX file serving every modality mask',
    ),
    'build-engine': (
        'mmp_ros.inference.engine_cli',
        'build the TensorRT engine for an exported model',
    ),
    'bench-backends': (
        'mmp_ros.inference.bench',
        'latency, throughput and memory of the inference backends',
    ),
    'check-tensorrt': (
        'mmp_ros.inference.tensorrt_ops',
        "check an ONNX model against TensorRT's operator support list",
    ),
    'synth-bag': (
        'training.data.synth_bag',
        'render a synthetic four-camera rosbag2 with ground truth (the demo\'s input)',
    ),
    'evaluate': (
        'mmp_ros.evaluation.cli',
        'score a recorded run: mIoU per dropout phase, latency, fault detection times',
    ),
    'demo': (
        'mmp_ros.demo',
        'the one-command demo: synthetic bag, dropout, node, recording, report',
    ),
    'adapt': (
        'training.adapt_bag',
        'robustify a model to missing sensors on a healthy recording, without labels',
    ),
    'dropout': (
        'mmp_ros.ros.dropout_node',
        'make sensors fail on a schedule, between the sources and the node',
    ),
}

# Stopping them is how they end: a stop at any moment is a clean exit (status 0).
RUN_UNTIL_STOPPED = frozenset({'run', 'dropout', 'record', 'replay'})

# What setup.py's train extra brings (import names): a native ROS install (rosdep) or a plain
# `pip install` has none of them, and the commands that train or export say so in one line.
TRAIN_MODULES = frozenset({'torch', 'einops', 'onnx', 'onnxscript', 'tqdm'})


def positive_float(text: str) -> float:
    """argparse ``type`` of a finite number above 0 (seconds, rates)."""
    value = _number(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f'must be a positive number, got {text}')
    return value


def non_negative_float(text: str) -> float:
    """argparse ``type`` of a finite number of at least 0 (a wait where 0 means none)."""
    value = _number(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f'must be 0 or more, got {text}')
    return value


def positive_int(text: str) -> int:
    """argparse ``type`` of a whole number above 0 (pixels, counts)."""
    value = _whole_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f'must be positive, got {value}')
    return value


def non_negative_int(text: str) -> int:
    """argparse ``type`` of a whole number of at least 0 (a count where 0 means all)."""
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be 0 or more, got {value}')
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {text!r}') from None


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a whole number, got {text!r}') from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='mmp_ros', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, add_help=False)
        command.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Without this, SIGTERM killed a command outright: `synth-bag` left its half-written bag,
    # `evaluate` a half-written report, and `bench-dds` its two child processes publishing on.
    previous_handlers = stops_as_interrupt()
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before a command took over its signals (its imports)
        return 130
    except ImportError as exc:
        # Ctrl-C while a C extension initialized (rclpy's): the import fails with an
        # ImportError caused by the KeyboardInterrupt, and rpyutils wraps that in another.
        if _caused_by_interrupt(exc):
            return 130
        raise
    except BrokenPipeError:  # the reader went away (mmp_ros evaluate RUN | head)
        # Python flushes stdout again at exit: point it at /dev/null so that this is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        restore_handlers(previous_handlers)


def _import(module: str):
    """The command's or node's module, imported; KeyboardInterrupt where a stop came while it
    imported and was lost: the node or command ran on as if nothing had been asked
    (``mmp_dropout_node`` stopped so went on to 'parameter schedule_file is empty')."""
    imported = importlib.import_module(module)
    if stop_received():
        raise KeyboardInterrupt
    return imported


def segmentation_node() -> int:
    """Console entry ``mmp_segmentation_node`` (what ``ros2 run`` and the launch file start)."""
    return _node_entry('mmp_ros.ros.segmentation_node')


def segmentation_managed_node() -> int:
    """Console entry ``mmp_segmentation_managed_node``: the managed (lifecycle) segmentation
    node, which starts unconfigured (``launch ... managed:=true`` starts it)."""
    return _node_entry('mmp_ros.ros.segmentation_node', 'managed_main')


def dropout_node() -> int:
    """Console entry ``mmp_dropout_node``."""
    return _node_entry('mmp_ros.ros.dropout_node')


def _node_entry(module: str, function: str = 'main') -> int:
    """The node's ``main`` (or ``function``), imported here: a console script that imported
    the node's module itself (rclpy, numpy: most of a second) printed a KeyboardInterrupt
    traceback for a Ctrl-C, or a launch shutting down, in that time (and SIGTERM killed it
    outright). Stopped then, the node exits with status 0, as when it is stopped later."""
    previous_handlers = stops_as_interrupt()
    try:
        return getattr(_import(module), function)()
    except KeyboardInterrupt:
        return 0
    except ImportError as exc:
        if _caused_by_interrupt(exc):
            return 0
        raise
    finally:
        restore_handlers(previous_handlers)


def _caused_by_interrupt(error: BaseException | None) -> bool:
    """Whether ``error`` is a stop's: Ctrl-C or SIGTERM came, or a KeyboardInterrupt is
    among its causes."""
    if stop_received():
        return True
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def split_ros_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the command's own arguments, the ROS arguments): each ``--ros-args ... [--]`` block
    goes to rclpy whole, and what follows a block's closing ``--`` is the command's again, as
    ROS 2 reads a command line (rclpy's ``remove_ros_args``). Everything after the first
    ``--ros-args`` went to rclpy, which passes over what is not a ROS argument: ``mmp_ros
    replay BAG --ros-args -r __ns:=/robot1 -- --rate 5`` played at rate 1, without a word."""
    own: list[str] = []
    ros: list[str] = []
    in_block = False
    for arg in argv:
        if arg == '--ros-args':
            in_block = True
        if in_block:
            ros.append(arg)
            in_block = arg != '--'
        else:
            own.append(arg)
    return own, ros


def _main(argv: list[str] | None) -> int:
    # Arguments of --ros-args blocks belong to rclpy, not to argparse.
    argv, ros_args = split_ros_arguments(list(sys.argv[1:] if argv is None else argv))
    # The command, before its parser is built: the parser takes nothing before it, and a stop
    # can come while it is built (20 to 50 ms on a loaded machine).
    command = argv[0] if argv else None
    try:
        known, rest = build_parser().parse_known_args(argv)
        return _run_command(known, rest, ros_args)
    except (KeyboardInterrupt, ImportError) as exc:
        # Stopped in its start-up (its imports, opening its bag): a ROS process exits with 0
        # then too, not 130 (a launch shut down at once logged 'process has died').
        if command in RUN_UNTIL_STOPPED and _caused_by_interrupt(exc):
            return 0
        raise


def _run_command(known: argparse.Namespace, rest: list[str], ros_args: list[str]) -> int:
    if ros_args and known.command not in RUN_UNTIL_STOPPED:
        # Only the ROS processes read them; any other command went on without them.
        print(f'mmp_ros {known.command}: takes no ROS arguments, and {" ".join(ros_args)} '
              'would be ignored (run, dropout, record and replay take them)', file=sys.stderr)
        return 2
    try:
        return _run_module(known, rest, ros_args)
    except ModuleNotFoundError as exc:
        missing = (exc.name or '').split('.')[0]
        if missing not in TRAIN_MODULES or _caused_by_interrupt(exc):
            raise
        print(f'mmp_ros {known.command}: needs {missing}, which is not installed here: install '
              "setup.py's train extra (pip install '.[train]' in the source folder)",
              file=sys.stderr)
        return 1


def _run_module(known: argparse.Namespace, rest: list[str], ros_args: list[str]) -> int:
    module = _import(known._module)
    command_parser = argparse.ArgumentParser(
        prog=f'mmp_ros {known.command}', description=COMMANDS[known.command][1]
    )
    module.add_arguments(command_parser)
    args = command_parser.parse_args(rest)
    args.ros_args = ros_args
    try:
        return int(module.run(args) or 0)
    except InputError as exc:  # the input is wrong, not the program: its message alone
        print(f'mmp_ros {known.command}: {input_error_message(exc)}', file=sys.stderr)
        return 2


def input_error_message(exc: InputError) -> str:
    """``exc``'s message; for one a torch DataLoader worker raised (a dataset's file that is
    wrong, read with ``data.num_workers`` > 0), the message it was raised with: torch raises
    it again in the main process with 'Caught ... in DataLoader worker process 0.' and the
    worker's whole traceback as its message."""
    text = str(exc)
    if text.startswith('Caught ') and '\nOriginal Traceback' in text:
        last = text.rstrip().splitlines()[-1]
        prefix = f'{type(exc).__module__}.{type(exc).__qualname__}: '
        if last.startswith(prefix):
            return last[len(prefix):]
    return text


if __name__ == '__main__':
    sys.exit(main())
