"""Label-free robustification (``mmp_adapt``): the ``adapt`` command.

Takes a checkpoint trained on all modalities (method ``none``), freezes it, and trains
only a new projection module with the alignment loss (plus, with ``distillation_weight``,
the cross-entropy against the frozen model's own all-modality prediction) on unlabelled
multimodal frames, e.g. a robot's own healthy recordings. Projected tokens replace only
missing modalities, so with every sensor alive the output is the base model's, bit for bit.
The training data passes through :class:`training.datasets.UnlabelledDataset`: labels
are never read.
"""

from __future__ import annotations

import argparse
import json
import sys

from training.config import ConfigError, TrainConfig, load_config
from training.train import TrainResult, train


def adapt(base_checkpoint: str, *, config_path: str | None = None,
          overrides: list[str] | tuple[str, ...] = (), train_dataset=None,
          command: str = '') -> TrainResult:
    """Run adaptation; the config's method is forced to ``mmp_adapt``.

    Periodic validation is off unless the overrides ask for it (``eval_every=N``): it is
    the one place labels (of the validation split, for reporting only) would be read.
    """
    config = adapt_config(base_checkpoint, config_path=config_path, overrides=overrides)
    return train(config, train_dataset=train_dataset, command=command)


def adapt_config(base_checkpoint: str, *, config_path: str | None = None,
                 overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The config :func:`adapt` trains with (checked, as loading checks it). An override of
    what it sets itself (another method, another base) is refused: it was replaced without a
    word, and the run adapted ``base_checkpoint`` with mmp_adapt all the same."""
    for item in overrides:
        key, _, value = item.partition('=')
        key = key.strip()
        if key == 'base_checkpoint' or key == 'method' and value.strip() != 'mmp_adapt':
            raise ConfigError(f'--set {item}: adaptation sets {key} itself (method mmp_adapt, '
                              f'base_checkpoint {base_checkpoint}, the checkpoint given); '
                              'leave it out')
    defaults = ['eval_every=0']
    # quoted: overrides are YAML, where ' #' starts a comment and ': ' a mapping
    forced = ['method=mmp_adapt', f'base_checkpoint={json.dumps(str(base_checkpoint))}']
    return load_config(config_path, [*defaults, *overrides, *forced])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('base_checkpoint', help='checkpoint trained with method "none"')
    parser.add_argument('--config', help='YAML training config (config/train_adapt.yaml)')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='KEY=VALUE', help='override a config value (repeatable)')


def run(args: argparse.Namespace) -> int:
    result = adapt(args.base_checkpoint, config_path=args.config, overrides=args.overrides,
                   command='mmp_ros adapt-data ' + ' '.join(sys.argv[2:]))
    if result.losses:
        print(f'checkpoint: {result.checkpoint}  ({len(result.losses)} steps, '
              f'{result.seconds:.1f} s)')
    else:  # as train says it
        print(f'checkpoint: {result.checkpoint} is already at step {result.start_step}: '
              'nothing to train (raise steps to train further)')
    return 0
