"""The one-command demo (``make demo``): a synthetic recording replayed through the dropout
simulator into the segmentation node, recorded, and evaluated.

::

    synth bag ──replay──► source/<s>/image ──dropout──► <s>/image ──► mmp_ros run
        └── /ground_truth/labels ───────────────────────────┐            │
                                      record ◄── outputs, /diagnostics, dropout/events, inputs
                                         └──► evaluate ──► report.md / report.html / plots

With ``--transport compressed`` every camera travels as image_transport publishes it,
``<s>/image/compressed`` (depth ``compressedDepth``), from the bag to the recording
(:func:`child_commands`). Each camera's ``<s>/camera_info`` goes from the bag to the node on
its own name, past the simulator, for the node's ``segmentation/camera_info``.

Four child processes (node, recorder, player, dropout simulator) are started in an order
that loses nothing, each waited for on the ROS graph with a deadline (this process watches
the graph with a node of its own): the node (loading its model), the recorder, the player
(which holds the bag until its subscribers have matched), and last the simulator, whose
schedule starts with it: its subscriptions release the player, so the stream reaches it a
moment after its time 0, well before the first fault. Every child runs in a session of its
own, so Ctrl-C reaches this process only, which stops the children in order: the player
first, the recorder last, so the recorded bag is always closed properly and readable. A
second Ctrl-C (or SIGTERM) while they stop kills those left at once.

DDS stays on loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) on a ``ROS_DOMAIN_ID``
that no other demo or test run on this machine holds, unless one is set, so two demos never
hear each other.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmp_ros.dds import reserve_domain_id
from mmp_ros.modalities import MODALITIES
from mmp_ros.share import share_file

REPO = Path(__file__).resolve().parents[1]  # what the children import: this code
NODE_PARAMS = (share_file('config', 'mmp_segmentation.yaml'),
               share_file('config', 'mmp_demo.yaml'))
SCHEDULES = {False: share_file('config', 'dropout_demo.yaml'),
             True: share_file('config', 'dropout_demo_quick.yaml')}
OUTPUT_TOPICS = (
    '/segmentation/labels', '/segmentation/color', '/segmentation/overlay',
    '/segmentation/confidence', '/segmentation/camera_info', '/segmentation/label_info',
    '/diagnostics',
)
EVENTS_TOPIC = '/dropout/events'
GROUND_TRUTH_TOPIC = '/ground_truth/labels'
START_DEADLINE_S = 90.0  # node start includes loading the model: slow on a busy machine
TAIL_S = 3.0  # clean frames after the last recovery
LEAD_S = 2.0  # covers a late start of the player against the simulator's schedule
STOP_TIMEOUT_S = 15.0
# How the cameras travel, as `mmp_ros synth-bag --transport` records them: raw
# sensor_msgs/Image, or image_transport's compressed topics (depth on compressedDepth).
TRANSPORTS = ('raw', 'compressed')
# `mmp_ros synth-bag --rgb-format` (the compressed transport's for RGB; default jpeg),
# `--depth-format` (compressedDepth's; default png) and `--depth-encoding` (default 16UC1).
RGB_FORMATS = ('jpeg', 'png')
DEPTH_FORMATS = ('png', 'rvl')
DEPTH_ENCODINGS = ('16UC1', '32FC1')


def sensor_transports(transport: str = 'raw') -> dict[str, str]:
    """The image_transport transport of each sensor's topics in a demo over ``transport``:
    every one raw, or ``compressed`` with depth on ``compressedDepth``, as ``mmp_ros
    synth-bag --transport compressed`` records them; the node's and the simulator's
    ``sensors.<m>.transport``."""
    return {m: 'compressedDepth' if m == 'depth' and transport != 'raw' else transport
            for m in MODALITIES}


def compressed_format(modality: str, rgb_format: str | None = None,
                      depth_format: str | None = None) -> str:
    """The ``compress_image`` format of a sensor's frames over the compressed transport, as
    ``mmp_ros synth-bag`` records them: RGB ``rgb_format`` (jpeg), depth ``compressedDepth``
    ``depth_format`` (png), polarization and thermal png."""
    return {'rgb': rgb_format or RGB_FORMATS[0],
            'depth': f'compressedDepth {depth_format or DEPTH_FORMATS[0]}'}.get(modality, 'png')


def format_options_problem(transport: str, rgb_format: str | None,
                           depth_format: str | None) -> str:
    """Why ``--rgb-format`` / ``--depth-format`` cannot go with ``transport`` ('' if they can):
    raw images are not compressed."""
    for option, value in (('--rgb-format', rgb_format), ('--depth-format', depth_format)):
        if value is not None and transport == 'raw':
            return f'{option} {value}: only with --transport compressed (raw images are not ' \
                'compressed)'
    return ''


def camera_topics(base: str, transport: str = 'raw') -> dict[str, str]:
    """Each sensor's topic under ``base`` (``'/{m}/image'``) through its transport:
    ``base`` itself for raw, else ``base/<transport>`` (image_transport's naming)."""
    return {m: base.format(m=m) + ('' if t == 'raw' else f'/{t}')
            for m, t in sensor_transports(transport).items()}


def input_topics(transport: str = 'raw') -> tuple[str, ...]:
    """What the node subscribes to (and the demo records: the inputs it received)."""
    return tuple(camera_topics('/{m}/image', transport).values())


def recorded_topics(transport: str = 'raw') -> tuple[str, ...]:
    return (*OUTPUT_TOPICS, EVENTS_TOPIC, GROUND_TRUTH_TOPIC, *input_topics(transport))


class DemoError(Exception):
    """The demo cannot go on; the message says what is wrong and what to do."""


class InterruptError(Exception):
    """Ctrl-C or SIGTERM. Not a KeyboardInterrupt: ``init_ros`` swallows that one."""


class KillError(Exception):
    """Ctrl-C or SIGTERM again while the children were stopped: those left were killed."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum, _frame) -> None:
    # Until stop_children arms its own handler: a second signal on the way there would leave
    # run_demo's finally, and the children (in sessions of their own) would run on.
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise InterruptError(signal.Signals(signum).name)


def start_child(children: list[Child], *args) -> Child:
    """``Child(*args)``, appended to ``children`` with Ctrl-C and SIGTERM held back until it
    is: one raised between the child's start and the append left a child that was never
    stopped (a recorder waiting for its topics forever)."""
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: pending.append(signum))
                for s in STOP_SIGNALS}
    try:
        children.append(Child(*args))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending:
        _interrupt(pending[0], None)
    return children[-1]


@dataclass(frozen=True)
class DemoPaths:
    out: Path

    @property
    def synth_bag(self) -> Path:
        return self.out / 'synth_bag'

    @property
    def run_bag(self) -> Path:
        return self.out / 'run_bag'

    @property
    def report(self) -> Path:
        return self.out / 'report'

    @property
    def logs(self) -> Path:
        return self.out / 'logs'

    def clear(self) -> None:
        """Remove what an earlier demo left in ``out`` (only the demo's own entries)."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            for path in (self.synth_bag, self.run_bag, self.report, self.logs):
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
            self.logs.mkdir()
        except OSError as exc:
            raise DemoError(f'--out {self.out}: {exc.strerror or exc}: the demo writes its '
                            'bags, logs and report in this folder') from None


def resolve_model(model: str | None) -> Path:
    """``--model``, else the node's default (the one ONNX file in ``models/``)."""
    if model:
        path = Path(model)
        if not path.is_file():
            raise DemoError(f'--model {path}: no such file (an exported ONNX model)')
        return path.resolve()
    from mmp_ros.ros.segmentation_node import NodeStartError, default_model_path

    try:
        return default_model_path()
    except NodeStartError as exc:
        raise DemoError(
            f'no model to run: {exc}. The demo uses the node\'s default model, the one .onnx '
            'file in the package\'s models/ folder; put the shipped model there, or pass '
            '--model PATH (a model of your own: `mmp_ros export --checkpoint CHECKPOINT --out '
            'MODEL.onnx`, then --model MODEL.onnx). For a smoke run without a '
            'trained model: python -c "from mmp_ros.inference.testing import '
            "export_tiny_random_model as e; e('out/tiny.onnx', input_size=(64, 80), "
            'num_classes=14)" and --model out/tiny.onnx (its segmentation is noise).'
        ) from exc


def evaluate_command(paths: DemoPaths) -> str:
    """The ``mmp_ros evaluate`` command that scores ``paths.run_bag`` as the demo itself does:
    the node's parameter files (for the detection bounds) and scene cuts set apart."""
    return shlex.join(['mmp_ros', 'evaluate', str(paths.run_bag), '--out', str(paths.report),
                       '--params', *map(str, NODE_PARAMS), '--settle-after-cut', 'auto'])


def demo_environment() -> dict[str, str]:
    """Loopback-only DDS on a domain this process holds (unless set: :func:`reserve_domain_id`),
    and this checkout importable."""
    env = dict(os.environ)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    reserve_domain_id(env)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO), env.get('PYTHONPATH')) if p)
    env.setdefault('PYTHONUNBUFFERED', '1')
    return env


