"""Export a trained model to one self-contained ONNX file that serves every modality mask.

The exported contract (DESIGN §4): one float32 NCHW input per modality, named after
it, at the model's fixed input size, plus ``available`` (float32 [B, M], 1 = real);
outputs ``labels`` (int32 [B, H, W]), ``confidence`` (float32, max softmax) and, on
request, ``logits``. The batch is dynamic. The model's :class:`ModelMetadata` goes
into ``metadata_props`` under ``mmp_ros``, so the runtime needs nothing but the file.

torch 2.13's default (dynamo) exporter writes weights as external data unless told
not to; a model whose weights fit in a protobuf (< 2 GiB) is saved as one file, larger
ones get a ``.data`` file beside it. Every export is checked with ``onnx.checker``,
run once in ONNX Runtime against PyTorch, and checked against TensorRT's operator
support list.

Usage: ``python -m training.export --checkpoint run/model.pt --out model.onnx``
(or ``mmp_ros export ...``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from mmp_ros.cli import positive_int
from mmp_ros.errors import InputError, OutputFolderError, ends_with_a_slash
from mmp_ros.inference.torch_graph import DeployGraph
from mmp_ros.metadata import METADATA_KEY, ModelMetadata
from mmp_ros.modalities import nonempty_subsets

DEFAULT_OPSET = 18  # inside TensorRT 10's supported range (opset 9 to 20)
PROTOBUF_LIMIT_BYTES = 2**31 - 1
# Weights above this share of the protobuf limit go to external data (graph needs room too).
EXTERNAL_DATA_THRESHOLD = int(0.9 * PROTOBUF_LIMIT_BYTES)
VERIFY_ATOL = 1e-4

log = logging.getLogger(__name__)


class _NoTorchvisionNotice(logging.Filter):
    """torch's exporter warns, at each export, that torchvision (which we do not use) is not
    installed: four 'Skipping torchvision::nms'-like lines that look like a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return 'torchvision is not installed' not in record.getMessage()


logging.getLogger('torch.onnx._internal.exporter._registration').addFilter(
    _NoTorchvisionNotice())


class ExportError(RuntimeError):
    """The export failed or produced a graph that disagrees with the PyTorch model."""


def mask_rows(modalities: tuple[str, ...]) -> np.ndarray:
    """One ``available`` row per non-empty modality subset (15 for four), as float32 (S, M)."""
    rows = [[m in subset for m in modalities] for subset in nonempty_subsets(modalities)]
    return np.asarray(rows, dtype=np.float32)


