"""Training: config, masks, determinism, resume, checkpoints, label-free adaptation."""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import needs, training_stopped_at

needs('torch')
needs('einops')

import torch  # noqa: E402
from toy_data import CueDataset  # noqa: E402

from mmp_ros.errors import OutputFolderError  # noqa: E402
from mmp_ros.modalities import INPUT_CHANNELS, MODALITIES  # noqa: E402
from mmp_ros.model import (  # noqa: E402
    CHECKPOINT_FORMAT,
    CheckpointError,
    MultimodalSegmenter,
    build_model,
    load_checkpoint,
    read_checkpoint,
)
from training.adapt import adapt, adapt_config  # noqa: E402
from training.config import ConfigError, MaskConfig, load_config  # noqa: E402
from training.datasets import DatasetError, StepBatchSampler, UnlabelledDataset  # noqa: E402
from training.history import History  # noqa: E402
from training.masking import sample_masks, subset_distribution  # noqa: E402
from training.normalize import compute_normalization, normalize  # noqa: E402
from training.projection_fit import fit_projection  # noqa: E402
from training.teacher_cache import TeacherCache  # noqa: E402
from training.train import (  # noqa: E402
    ADAPTED_PREFIXES,
    TrainStep,
    crop_origin,
    lr_factor,
    resolve_device,
    soft_cross_entropy,
    train,
)

FAST = ['data.input_size=[16,16]', 'batch_size=4', 'progress=false', 'eval_every=0',
        'optim.warmup_steps=2', 'model.projection_stride=8', 'model.aggregate_stride=16',
        'data.normalization_samples=8', 'log_every=1']


pytestmark = pytest.mark.usefixtures('torch_one_thread')


def run(tmp: Path, *extra: str, steps: int = 3, data: CueDataset | None = None):
    config = load_config(None, [*FAST, f'steps={steps}', f'out_dir={tmp}', *extra])
    return train(config, train_dataset=data or CueDataset('train', 12),
                 val_dataset=CueDataset('val', 4))


# --- configuration -------------------------------------------------------------------------


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('method: dropout\noptim:\n  lr: 0.01\nmask:\n  drop_probability: 0.3\n')
    config = load_config(path, ['optim.lr=5e-4', 'modalities=[rgb, thermal]'])
    assert (config.method, config.optim.lr, config.mask.drop_probability) == \
        ('dropout', 5e-4, 0.3)
    assert config.modalities == ('rgb', 'thermal')
    assert load_config(None, []).to_dict()['data']['input_size'] == [128, 160]


@pytest.mark.parametrize('text, where', [
    ('optim:\n  warmup_steps: 5\nsteps: 3\noptim:\n  lr: 0.01\n', "'optim' is given twice "
     r'\(lines 1 and 4\)'),
    ('optim:\n  lr: 0.1\n  lr: 0.01\n', r"'lr' is given twice \(lines 2 and 3\)"),
    ('data: {input_size: [8, 8], input_size: [16, 16]}\n',
     r"'input_size' is given twice \(line 1\)")])
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, text, where):
    """YAML keeps the last of a key given twice without a word: a second optim: section added
    below the first dropped the first's warmup_steps, and training went on with the default."""
    path = tmp_path / 'twice.yaml'
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf'^{path}: {where}; YAML would keep the last alone: '
                       'give it once$'):
        load_config(path)


def test_a_config_file_may_merge_a_mapping_and_override_its_keys(tmp_path):
    path = tmp_path / 'merged.yaml'
    path.write_text('optim:\n  lr: 0.1\n  warmup_steps: 3\nmask:\n  full_probability: 0.5\n'
                    'projection_fit:\n  steps: 0\n  <<: {batch_size: 8, steps: 2}\n')
    config = load_config(path)
    assert (config.optim.lr, config.optim.warmup_steps) == (0.1, 3)
    assert (config.projection_fit.steps, config.projection_fit.batch_size) == (0, 8)


def test_data_params_overrides_edit_the_params_of_the_dataset_in_force(tmp_path):
    # without a config file, data.params.size=... replaced the default params, so length fell
    # to SyntheticDataset's own 1000; and another dataset named alone was handed the default
    # dataset's length and size, which toy_data:CueDataset refused
    synthetic = {'length': 20000, 'size': [128, 160]}
    assert load_config(None, []).data.params == synthetic
    assert load_config(None, ['data.params.size=[64, 64]']).data.params == \
        {'length': 20000, 'size': [64, 64]}
    assert load_config(None, ['data.params={size: [64, 64]}']).data.params == {'size': [64, 64]}
    assert load_config(None, ['data.params={size: [64, 64]}', 'data.params.length=5']) \
        .data.params == {'size': [64, 64], 'length': 5}
    folder = 'data.dataset=training.data.loaders:SyntheticFolder'
    assert load_config(None, [folder, 'data.params.root=out/synth']).data.params == \
        {'root': 'out/synth'}
    assert load_config(None, ['data.dataset=toy_data:CueDataset']).data.params == {}
    path = tmp_path / 'c.yaml'  # a file's params are what the dotted overrides edit
    path.write_text('data:\n  params: {length: 7}\n')
    assert load_config(path, ['data.params.size=[64, 64]']).data.params == \
        {'length': 7, 'size': [64, 64]}
    path.write_text('data:\n  dataset: toy_data:CueDataset\n')
    assert load_config(path, ['data.params.size=4']).data.params == {'size': 4}
    path.write_text('data:\n  num_workers: 1\n')
    assert load_config(path, ['data.params.length=9']).data.params == synthetic | {'length': 9}

@pytest.mark.parametrize(('overrides', 'message'), [
    (['modalities=[rgb, sonar]'], "unknown modality \\['sonar'\\]"),
    (['optim.learning_rate=1'], "optim: unknown keys \\['learning_rate'\\]"),
    (['method=best'], "unknown 'best'"),
    (['method=mmp_adapt'], 'needs base_checkpoint'),
    (['method=mmp_adapt', 'base_checkpoint=base.pt', 'alignment_weight=0'],
     'no loss to learn from'),
    # trained from scratch without a word, the path recorded as its base in the provenance
    (['method=none', 'base_checkpoint=base.pt'], "method 'none' trains from scratch"),
    (['mask.drop_probability={lidar: 0.2}'], "names modalities \\['lidar'\\]"),
    (['optim.lr=-1'], r'optim.lr: -1.0 is out of range \(> 0\)'),
    (['optim.betas=[2, 0.9]'], r'optim.betas: \[2.0, 0.9\] is out of range \(two values in'),
    (['optim.betas=[a, b]'], r"optim.betas\[0\]: expected a number, got 'a'"),
    (['data.input_size=[128.5, 160]'], r'data.input_size\[0\]: expected an integer, got 128.5'),
    (['data.input_size=[128, true]'], r'data.input_size\[1\]: expected an integer, got True'),
    (['modalities=[rgb, 3]'], r'modalities\[1\]: expected a string, got 3'),
    (['optim.warmup_steps=-3'], r'optim.warmup_steps: -3 is out of range'),
    (['data.num_workers=-2'], r'data.num_workers: -2 is out of range \(>= 0\)'),
    (['method=mmp_adapt', 'base_checkpoint=base.pt', 'teacher_cache=true'],
     'teacher_cache keeps the targets of distillation'),
    (['method=mmp_adapt', 'base_checkpoint=base.pt', 'distill_crop=[32, 32]'],
     'distill_crop crops what distillation trains on'),
    (['method=mmp_adapt', 'base_checkpoint=base.pt', 'distillation_weight=1',
      'distill_crop=[48, 32]'], 'multiples of 32 pixels, got \\[48, 32\\]'),
    (['method=mmp_adapt', 'base_checkpoint=base.pt', 'distillation_weight=1',
      'projection_fit.steps=10'], 'projection_fit .* set teacher_cache=true'),
    (['method=mmp_adapt', 'base_checkpoint=base.pt', 'distillation_weight=1',
      'teacher_cache=true', 'projection_fit.steps=10', 'model.projection_stage=stem'],
     "projection_fit .* needs model.projection_stage 'encoder'"),
    (['projection_fit.batch_size=0'], 'projection_fit: steps must be >= 0, batch_size and lr'),
    (['optim.lr=.inf'], 'optim.lr: expected a finite number, got inf'),
    (['alignment_weight=.nan'], 'alignment_weight: expected a finite number, got nan'),
    (['mask.drop_probability={rgb: .nan}'], 'drop_probability.rgb: expected a finite number'),
    (['data.params=5'], 'data.params: expected a mapping, got 5'),
    (['model.modality_widths=5'], 'model.modality_widths: expected a mapping, got 5'),
    (['model.modality_widths.rgb=abc'], "modality_widths.rgb: expected an integer, got 'abc'"),
    (['model.token_strides.depth=2.5'], 'token_strides.depth: expected an integer, got 2.5'),
    # each was torch's traceback ('Overflow when unpacking long long', or in the sampler)
    (['seed=99999999999999999999'], r'seed: 99999999999999999999 is out of range'),
    (['seed=20000000000000'], r'seed: 20000000000000 is out of range'),
    (['seed=-20000000000000'], r'seed: -20000000000000 is out of range'),
    (['out_dir='], 'out_dir is empty'),  # trained into the current folder
    (['out_dir=""'], 'out_dir is empty'),
])
def test_bad_config_stops_with_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_a_config_that_is_no_yaml_text_is_named(tmp_path, base_checkpoint):
    """A folder, or a checkpoint given for the config, was IsADirectoryError's or
    UnicodeDecodeError's traceback."""
    with pytest.raises(ConfigError, match=f'config {tmp_path} is a folder; give the YAML file'):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=f'{base_checkpoint}: not a YAML text file '
                       r'\(invalid start byte at byte \d+\)'):
        load_config(base_checkpoint)


