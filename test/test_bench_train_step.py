"""scripts/bench_train_step.py: it runs both comparisons, and the backward's baseline really
is PyTorch's backward."""

from __future__ import annotations

import pytest
from conftest import script_module

torch = pytest.importorskip('torch')


@pytest.fixture(scope='module')
def bench():
    with script_module('bench_train_step') as module:
        yield module


def test_pytorch_backward_swaps_the_backward_and_restores_it(bench):
    from mmp_ros.model.layers import resize_to

    x = torch.randn(1, 2, 4, 5, requires_grad=True)
    with bench.pytorch_backward():
        assert type(resize_to(x, (8, 10)).grad_fn).__name__ == 'UpsampleBilinear2DBackward0'
    assert type(resize_to(x, (8, 10)).grad_fn).__name__ == '_BilinearResizeBackward'


@pytest.mark.parametrize(('compare', 'variants'), [
    ('backward', ('PyTorch backward', 'matrix backward')),
    ('allocator', ('glibc malloc', 'freed memory kept')),  # child processes
])
def test_it_times_both_steps(bench, capsys, compare, variants):
    threads = torch.get_num_threads()
    try:
        bench.main(['--compare', compare, '--rounds', '1', '--threads', '1', '--base-batch',
                    '2', '--base-steps', '1', '--adapt-batch', '2', '--adapt-steps', '1'])
    finally:
        torch.set_num_threads(threads)  # the script sets it for its process
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ['base', 'adapt']
    assert all(all(v in line for v in variants) and ' ms a step: ' in line
               for line in lines[1:])
