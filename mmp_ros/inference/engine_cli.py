"""``mmp_ros build-engine``: build (or refresh) the TensorRT engine for an exported model.

Run it on the robot itself: an engine is tied to the GPU model and TensorRT version
that built it. The engine and its stamp (``<engine>.json``) land beside the ONNX unless
``--engine`` says otherwise; the node then loads it without rebuilding as long as the
ONNX, GPU, TensorRT version, ``enable_fp16`` and max batch are unchanged (pass
``--fp16`` to match the node's default ``enable_fp16: true``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mmp_ros.cli import positive_int
from mmp_ros.errors import InputError
from mmp_ros.inference.errors import InferenceError
from mmp_ros.inference.tensorrt_backend import DEFAULT_WORKSPACE_BYTES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--onnx', required=True, type=Path,
                        help='exported model (model_file_path)')
    parser.add_argument('--engine', type=Path,
                        help='engine file to write (engine_file_path; default: beside the ONNX)')
    parser.add_argument('--fp16', action='store_true', help='build with FP16 (enable_fp16)')
    parser.add_argument('--max-batch', type=positive_int, default=1,
                        help='largest batch of the optimization profile (default 1)')
    parser.add_argument('--workspace-mib', type=positive_int,
                        default=DEFAULT_WORKSPACE_BYTES >> 20,
                        help='builder workspace limit in MiB')
    parser.add_argument('--device', default='cuda:0', help='CUDA device to build for')
    parser.add_argument('--if-stale', action='store_true',
                        help='keep an engine whose stamp matches instead of rebuilding it')


def run(args: argparse.Namespace) -> int:
    # INFO for the package's own lines (the build's progress): with the root at INFO every
    # library's came too (mmp_ros export printed over a hundred of onnx_ir's for a tiny model)
    logging.basicConfig(format='%(levelname)s %(message)s')
    logging.getLogger('mmp_ros').setLevel(logging.INFO)
    log = logging.getLogger('mmp_ros.build_engine')
    try:
        return _build(args, log)
    except InputError:  # a missing or damaged ONNX: exit status 2, as every command
        raise
    except (InferenceError, ValueError) as exc:
        print(f'mmp_ros build-engine: {exc}', file=sys.stderr)
        return 1


def _build(args: argparse.Namespace, log: logging.Logger) -> int:
    from mmp_ros.inference.onnx_file import read_onnx_file
    from mmp_ros.inference.tensorrt_backend import TensorRTBackend

    info = read_onnx_file(args.onnx)
    try:
        from mmp_ros.inference.tensorrt_ops import check_tensorrt_compatibility

        report = check_tensorrt_compatibility(info.path)
    except ImportError:
        log.info('onnx is not installed: skipping the operator support check')
    else:
        log.info(report.summary())
        if not report.ok:
            return 1
    backend = TensorRTBackend(
        info.path,
        engine_file_path=args.engine,
        force_engine_update=not args.if_stale,
        enable_fp16=args.fp16,
        max_batch=args.max_batch,
        workspace_bytes=args.workspace_mib << 20,
        device=args.device,
        logger=log,
    )
    state = 'built' if backend.engine_was_built else 'up to date'
    print(f'{backend.engine_file_path}: {state} ({backend.describe()})')
    backend.close()
    return 0
