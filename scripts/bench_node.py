"""Benchmark the segmentation node end to end across processes (figures in docs/performance.md).

Three processes on loopback: the synthetic four-stream source (640x480 RGB, depth, a
polarization mosaic that decodes to 640x480, thermal; 30 Hz each), the node (ONNX Runtime
on the CPU by default), and this probe, which subscribes to the labels and /diagnostics.

Measured:
- latency from the anchor (RGB) stamp to the labels' arrival here, p50 / p95, and the
  node's own stamp-to-publication figures from its diagnostics;
- sustained output rate and how many anchor frames the node dropped (by design: it takes
  the latest bundle and never queues);
- CPU: the node process's share of one core, and the share spent in sensor callbacks;
- stale detection: from a stream's last message (as seen here) to its ERROR status,
  repeated ``--stale-trials`` times on the thermal stream.

``--transport compressed`` sends the streams as image_transport does (RGB ``--rgb-format``,
jpeg by default; polarization and thermal PNG; depth ``compressedDepth`` ``--depth-format``,
png by default) and subscribes the node with the matching transports, so that the figures
include decoding them.

Usage::

    python scripts/bench_node.py --model models/<model>.onnx --seconds 20 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the package of this checkout, as its children get it

from mmp_ros.cli import non_negative_int, positive_float, positive_int  # noqa: E402
from mmp_ros.dds import reserve_domain_id  # noqa: E402
from mmp_ros.demo import (  # noqa: E402
    DEPTH_FORMATS,
    RGB_FORMATS,
    TRANSPORTS,
    format_options_problem,
    sensor_transports,
)
from mmp_ros.errors import InputError, output_file  # noqa: E402

MODALITIES = ('rgb', 'depth', 'polarization', 'thermal')


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('AMENT_PREFIX_PATH', sys.prefix)
    env['PYTHONUNBUFFERED'] = '1'
    return env


def export_random_model(size: str, input_size: tuple[int, int], path: Path) -> Path:
    """The real architecture at ``size`` with random weights, exported: for timing only."""
    import torch

    from mmp_ros.inference.testing import tiny_metadata
    from mmp_ros.model import ModelConfig, build_model
    from training.export import export_onnx

    metadata = tiny_metadata(input_size=input_size, num_classes=8)
    config = ModelConfig(modalities=metadata.modalities, num_classes=metadata.num_classes,
                         size=size, method=metadata.method)
    torch.manual_seed(0)
    return export_onnx(build_model(config).eval(), metadata, path, verify=False)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def check_running(processes: dict[str, subprocess.Popen]) -> None:
    """Stop when a child process has exited: waiting for what it would publish only times
    out (the node refuses parameters or a model file at start, then exits)."""
    for name, process in processes.items():
        if process.poll() is not None:
            raise SystemExit(f'bench_node: the {name} exited with status {process.returncode} '
                             '(its message is above)')


def transport_figure(args: argparse.Namespace) -> str:
    if args.transport == 'raw':
        return 'raw'
    return (f'compressed: rgb {args.rgb_format}, depth compressedDepth {args.depth_format} '
            '(32FC1), polarization and thermal png')


def stale_figures(detections_ms: list[float], timeout_s: float) -> dict:
    """The stale detection times of the trials, and their maximum when there were any."""
    figures: dict = {'stale_detection_ms': [round(d, 1) for d in detections_ms]}
    if detections_ms:
        figures['stale_detection_ms_max'] = round(max(detections_ms), 1)
    return {**figures, 'timeout_s': timeout_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', help='ONNX model (default: the shipped one)')
    parser.add_argument('--random-model', metavar='SIZE',
                        help='instead of --model: export the architecture at this size '
                        '(tiny, base) with random weights, for timing')
    parser.add_argument('--input-size', type=positive_int, nargs=2, default=(240, 320),
                        metavar=('H', 'W'), help='input size of the --random-model')
    parser.add_argument('--backend', default='onnxruntime')
    parser.add_argument('--width', type=positive_int, default=640)
    parser.add_argument('--height', type=positive_int, default=480)
    parser.add_argument('--rate', type=positive_float, default=30.0)
    parser.add_argument('--seconds', type=positive_float, default=20.0,
                        help='measurement window')
    parser.add_argument('--timeout-s', type=positive_float, default=0.5,
                        help="sensors' timeout_s")
    parser.add_argument('--stale-trials', type=non_negative_int, default=5,
                        help='0: no stale detection measured')
    parser.add_argument('--qos-depth', type=positive_int,
                        help="inputs' queue depth (default: the node's)")
    parser.add_argument('--transport', choices=TRANSPORTS, default='raw',
                        help='compressed: the streams as image_transport sends them, the node '
                        'subscribed through the matching transports (module docstring)')
    parser.add_argument('--rgb-format', choices=RGB_FORMATS,
                        help='with --transport compressed: jpeg (default) or png')
    parser.add_argument('--depth-format', choices=DEPTH_FORMATS,
                        help='with --transport compressed: compressedDepth png (default) or rvl')
    # text, not a Path: output_file refuses a path ending with a slash (a Path drops it)
    parser.add_argument('--out', help='write the figures as JSON here')
    args = parser.parse_args(argv)
    if problem := format_options_problem(args.transport, args.rgb_format, args.depth_format):
        parser.error(problem)
    args.rgb_format = args.rgb_format or RGB_FORMATS[0]
    args.depth_format = args.depth_format or DEPTH_FORMATS[0]
    if args.random_model and args.model:
        parser.error('--model or --random-model, not both')
    if args.model and not Path(args.model).is_file():
        parser.error(f'--model {args.model}: no such file')
    if args.out:  # its folder now: not after the measurements
        try:
            args.out = output_file(args.out, '--out')
        except InputError as exc:
            parser.error(str(exc))
    # The --random-model's export: removed when the benchmark ends, whichever way it ends.
    with tempfile.TemporaryDirectory(prefix='bench_node_') as scratch:
        return bench(parser, args, Path(scratch))


def bench(parser: argparse.ArgumentParser, args: argparse.Namespace, scratch: Path) -> int:
    """The benchmark of ``main``'s checked ``args``; ``scratch``: a folder for the
    --random-model's export."""
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    reserve_domain_id()
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    from mmp_ros.ros.context import init_ros
    from mmp_ros.ros.qos import output_qos
    from mmp_ros.ros.segmentation_node import default_model_path

    if args.random_model:
        try:
            model = export_random_model(
                args.random_model, tuple(args.input_size),
                scratch / f'random_{args.random_model}.onnx',
            )
        except InputError as exc:  # an unknown size: before any process starts
            parser.error(f'--random-model: {exc}')
    else:
        model = Path(args.model) if args.model else default_model_path()
    source = subprocess.Popen(
        [sys.executable, '-m', 'mmp_ros.ros.synthetic_streams', '--width', str(args.width),
         '--height', str(args.height), '--rate', str(args.rate), '--transport', args.transport,
         '--rgb-format', args.rgb_format, '--depth-format', args.depth_format],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(), cwd=REPO,
    )
    sensor_params = [
        arg for m in MODALITIES for arg in (
            '-p', f'sensors.{m}.expected_rate_hz:={args.rate}',
            '-p', f'sensors.{m}.timeout_s:={args.timeout_s}',
            '-p', f'sensors.{m}.transport:={sensor_transports(args.transport)[m]}',
        ) + (('-p', f'sensors.{m}.qos_depth:={args.qos_depth}') if args.qos_depth else ())
    ]
    node = subprocess.Popen(
        [sys.executable, '-m', 'mmp_ros.ros.segmentation_node', '--ros-args',
         '-p', f'model_file_path:={model}', '-p', f'backend:={args.backend}',
         '-p', 'publish_color:=false', '-p', 'publish_overlay:=false',
         '-p', 'publish_confidence:=false', *sensor_params],
        env=child_env(), cwd=REPO,
    )
    acks: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [acks.put(line.strip()) for line in source.stdout], daemon=True
    ).start()

    def command(line: str) -> None:
        source.stdin.write(line + '\n')
        source.stdin.flush()
        deadline = time.monotonic() + 30
        while acks.get(timeout=max(0.1, deadline - time.monotonic())) != f'ack {line}':
            pass

    class Probe(Node):
        def __init__(self) -> None:
            super().__init__('mmp_bench_probe')
            self.labels: list[tuple[float, float]] = []  # (arrival wall time, latency s)
            self.diagnostics: list[tuple[float, dict]] = []
            self.last_thermal = 0.0
            self.create_subscription(Image, 'segmentation/labels', self._on_labels, output_qos())
            self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag,
                                     output_qos(10))
            self.create_subscription(
                *((Image, 'thermal/image') if args.transport == 'raw' else
                  (CompressedImage, 'thermal/image/compressed')),
                self._on_thermal, qos_profile_sensor_data)

        def _on_labels(self, msg: Image) -> None:
            now = self.get_clock().now().nanoseconds * 1e-9
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            self.labels.append((time.monotonic(), now - stamp))

        def _on_thermal(self, msg: Image | CompressedImage) -> None:
            self.last_thermal = time.monotonic()

        def _on_diag(self, msg: DiagnosticArray) -> None:
            self.diagnostics.append((time.monotonic(), {
                s.name.removeprefix('mmp_segmentation: '): {
                    'level': s.level[0], **{kv.key: kv.value for kv in s.values}
                } for s in msg.status
            }))

        def latest(self, name: str) -> dict:
            for _, statuses in reversed(self.diagnostics):
                if name in statuses:
                    return statuses[name]
            return {}

        def spin_until(self, condition, timeout_s: float, what: str) -> None:
            deadline = time.monotonic() + timeout_s
            while not condition():
                check_running({'node': node, 'synthetic source': source})
                if time.monotonic() > deadline:
                    raise TimeoutError(f'no {what} within {timeout_s} s')
                rclpy.spin_once(self, timeout_sec=0.02)

    results: dict = {}
    try:
        with init_ros(['bench_node']):
            probe = Probe()
            try:
                probe.spin_until(
                    lambda: all(probe.latest(m).get('state') == 'OK' for m in MODALITIES)
                    and len(probe.labels) > 30, 120.0, 'healthy output',
                )
                start_model = probe.latest('model')
                load_before = round(os.getloadavg()[0], 2)
                cpu0, wall0 = cpu_seconds(node.pid), time.monotonic()
                first = len(probe.labels)
                probe.spin_until(lambda: time.monotonic() - wall0 >= args.seconds,
                                 args.seconds + 5, 'the end of the window')
                cpu1, wall1 = cpu_seconds(node.pid), time.monotonic()
                window = probe.labels[first:]
                latency = np.array([lat for _, lat in window]) * 1e3
                end_model = probe.latest('model')
                anchors = int(end_model['anchor_frames']) - int(start_model['anchor_frames'])
                runs = int(end_model['inferences']) - int(start_model['inferences'])
                results.update({
                    'model': f'random-weight {args.random_model} {args.input_size[0]}x'
                    f'{args.input_size[1]}' if args.random_model else str(model),
                    'backend': end_model.get('backend'),
                    'device': end_model.get('device'),
                    'streams': f'4 x {args.width}x{args.height} at {args.rate:g} Hz',
                    'transport': transport_figure(args),
                    'qos_depth': args.qos_depth or 'node default',
                    'load_average_1min_before': load_before,
                    'window_s': round(wall1 - wall0, 2),
                    'output_rate_hz': round(len(window) / (wall1 - wall0), 2),
                    'anchor_frames': anchors,
                    'inferences': runs,
                    # Counters are read a moment apart: a run in flight can make this -1.
                    'anchor_frames_dropped': max(0, anchors - runs),
                    'latency_to_probe_ms_p50': round(float(np.percentile(latency, 50)), 1),
                    'latency_to_probe_ms_p95': round(float(np.percentile(latency, 95)), 1),
                    'node_latency_ms_p50': float(end_model['latency_p50_ms']),
                    'node_latency_ms_p95': float(end_model['latency_p95_ms']),
                    'node_cpu_share_of_one_core': round((cpu1 - cpu0) / (wall1 - wall0), 3),
                    'callback_cpu_share_of_one_core': float(end_model['callback_cpu_share']),
                })
                detections = []
                for _ in range(args.stale_trials):
                    command('thermal stop')
                    probe.spin_until(lambda: time.monotonic() - probe.last_thermal > 0.2, 10,
                                     'thermal silence')
                    last = probe.last_thermal
                    probe.spin_until(
                        lambda last=last: any(
                            t > last and s.get('thermal', {}).get('state') == 'STALE'
                            for t, s in probe.diagnostics
                        ), 10, 'thermal STALE',
                    )
                    detected = next(t for t, s in probe.diagnostics
                                    if t > last and s.get('thermal', {}).get('state') == 'STALE')
                    detections.append((detected - last) * 1e3)
                    command('thermal ok')
                    probe.spin_until(lambda: probe.latest('thermal').get('state') == 'OK', 20,
                                     'thermal OK')
                results.update(stale_figures(detections, args.timeout_s))
                results['load_average_1min_after'] = round(os.getloadavg()[0], 2)
                results['cpu_cores'] = os.cpu_count()
            finally:
                probe.destroy_node()
    finally:
        node.send_signal(signal.SIGINT)
        source.terminate()
        for process in (node, source):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
