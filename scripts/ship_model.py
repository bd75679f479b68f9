"""Ship a trained checkpoint as the package's default model: weights, ONNX graph, model card.

Drops the optimizer, scheduler and scaler states (only a resumed training needs them),
records the scenes a benchmark run learned from (from its results: in the provenance and in
the data section ``mmp_ros evaluate-model`` renders its split from), checks the file loads
strictly and stays under the size limit, exports the ONNX graph the node runs beside it
(checked against PyTorch on every modality mask, as ``mmp_ros export`` does), and writes the
model card from the checkpoint's own metadata and the benchmark's results, so no number in
the card is typed by hand. ``test/test_shipped_model.py`` checks that the three files agree.

    PYTHONPATH=. python scripts/ship_model.py out/robustness_gpu/mmp_s1/checkpoint.pt \\
        --results out/robustness_gpu/results.json --run mmp_s1 --compare none_s1 \\
        --doc docs/robustness_gpu.md --out models/tiny_mmp.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmp_ros.atomic import replace_atomically  # noqa: E402
from mmp_ros.errors import InputError, ends_with_a_slash, output_folder  # noqa: E402
from mmp_ros.modalities import nonempty_subsets, subset_label  # noqa: E402
from mmp_ros.model import CheckpointError, checkpoint_step, load_checkpoint, read_checkpoint  # noqa: E402
from training.export import export_checkpoint  # noqa: E402

MAX_BYTES = 20 * 10**6  # the 20 MB


def card(path: Path, checkpoint: dict, results: dict | None, run: str, base_run: str,
         doc: str, onnx: Path | None = None) -> str:
    """The model card of ``path``; ``onnx``: its export written beside it now (a file of that
    name that was not is not this checkpoint's, and the card does not vouch for it)."""
    metadata = checkpoint['metadata']
    config = checkpoint['model_config']
    model, _, _ = load_checkpoint(path)
    masks = 2 ** len(metadata['modalities']) - 1  # the non-empty subsets; all but one miss some
    parameters = sum(p.numel() for p in model.parameters())
    lines = [f'# Model card: `{path.name}`', '',
             f'Multimodal semantic segmentation, `{config["size"]}` size, robustness method '
             f'`{metadata["method"]}`, {parameters:,} parameters, '
             f'{path.stat().st_size / 2**20:.1f} MiB.', '',
             "- License: Apache-2.0 (this project's; trained only on the project's synthetic "
             'data)',
             '- Size: ' + ', '.join(f'`{f.name}` {f.stat().st_size:,} bytes '
                                    f'({f.stat().st_size / 2**20:.1f} MiB)'
                                    for f in (path, onnx) if f is not None),
             '',
             '## Inputs and outputs', '',
             f'- modalities, in this order: {", ".join(metadata["modalities"])} (any non-empty '
             'subset may be missing; pass `available` (B, M) with the same order)',
             f'- input size {metadata["input_size"][0]}×{metadata["input_size"][1]}, each '
             'modality in its sensor representation (docs/architecture.md), normalized per '
             'channel:', '',
             '| modality | mean | std |', '| --- | --- | --- |']
    for m in metadata['modalities']:
        stats = metadata['normalization'][m]
        lines.append(f'| {m} | {", ".join(f"{v:.4g}" for v in stats["mean"])} | '
                     f'{", ".join(f"{v:.4g}" for v in stats["std"])} |')
    lines += ['', f'- {len(metadata["class_names"])} classes: '
              + ', '.join(f'`{n}`' for n in metadata['class_names']), '',
              '## Training', '']
    runs = (results or {}).get('runs', {})
    if run in runs:
        record = runs[run]
        source = {'mosaic': "the raw mosaic through the node's decoder",
                  'intensities': 'the clean polarizer planes'}[
            results['args'].get('polarization', 'intensities')]
        lines.append(f'- data: the generator\'s `train` split, first {record["train_scenes"]} '
                     f'scenes rendered once, polarization from {source}; {record["steps"]} '
                     f'steps × batch {record["batch_size"]} on {record["device"]}, seed '
                     f'{record["seed"]}')
    else:
        lines.append(f'- data: `{metadata["provenance"].get("dataset")}`, '
                     f'{checkpoint["step"]} steps, seed {metadata["provenance"].get("seed")}')
    lines.append(f'- command: `{metadata["provenance"].get("command", "")}`')
    lines += reproductions(results or {}, runs.get(run), masks - 1)
    base = metadata['provenance'].get('base_checkpoint')
    if metadata['method'] == 'mmp_adapt':
        base_record = runs.get(base_run)
        if base_record:
            base = (f'{base}: {base_record["steps"]} steps × batch {base_record["batch_size"]} '
                    f'on {base_record["train_scenes"]} scenes, {base_record["device"]}')
        losses = 'the alignment loss'
        if (checkpoint.get('train_config') or {}).get('distillation_weight'):
            losses += " and distillation from the frozen model's own all-modality prediction"
        model_config = checkpoint['model_config']
        learned = 'the projection module'
        if model_config.get('mask_adapters'):
            learned += (' and mask-gated adapters in the shared encoder, which act only '
                        'where a modality is missing,')
        lines += [f'- label-free: a model trained on all modalities (`none`, {base}) was '
                  f'frozen; only {learned} learned, from {losses}, on '
                  'unlabelled frames. With every modality present the output is the base '
                  "model's, bit for bit."]
    if results and run in results.get('runs', {}):
        lines += ['', '## Accuracy (mIoU %, synthetic test and OOD splits)', '',
                  f'| modalities available | {run} | {base_run} |', '| --- | --- | --- |']
        mine = results['runs'][run]['eval']
        other = results['runs'].get(base_run, {}).get('eval', {})
        modalities = tuple(metadata['modalities'])
        for split in ('test', 'ood'):
            lines.append(f'| **{split}** | | |')
            for subset in nonempty_subsets(modalities):
                key = subset_label(subset, modalities)
                theirs = other.get(split, {}).get('subsets', {}).get(key, {}).get('miou')
                lines.append(f'| {key} | {mine[split]["subsets"][key]["miou"]:.1f} | '
                             + (f'{theirs:.1f}' if theirs is not None else '–') + ' |')
            theirs = other.get(split, {}).get('mean_missing_miou')
            lines.append(f'| mean over the {masks - 1} missing subsets | '
                         f'{mine[split]["mean_missing_miou"]:.1f} | '
                         + (f'{theirs:.1f}' if theirs is not None else '–') + ' |')
        scenes = results.get('args', {}).get('eval_scenes')
        if scenes:  # the benchmark's first scenes of each split, whatever their number
            lines += ['', f'The {run} column again, from this file: `mmp_ros evaluate-model '
                      f'models/{path.name} --max-samples {scenes}` (`--split ood` for the '
                      'OOD split).']
        lines += ['', 'Full tables, every method and the measurement commands: '
                  f'[{doc}](../{doc}).']
    lines += ['', '## Files', '',
              f'- `{path.name}`: the checkpoint (PyTorch backend, further training, export)']
    if onnx is not None:
        lines.append(f'- `{onnx.name}` ({onnx.stat().st_size / 2**20:.1f} MiB): the same model '
                     'as one ONNX graph for every modality mask, the node\'s default; '
                     'exported by `scripts/ship_model.py` as `mmp_ros export --checkpoint '
                     f'models/{path.name} --out models/{onnx.name}` does, and checked against '
                     f'PyTorch on all {masks} masks')
    lines += ['', '## Limits', '',
              '- Trained on synthetic scenes only (training/data); on real sensors expect a '
              'domain gap until it is fine-tuned on labelled real data.']
    if 'thermal' in metadata['modalities']:
        lines.append('- Thermal is normalized in °C from the training scenes; the OOD split '
                     '(other ambient temperatures) shows how much a shifted thermal range costs.')
    lines.append('')
    return '\n'.join(lines)


def reproductions(results: dict, record: dict | None, missing: int) -> list[str]:
    """A line for each rerun of ``record``'s recipe that ``results`` holds: the records named
    in its ``cpu_reproductions``, in that order (``cpu_reproduction`` alone by default), each
    with the ``note`` that says what differed; one of another recipe is left out."""
    lines = []
    for key in results.get('cpu_reproductions', ['cpu_reproduction']):
        again = results.get(key, {})
        if record is None or any(again.get('run', {}).get(k) != record[k] for k in
                                 ('method', 'seed', 'steps', 'batch_size', 'train_scenes')):
            continue
        seconds = again['run'].get('train_seconds', again['run']['seconds'])
        test = again['run']['eval']['test']
        lead = (f'and again, {again["note"]}' if lines and again.get('note') else
                f'the same recipe again on {again["device"]}')
        lines.append(f'- {lead}: trained in {seconds / 60:.1f} min, test split '
                     f'{test["full_miou"]:.1f} with every modality and '
                     f'{test["mean_missing_miou"]:.1f} over the {missing} missing subsets '
                     f'(`{again["command"]}`)')
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='e.g. models/tiny_mmp_adapt.pt')
    parser.add_argument('--results', help="the benchmark's results.json, for the card")
    parser.add_argument('--run', default='', help='this model\'s run name in the results')
    parser.add_argument('--compare', default='none_s0', help='run shown beside it')
    parser.add_argument('--no-onnx', action='store_true', help='skip the ONNX export')
    parser.add_argument('--doc', default='docs/robustness.md',
                        help='the benchmark page the results come from, for the card')
    args = parser.parse_args(argv)
    try:
        return ship(parser, args)
    except InputError as exc:  # a missing or unusable file: its message alone
        print(f'ship_model: {exc}', file=sys.stderr)
        return 2


