"""Generator contract: determinism, splits, encodings, the torch sample, the class design."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import needs

needs('torch')

import torch  # noqa: E402

from mmp_ros.modalities import INPUT_CHANNELS, MODALITIES, nonempty_subsets  # noqa: E402
from training.data.ceiling import (  # noqa: E402
    ceiling_table,
    class_ceiling,
    confusion_groups,
    design_report,
    identifiable_classes,
    information_ceiling,
)
from training.data.classes import CLASS_INDEX, CLASS_NAMES, CUES, PALETTE  # noqa: E402
from training.data.dataset import SyntheticDataset  # noqa: E402
from training.data.decode import decode_frame  # noqa: E402
from training.data.geometry import cast  # noqa: E402
from training.data.physics import KELVIN  # noqa: E402
from training.data.render import POLARIZATION_BITS, render  # noqa: E402
from training.data.scene import (  # noqa: E402
    FLUSH_OFFSET,
    IN_DISTRIBUTION,
    SPLIT_CAPACITY,
    SPLITS,
    SceneError,
    make_split,
    sample_scene,
    split_of_seed,
)

RAW_FIELDS = ('rgb', 'depth_mm', 'depth_m', 'polarization', 'thermal', 'label', 'instance')


def _bytes(images) -> dict[str, bytes]:
    return {f: getattr(images, f).tobytes() for f in RAW_FIELDS}


def test_same_seed_gives_byte_identical_frames_and_another_seed_does_not():
    seed = make_split('val', 3)
    first = _bytes(render(sample_scene(seed, 96, 72)))
    again = _bytes(render(sample_scene(seed, 96, 72)))
    assert first == again
    other = _bytes(render(sample_scene(seed + 1, 96, 72)))
    assert all(first[f] != other[f] for f in ('rgb', 'depth_mm', 'polarization', 'thermal'))


def test_dataset_samples_are_reproducible_across_instances():
    a = SyntheticDataset('test', (48, 64), 3)[2]
    b = SyntheticDataset('test', (48, 64), 3)[2]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_negative_indexes_count_from_the_end_as_in_the_folder_datasets():
    # SyntheticDataset[-1] raised IndexError where SyntheticFolder[-1] gave the last scene.
    dataset = SyntheticDataset('test', (48, 64), 3, start=5)
    assert dataset.seed(-1) == dataset.seed(2) and dataset.seed(-3) == dataset.seed(0)
    for index in (3, -4):
        with pytest.raises(IndexError, match=f'index {index} out of range for 3 scenes'):
            dataset.seed(index)


def test_splits_own_disjoint_seed_ranges():
    seen: dict[int, str] = {}
    for split in SPLITS:
        for index in (0, 1, 17, SPLIT_CAPACITY - 1):
            seed = make_split(split, index)
            assert seed not in seen, (split, seen.get(seed))
            seen[seed] = split
            assert split_of_seed(seed) == split
    ranges = [(make_split(s, 0), make_split(s, SPLIT_CAPACITY - 1)) for s in SPLITS]
    for (_, hi_a), (lo_b, _) in zip(ranges, ranges[1:], strict=False):
        assert hi_a < lo_b
    with pytest.raises(SceneError, match='outside'):
        make_split('train', SPLIT_CAPACITY)
    with pytest.raises(SceneError, match='unknown split'):
        make_split('training', 0)


def test_ood_split_draws_outside_the_training_ranges():
    lo, hi = IN_DISTRIBUTION.ambient_c[0]
    counts = []
    for index in range(10):
        scene = sample_scene(make_split('ood', index), 64, 48)
        counts.append(len(scene.objects))
        ambient = scene.thermal.ambient_k - KELVIN
        assert not lo <= ambient <= hi
    # crowded rooms may leave an object without a free spot, but most scenes are fuller
    assert np.median(counts) > IN_DISTRIBUTION.object_count[1]
    for index in range(10):
        scene = sample_scene(make_split('train', index), 64, 48)
        assert IN_DISTRIBUTION.object_count[0] - 1 <= len(scene.objects)
        assert len(scene.objects) <= IN_DISTRIBUTION.object_count[1]
        assert lo <= scene.thermal.ambient_k - KELVIN <= hi


def test_raw_frames_use_ros_encodings():
    scene = sample_scene(make_split('train', 0), 80, 60)
    images = render(scene)
    assert images.rgb.shape == (60, 80, 3) and images.rgb.dtype == np.uint8
    assert images.depth_mm.shape == (60, 80) and images.depth_mm.dtype == np.uint16
    assert images.depth_m.dtype == np.float32
    invalid = images.depth_mm == 0
    assert invalid.any() and np.isnan(images.depth_m[invalid]).all()
    metres = images.depth_m[~invalid]
    np.testing.assert_array_equal(np.rint(metres * 1000), images.depth_mm[~invalid])
    assert images.polarization.shape == (4, 60, 80) and images.polarization.dtype == np.uint16
    assert images.polarization.max() < 2**POLARIZATION_BITS
    mosaic = images.polarization_mosaic
    assert mosaic.shape == (60, 80)
    # IMX250MZR: (row, col) = [[90, 45], [135, 0]]; planes are ordered 0, 45, 90, 135 deg
    for (row, col), plane in (((0, 0), 2), ((0, 1), 1), ((1, 0), 3), ((1, 1), 0)):
        np.testing.assert_array_equal(mosaic[row::2, col::2],
                                      images.polarization[plane, row::2, col::2])
    assert images.thermal.dtype == np.uint16 and images.label.dtype == np.uint8
    assert images.intrinsics.shape == (3, 3)
    assert images.intrinsics[0, 2] == pytest.approx(39.5)


def test_geometry_buffers_are_consistent():
    scene = sample_scene(make_split('train', 2), 64, 48)
    geo = cast(scene)
    np.testing.assert_allclose(np.linalg.norm(geo.normal, axis=0), 1.0, atol=1e-5)
    assert (geo.depth <= geo.distance + 1e-5).all()
    assert ((geo.cos_view >= 0) & (geo.cos_view <= 1)).all()
    points = geo.point.reshape(3, -1).T
    assert (points >= -1e-3).all() and (points <= scene.room + 1e-3).all()
    assert (geo.incidence >= 0).all() and (geo.incidence <= np.pi / 2 + 1e-6).all()


def test_a_mosaic_of_odd_size_is_refused_when_the_dataset_is_built():
    # it was built, and failed at its first sample with the decoder's message
    with pytest.raises(ValueError, match=r"polarization 'mosaic' .* even height and width"):
        SyntheticDataset('train', (33, 40), 2, polarization='mosaic')
    assert len(SyntheticDataset('train', (33, 40), 2)) == 2  # intensities: any size


@pytest.mark.parametrize(('kwargs', 'message'), [
    # truncated without a word: 2 scenes, a 64-pixel height
    ({'length': 2.5}, 'length must be a whole number of scenes, got 2.5'),
    ({'start': 1.5}, 'start must be a whole number of scenes, got 1.5'),
    ({'size': (64.5, 64)}, r'size must be whole numbers of pixels, got 64.5x64'),
    # rendered, though synth-dataset --size 5000 64 is refused
    ({'size': (5000, 64)}, 'size must be at least 8x8 and at most 4096 a side, got 5000x64'),
])
def test_a_fraction_or_a_side_synth_dataset_refuses_is_refused(kwargs, message):
    with pytest.raises(SceneError, match=message):
        SyntheticDataset('train', **{'size': (16, 16), 'length': 2, **kwargs})


def test_sample_dict_matches_the_model_contract():
    dataset = SyntheticDataset('train', (40, 56), 2, polarization='mosaic')
    sample = dataset[1]
    assert set(sample) == set(MODALITIES) | {'available', 'label'}
    for name in MODALITIES:
        assert sample[name].shape == (INPUT_CHANNELS[name], 40, 56)
        assert sample[name].dtype == torch.float32
    assert sample['available'].tolist() == [True] * len(MODALITIES)
    assert sample['label'].dtype == torch.int64 and sample['label'].shape == (40, 56)
    assert int(sample['label'].max()) < len(CLASS_NAMES)
    rgb, depth, pol = sample['rgb'], sample['depth'], sample['polarization']
    assert float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    assert float(depth.min()) == 0 and 0.5 < float(depth.max()) < 7
    assert float(pol[2].min()) >= 0 and float(pol[2].max()) <= 1
    np.testing.assert_allclose(torch.hypot(pol[0], pol[1]), pol[2], atol=1e-5)
    assert float(sample['thermal'].min()) > -40 and float(sample['thermal'].max()) < 100
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    batch = next(iter(loader))
    assert batch['rgb'].shape == (2, 3, 40, 56) and batch['available'].shape == (2, 4)


def test_mosaic_and_intensity_polarization_agree_away_from_edges():
    images = render(sample_scene(make_split('train', 1), 128, 96))
    a = decode_frame(images, 'intensities')['polarization']
    b = decode_frame(images, 'mosaic')['polarization']
    # demosaicing blurs; on average the two representations agree closely
    assert np.median(np.abs(a[2] - b[2])) < 0.05


def _swap(scene, k, class_name, **changes):
    objects = list(scene.objects)
    objects[k] = dataclasses.replace(objects[k], class_index=CLASS_INDEX[class_name], **changes)
    return dataclasses.replace(scene, objects=tuple(objects))


def _scene_with_red_matte():
    for index in range(200):
        scene = sample_scene(make_split('train', index), 96, 72)
        if scene.lighting.condition != 'normal':
            continue
        for k, obj in enumerate(scene.objects):
            if obj.class_index == CLASS_INDEX['red_matte']:
                images = render(scene)
                if (images.instance == 2 + k).sum() > 150:
                    return scene, k, images
    raise AssertionError('no scene shows a red_matte object')


@pytest.mark.parametrize(
    ('other', 'changes', 'differs'),
    [
        ('red_glossy', {}, {'polarization'}),
        ('red_hot', {'temperature_k': 60.0 + KELVIN}, {'thermal'}),
        ('green_matte', {}, {'rgb'}),
    ],
)
def test_designed_pairs_differ_only_in_the_modality_their_cues_say(other, changes, differs):
    """Swapping an object's class changes exactly the modalities whose cues differ."""
    scene, k, images = _scene_with_red_matte()
    swapped = render(_swap(scene, k, other, **changes))
    expected = {m for m in MODALITIES if CUES[m][CLASS_INDEX['red_matte']] != CUES[m][
        CLASS_INDEX[other]]}
    assert expected == differs
    mask = images.instance == 2 + k
    a, b = decode_frame(images), decode_frame(swapped)
    for name in MODALITIES:
        change = float(np.abs(a[name] - b[name])[:, mask].mean())
        if name in differs:
            assert change > 0.02, name
        else:  # luminance-matched paints leave the mono polarization camera a rounding apart
            assert change < 0.005, (name, change)


