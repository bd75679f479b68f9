"""Evaluation: metrics from a confusion matrix, every subset, reports on disk, the CLI."""

from __future__ import annotations

import argparse
import json
import math
import re

import pytest
from conftest import needs

needs('torch')
needs('einops')

import torch  # noqa: E402
from toy_data import CueDataset  # noqa: E402

from mmp_ros.errors import OutputFolderError  # noqa: E402
from mmp_ros.modalities import nonempty_subsets, subset_label  # noqa: E402
from mmp_ros.model import CheckpointError  # noqa: E402
from training import evaluate  # noqa: E402
from training.config import load_config  # noqa: E402
from training.datasets import DatasetError  # noqa: E402
from training.metrics import Scores, SubsetReport, confusion_matrix, scores  # noqa: E402
from training.train import train  # noqa: E402

pytestmark = pytest.mark.usefixtures('torch_one_thread')


@pytest.fixture(scope='module')
def mmp_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp('mmp')
    config = load_config(None, [
        'method=mmp', 'steps=3', 'batch_size=4', 'progress=false', 'eval_every=0',
        'data.input_size=[16,16]', 'model.projection_stride=8', 'model.aggregate_stride=16',
        'data.dataset=toy_data:CueDataset', 'data.params={size: 8}', f'out_dir={out}',
        'data.normalization_samples=4',
    ])
    return train(config, train_dataset=CueDataset('train', 8)).checkpoint


def test_scores_from_a_known_confusion_matrix():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 2]])
    confusion = confusion_matrix(pred, label, num_classes=4)
    assert int(confusion.sum()) == 6  # ignored pixels left out
    result = scores(confusion)
    # IoU: class 0 = 1/3, class 1 = 2/3, class 2 = 1/2, class 3 absent (NaN, not averaged)
    assert result.miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3 * 100)
    assert result.pixel_accuracy == pytest.approx(4 / 6 * 100)
    assert math.isnan(result.class_iou[3])


def test_every_subset_is_scored_and_written(tmp_path, mmp_checkpoint):
    report, metadata = evaluate.evaluate_checkpoint(
        mmp_checkpoint, dataset=CueDataset('test', 4), device='cpu', batch_size=2)
    assert len(report.subsets) == 15 and 'all' in report.subsets
    assert report.mean_missing == pytest.approx(
        sum(s.miou for k, s in report.subsets.items() if k != 'all') / 14)
    assert set(report.cosine) == set(metadata.modalities)
    assert all(-1.0 <= v <= 1.0 for v in report.cosine.values())
    paths = evaluate.write_report({'mmp': report, 'again': report}, tmp_path, title='toy',
                                  ceilings={'all': 100.0, 'rgb': 60.0})
    text = paths['markdown'].read_text()
    assert text.count('\n| ') >= 17 and 'rgb+depth+polarization' in text
    assert 'Cosine similarity' in text and '![mIoU per subset](evaluation.png)' in text
    data = json.loads(paths['json'].read_text())
    assert data['mmp']['subsets']['all']['miou'] == pytest.approx(report.full)
    assert data['_ceiling']['rgb'] == 60.0
    assert paths['chart'].stat().st_size > 1000


def test_the_json_report_is_json_with_a_class_seen_nowhere(tmp_path):
    # A class absent from the labels and the predictions (a few samples) has no IoU: the
    # file held the bare token NaN, which strict JSON readers (jq, JavaScript) refuse.
    report = SubsetReport(('rgb', 'depth'))
    confusion = torch.tensor([[5, 1, 0], [2, 7, 0], [0, 0, 0]])
    report.subsets = {k: scores(confusion) for k in ('rgb', 'depth', 'all')}
    paths = evaluate.write_report({'few samples': report}, tmp_path)

    def refuse(token):
        raise ValueError(f'not JSON: {token}')

    data = json.loads(paths['json'].read_text(), parse_constant=refuse)
    assert data['few samples']['subsets']['all']['class_iou'][2] is None
    assert data['few samples']['full_miou'] == pytest.approx(report.full)


