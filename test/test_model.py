"""The model: every mask, every method, differing widths, masking that really ignores input."""

from __future__ import annotations

import math
import re

import pytest
from conftest import needs

needs('torch')
needs('einops')

import torch  # noqa: E402

from mmp_ros.inference.testing import tiny_metadata  # noqa: E402
from mmp_ros.modalities import INPUT_CHANNELS, MODALITIES, nonempty_subsets  # noqa: E402
from mmp_ros.model import (  # noqa: E402
    MODEL_SIZES,
    CheckpointError,
    ModelConfig,
    ModelConfigError,
    build_model,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)

METHODS = ('none', 'dropout', 'mask_token', 'mmp', 'mmp_adapt')
# Every method, the projection methods with the convolutional projection too, and two
# masked methods with the shared network told the mask (conditioning, adapters).
MASK_PARTS = {'film': {'mask_conditioning': True}, 'adapters': {'mask_adapters': 8}}
VARIANTS = {**{m: {'method': m} for m in METHODS},
            **{f'{m}_conv': {'method': m, 'projection_kind': 'conv', 'projection_stride': 4}
               for m in ('mmp', 'mmp_adapt')},
            **{f'{m}_{part}': {'method': m, **options}
               for m in ('dropout', 'mmp') for part, options in MASK_PARTS.items()}}
SIZE = 16


pytestmark = pytest.mark.usefixtures('torch_one_thread')


def make_inputs(batch: int, *, modalities=MODALITIES, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, INPUT_CHANNELS[m], SIZE, SIZE, generator=g)
            for m in modalities}


def all_masks(modalities=MODALITIES) -> torch.Tensor:
    return torch.tensor([[m in s for m in modalities] for s in nonempty_subsets(modalities)])


@pytest.fixture(scope='module')
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(ModelConfig(modalities=MODALITIES, num_classes=5, **options))
            for name, options in VARIANTS.items()}


@pytest.mark.parametrize('method', VARIANTS)
def test_every_mask_runs_forward_and_backward_with_finite_values(models, method):
    model = models[method].train()
    masks = all_masks()
    assert masks.shape == (15, 4)
    for available in masks:
        model.zero_grad()
        logits, aux = model.forward_train(make_inputs(2), available[None].expand(2, -1))
        assert logits.shape == (2, 5, SIZE, SIZE)
        loss = logits.logsumexp(1).mean()
        if aux.alignment is not None:
            loss = loss + aux.alignment.mean()
        loss.backward()
        assert torch.isfinite(logits).all()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize('kind', ['attention', 'conv'])
@pytest.mark.parametrize('stage', ['stem', 'encoder'])
def test_differing_widths_and_token_counts(stage, kind):
    config = ModelConfig(modalities=('rgb', 'depth', 'thermal'), num_classes=3, method='mmp',
                         modality_widths={'rgb': 24, 'depth': 8, 'thermal': 12},
                         token_strides={'rgb': 2, 'depth': 4, 'thermal': 8},
                         projection_stage=stage, projection_kind=kind, projection_stride=8,
                         aggregate_stride=16)
    model = build_model(config)
    inputs = make_inputs(3, modalities=config.modalities)
    available = torch.tensor([[True, False, True], [False, True, False], [True, True, True]])
    logits, aux = model.forward_train(inputs, available)
    assert logits.shape == (3, 3, SIZE, SIZE)
    shapes = {m: tuple(t.shape[1:]) for m, t in aux.real.items()}
    assert shapes == {'rgb': (24, 8, 8), 'depth': (8, 4, 4), 'thermal': (12, 2, 2)}
    for m, projected in aux.projected.items():
        assert projected.shape == aux.real[m].shape
    assert aux.alignment.shape == (3, 3)


@pytest.mark.parametrize('method', VARIANTS)
def test_unavailable_modality_input_changes_nothing(models, method):
    model = models[method].eval()
    inputs = make_inputs(2)
    available = torch.tensor([[True, False, True, False], [False, True, True, False]])
    changed = dict(inputs)
    changed['thermal'] = torch.full_like(inputs['thermal'], math.nan)
    changed['depth'] = inputs['depth'].clone()
    changed['depth'][0] = 1000.0  # depth is unavailable for sample 0 only
    with torch.no_grad():
        reference = model(inputs, available)
        assert torch.equal(model(changed, available), reference)
        # and the mask does matter: an available modality's input changes the output
        changed['rgb'] = inputs['rgb'] + 1.0
        assert not torch.equal(model(changed, available)[0], reference[0])


