"""``mmp_ros decode`` on real samples: what it prints and how it fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from conftest import repo_env

from mmp_ros.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_decode_depth_file_prints_shape_range_and_invalid_fraction(real_data, capsys):
    path = real_data / 'tum_rgbd' / 'depth_mm.png'
    assert main(['decode', '--modality', 'depth', '--encoding', '16UC1', str(path),
                 '--repeat', '1']) == 0
    out = capsys.readouterr().out
    assert 'depth 16UC1 640x480' in out
    assert 'data (480, 640, 1) float32' in out
    assert 'min 1.464  max 9.331' in out
    assert 'invalid 0.191895' in out


def test_decode_folder_uses_the_file_name_conventions(real_data, capsys):
    assert main(['decode', str(real_data / 'flirpy_radiometric'), '--offset', '0',
                 '--repeat', '1']) == 0
    out = capsys.readouterr().out
    assert 'thermal_raw.png: thermal mono16 640x512' in out
    assert 'thermal_celsius.npy: thermal 32FC1' in out
    assert out.count('min -3.43') == 1 and 'min -3.42999' in out  # counts*0.04 K in float32


def test_decode_polarization_sample_at_quarter_resolution(real_data, capsys):
    folder = real_data / 'polanalyser_fruits'
    assert main(['decode', str(folder / 'fruits_IMX250MZR.png'), '--resolution', 'quarter',
                 '--repeat', '1']) == 0
    assert 'data (512, 612, 3) float32' in capsys.readouterr().out


def test_decode_a_raw_bayer_file(tmp_path, capsys):
    """A colour camera's raw mosaic saved as a grey PNG decodes as the node would."""
    mosaic = np.tile(np.array([[200, 100], [100, 30]], np.uint8), (5, 6))[:9, :11]
    path = tmp_path / 'raw.png'
    cv2.imwrite(str(path), mosaic)
    assert main(['decode', '--modality', 'rgb', '--encoding', 'bayer_rggb8', str(path),
                 '--repeat', '1']) == 0
    out = capsys.readouterr().out
    assert 'rgb bayer_rggb8 11x9' in out and 'data (9, 11, 3) float32' in out
    assert 'ch0: min 0.784314  max 0.784314' in out and 'ch2: min 0.117647' in out


def test_decode_a_16_bit_colour_file(tmp_path, capsys):
    """A 16-bit colour PNG (an HDR camera's frame) decodes as bgr16; it was refused."""
    blue = np.zeros((5, 6, 3), np.uint16)
    blue[..., 0] = 65535  # OpenCV stores B, G, R
    cv2.imwrite(str(tmp_path / 'hdr.png'), blue)
    assert main(['decode', '--modality', 'rgb', str(tmp_path / 'hdr.png'), '--repeat', '1']) == 0
    out = capsys.readouterr().out
    assert 'rgb bgr16 6x5' in out and 'ch0: min 0  max 0' in out and 'ch2: min 1  max 1' in out


def test_decode_a_16_bit_grey_file_as_rgb(tmp_path, capsys):
    """A monochrome 16-bit camera's frame on the colour topic decodes as mono16 (refused)."""
    cv2.imwrite(str(tmp_path / 'mono.png'), np.full((5, 6), 65535, np.uint16))
    assert main(['decode', '--modality', 'rgb', str(tmp_path / 'mono.png'), '--repeat', '1']) == 0
    out = capsys.readouterr().out
    assert 'rgb mono16 6x5' in out and 'ch0: min 1  max 1' in out and 'ch2: min 1  max 1' in out


def test_bad_input_is_reported_with_a_non_zero_exit(tmp_path, capsys, real_data):
    # A frame or a setting the decoder refuses is bad input: exit status 2, as README's
    # Exit status says (it was 1, a failure of the command's own).
    odd = tmp_path / 'odd.npy'
    np.save(odd, np.zeros((3, 4), np.uint8))
    assert main(['decode', '--modality', 'polarization', str(odd), '--repeat', '1']) == 2
    assert 'even width and height' in capsys.readouterr().err
    depth = real_data / 'tum_rgbd' / 'depth_mm.png'
    assert main(['decode', str(depth), '--min-m', '5', '--max-m', '1', '--repeat', '1']) == 2
    assert 'depth range needs 0 <= min_m < max_m' in capsys.readouterr().err
    assert main(['decode', str(odd)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'mmp_ros decode: {odd}: give --modality (rgb, depth, polarization '
                          "or thermal); the name is none of the sample names ['rgb.png'"), err


def test_decode_needs_neither_ros_nor_torch(real_data):
    """A fresh process: other tests of the suite may have imported rclpy into this one."""
    code = (
        'import sys\n'
        'from mmp_ros.cli import main\n'
        f'assert main(["decode", {str(real_data / "nyu_raw")!r}, "--repeat", "1"]) == 0\n'
        'assert "rclpy" not in sys.modules and "torch" not in sys.modules\n'
    )
    env = repo_env()
    subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, env=env,
                   timeout=60)