@pytest.mark.parametrize('series', [2, 12, 22, 45])
def test_a_chart_of_many_models_keeps_its_legend_in_the_image_and_its_colors_apart(series):
    from matplotlib.colors import to_rgba

    modalities = ('rgb', 'depth', 'polarization', 'thermal')
    reports = {}
    for index in range(series):
        report = SubsetReport(modalities)
        for subset in nonempty_subsets(modalities):
            report.subsets[subset_label(subset, modalities)] = Scores(50.0 + index, 90.0, [])
        reports[f'model {index}, a long descriptive name'] = report
    fig = evaluate.bar_figure(reports, title='toy', ceilings={'all': 100.0})
    fig.canvas.draw()
    legend = fig.axes[0].get_legend()
    inside = legend.get_window_extent().transformed(fig.transFigure.inverted())
    assert inside.y0 >= 0.0 and inside.y1 <= 1.0  # every row of the legend is drawn
    colors = {to_rgba(bar.get_facecolor()) for container in fig.axes[0].containers
              for bar in container[:1]}
    assert len(colors) == series  # no two models share a color


def test_evaluation_data_must_have_the_model_modalities(mmp_checkpoint):
    with pytest.raises(DatasetError, match="lacks modalities \\['thermal'\\]"):
        evaluate.evaluate_checkpoint(
            mmp_checkpoint, dataset=CueDataset('test', 2, modalities=('rgb', 'depth',
                                                                      'polarization')))


class OtherClasses(CueDataset):
    """The same scenes, labelled with other classes."""

    class_names = ('floor', 'wall', 'door')
    palette = ((128, 64, 128), (70, 70, 70), (0, 0, 255))


def test_evaluation_data_must_have_the_model_classes(mmp_checkpoint):
    # was scored without a word: 'door' pixels counted as the model's 'person'
    with pytest.raises(DatasetError, match=r"evaluation data \(test\) has the classes \['floor', "
                       r"'wall', 'door'\], the model \['floor', 'wall', 'person'\]"):
        evaluate.evaluate_checkpoint(mmp_checkpoint, dataset=OtherClasses('test', 2))


class UnknownLabels(CueDataset):
    """The model's classes, but some labels numbered otherwise (-1 for "ignore", or 7)."""

    def __init__(self, split: str, size: int, wrong: int) -> None:
        super().__init__(split, size)
        self.wrong = wrong

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = super().__getitem__(index)
        sample['label'][0, :3] = self.wrong
        return sample


@pytest.mark.parametrize('wrong', [7, -1])
def test_a_label_outside_the_model_classes_is_named(mmp_checkpoint, wrong):
    # was a RuntimeError traceback: "shape '[3, 3]' is invalid for input of size 25", or for
    # -1 "bincount only supports 1-d non-negative integral inputs"
    with pytest.raises(DatasetError, match=f"^a label holds class {wrong}, outside the model's "
                       r'3 classes \(0 to 2; 255 is ignored\)$'):
        evaluate.evaluate_checkpoint(mmp_checkpoint, dataset=UnknownLabels('test', 2, wrong),
                                     device='cpu')


def test_cli_reads_the_dataset_from_the_checkpoint(tmp_path, mmp_checkpoint, capsys):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args([str(mmp_checkpoint), '--split', 'test', '--out', str(tmp_path),
                              '--max-samples', '2', '--device', 'cpu'])
    assert evaluate.run(args) == 0
    assert 'mean over missing subsets' in capsys.readouterr().out
    assert (tmp_path / 'evaluation.md').is_file()


def test_a_checkpoint_is_evaluated_on_its_data_whatever_its_other_settings(tmp_path,
                                                                           mmp_checkpoint):
    """Only the data section of its train_config is read: one that today's rules refuse
    (base_checkpoint beside method mmp, as training took without a word before) is no
    reason to refuse the model."""
    checkpoint = torch.load(mmp_checkpoint, weights_only=True)
    checkpoint['train_config']['base_checkpoint'] = 'old/base.pt'
    torch.save(checkpoint, tmp_path / 'older.pt')
    report, metadata = evaluate.evaluate_checkpoint(tmp_path / 'older.pt', split='test',
                                                    max_samples=2, device='cpu')
    assert metadata.method == 'mmp' and report.subsets