class Child:
    """One child process in a session of its own, its output in ``logs/<name>.log``, in this
    process's working directory: the paths it is given (``--out``, ``--schedule``) may be
    relative to it."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = logs / f'{name}.log'
        self._log = open(self.log_path, 'wb')  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def check_alive(self) -> None:
        if not self.running():
            raise DemoError(f'{self.name} exited with status {self.process.returncode}; '
                            f'its log ({self.log_path}) ends with:\n{self.tail()}')

    def tail(self, lines: int = 15) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors='replace').splitlines()
        return '\n'.join(text[-lines:])

    def kill(self) -> None:
        """SIGKILL, now."""
        if self.running():
            self.process.kill()
        self.process.wait()
        self._log.close()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGINT (what Ctrl-C would send), then SIGTERM, then SIGKILL, each with a wait."""
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                if not self.running():
                    break
                self.process.send_signal(sig)
                try:
                    self.process.wait(timeout_s if sig != signal.SIGKILL else None)
                except subprocess.TimeoutExpired:
                    continue
        finally:
            self._log.close()
        return self.process.returncode


def stop_children(children: list[Child], interrupted: bool, recording: Path,
                  timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop the children in order: the player first (no new input), the recorder last (it
    takes what already arrived, and closes ``recording``). Returns whether a Ctrl-C or
    SIGTERM came, before (``interrupted``) or meanwhile. One that comes while the demo was
    already interrupted kills the children left at once (KillError): a child stuck in its
    shutdown held the demo for ``2 * timeout_s``, and only SIGKILL cut that short."""
    requests = ['before'] if interrupted else []

    def stop_request(signum: int, _frame) -> None:
        requests.append(signal.Signals(signum).name)
        if len(requests) > 1:
            raise KillError(requests[-1])

    previous = {s: signal.signal(s, stop_request) for s in STOP_SIGNALS}
    try:
        for name in ('replay', 'dropout', 'node', 'record'):
            for child in children:
                if child.name == name:
                    status = child.stop(timeout_s)
                    if status not in (0, -signal.SIGINT) and not requests:
                        print(f'[demo] {name} ended with status {status} (log '
                              f'{child.log_path})')
    except KillError as exc:
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        left = [c for c in children if c.running()]
        for child in children:
            child.kill()
        message = (f'{exc} again while the processes stopped: killed '
                   f'{", ".join(c.name for c in left) or "none (all had stopped)"}')
        if any(c.name == 'record' for c in left):
            message += (f'; the recording was not closed: mmp_ros recover-bag {recording} OUT '
                        'gets back all but its last second')
        raise KillError(message) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return bool(requests)


def wait_for(description: str, condition: Callable[[], bool], deadline_s: float,
             children: list[Child], spin: Callable[[], None]) -> float:
    """Spin until ``condition`` holds; DemoError past the deadline or if a child died."""
    started = time.monotonic()
    while not condition():
        for child in children:
            child.check_alive()
        if time.monotonic() - started > deadline_s:
            raise DemoError(f'gave up after {deadline_s:.0f} s waiting for {description}; '
                            'see the logs in ' + str(children[0].log_path.parent))
        spin()
    return time.monotonic() - started


def mmp_ros(*args: str) -> list[str]:
    return [sys.executable, '-m', 'mmp_ros', *args]


def child_commands(paths: DemoPaths, schedule: Path, model: Path,
                   transport: str = 'raw') -> dict[str, list[str]]:
    """The argv of each child, by name (``node``, ``record``, ``replay``, ``dropout``), for
    a demo whose cameras travel through ``transport`` (:data:`TRANSPORTS`): the player
    publishes the bag's camera topics on ``/source/...``, the simulator and the node read and
    write each sensor through its transport (:func:`sensor_transports`), and the recorder
    takes the node's inputs on the topics it read them from."""
    transports = sensor_transports(transport)
    params = [a for p in NODE_PARAMS for a in ('--params-file', str(p))]
    if transport != 'raw':
        params += [a for m, t in transports.items() for a in ('-p', f'sensors.{m}.transport:={t}')]
    sources = camera_topics('/source/{m}/image', transport)
    remaps = [a for m, topic in camera_topics('/{m}/image', transport).items()
              for a in ('--remap', f'{topic}:={sources[m]}')]
    dropout = ['dropout', '--schedule', str(schedule)]
    if transport != 'raw':
        dropout += ['--transport', *(f'{m}={t}' for m, t in transports.items())]
    return {
        'node': mmp_ros('run', '--ros-args', *params, '-p', f'model_file_path:={model}'),
        'record': mmp_ros('record', str(paths.run_bag), '--topics',
                          *recorded_topics(transport)),
        'replay': mmp_ros('replay', str(paths.synth_bag), *remaps, '--restamp',
                          '--wait-for-subscribers', str(START_DEADLINE_S), '--delay', '0.3'),
        'dropout': mmp_ros(*dropout),
    }


def schedule_span(path: Path) -> tuple[float, float]:
    """(first fault start, last fault end) of a dropout schedule, in seconds."""
    from mmp_ros.dropout.schedule import Schedule

    schedule = Schedule.from_yaml(path)
    if not schedule.faults:
        raise DemoError(f'{path}: the schedule has no faults; the demo shows sensors failing '
                        'and recovering (config/dropout_demo.yaml)')
    return (min(f.start_s for f in schedule.faults), max(f.end_s for f in schedule.faults))


def synth_bag_config(args: argparse.Namespace, duration_s: float):
    """The synthetic bag's ``SynthBagConfig`` from the demo's options; DemoError naming the
    option where it cannot be made."""
    from training.data.synth_bag import SynthBagConfig

    if problem := format_options_problem(args.transport, args.rgb_format, args.depth_format):
        raise DemoError(problem)
    try:
        return SynthBagConfig(duration_s=duration_s, scene_seconds=args.scene_seconds,
                              size=tuple(args.size), transport=args.transport,
                              rgb_format=args.rgb_format, depth_format=args.depth_format,
                              depth_encoding=args.depth_encoding)
    except ValueError as exc:
        raise DemoError(f'--size/--scene-seconds: {exc}') from None


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    paths = DemoPaths(Path(args.out))
    schedule = Path(args.schedule) if args.schedule else SCHEDULES[args.quick]
    model = resolve_model(args.model)
    first_fault, last_end = schedule_span(schedule)
    if first_fault < 2.0:
        raise DemoError(f'{schedule}: the first fault starts at {first_fault:g} s; the demo '
                        'needs 2 s after the simulator starts to start the player')
    from training.data.synth_bag import write_synth_bag

    bag_seconds = last_end + TAIL_S + LEAD_S
    bag_config = synth_bag_config(args, bag_seconds)  # before an earlier demo is removed
    if args.strip is not None:  # a folder, or a path ending with a slash: after the whole demo
        from mmp_ros.errors import OutputFolderError, output_file

        try:
            output_file(args.strip, '--strip', 'strip.png')
        except OutputFolderError as exc:
            raise DemoError(str(exc)) from None
    paths.clear()
    env = demo_environment()
    os.environ.update({k: env[k] for k in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_DOMAIN_ID')})

    print(f'[demo] model {model}; schedule {schedule.name}; ROS_DOMAIN_ID '
          f'{env["ROS_DOMAIN_ID"]}, loopback only')
    compressed = (f', image_transport compressed topics (RGB {bag_config.compression("rgb")}'
                  f', depth {bag_config.compression("depth")})'
                  if args.transport != 'raw' else '')
    print(f'[demo] rendering a {bag_seconds:.0f} s synthetic bag ({args.size[0]}x{args.size[1]}'
          f', depth {args.depth_encoding}{compressed})')
    write_synth_bag(paths.synth_bag, bag_config)

    children: list[Child] = []
    timeline: dict[str, float] = {}
    interrupted = False
    try:
        _run_processes(paths, schedule, model, env, children, timeline, args.transport)
    except InterruptError as exc:
        interrupted = True
        print(f'\n[demo] {exc}: stopping the processes, keeping the recording')
    finally:
        interrupted = stop_children(children, interrupted, paths.run_bag)
    record = next((c for c in children if c.name == 'record'), None)
    if record is None or not paths.run_bag.exists():
        if interrupted:  # before the recorder had created its bag: a stop, not a failure
            print('[demo] stopped before anything was recorded')
            return 130
        raise DemoError('nothing was recorded')
    if interrupted:
        print(f'[demo] the recording so far is in {paths.run_bag} (closed, readable); '
              f'evaluate it as the demo does with: {evaluate_command(paths)}')
        return 130
    from mmp_ros.evaluation.report import evaluate_run, write_report
    from mmp_ros.inference import read_model_metadata

    print(f'[demo] evaluating {paths.run_bag}')
    result = evaluate_run(paths.run_bag, node_params=NODE_PARAMS, settle_s='auto')
    report = write_report(result, paths.report, strip=args.strip)
    print(result.summary_table())
    print(model_comparison(result.evaluation, read_model_metadata(model).metrics))
    late = timeline['replay_started'] - timeline['dropout_started']
    if late > first_fault - 1.0:
        print(f'[demo] warning: the player started {late:.1f} s after the simulator, less than '
              f'1 s before the first fault ({first_fault:g} s): the machine is slow or busy')
    print(f'[demo] report: {report}; wall time {time.monotonic() - started:.0f} s')
    return 0


def comparison_rows(phases: Sequence[tuple[str, float | None, Counter]],
                    subset_miou: Mapping[str, float]) -> list[list[str]]:
    """Per single-sensor-failure phase: its mIoU beside the model's own for that subset.

    ``phases`` are ``(name, mIoU %, modality sets used -> frames)``. A phase counts when it
    is a fault phase whose most used set lacks exactly one of the four modalities; its
    figure to compare with is ``subset_miou`` of that set (the model's metadata metrics).
    The stream and the offline evaluation differ (a few held scenes against hundreds, the
    camera size, the mosaic), so the difference says how far the live figure is off, not
    that either is wrong.
    """
    rows = []
    for name, miou, sets in phases:
        if name == 'clean' or not sets:
            continue
        used, _ = sets.most_common(1)[0]
        if len(used.split('+')) != len(MODALITIES) - 1:
            continue
        expected = subset_miou.get(used)
        measured = '—' if miou is None else f'{miou:.1f}'
        rows.append([name, used, measured,
                     '—' if expected is None else f'{expected:.1f}',
                     '—' if miou is None or expected is None else f'{miou - expected:+.1f}'])
    return rows


def reference_figures(metrics: Mapping[str, object]) -> tuple[Mapping[str, float], str]:
    """The model's own per-subset mIoU and where it comes from: the robustness benchmark's
    test split (``metrics['test_subsets']``, written by ``scripts/ship_model.py``), else
    training's validation figures (``'val_subsets'``); empty when it carries neither. A model
    exported at another input size than it was measured at says so in ``source``."""
    measured_at = metrics.get('measured_at_input_size')
    at = (f' ({measured_at[0]}x{measured_at[1]} input)'
          if isinstance(measured_at, Sequence) and len(measured_at) == 2 else '')
    for key, source in (('test_subsets', 'benchmark test-split'),
                        ('val_subsets', 'validation')):
        subset_miou = metrics.get(key)
        if isinstance(subset_miou, Mapping) and subset_miou:
            return subset_miou, source + at
    return {}, ''


def model_comparison(evaluation, metrics: Mapping[str, object]) -> str:
    """The single-failure phases of a demo run against the model's own per-subset figures
    (:func:`reference_figures`), as a text table."""
    subset_miou, source = reference_figures(metrics)
    if not subset_miou:
        return '[demo] the model records no per-subset mIoU to compare the phases with'
    phases = []
    for phase in evaluation.phases:
        acc = evaluation.per_phase[phase.number]
        phases.append((phase.name, acc.scores.miou if acc.scores else None,
                       acc.modality_sets))
    rows = comparison_rows(phases, subset_miou)
    header = ['phase', 'modalities used', 'mIoU %', f'{source} mIoU %', 'difference']
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ['', f"single-sensor failures against the model's own {source} figures:"]
    for row in [header, ['-' * w for w in widths], *rows]:
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        lines.append('  '.join(cells).rstrip())
    return '\n'.join(lines)


def _run_processes(paths: DemoPaths, schedule: Path, model: Path, env: dict[str, str],
                   children: list[Child], timeline: dict[str, float],
                   transport: str = 'raw') -> None:
    from mmp_ros.ros.context import init_ros

    commands = child_commands(paths, schedule, model, transport)
    inputs = input_topics(transport)
    sources = tuple(camera_topics('/source/{m}/image', transport).values())

    with init_ros([], ros_signals=False):
        from rclpy.node import Node

        watcher = Node('mmp_demo_watcher')
        try:
            import rclpy

            def spin() -> None:
                rclpy.spin_once(watcher, timeout_sec=0.1)

            def subscribed(topic: str, node_name: str) -> bool:
                return any(i.node_name == node_name
                           for i in watcher.get_subscriptions_info_by_topic(topic))

            start_child(children, 'node', commands['node'], env, paths.logs)
            start_child(children, 'record', commands['record'], env, paths.logs)
            took = wait_for(
                'the node to load its model and subscribe',
                lambda: all(subscribed(t, 'mmp_segmentation') for t in inputs),
                START_DEADLINE_S, children, spin)
            print(f'[demo] node ready after {took:.1f} s')
            wait_for('the recorder to subscribe to the node\'s outputs',
                     lambda: all(subscribed(t, 'mmp_ros_record')
                                 for t in ('/segmentation/labels', '/diagnostics')),
                     START_DEADLINE_S, children, spin)
            # The player first: it waits for its subscribers (the simulator and the recorder)
            # and plays as soon as they match, so the simulator's schedule (time 0 = its own
            # start) meets a live stream a moment after it starts: nothing else to wait for.
            replay = start_child(children, 'replay', commands['replay'], env, paths.logs)
            wait_for('the player to open the bag',
                     lambda: all(watcher.get_publishers_info_by_topic(t) for t in sources),
                     START_DEADLINE_S, children, spin)
            start_child(children, 'dropout', commands['dropout'], env, paths.logs)
            timeline['dropout_started'] = time.monotonic()
            took = wait_for(
                'the dropout simulator and its recording',
                lambda: all(subscribed(t, 'dropout') for t in sources)
                and all(subscribed(t, 'mmp_ros_record') for t in (EVENTS_TOPIC, *inputs)),
                START_DEADLINE_S, children, spin)
            timeline['replay_started'] = time.monotonic()
            print(f'[demo] dropout simulator ready after {took:.1f} s; playing the bag')
            while replay.running():
                for child in children:
                    if child is not replay:
                        child.check_alive()
                spin()
            if replay.process.returncode != 0:
                raise DemoError(f'replay failed with status {replay.process.returncode}:\n'
                                f'{replay.tail()}')
            # The node's last inferences and diagnostics reach the recorder.
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                spin()
        finally:
            watcher.destroy_node()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', default='out/demo', help='output folder (default out/demo)')
    parser.add_argument('--model', help='exported ONNX model (default: the node\'s default, '
                        'the one .onnx file in models/)')
    schedules = parser.add_mutually_exclusive_group()
    schedules.add_argument('--quick', action='store_true',
                           help='the 21 s schedule (config/dropout_demo_quick.yaml), about 45 s')
    schedules.add_argument('--schedule', help='another dropout schedule (first fault >= 2 s)')
    parser.add_argument('--size', type=int, nargs=2, default=(128, 160), metavar=('H', 'W'),
                        help="image size of the synthetic cameras (default: the shipped "
                        "model's input size)")
    parser.add_argument('--scene-seconds', type=float, default=1.0,
                        help='how long the synthetic camera holds each scene (default 1: a '
                        '20 s phase shows twenty scenes)')
    parser.add_argument('--transport', choices=TRANSPORTS, default='raw',
                        help='compressed: the cameras as image_transport publishes them, from '
                        'the bag (mmp_ros synth-bag --transport compressed) through the '
                        'simulator to the node and the recording: /<m>/image/compressed '
                        '(RGB JPEG, polarization and thermal PNG) and '
                        '/depth/image/compressedDepth (default raw)')
    parser.add_argument('--rgb-format', choices=RGB_FORMATS, default=None,
                        help='with --transport compressed: RGB as jpeg (default) or png '
                        '(lossless), as mmp_ros synth-bag --rgb-format')
    parser.add_argument('--depth-encoding', choices=DEPTH_ENCODINGS, default='16UC1',
                        help='depth as 16UC1 (millimetres, 0: no reading; default) or 32FC1 '
                        '(metres, NaN: no reading), as mmp_ros synth-bag --depth-encoding; '
                        'over --transport compressed both travel as compressedDepth '
                        '(--depth-format)')
    parser.add_argument('--depth-format', choices=DEPTH_FORMATS, default=None,
                        help='with --transport compressed: depth as compressedDepth png '
                        '(default) or rvl, as mmp_ros synth-bag --depth-format')
    # text, not a Path: Path('img/') is 'img', and the strip became a file of that name
    parser.add_argument('--strip', default=None,
                        help='also write the image strip here (e.g. docs/img/demo_strip.png)')


def run(args: argparse.Namespace) -> int:
    from mmp_ros.bags.errors import BagError
    from mmp_ros.dropout.schedule import ScheduleError

    previous = {s: signal.signal(s, _interrupt) for s in STOP_SIGNALS}
    try:
        return run_demo(args)
    except (DemoError, BagError, ScheduleError) as exc:
        print(f'mmp_ros demo: {exc}', file=sys.stderr)
        return 2
    except InterruptError as exc:  # outside the processes' lifetime: nothing to keep
        print(f'\n[demo] {exc}: stopped', file=sys.stderr)
        return 130
    except KillError as exc:
        print(f'[demo] {exc}', file=sys.stderr)
        return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m mmp_ros.demo',
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
