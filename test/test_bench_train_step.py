"""scripts/bench_train_step.py: it runs every comparison, and each baseline really is what
it says."""

from __future__ import annotations

import pytest
from conftest import script_fixture

torch = pytest.importorskip('torch', reason="needs torch (pip install '.[train]')")


bench = script_fixture('bench_train_step')


def test_pytorch_resize_swaps_both_passes_and_restores_them(bench):
    from mmp_ros.model.layers import resize_to

    x = torch.randn(1, 2, 4, 5, requires_grad=True)
    with bench.pytorch_resize():
        assert type(resize_to(x, (8, 10)).grad_fn).__name__ == 'UpsampleBilinear2DBackward0'
    assert type(resize_to(x, (8, 10)).grad_fn).__name__ == '_BilinearResizeBackward'


def test_interpolate_forward_swaps_the_forward_only_and_restores_it(bench):
    """The baseline's forward is ``F.interpolate``'s, bit for bit, and its backward the
    matrix one; afterwards the forward is the matrix products again."""
    from mmp_ros.model.layers import resize_to

    x = torch.randn(2, 3, 5, 7, requires_grad=True)
    interpolated = torch.nn.functional.interpolate(x, size=(16, 12), mode='bilinear',
                                                   align_corners=False)
    with bench.interpolate_forward():
        y = resize_to(x, (16, 12))
        assert torch.equal(y, interpolated)
        assert type(y.grad_fn).__name__ == '_InterpolateForwardBackward'
        baseline_grad, = torch.autograd.grad(y.sum(), x)
    y = resize_to(x, (16, 12))
    assert type(y.grad_fn).__name__ == '_BilinearResizeBackward'
    assert not torch.equal(y, interpolated)  # the products round differently...
    torch.testing.assert_close(y, interpolated)  # ...to float rounding
    assert torch.equal(torch.autograd.grad(y.sum(), x)[0], baseline_grad)