@pytest.mark.parametrize('device', ['gpu', 'cuda:x', '', 'mps', 'xla', 'meta'])
def test_a_device_torch_does_not_know_is_named(tmp_path, device):
    """mps and xla (torch knows them, this build has neither) ended in a traceback from
    model.to; meta 'trained' weights that hold no values."""
    with pytest.raises(ConfigError, match=f"device '{device}': expected auto, cpu, cuda or"):
        run(tmp_path, f'device="{device}"')


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs a machine without CUDA')
@pytest.mark.parametrize('device', ['cuda', 'cuda:1'])
def test_a_cuda_device_without_cuda_is_named_as_written(tmp_path, device):
    """device=cuda was reported as 'cuda:0', a name the user never wrote."""
    with pytest.raises(ConfigError, match=f"^device '{device}' requested but CUDA is not"):
        run(tmp_path, f'device={device}')


def test_a_cuda_device_beyond_the_machines_is_refused_in_words():
    """cuda:3 on a one-GPU machine ended in torch's 'invalid device ordinal' traceback, as did
    device=cuda (or auto) in a torchrun process whose local rank had no GPU of its own."""
    with pytest.raises(ConfigError, match=r"^device 'cuda:3': this machine has 1 CUDA device "
                       r'\(cuda:0\)$'):
        resolve_device('cuda:3', cuda_devices=1)
    with pytest.raises(ConfigError, match=r"^device 'cuda' is cuda:2 for the process of local "
                       r'rank 2, but this machine has 2 CUDA devices \(cuda:0 to cuda:1\): '
                       'start at most 2 processes per machine$'):
        resolve_device('cuda', local_rank=2, cuda_devices=2)
    with pytest.raises(ConfigError, match="^device 'auto' is cuda:1 for the process of local"):
        resolve_device('auto', local_rank=1, cuda_devices=1)
    assert resolve_device('cuda:1', cuda_devices=2) == torch.device('cuda:1')
    assert resolve_device('cuda', local_rank=1, cuda_devices=2) == torch.device('cuda:1')
    assert resolve_device('auto', local_rank=1, cuda_devices=0) == torch.device('cpu')
    assert resolve_device('cpu:0', cuda_devices=0).type == 'cpu'
    with pytest.raises(ConfigError, match="^device 'cuda:1' names one GPU for every process"):
        resolve_device('cuda:1', local_rank=1, cuda_devices=2)  # rank 0 took cuda:1 as well


def test_shipped_configs_load():
    for path in sorted(Path(__file__).parents[1].glob('config/train_*.yaml')):
        adapting = 'method: mmp_adapt' in path.read_text()
        load_config(path, ['base_checkpoint=x.pt'] if adapting else [])


@pytest.mark.parametrize(('overrides', 'message'), [
    (['data.params.bogus=1'], "unexpected keyword argument 'bogus'"),
    (['data.train_split=nope'], "refuses split 'nope' .* unknown split 'nope'"),
    (['data.params.length=0'], r'do not fit split capacity'),
])
def test_dataset_that_refuses_its_params_or_split_names_them(tmp_path, overrides, message):
    config = load_config(None, [*FAST, 'steps=1', f'out_dir={tmp_path}', *overrides])
    with pytest.raises(DatasetError, match=message):
        train(config)


def test_dataset_without_a_needed_modality_is_named(tmp_path):
    data = CueDataset('train', 4, modalities=('rgb', 'depth'))
    with pytest.raises(DatasetError, match="lacks modalities \\['polarization', 'thermal'\\]"):
        run(tmp_path, data=data)


# --- pieces ----------------------------------------------------------------------------------


def test_masks_are_never_empty_and_follow_the_probabilities():
    g = torch.Generator().manual_seed(0)
    masks = sample_masks(4000, MODALITIES, MaskConfig(0.0, {'rgb': 0.1, 'thermal': 0.9}), g)
    assert masks.any(1).all()
    rate = masks.float().mean(0)
    assert rate[0] > 0.85 and rate[3] < 0.2 and 0.45 < rate[1] < 0.6
    always = sample_masks(50, MODALITIES, MaskConfig(1.0, 0.5), g)
    assert always.all()


def test_subset_distribution_is_what_independent_draws_give():
    config = MaskConfig(0.2, {'rgb': 0.1, 'depth': 0.5, 'polarization': 0.7, 'thermal': 0.9})
    masks, probabilities = subset_distribution(config, MODALITIES)
    assert masks.shape == (15, 4) and masks.any(1).all()
    assert len(set(map(tuple, masks.tolist()))) == 15
    assert probabilities.sum().item() == pytest.approx(1.0)
    drawn = sample_masks(40_000, MODALITIES, config, torch.Generator().manual_seed(0))
    frequencies = (drawn[:, None, :] == masks[None]).all(2).double().mean(0)
    assert torch.allclose(frequencies, probabilities, atol=0.006)
    # with every modality kept: the full set's own probability, plus full_probability
    full = masks.all(1)
    alone = 0.9 * 0.5 * 0.3 * 0.1 / (1 - 0.1 * 0.5 * 0.7 * 0.9)
    assert probabilities[full].item() == pytest.approx(0.2 + 0.8 * alone)


@pytest.mark.parametrize('config', [MaskConfig(0.0, 0.7), MaskConfig(0.2, 0.5),
                                    MaskConfig(0.0, {'rgb': 0.0, 'thermal': 0.9})])
def test_stratified_masks_give_each_subset_its_share_of_every_batch(config):
    config = replace(config, stratified=True)
    masks, probabilities = subset_distribution(config, MODALITIES)
    g = torch.Generator().manual_seed(1)

    def subset_counts(batches):  # (batches, S): how many rows of each batch hold each subset
        return torch.stack([(b[:, None, :] == masks[None]).all(2).sum(0) for b in batches])

    batches = [sample_masks(16, MODALITIES, config, g) for _ in range(3000)]
    counts = subset_counts(batches)
    expected = 16 * probabilities
    # within one row of its expected count, in every batch (independent draws: not so)
    assert (counts >= expected.floor()).all() and (counts <= expected.ceil()).all()
    # unbiased: over the batches, each subset as often as its probability
    assert torch.allclose(counts.double().mean(0), expected, atol=0.02)
    assert (counts[:, probabilities == 0] == 0).all()
    # rows in random order, not sorted by subset; the same generator, the same masks
    assert len({str(b.tolist()) for b in batches[:50]}) > 10
    again = torch.Generator().manual_seed(1)
    assert torch.equal(sample_masks(16, MODALITIES, config, again), batches[0])
    independent = [sample_masks(16, MODALITIES, replace(config, stratified=False), g)
                   for _ in range(300)]
    spread = subset_counts(independent)
    assert ((spread < expected.floor()) | (spread > expected.ceil())).any()