@pytest.mark.parametrize('edit, message', [
    ('drop', r'holds no training config \(train_config is NoneType\) to take its data from'),
    ('list', r'holds no training config \(train_config is list\) to take its data from'),
    ('unknown', r"the data of its training config cannot be used \(data: unknown keys "
                r"\['shuffle'\]")])
def test_a_checkpoint_without_usable_data_settings_is_named(tmp_path, mmp_checkpoint, edit,
                                                            message):
    """evaluate-model takes the dataset from the checkpoint's train_config: without one it was
    a KeyError traceback, a list an AttributeError one, and a data key today's DataConfig does
    not know (another version's) 'data: unknown keys' naming no file, for a command that has no
    data option."""
    checkpoint = torch.load(mmp_checkpoint, weights_only=True)
    if edit == 'drop':
        del checkpoint['train_config']
    elif edit == 'list':
        checkpoint['train_config'] = [1]
    else:
        checkpoint['train_config']['data']['shuffle'] = True
    torch.save(checkpoint, tmp_path / 'edited.pt')
    with pytest.raises(CheckpointError, match=rf'^{tmp_path / "edited.pt"}: {message}'):
        evaluate.evaluate_checkpoint(tmp_path / 'edited.pt', max_samples=2, device='cpu')


def test_cli_refuses_checkpoints_of_different_modalities_before_evaluating(tmp_path,
                                                                          mmp_checkpoint):
    config = load_config(None, [
        'modalities=[rgb, depth]', 'steps=1', 'batch_size=4', 'progress=false', 'eval_every=0',
        'data.input_size=[16,16]', 'model.projection_stride=8', 'model.aggregate_stride=16',
        'data.normalization_samples=4', f'out_dir={tmp_path / "rgbd"}',
        'data.dataset=toy_data:CueDataset', 'data.params={size: 8, modalities: [rgb, depth]}',
    ])
    rgbd = train(config, train_dataset=CueDataset('train', 8, modalities=('rgb', 'depth')))
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args([str(mmp_checkpoint), str(rgbd.checkpoint), '--out', str(tmp_path),
                              '--max-samples', '2', '--device', 'cpu'])
    with pytest.raises(CheckpointError, match=r"different modalities .*\['rgb', 'depth'\]"):
        evaluate.run(args)


def test_cli_compares_checkpoints_of_the_same_modalities_listed_in_another_order(
        tmp_path, mmp_checkpoint):
    """They were refused as 'the checkpoints take different modalities': the same four."""
    order = ('thermal', 'polarization', 'depth', 'rgb')
    config = load_config(None, [
        f'modalities=[{", ".join(order)}]', 'steps=1', 'batch_size=4', 'progress=false',
        'eval_every=0', 'data.input_size=[16,16]', 'model.projection_stride=8',
        'model.aggregate_stride=16', 'data.normalization_samples=4',
        f'out_dir={tmp_path / "reversed"}', 'data.dataset=toy_data:CueDataset',
        'data.params={size: 8}',
    ])
    reversed_ = train(config, train_dataset=CueDataset('train', 8)).checkpoint
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args([str(mmp_checkpoint), str(reversed_), '--out', str(tmp_path),
                              '--max-samples', '2', '--device', 'cpu'])
    assert evaluate.run(args) == 0
    data = json.loads((tmp_path / 'evaluation.json').read_text())
    assert list(data['reversed (mmp)']['modalities']) == ['rgb', 'depth', 'polarization',
                                                          'thermal']
    (first,) = set(data) - {'reversed (mmp)'}
    assert set(data['reversed (mmp)']['subsets']) == set(data[first]['subsets'])
    # each subset's figures under the name the first model gives that subset
    report = SubsetReport(order)
    for index, subset in enumerate(nonempty_subsets(order)):
        report.subsets[subset_label(subset, order)] = Scores(float(index), 0.0, [])
    ordered = evaluate.in_order(report, ('rgb', 'depth', 'polarization', 'thermal'))
    assert ordered.subsets['rgb+thermal'] is report.subsets['thermal+rgb']
    assert ordered.subsets['all'] is report.subsets['all']
    assert list(ordered.subsets)[:4] == ['rgb', 'depth', 'polarization', 'thermal']


