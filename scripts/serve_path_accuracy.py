#!/usr/bin/env python3
"""A model's test-split mIoU through training's input path and through the node's.

    python scripts/serve_path_accuracy.py [--model models/tiny_mmp.onnx] [--scenes 300]
        [--camera-size 128 160] [--polarization mosaic]

Why: the robustness benchmark scores a model on ``SyntheticDataset`` samples, rendered at
the model's input size with polarization from the raw mosaic through the node's decoder
(``--polarization mosaic``, the benchmark's default) or from the four clean polarizer
planes (``intensities``); the node sees each camera's ROS message at the camera's size,
decodes it with ``mmp_ros.sensors`` under the node's parameters and resizes it with
``mmp_ros.core.preprocess``. The same scenes through both paths separate what the serving
path costs from what a short replay (a few scenes per phase) shows.

Paths, each pooled over the same scenes and every subset with at most one sensor missing:

- ``training``: ``SyntheticDataset('test', size=model input, polarization=...)``, the
  benchmark's samples;
- ``node``: the scene rendered at ``--camera-size``, encoded as ``mmp_ros synth-bag``
  publishes it, decoded with ``config/mmp_segmentation.yaml`` + ``config/mmp_demo.yaml``,
  ``build_inputs``, and the labels resized back to the camera grid (nearest), as the node
  publishes them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmp_ros.cli import positive_int
from mmp_ros.core.metrics import confusion_matrix, scores
from mmp_ros.core.parameters import (
    ParameterError,
    all_parameters,
    decoder_settings,
    defaults,
    load_params_file,
)
from mmp_ros.core.preprocess import build_inputs, normalize
from mmp_ros.errors import InputError
from mmp_ros.inference import create_backend
from mmp_ros.sensors import decode_frame
from training.data.classes import CLASS_NAMES
from training.data.dataset import SyntheticDataset
from training.data.render import render
from training.data.scene import frame_size_problem, make_split, sample_scene
from training.data.synth_bag import SynthBagConfig, sensor_pixels

REPO = Path(__file__).resolve().parents[1]
NODE_PARAMS = (REPO / 'config' / 'mmp_segmentation.yaml', REPO / 'config' / 'mmp_demo.yaml')


def subsets(modalities: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """All modalities, and each with one missing, keyed as the model card names them."""
    out = {'all': modalities}
    for missing in modalities:
        kept = tuple(m for m in modalities if m != missing)
        out['+'.join(kept)] = kept
    return out


def node_parameter(item: str) -> tuple[str, object]:
    """argparse ``type`` of ``--param NAME=VALUE``: the value read as YAML, as ROS reads
    ``-p NAME:=VALUE`` (``5`` a number, ``[0, 45, 90, 135]`` a list), and checked."""
    name, sep, text = item.partition('=')
    spec = all_parameters().get(name)
    if not sep or spec is None:
        raise argparse.ArgumentTypeError(f'{item!r}: expected NAME=VALUE with a node parameter '
                                         'NAME')
    try:
        value = yaml.safe_load(text) if text else ''
    except yaml.YAMLError:
        value = text
    if isinstance(spec.default, float) and type(value) is int:
        value = float(value)
    try:
        spec.check(value)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, value


def training_inputs(sample, metadata) -> dict[str, np.ndarray]:
    """A dataset sample normalized as training does, (C, H, W) per modality."""
    return {m: normalize(sample[m].numpy().transpose(1, 2, 0), metadata.normalization[m])
            for m in metadata.modalities}


def score_paths(model: Path, scenes: int, camera_size: tuple[int, int],
                overrides: dict[str, object], polarization: str = 'mosaic') -> dict:
    if problem := frame_size_problem(*camera_size):  # the scenes are rendered at it
        raise InputError(f'--camera-size {problem}')
    backend = create_backend('onnxruntime', model)
    metadata = backend.metadata
    modalities = tuple(metadata.modalities)
    if tuple(metadata.class_names) != tuple(CLASS_NAMES):
        raise InputError(f'{model} labels {list(metadata.class_names)}, not the synthetic '
                         f"scenes' classes {list(CLASS_NAMES)}: its mIoU on them means nothing")
    if 'polarization' in modalities and any(n % 2 for n in camera_size):
        raise InputError(f'--camera-size {camera_size[0]} {camera_size[1]}: the polarization '
                         "camera's 2x2 mosaic needs an even height and width")
    classes = len(metadata.class_names)
    values = defaults()
    for path in NODE_PARAMS:
        values.update(load_params_file(path))
    values.update(overrides)
    settings = {m: decoder_settings(values, m) for m in modalities}
    bag = SynthBagConfig()
    dataset = SyntheticDataset('test', size=metadata.input_size, length=scenes,
                               polarization=polarization)
    table = subsets(modalities)
    confusion = {(p, k): np.zeros((classes, classes + 1), np.int64)
                 for p in ('training', 'node') for k in table}
    height, width = camera_size
    for index in range(scenes):
        sample = dataset[index]
        train_in = training_inputs(sample, metadata)
        train_label = sample['label'].numpy()
        images = render(sample_scene(make_split('test', index), width, height, 'test'))
        frames = {m: decode_frame(m, sensor_pixels(images, m, bag), settings[m])
                  for m in modalities}
        for key, kept in table.items():
            available = np.array([[m in kept for m in modalities]])
            inputs = {m: (train_in[m] if m in kept else np.zeros_like(train_in[m]))[None]
                      for m in modalities}
            labels, _ = backend.infer(inputs, available)
            confusion['training', key] += confusion_matrix(labels[0], train_label, classes)
            node_in, node_available = build_inputs({m: frames[m] for m in kept}, metadata)
            labels, _ = backend.infer(node_in, node_available)
            pred = cv2.resize(labels[0].astype(np.uint8), (width, height),  # as the node
                              interpolation=cv2.INTER_NEAREST_EXACT)
            confusion['node', key] += confusion_matrix(pred, images.label.astype(np.int64),
                                                       classes)
    return {'table': table, 'miou': {pk: scores(c).miou for pk, c in confusion.items()},
            'input_size': metadata.input_size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', type=Path, default=REPO / 'models' / 'tiny_mmp.onnx')
    parser.add_argument('--scenes', type=positive_int, default=300, help='test scenes 0..N-1')
    parser.add_argument('--polarization', default='mosaic', choices=('mosaic', 'intensities'),
                        help="the training path's polarization input (the benchmark's)")
    parser.add_argument('--camera-size', type=positive_int, nargs=2, default=(128, 160),
                        metavar=('H', 'W'), help="the node path's camera size (the demo's)")
    parser.add_argument('--param', type=node_parameter, action='append', default=[],
                        metavar='NAME=VALUE',
                        help='override a node parameter of the node path, e.g. '
                             'sensors.polarization.resolution=full or sensors.depth.max_m=8')
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f'--model {args.model}: no such file')
    try:
        result = score_paths(args.model, args.scenes, tuple(args.camera_size),
                             dict(args.param), args.polarization)
    except InputError as exc:  # a model file or camera size it cannot score: the message alone
        print(f'serve_path_accuracy: {exc}', file=sys.stderr)
        return 2
    h, w = result['input_size']
    ch, cw = args.camera_size
    print(f'{args.model}, test scenes 0..{args.scenes - 1}, mIoU %')
    print(f'| modalities | training path ({h}x{w}, polarization {args.polarization}) | '
          f'node path ({ch}x{cw}, ROS encodings, mosaic) | difference |')
    print('| --- | ---: | ---: | ---: |')
    for key in result['table']:
        train, node = result['miou']['training', key], result['miou']['node', key]
        print(f'| {key} | {train:.1f} | {node:.1f} | {node - train:+.1f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