def test_lr_warms_up_then_decays_to_zero():
    values = [lr_factor(s, total=10, warmup=3, power=1.0) for s in range(11)]
    assert values[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert values[3] == 1.0 and values[10] == 0.0
    assert all(a >= b for a, b in zip(values[2:], values[3:], strict=False))


def test_batches_are_a_function_of_seed_and_step_and_split_across_ranks():
    whole = list(StepBatchSampler(10, 4, seed=1, steps=6))
    resumed = list(StepBatchSampler(10, 4, seed=1, start_step=3, steps=3))
    assert resumed == whole[3:]
    halves = [list(StepBatchSampler(10, 4, seed=1, steps=6, rank=r, world_size=2))
              for r in range(2)]
    assert [a + b for a, b in zip(*halves, strict=True)] == whole
    first_epoch = sum(whole, [])[:10]
    assert sorted(first_epoch) == list(range(10))


def test_normalization_from_data_gives_zero_mean_unit_std():
    data = CueDataset('train', 8)
    table = compute_normalization(data, MODALITIES, max_samples=0)
    stacked = {m: torch.stack([data[i][m] for i in range(8)]) for m in MODALITIES}
    normalized = normalize(stacked, table)
    for m in MODALITIES:
        x = normalized[m].transpose(0, 1).flatten(1)
        torch.testing.assert_close(x.mean(1), torch.zeros(x.shape[0]), atol=1e-4, rtol=0)
        torch.testing.assert_close(x.std(1, correction=0), torch.ones(x.shape[0]), atol=1e-3,
                                   rtol=0)


# --- training runs --------------------------------------------------------------------------


@pytest.mark.parametrize('method', ['none', 'dropout', 'mask_token', 'mmp'])
def test_same_seed_same_losses(tmp_path, method):
    first = run(tmp_path / 'a', f'method={method}')
    second = run(tmp_path / 'b', f'method={method}')
    assert len(first.losses) == 3 and all(math.isfinite(v) for v in first.losses)
    assert first.losses == second.losses
    other = run(tmp_path / 'c', f'method={method}', 'seed=1')
    assert other.losses != first.losses


@pytest.mark.parametrize('extra', [('method=none',), ('method=mmp',), (
    'method=dropout', 'model.mask_adapters=8', 'model.mask_conditioning=true')])
def test_training_reads_no_memory_it_did_not_write(tmp_path, monkeypatch, extra):
    """``train`` turns off deterministic mode's NaN fill of new tensors. Kept on, every
    tensor an operator did not write would hold NaN: the losses and weights are the same bit
    for bit, so none does."""
    import training.train as train_module

    use_deterministic_algorithms = train_module.use_deterministic_algorithms

    def with_fill(device):
        use_deterministic_algorithms(device)
        assert not torch.utils.deterministic.fill_uninitialized_memory
        torch.utils.deterministic.fill_uninitialized_memory = True

    without = run(tmp_path / 'without', *extra)
    monkeypatch.setattr(train_module, 'use_deterministic_algorithms', with_fill)
    try:
        filled = run(tmp_path / 'with', *extra)
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = False
    assert filled.losses == without.losses and all(map(math.isfinite, without.losses))
    weights = [torch.load(r.checkpoint, weights_only=True)['state_dict']
               for r in (without, filled)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_full_pass_adds_the_same_samples_with_every_modality(tmp_path):
    # Every mask full: the full pass repeats the masked pass exactly (batch-norm statistics
    # of a batch twice over are the batch's), so the first step's loss is twice the plain one.
    plain = run(tmp_path / 'plain', 'method=mmp', 'mask.full_probability=1', steps=1)
    twice = run(tmp_path / 'twice', 'method=mmp', 'mask.full_probability=1',
                'mask.full_pass=true', steps=1)
    assert twice.losses[0] == pytest.approx(2 * plain.losses[0], rel=1e-5)
    # With masks drawn, it is another loss, and training runs on it.
    masked = run(tmp_path / 'masked', 'method=dropout', steps=2)
    paired = run(tmp_path / 'paired', 'method=dropout', 'mask.full_pass=true', steps=2)
    assert all(math.isfinite(v) for v in paired.losses) and paired.losses != masked.losses
    saved = read_checkpoint(paired.checkpoint)['train_config']['mask']
    assert saved['full_pass'] is True


def test_full_tail_ends_masked_training_with_every_modality(tmp_path, monkeypatch):
    import training.train as train_module

    seen = []
    forward = train_module.TrainStep.forward

    def recording(self, inputs, available):
        seen.append(available.clone())
        return forward(self, inputs, available)

    monkeypatch.setattr(train_module.TrainStep, 'forward', recording)
    masked = run(tmp_path / 'masked', 'method=dropout', 'mask.full_probability=0', steps=8)
    drawn, seen[:] = list(seen), []
    tail = run(tmp_path / 'tail', 'method=dropout', 'mask.full_probability=0',
               'mask.full_tail=0.25', steps=8)
    # the first 6 steps draw the same masks and learn the same; the last 2 keep every modality
    assert all(torch.equal(a, b) for a, b in zip(seen[:6], drawn[:6], strict=True))
    assert tail.losses[:6] == masked.losses[:6]
    assert not all(bool(m.all()) for m in drawn[6:])
    assert all(bool(m.all()) for m in seen[6:])
    assert read_checkpoint(tail.checkpoint)['train_config']['mask']['full_tail'] == 0.25


@pytest.mark.parametrize(('extra', 'message'), [
    (['method=none'], "mask.full_tail ends masked training .* method 'none'"),
    (['method=mmp_adapt', 'base_checkpoint=b.pt'], "method 'mmp_adapt'"),
    (['method=mmp', 'mask.full_tail=1'], r'fraction of the steps in \[0, 1\), got 1')])
def test_full_tail_needs_masked_training_and_a_fraction(extra, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ['mask.full_tail=0.1', *extra])


@pytest.mark.parametrize('method', ['none', 'mmp_adapt'])
def test_full_pass_needs_masked_training(method):
    with pytest.raises(ConfigError, match=f"mask.full_pass .* method '{method}'"):
        load_config(None, [f'method={method}', 'mask.full_pass=true',
                           *(['base_checkpoint=b.pt'] if method == 'mmp_adapt' else [])])


def test_a_batch_that_does_not_split_over_the_processes_stops_before_anything(tmp_path,
                                                                               monkeypatch):
    """Under torchrun (WORLD_SIZE 2) each process ended in a ValueError's traceback, after
    reading the data for the normalization."""
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(ConfigError, match='batch_size 5 is global: it must split evenly over '
                       'the 2 processes'):
        run(tmp_path / 'out', 'batch_size=5')
    assert not (tmp_path / 'out').exists()


def test_every_process_checks_the_validation_data(tmp_path, monkeypatch):
    """Only rank 0 built the validation data: under torchrun the other processes went on
    into the first step's collective and ended in a gloo 'Connection closed by peer'
    traceback each after rank 0's one-line refusal."""
    import torch.distributed as dist

    monkeypatch.setenv('RANK', '1')  # rank 1 of 2, its collectives in a group of one
    monkeypatch.setenv('WORLD_SIZE', '2')
    dist.init_process_group('gloo', store=dist.HashStore(), rank=0, world_size=1)
    try:
        with pytest.raises(DatasetError, match=r'validation data \(val\) has no "label"'):
            train(load_config(None, [*FAST, 'steps=1', 'eval_every=1', f'out_dir={tmp_path}']),
                  train_dataset=CueDataset('train', 4),
                  val_dataset=UnlabelledDataset(CueDataset('val', 4), MODALITIES))
    finally:
        dist.destroy_process_group()


def test_python_m_training_train_prints_an_input_error_alone_and_records_its_command(
        tmp_path, capsys):
    """``python -m training.train`` is what torchrun launches: a wrong setting was a traceback
    in every process, and the checkpoint recorded the command without its first argument."""
    from training.train import main

    assert main(['--set', 'steps=-1']) == 2
    assert capsys.readouterr().err == 'python -m training.train: steps must be positive, got -1\n'
    argv = [arg for option in [*FAST, 'steps=1', 'data.dataset=toy_data:CueDataset',
                               'data.params={size: 4}', f'out_dir={tmp_path}']
            for arg in ('--set', option)]
    assert main(argv) == 0
    _, metadata, _ = load_checkpoint(tmp_path / 'checkpoint.pt')
    assert metadata.provenance['command'] == ' '.join(['python -m training.train', *argv])


@pytest.mark.parametrize('where', ['file', 'file/run'])
def test_out_dir_that_cannot_be_a_folder_stops_before_training(tmp_path, where):
    (tmp_path / 'file').write_text('notes')
    with pytest.raises(OutputFolderError, match=f'out_dir {tmp_path / where}: cannot be a '
                       'folder'):
        run(tmp_path / where)
    assert (tmp_path / 'file').read_text() == 'notes'


@pytest.mark.parametrize('folder', ['read-only', '/proc/self'])
def test_out_dir_that_takes_no_file_stops_before_training(tmp_path, folder):
    """A folder that exists but cannot be written into (read-only, another user's) passed
    the check: the log's OSError traceback came after the data and model were set up."""
    if folder == 'read-only':
        if os.geteuid() == 0:
            pytest.skip('root writes into a read-only folder')
        folder = tmp_path / 'read-only'
        folder.mkdir(mode=0o555)
    with pytest.raises(OutputFolderError, match=f'out_dir {folder}: cannot write into it'):
        run(Path(folder))


@pytest.mark.parametrize('name', ['checkpoint.pt', 'log.csv', 'loss.png', 'miou.png'])
def test_a_folder_in_place_of_a_file_the_run_writes_stops_before_training(tmp_path, name):
    """A folder named checkpoint.pt, log.csv, loss.png or miou.png in out_dir ended the run
    in an IsADirectoryError traceback: for checkpoint.pt and the curves only once every step
    had run."""
    (tmp_path / name).mkdir()
    with pytest.raises(OutputFolderError, match=f'out_dir {tmp_path}: {tmp_path / name} is a '
                       f'folder, where the run writes its {name}; move it away, or give '
                       r'another out_dir \(--set out_dir=DIR\)'):
        run(tmp_path, steps=1)


def test_an_unreadable_checkpoint_in_out_dir_says_how_to_go_on(tmp_path):
    """A damaged out_dir/checkpoint.pt (a copy of the run folder cut short) stopped the run
    with 'not a readable mmp_ros checkpoint (...)' alone: nothing said that resume=false or
    another out_dir goes on."""
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'checkpoint.pt').write_bytes(b'PK\x03\x04cut short')
    with pytest.raises(CheckpointError, match=r'checkpoint\.pt: not a readable mmp_ros '
                       r'checkpoint \(.*\); the run would resume from it: give another out_dir '
                       r'\(--set out_dir=DIR\), or --set resume=false to start afresh there'):
        run(tmp_path / 'run', steps=1)
    assert run(tmp_path / 'run', 'resume=false', steps=1).losses


def test_resume_continues_exactly(tmp_path):
    straight = run(tmp_path / 'straight', steps=4)
    run(tmp_path / 'resumed', steps=2)
    resumed = run(tmp_path / 'resumed', steps=4)
    assert resumed.losses == straight.losses[2:]
    a = read_checkpoint(straight.checkpoint)['state_dict']
    b = read_checkpoint(resumed.checkpoint)['state_dict']
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / 'resumed' / 'log.csv').read_text().splitlines()
    assert [line.split(',')[0] for line in log[1:]] == ['1', '2', '3', '4']
    for plot in ('loss.png', 'miou.png'):
        assert (tmp_path / 'resumed' / plot).stat().st_size > 0


