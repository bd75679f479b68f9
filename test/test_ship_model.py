"""scripts/ship_model.py: a run name that is not in the results is refused before shipping."""

from __future__ import annotations

import json

import pytest
from conftest import script_fixture

pytest.importorskip('torch', reason="needs torch (pip install '.[train]')")


script = script_fixture('ship_model')


@pytest.mark.parametrize(('argv', 'message'), [
    (['--run', 'mmp_s9'], "--run 'mmp_s9' is not a run of {results}: mmp_s1, none_s1"),
    ([], "--run '' is not a run of {results}: mmp_s1, none_s1"),
    (['--run', 'mmp_s1', '--compare', 'none_s0'], "--compare 'none_s0' is not a run of"),
])
def test_a_run_missing_from_the_results_is_refused(script, capsys, tmp_path, argv, message):
    results = tmp_path / 'results.json'
    results.write_text(json.dumps({'runs': {'mmp_s1': {}, 'none_s1': {}}}))
    out = tmp_path / 'model.pt'
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(tmp_path / 'trained.pt'), '--out', str(out), '--results', str(results),
                     '--compare', 'none_s1', *argv])
    assert exit_info.value.code == 2
    assert message.format(results=results) in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(('argv', 'message'), [
    (['{tmp}/none.pt', '--out', '{tmp}/m.pt'], 'ship_model: checkpoint not found: {tmp}/none.pt'),
    (['{tmp}/none.pt', '--out', '{tmp}/m.pt', '--results', '{tmp}/none.json'],
     'ship_model: --results {tmp}/none.json: cannot read it as JSON (No such file'),
    (['{tmp}/bad.json', '--out', '{tmp}/m.pt', '--results', '{tmp}/bad.json'],
     'ship_model: --results {tmp}/bad.json: cannot read it as JSON (Expecting value'),
    (['{tmp}/none.pt', '--out', '{tmp}/bad.json/m.pt'], 'ship_model: --out {tmp}/bad.json: cannot '
     'be a folder'),
    (['{tmp}/none.pt', '--out', '{tmp}'], 'ship_model: --out {tmp} is a folder; give the '
     'checkpoint file to write'),
    # was: the checkpoint written as m.onnx, then refused by the export, or written as m.md,
    # then overwritten by the card
    (['{tmp}/none.pt', '--out', '{tmp}/m.onnx'], 'ship_model: --out {tmp}/m.onnx: the ONNX '
     'graph and the model card are written beside the checkpoint as m.onnx and m.md; give the '
     'checkpoint file to write, e.g. {tmp}/m.pt'),
    (['{tmp}/none.pt', '--out', '{tmp}/m.md', '--no-onnx'], 'ship_model: --out {tmp}/m.md: the '
     'ONNX graph'),
    # was: the checkpoint written as the file 'models' (and models.onnx, models.md beside it)
    (['{tmp}/none.pt', '--out', '{tmp}/models/'], 'ship_model: --out {tmp}/models/ ends with a '
     'slash, as a folder does; give the checkpoint file to write, e.g. {tmp}/models/none.pt'),
])
def test_a_file_it_cannot_use_is_one_line(script, capsys, tmp_path, argv, message):
    (tmp_path / 'bad.json').write_text('not json')
    assert script.main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.format(tmp=tmp_path)) and err.count('\n') == 1, err
    assert not (tmp_path / 'm.pt').exists()


def test_a_run_the_benchmark_did_not_evaluate_is_one_line(script, capsys, tmp_path):
    results = tmp_path / 'results.json'
    results.write_text(json.dumps({'args': {'size': [32, 48], 'eval_scenes': 2},
                                   'runs': {'mmp_s1': {'steps': 10, 'train_scenes': 4},
                                            'none_s1': {}}}))
    trained = small_checkpoint(tmp_path / 'trained.pt')
    # was: a KeyError 'eval' traceback
    assert script.main([str(trained), '--out', str(tmp_path / 'model.pt'), '--results',
                        str(results), '--run', 'mmp_s1', '--compare', 'none_s1']) == 2
    assert capsys.readouterr().err == (f'ship_model: --run mmp_s1: not evaluated in {results} '
                                       '(the benchmark stopped before it was); its command '
                                       'again evaluates it\n')
    assert not (tmp_path / 'model.pt').exists()


def test_without_onnx_the_card_does_not_vouch_for_an_old_onnx_beside_it(script, capsys,
                                                                        tmp_path):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / 'models' / 'tiny_mmp.pt'
    old = tmp_path / 'model.onnx'
    old.write_bytes(b'an earlier model')
    assert script.main([str(shipped), '--out', str(tmp_path / 'model.pt'), '--no-onnx']) == 0
    assert f'note: {old} is left as it was' in capsys.readouterr().out
    model_card = (tmp_path / 'model.md').read_text()
    assert 'model.onnx' not in model_card and 'checked against PyTorch' not in model_card
    assert old.read_bytes() == b'an earlier model'


