"""``mmp_ros bench-backends``: latency, throughput and peak memory of the inference backends.

For each backend × model variant × input size, a fresh child process loads the model,
warms up and times ``backend.infer`` at batch 1 (the node's call, host copies and input
checks included), then reports latency p50/p95, throughput and the process's peak
resident memory (and peak CUDA memory for torch on a GPU). Separate processes keep one
configuration's memory from being charged to the next.

Variants: the model (``mmp``) and, when given, the same architecture trained as
``none``; the ratio of their latencies is the cost of MMP's projection at inference.
Without checkpoints, ``--random-size`` builds random-weight models of a registry size:
latency does not depend on the values of the weights. They are configured as
training/train.py configures a model by default.

Example (the figures in docs/performance.md)::

    python scripts/bench_backends.py --random-size tiny --sizes model,480x640 --threads 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmp_ros.cli import non_negative_int, positive_int
from mmp_ros.errors import InputError, output_file, output_folder

# --- child: one configuration, one process -----------------------------------------------


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc (VmRSS now, VmHWM its peak) in MiB.

    VmHWM belongs to the address space that exec created, so unlike ``ru_maxrss`` it does
    not inherit the parent's high-water mark through fork + exec.
    """
    with open('/proc/self/status') as stream:
        for line in stream:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def _inputs(metadata, input_size, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    height, width = input_size
    inputs = {
        m: rng.standard_normal((1, metadata.input_channels[m], height, width)).astype(np.float32)
        for m in metadata.modalities
    }
    return inputs, np.ones((1, len(metadata.modalities)), np.float32)


def _load(spec: dict):
    """The backend a spec describes; torch takes the checkpoint, the others the ONNX."""
    from dataclasses import replace

    from mmp_ros.inference import create_backend

    if spec['backend'] != 'torch':
        return create_backend(spec['backend'], spec['onnx'], device=spec['device'],
                              threads=spec['threads'], enable_fp16=spec['fp16'])
    from mmp_ros.inference.torch_backend import TorchBackend, load_checkpoint_model, resolve_device

    model, metadata = load_checkpoint_model(spec['checkpoint'], resolve_device(spec['device']))
    metadata = replace(metadata, input_size=tuple(spec['input_size']))
    return TorchBackend(model, metadata, device=spec['device'], enable_fp16=spec['fp16'],
                        threads=spec['threads'], with_logits=False)


def _time_once(backend, inputs, available) -> float:
    start = time.perf_counter()
    backend.infer(inputs, available)
    return (time.perf_counter() - start) * 1e3


def _latency(ms: list[float]) -> dict:
    values = np.asarray(ms)
    return {
        'p50_ms': float(np.percentile(values, 50)),
        'p95_ms': float(np.percentile(values, 95)),
        'mean_ms': float(values.mean()),
        'throughput_fps': float(1e3 / values.mean()),
    }


def run_child(spec: dict) -> dict:
    """One configuration alone in this process: latency and peak memory."""
    rss_start = _status_mib('VmRSS')
    backend = _load(spec)
    inputs, available = _inputs(backend.metadata, backend.metadata.input_size)
    for _ in range(spec['warmup']):
        backend.infer(inputs, available)
    ms = [_time_once(backend, inputs, available) for _ in range(spec['iterations'])]
    result = {
        **spec,
        'describe': backend.describe(),
        **_latency(ms),
        'peak_rss_mib': _status_mib('VmHWM'),
        'rss_before_load_mib': rss_start,
    }
    if 'torch' in sys.modules:
        import torch

        if torch.cuda.is_available() and spec['device'].startswith('cuda'):
            result['peak_cuda_mib'] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run_interleaved(specs: list[dict]) -> list[dict]:
    """Several variants in one process, timed in alternation.

    On a shared machine the load drifts over seconds; alternating call by call (in
    reversed order every other round) exposes every variant to the same drift, so
    their latency ratio stays meaningful where back-to-back runs would not.
    """
    loaded = []
    for spec in specs:
        backend = _load(spec)
        inputs, available = _inputs(backend.metadata, backend.metadata.input_size)
        for _ in range(spec['warmup']):
            backend.infer(inputs, available)
        loaded.append((backend, inputs, available))
    times: list[list[float]] = [[] for _ in specs]
    order = list(range(len(specs)))
    for round_index in range(specs[0]['iterations']):
        for i in order if round_index % 2 == 0 else order[::-1]:
            times[i].append(_time_once(*loaded[i]))
    return [{**spec, **_latency(ms)} for spec, ms in zip(specs, times, strict=True)]


# --- parent: prepare models, run children, report ------------------------------------------


@dataclass
class Variant:
    method: str  # 'mmp' or 'none' (or whatever the checkpoint says)
    checkpoint: Path | None
    onnx: Path | None


def _parse_size(text: str) -> tuple[int, int] | None:
    if text == 'model':
        return None
    height, _, width = text.partition('x')
    return int(height), int(width)


def input_sizes(text: str) -> str:
    """argparse ``type`` of ``--sizes``: 'model' and/or HxW, comma-separated."""
    for item in text.split(','):
        height, sep, width = item.partition('x')
        if item != 'model' and not (sep and height.isdigit() and width.isdigit()
                                    and int(height) > 0 and int(width) > 0):
            raise argparse.ArgumentTypeError(
                f"expected 'model' or HxW (e.g. model,480x640), got {item!r}")
    return text


def _random_checkpoints(args, workdir: Path) -> list[Variant]:
    """Random-weight mmp and none models configured as training/train.py configures them
    by default (model options, input size, the synthetic dataset's classes)."""
    import torch

    from mmp_ros.inference.testing import tiny_metadata
    from mmp_ros.model import ModelConfig, build_model, save_checkpoint
    from training.config import DataConfig, ModelOptions
    from training.data.classes import CLASS_NAMES

    options = ModelOptions()
    input_size = tuple(args.model_input_size or DataConfig().input_size)
    variants = []
    for method in ('mmp', 'none'):
        metadata = tiny_metadata(input_size=input_size, num_classes=len(CLASS_NAMES),
                                 method=method)
        config = ModelConfig(
            modalities=metadata.modalities, num_classes=metadata.num_classes,
            size=args.random_size, method=method, **options.projection(),
        )
        torch.manual_seed(0)
        path = save_checkpoint(workdir / f'random_{args.random_size}_{method}.pt',
                               model=build_model(config), metadata=metadata)
        variants.append(Variant(method, path, None))
    return variants


def _onnx_for(variant: Variant, size: tuple[int, int] | None, workdir: Path,
              opset: int | None) -> Path:
    """The variant's ONNX file: the one given, or exported from its checkpoint at ``size``
    (None: the model's) and ``opset`` (None: the exporter's default)."""
    if size is None and opset is None and variant.onnx is not None:
        return variant.onnx
    if variant.checkpoint is None:
        asked = f'--sizes {size[0]}x{size[1]}' if size else f'--opset {opset}'
        raise SystemExit(f'{asked} needs --checkpoint: the model is re-exported from its '
                         'checkpoint')
    from training.export import DEFAULT_OPSET, ExportError, export_checkpoint

    tag = 'model' if size is None else f'{size[0]}x{size[1]}'
    if opset is not None:
        tag += f'_opset{opset}'
    # Named after the variant and the checkpoint's whole path: by its stem alone, the model's
    # and the baseline's out/*/checkpoint.pt shared one export, and 'none' measured the model.
    source = hashlib.sha1(str(variant.checkpoint.resolve()).encode()).hexdigest()[:8]
    target = workdir / f'{variant.method}_{variant.checkpoint.stem}_{source}_{tag}.onnx'
    # one export per run and size; a --workdir's from a checkpoint since replaced is not reused
    if not target.exists() or target.stat().st_mtime < variant.checkpoint.stat().st_mtime:
        try:
            export_checkpoint(variant.checkpoint, target, input_size=size, verify=False,
                              opset=DEFAULT_OPSET if opset is None else opset)
        except ExportError as exc:
            raise SystemExit(f'mmp_ros bench-backends: {exc}') from None
    return target


def _model_input_size(variant: Variant) -> tuple[int, int]:
    from mmp_ros.inference.onnx_file import read_model_metadata

    if variant.onnx is not None:
        return read_model_metadata(variant.onnx).input_size
    from mmp_ros.model import checkpoint_metadata, read_checkpoint

    return checkpoint_metadata(read_checkpoint(variant.checkpoint), variant.checkpoint).input_size


def _opset(text: str) -> int:
    """argparse ``type`` of ``--opset``: as ``mmp_ros export`` takes it. An opset torch's
    exporter does not write stopped the benchmark at its first export, after the torch
    measurements before it, and after onnxscript's logged tracebacks."""
    from training.export import opset_number  # torch and onnx: only when --opset is given

    return opset_number(text)


def _threads(text: str) -> int:
    """argparse ``type`` of ``--threads``: up to four per CPU core of this machine. A million
    had ONNX Runtime's session creation start a thread pool that never came up."""
    value = positive_int(text)
    most = 4 * (os.cpu_count() or 1)
    if value > most:
        raise argparse.ArgumentTypeError(f'must be at most {most} (4 per CPU core here), '
                                         f'got {value}')
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group('models')
    source.add_argument('--checkpoint', type=Path, help='the model (training checkpoint)')
    source.add_argument('--onnx', type=Path, help='its export (default: exported here)')
    source.add_argument('--baseline-checkpoint', type=Path,
                        help="the same architecture trained as 'none', for MMP's overhead")
    source.add_argument('--random-size', help='no checkpoints: random-weight mmp and none '
                        'models of this registry size (tiny, base)')
    source.add_argument('--model-input-size', nargs=2, type=positive_int, metavar=('H', 'W'),
                        help="input size of the random models (default: training's)")
    parser.add_argument('--backends', default='onnxruntime,torch',
                        help='comma-separated: onnxruntime, torch, tensorrt')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--fp16', action='store_true',
                        help='FP16 (torch autocast on CUDA, TensorRT FP16)')
    parser.add_argument('--threads', type=_threads,
                        help='CPU threads, at most 4 per core (default: runtime default)')
    parser.add_argument('--sizes', type=input_sizes, default='model,480x640',
                        help="input sizes: 'model' and/or HxW, comma-separated")
    parser.add_argument('--warmup', type=non_negative_int, default=5)
    parser.add_argument('--iterations', type=positive_int, default=50)
    parser.add_argument('--opset', type=_opset,
                        help="export every ONNX model at this opset (default: the exporter's, "
                        'and --onnx as given)')
    parser.add_argument('--workdir', type=Path, help='where exports go (default: temporary)')
    # text, not a Path: Path('results/') is 'results', and the results became a file of that name
    parser.add_argument('--json', help='write all results here (a file)')


