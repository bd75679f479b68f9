"""Dataset readers on tiny fixtures written in each published layout, and on malformed ones."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import needs

needs('torch')

import torch  # noqa: E402

from mmp_ros.modalities import MODALITIES  # noqa: E402
from training.data import cli  # noqa: E402
from training.data.dataset import SyntheticDataset  # noqa: E402
from training.data.layout import DatasetLayoutError  # noqa: E402
from training.data.loaders import (  # noqa: E402
    FMB,
    MCUBES_CLASSES,
    NYU40_CLASSES,
    MCubeS,
    MCubeSConfig,
    NYUDv2,
    NYUDv2Config,
    SyntheticFolder,
)
from training.datasets import DatasetError, collate  # noqa: E402

H, W = 12, 16


def _png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _available(sample) -> dict[str, bool]:
    return dict(zip(MODALITIES, sample['available'].tolist(), strict=True))


# --- NYUDv2 -------------------------------------------------------------------------------


@pytest.fixture
def nyu(tmp_path) -> Path:
    root = tmp_path / 'NYUDepthv2'
    for i, name in enumerate(('0001', '0002')):
        _png(root / 'RGB' / f'{name}.jpg', _rgb(i))  # NYU's published RGB is JPEG
        depth = np.full((H, W), 1500 + i, dtype=np.uint16)
        depth[0, 0] = 0
        _png(root / 'Depth' / f'{name}.png', depth)
        label = np.zeros((H, W), dtype=np.uint8)
        label[:, 8:] = 40  # otherprop
        label[0, :] = 1  # wall
        _png(root / 'Label' / f'{name}.png', label)
    (root / 'train.txt').write_text('0001\n0002\n')
    (root / 'test.txt').write_text('0002\n')
    return root


def test_nyudv2_reads_rgb_depth_and_labels(nyu):
    data = NYUDv2(nyu, 'train')
    assert len(data) == 2 and len(data.class_names) == 40 == len(NYU40_CLASSES)
    sample = data[1]
    assert _available(sample) == {'rgb': True, 'depth': True, 'polarization': False,
                                  'thermal': False}
    assert sample['depth'][0, 0, 0] == 0
    assert float(sample['depth'][0, 5, 5]) == pytest.approx(1.501)
    label = sample['label']
    assert label[0, 3] == 0 and label[5, 12] == 39 and label[5, 2] == 255  # 0 -> ignore
    assert torch.equal(sample['polarization'], torch.zeros(3, H, W))
    assert NYUDv2(nyu, 'train', size=(6, 8))[0]['rgb'].shape == (3, 6, 8)


@pytest.mark.parametrize('size', [[0, 5], [32], [32, 40, 3], [31.5, 40], 32, [True, 8],
                                  [100000, 100000]])
def test_a_size_that_is_no_height_and_width_is_refused_when_the_dataset_is_built(nyu, size):
    # it was cut to int ([31.5, 40] -> 31 rows), or failed in cv2.resize ([0, 5]) or with an
    # IndexError ([32]): a traceback from `mmp_ros train`, at the first sample read
    with pytest.raises(DatasetError, match='size must be .height, width., whole numbers'):
        NYUDv2(nyu, 'train', size=size)


def test_a_batch_of_samples_of_several_sizes_is_refused_in_one_line(nyu):
    # a folder of images of several sizes (SUN RGB-D's cameras): torch.stack's RuntimeError
    # was a traceback in the middle of `mmp_ros train`
    _png(nyu / 'RGB' / '0002.jpg', np.zeros((H + 2, W, 3), dtype=np.uint8))
    _png(nyu / 'Depth' / '0002.png', np.full((H + 2, W), 1500, dtype=np.uint16))
    _png(nyu / 'Label' / '0002.png', np.ones((H + 2, W), dtype=np.uint8))
    data = NYUDv2(nyu, 'train')
    with pytest.raises(DatasetError, match=r'samples of one batch differ in size \(rgb: '
                       r'\(3, 12, 16\) and \(3, 14, 16\)\); give the dataset a size'):
        collate([data[0], data[1]])
    resized = NYUDv2(nyu, 'train', size=(6, 8))
    assert collate([resized[0], resized[1]])['rgb'].shape == (2, 3, 6, 8)


def test_nyudv2_names_the_missing_file(nyu):
    (nyu / 'Depth' / '0002.png').unlink()
    with pytest.raises(DatasetLayoutError, match=r'Depth/0002\.png: missing'):
        NYUDv2(nyu, 'train')


def test_nyudv2_rejects_8bit_depth_and_mismatched_sizes(nyu):
    _png(nyu / 'Depth' / '0001.png', np.full((H, W), 20, dtype=np.uint8))
    data = NYUDv2(nyu, 'train')
    with pytest.raises(DatasetLayoutError, match=r'0001\.png: depth must be a single-channel 16'):
        data[0]
    _png(nyu / 'Label' / '0002.png', np.zeros((H + 2, W), dtype=np.uint8))
    with pytest.raises(DatasetLayoutError, match=r'Label/0002\.png: size 16x14 differs'):
        data[1]


def test_nyudv2_rejects_label_ids_outside_its_classes(nyu):
    _png(nyu / 'Label' / '0001.png', np.full((H, W), 41, dtype=np.uint8))
    with pytest.raises(DatasetLayoutError, match=r'0001\.png: label id 41 is outside the 40'):
        NYUDv2(nyu, 'train')[0]


def test_nyudv2_names_a_missing_split_list(nyu):
    with pytest.raises(DatasetLayoutError, match=r'val\.txt: split list missing'):
        NYUDv2(nyu, 'val')


# --- MCubeS -------------------------------------------------------------------------------


@pytest.fixture
def mcubes(tmp_path) -> Path:
    root = tmp_path / 'multimodal_dataset'
    aolp = np.deg2rad(30.0)
    for i, name in enumerate(('outscene1_1', 'outscene1_2')):
        _png(root / 'polL_color' / f'{name}.png', _rgb(10 + i))
        for folder, value in (('polL_aolp_sin', np.sin(aolp)), ('polL_aolp_cos', np.cos(aolp)),
                              ('polL_dolp', 0.4)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            np.save(root / folder / f'{name}.npy', np.full((H, W), value, dtype=np.float32))
        _png(root / 'NIR_warped' / f'{name}.png', np.full((H, W), 128, dtype=np.uint8))
        label = np.full((H, W), 2, dtype=np.uint8)  # metal
        label[:, :4] = 255
        _png(root / 'GT' / f'{name}.png', label)
    (root / 'list_folder').mkdir()
    (root / 'list_folder' / 'train.txt').write_text('outscene1_1\noutscene1_2\n')
    return root


def test_mcubes_maps_aolp_and_dolp_onto_our_polarization_and_drops_nir(mcubes):
    data = MCubeS(mcubes, 'train')
    assert len(data.class_names) == 20 == len(MCUBES_CLASSES)
    sample = data[0]
    assert _available(sample) == {'rgb': True, 'depth': False, 'polarization': True,
                                  'thermal': False}
    pol = sample['polarization'][:, 3, 7]
    expected = [0.4 * np.cos(np.deg2rad(60)), 0.4 * np.sin(np.deg2rad(60)), 0.4]
    np.testing.assert_allclose(pol.numpy(), expected, atol=1e-6)
    assert sample['label'][0, 0] == 255 and sample['label'][0, 5] == 2


def test_mcubes_double_angle_encoding_and_nir_as_thermal_are_explicit(mcubes):
    config = MCubeSConfig(aolp_encoding='double_angle', nir='as_thermal',
                          nir_as_thermal_c=(10.0, 30.0))
    sample = MCubeS(mcubes, 'train', config)[1]
    pol = sample['polarization'][:, 0, 0].numpy()
    np.testing.assert_allclose(pol, [0.4 * np.cos(np.deg2rad(30)), 0.4 * np.sin(np.deg2rad(30)),
                                     0.4], atol=1e-6)
    assert _available(sample)['thermal']
    assert float(sample['thermal'][0, 0, 0]) == pytest.approx(10 + 20 * 128 / 255)
    with pytest.raises(ValueError, match='nir must be'):
        MCubeSConfig(nir='thermal')


def test_mcubes_names_missing_and_inconsistent_files(mcubes):
    np.save(mcubes / 'polL_dolp' / 'outscene1_2.npy', np.zeros((H, W + 1), np.float32))
    data = MCubeS(mcubes, 'train')
    with pytest.raises(DatasetLayoutError, match=r'polL_dolp/outscene1_2\.npy: size 17x12'):
        data[1]
    np.save(mcubes / 'polL_dolp' / 'outscene1_2.npy', np.zeros(W, np.float32))  # IndexError
    with pytest.raises(DatasetLayoutError, match=r'outscene1_2\.npy: size of shape \(16,\)'):
        data[1]
    (mcubes / 'polL_aolp_cos' / 'outscene1_1.npy').unlink()
    with pytest.raises(DatasetLayoutError, match=r'polL_aolp_cos/outscene1_1\.npy: missing'):
        MCubeS(mcubes, 'train')
    shutil.rmtree(mcubes / 'GT')
    with pytest.raises(DatasetLayoutError, match=r'GT: folder missing'):
        MCubeS(mcubes, 'train')


# --- FMB ----------------------------------------------------------------------------------


@pytest.fixture
def fmb(tmp_path) -> Path:
    root = tmp_path / 'FMB'
    for i, name in enumerate(('00001', '00002')):
        _png(root / 'train' / 'Visible' / f'{name}.png', _rgb(20 + i))
        _png(root / 'train' / 'Infrared' / f'{name}.png', np.full((H, W, 3), 51, np.uint8))
        _png(root / 'train' / 'Label' / f'{name}.png', np.full((H, W), 8, np.uint8))  # person
    return root


def test_fmb_reads_rgb_and_infrared_into_the_thermal_slot(fmb):
    data = FMB(fmb, 'train')
    assert len(data) == 2
    sample = data[0]
    assert _available(sample) == {'rgb': True, 'depth': False, 'polarization': False,
                                  'thermal': True}
    assert float(sample['thermal'][0, 2, 2]) == pytest.approx(50 * 51 / 255)
    assert data.class_names[int(sample['label'][0, 0])] == 'person'
    # the file holds BGR (as every PNG written by OpenCV); the loader must hand back RGB
    bgr = _rgb(20)
    np.testing.assert_allclose(sample['rgb'][0].numpy(), bgr[:, :, 2] / 255, atol=1e-6)
    np.testing.assert_allclose(sample['rgb'][2].numpy(), bgr[:, :, 0] / 255, atol=1e-6)


def test_fmb_names_the_missing_infrared_image(fmb):
    (fmb / 'train' / 'Infrared' / '00002.png').unlink()
    with pytest.raises(DatasetLayoutError, match=r'Infrared/00002\.png: missing'):
        FMB(fmb, 'train')
    with pytest.raises(DatasetLayoutError, match=r'test/Visible: folder missing'):
        FMB(fmb, 'test')


# --- our own written layout ---------------------------------------------------------------


def _write(out: Path, polarization: str, depth: str = '16UC1') -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(out), '--split', 'val=2', '--size', '24', '32',
                              '--polarization', polarization, '--depth', depth, '--quiet'])
    assert cli.run(args) == 0


@pytest.mark.parametrize(('polarization', 'depth'), [('intensities', '16UC1'),
                                                     ('mosaic', '32FC1')])
def test_written_dataset_reads_back_as_the_in_memory_samples(tmp_path, polarization, depth):
    _write(tmp_path / 'synth', polarization, depth)
    manifest = json.loads((tmp_path / 'synth' / 'dataset.json').read_text())
    assert manifest['size'] == [24, 32] and len(manifest['splits']['val']) == 2
    folder = SyntheticFolder(tmp_path / 'synth', 'val')
    memory = SyntheticDataset('val', (24, 32), 2, polarization=polarization)
    for index in range(2):
        a, b = folder[index], memory[index]
        for key in a:
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0, msg=key)


def test_writing_twice_gives_byte_identical_files(tmp_path):
    _write(tmp_path / 'a', 'mosaic')
    _write(tmp_path / 'b', 'mosaic')
    files_a = sorted(p.relative_to(tmp_path / 'a') for p in (tmp_path / 'a').rglob('*.*'))
    files_b = sorted(p.relative_to(tmp_path / 'b') for p in (tmp_path / 'b').rglob('*.*'))
    assert files_a == files_b and len(files_a) == 1 + 2 * 6
    for rel in files_a:
        assert (tmp_path / 'a' / rel).read_bytes() == (tmp_path / 'b' / rel).read_bytes(), rel


def test_written_dataset_names_missing_or_inconsistent_files(tmp_path):
    root = tmp_path / 'synth'
    _write(root, 'mosaic')
    stem = json.loads((root / 'dataset.json').read_text())['splits']['val'][1]
    thermal = root / 'val' / 'thermal' / f'{stem}.png'
    _png(thermal, np.zeros((10, 10), np.uint16))
    with pytest.raises(DatasetLayoutError, match=rf'thermal/{stem}\.png: size 10x10 differs'):
        SyntheticFolder(root, 'val')[1]
    thermal.unlink()
    with pytest.raises(DatasetLayoutError, match=rf'thermal/{stem}\.png: missing'):
        SyntheticFolder(root, 'val')
    with pytest.raises(DatasetLayoutError, match=r"no split 'train'"):
        SyntheticFolder(root, 'train')
    (root / 'dataset.json').unlink()
    with pytest.raises(DatasetLayoutError, match=r'dataset\.json: missing'):
        SyntheticFolder(root, 'val')



@pytest.mark.parametrize(('edit', 'message'), [
    (lambda m: [m], r'a JSON object expected, got list'),
    (lambda m: m | {'splits': ['val']}, r'"splits" must map each split to a list'),
    (lambda m: m | {'encodings': {}}, r"\"encodings\" is not as .*KeyError: 'depth'"),
    (lambda m: m | {'encodings': m['encodings'] | {'thermal': 'mono16'}},
     r'"encodings" .*TypeError'),
    (lambda m: m | {'encodings': m['encodings'] | {'depth': '16UC2'}}, r"encodings depth '16UC2'"),
    # these were "'>' not supported ..." and "invalid literal for int()", naming no key
    (lambda m: m | {'encodings': m['encodings'] | {'thermal': m['encodings']['thermal'] | {
        'planck': m['encodings']['thermal']['planck'] | {'b': '1428.0'}}}},
     r"encodings\.thermal\.planck\.b must be a number, got '1428\.0'"),
    (lambda m: m | {'palette': [['a', 'b', 'c']] * 14},
     r'"palette" must be one \[r, g, b\] of integers 0 to 255 per class \(14\), got'),
    (lambda m: m | {'palette': [1, 2, 3]}, r'"palette" must be one \[r, g, b\]'),
    (lambda m: m | {'palette': [[0, 0, 0]] * 3}, r'"palette" .* per class \(14\)'),
])
def test_a_garbled_dataset_json_is_named(tmp_path, edit, message):
    # a hand-edited dataset.json ended in AttributeError, TypeError or KeyError tracebacks
    # (or, with an unknown depth encoding, looked for .npy files)
    root = tmp_path / 'synth'
    _write(root, 'mosaic')
    path = root / 'dataset.json'
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(DatasetLayoutError, match=rf'dataset\.json: {message}'):
        SyntheticFolder(root, 'val')

@pytest.mark.parametrize(('depth', 'modality', 'image', 'message'), [
    ('16UC1', 'depth', np.full((24, 32), 200, np.uint8), r'16-bit PNG of millimetres, got uint8'),
    ('16UC1', 'depth', np.full((24, 32, 3), 2000, np.uint16), r'got uint16 \(24, 32, 3\)'),
    ('16UC1', 'thermal', np.full((24, 32), 120, np.uint8), r'radiometric counts .* got uint8'),
    ('32FC1', 'depth', np.full((24, 32), 2000, np.int32), r'float array of metres, got int32'),
    ('32FC1', 'depth', np.ones(24, np.float32), r'float array of metres, got float32 \(24,\)'),
    ('16UC1', 'polarization', np.full((24, 32), 200, np.uint8),
     r'16-bit PNG of 12-bit values, got uint8 \(24, 32\)'),
    ('16UC1', 'polarization', np.full((24, 32, 4), 200, np.uint8),
     r'16-bit PNG of 12-bit values, got uint8 \(24, 32, 4\)'),
])
def test_written_dataset_names_a_file_of_the_wrong_format(tmp_path, depth, modality, image,
                                                           message):
    # an 8-bit thermal PNG decoded to NaN degrees, an 8-bit depth PNG to at most 0.255 m, a
    # colour depth PNG to a (1, H, W, 3) tensor, integer .npy depth to kilometres, an 8-bit
    # polarization PNG to a coarser representation than dataset.json's 12 bits: all taken
    root = tmp_path / 'synth'
    _write(root, 'intensities' if image.ndim == 3 and modality == 'polarization' else 'mosaic',
           depth)
    stem = json.loads((root / 'dataset.json').read_text())['splits']['val'][0]
    if depth == '32FC1':
        np.save(root / 'val' / 'depth' / f'{stem}.npy', image)
    else:
        _png(root / 'val' / modality / f'{stem}.png', image)
    match = rf'{modality}/{stem}\.(png|npy): expected .*{message}'
    with pytest.raises(DatasetLayoutError, match=match):
        SyntheticFolder(root, 'val')[0]


def test_written_dataset_names_a_hand_made_mosaic_of_odd_size(tmp_path):
    # every file cropped alike, so the sizes agree: the decoder's SensorInputError named no file
    root = tmp_path / 'synth'
    _write(root, 'mosaic')
    stem = json.loads((root / 'dataset.json').read_text())['splits']['val'][0]
    for folder in ('rgb', 'depth', 'polarization', 'thermal', 'label'):
        path = root / 'val' / folder / f'{stem}.png'
        _png(path, cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[:23])
    with pytest.raises(DatasetLayoutError,
                       match=rf'polarization/{stem}\.png: a 2x2 polarizer mosaic needs even'):
        SyntheticFolder(root, 'val')[0]


def test_cli_rejects_a_malformed_split_argument(tmp_path):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    with pytest.raises(cli.SynthDatasetError, match='NAME=COUNT'):
        cli.run(parser.parse_args([str(tmp_path), '--split', 'training=3']))


@pytest.mark.parametrize(('extra', 'message'), [
    (['--size', '9', '11'], 'needs an even height and width'),
    (['--start', '-5'], 'numbered from 0 to 9999999'),
    (['--start', '9999999', '--split', 'val=2'], 'numbered from 0 to 9999999'),
    # the first was dropped without a word: two train scenes written, not five
    (['--split', 'train=5', '--split', 'train=2'], r'--split train given twice \(train=5, '
     r'train=2\): give each split once'),
    # a start inside the range with too many scenes after it: the message said only the range
    (['--start', '9999996', '--split', 'train=5'],
     '--start 9999996: scenes 9999996 to 10000000 asked for, but .* from 0 to 9999999'),
    (['--size', '4', '32'], 'at least 8x8'),
    # rendered until numpy ran out of memory, a traceback after the folders were made
    (['--size', '100000', '100000'], 'at most 4096 a side, got 100000x100000'),
])
def test_cli_refuses_what_it_could_not_write_or_read_back(tmp_path, extra, message):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / 'synth'), '--size', '24', '32', '--quiet', *extra])
    with pytest.raises(cli.SynthDatasetError, match=message):
        cli.run(args)
    assert not (tmp_path / 'synth').exists()


@pytest.mark.parametrize('jobs', ['0', '-2'])
def test_cli_refuses_a_worker_count_under_one(jobs, capsys):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    with pytest.raises(SystemExit):  # it wrote the dataset with one process, saying nothing
        parser.parse_args(['out', '--jobs', jobs])
    assert 'must be positive' in capsys.readouterr().err


def test_cli_names_an_output_that_is_a_file(tmp_path, capsys):
    from mmp_ros.cli import main

    (tmp_path / 'synth').write_text('notes')
    assert main(['synth-dataset', str(tmp_path / 'synth'), '--size', '24', '32', '--quiet',
                 '--split', 'val=1']) == 2
    assert capsys.readouterr().err.startswith(
        f'mmp_ros synth-dataset: out {tmp_path / "synth"}: cannot be a folder (')
    assert (tmp_path / 'synth').read_text() == 'notes'


def test_cli_names_what_blocks_writing_inside_the_output(tmp_path, capsys):
    from mmp_ros.cli import main

    (tmp_path / 'synth').mkdir()
    (tmp_path / 'synth' / 'val').write_text('notes')  # where the split's folders go
    assert main(['synth-dataset', str(tmp_path / 'synth'), '--size', '16', '16', '--quiet',
                 '--split', 'val=1']) == 2  # it was a NotADirectoryError traceback
    err = capsys.readouterr().err
    assert err.startswith(f'mmp_ros synth-dataset: out {tmp_path / "synth"}: cannot write the '
                          'dataset ([Errno 20] Not a directory:')
    assert len(err.splitlines()) == 1


def test_every_loader_gives_training_a_palette_for_its_classes(tmp_path, nyu, fmb):
    from training.config import load_config
    from training.data.classes import CLASS_NAMES, PALETTE
    from training.datasets import dataset_classes
    from training.train import train

    for data in (NYUDv2(nyu, 'train'), FMB(fmb, 'train')):
        names, palette = dataset_classes(data)
        assert names == data.class_names and len(set(palette)) == len(names)
    _write(tmp_path / 'synth', 'mosaic')
    assert dataset_classes(SyntheticFolder(tmp_path / 'synth', 'val')) == (CLASS_NAMES, PALETTE)
    # ``mmp_ros train`` on the folder synth-dataset wrote (it stopped on the palette before)
    config = load_config(None, [
        'data.dataset=training.data.loaders:SyntheticFolder',
        f'data.params={{root: {tmp_path / "synth"}}}', 'data.train_split=val',
        'data.input_size=[24,32]', 'data.normalization_samples=2', 'batch_size=2', 'steps=1',
        'eval_every=0', 'progress=false', 'device=cpu', 'model.projection_stride=8',
        'model.aggregate_stride=16', f'out_dir={tmp_path / "run"}'])
    assert len(train(config).losses) == 1


def test_a_dataset_of_more_classes_than_label_255_leaves_is_refused(nyu):
    from training.datasets import DatasetError, dataset_classes

    data = NYUDv2(nyu, 'train')
    data.class_names = tuple(f'class_{k}' for k in range(256))  # class 255: the ignore index
    with pytest.raises(DatasetError, match='256 classes; at most 255'):
        dataset_classes(data)


def test_a_loaders_config_comes_from_yaml_as_a_mapping(nyu, mcubes):
    from training.config import load_config
    from training.datasets import DatasetError, build_dataset

    def build(name, root, config):
        data = load_config(None, [f'data.dataset=training.data.loaders:{name}',
                                  f'data.params={{root: {root}, config: {config}}}']).data
        return build_dataset(data, 'train')

    data = build('NYUDv2', nyu, '{depth_scale_m: 0.002}')
    assert data.config == NYUDv2Config(depth_scale_m=0.002)
    assert float(data[0]['depth'][0, 1, 1]) == pytest.approx(3.0)  # 1500 counts of 2 mm
    assert build('MCubeS', mcubes, '{nir: as_thermal}').config.nir == 'as_thermal'
    # a traceback (AttributeError: 'dict' object has no attribute ...) before
    with pytest.raises(DatasetError, match="unexpected keyword argument 'rgb_extension'"):
        build('NYUDv2', nyu, '{rgb_extension: .png}')
    with pytest.raises(DatasetError, match="nir must be 'drop' or 'as_thermal'"):
        build('MCubeS', mcubes, '{nir: thermal}')


def test_writing_more_splits_or_scenes_into_a_dataset_keeps_what_it_held(tmp_path):
    """dataset.json listed the last command's splits alone: a val split written beside a
    train split, or a split continued with --start, lost the scenes written before."""
    root = tmp_path / 'synth'
    _write(root, 'mosaic')  # val: scenes 0, 1

    def write(*extra):
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        return cli.run(parser.parse_args([str(root), '--size', '24', '32', '--quiet', *extra]))

    assert write('--split', 'train=1') == 0
    assert write('--split', 'val=1', '--start', '2') == 0
    assert len(SyntheticFolder(root, 'train')) == 1
    assert [int(n) for n in SyntheticFolder(root, 'val').names] == [10000000, 10000001, 10000002]
    manifest = (root / 'dataset.json').read_text()
    with pytest.raises(cli.SynthDatasetError, match=r'written otherwise \(encodings.depth: '
                       "'16UC1' -> '32FC1'\\): write into another folder"):
        write('--split', 'test=1', '--depth', '32FC1')
    assert (root / 'dataset.json').read_text() == manifest and not (root / 'test').exists()


def test_a_stop_while_more_scenes_are_listed_keeps_the_dataset_readable(tmp_path, monkeypatch):
    """dataset.json was rewritten in place: a stop while it was written (Ctrl-C, SIGTERM)
    left it cut short, and the scenes it had listed were read by nothing ('not valid JSON'),
    nor could synth-dataset add to the folder."""
    root = tmp_path / 'synth'
    _write(root, 'mosaic')
    manifest = (root / 'dataset.json').read_text()
    write_text = Path.write_text

    def stopped_half_way(path, text, *args, **kwargs):
        if path.name.startswith('dataset.json'):
            write_text(path, text[:len(text) // 2], *args, **kwargs)
            raise KeyboardInterrupt
        return write_text(path, text, *args, **kwargs)

    monkeypatch.setattr(Path, 'write_text', stopped_half_way)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    with pytest.raises(KeyboardInterrupt):
        cli.run(parser.parse_args([str(root), '--size', '24', '32', '--quiet', '--split',
                                   'train=1']))
    monkeypatch.undo()
    assert (root / 'dataset.json').read_text() == manifest
    assert len(SyntheticFolder(root, 'val')) == 2


def test_a_run_into_the_folder_meanwhile_keeps_its_splits(tmp_path, monkeypatch):
    """dataset.json was merged with the folder's before rendering only: a val split written
    into the folder by another synth-dataset while this one rendered train was dropped from
    it by the run that ended last (its files on disk, SyntheticFolder: 'no split val')."""
    root = tmp_path / 'synth'
    write_one = cli._write_one

    def another_run_meanwhile(job):
        monkeypatch.setattr(cli, '_write_one', write_one)
        cli.write_dataset(root, {'val': 1}, (24, 32))
        write_one(job)

    monkeypatch.setattr(cli, '_write_one', another_run_meanwhile)
    cli.write_dataset(root, {'train': 1}, (24, 32))
    assert len(SyntheticFolder(root, 'train')) == 1 and len(SyntheticFolder(root, 'val')) == 1


def _killed_worker(job):
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer ends a worker


def test_a_worker_killed_is_named_in_one_line(tmp_path, monkeypatch, capsys):
    # --jobs 4 --size 4096 4096 wants some 3 GB a worker: one OOM-killed worker ended
    # synth-dataset in a BrokenProcessPool traceback
    monkeypatch.setattr(cli, '_write_one', _killed_worker)
    from mmp_ros.cli import main
    assert main(['synth-dataset', str(tmp_path / 'synth'), '--size', '16', '16', '--quiet',
                 '--split', 'val=2', '--jobs', '2']) == 2
    assert ('synth-dataset: a worker process of --jobs 2 ended abruptly (killed, as for lack '
            'of memory)') in capsys.readouterr().err
    assert not (tmp_path / 'synth' / 'dataset.json').exists()


def test_a_dataset_error_in_a_loader_worker_is_its_message_alone(nyu):
    # with data.num_workers > 0 (config/train_*.yaml: 2 to 8) torch raised a dataset's
    # DatasetLayoutError again as 'Caught DatasetLayoutError in DataLoader worker process 0.'
    # and the worker's traceback, which mmp_ros train printed whole
    from mmp_ros.cli import input_error_message
    _png(nyu / 'Label' / '0002.png', np.full((H, W), 99, dtype=np.uint8))
    loader = torch.utils.data.DataLoader(NYUDv2(nyu, 'train'), batch_size=2, num_workers=1,
                                         collate_fn=collate)
    batches = iter(loader)
    with pytest.raises(DatasetLayoutError) as raised:
        next(batches)
    batches._shutdown_workers()  # now, not in a 5 s wait at the test's teardown
    assert 'DataLoader worker process' in str(raised.value)
    assert input_error_message(raised.value) == (
        f"{nyu / 'Label' / '0002.png'}: label id 99 is outside the 40 classes of NYUDv2")