def small_checkpoint(path, modalities=('rgb', 'depth')):
    from mmp_ros.inference.testing import tiny_metadata, tiny_random_model
    from mmp_ros.model import save_checkpoint

    metadata = tiny_metadata(modalities=modalities, num_classes=3)
    return save_checkpoint(path, model=tiny_random_model(metadata), metadata=metadata)


def test_a_checkpoint_without_its_step_is_one_line_before_anything_is_shipped(script, capsys,
                                                                            tmp_path):
    """The card (without --results) gives the steps trained: a checkpoint without a step was
    a KeyError traceback once model.pt and model.onnx had been written."""
    import torch

    trained = small_checkpoint(tmp_path / 'trained.pt')
    saved = torch.load(trained, weights_only=True)
    del saved['step']
    torch.save(saved, trained)
    assert script.main([str(trained), '--out', str(tmp_path / 'model.pt')]) == 2
    assert capsys.readouterr().err == (
        f'ship_model: {trained}: records no step (not saved by a training run, or altered); '
        'the model card says how many steps it was trained: give the --results and --run of '
        'the benchmark that trained it\n')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['trained.pt']


def test_a_model_over_the_size_limit_leaves_the_shipped_files_as_they_were(script, capsys,
                                                                           tmp_path,
                                                                           monkeypatch):
    trained = small_checkpoint(tmp_path / 'trained.pt')
    shipped = {tmp_path / f'model.{suffix}': f'the shipped {suffix}'.encode()
               for suffix in ('pt', 'onnx', 'md')}
    for path, data in shipped.items():
        path.write_bytes(data)
    monkeypatch.setattr(script, 'MAX_BYTES', 1000)
    # was: model.pt replaced by the oversized model, then a SystemExit beside the old card
    assert script.main([str(trained), '--out', str(tmp_path / 'model.pt')]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'ship_model: {tmp_path / "model.pt"}: ') and err.count('\n') == 1
    assert err.endswith(' MB exceeds the 0.001 MB limit; nothing was written\n'), err
    assert {path: path.read_bytes() for path in shipped} == shipped
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.md', 'model.onnx', 'model.pt',
                                                          'trained.pt']


def test_the_card_counts_the_subsets_and_masks_of_the_model_s_own_modalities(script, tmp_path):
    from mmp_ros.model import read_checkpoint

    path = small_checkpoint(tmp_path / 'model.pt', modalities=('rgb', 'depth'))
    onnx = tmp_path / 'model.onnx'
    onnx.write_bytes(b'its export')
    scores = {'subsets': {key: {'miou': 50.0} for key in ('rgb', 'depth', 'all')},
              'mean_missing_miou': 40.0, 'full_miou': 60.0}
    record = {'method': 'mmp', 'seed': 1, 'steps': 10, 'batch_size': 2, 'train_scenes': 4,
              'device': 'cpu', 'eval': {'test': scores, 'ood': scores}}
    results = {'args': {}, 'runs': {'mmp_s1': record},
               'cpu_reproduction': {'device': 'cpu', 'command': 'again',
                                    'run': {**record, 'seconds': 60}}}
    text = script.card(path, read_checkpoint(path), results, 'mmp_s1', 'none_s1',
                       'docs/robustness.md', onnx)
    # was: 'the 14 missing subsets' and 'all 15 masks' whatever the model's modalities
    assert '14 missing' not in text and '15 masks' not in text
    assert text.count('over the 2 missing subsets') == 3
    assert 'checked against PyTorch on all 3 masks' in text
    assert 'Thermal' not in text


def test_the_card_lists_every_rerun_of_the_recipe_that_the_results_name_in_their_order(
        script, tmp_path):
    from mmp_ros.model import read_checkpoint

    path = small_checkpoint(tmp_path / 'model.pt', modalities=('rgb', 'depth'))
    scores = {'subsets': {key: {'miou': 50.0} for key in ('rgb', 'depth', 'all')},
              'mean_missing_miou': 40.0, 'full_miou': 60.0}
    record = {'method': 'mmp', 'seed': 1, 'steps': 10, 'batch_size': 2, 'train_scenes': 4,
              'device': 'cpu', 'eval': {'test': scores, 'ood': scores}}

    def rerun(command, seconds, **changed):
        return {'device': 'cpu', 'command': command, 'note': f'note of {command}',
                'run': {**record, **changed, 'seconds': seconds + 5, 'train_seconds': seconds}}

    results = {'args': {}, 'runs': {'mmp_s1': record},
               'cpu_reproductions': ['first', 'other_seed', 'later'],
               'later': rerun('later', 60), 'first': rerun('first', 120),
               'other_seed': rerun('other_seed', 90, seed=2)}
    lines = [line for line in script.card(path, read_checkpoint(path), results, 'mmp_s1',
                                          'none_s1', 'docs/robustness.md').splitlines()
             if 'trained in' in line]
    # was: only 'cpu_reproduction' was written; later reruns were added to the card by hand
    # and lost whenever the card was written again
    assert lines == [
        '- the same recipe again on cpu: trained in 2.0 min, test split 60.0 with every '
        'modality and 40.0 over the 2 missing subsets (`first`)',
        '- and again, note of later: trained in 1.0 min, test split 60.0 with every modality '
        'and 40.0 over the 2 missing subsets (`later`)']