def test_every_modality_matters_and_half_the_classes_survive_losing_any_one():
    report = design_report()
    assert report['every_modality_matters'] and report['half_identifiable_without_any_one']
    for modality in MODALITIES:
        assert report['classes_needing'][modality], modality
        assert len(report['identifiable_without'][modality]) >= len(CLASS_NAMES) / 2


def test_single_modality_pairs_from_the_issue_are_separable_only_by_their_modality():
    pairs = {
        'rgb': ('red_matte', 'green_matte'),
        'polarization': ('red_matte', 'red_glossy'),
        'depth': ('poster', 'canvas'),
        'thermal': ('red_matte', 'red_hot'),
    }
    for modality, (a, b) in pairs.items():
        ia, ib = CLASS_INDEX[a], CLASS_INDEX[b]
        for m in MODALITIES:
            same = CUES[m][ia] == CUES[m][ib]
            assert same != (m == modality), (a, b, m)


def test_ceiling_is_one_with_everything_and_grows_with_more_modalities():
    table = ceiling_table()
    assert len(table) == 15
    assert table['all'] == pytest.approx(1.0)
    subsets = list(nonempty_subsets())
    for small in subsets:
        for big in subsets:
            if set(small) < set(big):
                assert information_ceiling(big) >= information_ceiling(small) - 1e-12
    assert all(v < 1 for k, v in table.items() if k != 'all')