@pytest.mark.parametrize('variant', ['mmp', 'mmp_conv'])
def test_projection_ignores_unavailable_tokens_but_uses_available_ones(models, variant):
    projection = models[variant].projection
    tokens = {m: torch.randn(1, w, SIZE // 4, SIZE // 4)
              for m, w in models[variant].config.widths.items()}
    tokens['thermal'] = torch.randn(1, 16, SIZE // 8, SIZE // 8)
    available = torch.tensor([[True, True, False, False]])
    features, _ = projection(tokens, available, (SIZE, SIZE))
    for name, delta in (('polarization', 50.0), ('rgb', 1.0)):
        changed = {**tokens, name: tokens[name] + delta}
        moved = not torch.equal(projection(changed, available, (SIZE, SIZE))[0], features)
        assert moved == (name == 'rgb'), name


def test_float_available_mask_is_accepted(models):
    model = models['mmp'].eval()
    inputs = make_inputs(1)
    as_bool = torch.tensor([[True, False, True, True]])
    with torch.no_grad():
        assert torch.equal(model(inputs, as_bool), model(inputs, as_bool.float()))


@pytest.mark.parametrize('kind', ['attention', 'conv'])
def test_folded_projection_fusion_equals_substituting_tokens(kind):
    """The cheap fused path equals fusing where(available, real, upsampled projection)."""
    torch.manual_seed(1)
    folded = build_model(ModelConfig(modalities=MODALITIES, num_classes=4, method='mmp',
                                     projection_kind=kind, projection_stride=8))
    folded.eval()
    inputs = make_inputs(4, seed=3)
    masks = all_masks()[[0, 5, 10, 14]]
    with torch.no_grad():
        _, aux = folded.forward_train(inputs, masks)
        substituted = {m: torch.where(masks[:, i, None, None, None], aux.real[m],
                                      aux.projected[m])
                       for i, m in enumerate(MODALITIES)}
        fused_size = (SIZE // 4, SIZE // 4)
        from mmp_ros.model.layers import resize_to

        expected = sum(resize_to(folded.fusion[m](substituted[m]), fused_size)
                       for m in MODALITIES)
        tokens = {m: aux.real[m] for m in MODALITIES}
        from mmp_ros.model.segmenter import TrainOutputs

        got = folded._fuse_projected(tokens, masks, (SIZE, SIZE), fused_size,
                                     TrainOutputs(None, {}, {}), False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('size', [(32, 40), (25, 33)])
def test_decoder_equals_segformer_concatenate_then_fuse(training, size):
    """The decoder's factored order equals SegFormer's written out (upsample each stage's
    linear to 1/4, concatenate, fuse, classify), at sizes the strides divide and not,
    with batch statistics (training) and with running ones, and so do its gradients, to the
    inputs and to every weight."""
    import torch.nn.functional as F

    from mmp_ros.model.segmenter import MLPDecoder

    torch.manual_seed(2)
    decoder = MLPDecoder((8, 12, 16, 20), 6, 5)
    norm = decoder.fuse[1]
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.5, 2.0)
    norm.weight.data.uniform_(0.5, 1.5)
    norm.bias.data.normal_()
    decoder.train(training)
    sizes = [size] + [(math.ceil(size[0] / 2 ** i), math.ceil(size[1] / 2 ** i))
                      for i in (1, 2, 3)]
    features = [torch.randn(3, c, *hw, requires_grad=True)
                for c, hw in zip((8, 12, 16, 20), sizes, strict=True)]
    image_size = (size[0] * 4, size[1] * 4)

    def reference() -> torch.Tensor:
        upsampled = [F.interpolate(linear(f), size=size, mode='bilinear', align_corners=False)
                     for linear, f in zip(decoder.linears, features, strict=True)]
        fused = decoder.fuse(torch.cat(upsampled, dim=1))
        return F.interpolate(decoder.classify(fused), size=image_size, mode='bilinear',
                             align_corners=False)

    expected = reference()
    got = decoder(features, image_size)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(expected)
    wrt = [*features, *(p for p in decoder.parameters() if p.requires_grad)]
    expected_grads = torch.autograd.grad((expected * weights).sum(), wrt)
    got_grads = torch.autograd.grad((got * weights).sum(), wrt)
    for g, e in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


def test_adapted_model_keeps_the_base_output_with_every_modality():
    torch.manual_seed(2)
    base = build_model(ModelConfig(modalities=MODALITIES, num_classes=4, method='none')).eval()
    adapted = build_model(base.config.replace(method='mmp_adapt')).eval()
    load_weights(adapted, base.state_dict(), fresh_prefixes=('projection.',))
    for parameter in adapted.projection.parameters():
        torch.nn.init.normal_(parameter)  # whatever the projection learned
    inputs = make_inputs(2)
    full = torch.ones(2, 4, dtype=torch.bool)
    partial = torch.tensor([[True, False, True, True]] * 2)
    with torch.no_grad():
        assert torch.equal(adapted(inputs, full), base(inputs, full))
        assert not torch.equal(adapted(inputs, partial), base(inputs, partial))


def test_mask_conditioning_starts_as_the_plain_model_and_then_depends_on_the_mask():
    """The scale and shift start at zero (a plain model's output), and once learned they
    act on the fused map by which modalities are real."""
    torch.manual_seed(6)
    plain = build_model(ModelConfig(modalities=MODALITIES, num_classes=4, method='mmp')).eval()
    conditioned = build_model(plain.config.replace(mask_conditioning=True)).eval()
    load_weights(conditioned, plain.state_dict(), fresh_prefixes=('mask_film.',))
    inputs = make_inputs(4, seed=7)
    masks = all_masks()[[0, 5, 10, 14]]
    with torch.no_grad():
        assert torch.equal(conditioned(inputs, masks), plain(inputs, masks))
        torch.nn.init.normal_(conditioned.mask_film.weight, std=0.5)
        moved = (conditioned(inputs, masks) - plain(inputs, masks)).flatten(1).abs().amax(1)
    assert bool((moved > 1e-3).all()), moved


def test_mask_adapters_start_as_the_plain_model_and_act_only_where_one_is_missing():
    """The adapters' gates start at zero (a plain model's output); once learned they act by
    which modalities are missing, and with every modality real not at all, so that
    adaptation can add them and keep the base model's full-modality output."""
    torch.manual_seed(6)
    plain = build_model(ModelConfig(modalities=MODALITIES, num_classes=4, method='mmp')).eval()
    adapted = build_model(plain.config.replace(mask_adapters=8)).eval()
    load_weights(adapted, plain.state_dict(), fresh_prefixes=('encoder.adapters.',))
    inputs = make_inputs(15, seed=7)
    masks = all_masks()
    full = masks.all(1)
    with torch.no_grad():
        assert torch.equal(adapted(inputs, masks), plain(inputs, masks))
        for adapter in adapted.encoder.adapters:
            torch.nn.init.normal_(adapter.gate.weight, std=0.5)
        moved = (adapted(inputs, masks) - plain(inputs, masks)).flatten(1).abs().amax(1)
    assert bool((moved[~full] > 1e-3).all()), moved
    assert bool((moved[full] == 0).all()), moved


def test_load_weights_refuses_other_models_and_names_the_keys():
    tiny = build_model(ModelConfig(modalities=MODALITIES, num_classes=4, method='none'))
    other = build_model(ModelConfig(modalities=('rgb', 'depth'), num_classes=4, method='none'))
    with pytest.raises(CheckpointError, match='missing .*thermal|unexpected .*thermal'):
        load_weights(other, tiny.state_dict())
    with pytest.raises(CheckpointError, match='missing .*projection'):
        load_weights(build_model(tiny.config.replace(method='mmp')), tiny.state_dict())


@pytest.mark.parametrize(('edit', 'message'), [
    ({'class_names': ['floor', 'wall'], 'palette': [[0, 0, 0], [1, 1, 1]]},
     'metadata names 2 classes, the model config has 3'),
    ({'input_channels': {'rgb': 3, 'thermal': 3},
      'normalization': {'rgb': {'mean': [0] * 3, 'std': [1] * 3},
                        'thermal': {'mean': [0] * 3, 'std': [1] * 3}}},
     "metadata input channels {'rgb': 3, 'thermal': 3} differ from the model config's "
     "{'rgb': 3, 'thermal': 1}"),
])
def test_load_checkpoint_refuses_metadata_that_contradicts_the_model(tmp_path, edit, message):
    # Both loaded before, and the export carried the wrong metadata into the ONNX file (a
    # palette one colour short of the labels the graph gives, inputs of the wrong shape).
    metadata = tiny_metadata(modalities=('rgb', 'thermal'), input_size=(16, 16), num_classes=3)
    model = build_model(ModelConfig(modalities=('rgb', 'thermal'), num_classes=3))
    path = save_checkpoint(tmp_path / 'model.pt', model=model, metadata=metadata)
    saved = torch.load(path, weights_only=True)
    saved['metadata'].update(edit)
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match=f'^{path}: {re.escape(message)}$'):
        load_checkpoint(path)


@pytest.mark.parametrize(('key', 'value', 'message'), [
    ('model_config', None, 'its model_config is NoneType, not a mapping'),
    ('metadata', [1], 'its metadata is list, not a mapping'),
    ('state_dict', None, 'its state_dict is NoneType, not a mapping'),
    ('state_dict', 'one', "its state_dict['{first}'] is str, not a tensor"),
])
def test_read_checkpoint_refuses_parts_of_another_type(tmp_path, key, value, message):
    """Each was a TypeError or AttributeError traceback ('NoneType' object is not iterable)
    in load_checkpoint, and in mmp_ros evaluate-model before it."""
    metadata = tiny_metadata(modalities=('rgb', 'thermal'), input_size=(16, 16), num_classes=3)
    model = build_model(ModelConfig(modalities=('rgb', 'thermal'), num_classes=3))
    path = save_checkpoint(tmp_path / 'model.pt', model=model, metadata=metadata)
    saved = torch.load(path, weights_only=True)
    first = next(iter(saved['state_dict']))
    saved[key] = {**saved['state_dict'], first: value} if value == 'one' else value
    torch.save(saved, path)
    with pytest.raises(CheckpointError, match=f'^{path}: {re.escape(message.format(first=first))}'
                       '; the checkpoint was altered, or not written by mmp_ros$'):
        load_checkpoint(path)


@pytest.mark.parametrize(('changes', 'message'), [
    ({'modalities': ('rgb', 'lidar')}, "unknown modality \\['lidar'\\]"),
    ({'method': 'magic'}, "unknown method 'magic'"),
    ({'size': 'huge'}, "unknown model size 'huge'"),
    ({'token_strides': {'rgb': 3}}, 'rgb: token stride must be a power of two'),
    ({'projection_kind': 'mlp'}, "projection_kind must be one of .*got 'mlp'"),
    ({'mask_adapters': -1}, 'mask_adapters must be 0 .*got -1'),
    ({'modality_widths': {'thermal': 8}, 'modalities': ('rgb',)},
     "modality_widths names modalities \\['thermal'\\]"),
])
def test_bad_model_config_names_the_problem(changes, message):
    values = {'modalities': MODALITIES, 'num_classes': 3, **changes}
    with pytest.raises(ModelConfigError, match=message):
        ModelConfig(**values)


def test_config_round_trips_through_plain_dict():
    config = ModelConfig(modalities=('thermal', 'rgb'), num_classes=7, size='base',
                         method='mask_token', modality_widths={'rgb': 40})
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.widths == {'thermal': 48, 'rgb': 40}


def test_registry_has_cpu_and_gpu_sizes_and_tiny_is_small():
    assert {'tiny', 'base'} <= set(MODEL_SIZES)
    count = {size: sum(p.numel() for p in build_model(
        ModelConfig(modalities=MODALITIES, num_classes=10, size=size, method='mmp')
    ).parameters()) for size in ('tiny', 'base')}
    assert count['tiny'] < 1_000_000 < count['base']
    assert count['tiny'] * 4 < 20 * 2**20  # the shipped tiny model fits the 20 MB limit


def test_alignment_terms_match_the_full_training_forward(models):
    model = models['mmp'].eval()
    inputs = make_inputs(3)
    available = all_masks()[[0, 7, 14]]
    with torch.no_grad():
        _, full = model.forward_train(inputs, available)
        alone = model.alignment_terms(inputs, available)
    torch.testing.assert_close(alone.alignment, full.alignment)
    with pytest.raises(RuntimeError, match="'none' has no projection"):
        models['none'].alignment_terms(inputs, available)


@pytest.mark.parametrize('kind', ['attention', 'conv'])
@pytest.mark.parametrize('stage', ['stem', 'encoder'])
def test_distillation_terms_are_the_served_predictions_at_the_decoder_resolution(stage, kind):
    """forward_distill's student is what the model serves with that mask (whatever the
    unavailable inputs hold), its teacher what it serves with every modality, both before
    the final upsampling; the stems run without gradient."""
    from mmp_ros.model.layers import resize_to

    torch.manual_seed(4)
    base = build_model(ModelConfig(modalities=MODALITIES, num_classes=4, method='none'))
    model = build_model(base.config.replace(method='mmp_adapt', projection_stage=stage,
                                            projection_kind=kind, projection_stride=8))
    load_weights(model, base.state_dict(), fresh_prefixes=('projection.',))
    base.eval()
    model.eval()
    inputs = make_inputs(3, seed=5)
    available = all_masks()[[2, 9, 14]]
    student, teacher, aux = model.forward_distill(inputs, available)
    assert student.shape == teacher.shape == (3, 4, SIZE // 4, SIZE // 4)
    assert aux.alignment.shape == (3, 4) and not teacher.requires_grad
    dead = {m: torch.where(available[:, i, None, None, None], inputs[m], math.nan)
            for i, m in enumerate(MODALITIES)}
    with torch.no_grad():
        torch.testing.assert_close(resize_to(student, (SIZE, SIZE)), model(dead, available))
        torch.testing.assert_close(resize_to(teacher, (SIZE, SIZE)),
                                   base(inputs, torch.ones_like(available)))
    student.logsumexp(1).mean().backward()
    learned = {n.split('.')[0] for n, p in model.named_parameters() if p.grad is not None}
    assert 'projection' in learned and 'stems' not in learned
    with pytest.raises(RuntimeError, match="'none' has no projection"):
        base.forward_distill(inputs, available)


@pytest.mark.parametrize('stage', ['stem', 'encoder'])
def test_alignment_false_skips_the_alignment_terms_and_nothing_else(stage):
    """A loss that does not weigh the alignment terms need not compute them: the logits
    (and their gradients) are the same without, for training from scratch and for
    distillation."""
    torch.manual_seed(8)
    inputs = make_inputs(3, seed=8)
    available = all_masks()[[1, 6, 12]]
    mmp = build_model(ModelConfig(modalities=MODALITIES, num_classes=4, method='mmp',
                                  projection_stage=stage)).eval()
    adapt = build_model(ModelConfig(modalities=MODALITIES, num_classes=4, method='mmp_adapt',
                                    projection_stage=stage, projection_kind='conv',
                                    projection_stride=16)).eval()
    targets = adapt.distill_targets(inputs)
    runs = {
        'train': lambda alignment: mmp.forward_train(inputs, available, alignment=alignment),
        'student': lambda alignment: adapt.distill_student(targets, available,
                                                           alignment=alignment),
        'distill': lambda alignment: adapt.forward_distill(inputs, available,
                                                           alignment=alignment)[::2],
    }
    for name, run in runs.items():
        model = mmp if name == 'train' else adapt
        gradients = []
        for alignment in (True, False):
            model.zero_grad()
            logits, aux = run(alignment)
            assert (aux.alignment is not None) == alignment, name
            logits.square().mean().backward()
            gradients.append({n: p.grad.clone() for n, p in model.named_parameters()
                              if p.grad is not None})
            if alignment:
                reference = logits.detach()
            else:
                torch.testing.assert_close(logits, reference, rtol=0, atol=0)
        assert gradients[0].keys() == gradients[1].keys(), name
        for key, grad in gradients[0].items():
            torch.testing.assert_close(gradients[1][key], grad, rtol=0, atol=0)


def test_distillation_targets_cut_to_a_window_on_every_maps_grid():
    """``DistillTargets.crop`` cuts each map on its own grid (thermal's tokens at stride
    8, the others' and the teacher's at 4) and the student runs on the window."""
    torch.manual_seed(6)
    model = build_model(ModelConfig(modalities=MODALITIES, num_classes=4, method='mmp_adapt',
                                    projection_kind='conv', projection_stride=16)).eval()
    g = torch.Generator().manual_seed(6)
    inputs = {m: torch.randn(2, INPUT_CHANNELS[m], 64, 96, generator=g) for m in MODALITIES}
    targets = model.distill_targets(inputs)
    window = targets.crop(32, 32, (32, 64))
    assert window.image_size == (32, 64)
    assert torch.equal(window.teacher, targets.teacher[..., 8:16, 8:24])
    assert torch.equal(window.tokens['rgb'], targets.tokens['rgb'][..., 8:16, 8:24])
    assert torch.equal(window.tokens['thermal'], targets.tokens['thermal'][..., 4:8, 4:12])
    student, aux = model.distill_student(window, all_masks()[[3, 11]])
    assert student.shape == window.teacher.shape == (2, 4, 8, 16)
    assert aux.alignment.shape == (2, 4) and torch.isfinite(student).all()
    whole = targets.crop(0, 0, (64, 96))
    assert all(torch.equal(whole.tokens[m], targets.tokens[m]) for m in MODALITIES)
    with pytest.raises(ValueError, match='leaves the 64x96 frame'):
        targets.crop(32, 64, (64, 64))
    with pytest.raises(ValueError, match='not on the grid of a map of stride 8x8'):
        targets.crop(4, 0, (32, 32))


@pytest.mark.parametrize(('shape', 'size'), [
    ((2, 3, 8, 10), (32, 40)),    # a decoder stage to 1/4 of the input
    ((2, 3, 32, 40), (128, 160)),  # logits to the input's size
    ((1, 2, 7, 9), (5, 13)),      # down along one axis, up along the other, no integer factor
])
@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
def test_resize_to_is_interpolate_and_its_gradient(shape, size, layout):
    """``resize_to``'s passes (matrix products) against PyTorch's own bilinear resizing and
    its backward, and against finite differences; a channels-last map (as training's CPU
    layout computes) comes out channels-last, and its gradient goes back so."""
    from mmp_ros.model.layers import resize_to

    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64).to(memory_format=layout).requires_grad_()
    grad = torch.randn(*shape[:2], *size, dtype=torch.float64).to(memory_format=layout)
    ours = resize_to(x, size)
    theirs = torch.nn.functional.interpolate(x, size=size, mode='bilinear', align_corners=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    ours_grad, = torch.autograd.grad(ours, x, grad)
    theirs_grad, = torch.autograd.grad(theirs, x, grad)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-12, atol=1e-12)
    assert ours.is_contiguous(memory_format=layout)
    assert ours_grad.is_contiguous(memory_format=layout)
    small = x[:1, :2].detach().clone().requires_grad_()  # two channels: a layout of its own
    assert torch.autograd.gradcheck(lambda t: resize_to(t, size), (small,), fast_mode=True)


def test_resize_to_without_gradient_is_plain_interpolate():
    """No gradient wanted (inference, export): no autograd function in the way. (On a GPU
    PyTorch's own backward stays too.)"""
    from mmp_ros.model.layers import resize_to

    x = torch.randn(1, 2, 4, 5, requires_grad=True)
    with torch.no_grad():
        assert resize_to(x, (8, 10)).grad_fn is None
    assert resize_to(x.detach(), (8, 10)).grad_fn is None
    assert type(resize_to(x, (8, 10)).grad_fn).__name__ == '_BilinearResizeBackward'