def read_results(path: str) -> dict:
    """The benchmark's results.json; a file that is not one is an :class:`InputError`."""
    try:
        results = json.loads(Path(path).read_text(encoding='utf-8'))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f'--results {path}: cannot read it as JSON '
                         f'({getattr(exc, "strerror", None) or exc})') from None
    if not isinstance(results, dict):
        raise InputError(f"--results {path}: not a benchmark's results.json (no 'runs')")
    return results


def checked(checkpoint: dict, partial: Path, out: Path) -> None:
    """Save ``checkpoint`` to ``partial`` and check it: under the size limit and loading
    strictly. Raised inside :func:`replace_atomically`, which then removes ``partial``: what
    ``out`` held (and its ONNX file and card beside it) is left as it was."""
    torch.save(checkpoint, partial)
    size = partial.stat().st_size
    if size > MAX_BYTES:
        raise InputError(f'{out}: {size / 1e6:.1f} MB exceeds the {MAX_BYTES / 1e6:g} MB '
                         'limit; nothing was written')
    load_checkpoint(partial)  # strict: what ships must load


def not_trained_by(checkpoint: dict, record: dict) -> list[str]:
    """What ``checkpoint`` says of its training (method, seed, steps) that the benchmark's
    ``record`` of a run does not: 'seed 1, the run's 0' for each; none for the run's own."""
    provenance = checkpoint['metadata'].get('provenance') or {}
    trained = {'method': checkpoint['metadata'].get('method'), 'seed': provenance.get('seed'),
               'steps': provenance.get('steps')}
    return [f"{key} {value!r}, the run's {record.get(key)!r}" for key, value in trained.items()
            if value is not None and value != record.get(key)]