def test_the_logged_seconds_count_on_over_a_resumed_run(tmp_path):
    """The seconds column restarted from 0 on resume: the time curve was a sawtooth."""
    run(tmp_path, steps=3)
    run(tmp_path, steps=4)
    with (tmp_path / 'log.csv').open(newline='') as stream:
        seconds = [float(row['seconds']) for row in csv.DictReader(stream)]
    assert len(seconds) == 4 and seconds == sorted(seconds) and seconds[3] > seconds[2]


def test_the_log_keeps_steps_from_a_million_whole_and_resumes_past_them(tmp_path):
    """Steps were written with 6 significant digits, 1000000 as 1e+06 and 1234567 as
    1.23457e+06, and resuming past them ended in int()'s ValueError."""
    history = History(tmp_path)
    for step in (999_999, 1_000_000, 1_234_567):
        history.append({'step': step, 'loss': 1.0, 'seconds': 2.0})
    with (tmp_path / 'log.csv').open(newline='') as stream:
        assert [row['step'] for row in csv.DictReader(stream)] == \
            ['999999', '1000000', '1234567']
    assert [r['step'] for r in History(tmp_path, resume_step=1_234_567).rows] == \
        [999_999, 1_000_000, 1_234_567]
    header, first, second, _ = (tmp_path / 'log.csv').read_text().splitlines()
    older = [header, first, second.replace('1000000,', '1e+06,', 1), '']
    (tmp_path / 'log.csv').write_text('\n'.join(older))  # as the log was written before
    assert [r['step'] for r in History(tmp_path, resume_step=1_000_000).rows] == \
        [999_999, 1_000_000]


def test_a_log_line_cut_short_is_resumed_past(tmp_path):
    """A run killed while log.csv's last line was written (a power cut) left it cut short:
    resuming ended in a TypeError traceback, float(None) for its missing fields; a line
    whose step was cut short (or another program's text) in float()'s ValueError."""
    history = History(tmp_path)
    for step in (1, 2):
        history.append({'step': step, 'loss': 1.0, 'seconds': float(step)})
    with (tmp_path / 'log.csv').open('a') as stream:
        stream.write('3,0.5\n4x,1.0\n')
    rows = History(tmp_path, resume_step=3).rows
    assert [r['step'] for r in rows] == [1, 2, 3]
    assert rows[2]['loss'] == 0.5 and math.isnan(rows[2]['seconds'])
    assert History(tmp_path, resume_step=3).seconds_before == 2.0


def test_a_log_saved_again_by_a_spreadsheet_keeps_its_rows_on_resume(tmp_path):
    """A log.csv saved again as 'CSV UTF-8' (a spreadsheet writes a byte-order mark and CRLF)
    lost every row on resume without a word: its first column was read as '\\ufeffstep'."""
    history = History(tmp_path)
    for step in (1, 2, 3):
        history.append({'step': step, 'loss': 1.0, 'seconds': float(step)})
    text = (tmp_path / 'log.csv').read_text()
    (tmp_path / 'log.csv').write_bytes(b'\xef\xbb\xbf' + text.replace('\n', '\r\n').encode())
    resumed = History(tmp_path, resume_step=2)
    assert [r['step'] for r in resumed.rows] == [1, 2] and resumed.seconds_before == 2.0
    assert (tmp_path / 'log.csv').read_text().splitlines()[0].startswith('step,loss,')


def test_a_resume_stopped_while_it_rewrote_the_log_keeps_the_log(tmp_path, monkeypatch):
    """A resume rewrites log.csv without the rows past its step. It was written in place: a
    stop in that time (Ctrl-C, SIGTERM, a kill) left it empty or cut short, and the next
    resume went on without the rows before it."""
    import training.history as history_module

    history = History(tmp_path)
    for step in (1, 2, 3):
        history.append({'step': step, 'loss': 1.0, 'seconds': float(step)})
    before = (tmp_path / 'log.csv').read_text()
    text_of, written = history_module._row, []

    def stopped_after_a_row(row):
        if written:
            raise KeyboardInterrupt  # the stop, while the second row is written
        written.append(row)
        return text_of(row)

    monkeypatch.setattr(history_module, '_row', stopped_after_a_row)
    with pytest.raises(KeyboardInterrupt):
        History(tmp_path, resume_step=2)
    assert (tmp_path / 'log.csv').read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['log.csv']


def test_ctrl_c_says_what_the_checkpoint_keeps_and_draws_the_curves(tmp_path, capsys):
    """Ctrl-C stopped train without a word, and without the curves of the steps run."""
    from training.train import main  # what torchrun launches: the line, no traceback after

    with training_stopped_at(3, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, 'checkpoint_every=2', steps=4)
        assert capsys.readouterr().err == (
            f'interrupted at step 3: {tmp_path / "checkpoint.pt"} holds step 2; the same '
            'command resumes from there\n')
        assert (tmp_path / 'loss.png').is_file() and (tmp_path / 'miou.png').is_file()
        assert main([arg for option in [*FAST, 'steps=4', 'data.dataset=toy_data:CueDataset',
                                        'data.params={size: 4}', f'out_dir={tmp_path / "none"}']
                     for arg in ('--set', option)]) == 130
    assert capsys.readouterr().err == ('interrupted at step 3: no checkpoint saved yet '
                                       '(checkpoint_every=500); the same command starts again '
                                       'from step 0\n')


def test_a_loss_that_diverges_is_one_line_naming_its_step_and_what_is_kept(tmp_path, capsys):
    """A loss that became NaN (optim.lr far too high) was a FloatingPointError traceback out of
    mmp_ros train, and named the step before the one that diverged (0-based, where log.csv
    counts from 1)."""
    from training.train import main

    settings = [*FAST, 'steps=4', 'optim.lr=1e9', 'optim.warmup_steps=0', 'checkpoint_every=1',
                'data.dataset=toy_data:CueDataset', 'data.params={size: 4}',
                f'out_dir={tmp_path}']
    assert main([arg for option in settings for arg in ('--set', option)]) == 2
    with (tmp_path / 'log.csv').open(newline='') as stream:
        logged = len(list(csv.DictReader(stream)))
    assert capsys.readouterr().err == (
        f'python -m training.train: loss became nan at step {logged + 1}; lower optim.lr or '
        f'check the data for NaN ({tmp_path / "checkpoint.pt"} holds step {logged}, from '
        'before)\n')


def test_the_resume_hint_of_a_run_without_resume_is_an_option_train_takes(tmp_path):
    """A run with resume=false, stopped, said 'the same command with resume=true resumes';
    `mmp_ros train ... resume=true` is refused ('unrecognized arguments'): it is --set."""
    import re

    from training.train import add_arguments, interrupted_message

    config = load_config(None, [*FAST, 'resume=false', f'out_dir={tmp_path}'])
    message = interrupted_message(config, tmp_path / 'checkpoint.pt', 2, 3)
    hint = re.search(r'the same command with (.*) resumes', message)
    assert hint, message
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(hint.group(1).split()).overrides == ['resume=true']


def test_resume_takes_the_optimizer_settings_of_its_config(tmp_path):
    """The saved optimizer's learning rate, betas and weight decay were kept on resume
    whatever the config said (optim.lr=1e-5 went on at 2e-3, and was recorded as 1e-5), and
    the first step after it kept the rate of the saved run's schedule."""
    run(tmp_path, 'optim.warmup_steps=0', 'optim.poly_power=1', steps=2)
    run(tmp_path, 'optim.warmup_steps=0', 'optim.poly_power=1', 'optim.lr=1e-5',
        'optim.betas=[0.8, 0.99]', 'optim.weight_decay=0.5', steps=4)
    log = (tmp_path / 'log.csv').read_text().splitlines()
    assert [float(line.split(',')[4]) for line in log[1:]] == [1e-3, 0, 2.5e-6, 0]
    optimizer = read_checkpoint(tmp_path / 'checkpoint.pt')['optimizer']
    assert [(g['initial_lr'], g['betas'], g['weight_decay'])
            for g in optimizer['param_groups']] == [(1e-5, (0.8, 0.99), 0.5),
                                                    (1e-5, (0.8, 0.99), 0.0)]


def test_resume_without_an_optimizer_state_goes_on_with_the_schedule_of_its_step(tmp_path):
    """A checkpoint without an optimizer state (a shipped model's, as ship_model writes it)
    restarted the learning-rate schedule at step 0 when resumed: from step 2 of 4, the rate
    went back up to the warm-up's and never decayed to 0 at the last step."""
    schedule = ['optim.warmup_steps=0', 'optim.poly_power=1']
    run(tmp_path / 'straight', *schedule, steps=4)
    run(tmp_path / 'resumed', *schedule, steps=2)
    raw = torch.load(tmp_path / 'resumed' / 'checkpoint.pt', weights_only=True)
    raw['optimizer'] = raw['scheduler'] = None
    torch.save(raw, tmp_path / 'resumed' / 'checkpoint.pt')
    run(tmp_path / 'resumed', *schedule, steps=4)

    def rates(folder):
        with (tmp_path / folder / 'log.csv').open(newline='') as stream:
            return [float(row['lr']) for row in csv.DictReader(stream)]
    assert rates('resumed')[2:] == rates('straight')[2:] == [5e-4, 0]


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    run(tmp_path, 'method=none', steps=1)
    with pytest.raises(CheckpointError, match="method: 'none' -> 'mmp'"):
        run(tmp_path, 'method=mmp', steps=2)