def test_contiguous_products_take_a_channels_last_map_contiguous_and_restore(bench):
    """The baseline computes the same resizing on the contiguous layout, a channels-last
    map's result and gradient coming out contiguous; afterwards they keep its layout."""
    from mmp_ros.model.layers import resize_to

    x = torch.randn(2, 3, 5, 7).to(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(2, 3, 16, 12).to(memory_format=torch.channels_last)
    with bench.contiguous_products():
        before = resize_to(x, (16, 12))
        before_grad, = torch.autograd.grad(before, x, grad)
    after = resize_to(x, (16, 12))
    after_grad, = torch.autograd.grad(after, x, grad)
    assert before.is_contiguous() and before_grad.is_contiguous()
    assert not after.is_contiguous() and not after_grad.is_contiguous()
    assert after.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(after, before)
    torch.testing.assert_close(after_grad, before_grad)


@pytest.mark.parametrize(('compare', 'variants'), [
    ('resize', ('PyTorch resize', 'matrix resize')),
    ('forward', ('interpolate forward', 'matrix forward')),
    ('resize-layout', ('contiguous products', 'layout kept')),
    ('layout', ('contiguous', 'channels-last past the stems')),
    ('fill', ('NaN fill', 'no fill')),
    ('optimizer', ('AdamW per tensor', 'AdamW fused')),
    ('fold', ('frozen norms kept', 'frozen norms folded')),  # adaptation only
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
    cases = ['adapt'] if compare == 'fold' else ['base', 'adapt']
    assert [line.split()[0] for line in lines[1:]] == cases
    assert all(all(v in line for v in variants) and ' ms a step: ' in line
               for line in lines[1:])


def test_a_comparison_can_time_the_windowed_adaptation_alone_as_train_runs(bench, capsys,
                                                                            monkeypatch):
    """``--case adapt --windows --keep-freed-memory``: the adaptation step alone, on windows
    as ``--ratio``'s, with freed memory kept (set before any step is built)."""
    built, kept = [], []
    adapt_step = bench.adapt_step
    monkeypatch.setattr(bench, 'adapt_step',
                        lambda *a, **k: built.append(k['windows']) or adapt_step(*a, **k))
    monkeypatch.setattr(bench, 'keep_freed_memory', lambda: kept.append(built[:]) or True)
    threads = torch.get_num_threads()
    try:
        bench.main(['--compare', 'resize-layout', '--case', 'adapt', '--windows',
                    '--keep-freed-memory', '--rounds', '1', '--threads', '1',
                    '--adapt-batch', '2', '--adapt-steps', '1'])
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ['adapt']
    assert built == [True]
    assert kept == [[]]
    with pytest.raises(SystemExit):
        bench.main(['--compare', 'allocator', '--keep-freed-memory'])


def test_each_two_way_comparison_builds_the_steps_it_names(bench, monkeypatch):
    """``--compare optimizer`` and ``fold`` time steps that differ in that alone: the
    optimizer fused or not, the adaptation's frozen norms folded or not."""
    import training.train as train_module

    optimizers, folded = [], []
    adamw = torch.optim.AdamW

    def spy_adamw(*args, **kwargs):
        optimizers.append(kwargs['fused'])
        return adamw(*args, **kwargs)

    fold = train_module.frozen_norms_folded
    monkeypatch.setattr(bench.torch.optim, 'AdamW', spy_adamw)
    monkeypatch.setattr(bench, 'frozen_norms_folded', lambda m: folded.append(m) or fold(m))
    args = bench.argparse.Namespace(base_batch=2, base_steps=1, adapt_batch=2, adapt_steps=1,
                                    rank=4, windows=False)
    for case in ('base', 'adapt'):
        for fused in (False, True):
            bench.build_step(case, args, fused=fused)
    assert optimizers == [False, True, False, True]
    assert len(folded) == 2  # the adaptation steps, folded unless told otherwise
    bench.build_step('adapt', args, fold=False)
    assert len(folded) == 2


def test_ratio_times_the_windowed_adaptation_step_against_the_base_step(bench, capsys):
    threads = torch.get_num_threads()
    try:
        bench.main(['--ratio', '--rounds', '2', '--threads', '1', '--base-batch', '2',
                    '--base-steps', '1', '--adapt-batch', '2', '--adapt-steps', '1',
                    '--base-total', '10', '--adapt-total', '5'])
    finally:
        torch.set_num_threads(threads)
    step, total = capsys.readouterr().out.splitlines()[1:]
    assert step.startswith('base ') and 'adaptation on windows' in step
    ratio = float(step.split(': ')[1].split(' %')[0])
    assert float(total.split(': ')[1].split(' %')[0]) == pytest.approx(ratio / 2, abs=0.01)


@pytest.mark.parametrize(('argv', 'message'), [
    (['--rounds', '0'], 'argument --rounds: must be positive, got 0'),
    (['--threads', '0'], 'argument --threads: must be positive, got 0'),
    (['--adapt-steps', '-1'], 'argument --adapt-steps: must be positive, got -1'),
    (['--compare', 'fold', '--case', 'base'], '--compare fold times the adaptation step'),
    (['--ratio', '--compare', 'layout'], '--ratio times its own two steps'),
    (['--ratio', '--case', 'base'], '--ratio times its own two steps'),
    # were ignored: the totals only weigh --ratio's steps, the windows only the adaptation's
    (['--adapt-total', '1600'], '--base-total and --adapt-total: only with --ratio'),
    (['--compare', 'fold', '--base-total', '1000'], '--base-total and --adapt-total: only wi'),
    (['--case', 'base', '--windows'], '--windows: the adaptation step on windows; not with'),
])
def test_options_that_would_fail_or_time_nothing_are_refused_before_any_step(
        bench, capsys, monkeypatch, argv, message):
    monkeypatch.setattr(bench, 'build_step', lambda *a, **k: pytest.fail('built a step'))
    monkeypatch.setattr(bench, 'step_ratio', lambda args: pytest.fail('timed the ratio'))
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exit_info:
            bench.main(argv)
    finally:
        torch.set_num_threads(threads)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
