#!/usr/bin/env python3
"""ONNX Runtime vs PyTorch on a real model, for every modality mask (15 for four).

    python scripts/check_parity.py --checkpoint models/mmp.pt [--onnx models/mmp.onnx]

Without ``--onnx`` the checkpoint is exported (with logits) to a temporary file first.
Both backends get the same seeded inputs, one mask per batch item. Passes when logits
agree to 1e-4 (``torch.testing.assert_close`` semantics, atol = rtol = 1e-4) where the
ONNX file has logits, else when labels agree on at least 99.9 % of pixels of every mask.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmp_ros.cli import non_negative_int, positive_int
from mmp_ros.errors import InputError
from mmp_ros.inference import create_backend
from mmp_ros.inference.torch_backend import TorchBackend, load_checkpoint_model, resolve_device
from mmp_ros.modalities import nonempty_subsets, subset_label
from training.export import example_inputs, export_checkpoint, mask_rows

TOLERANCE = 1e-4
MIN_LABEL_AGREEMENT = 0.999


def compare(checkpoint: Path, onnx_path: Path, seed: int, threads: int | None) -> bool:
    candidate = create_backend('onnxruntime', onnx_path, threads=threads)
    metadata = candidate.metadata
    model, trained = load_checkpoint_model(checkpoint, resolve_device('cpu'))
    trained.check_modality_order(metadata.modalities, source=str(onnx_path))
    if tuple(trained.class_names) != tuple(metadata.class_names):
        raise InputError(f'{onnx_path} has classes {list(metadata.class_names)}, {checkpoint} '
                         f'{list(trained.class_names)}: it is not an export of this checkpoint')
    if trained.input_size != metadata.input_size:
        print(f'note: {onnx_path} is at {metadata.input_size}, the checkpoint at '
              f'{trained.input_size}; comparing at the ONNX size')
    reference = TorchBackend(model, replace(trained, input_size=metadata.input_size),
                             device='cpu', threads=threads)
    masks = mask_rows(metadata.modalities)
    inputs = example_inputs(metadata, masks, seed=seed)
    ok = True
    print(f'{onnx_path} vs {checkpoint}, input {metadata.input_size}, seed {seed}')
    print(f'{"mask":<32} {"max |dlogit|":>12} {"labels agree":>13} {"max |dconf|":>12}')
    for index, subset in enumerate(nonempty_subsets(metadata.modalities)):
        one = {m: x[index : index + 1] for m, x in inputs.items()}
        ours = candidate.run(one, masks[index : index + 1])
        ref = reference.run(one, masks[index : index + 1])
        agreement = float((ours['labels'] == ref['labels']).mean())
        conf = float(np.abs(ours['confidence'] - ref['confidence']).max())
        if 'logits' in ours:
            excess = np.abs(ours['logits'] - ref['logits']) - TOLERANCE * (
                1 + np.abs(ref['logits']))
            logit = float(np.abs(ours['logits'] - ref['logits']).max())
            passed = bool(excess.max() <= 0)
            logit_text = f'{logit:12.2e}'
        else:
            passed = agreement >= MIN_LABEL_AGREEMENT
            logit_text = f'{"(none)":>12}'
        ok &= passed
        label = subset_label(subset, metadata.modalities)
        print(f'{label:<32} {logit_text} {agreement:13.4%} {conf:12.2e}'
              f'{"" if passed else "  FAIL"}')
    print('PASS' if ok else 'FAIL')
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', required=True, type=Path)
    parser.add_argument('--onnx', type=Path, help='its export (default: export it now)')
    parser.add_argument('--seed', type=non_negative_int, default=0)  # as numpy takes seeds
    parser.add_argument('--threads', type=positive_int)
    args = parser.parse_args(argv)
    try:
        return check(args)
    except InputError as exc:  # a missing or unusable file: its message alone
        print(f'check_parity: {exc}', file=sys.stderr)
        return 2


def check(args: argparse.Namespace) -> int:
    if args.onnx:
        return 0 if compare(args.checkpoint, args.onnx, args.seed, args.threads) else 1
    with tempfile.TemporaryDirectory(prefix='mmp_ros_parity_') as tmp:
        onnx_path, _ = export_checkpoint(args.checkpoint, Path(tmp) / 'model.onnx',
                                         with_logits=True, verify=False)
        return 0 if compare(args.checkpoint, onnx_path, args.seed, args.threads) else 1


if __name__ == '__main__':
    sys.exit(main())