def _check_backends(backends: list[str]) -> None:
    """Stop before any export or measurement on a backend that cannot run here: a child
    failing half-way through lost the results measured before it."""
    from mmp_ros.core.parameters import BACKENDS

    known = [b for b in BACKENDS if b != 'auto']  # a benchmark measures named backends
    unknown = [b for b in backends if b not in known]
    if unknown:
        raise InputError(f'--backends: unknown {unknown}; choose from {", ".join(known)}')
    if 'tensorrt' in backends:
        from mmp_ros.inference.tensorrt_backend import tensorrt_available

        usable, why = tensorrt_available()
        if not usable:
            raise InputError(f'--backends tensorrt cannot run here: {why}')


def _fp16(backend: str, device: str) -> bool:
    """Whether ``backend`` on ``device`` runs in FP16 when asked: TensorRT, and torch under
    CUDA autocast; ONNX Runtime, and torch on the CPU, run FP32 whatever --fp16 says."""
    return backend == 'tensorrt' or (backend == 'torch' and device.startswith('cuda'))


def _check_models(args: argparse.Namespace) -> None:
    """Stop before any measurement on options that would be ignored, measure nothing, or
    fail at a later size (the sizes measured before it lost)."""
    if args.random_size:
        given = [option for option, value in (
            ('--checkpoint', args.checkpoint), ('--onnx', args.onnx),
            ('--baseline-checkpoint', args.baseline_checkpoint)) if value is not None]
        if given:
            raise InputError(f'--random-size builds its own models: not with {", ".join(given)}')
        return
    if args.model_input_size:
        raise InputError('--model-input-size is the size of the --random-size models')
    if args.checkpoint is not None and args.onnx is not None:
        _check_export(args.checkpoint, args.onnx)
    if args.checkpoint is not None:
        return
    if set(args.backends.split(',')) == {'torch'}:
        raise InputError('--backends torch needs --checkpoint: it runs the checkpoint')
    resized = [s for s in args.sizes.split(',') if s != 'model']
    if resized or args.opset is not None:
        asked = f'--sizes {resized[0]}' if resized else f'--opset {args.opset}'
        raise InputError(f'{asked} needs --checkpoint: the model is re-exported from its '
                         "checkpoint (or give --sizes model)")