def test_resume_refuses_other_data_than_the_checkpoint_learned_from(tmp_path):
    # What it says to do is options of mmp_ros train (--set KEY=VALUE), and they work; it said
    # 'use another out_dir or resume=false', and mmp_ros train ... resume=false is refused.
    run(tmp_path, steps=1)
    with pytest.raises(CheckpointError, match=r'other data \(input_size: \[16, 16\] -> '
                       r'\[24, 32\]\); give another out_dir \(--set out_dir=DIR\), or --set '
                       r'resume=false to start afresh there \(replacing that run\)$'):
        run(tmp_path, 'data.input_size=[24, 32]', steps=2)
    assert run(tmp_path, 'data.input_size=[24, 32]', 'resume=false', steps=1).losses


def test_resume_from_a_checkpoint_whose_metadata_lacks_a_field_says_so(tmp_path):
    # resume_problem indexed the saved metadata: a KeyError: 'input_size' traceback.
    run(tmp_path, steps=1)
    raw = torch.load(tmp_path / 'checkpoint.pt', weights_only=True)
    del raw['metadata']['input_size']
    torch.save(raw, tmp_path / 'checkpoint.pt')
    with pytest.raises(CheckpointError, match=r"malformed model metadata \(KeyError\('input_"
                       r"size'\)\); the run would resume from it: give another out_dir"):
        run(tmp_path, steps=2)


@pytest.mark.parametrize('change, message', [
    ({'step': None}, 'records no step '),
    ({'step': 'x'}, "records step 'x', not a count of steps"),
    ({'step': -1}, 'records step -1, not a count of steps'),
    ({'metrics': [1]}, 'holds metrics of type list, not a mapping'),
    ({'optimizer': [1]}, 'holds optimizer of type list, not a mapping'),
    ({'scheduler': None}, 'holds an optimizer state without its learning-rate schedule')])
def test_resume_from_a_checkpoint_without_a_usable_step_or_state_says_so(tmp_path, change,
                                                                        message):
    """A checkpoint.pt in out_dir without its step (not saved by a training run, or an older
    one) was a KeyError: 'step' traceback; a step of another type a ValueError or TypeError,
    a negative one a TypeError in the sampler, a scheduler of None an AttributeError."""
    run(tmp_path, steps=1)
    raw = torch.load(tmp_path / 'checkpoint.pt', weights_only=True)
    for key, value in change.items():
        if value is None:
            del raw[key]
        else:
            raw[key] = value
    torch.save(raw, tmp_path / 'checkpoint.pt')
    with pytest.raises(CheckpointError, match=rf'^{tmp_path / "checkpoint.pt"}: '
                       rf'{re.escape(message)}.*; give another out_dir \(--set out_dir=DIR\), '
                       r'or --set resume=false'):
        run(tmp_path, steps=2)


@pytest.mark.parametrize('damage, message', [
    ('fewer', r'parameter groups of \[\d+, \d+\] tensors, the model\'s optimizer has '
              r'\[\d+, \d+\]'),
    ('reshape', r'exp_avg of parameter 0 is \[1\], the parameter \[\d+, \d+, \d+, \d+\]')])
def test_resume_from_an_optimizer_state_that_does_not_fit_says_so(tmp_path, damage, message):
    """The saved optimizer state is loaded by position: one of other group sizes (another
    version's parameter groups) was torch's ValueError traceback, one whose moments have
    other shapes was loaded without a word: the fused step trained on with this one broadcast,
    and crashed the process with a segmentation fault on one of 2 values."""
    run(tmp_path, steps=1)
    raw = torch.load(tmp_path / 'checkpoint.pt', weights_only=True)
    groups, state = raw['optimizer']['param_groups'], raw['optimizer']['state']
    if damage == 'fewer':
        groups[0]['params'] = groups[0]['params'][1:]
    else:
        state[0]['exp_avg'] = state[0]['exp_avg'].flatten()[:1]
    torch.save(raw, tmp_path / 'checkpoint.pt')
    with pytest.raises(CheckpointError, match=rf'^{tmp_path / "checkpoint.pt"}: holds an '
                       rf'optimizer state that does not fit the model it describes \({message}; '
                       r'saved by another version, or altered\); give another out_dir'):
        run(tmp_path, steps=2)


def test_a_run_resumed_at_its_last_step_trains_nothing_and_keeps_its_metrics(tmp_path):
    done = run(tmp_path, 'eval_every=2', 'data.val_samples=4', steps=2)
    again = run(tmp_path, 'eval_every=2', 'data.val_samples=4', steps=2)
    assert again.losses == [] and again.start_step == 2
    assert again.metrics['val_full_miou'] == done.metrics['val_full_miou']


def test_checkpoint_is_self_describing_and_round_trips_strictly(tmp_path):
    result = run(tmp_path, 'method=mmp', 'eval_every=3', 'data.val_samples=4')
    raw = torch.load(result.checkpoint, weights_only=True)
    assert raw['format'] == CHECKPOINT_FORMAT
    assert raw['step'] == 3 and raw['optimizer'] and raw['scheduler']
    assert raw['train_config']['method'] == 'mmp'
    model, metadata, _ = load_checkpoint(result.checkpoint)
    assert metadata.modalities == MODALITIES
    assert metadata.class_names == ('floor', 'wall', 'person')
    assert metadata.method == 'mmp' and metadata.input_size == (16, 16)
    assert 'val_full_miou' in metadata.metrics and metadata.provenance['seed'] == 0
    for key, value in model.state_dict().items():
        assert torch.equal(value, raw['state_dict'][key]), key
    inputs = {m: torch.randn(1, c, 16, 16) for m, c in metadata.input_channels.items()}
    available = torch.tensor([[True, False, False, True]])
    again, _, _ = load_checkpoint(result.checkpoint)
    with torch.no_grad():
        assert torch.equal(model(inputs, available), again(inputs, available))


def test_cpu_training_computes_channels_last_past_the_stems(tmp_path, monkeypatch):
    """On the CPU ``train`` lays the model out channels-last but the stems; that changes
    a step's rounding, not its values, and the checkpoint is the same weights."""
    import training.train as train_module
    from mmp_ros.model import ModelConfig

    lay_out = train_module.channels_last_past_the_stems
    laid_out = []

    def spy(model):
        laid_out.append(model)
        return lay_out(model)

    monkeypatch.setattr(train_module, 'channels_last_past_the_stems', spy)
    result = run(tmp_path, 'method=mmp')
    assert len(laid_out) == 1
    trained, = laid_out
    saved = load_checkpoint(result.checkpoint)[0].state_dict()
    assert all(torch.equal(weight, saved[name]) for name, weight in trained.state_dict().items())

    torch.manual_seed(0)
    contiguous = build_model(ModelConfig(modalities=MODALITIES, num_classes=3, method='mmp'))
    model = lay_out(build_model(contiguous.config))
    model.load_state_dict(contiguous.state_dict())
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            weight = module.weight
            if name.startswith('stems.'):
                assert weight.is_contiguous(), name
            else:
                assert weight.is_contiguous(memory_format=torch.channels_last), name
                both = weight.shape[1] == 1 or weight.shape[-2:] == (1, 1)  # layouts alike
                assert both or not weight.is_contiguous(), name
    inputs = {m: torch.randn(2, c, 32, 32) for m, c in INPUT_CHANNELS.items()}
    available = torch.tensor([[True, False, True, False], [False, True, True, True]])
    outputs = []
    for network in (contiguous, model):
        logits, _ = network.train().forward_train(inputs, available)
        logits.square().mean().backward()
        outputs.append((logits, [p.grad for p in network.parameters()]))
    (expected, expected_grads), (logits, grads) = outputs
    torch.testing.assert_close(logits, expected)
    assert logits.is_contiguous()  # brought to full resolution so, for the loss
    # Sums rounded anew. A bias just before a batch norm has a gradient of zero in exact
    # arithmetic, so both of its gradients are rounding noise (norms up to 3e-7 here): hence
    # the absolute term.
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert (grad - expected_grad).norm() <= 1e-3 * expected_grad.norm() + 1e-5


def test_load_checkpoint_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        load_checkpoint(tmp_path / 'nothing.pt')
    bare = tmp_path / 'bare.pt'
    torch.save({'weight': torch.zeros(2)}, bare)
    with pytest.raises(CheckpointError, match="format None, expected 'mmp_ros.checkpoint/1'"):
        load_checkpoint(bare)
    result = run(tmp_path / 'run', 'method=none', steps=1)
    tampered = read_checkpoint(result.checkpoint)
    tampered['model_config']['size'] = 'base'
    torch.save(tampered, tmp_path / 'tampered.pt')
    with pytest.raises(CheckpointError, match='weights do not fit the model'):
        load_checkpoint(tmp_path / 'tampered.pt')
    pickled = tmp_path / 'pickled.pt'  # a pickle of more than tensors: one line, no advice
    torch.save({'format': CHECKPOINT_FORMAT, 'config': argparse.Namespace()}, pickled)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(pickled)
    assert 'holds more than tensors and plain values' in str(error.value)
    assert '\n' not in str(error.value) and 'weights_only' not in str(error.value)


