"""Multi-process training through torchrun: DDP with 2 gloo processes on the CPU."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmp_ros.model import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_one_model(tmp_path):
    env = {**os.environ, 'PYTHONPATH': f'{REPO}{os.pathsep}{REPO / "test"}',
           'OMP_NUM_THREADS': '1'}
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
    model, metadata, checkpoint = load_checkpoint(tmp_path / 'checkpoint.pt')
    assert checkpoint['step'] == 2
    assert metadata.provenance['world_size'] == 2
    assert 'val_mean_missing_miou' in metadata.metrics
    assert all(torch.isfinite(p).all() for p in model.parameters())
    rows = (tmp_path / 'log.csv').read_text().splitlines()
    assert len(rows) == 3  # header + one row per step, written by rank 0 only