def _check_export(checkpoint: Path, onnx: Path) -> None:
    """--onnx must be --checkpoint's export: torch runs the one, the other backends the
    other, and both rows are labelled 'model'."""
    from mmp_ros.inference.onnx_file import read_model_metadata
    from mmp_ros.model import checkpoint_metadata, read_checkpoint
    from training.adapt_bag import source_differences

    differences = source_differences(read_model_metadata(onnx),
                                     checkpoint_metadata(read_checkpoint(checkpoint), checkpoint))
    if differences:
        raise InputError(f'--onnx {onnx} is not the export of --checkpoint {checkpoint} '
                         f'({"; ".join(differences)}): the backends would measure two models; '
                         'give its export, or leave --onnx out to export it here')


# What makes the architecture, beside the method and its projection: a baseline differing in
# one of them measured another model, and its latency was reported as MMP's overhead.
ARCHITECTURE = ('modalities', 'num_classes', 'size', 'input_channels', 'modality_widths',
                'token_strides')


def _check_baseline(model: Variant, baseline: Path, sizes: list[str]) -> None:
    """The baseline must be the model's architecture (and, measured at the models' own size,
    at its input size): else the ratio of their latencies is not the cost of MMP."""
    from mmp_ros.inference.onnx_file import read_model_metadata
    from mmp_ros.model import ModelConfig, checkpoint_metadata, read_checkpoint

    def read(path: Path):  # the config with its defaults: an older checkpoint lacks some keys
        saved = read_checkpoint(path)
        try:
            config = ModelConfig.from_dict(saved['model_config'])
        except InputError as exc:
            raise InputError(f'{path}: {exc}') from exc
        return checkpoint_metadata(saved, path), config

    base, base_config = read(baseline)
    if model.checkpoint is not None:
        metadata, config = read(model.checkpoint)
        differ = [f'{key} {getattr(config, key)!r} vs {getattr(base_config, key)!r}'
                  for key in ARCHITECTURE if getattr(config, key) != getattr(base_config, key)]
    else:
        metadata = read_model_metadata(model.onnx)
        differ = [f'{key} {a!r} vs {b!r}' for key, a, b in (
            ('modalities', list(metadata.modalities), list(base.modalities)),
            ('num_classes', metadata.num_classes, base.num_classes)) if a != b]
    if 'model' in sizes and tuple(metadata.input_size) != tuple(base.input_size):
        differ.append(f'input size {"x".join(map(str, metadata.input_size))} vs '
                      f'{"x".join(map(str, base.input_size))} (--sizes model measures each at '
                      'its own; give --sizes HxW to measure both at one)')
    if differ:
        raise InputError(f'--baseline-checkpoint {baseline} is not the architecture of the model '
                         f'({"; ".join(differ)}): the latency ratio would not be the cost of '
                         "MMP's projection; give the same architecture trained as none")