def test_a_model_of_one_modality_has_no_mean_over_missing_subsets(tmp_path, capsys):
    """It has none missing: the report had a row 'mean, 0 missing subsets' of –, the terminal
    'mean over missing subsets nan', and with ceilings the table was a ZeroDivisionError."""
    report = SubsetReport(('thermal',))
    report.subsets = {'all': scores(torch.tensor([[5, 1], [2, 7]]))}
    table = evaluate.markdown_table({'thermal only': report}, ceilings={'all': 66.0})
    assert 'missing' not in table and table.splitlines()[-1] == '| all | 66.2 | 66.0 |'
    config = load_config(None, [
        'modalities=[thermal]', 'steps=1', 'batch_size=4', 'progress=false', 'eval_every=0',
        'data.input_size=[16,16]', 'model.projection_stride=8', 'model.aggregate_stride=16',
        'data.normalization_samples=4', f'out_dir={tmp_path / "thermal"}',
        'data.dataset=toy_data:CueDataset', 'data.params={size: 8, modalities: [thermal]}',
    ])
    checkpoint = train(config, train_dataset=CueDataset('train', 8, modalities=('thermal',)))
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args([str(checkpoint.checkpoint), '--out', str(tmp_path / 'report'),
                              '--max-samples', '2', '--device', 'cpu'])
    capsys.readouterr()
    assert evaluate.run(args) == 0
    printed = capsys.readouterr().out
    assert re.match(f'^{re.escape(str(checkpoint.checkpoint))}: all [0-9.]+\n', printed)
    assert 'missing' not in (tmp_path / 'report' / 'evaluation.md').read_text()


@pytest.mark.parametrize('edit', ['drop', 'null'])
def test_cli_refuses_a_checkpoint_whose_metadata_lacks_its_modalities(tmp_path, mmp_checkpoint,
                                                                      edit):
    """The modalities of every checkpoint are compared before evaluating: metadata without
    them was a KeyError traceback ('modalities'), with null a TypeError one."""
    saved = torch.load(mmp_checkpoint, weights_only=True)
    if edit == 'drop':
        del saved['metadata']['modalities']
    else:
        saved['metadata']['modalities'] = None
    altered = tmp_path / 'altered.pt'
    torch.save(saved, altered)
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args([str(altered), '--out', str(tmp_path / 'report'), '--device', 'cpu'])
    with pytest.raises(CheckpointError, match=f'^{altered}: malformed model metadata'):
        evaluate.run(args)
    assert not list((tmp_path / 'report').iterdir())


def test_cli_refuses_a_checkpoint_given_twice_before_evaluating(tmp_path, mmp_checkpoint,
                                                               monkeypatch):
    """It was evaluated twice into a report of a single column."""
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    monkeypatch.chdir(mmp_checkpoint.parent)
    for paths, message in (([str(mmp_checkpoint)] * 2, f'checkpoint {mmp_checkpoint} is given '
                            'twice: give each once'),
                           ([mmp_checkpoint.name, f'./{mmp_checkpoint.name}'],
                            f'checkpoints {mmp_checkpoint.name} and ./{mmp_checkpoint.name} '
                            'are the same file')):
        args = parser.parse_args([*paths, '--out', str(tmp_path), '--device', 'cpu'])
        with pytest.raises(CheckpointError, match=f'^{message}'):
            evaluate.run(args)
    assert not list(tmp_path.iterdir())


def test_cli_refuses_an_output_that_cannot_be_a_folder_before_evaluating(tmp_path,
                                                                        mmp_checkpoint):
    (tmp_path / 'report').write_text('notes')
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args([str(mmp_checkpoint), '--out', str(tmp_path / 'report'),
                              '--max-samples', '2', '--device', 'cpu'])
    with pytest.raises(OutputFolderError, match=f'--out {tmp_path / "report"}: cannot be a'):
        evaluate.run(args)