def example_inputs(
    metadata: ModelMetadata, available: np.ndarray, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded normal-distributed float32 inputs for every modality, batch ``len(available)``."""
    rng = np.random.default_rng(seed)
    height, width = metadata.input_size
    batch = len(available)
    return {
        name: rng.standard_normal((batch, metadata.input_channels[name], height, width)).astype(
            np.float32
        )
        for name in metadata.modalities
    }


def _torch_outputs(graph: DeployGraph, inputs, available) -> list[np.ndarray]:
    tensors = [torch.from_numpy(inputs[m]) for m in graph.modalities]
    with torch.inference_mode():
        outputs = graph(*tensors, torch.from_numpy(available))
    return [o.numpy() for o in outputs]


def verify_export(
    graph: DeployGraph, metadata: ModelMetadata, path: Path, *, seed: int = 0
) -> dict[str, float]:
    """Run the file in ONNX Runtime and PyTorch on the same inputs for every mask.

    Returns the largest logits difference (when logits are exported) and the share of
    pixels whose labels agree; raises :class:`ExportError` when they disagree. The masks
    run one at a time: all of them in one batch took 28 GB in ONNX Runtime at 2000x2000.
    """
    import onnxruntime

    available = mask_rows(metadata.modalities)
    inputs = example_inputs(metadata, available, seed=seed)
    session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = list(graph.output_names)
    agreeing, diff = 0.0, 0.0
    for index in range(len(available)):
        row = available[index:index + 1]
        one = {m: x[index:index + 1] for m, x in inputs.items()}
        try:
            ort_out = dict(zip(names, session.run(names, {**one, 'available': row}),
                               strict=True))
        except Exception as exc:  # ONNX Runtime's errors derive from Exception alone
            raise ExportError(f'{path}: ONNX Runtime could not run the check against PyTorch '
                              f'({exc}); --no-verify skips it') from exc
        ref = dict(zip(names, _torch_outputs(graph, one, row), strict=True))
        agreeing += float((ort_out['labels'] == ref['labels']).mean())
        if 'logits' in ref:
            diff = max(diff, float(np.abs(ort_out['logits'] - ref['logits']).max()))
    agreement = agreeing / len(available)
    report = {'label_agreement': agreement, 'masks': float(len(available))}
    if 'logits' in names:
        report['max_abs_logit_diff'] = diff
        if diff > VERIFY_ATOL:
            raise ExportError(
                f'{path}: ONNX Runtime logits differ from PyTorch by up to {diff:.2e} '
                f'(tolerance {VERIFY_ATOL})'
            )
    elif agreement < 0.999:
        raise ExportError(f'{path}: ONNX Runtime labels agree with PyTorch on {agreement:.4%}')
    return report


def export_onnx(
    model: nn.Module,
    metadata: ModelMetadata,
    path: str | Path,
    *,
    with_logits: bool = False,
    input_size: tuple[int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
) -> Path:
    """Export ``model`` (forward contract of :mod:`mmp_ros.model`) with its metadata to ``path``.

    ``input_size`` overrides the metadata's (height, width) for a model that runs at
    several sizes (benchmarks at camera resolution); the file records the size it has.
    Its metrics were measured at the metadata's size, not this one: they are kept, with
    that size under ``metrics['measured_at_input_size']``.
    """
    path = Path(path)
    _check_output(path)
    if input_size is not None:
        size = tuple(int(v) for v in input_size)
        metrics = metadata.metrics
        if size != tuple(metadata.input_size) and metrics:
            metrics = {'measured_at_input_size': list(metadata.input_size), **metrics}
        metadata = dataclasses.replace(metadata, input_size=size, metrics=metrics)
    metadata = dataclasses.replace(
        metadata,
        provenance={
            **metadata.provenance,
            'export': {'torch': torch.__version__, 'onnx_opset': opset,
                       'with_logits': with_logits},
        },
    )
    graph = DeployGraph(model, metadata.modalities, with_logits=with_logits).eval()
    # Batch 2 in the example keeps the exporter from specializing the batch dim to 1.
    available = np.ones((2, len(metadata.modalities)), np.float32)
    inputs = example_inputs(metadata, available)
    args = (*(torch.from_numpy(inputs[m]) for m in metadata.modalities),
            torch.from_numpy(available))
    batch = torch.export.Dim('batch', min=1, max=1024)
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    external = weight_bytes > EXTERNAL_DATA_THRESHOLD
    # Written and checked in a folder beside ``path``, then moved over it: a failed export
    # or check leaves an earlier file at ``path`` as it was.
    with tempfile.TemporaryDirectory(prefix=f'.{path.name}.', dir=path.parent) as staging:
        staged = Path(staging) / path.name
        try:
            report = _export_checked(graph, metadata, args, staged, batch=batch, opset=opset,
                                     external=external, verify=verify)
        except ExportError as exc:  # named after the file asked for, not the staged one
            raise ExportError(str(exc).replace(str(staged), str(path))) from exc.__cause__
        for file in Path(staging).iterdir():  # the model, and its weights when external
            os.replace(file, path.parent / file.name)
    if report is not None:
        log.info('verified %s against PyTorch: %s', path, report)
    return path


def _check_output(path: Path) -> None:
    """Before the export's work: ``path`` must be able to become a file (its folder is
    created here, and must take one: the export is staged in it)."""
    if path.is_dir():
        raise OutputFolderError(f'{path} is a folder; the export writes one ONNX file: give '
                                f'its path, e.g. {path / "model.onnx"}')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f'{path}: its folder {path.parent} cannot be created '
                                f'({exc.strerror or exc})') from None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix='.write-test-'):
            pass
    except OSError as exc:
        raise OutputFolderError(f'{path}: its folder {path.parent} cannot be written into '
                                f'({exc.strerror or exc})') from None


def _export_checked(graph: DeployGraph, metadata: ModelMetadata, args: tuple, path: Path, *,
                    batch: Any, opset: int, external: bool,
                    verify: bool) -> dict[str, float] | None:
    """Export ``graph`` to ``path``, stamp its metadata, and check the file; the report of
    :func:`verify_export` when ``verify``."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the exporter's deprecation chatter, not ours to fix
        try:
            torch.onnx.export(
                graph,
                args,
                str(path),
                input_names=list(graph.input_names),
                output_names=list(graph.output_names),
                dynamic_shapes=(tuple({0: batch} for _ in args),),  # forward(*tensors)
                opset_version=opset,
                external_data=external,
                dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many untyped errors
            raise ExportError(f'torch.onnx.export of the model to {path} failed: {exc}') from exc
    proto = onnx.load(str(path), load_external_data=False)
    written = next(o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx'))
    if written < opset:  # beyond its converter's opsets the exporter keeps its own too
        raise ExportError(f'opset {opset}: torch {torch.__version__} cannot convert the model '
                          f'to it (it wrote opset {written}); ask for an opset it knows '
                          f'(TensorRT 10 reads up to 20)')
    if written != opset:  # below its own opset the exporter keeps its own, with a log line
        raise ExportError(f'opset {opset}: torch {torch.__version__} exports at opset '
                          f'{written} and above; ask for one of those')
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()
    proto.doc_string = (
        f'mmp_ros segmentation model ({metadata.method}); modalities '
        f'{", ".join(metadata.modalities)}; input {metadata.input_size[0]}x'
        f'{metadata.input_size[1]}; {metadata.num_classes} classes'
    )
    onnx.save(proto, str(path))  # external-data references, if any, are kept as they are
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f'exported {path} fails onnx.checker: {exc}') from exc
    return verify_export(graph, metadata, path) if verify else None


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, **options
) -> tuple[Path, ModelMetadata]:
    """Load a training checkpoint and export it; ``options`` as for :func:`export_onnx`."""
    from mmp_ros.model import CheckpointError, load_checkpoint

    if Path(out).resolve() == Path(checkpoint).resolve():
        raise CheckpointError(f'{out} is the checkpoint being exported: the ONNX file would '
                              'replace it; give another output path')
    model, metadata, _ = load_checkpoint(checkpoint, map_location='cpu')
    metadata = dataclasses.replace(
        metadata, provenance={**metadata.provenance, 'checkpoint': str(checkpoint)}
    )
    model.eval()
    return export_onnx(model, metadata, out, **options), metadata