def run(args: argparse.Namespace) -> int:
    if args.random_size is None and args.checkpoint is None and args.onnx is None:
        raise InputError('give --checkpoint/--onnx (and --baseline-checkpoint), or --random-size')
    _check_backends(args.backends.split(','))
    _check_models(args)
    if args.fp16 and not any(_fp16(b, args.device) for b in args.backends.split(',')):
        # measured in FP32 all the same, and the rows said 'fp16'
        raise InputError(f'--fp16: none of --backends {args.backends} on --device {args.device} '
                         'runs in FP16 (tensorrt does, and torch on cuda); leave it out')
    json_path = None
    if args.json:  # its folder now: not after the measurements, which it would lose
        json_path = output_file(args.json, '--json')
    with tempfile.TemporaryDirectory(prefix='mmp_ros_bench_') as tmp:
        # a file in its place was a FileExistsError traceback
        workdir = output_folder(args.workdir, '--workdir') if args.workdir else Path(tmp)
        if args.random_size:
            variants = _random_checkpoints(args, workdir)
        else:
            variants = [Variant('model', args.checkpoint, args.onnx)]
            if args.baseline_checkpoint:
                _check_baseline(variants[0], args.baseline_checkpoint, args.sizes.split(','))
                variants.append(Variant('none', args.baseline_checkpoint, None))
        results, paired = [], []
        for size_text in args.sizes.split(','):
            size = _parse_size(size_text)
            for backend in args.backends.split(','):
                specs = []
                for variant in variants:
                    if backend == 'torch' and variant.checkpoint is None:
                        continue
                    onnx = None if backend == 'torch' else _onnx_for(variant, size, workdir,
                                                                     args.opset)
                    specs.append({
                        'backend': backend,
                        'variant': variant.method,
                        'device': args.device,
                        'fp16': args.fp16 and _fp16(backend, args.device),  # as it runs
                        'threads': args.threads,
                        'warmup': args.warmup,
                        'iterations': args.iterations,
                        'input_size': list(size or _model_input_size(variant)),
                        'size_label': size_text,
                        'onnx': str(onnx) if onnx else None,
                        'checkpoint': str(variant.checkpoint) if variant.checkpoint else None,
                    })
                for spec in specs:
                    results.append(_spawn([spec])[0])
                    print(_row(results[-1]), flush=True)
                if len(specs) > 1:
                    paired.append(_spawn(specs))
    print()
    print(report_markdown(results, paired))
    if json_path:
        json_path.write_text(json.dumps({'alone': results, 'interleaved': paired}, indent=2))
    return 0