def test_an_earlier_benchmark_s_checkpoint_ships_with_the_scenes_its_run_learned_from(
        script, capsys, tmp_path):
    """The benchmark wrote the default data section whatever it rendered (fixed since): a
    checkpoint it trained before said 20000 scenes at 128 x 160, polarization 'intensities',
    and ``mmp_ros evaluate-model`` on what was shipped from it rendered its split so (the
    shipped model's polarization alone: 21.8 % mIoU on 12 test scenes, 46.5 as trained)."""
    import torch

    from mmp_ros.inference.testing import tiny_metadata, tiny_random_model
    from mmp_ros.model import read_checkpoint, save_checkpoint
    from training.config import load_config
    from training.data.dataset import SyntheticDataset
    from training.datasets import build_dataset
    from training.evaluate import checkpoint_data_config

    metadata = tiny_metadata(modalities=('rgb', 'polarization'), num_classes=3, seed=1)
    trained = save_checkpoint(tmp_path / 'trained.pt', model=tiny_random_model(metadata),
                              metadata=metadata,
                              train_config=load_config(None, ['data.input_size=[32,48]',
                                                              'method=mmp']).to_dict())
    scores = {'subsets': {key: {'miou': 50.0} for key in ('rgb', 'polarization', 'all')},
              'mean_missing_miou': 40.0, 'full_miou': 60.0}
    record = {'method': 'mmp', 'seed': 1, 'steps': 10, 'batch_size': 2, 'train_scenes': 4,
              'device': 'cpu', 'eval': {'test': scores, 'ood': scores}}
    results = tmp_path / 'results.json'
    results.write_text(json.dumps({'args': {'size': [32, 48], 'polarization': 'mosaic',
                                            'eval_scenes': 2},
                                   'runs': {'mmp_s1': record, 'none_s1': record}}))
    out = tmp_path / 'model.pt'
    assert script.main([str(trained), '--out', str(out), '--results', str(results), '--run',
                        'mmp_s1', '--compare', 'none_s1', '--no-onnx']) == 0
    assert (f"note: {trained} says it learned from data.params={{'length': 20000, "
            "'size': [128, 160]}") in capsys.readouterr().out
    shipped = read_checkpoint(out)
    assert shipped['train_config']['data']['params'] == {
        'length': 4, 'size': [32, 48], 'polarization': 'mosaic'}
    evaluated = build_dataset(checkpoint_data_config(shipped, out), 'test')
    rendered = SyntheticDataset('test', size=(32, 48), length=4, polarization='mosaic')
    assert len(evaluated) == 4
    assert torch.equal(evaluated[0]['polarization'], rendered[0]['polarization'])


def test_a_run_that_did_not_train_the_checkpoint_is_refused(script, capsys, tmp_path):
    """Was: shipped with that run's card and figures, the demo's among them (models/tiny_mmp.pt,
    method mmp seed 1, with --run none_s0: its card said seed 0 and 90.4 with every modality,
    and none's 12.1 on rgb alone)."""
    trained = small_checkpoint(tmp_path / 'trained.pt')  # method mmp, seed 0
    scores = {'subsets': {key: {'miou': 50.0} for key in ('rgb', 'depth', 'all')},
              'mean_missing_miou': 40.0, 'full_miou': 60.0}
    record = {'method': 'mmp', 'seed': 0, 'steps': 10, 'batch_size': 2, 'train_scenes': 4,
              'device': 'cpu', 'eval': {'test': scores, 'ood': scores}}
    results = tmp_path / 'results.json'
    results.write_text(json.dumps({'args': {'size': [32, 48], 'eval_scenes': 2},
                                   'runs': {'mmp_s0': record,
                                            'none_s1': {**record, 'method': 'none',
                                                        'seed': 1}}}))
    out = tmp_path / 'model.pt'
    assert script.main([str(trained), '--out', str(out), '--results', str(results), '--run',
                        'none_s1', '--compare', 'mmp_s0', '--no-onnx']) == 2
    assert capsys.readouterr().err == (
        f"ship_model: --run none_s1: {trained} was not trained by it (method 'mmp', the run's "
        "'none'; seed 0, the run's 1); give the run that trained it\n")
    assert not out.exists()
    assert script.main([str(trained), '--out', str(out), '--results', str(results), '--run',
                        'mmp_s0', '--compare', 'none_s1', '--no-onnx']) == 0