def test_ceiling_closed_form_for_a_pair_and_pixel_weighting():
    groups = confusion_groups(['rgb'])
    pair = next(g for g in groups if set(g) == {CLASS_INDEX['poster'], CLASS_INDEX['canvas']})
    iou = class_ceiling(['rgb'])
    assert iou[pair[0]] == pytest.approx(1 / 3)  # equal shares: 1 / (2k - 1)
    counts = np.ones(len(CLASS_NAMES))
    counts[CLASS_INDEX['poster']] = 3.0
    weighted = class_ceiling(['rgb'], counts)
    # poster: (3/2) / (3 + 4/2 - 3/2) = 3/7; canvas: (1/2) / (1 + 2 - 1/2) = 1/5
    assert weighted[CLASS_INDEX['poster']] == pytest.approx(3 / 7)
    assert weighted[CLASS_INDEX['canvas']] == pytest.approx(1 / 5)
    counts[CLASS_INDEX['tv']] = 0  # absent classes do not count
    assert np.isnan(class_ceiling(['rgb'], counts)[CLASS_INDEX['tv']])
    assert CLASS_INDEX['tv'] in identifiable_classes(['rgb'])
    with pytest.raises(ValueError, match='one per class'):
        information_ceiling(['rgb'], [1.0, 2.0])