# --- label-free adaptation ------------------------------------------------------------------


class LabelTrap(CueDataset):
    """Samples whose label cannot be read: any access fails the test."""

    def __getitem__(self, index):
        sample = super().__getitem__(index)

        class Guarded(dict):
            def __getitem__(self, key):
                if key == 'label':
                    raise AssertionError('adaptation read a label')
                return super().__getitem__(key)

            def items(self):
                raise AssertionError('adaptation iterated over the whole sample')

            values = items

        return Guarded(sample)


@pytest.fixture(scope='module')
def base_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('base')
    return run(out, 'method=none', steps=4).checkpoint


@pytest.mark.parametrize('folder', ['run #2', 'a: b'])
def test_adaptation_takes_a_base_path_yaml_would_read_otherwise(tmp_path, base_checkpoint,
                                                                folder):
    (tmp_path / folder).mkdir()
    base = tmp_path / folder / 'base.pt'
    base.write_bytes(base_checkpoint.read_bytes())
    result = adapt(str(base), overrides=[*FAST, 'steps=1', f'out_dir={tmp_path / "out"}'],
                   train_dataset=CueDataset('train', 4))
    assert read_checkpoint(result.checkpoint)['train_config']['base_checkpoint'] == str(base)


def test_adapt_data_says_when_its_run_is_already_done(tmp_path, base_checkpoint, capsys):
    """It printed '(0 steps, 0.0 s)', as if the run had failed to train."""
    import training.adapt

    args = argparse.Namespace(base_checkpoint=str(base_checkpoint), config=None, overrides=[
        *FAST, 'steps=1', f'out_dir={tmp_path}', 'data.dataset=toy_data:CueDataset',
        'data.params={size: 4}'])
    assert training.adapt.run(args) == 0
    assert '(1 steps, ' in capsys.readouterr().out
    assert training.adapt.run(args) == 0
    assert capsys.readouterr().out == (f'checkpoint: {tmp_path / "checkpoint.pt"} is already '
                                       'at step 1: nothing to train (raise steps to train '
                                       'further)\n')


@pytest.mark.parametrize('override', ['method=mmp', 'base_checkpoint=other.pt'])
def test_adaptation_refuses_an_override_of_what_it_sets_itself(tmp_path, override):
    """mmp_ros adapt-data BASE --set method=mmp (or base_checkpoint=...) was replaced without a
    word: the run adapted BASE with mmp_adapt all the same."""
    with pytest.raises(ConfigError, match=f'^--set {override}: adaptation sets '
                       f'{override.partition("=")[0]} itself'):
        adapt(str(tmp_path / 'base.pt'), overrides=['steps=1', override,
                                                    f'out_dir={tmp_path / "out"}'])
    assert not (tmp_path / 'out').exists()
    assert adapt_config(str(tmp_path / 'base.pt'), overrides=['method=mmp_adapt']).method == \
        'mmp_adapt'


@pytest.mark.parametrize('resume', ['true', 'false'])
def test_adaptation_into_the_folder_of_its_base_is_refused(tmp_path, base_checkpoint, resume):
    """mmp_ros adapt-data out/train/checkpoint.pt --set out_dir=out/train replaced the base
    with the adapted checkpoint (resume=false, which the refusal to resume from the base
    advised)."""
    base = tmp_path / 'train' / 'checkpoint.pt'
    base.parent.mkdir()
    base.write_bytes(base_checkpoint.read_bytes())
    with pytest.raises(ConfigError, match=rf'^out_dir {tmp_path / "train"}: adaptation writes '
                       rf'{base}, which is base_checkpoint {base}; it would be replaced'):
        adapt(str(base), overrides=[*FAST, 'steps=1', f'out_dir={tmp_path / "train"}',
                                    f'resume={resume}'], train_dataset=CueDataset('train', 4))
    assert base.read_bytes() == base_checkpoint.read_bytes()


def test_adaptation_names_a_missing_base_before_reading_any_data(tmp_path):
    """The dataset was built (and read) first: a missing base was reported only after
    any dataset error, and after the dataset's work."""
    with pytest.raises(CheckpointError, match=f'checkpoint not found: {tmp_path}/base.pt'):
        adapt(str(tmp_path / 'base.pt'),
              overrides=[*FAST, 'steps=1', f'out_dir={tmp_path / "out"}',
                         'data.train_split=nope'])


def test_adaptation_resumed_from_another_base_is_refused(tmp_path, base_checkpoint):
    """Its frozen weights were the saved base's: adapt-data on base B in the out_dir of an
    adaptation of base A went on with A's weights and recorded B as the base."""
    other = run(tmp_path / 'other', 'method=none', 'seed=1', steps=1).checkpoint
    overrides = [*FAST, f'out_dir={tmp_path / "adapted"}']
    adapt(str(base_checkpoint), overrides=[*overrides, 'steps=1'],
          train_dataset=CueDataset('train', 4))
    with pytest.raises(CheckpointError, match=f'adapts another base model than {other} '
                       r'\(its frozen weights differ'):
        adapt(str(other), overrides=[*overrides, 'steps=2'],
              train_dataset=CueDataset('train', 4))
    resumed = adapt(str(base_checkpoint), overrides=[*overrides, 'steps=2'],
                    train_dataset=CueDataset('train', 4))
    assert resumed.start_step == 1 and len(resumed.losses) == 1


@pytest.mark.parametrize('damage, message', [
    ('drop frozen', r"missing \['stems\.rgb\.0\.0\.weight'\] \(1\)"),
    ('reshape frozen', r"shape mismatch \['stems\.rgb\.0\.0\.weight'\] \(1\)"),
    ('drop adapted', r"missing \['projection\.modality_embedding'\] \(1\)")])
def test_adaptation_resumed_from_a_checkpoint_whose_weights_do_not_fit_says_so(
        tmp_path, base_checkpoint, damage, message):
    """An adaptation's checkpoint.pt (altered, or cut by a tool) lacking a frozen tensor was a
    KeyError traceback; one of another shape was taken for another base's weights."""
    from training.train import adaptation_resume_problem

    overrides = [*FAST, f'out_dir={tmp_path}']
    adapt(str(base_checkpoint), overrides=[*overrides, 'steps=1'],
          train_dataset=CueDataset('train', 4))
    raw = torch.load(tmp_path / 'checkpoint.pt', weights_only=True)
    weights = raw['state_dict']
    name = 'projection.modality_embedding' if damage == 'drop adapted' else \
        'stems.rgb.0.0.weight'
    if damage.startswith('drop'):
        del weights[name]
    else:
        weights[name] = weights[name][:1]
    torch.save(raw, tmp_path / 'checkpoint.pt')
    wanted = f'holds weights that do not fit the model it describes \\(.*{message}'
    with pytest.raises(CheckpointError, match=rf'^{tmp_path / "checkpoint.pt"}: {wanted}.*; '
                       r'give another out_dir'):
        adapt(str(base_checkpoint), overrides=[*overrides, 'steps=2'],
              train_dataset=CueDataset('train', 4))
    config = adapt_config(str(base_checkpoint), overrides=[*overrides, 'steps=2'])
    assert re.match(wanted, adaptation_resume_problem(config)[1])  # mmp_ros adapt's check


@pytest.mark.parametrize('loss', [[], ['distillation_weight=1'],
                                  ['distillation_weight=1', 'model.projection_kind=conv'],
                                  ['distillation_weight=1', 'model.projection_kind=conv',
                                   'model.mask_adapters=4'],
                                  ['distillation_weight=1', 'model.projection_kind=conv',
                                   'model.mask_adapters=4', 'teacher_cache=true'],
                                  ['distillation_weight=1', 'model.projection_kind=conv',
                                   'model.mask_adapters=4', 'teacher_cache=true',
                                   'projection_fit.steps=5', 'projection_fit.batch_size=4']],
                         ids=['alignment', 'alignment+distillation', 'conv+distillation',
                              'conv+distillation+adapters', 'teacher cache', 'projection fit'])
