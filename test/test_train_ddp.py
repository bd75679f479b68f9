"""Multi-process training through torchrun: DDP with 2 gloo processes on the CPU."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs, repo_env

needs('torch')
needs('einops')

import torch  # noqa: E402

from mmp_ros.model import load_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_one_model(tmp_path):
    env = repo_env(REPO / 'test', OMP_NUM_THREADS='1')
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        '--master_addr=127.0.0.1', f'--master_port={free_port()}',
        '-m', 'training.train',
        '--set', 'data.dataset=toy_data:CueDataset', '--set', 'data.params={size: 8}',
        '--set', 'data.input_size=[16,16]', '--set', 'data.normalization_samples=4',
        '--set', 'model.projection_stride=8', '--set', 'model.aggregate_stride=16',
        '--set', 'batch_size=4', '--set', 'steps=2', '--set', 'eval_every=2',
        '--set', 'data.val_samples=4', '--set', 'log_every=1', '--set', 'threads=1',
        '--set', 'progress=false', '--set', 'device=cpu', '--set', f'out_dir={tmp_path}',
    ]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'Warning' not in done.stderr, done.stderr[-3000:]  # DDP's bucket-stride warning
    model, metadata, checkpoint = load_checkpoint(tmp_path / 'checkpoint.pt')
    assert checkpoint['step'] == 2
    assert metadata.provenance['world_size'] == 2
    assert 'val_mean_missing_miou' in metadata.metrics
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = (tmp_path / 'log.csv').read_text().splitlines()
    assert len(rows) == 3  # header + one row per step, written by rank 0 only


@pytest.mark.slow
def test_torchrun_two_gloo_processes_adapt_with_the_cache_and_the_projection_fit(tmp_path):
    """Label-free adaptation under DDP, as the GPU-budget bases are adapted: the teacher
    cache in each process, the projection fitted alike in each before the steps (rank 0's
    weights then broadcast), the steps on the frozen network with its norms folded. The
    adapted model keeps its base's full-modality output."""
    from toy_data import CueDataset

    from training.config import load_config
    from training.normalize import normalize
    from training.train import train

    options = ['data.input_size=[16,16]', 'data.normalization_samples=4',
               'model.projection_stride=8', 'model.aggregate_stride=16', 'batch_size=4',
               'eval_every=0', 'progress=false', 'device=cpu']
    base = train(load_config(None, [*options, 'method=none', 'steps=2',
                                    f'out_dir={tmp_path / "base"}']),
                 train_dataset=CueDataset('train', 8)).checkpoint
    env = repo_env(REPO / 'test', OMP_NUM_THREADS='1')
    adapted_dir = tmp_path / 'adapted'
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        '--master_addr=127.0.0.1', f'--master_port={free_port()}', '-m', 'training.train',
        '--set', 'data.dataset=toy_data:CueDataset', '--set', 'data.params={size: 8}',
        *(arg for option in options for arg in ('--set', option)),
        '--set', 'method=mmp_adapt', '--set', f'base_checkpoint={base}',
        '--set', 'distillation_weight=1', '--set', 'model.projection_kind=conv',
        '--set', 'model.mask_adapters=4', '--set', 'teacher_cache=true',
        '--set', 'projection_fit.steps=4', '--set', 'projection_fit.batch_size=4',
        '--set', 'steps=2', '--set', 'threads=1', '--set', f'out_dir={adapted_dir}',
    ]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'projection fit: 4 steps' in done.stderr
    adapted, metadata, checkpoint = load_checkpoint(adapted_dir / 'checkpoint.pt')
    assert checkpoint['step'] == 2 and metadata.provenance['world_size'] == 2
    assert any(a.gate.weight.abs().sum() > 0 for a in adapted.encoder.adapters)
    frozen, _, _ = load_checkpoint(base)
    data = CueDataset('val', 2)
    inputs = normalize({m: torch.stack([data[i][m] for i in range(2)])
                        for m in metadata.modalities}, metadata)
    every = torch.ones(2, len(metadata.modalities), dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(adapted(inputs, every), frozen(inputs, every))