def test_palette_and_names_line_up():
    assert len(PALETTE) == len(CLASS_NAMES) == len(set(CLASS_NAMES))
    assert len(set(PALETTE)) == len(PALETTE)
    assert CLASS_NAMES[:2] == ('floor', 'wall')


def test_a_canvas_differs_from_a_poster_of_the_same_face_only_in_depth():
    """Flatten a canvas onto its wall: only its relief (depth) and a rim of side faces change."""
    for index in range(300):
        scene = sample_scene(make_split('train', index), 128, 96)
        k = next((k for k, o in enumerate(scene.objects)
                  if o.class_index == CLASS_INDEX['canvas']), None)
        if scene.lighting.condition != 'normal' or k is None:
            continue
        images = render(scene)
        mask = images.instance == 2 + k
        if mask.sum() > 200 and (images.depth_mm[mask] > 0).mean() > 0.9:
            break
    else:
        raise AssertionError('no well-visible canvas found')
    canvas = scene.objects[k]
    out_of_wall = np.array([np.sin(canvas.yaw), 0.0, np.cos(canvas.yaw)])
    thickness = canvas.half_size[2]
    flat = _swap(
        scene, k, 'poster',
        center=canvas.center - out_of_wall * (thickness - 0.0015 - FLUSH_OFFSET),
        half_size=np.array([canvas.half_size[0], canvas.half_size[1], 0.0015]),
    )
    poster = render(flat)
    a, b = decode_frame(images), decode_frame(poster)
    both = mask & (poster.instance == 2 + k)
    assert both.sum() > 0.8 * mask.sum()  # the same face, seen from the same camera
    depth_change = np.abs(a['depth'][0] - b['depth'][0])[both & (images.depth_mm > 0)
                                                          & (poster.depth_mm > 0)]
    relief = 2 * thickness - 0.003 - FLUSH_OFFSET  # metres between the canvas face and the poster
    assert np.median(depth_change) > 0.5 * relief  # along the optical axis, through noise
    for name in ('rgb', 'polarization', 'thermal'):
        changed = (np.abs(a[name] - b[name]).max(axis=0) > 1e-6)[mask | (poster.instance == 2 + k)]
        assert changed.mean() < 0.2, (name, changed.mean())  # only the rim of side faces