def test_adaptation_never_reads_labels_and_keeps_the_full_modality_output(tmp_path,
                                                                          base_checkpoint,
                                                                          loss):
    overrides = [*FAST, *loss, 'steps=3', f'out_dir={tmp_path / "trap"}']
    trapped = adapt(str(base_checkpoint), overrides=overrides,
                    train_dataset=LabelTrap('train', 12))
    assert all(math.isfinite(v) and v > 0 for v in trapped.losses)

    # Same frames, other labels: the adapted weights are identical.
    runs = {}
    for mode in ('zeros', 'random'):
        result = adapt(str(base_checkpoint),
                       overrides=[*FAST, *loss, 'steps=3', f'out_dir={tmp_path / mode}'],
                       train_dataset=CueDataset('train', 12, label_mode=mode))
        runs[mode] = read_checkpoint(result.checkpoint)['state_dict']
    assert all(torch.equal(runs['zeros'][k], runs['random'][k]) for k in runs['zeros'])

    base, _, _ = load_checkpoint(base_checkpoint)
    adapted, metadata, _ = load_checkpoint(trapped.checkpoint)
    assert metadata.method == 'mmp_adapt'
    base_state = base.state_dict()
    adapted_state = adapted.state_dict()
    assert all(torch.equal(base_state[k], adapted_state[k]) for k in base_state)
    adapted_only = {k: v for k, v in adapted_state.items() if k not in base_state}
    assert any(k.startswith('projection.') for k in adapted_only)
    assert all(k.startswith(ADAPTED_PREFIXES) for k in adapted_only)
    if 'model.mask_adapters=4' in loss:  # learned, from zero
        assert all(a.gate.weight.abs().sum() > 0 for a in adapted.encoder.adapters)
    data = CueDataset('val', 3)
    inputs = normalize({m: torch.stack([data[i][m] for i in range(3)]) for m in MODALITIES},
                       metadata)
    with torch.no_grad():
        full = torch.ones(3, 4, dtype=torch.bool)
        assert torch.equal(adapted(inputs, full), base(inputs, full))


@pytest.mark.parametrize('stage', ['encoder', 'stem'])
def test_teacher_cache_trains_as_computing_the_targets_every_step(tmp_path, base_checkpoint,
                                                                  stage):
    # 6 frames, 4 steps of 4: frames come back, so the cache serves targets it computed
    # in another batch than the one a step draws.
    loss = ['distillation_weight=1', 'model.projection_kind=conv', 'model.mask_adapters=4',
            f'model.projection_stage={stage}']
    runs = {}
    for name, cache in (('each_step', []), ('cached', ['teacher_cache=true'])):
        result = adapt(str(base_checkpoint),
                       overrides=[*FAST, *loss, *cache, 'steps=4', f'out_dir={tmp_path / name}'],
                       train_dataset=CueDataset('train', 6))
        runs[name] = result
    assert runs['cached'].teacher_cache_seconds > 0
    assert runs['each_step'].teacher_cache_seconds == 0
    assert runs['cached'].losses == pytest.approx(runs['each_step'].losses, rel=1e-5)
    states = {n: read_checkpoint(r.checkpoint)['state_dict'] for n, r in runs.items()}
    for key, value in states['each_step'].items():
        torch.testing.assert_close(states['cached'][key], value, rtol=1e-4, atol=1e-6)
    # Resumed, the cache is built again and the steps continue where they stopped.
    cached = [*FAST, *loss, 'teacher_cache=true', f'out_dir={tmp_path / "resumed"}']
    adapt(str(base_checkpoint), overrides=[*cached, 'steps=2'],
          train_dataset=CueDataset('train', 6))
    resumed = adapt(str(base_checkpoint), overrides=[*cached, 'steps=4'],
                    train_dataset=CueDataset('train', 6))
    assert resumed.losses == runs['cached'].losses[2:]


def test_teacher_cache_that_would_not_fit_stops_before_filling_memory(base_checkpoint):
    model, metadata, _ = load_checkpoint(base_checkpoint)
    adapted = build_model(model.config.replace(method='mmp_adapt', projection_kind='conv'))
    with pytest.raises(ConfigError, match=r'teacher_cache: 5 frames need .* set '
                                          r'teacher_cache=false'):
        TeacherCache(adapted.eval(), UnlabelledDataset(CueDataset('train', 5), MODALITIES),
                     metadata, batch_size=2, device=torch.device('cpu'), memory_limit=1000)


def _adapted_and_cache(base_checkpoint, frames=8):
    base, metadata, _ = load_checkpoint(base_checkpoint)
    adapted = build_model(base.config.replace(method='mmp_adapt', projection_kind='conv',
                                              mask_adapters=4))
    adapted.load_state_dict(base.state_dict(), strict=False)
    adapted.eval()
    cache = TeacherCache(adapted, UnlabelledDataset(CueDataset('train', frames), MODALITIES),
                         metadata, batch_size=4, device=torch.device('cpu'))
    return adapted, cache


def _distillation_loss(model, cache) -> float:
    """The distillation loss over every cached frame and every subset with something
    missing: what adaptation minimizes."""
    targets = cache.targets(range(len(cache)))
    losses = []
    with torch.no_grad():
        for row in range(1, 2 ** len(MODALITIES) - 1):
            available = torch.tensor([bool(row >> i & 1) for i in range(len(MODALITIES))])
            available = available.expand(len(cache), -1)
            student, _ = model.distill_student(targets, available, alignment=False)
            losses.append(float(soft_cross_entropy(student, targets.teacher,
                                                   rows=~available.all(1))))
    return sum(losses) / len(losses)


@pytest.fixture(scope='module')
def trained_base(tmp_path_factory) -> Path:
    """A base that predicts something (``base_checkpoint``'s 4 steps leave it near uniform,
    where any projection serves distillation alike)."""
    return run(tmp_path_factory.mktemp('trained_base'), 'method=none', 'optim.lr=0.01',
               steps=60).checkpoint


def test_projection_fit_learns_the_missing_share_of_the_fused_map_and_only_that(trained_base):
    """The fit lowers its own loss, changes the projection alone, and brings the
    prediction with projected tokens closer to the frozen model's own: distillation
    starts from a better place (measured: 0.77 before, 0.41 after)."""
    adapted, cache = _adapted_and_cache(trained_base)
    before = {k: v.clone() for k, v in adapted.state_dict().items()}
    distillation_before = _distillation_loss(adapted, cache)
    fit = fit_projection(adapted, cache, steps=80, batch_size=8, lr=3e-3,
                         mask=MaskConfig(0.0, 0.7), generator=torch.Generator().manual_seed(0))
    assert len(fit.losses) == 80 and fit.seconds > 0
    assert sum(fit.losses[-10:]) < 0.5 * sum(fit.losses[:10])
    after = adapted.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith('projection.') for k in changed)
    assert _distillation_loss(adapted, cache) < 0.8 * distillation_before


def test_projection_fit_runs_once_before_the_steps_and_not_again_on_resume(tmp_path,
                                                                           base_checkpoint):
    overrides = [*FAST, 'distillation_weight=1', 'model.projection_kind=conv',
                 'model.mask_adapters=4', 'teacher_cache=true', 'projection_fit.steps=6',
                 'projection_fit.batch_size=4']
    whole = adapt(str(base_checkpoint), train_dataset=CueDataset('train', 6),
                  overrides=[*overrides, 'steps=4', f'out_dir={tmp_path / "whole"}'])
    unfitted = adapt(str(base_checkpoint), train_dataset=CueDataset('train', 6),
                     overrides=[*overrides, 'projection_fit.steps=0', 'steps=4',
                                f'out_dir={tmp_path / "unfitted"}'])
    assert whole.projection_fit_seconds > 0 and unfitted.projection_fit_seconds == 0
    assert whole.losses[0] != unfitted.losses[0]
    assert whole.train_seconds >= whole.teacher_cache_seconds + whole.projection_fit_seconds
    assert read_checkpoint(whole.checkpoint)['train_config']['projection_fit']['steps'] == 6
    resumable = [*overrides, f'out_dir={tmp_path / "resumed"}']
    adapt(str(base_checkpoint), overrides=[*resumable, 'steps=2'],
          train_dataset=CueDataset('train', 6))
    resumed = adapt(str(base_checkpoint), overrides=[*resumable, 'steps=4'],
                    train_dataset=CueDataset('train', 6))
    assert resumed.projection_fit_seconds == 0
    assert resumed.losses == whole.losses[2:]


