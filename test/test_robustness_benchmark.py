"""The robustness benchmark's report: its acceptance checks and the pages it renders.

The benchmark itself trains for hours (a script, not a test); what it concludes is computed
by small functions from recorded results. These tests check that arithmetic on hand-built
reports, and that each committed page is exactly what the script renders from the results
JSON committed beside it, so neither a page edited by hand nor a change to the renderer
can leave the docs saying something the data do not.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import needs, script_fixture, training_stopped_at

needs('torch')
needs('einops')

import torch  # noqa: E402

from mmp_ros.modalities import MODALITIES, nonempty_subsets, subset_label  # noqa: E402
from training.metrics import Scores, SubsetReport  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


rb = script_fixture('robustness_benchmark')


def report(full: float, missing: float, **subsets: float) -> SubsetReport:
    """A report with ``full`` on every modality, ``missing`` on every other subset, except
    the subsets named (labels with '+' written as '_')."""
    result = SubsetReport(MODALITIES)
    for subset in nonempty_subsets(MODALITIES):
        label = subset_label(subset)
        value = full if label == 'all' else subsets.get(label.replace('+', '_'), missing)
        result.subsets[label] = Scores(value, value, [])
    return result


def checks(rows) -> dict[str, tuple[str, bool]]:
    return {name: (measured, met) for name, measured, met in rows}


def test_mmp_checks_against_none_and_dropout(rb):
    got = checks(rb.criteria({'none': report(85.0, 36.0),
                              'dropout': report(82.5, 61.0, depth=36.0),
                              'mmp': report(84.0, 61.2, depth=35.5)}, ceilings={}))
    assert got['mmp mean missing-subset mIoU ≥ none + 15'][1]
    assert got['mmp full-modality mIoU within 1 point of none'] == ('-1.0', True)
    assert got['mmp mean missing-subset mIoU ≥ dropout'][1]
    assert got['mmp on no subset more than 1 point below dropout'] == ('-0.5 (depth)', True)
    assert got["mmp: worst subset ≥ dropout's worst"] == ('35.5 (depth) vs 36.0 (depth)', False)
    assert not any(name.startswith('moonshot') for name in got)  # no ceilings, no moonshot


def test_a_projection_variant_is_checked_against_dropout_trained_the_same_way(rb):
    got = checks(rb.criteria({'none': report(85.0, 36.0),
                              'dropout': report(82.5, 61.0, depth=36.0),
                              'mmp': report(83.0, 61.2, depth=35.5),
                              'dropout + full pass': report(84.6, 61.0, depth=33.0),
                              'mmp + full pass': report(84.5, 61.1, depth=33.5)}, {}))
    assert got['mmp + full pass full-modality mIoU within 1 point of none'] == ('-0.5', True)
    assert got['mmp + full pass mean missing-subset mIoU ≥ dropout + full pass'][1]
    assert got["mmp + full pass: worst subset ≥ dropout + full pass's worst"] == (
        '33.5 (depth) vs 33.0 (depth)', True)
    assert got['mmp full-modality mIoU within 1 point of none'] == ('-2.0', False)


def test_seed_means_show_each_difference_seed_by_seed(rb):
    per_seed = {'none': [report(85.0, 36.0), report(85.0, 35.0)],
                'dropout': [report(82.0, 61.0, depth=35.0), report(83.0, 61.0, depth=38.0)],
                'mmp': [report(83.0, 61.5, depth=35.0), report(82.0, 60.9, depth=35.6)]}
    means = {name: rb.seed_mean(reports) for name, reports in per_seed.items()}
    got = checks(rb.criteria(means, {}, by_seed=rb.BySeed(per_seed)))
    assert got['mmp mean missing-subset mIoU ≥ dropout'] == ('+0.1 (by seed +0.5 / -0.3)', True)
    assert got['mmp full-modality mIoU within 1 point of none'] == (
        '-2.5 (by seed -2.0 / -3.0)', False)
    # the subset where the mean is furthest under dropout, and that subset seed by seed
    assert got['mmp on no subset more than 1 point below dropout'] == (
        '-1.2 (depth) (by seed +0.0 / -2.4)', False)
    # each seed's own worst subsets (here depth for both, every seed)
    assert got["mmp: worst subset ≥ dropout's worst"] == (
        '35.3 (depth) vs 36.5 (depth) (by seed +0.0 / -2.4)', False)
    # one seed: nothing to show seed by seed
    first = rb.BySeed({name: reports[:1] for name, reports in per_seed.items()})
    one = checks(rb.criteria(means, {}, by_seed=first))
    assert one['mmp mean missing-subset mIoU ≥ dropout'] == ('+0.1', True)


def test_a_full_modality_gap_just_over_one_point_fails(rb):
    got = checks(rb.criteria({'none': report(85.0, 36.0), 'mmp': report(83.9, 61.0)}, {}))
    assert got['mmp full-modality mIoU within 1 point of none'] == ('-1.1', False)


def test_moonshot_is_the_share_of_dropouts_gap_to_the_ceiling(rb):
    ceilings = {subset_label(s): 80.0 for s in nonempty_subsets(MODALITIES)}
    got = checks(rb.criteria({'dropout': report(82.0, 60.0), 'mmp': report(82.0, 70.0)},
                             ceilings))
    name = "moonshot: mmp closes half of dropout's gap to the ceiling (missing subsets)"
    assert got[name] == ('50 % of 20.0 points', True)
    got = checks(rb.criteria({'dropout': report(82.0, 60.0), 'mmp': report(82.0, 69.0)},
                             ceilings))
    assert got[name] == ('45 % of 20.0 points', False)


def test_adaptation_checks(rb):
    name = 'mmp_adapt, conv + distillation + adapters'
    got = checks(rb.criteria({'none': report(85.0, 36.0), 'dropout': report(82.5, 61.0),
                              'mmp_adapt': report(85.0, 39.0),
                              name: report(85.0, 60.0, polarization=32.0)},  # mean 58
                             {}, adapt_ratios={'mmp_adapt': 0.05, name: 0.88}))
    assert got['mmp_adapt: full-modality mIoU equal to its base (none)'] == ('+0.00', True)
    assert got['mmp_adapt: mean missing-subset mIoU ≥ dropout − 3'] == ('-22.0', False)
    assert got["mmp_adapt: training time ≤ 10 % of its base's"] == ('5 %', True)
    assert got[f'{name}: mean missing-subset mIoU ≥ dropout − 3'] == ('-3.0', True)
    assert got[f'{name}: mean missing-subset mIoU above its base (label-free)'][1]
    assert got[f"{name}: training time ≤ 10 % of its base's"] == ('88 %', False)
    assert got[f"{name}: worst subset ≥ dropout's worst"][1] is False


def test_an_adapted_model_that_changes_the_full_modality_output_fails(rb):
    got = checks(rb.criteria({'none': report(85.0, 36.0), 'mmp_adapt': report(84.99, 50.0)},
                             {}))
    assert got['mmp_adapt: full-modality mIoU equal to its base (none)'] == ('-0.01', False)


def test_adaptation_time_is_over_the_median_from_scratch_run_of_its_seed(rb):
    cpu = 'CPU (x86_64, 2 cores)'
    runs = {f'{method}_s0': {'device': cpu, 'train_seconds': seconds}
            for method, seconds in zip(rb.METHODS, (300.0, 200.0, 210.0, 190.0), strict=True)}
    runs['mmp_adapt_s0'] = {'device': cpu, 'train_seconds': 41.0}
    ratios = rb.adapt_time_ratios({'runs': runs}, [0])
    assert ratios['mmp_adapt'] == pytest.approx(41.0 / 210.0)  # upper median of four
    assert 'mmp_adapt + distillation' not in ratios  # not run: no ratio


def test_adaptation_is_timed_against_the_from_scratch_runs_there_are(rb):
    cpu = 'CPU (x86_64, 2 cores)'
    runs = {'none_s1': {'device': cpu, 'train_seconds': 2400.0},
            'ablation_adapt_conv_adapters_s1': {'device': cpu, 'train_seconds': 240.0}}
    ratios = rb.adapt_time_ratios({'runs': runs}, [1])
    assert ratios == {'mmp_adapt, conv + distillation + adapters': pytest.approx(0.1)}


def test_rows_with_fewer_seeds_get_a_summary_of_their_own(rb):
    runs = {f'{name}_s{seed}': {} for name in rb.METHODS for seed in (0, 1, 2, 3)}
    runs |= {f'ablation_full_pass_s{seed}': {} for seed in (0, 1)}
    runs |= {f'ablation_film_s{seed}': {} for seed in (0, 1, 2, 3)}
    runs['ablation_adapt_distill_1_s2'] = {}  # one seed: no mean to show
    groups = rb.summary_seed_groups({'runs': runs}, [0, 1, 2, 3])
    assert groups == [[0, 1, 2, 3], [0, 1]]


def test_missing_count_groups_average_their_subsets(rb):
    groups = rb.by_missing_count(report(90.0, 50.0, rgb=20.0))
    assert groups[0] == 90.0
    assert groups[3] == pytest.approx((20.0 + 3 * 50.0) / 4)
    assert groups[1] == groups[2] == 50.0


@pytest.mark.parametrize('page', ['robustness', 'robustness_gpu'])
def test_committed_page_is_what_its_results_render(rb, tmp_path, page):
    results = json.loads((REPO / 'docs' / 'data' / f'{page}_results.json').read_text())
    rendered = tmp_path / f'{page}.md'
    rb.write_doc(results, Path('out') / page, rendered)
    committed = (REPO / 'docs' / f'{page}.md').read_text()
    assert rendered.read_text() == committed, (
        f'docs/{page}.md differs from what docs/data/{page}_results.json renders: '
        f'regenerate it (the command is at the end of the page)')


def test_a_page_of_ablations_alone_renders(rb, tmp_path):
    # `--methods` with nothing after it in a new directory: no run trained from scratch
    results = json.loads((REPO / 'docs' / 'data' / 'robustness_results.json').read_text())
    name = 'ablation_full_pass_s2'
    results['runs'] = {name: results['runs'][name]}
    rendered = tmp_path / 'page.md'
    rb.write_doc(results, tmp_path, rendered)
    table = rendered.read_text().split('## Ablations (mmp, test split)')[1]
    assert f'| {name} | every sample also passed with every modality' in table
    assert '| mmp_s' not in table


def test_ablations_can_be_planned_without_the_methods(rb):
    args = rb.parse_args(['--seeds', '2', '3', '--methods', '--ablation-methods', 'mmp',
                          '--ablations', 'full_pass'])
    assert [run.name for run in rb.planned_runs(args)] == ['ablation_full_pass_s2']


def test_the_gpu_budget_bases_adaptation_is_an_ablation_of_its_own(rb, tmp_path):
    args = rb.parse_args(['--seeds', '1', '--methods', 'none', '--adapt-steps', '0',
                          '--batch-size', '128', '--ablation-methods', 'mmp_adapt',
                          '--ablations', 'conv_adapters_r64_windows', '--ablation-steps', '2400',
                          '--out', str(tmp_path)])
    base, adapt = rb.planned_runs(args)
    assert (base.name, adapt.name) == ('none_s1', 'ablation_adapt_conv_adapters_r64_windows_s1')
    assert (adapt.steps, adapt.base) == (2400, 'none_s1')
    config = rb.run_config(adapt, args, tmp_path)
    # the base's batches of 128 are the benchmark's; the adaptation's own are 16
    assert (config.batch_size, config.model.mask_adapters, config.mask.drop_probability) == \
        (16, 64, 0.7)
    assert config.teacher_cache and tuple(config.distill_crop) == (128, 128)
    assert (config.alignment_weight, config.distillation_weight, config.optim.lr) == \
        (0.0, 1.0, 0.006)
    assert config.base_checkpoint == str(tmp_path / 'none_s1' / 'checkpoint.pt')
    assert config.projection_fit.steps == 0
    # the same with the projection fitted first, and nothing else changed
    def planned(ablation):
        run = rb.planned_runs(rb.parse_args([
            '--seeds', '1', '--methods', 'none', '--adapt-steps', '0', '--batch-size', '128',
            '--ablation-methods', 'mmp_adapt', '--ablations', ablation,
            '--ablation-steps', '2400', '--out', str(tmp_path)]))[1]
        return rb.run_config(run, args, tmp_path).to_dict()

    unfitted = config.to_dict()
    fitted = planned('conv_adapters_r64_windows_fit')
    assert fitted['projection_fit'] == {'steps': 1000, 'batch_size': 64, 'lr': 0.003}
    assert {**fitted, 'projection_fit': unfitted['projection_fit'],
            'out_dir': config.out_dir} == unfitted
    # ... and since the twenty-fourth session: the fit at 0.01, the masks stratified
    even = planned('conv_adapters_r64_windows_even_fit')
    assert even['projection_fit'] == {'steps': 1000, 'batch_size': 64, 'lr': 0.01}
    assert even['mask'] == {**unfitted['mask'], 'stratified': True}
    assert {**even, 'projection_fit': unfitted['projection_fit'], 'mask': unfitted['mask'],
            'out_dir': config.out_dir} == unfitted


def test_a_run_records_the_scenes_it_learns_from_as_evaluate_model_reads_them(rb, tmp_path):
    """Its data section was the defaults (polarization 'intensities', 128 x 160) whatever the
    benchmark rendered: `mmp_ros evaluate-model` on its checkpoint (the shipped model's) fed
    polarization as intensities to a model trained on the mosaic's decoding, 21.8 % mIoU on
    polarization alone where the same 12 scenes as trained give 46.5."""
    from training.data.dataset import SyntheticDataset
    from training.datasets import build_dataset

    args = rb.parse_args(['--seeds', '1', '--methods', 'mmp', '--size', '32', '48',
                          '--train-scenes', '40', '--out', str(tmp_path)])
    config = rb.run_config(rb.planned_runs(args)[0], args, tmp_path)
    assert config.data.params == {'length': 40, 'size': [32, 48], 'polarization': 'mosaic'}
    scene = build_dataset(config.data, 'test')[0]
    rendered = SyntheticDataset('test', size=(32, 48), length=1, polarization='mosaic')[0]
    assert torch.equal(scene['polarization'], rendered['polarization'])


class Killed(BaseException):
    """The process stopped mid-write (SIGKILL, a full disk): nothing after it runs."""


def test_a_benchmark_stopped_while_saving_keeps_its_results(rb, tmp_path, monkeypatch):
    saved = json.dumps({'runs': {'none_s0': {'method': 'none', 'seed': 0, 'steps': 20}},
                        'args': {}})
    (tmp_path / 'results.json').write_text(saved)

    def half_then_killed(path, text, *args, **kwargs):
        with open(path, 'w') as stream:
            stream.write(text[:len(text) // 2])
        raise Killed

    monkeypatch.setattr(Path, 'write_text', half_then_killed)
    with pytest.raises(Killed):
        rb.main(['--report-only', '--no-overhead', '--out', str(tmp_path),
                 '--doc', str(tmp_path / 'doc.md')])
    monkeypatch.undo()
    assert (tmp_path / 'results.json').read_text() == saved  # as it was, not half of it


def test_a_render_stopped_while_caching_is_rendered_again(rb, tmp_path, monkeypatch):
    def half_then_killed(tensors, path, *args, **kwargs):
        Path(path).write_bytes(b'PK\x03\x04')  # the start of a zip, as torch.save begins
        raise Killed

    monkeypatch.setattr(rb.torch, 'save', half_then_killed)
    with pytest.raises(Killed):
        rb.cached_split('val', 2, (32, 32), tmp_path, 0, 'mosaic')
    monkeypatch.undo()
    scenes = rb.cached_split('val', 2, (32, 32), tmp_path, 0, 'mosaic')  # not EOFError
    assert len(scenes) == 2
    assert len(rb.cached_split('val', 2, (32, 32), tmp_path, 0, 'mosaic')) == 2  # from the file


def test_ctrl_c_ends_the_benchmark_with_a_line_not_a_traceback(rb, tmp_path, monkeypatch,
                                                                 capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rb, 'cached_split', interrupted)
    assert rb.main(['--out', str(tmp_path), '--doc', str(tmp_path / 'doc.md')]) == 130
    assert 'the same command resumes' in capsys.readouterr().err


@pytest.mark.parametrize(('size', 'message'), [
    (['4', '4'], '--size must be at least 8x8 and at most 4096 a side, got 4x4'),
    (['5000', '5000'], '--size must be at least 8x8 and at most 4096 a side, got 5000x5000'),
    (['33', '32'], '--size 33 32: the 2x2 polarizer mosaic needs an even height and width'),
])
def test_a_size_the_generator_does_not_render_is_refused_before_the_out_folder(
        rb, tmp_path, capsys, size, message):
    # was: the out folder made, then a ValueError traceback from SyntheticDataset (4x4, 33x32),
    # or thousands of scenes rendered at 5000x5000
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as exit_info:
        rb.main(['--size', *size, '--out', str(out), '--doc', str(out / 'doc.md')])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(('option', 'value'), [
    ('--steps', '0'), ('--batch-size', '0'), ('--train-scenes', '-1'), ('--eval-scenes', '0'),
    ('--seeds', '-2'), ('--adapt-steps', '-1'), ('--threads', '-1'), ('--num-workers', '-1'),
])
def test_a_count_that_cannot_be_is_refused_before_the_out_folder(rb, tmp_path, capsys, option,
                                                                  value):
    # was: accepted; --steps 0 or --eval-scenes 0 trained or scored nothing, then failed deep
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as exit_info:
        rb.main([option, value, '--out', str(out), '--doc', str(out / 'doc.md')])
    assert exit_info.value.code == 2
    assert f'argument {option}: must be' in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(('option', 'value', 'message'), [
    ('--drop-probability', '1.5', '--drop-probability 1.5: mask.drop_probability must be in '
     '[0, 1)'),
    ('--full-probability', '-0.1', '--full-probability -0.1: mask.full_probability must be in '
     '[0, 1]'),
    ('--lr', '-1', '--lr -1.0: optim.lr: -1.0 is out of range (> 0)'),
    ('--time-budget-s', '-5', 'argument --time-budget-s: must be 0 or more, got -5'),
])
def test_a_setting_training_refuses_is_refused_before_the_out_folder(rb, tmp_path, capsys,
                                                                    option, value, message):
    """--drop-probability 1.5, --full-probability -0.1 or --lr -1: the scenes were rendered,
    then the first run's config ended in a ConfigError traceback; --time-budget-s -5 skipped
    every run ('time budget: skipping ...'), as if the budget were spent."""
    out = tmp_path / 'out'
    small = ['--size', '24', '32', '--train-scenes', '1', '--eval-scenes', '1', '--steps', '1',
             '--methods', 'none', '--ablations', '--adapt-steps', '0', '--no-overhead',
             '--num-workers', '0']
    with pytest.raises(SystemExit) as exit_info:
        rb.main([*small, option, value, '--out', str(out), '--doc', str(out / 'doc.md')])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize('option', ['--out', '--cache', '--doc'])
def test_an_output_that_cannot_be_a_folder_is_one_line_before_the_runs(rb, tmp_path, capsys,
                                                                       option, monkeypatch):
    """A file where --out or --cache would be a folder was a FileExistsError traceback; a
    --doc under a file a NotADirectoryError one, once every run had been trained."""
    monkeypatch.setattr(rb, 'cached_split', lambda *a: pytest.fail('rendered'))
    blocked = tmp_path / 'file'
    blocked.write_text('')
    paths = {'--out': tmp_path / 'out', '--cache': tmp_path / 'cache',
             '--doc': tmp_path / 'doc' / 'robustness.md'}
    paths[option] = blocked / 'robustness.md' if option == '--doc' else blocked
    assert rb.main(['--size', '24', '32', *(str(a) for item in paths.items() for a in item)]) \
        == 2
    assert capsys.readouterr().err == (f'robustness_benchmark: {option} {blocked}: cannot be a '
                                       'folder (File exists)\n')


def test_a_device_training_cannot_use_is_refused_and_auto_named(rb, tmp_path, capsys):
    """--device gpu rendered the scenes, then ended in a ConfigError traceback (--device cuda
    without CUDA: an AssertionError one, out folder made); --device auto ran, but the page,
    the determinism and the CPU overhead, which go by --device, took it for no CPU."""
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as exit_info:
        rb.main(['--device', 'gpu', '--out', str(out), '--doc', str(out / 'doc.md')])
    assert exit_info.value.code == 2
    assert "argument --device: device 'gpu': expected auto, cpu, cuda or cuda:N" in \
        capsys.readouterr().err
    assert not out.exists()
    assert rb.parse_args(['--device', 'auto']).device == (
        'cuda' if torch.cuda.is_available() else 'cpu')


@pytest.mark.parametrize(('text', 'message'), [
    ('not json', 'cannot read it as JSON'),
    ('[1, 2]', "not a benchmark's results.json (no 'runs' mapping)"),
])
def test_a_merge_of_what_is_not_a_results_file_is_one_line(rb, tmp_path, text, message):
    # was: a JSONDecodeError or TypeError traceback, after the out folder was made
    other, out = tmp_path / 'other.json', tmp_path / 'out'
    other.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        rb.main(['--merge', str(other), '--out', str(out), '--doc', str(out / 'doc.md')])
    assert str(exit_info.value).startswith(f'{other}: {message}')
    assert not out.exists()


# A benchmark of seconds: one method, a few steps on a few small scenes.
TINY = ['--steps', '4', '--adapt-steps', '0', '--batch-size', '2', '--train-scenes', '4',
        '--eval-scenes', '2', '--size', '32', '32', '--threads', '1', '--num-workers', '0',
        '--no-overhead', '--ablations', '--methods', 'none']


@pytest.fixture
def scenes(tmp_path_factory, rb, monkeypatch):
    """A scene cache the tiny benchmarks share (rendering costs more than their training),
    and their validation on 2 of the 64 scenes (it costs more still)."""
    run_config = rb.run_config

    def validating_less(*args, **kwargs):
        config = run_config(*args, **kwargs)
        config.data.val_samples = 2
        return config

    monkeypatch.setattr(rb, 'run_config', validating_less)
    return tmp_path_factory.getbasetemp() / 'scenes'


def tiny_benchmark(rb, out: Path, cache: Path, *extra: str) -> dict:
    assert rb.main([*TINY, '--out', str(out), '--cache', str(cache),
                    '--doc', str(out / 'doc.md'), *extra]) == 0
    return json.loads((out / 'results.json').read_text())['runs']


def test_a_run_stopped_in_evaluation_keeps_its_training_times(rb, tmp_path, scenes,
                                                              monkeypatch):
    evaluate = rb.evaluate_run

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(rb, 'evaluate_run', killed)
    with pytest.raises(Killed):
        tiny_benchmark(rb, tmp_path, scenes)
    monkeypatch.setattr(rb, 'evaluate_run', evaluate)
    trained = json.loads((tmp_path / 'results.json').read_text())['runs']['none_s0']
    assert trained['train_seconds'] > 0
    run = tiny_benchmark(rb, tmp_path, scenes)['none_s0']  # evaluates, trains nothing
    assert 'eval' in run
    assert {k: v for k, v in run.items() if k != 'eval'} == trained


def test_a_resumed_run_is_timed_over_all_its_parts(rb, tmp_path, scenes, monkeypatch):
    with training_stopped_at(5, Killed), pytest.raises(Killed):  # after step 4's checkpoint
        tiny_benchmark(rb, tmp_path, scenes, '--steps', '8')
    with (tmp_path / 'none_s0' / 'log.csv').open(newline='') as stream:
        before = float([r for r in csv.DictReader(stream) if r['step'] == '4'][0]['seconds'])
    train, resumed = rb.train, []
    monkeypatch.setattr(rb, 'train', lambda *a, **k: resumed.append(train(*a, **k)) or resumed[0])
    run = tiny_benchmark(rb, tmp_path, scenes, '--steps', '8')['none_s0']
    assert (resumed[0].start_step, len(resumed[0].losses)) == (4, 4)
    assert run['train_seconds'] == pytest.approx(before + resumed[0].train_seconds)
    assert run['seconds'] == pytest.approx(before + resumed[0].seconds)


def test_runs_of_other_settings_in_the_same_out_are_refused_not_reused(rb, tmp_path, scenes):
    finished = tiny_benchmark(rb, tmp_path, scenes)['none_s0']
    for changed in (['--steps', '6'], ['--eval-scenes', '3'], ['--lr', '0.001'],
                    ['--drop-probability', '0.7']):
        with pytest.raises(SystemExit, match=r'none_s0 \(.*: use another --out'):
            tiny_benchmark(rb, tmp_path, scenes, *changed)
    # another seed is the same run in all but its seed; the first's is kept, not retrained
    runs = tiny_benchmark(rb, tmp_path, scenes, '--seeds', '0', '1')
    assert set(runs) == {'none_s0', 'none_s1'}
    assert runs['none_s0'] == finished


def test_a_log_timed_over_its_parts_or_restarted_at_each_gives_the_same_total(rb):
    """Three parts of 10, 5 and 3 s: the log counts on over them; logs written before it
    did restarted at each resume, and an older run resumed now has both."""
    def rows(*seconds):
        return [{'step': str(step), 'seconds': str(s)}
                for step, s in enumerate(seconds, start=1)]

    counted_on = rows(4, 10, 12, 15, 16, 18)
    restarted = rows(4, 10, 2, 5, 1, 3)
    older_then_now = rows(4, 10, 2, 5, 6, 8)
    assert {rb.logged_seconds(r) for r in (counted_on, restarted, older_then_now)} == {18}


def test_a_run_stopped_in_training_resumes_only_with_its_settings(rb, tmp_path, scenes):
    with training_stopped_at(3, Killed), pytest.raises(Killed):
        tiny_benchmark(rb, tmp_path, scenes)
    with pytest.raises(SystemExit, match=r"none_s0 \(batch_size 2 -> 3\)"):
        tiny_benchmark(rb, tmp_path, scenes, '--batch-size', '3')
    assert 'eval' in tiny_benchmark(rb, tmp_path, scenes)['none_s0']


def test_report_only_on_an_empty_out_says_there_is_nothing_to_report(rb, tmp_path):
    with pytest.raises(SystemExit, match='no benchmark has run into'):
        rb.main(['--report-only', '--no-overhead', '--out', str(tmp_path / 'new'),
                 '--doc', str(tmp_path / 'doc.md')])


def test_an_adaptation_whose_base_was_trained_again_is_refused_not_kept(rb, tmp_path, scenes):
    adapting = ['--adapt-steps', '2']
    first = tiny_benchmark(rb, tmp_path, scenes, *adapting)
    assert tiny_benchmark(rb, tmp_path, scenes, *adapting) == first  # the same base: kept
    shutil.rmtree(tmp_path / 'none_s0')  # to train the base again
    with pytest.raises(SystemExit,
                       match=r"mmp_adapt_s0 \(base_weights '[0-9a-f]{16}' -> 'none'\)"):
        tiny_benchmark(rb, tmp_path, scenes, *adapting)


def test_a_benchmark_stopped_in_a_run_counts_the_time_until_the_stop(rb, tmp_path, scenes,
                                                                     monkeypatch):
    def trained_a_while_then_stopped(*args, **kwargs):
        time.sleep(0.5)
        raise KeyboardInterrupt

    monkeypatch.setattr(rb, 'train', trained_a_while_then_stopped)
    assert rb.main([*TINY, '--out', str(tmp_path), '--cache', str(scenes),
                    '--doc', str(tmp_path / 'doc.md')]) == 130
    assert json.loads((tmp_path / 'results.json').read_text())['wall_seconds'] >= 0.5


def test_a_run_checkpoint_without_its_step_is_one_line(rb, tmp_path, scenes, capsys):
    """A run's checkpoint.pt without a step (not saved by a training run, or altered) was a
    KeyError traceback where the benchmark asked whether the run was done."""
    from mmp_ros.inference.testing import tiny_metadata, tiny_random_model
    from mmp_ros.model import save_checkpoint

    metadata = tiny_metadata(modalities=('rgb', 'depth'), num_classes=3)
    checkpoint = save_checkpoint(tmp_path / 'none_s0' / 'checkpoint.pt',
                                 model=tiny_random_model(metadata), metadata=metadata)
    saved = torch.load(checkpoint, weights_only=True)
    del saved['step']
    torch.save(saved, checkpoint)
    assert rb.main([*TINY, '--out', str(tmp_path), '--cache', str(scenes),
                    '--doc', str(tmp_path / 'doc.md')]) == 2
    assert capsys.readouterr().err.endswith(
        f'robustness_benchmark: {checkpoint}: records no step (not saved by a training run, or '
        f'altered); delete {tmp_path / "none_s0"} to train that run again\n')