def ship(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    results = read_results(args.results) if args.results else None
    runs = sorted((results or {}).get('runs', {}))
    for option, name in (('--run', args.run), ('--compare', args.compare)):
        if results is not None and name not in runs:
            # Else the card would lack its provenance and accuracy table, or show '–' beside.
            parser.error(f'{option} {name!r} is not a run of {args.results}: {", ".join(runs)}')
    if results is not None and 'eval' not in results['runs'][args.run]:
        # saved before its evaluation: the benchmark stopped in it
        raise InputError(f'--run {args.run}: not evaluated in {args.results} (the benchmark '
                         'stopped before it was); its command again evaluates it')
    if ends_with_a_slash(args.out):  # Path('models/') is 'models': written as that file
        raise InputError(f'--out {args.out} ends with a slash, as a folder does; give the '
                         f'checkpoint file to write, e.g. '
                         f'{Path(args.out) / Path(args.checkpoint).name}')
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f'--out {out} is a folder; give the checkpoint file to write, e.g. '
                         f'{out / Path(args.checkpoint).name}')
    if out.suffix in ('.onnx', '.md'):  # the names of the export and the card beside it
        raise InputError(f'--out {out}: the ONNX graph and the model card are written beside '
                         f'the checkpoint as {out.stem}.onnx and {out.stem}.md; give the '
                         f'checkpoint file to write, e.g. {out.with_suffix(".pt")}')
    output_folder(out.parent, '--out')  # before the export's work
    checkpoint = read_checkpoint(args.checkpoint)
    for key in ('optimizer', 'scheduler', 'scaler'):
        checkpoint[key] = None
    record = (results or {}).get('runs', {}).get(args.run)
    if not record:  # the card's steps are the checkpoint's: a KeyError once it was shipped
        try:
            checkpoint_step(checkpoint, args.checkpoint)
        except CheckpointError as exc:
            raise CheckpointError(f'{exc}; the model card says how many steps it was trained: '
                                  'give the --results and --run of the benchmark that trained '
                                  'it') from None
    if record and (differ := not_trained_by(checkpoint, record)):
        # Else the card and the figures the model carries (the demo's) would be another's.
        raise InputError(f'--run {args.run}: {args.checkpoint} was not trained by it '
                         f'({"; ".join(differ)}); give the run that trained it')
    if record:
        # Benchmark runs train on cached scenes handed to train(); say which, in the metadata
        # the runtime reads, not only in the card.
        provenance = checkpoint['metadata']['provenance']
        height, width = results['args']['size']
        polarization = results['args'].get('polarization', 'intensities')
        provenance['dataset'] = (f"SyntheticDataset('train', size=({height}, {width}), "
                                 f"length={record['train_scenes']}, "
                                 f"polarization={polarization!r}), rendered once and cached")
        provenance['dataset_params'] = {}
        provenance['benchmark_run'] = args.run
        # ... and in the data section `mmp_ros evaluate-model` renders its split from, as the
        # benchmark writes it since: one of an earlier benchmark holds the defaults (20000
        # scenes, polarization 'intensities' for a model trained on the mosaic's decoding).
        data = checkpoint.setdefault('train_config', {}).setdefault('data', {})
        params = {'length': record['train_scenes'], 'size': [height, width],
                  'polarization': polarization}
        if data.get('params') != params:
            print(f'note: {args.checkpoint} says it learned from data.params='
                  f'{data.get("params")}; {out} says {params}, the scenes of --run {args.run}')
            data['params'] = params
        # The benchmark's test-split figure per subset: what a live run (the demo) is
        # compared with, carried by the exported model itself.
        test = record['eval']['test']
        checkpoint['metadata']['metrics']['test_subsets'] = {
            key: scores['miou'] for key, scores in test['subsets'].items()}
        checkpoint['metadata']['metrics']['test_scenes'] = results['args']['eval_scenes']
    replace_atomically(out, lambda partial: checked(checkpoint, partial, out))
    onnx = None
    if not args.no_onnx:
        onnx, _ = export_checkpoint(out, out.with_suffix('.onnx'), verify=True)
        print(f'{onnx} ({onnx.stat().st_size / 2**20:.2f} MiB), checked against PyTorch')
    elif out.with_suffix('.onnx').is_file():
        print(f'note: {out.with_suffix(".onnx")} is left as it was, and out of the card: it is '
              f'not the export of this {out.name}')
    card_path = out.with_suffix('.md')
    card_path.write_text(card(out, checkpoint, results, args.run, args.compare, args.doc, onnx),
                         encoding='utf-8')
    print(f'{out} ({out.stat().st_size / 2**20:.2f} MiB) and {card_path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