def test_unreadable_npy_files_are_reported_in_one_line(tmp_path, capsys):
    """A 1-D array ended in an IndexError, a pickled, truncated or .npz file in a ValueError
    traceback from numpy."""
    files = {'vector.npy': 'got shape (10,)', 'pickled.npy': 'is not a .npy array numpy',
             'truncated.npy': 'is not a .npy array numpy', 'archive.npy': 'is an .npz archive'}
    np.save(tmp_path / 'vector.npy', np.arange(10, dtype=np.uint16))
    np.save(tmp_path / 'pickled.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
    (tmp_path / 'truncated.npy').write_bytes((tmp_path / 'vector.npy').read_bytes()[:90])
    with open(tmp_path / 'archive.npy', 'wb') as archive:
        np.savez(archive, depth=np.zeros((4, 4), np.uint16))
    for name, message in files.items():
        assert main(['decode', '--modality', 'depth', str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f'mmp_ros decode: {tmp_path / name}') and message in err, err
        assert err.count('\n') == 1, err


def test_a_file_whose_pixels_do_not_fit_its_encoding_is_named(tmp_path, capsys):
    """'mmp_ros decode: mono16 needs (H, W, 1) pixels, got an array of shape (4, 4, 3)' named
    no file, among all those of the folders given."""
    cv2.imwrite(str(tmp_path / 'thermal_raw.png'), np.zeros((4, 4, 3), np.uint8))
    np.save(tmp_path / 'counts.npy', np.zeros((4, 4), np.int64))
    cases = {(str(tmp_path),): f'{tmp_path / "thermal_raw.png"}: mono16 needs (H, W, 1)',
             ('--modality', 'depth', str(tmp_path / 'counts.npy')):
             f'{tmp_path / "counts.npy"}: no depth encoding for 1-channel int64 pixels'}
    for arguments, message in cases.items():
        assert main(['decode', *arguments]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f'mmp_ros decode: {message}'), err


def test_folder_without_sample_files_is_an_error(tmp_path, capsys):
    """It printed nothing and exited 0, --modality or not: nothing was decoded."""
    np.save(tmp_path / 'frame0001.npy', np.zeros((4, 4), np.uint16))
    for extra in ([], ['--modality', 'thermal']):
        assert main(['decode', str(tmp_path), *extra]) == 2
        captured = capsys.readouterr()
        assert captured.out == ''
        assert captured.err.startswith(
            f'mmp_ros decode: {tmp_path}: no file in this folder has a sample name (rgb.png, '
        ), captured.err


def test_an_option_for_frames_of_which_none_is_decoded_is_refused(real_data, tmp_path,
                                                                  capsys):
    # It was ignored without a word: decode depth_mm.png --semantics planck printed the
    # depth frame and exited 0, as did --planck on counts read as counts_linear.
    thermal = real_data / 'flirpy_radiometric'
    for name in ('aolp.npy', 'dolp.npy'):
        (tmp_path / name).write_bytes((real_data / 'polanalyser_fruits' / name).read_bytes())
    cases = [
        ([real_data / 'tum_rgbd' / 'depth_mm.png', '--semantics', 'planck'],
         '--semantics is an option for thermal frames, and none is decoded here (the frames: '
         'depth)'),
        ([thermal / 'thermal_raw.png', '--min-m', '1'],
         '--min-m is an option for depth frames, and none is decoded here (the frames: '
         'thermal (counts_linear))'),
        ([thermal / 'thermal_raw.png', '--planck', '1', '2', '3', '4', '5'],
         '--planck is an option for thermal frames decoded as planck (--semantics planck), '
         'and none is decoded here (the frames: thermal (counts_linear))'),
        ([thermal / 'thermal_celsius.npy', '--gain', '1'],
         '--gain is an option for thermal frames decoded as counts_linear (--semantics '
         'counts_linear), and none is decoded here (the frames: thermal (celsius))'),
        ([tmp_path, '--resolution', 'full'],
         '--resolution is an option for polarization mosaics, and none is decoded here (the '
         'frames: polarization (32FC2))'),
    ]
    for arguments, message in cases:
        assert main(['decode', *map(str, arguments), '--repeat', '1']) == 2
        captured = capsys.readouterr()
        assert captured.err == f'mmp_ros decode: {message}\n' and captured.out == ''
    # For some of the frames decoded, it is for those: the folder's counts, not its celsius
    assert main(['decode', str(thermal), '--unit', 'celsius', '--repeat', '1']) == 0
    assert main(['decode', str(thermal / 'thermal_raw.png'), '--semantics', 'planck',
                 '--planck', '17000', '1', '1430', '1', '0', '--repeat', '1']) == 0


def test_an_aolp_or_dolp_file_named_decodes_its_pair(real_data, tmp_path, capsys):
    # Named by the samples' convention, yet 'give --modality'; with --modality polarization,
    # 'no polarization encoding for 1-channel float32 pixels': only the folder decoded it.
    folder = real_data / 'polanalyser_camera'
    for names in (['aolp.npy'], ['dolp.npy'], ['aolp.npy', 'dolp.npy']):
        assert main(['decode', *(str(folder / n) for n in names), '--repeat', '1']) == 0
        out = capsys.readouterr().out
        assert out.count('\n') == 7  # one frame: the pair
        assert out.startswith(f'{folder}/aolp.npy+dolp.npy: polarization 32FC2 612x512')
    assert main(['decode', str(folder), '--repeat', '1']) == 0
    assert f'{folder}/aolp.npy+dolp.npy: polarization 32FC2 612x512' in capsys.readouterr().out
    (tmp_path / 'aolp.npy').write_bytes((folder / 'aolp.npy').read_bytes())
    assert main(['decode', str(tmp_path / 'aolp.npy')]) == 2
    assert capsys.readouterr().err == f'mmp_ros decode: no such file: {tmp_path}/dolp.npy\n'
