"""Evaluation for every modality subset: Markdown + JSON tables and a bar chart.

``evaluate_checkpoint`` scores one checkpoint on every non-empty subset of its
modalities (15 for four); ``write_report`` puts several side by side. For projection
methods it also reports how close projected tokens are to the real ones (cosine).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mmp_ros import json_text
from mmp_ros.cli import non_negative_int, positive_int
from mmp_ros.errors import output_folder
from mmp_ros.metadata import ModelMetadata
from mmp_ros.modalities import nonempty_subsets, subset_label
from mmp_ros.model import (
    CheckpointError,
    checkpoint_metadata,
    load_checkpoint,
    read_checkpoint,
)
from training.config import ConfigError, DataConfig, data_config_from_dict
from training.datasets import DatasetError, build_dataset, check_modalities, dataset_classes
from training.metrics import SubsetReport, evaluate_subsets
from training.train import batches_for_eval, resolve_device


def evaluate_checkpoint(path: str | Path, *, split: str = 'test',
                        dataset: torch.utils.data.Dataset | None = None,
                        data: DataConfig | None = None, device: str = 'auto',
                        batch_size: int = 8, max_samples: int = 0,
                        num_workers: int = 0) -> tuple[SubsetReport, ModelMetadata]:
    """Scores of one checkpoint on every subset of its modalities.

    The dataset defaults to the checkpoint's own training data config with ``split``.
    """
    model, metadata, checkpoint = load_checkpoint(path)
    target = resolve_device(device)
    model.to(target)
    if dataset is None:
        if data is None:
            data = checkpoint_data_config(checkpoint, path)
        dataset = build_dataset(data, split)
    check_modalities(dataset, metadata.modalities, need_label=True,
                     name=f'evaluation data ({split})')
    try:
        class_names, _ = dataset_classes(dataset)
    except DatasetError:  # a dataset that declares none: its labels are the model's classes
        class_names = metadata.class_names
    if class_names != metadata.class_names:
        raise DatasetError(f'evaluation data ({split}) has the classes {list(class_names)}, '
                           f'the model {list(metadata.class_names)}: its labels would be '
                           'scored as other classes')
    report = evaluate_subsets(
        model, batches_for_eval(dataset, metadata, batch_size=batch_size, device=target,
                                max_samples=max_samples, num_workers=num_workers),
        modalities=metadata.modalities, num_classes=metadata.num_classes,
        cosine=model.config.uses_projection)
    return report, metadata


def in_order(report: SubsetReport, modalities: Sequence[str]) -> SubsetReport:
    """``report`` with its subsets labelled as for a model taking ``modalities``: its own, in
    the order another model lists them ('rgb+thermal' for its 'thermal+rgb')."""
    return SubsetReport(tuple(modalities), {
        subset_label(s, modalities): report.subsets[subset_label(s, report.modalities)]
        for s in nonempty_subsets(modalities)}, dict(report.cosine))


def checkpoint_data_config(checkpoint: Mapping[str, Any], path: str | Path) -> DataConfig:
    """The data a checkpoint (read from ``path``) was trained on, from its ``train_config``.
    A train_config missing or of another type was a KeyError or AttributeError traceback, and
    a data section that today's rules refuse was a ConfigError that named no file (the
    command has no data option)."""
    train_config = checkpoint.get('train_config')
    if not isinstance(train_config, Mapping):
        raise CheckpointError(f'{path}: holds no training config (train_config is '
                              f'{type(train_config).__name__}) to take its data from; altered, '
                              'or not saved by a training run')
    try:
        return data_config_from_dict(train_config)
    except ConfigError as exc:
        raise CheckpointError(f'{path}: the data of its training config cannot be used '
                              f'({exc})') from exc


def _cell(value: float) -> str:
    return '–' if value is None or math.isnan(value) else f'{value:.1f}'


def markdown_table(reports: Mapping[str, SubsetReport], *,
                   ceilings: Mapping[str, float] | None = None,
                   metric: str = 'miou') -> str:
    """Rows: each subset (smallest first), then the means; columns: one per model."""
    modalities = next(iter(reports.values())).modalities
    names = list(reports)
    header = ['modalities', *names] + (['ceiling'] if ceilings else [])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
    for subset in nonempty_subsets(modalities):
        key = subset_label(subset, modalities)
        row = [key] + [_cell(getattr(reports[n].subsets[key], metric)) for n in names]
        if ceilings:
            row.append(_cell(ceilings.get(key, math.nan)))
        lines.append('| ' + ' | '.join(row) + ' |')
    if metric == 'miou':
        missing = len(list(nonempty_subsets(modalities))) - 1
        means = ((f'**mean, {missing} missing subsets**', 'mean_missing'),
                 (f'mean, all {missing + 1}', 'mean_all'))
        for label, attribute in means if missing else ():  # one modality: no subset missing
            row = [label] + [f'**{_cell(getattr(reports[n], attribute))}**' if 'missing' in
                             attribute else _cell(getattr(reports[n], attribute)) for n in names]
            if ceilings:
                values = [ceilings.get(subset_label(s, modalities), math.nan)
                          for s in nonempty_subsets(modalities)]
                values = values[:-1] if attribute == 'mean_missing' else values
                row.append(_cell(sum(values) / len(values)))
            lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def cosine_table(reports: Mapping[str, SubsetReport]) -> str:
    with_cosine = {n: r for n, r in reports.items() if r.cosine}
    if not with_cosine:
        return ''
    modalities = next(iter(with_cosine.values())).modalities
    lines = ['| model | ' + ' | '.join(modalities) + ' |', '|' + ' --- |' * (len(modalities) + 1)]
    for name, report in with_cosine.items():
        cells = [f'{report.cosine[m]:.3f}' if m in report.cosine else '–' for m in modalities]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


LEGEND_ROW_INCHES = 0.19  # one legend row at font size 8


def series_colors(count: int) -> list:
    """``count`` colors, no two alike: matplotlib's default ten, then the 40 of ``tab20`` and
    ``tab20b``, then as many as needed spread over ``turbo``, so that every series of a chart
    can be told apart."""
    from matplotlib import colormaps

    if count <= 10:
        return [f'C{i}' for i in range(count)]
    if count <= 40:
        return [colormaps['tab20' if i < 20 else 'tab20b'](i % 20) for i in range(count)]
    return [colormaps['turbo'](i / (count - 1)) for i in range(count)]


def bar_chart(reports: Mapping[str, SubsetReport], path: str | Path, *, title: str = '',
              ceilings: Mapping[str, float] | None = None) -> Path:
    fig = bar_figure(reports, title=title, ceilings=ceilings)  # selects the Agg backend
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bar_figure(reports: Mapping[str, SubsetReport], *, title: str = '',
               ceilings: Mapping[str, float] | None = None):
    """mIoU per available subset, one bar per model, the legend beside the bars."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    modalities = next(iter(reports.values())).modalities
    keys = [subset_label(s, modalities) for s in nonempty_subsets(modalities)]
    width = 0.8 / len(reports)
    # tall enough for the legend beside the bars: one row per series and the ceiling
    height = max(4.0, LEGEND_ROW_INCHES * (len(reports) + 1) + 0.8)
    fig, ax = plt.subplots(figsize=(max(8, len(keys) * 0.9), height))
    colors = series_colors(len(reports))
    for index, (name, report) in enumerate(reports.items()):
        xs = [k + (index - (len(reports) - 1) / 2) * width for k in range(len(keys))]
        ax.bar(xs, [report.subsets[k].miou for k in keys], width=width, label=name,
               color=colors[index])
    if ceilings:
        ax.scatter(range(len(keys)), [ceilings.get(k, math.nan) for k in keys], marker='_',
                   s=300, color='black', label='information ceiling', zorder=3)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=40, ha='right', fontsize=8)
    ax.set_ylabel('mIoU (%)')
    ax.set_title(title)
    ax.legend(fontsize=8, loc='upper left', bbox_to_anchor=(1.0, 1.0))  # off the bars
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    return fig