# --- command line -------------------------------------------------------------------


def highest_opset() -> int:
    """The highest opset the installed exporter writes: torch's exporter converts its graph
    with onnxscript's version converter, which stops below the newest opset onnx knows
    (25 in onnxscript 0.7, onnx 1.23 knows 28); above it the exporter kept its own opset."""
    highest = onnx.defs.onnx_opset_version()
    try:
        from onnxscript.version_converter import _version_converter
    except ImportError:
        return highest
    return min(highest, getattr(_version_converter, 'SUPPORTED_MAX_ONNX_OPSET', highest))


def opset_number(text: str) -> int:
    """argparse ``type`` of ``--opset``: one torch's exporter writes (``DEFAULT_OPSET`` to
    :func:`highest_opset`). Outside that range the whole export ran first, then stopped with
    status 1, and above onnx's newest opset onnxscript's logged tracebacks came with it."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a whole number, got {text!r}') from None
    highest = highest_opset()
    if not DEFAULT_OPSET <= value <= highest:
        raise argparse.ArgumentTypeError(
            f'{value}: torch {torch.__version__} exports at opset {DEFAULT_OPSET} to {highest} '
            '(TensorRT 10 reads up to 20)')
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--checkpoint', required=True, type=Path, help='training checkpoint (.pt)')
    # text, not a Path: Path('models/') is 'models', and the export became a file of that name
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument('--logits', action='store_true', help='also export the logits output')
    parser.add_argument('--input-size', nargs=2, type=positive_int, metavar=('HEIGHT', 'WIDTH'),
                        help="override the model's input size (fully convolutional models)")
    parser.add_argument('--opset', type=opset_number, default=DEFAULT_OPSET,
                        help=f'ONNX opset (default {DEFAULT_OPSET}; torch writes '
                        f'{DEFAULT_OPSET} to {highest_opset()}, TensorRT 10 reads up to 20)')
    parser.add_argument('--no-verify', action='store_true',
                        help='skip the ONNX Runtime vs PyTorch check over all masks')


def run(args: argparse.Namespace) -> int:
    from mmp_ros.inference.tensorrt_ops import check_tensorrt_compatibility

    # INFO for this module's own lines alone: the root at INFO printed every library's too
    # (onnx_ir's and onnxscript's optimizer passes: over a hundred lines for a tiny model)
    logging.basicConfig(format='%(message)s')
    log.setLevel(logging.INFO)
    if ends_with_a_slash(args.out):
        raise OutputFolderError(f'--out {args.out} ends with a slash, as a folder does; the '
                                'export writes one ONNX file: give its path, e.g. '
                                f'{Path(args.out) / "model.onnx"}')
    try:
        path, metadata = export_checkpoint(
            args.checkpoint,
            args.out,
            with_logits=args.logits,
            input_size=tuple(args.input_size) if args.input_size else None,
            opset=args.opset,
            verify=not args.no_verify,
        )
    except ExportError as exc:  # an input error (checkpoint, size) goes to the CLI: status 2
        print(f'mmp_ros export: {exc}', file=sys.stderr)
        return 1
    size_mib = path.stat().st_size / 2**20
    print(f'wrote {path} ({size_mib:.1f} MiB): modalities {list(metadata.modalities)}, '
          f'{metadata.num_classes} classes, method {metadata.method}')
    report = check_tensorrt_compatibility(path)
    print(report.summary())
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m training.export', description=__doc__.split(
        '\n')[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except InputError as exc:  # as ``mmp_ros export`` prints it: the message alone
        print(f'{parser.prog}: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