CHILD_INPUT_ERROR = 3  # a child's exit status: what it was given cannot run here


def _spawn(specs: list[dict]) -> list[dict]:
    """Run specs in a fresh interpreter: one alone, several interleaved."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [
        str(repo), os.environ.get('PYTHONPATH')]))}
    done = subprocess.run(
        [sys.executable, '-m', 'mmp_ros.inference.bench', '--child', json.dumps(specs)],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode == CHILD_INPUT_ERROR:  # the device or backend cannot run: its message
        raise SystemExit(f'mmp_ros bench-backends: {done.stderr.strip().splitlines()[-1]}')
    if done.returncode != 0:
        raise SystemExit(f'benchmark child failed for {specs}:\n{done.stderr[-3000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(r: dict) -> str:
    size = 'x'.join(map(str, r['input_size']))
    memory = f"{r['peak_rss_mib']:.0f}"
    if 'peak_cuda_mib' in r:
        memory += f" (CUDA {r['peak_cuda_mib']:.0f})"
    return (f"| {r['backend']} {r['device']}{' fp16' if r['fp16'] else ''} | {r['variant']} | "
            f"{size} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['throughput_fps']:.1f} | "
            f'{memory} |')


def overhead_lines(paired: list[list[dict]]) -> list[str]:
    """MMP's latency relative to ``none`` from each interleaved measurement."""
    lines = []
    for group in paired:
        by_variant = {r['variant']: r for r in group}
        base = by_variant.get('none')
        if base is None:
            continue
        for variant, r in by_variant.items():
            if variant == 'none':
                continue
            ratio = r['p50_ms'] / base['p50_ms'] - 1
            size = 'x'.join(map(str, r['input_size']))
            lines.append(f"- {r['backend']} {r['device']}, {size}: {variant} p50 "
                         f"{r['p50_ms']:.1f} ms vs none {base['p50_ms']:.1f} ms: {ratio:+.1%}")
    return lines


def report_markdown(results: list[dict], paired: list[list[dict]] = ()) -> str:
    lines = ['| backend | model | input HxW | p50 ms | p95 ms | frames/s (batch 1) | '
             'peak RSS MiB |', '| --- | --- | --- | ---: | ---: | ---: | ---: |']
    lines += [_row(r) for r in results]
    overheads = overhead_lines(list(paired))
    if overheads:
        lines += ['', 'Latency of MMP over the same architecture as none (interleaved runs):',
                  *overheads]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--child']:
        from mmp_ros.inference.errors import BackendUnavailableError

        specs = json.loads(argv[1])
        try:
            results = [run_child(specs[0])] if len(specs) == 1 else run_interleaved(specs)
        except (BackendUnavailableError, InputError) as exc:  # one line for the parent
            print(' '.join(str(exc).split()), file=sys.stderr)
            return CHILD_INPUT_ERROR
        print(json.dumps(results))
        return 0
    parser = argparse.ArgumentParser(prog='bench_backends', description=__doc__.split('\n')[0])
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except InputError as exc:  # as `mmp_ros bench-backends` prints it: the message alone
        print(f'bench_backends: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