def test_adaptation_steps_run_the_frozen_norms_folded_and_train_the_models_own_parameters(
        tmp_path, trained_base, monkeypatch):
    """``frozen_norms_folded``: the same function to float rounding without a batch norm
    (the fused map's too, after a sum, and the decoder's), the trained parameters the
    model's own objects; ``train`` adapts through it and saves the model, every norm in
    it."""
    import training.train as train_module

    adapted, cache = _adapted_and_cache(trained_base)
    for name, parameter in adapted.named_parameters():  # frozen as train freezes it
        parameter.requires_grad_(name.startswith(ADAPTED_PREFIXES))
    for adapter in adapted.encoder.adapters:  # as trained: an output that is not zero
        torch.nn.init.normal_(adapter.gate.weight, std=0.5)
    with pytest.raises(ValueError, match='call model.eval'):
        train_module.frozen_norms_folded(adapted.train())
    twin = train_module.frozen_norms_folded(adapted.eval())
    norms = {name for name, m in twin.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert not norms
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in adapted.modules()) > 10
    twins = dict(twin.named_parameters())
    trained = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trained == {n for n, p in twins.items() if p.requires_grad}
    assert all(twins[n] is p for n, p in adapted.named_parameters() if n in trained)
    targets = cache.targets(range(len(cache)))
    available = sample_masks(len(cache), MODALITIES, MaskConfig(0.0, 0.7),
                             torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(twin.distill_student(targets, available)[0],
                                   adapted.distill_student(targets, available)[0])
        frames = {m: torch.randn(2, c, 16, 16) for m, c in INPUT_CHANNELS.items()}
        expected = adapted.distill_targets(frames)
        for got, want in zip(twin.distill_targets(frames)[:2], expected[:2], strict=True):
            torch.testing.assert_close(got, want)

    fold, students = train_module.frozen_norms_folded, []
    monkeypatch.setattr(train_module, 'frozen_norms_folded',
                        lambda model: students.append(fold(model)) or students[-1])
    result = adapt(str(trained_base), train_dataset=CueDataset('train', 6), overrides=[
        *FAST, 'distillation_weight=1', 'model.projection_kind=conv', 'model.mask_adapters=4',
        'steps=3', f'out_dir={tmp_path / "adapted"}'])
    student, = students
    saved = read_checkpoint(result.checkpoint)['state_dict']
    assert all(torch.equal(saved[name], parameter) for name, parameter
               in student.named_parameters() if parameter.requires_grad)
    assert saved.keys() == adapted.state_dict().keys()  # every norm, as the base has them
    run(tmp_path / 'scratch', 'method=mmp')  # from scratch the norms train: nothing folded
    assert len(students) == 1


def test_crop_origins_cover_the_grid_inside_the_frame():
    generator = torch.Generator().manual_seed(0)
    corners = {crop_origin((128, 160), (64, 96), generator) for _ in range(200)}
    assert corners == {(top, left) for top in (0, 32, 64) for left in (0, 32, 64)}
    assert crop_origin((128, 160), (128, 160), generator) == (0, 0)


def test_distillation_on_windows_trains_alike_with_and_without_the_cache(tmp_path,
                                                                         monkeypatch):
    """``distill_crop``: the student runs on windows of the frame, whose targets are the
    whole frame's cut to the window (the cache's and those computed at the step alike); a
    window larger than the model's input stops at start."""
    seen = []
    student = MultimodalSegmenter.distill_student

    def spy(self, targets, available, **options):
        seen.append((targets.image_size, tuple(targets.teacher.shape[-2:])))
        return student(self, targets, available, **options)

    monkeypatch.setattr(MultimodalSegmenter, 'distill_student', spy)
    base = run(tmp_path / 'base', 'method=none', 'data.input_size=[64, 64]', steps=2)
    loss = ['distillation_weight=1', 'model.projection_kind=conv', 'model.mask_adapters=4',
            'model.projection_stride=16']
    runs, sizes = {}, {}
    for name, extra in (('each_step', ['distill_crop=[32, 32]']),
                        ('cached', ['distill_crop=[32, 32]', 'teacher_cache=true']),
                        ('whole', [])):
        seen.clear()
        runs[name] = adapt(str(base.checkpoint), train_dataset=CueDataset('train', 6),
                           overrides=[*FAST, *loss, *extra, 'steps=4',
                                      f'out_dir={tmp_path / name}'])
        sizes[name] = set(seen)
    assert sizes['each_step'] == sizes['cached'] == {((32, 32), (8, 8))}
    assert sizes['whole'] == {((64, 64), (16, 16))}
    assert all(math.isfinite(v) for v in runs['cached'].losses)
    assert runs['cached'].losses == pytest.approx(runs['each_step'].losses, rel=1e-5)
    assert runs['whole'].losses != runs['each_step'].losses
    with pytest.raises(ConfigError, match=r'distill_crop \[96, 32\]: .* the model takes '
                                          r'\[64, 64\]'):
        adapt(str(base.checkpoint), train_dataset=CueDataset('train', 6),
              overrides=[*FAST, *loss, 'distill_crop=[96, 32]', f'out_dir={tmp_path / "big"}'])


def test_alignment_weight_zero_skips_the_alignment_terms_and_trains_the_same(
        tmp_path, base_checkpoint, monkeypatch):
    """With ``alignment_weight=0`` the step does not compute the alignment terms; computing
    them anyway (weighted by zero) gives the same losses and weights."""
    calls = []
    student = MultimodalSegmenter.distill_student

    def spy(self, targets, available, *, alignment=True, force=False):
        calls.append(alignment)
        return student(self, targets, available, alignment=alignment or force)

    monkeypatch.setattr(MultimodalSegmenter, 'distill_student', spy)
    overrides = [*FAST, 'distillation_weight=1', 'alignment_weight=0', 'teacher_cache=true',
                 'model.projection_kind=conv', 'model.mask_adapters=4', 'steps=3']
    skipped = adapt(str(base_checkpoint), train_dataset=CueDataset('train', 6),
                    overrides=[*overrides, f'out_dir={tmp_path / "skipped"}'])
    assert calls == [False] * 3
    monkeypatch.setattr(MultimodalSegmenter, 'distill_student',
                        lambda self, targets, available, **options: spy(
                            self, targets, available, **options, force=True))
    computed = adapt(str(base_checkpoint), train_dataset=CueDataset('train', 6),
                     overrides=[*overrides, f'out_dir={tmp_path / "computed"}'])
    assert computed.losses == skipped.losses and all(v > 0 for v in skipped.losses)
    states = [read_checkpoint(r.checkpoint)['state_dict'] for r in (skipped, computed)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    log = (tmp_path / 'skipped' / 'log.csv').read_text().splitlines()
    assert {row.split(',')[3] for row in log[1:]} == {'0'}  # the alignment column
    with pytest.raises(ValueError, match="'align' trains by the alignment terms alone"):
        TrainStep(MultimodalSegmenter(load_checkpoint(base_checkpoint)[0].config), 'align',
                  alignment=False)


def test_distillation_differs_from_alignment_alone(tmp_path, base_checkpoint):
    states = {}
    for name, loss in (('align', []), ('distill', ['distillation_weight=1'])):
        result = adapt(str(base_checkpoint),
                       overrides=[*FAST, *loss, 'steps=2', f'out_dir={tmp_path / name}'],
                       train_dataset=CueDataset('train', 8))
        states[name] = read_checkpoint(result.checkpoint)['state_dict']
    projection = [k for k in states['align'] if k.startswith('projection.')]
    assert not all(torch.equal(states['align'][k], states['distill'][k]) for k in projection)


def test_distillation_needs_a_frozen_base():
    with pytest.raises(ConfigError, match='distillation_weight distills'):
        load_config(None, ['method=mmp', 'distillation_weight=1'])


def test_adaptation_refuses_a_projection_base(tmp_path):
    mmp = run(tmp_path / 'mmp', 'method=mmp', steps=1).checkpoint
    with pytest.raises(ConfigError, match="base model method is 'mmp'"):
        adapt(str(mmp), overrides=[*FAST, 'steps=1', f'out_dir={tmp_path / "a"}'],
              train_dataset=CueDataset('train', 4))


def test_mask_conditioning_trains_into_the_checkpoint_and_adaptation_keeps_the_bases(tmp_path):
    conditioned = run(tmp_path / 'film', 'method=dropout', 'model.mask_conditioning=true',
                      steps=1).checkpoint
    assert read_checkpoint(conditioned)['model_config']['mask_conditioning'] is True
    assert any(k.startswith('mask_film.') for k in read_checkpoint(conditioned)['state_dict'])
    adapted = adapt(str(conditioned), overrides=[*FAST, 'steps=1', f'out_dir={tmp_path / "a"}'],
                    train_dataset=CueDataset('train', 4)).checkpoint
    assert read_checkpoint(adapted)['model_config']['mask_conditioning'] is True
    plain = run(tmp_path / 'plain', 'method=none', steps=1).checkpoint
    with pytest.raises(ConfigError, match='mask_conditioning: .*trained without it'):
        adapt(str(plain), overrides=[*FAST, 'steps=1', 'model.mask_conditioning=true',
                                     f'out_dir={tmp_path / "b"}'],
              train_dataset=CueDataset('train', 4))


def test_adaptation_refuses_adapters_it_could_not_train(tmp_path):
    based = run(tmp_path / 'base', 'method=none', 'model.mask_adapters=4', steps=1).checkpoint
    with pytest.raises(ConfigError, match='mask_adapters=8: .* has adapters of rank 4'):
        adapt(str(based), overrides=[*FAST, 'steps=1', 'distillation_weight=1',
                                     'model.mask_adapters=8', f'out_dir={tmp_path / "a"}'],
              train_dataset=CueDataset('train', 4))
    # After the projection, they have no alignment target: only distillation teaches them.
    with pytest.raises(ConfigError, match='learn from distillation alone'):
        adapt(str(based), overrides=[*FAST, 'steps=1', f'out_dir={tmp_path / "b"}',
                                     'model.mask_adapters=4'],
              train_dataset=CueDataset('train', 4))


def test_a_modality_the_dataset_marks_unavailable_counts_as_missing(tmp_path):
    class NoThermal(CueDataset):
        """Like the package's datasets: zeros plus ``available`` False where absent."""

        def __getitem__(self, index):
            sample = super().__getitem__(index)
            sample['thermal'] = torch.zeros_like(sample['thermal'])
            sample['available'] = torch.tensor([True, True, True, False])
            return sample

    with pytest.raises(DatasetError, match="lacks modalities \\['thermal'\\]"):
        run(tmp_path, data=NoThermal('train', 4))
    # the flag itself never reaches the model: training on all real modalities works
    assert run(tmp_path / 'ok', 'modalities=[rgb, depth, polarization]', steps=1,
               data=NoThermal('train', 4)).losses