def write_report(reports: Mapping[str, SubsetReport], out_dir: str | Path, *,
                 title: str = 'Evaluation', stem: str = 'evaluation',
                 ceilings: Mapping[str, float] | None = None) -> dict[str, Path]:
    """``<stem>.md``, ``<stem>.json`` and ``<stem>.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chart = bar_chart(reports, out / f'{stem}.png', title=title, ceilings=ceilings)
    sections = [f'# {title}', '', '## mIoU (%) per available-modality subset', '',
                markdown_table(reports, ceilings=ceilings), '',
                '## Pixel accuracy (%)', '', markdown_table(reports, metric='pixel_accuracy'),
                '']
    cosine = cosine_table(reports)
    if cosine:
        sections += ['## Cosine similarity of projected to real tokens', '',
                     'Mean over token positions and over the subsets where the modality is '
                     'missing.', '', cosine, '']
    sections += [f'![mIoU per subset]({chart.name})', '']
    markdown = out / f'{stem}.md'
    markdown.write_text('\n'.join(sections), encoding='utf-8')
    document = {name: report.to_dict() for name, report in reports.items()}
    if ceilings:
        document['_ceiling'] = dict(ceilings)
    data = out / f'{stem}.json'
    # NaN (a class absent from the labels and the predictions) is no JSON: null instead.
    data.write_text(json_text.dumps(document, indent=2, sort_keys=True), encoding='utf-8')
    return {'markdown': markdown, 'json': data, 'chart': chart}


# --- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('checkpoints', nargs='+', metavar='CHECKPOINT',
                        help='one or more checkpoints; reported side by side')
    parser.add_argument('--split', default='test', help='dataset split (default: test)')
    parser.add_argument('--out', default='out/evaluation', help='output folder')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--batch-size', type=positive_int, default=8)
    parser.add_argument('--max-samples', type=non_negative_int, default=0,
                        help='0: the whole split')
    parser.add_argument('--num-workers', type=non_negative_int, default=0)


def _names(paths: Sequence[str]) -> list[str]:
    """Column names: the checkpoint's folder when unique, else the path."""
    names = [Path(p).parent.name or Path(p).stem for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


def run(args: argparse.Namespace) -> int:
    output_folder(args.out, '--out')  # before any evaluation
    given: dict[Path, str] = {}
    for path in args.checkpoints:  # the report has one column per checkpoint
        resolved = Path(path).resolve()
        if resolved in given:
            twice = (f'checkpoint {path} is given twice' if given[resolved] == path else
                     f'checkpoints {given[resolved]} and {path} are the same file')
            raise CheckpointError(f'{twice}: give each once')
        given[resolved] = path
    modalities = {path: checkpoint_metadata(read_checkpoint(path), path).modalities
                  for path in args.checkpoints}
    # the same sensors listed in another order are the same subsets
    if len({frozenset(m) for m in modalities.values()}) > 1:  # before hours of evaluation
        listed = ', '.join(f'{path} {list(m)}' for path, m in modalities.items())
        raise CheckpointError(f'the checkpoints take different modalities ({listed}); a '
                              'report compares models on the same subsets: evaluate them '
                              'separately')
    reports = {}
    for name, path in zip(_names(args.checkpoints), args.checkpoints, strict=True):
        report, metadata = evaluate_checkpoint(
            path, split=args.split, device=args.device, batch_size=args.batch_size,
            max_samples=args.max_samples, num_workers=args.num_workers)
        reports[f'{name} ({metadata.method})'] = in_order(report, modalities[args.checkpoints[0]])
        print(f'{path}: all {report.full:.1f}' + (f'  mean over missing subsets '
              f'{report.mean_missing:.1f}' if len(report.subsets) > 1 else ''))
    paths = write_report(reports, args.out, title=f'Evaluation on {args.split}')
    print(f'report: {paths["markdown"]}')
    return 0
