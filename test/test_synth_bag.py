"""``mmp_ros synth-bag``: the generator's scenes as a camera recording the node can decode."""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal

import numpy as np
import pytest
from conftest import ctrl_c_as_the_bag_file_opens

from mmp_ros.bags.messages import CAMERA_INFO_TYPE, deserialize_image, typestore
from mmp_ros.bags.source import open_bag
from mmp_ros.core.parameters import decoder_settings, defaults, load_params_file
from mmp_ros.modalities import MODALITIES
from mmp_ros.sensors import decode_frame
from mmp_ros.sensors.image import image_to_array
from training.data import synth_bag
from training.data.synth_bag import (
    DEFAULT_RATES_HZ,
    GROUND_TRUTH_TOPIC,
    SynthBagConfig,
    frame_times,
    image_topic,
    info_topic,
    write_synth_bag,
)

SMALL = SynthBagConfig(duration_s=2.0, scene_seconds=1.0, size=(24, 32))


def _read(path):
    """Topic -> [(bag time, StampedImage)] of every image topic."""
    messages: dict[str, list] = {}
    with open_bag(path) as bag:
        images = [name for name, t in bag.topics.items() if t.msgtype != CAMERA_INFO_TYPE]
        for topic, timestamp, data in bag.messages(images):
            messages.setdefault(topic, []).append((timestamp, deserialize_image(data)))
    return messages


@pytest.fixture(scope='module')
def small_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('synth') / 'bag'
    write_synth_bag(path, SMALL)
    return path


def test_every_sensor_at_its_rate_with_increasing_camera_stamps(small_bag):
    messages = _read(small_bag)
    assert set(messages) == {*(image_topic(m) for m in MODALITIES), GROUND_TRUTH_TOPIC}
    with open_bag(small_bag) as bag:
        assert {name: t.msgtype for name, t in bag.topics.items()
                if t.msgtype == CAMERA_INFO_TYPE} == {
            f'/{m}/camera_info': CAMERA_INFO_TYPE for m in MODALITIES}
    for m in MODALITIES:
        stamps = np.array([image.stamp_ns for _, image in messages[image_topic(m)]])
        bag_times = np.array([t for t, _ in messages[image_topic(m)]])
        assert (stamps == bag_times).all()
        gaps = np.diff(stamps) / 1e9
        assert (gaps > 0).all()
        rate = SMALL.rates_hz[m]
        assert abs(len(stamps) - rate * SMALL.duration_s) <= 1
        assert np.median(gaps) == pytest.approx(1 / rate, rel=0.05)
        assert np.std(gaps) > 0  # jittered, not a perfect clock
    rgb = [image.stamp_ns for _, image in messages[image_topic('rgb')]]
    truth = [image.stamp_ns for _, image in messages[GROUND_TRUTH_TOPIC]]
    assert truth == rgb


def test_real_encodings_that_the_node_decodes_with_its_shipped_settings(small_bag):
    from pathlib import Path

    config = Path(__file__).resolve().parents[1] / 'config' / 'mmp_segmentation.yaml'
    values = {**defaults(), **load_params_file(config)}
    messages = _read(small_bag)
    encodings = {m: messages[image_topic(m)][0][1].fields.encoding for m in MODALITIES}
    assert encodings == {'rgb': 'rgb8', 'depth': '16UC1', 'polarization': 'mono16',
                         'thermal': 'mono16'}
    thermal = decode_frame('thermal', messages[image_topic('thermal')][0][1].fields,
                           decoder_settings(values, 'thermal'))
    # Indoor scenes: walls at room temperature, radiators and hot objects below 80 degC.
    assert 5.0 < np.median(thermal.data) < 35.0 and thermal.data.max() < 90.0
    pol = decode_frame('polarization', messages[image_topic('polarization')][0][1].fields,
                       decoder_settings(values, 'polarization'))
    assert pol.data.shape == (12, 16, 3) and pol.data[..., 2].min() >= 0.0
    depth = decode_frame('depth', messages[image_topic('depth')][0][1].fields,
                         decoder_settings(values, 'depth'))
    assert 0.3 < np.median(depth.data[depth.valid]) < 8.0
    labels = image_to_array(messages[GROUND_TRUTH_TOPIC][0][1].fields)
    assert labels.dtype == np.uint8 and labels.max() < 14


def test_a_held_scene_gets_fresh_noise_every_frame_and_the_next_scene_differs(small_bag):
    messages = _read(small_bag)
    frames = [image_to_array(image.fields) for _, image in messages[image_topic('rgb')]]
    truth = [image_to_array(image.fields) for _, image in messages[GROUND_TRUTH_TOPIC]]
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:], strict=False))
    scene_change = [i for i in range(1, len(truth)) if not np.array_equal(truth[i], truth[i - 1])]
    assert len(scene_change) == 1  # two scenes of one second


def test_options_sqlite3_32fc1_depth_and_mono8_polarization(tmp_path):
    config = SynthBagConfig(duration_s=0.3, size=(16, 16), depth_encoding='32FC1',
                            polarization_encoding='mono8', storage='sqlite3')
    write_synth_bag(tmp_path / 'bag', config)
    assert list((tmp_path / 'bag').glob('*.db3'))
    messages = _read(tmp_path / 'bag')
    assert messages[image_topic('depth')][0][1].fields.encoding == '32FC1'
    assert messages[image_topic('polarization')][0][1].fields.encoding == 'mono8'


def test_frame_times_are_deterministic_and_sorted():
    first, second = frame_times(SMALL), frame_times(SMALL)
    assert first == second
    assert [f.stamp_ns for f in first] == sorted(f.stamp_ns for f in first)


@pytest.mark.parametrize('changes, message', [
    ({'size': (15, 32)}, 'both sides even'),
    ({'duration_s': 0}, 'duration'),
    ({'depth_encoding': 'mono8'}, 'depth encoding'),
    ({'rates_hz': {'rgb': 30.0}}, 'one positive, finite rate per sensor'),
    ({'duration_s': math.inf}, 'duration inf s must be positive and finite'),
    ({'scene_seconds': math.inf}, 'scene_seconds inf must be positive and finite'),
    ({'rates_hz': {**DEFAULT_RATES_HZ, 'rgb': math.inf}}, 'one positive, finite rate'),
    ({'size': (100_000, 100_000)}, 'at most 4096'),
    ({'duration_s': 1e12}, r'8\.9e\+13 frames .* at most 1,000,000; shorten the duration'),
    ({'rates_hz': {**DEFAULT_RATES_HZ, 'rgb': 1e9}}, 'at most 1,000,000'),
    # Checked before the bag is created: these failed once part of it was written.
    ({'seed': -1}, 'seed -1 must not be negative'),
    ({'first_scene': -1}, r'first scene -1 and 9 scenes \(the last 7\): .* from 0 to 9999999'),
    ({'first_scene': 9_999_999, 'scene_seconds': 1.0, 'duration_s': 3.0},
     r'first scene 9999999 and 3 scenes \(the last 10000001\)'),
    ({'scene_seconds': 1e-6}, r'first scene 0 and 45000000 scenes'),
    ({'transport': 'theora'}, r"transport 'theora': one of \('raw', 'compressed'\)"),
    ({'transport': 'compressed', 'rgb_format': 'webp'}, "rgb format 'webp': one of"),
    ({'rgb_format': 'png'}, 'rgb format png: only with transport compressed'),
    ({'transport': 'compressed', 'depth_format': 'zstd'}, "depth format 'zstd': one of"),
    ({'depth_format': 'rvl'}, 'depth format rvl: only with transport compressed'),
    # These wrote a bag without a frame of some sensor (no RGB: no ground truth) and exit 0.
    ({'duration_s': 1e-9}, r'duration 1e-09 s gives rgb \(30 Hz\), depth \(30 Hz\), '
     r'polarization \(20 Hz\), thermal \(9 Hz\) no frame'),
    ({'duration_s': 2.0, 'rates_hz': {**DEFAULT_RATES_HZ, 'rgb': 0.01}},
     r'gives rgb \(0\.01 Hz\) no frame: make it at least two periods of every sensor '
     r'\(200 s\) or raise the rates'),
])
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        SynthBagConfig(**changes)


def test_two_periods_of_the_slowest_sensor_always_give_every_sensor_a_frame():
    for seed in range(100):  # whatever the phases, and with the jitter at its clip
        config = SynthBagConfig(duration_s=2 / 9, seed=seed, jitter_ms=1e3)
        assert {f.modality for f in frame_times(config)} == set(DEFAULT_RATES_HZ)


def test_command_refuses_an_existing_output(tmp_path, capsys):
    (tmp_path / 'bag').mkdir()
    parser = argparse.ArgumentParser()
    synth_bag.add_arguments(parser)
    assert synth_bag.run(parser.parse_args([str(tmp_path / 'bag'), '--duration', '0.2'])) == 2
    assert 'exists already' in capsys.readouterr().err


def test_an_interrupted_bag_is_removed_not_left_as_a_shorter_recording(tmp_path):
    path = tmp_path / 'bag'
    # What writing imports on first use is imported first: alone in its process, this test's
    # Ctrl-C once landed in numpy.random's lazy import, in an abc.register call Cython's
    # module init makes and whose failure it clears, and the KeyboardInterrupt was lost (the
    # bag written to its end: 'DID NOT RAISE', 1 run in 12 under two busy loops).
    write_synth_bag(tmp_path / 'warm-up', SMALL)

    def ctrl_c(_signum, _frame):  # Ctrl-C once the bag is being written
        if path.exists():
            raise KeyboardInterrupt
        signal.setitimer(signal.ITIMER_REAL, 0.05)

    previous = signal.signal(signal.SIGALRM, ctrl_c)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            write_synth_bag(path, SynthBagConfig(duration_s=60.0, size=(24, 32)))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not path.exists()


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_ctrl_c_while_the_bag_is_created_leaves_nothing(tmp_path, monkeypatch, storage):
    # A Ctrl-C inside BagRecorder(...), its .mcap or .db3 just opened, came before the clean-up
    # of write_synth_bag was armed: the directory was left, a bag without metadata.yaml.
    ctrl_c_as_the_bag_file_opens(monkeypatch, storage)
    path = tmp_path / 'bag'
    with pytest.raises(KeyboardInterrupt):
        write_synth_bag(path, dataclasses.replace(SMALL, storage=storage))
    assert not path.exists()


def _camera_images(path):
    """Topic -> [(bag time, StampedImage or StampedCompressed)] of every topic."""
    from mmp_ros.bags.messages import deserialize_camera_image

    messages: dict[str, list] = {}
    with open_bag(path) as bag:
        cameras = [name for name, t in bag.topics.items() if t.msgtype != CAMERA_INFO_TYPE]
        for topic, timestamp, data in bag.messages(cameras):
            image = deserialize_camera_image(data, bag.topics[topic].msgtype)
            messages.setdefault(topic, []).append((timestamp, image))
    return messages


# --depth-format rvl: depth was written as compressedDepth PNG alone (the option did not
# exist), though image_transport's compressedDepth has RVL too.
@pytest.mark.parametrize(('storage', 'depth_encoding', 'rgb_format', 'depth_format'),
                         [('mcap', '16UC1', None, 'rvl'), ('sqlite3', '32FC1', 'png', None)])
def test_transport_compressed_records_the_cameras_as_image_transport_publishes_them(
        small_bag, tmp_path, storage, depth_encoding, rgb_format, depth_format):
    from mmp_ros.bags.source import COMPRESSED_TYPE, IMAGE_TYPE

    raw_config = dataclasses.replace(SMALL, storage=storage, depth_encoding=depth_encoding)
    raw_bag = small_bag if storage == 'mcap' else tmp_path / 'raw'
    if raw_bag != small_bag:
        write_synth_bag(raw_bag, raw_config)
    parser = argparse.ArgumentParser()
    synth_bag.add_arguments(parser)
    args = parser.parse_args([
        str(tmp_path / 'bag'), '--duration', '2', '--scene-seconds', '1', '--size', '24', '32',
        '--storage', storage, '--depth-encoding', depth_encoding, '--transport', 'compressed',
        *(['--rgb-format', rgb_format] if rgb_format else []),
        *(['--depth-format', depth_format] if depth_format else [])])
    assert synth_bag.run(args) == 0
    with open_bag(tmp_path / 'bag') as bag:
        types = {name: t.msgtype for name, t in bag.topics.items()}
    assert types == {'/rgb/image/compressed': COMPRESSED_TYPE,
                     '/depth/image/compressedDepth': COMPRESSED_TYPE,
                     '/polarization/image/compressed': COMPRESSED_TYPE,
                     '/thermal/image/compressed': COMPRESSED_TYPE,
                     **{f'/{m}/camera_info': CAMERA_INFO_TYPE for m in MODALITIES},
                     GROUND_TRUTH_TOPIC: IMAGE_TYPE}
    raw, compressed = _camera_images(raw_bag), _camera_images(tmp_path / 'bag')
    formats = {'rgb': f'rgb8; {rgb_format or "jpeg"} compressed bgr8',
               'depth': f'{depth_encoding}; compressedDepth {depth_format or "png"}',
               'polarization': 'mono16; png compressed ', 'thermal': 'mono16; png compressed '}
    for m in MODALITIES:
        expected = raw[image_topic(m)]
        got = compressed[synth_bag.camera_topic(m, 'compressed')]
        assert [(t, i.stamp_ns, i.frame_id) for t, i in got] == [
            (t, i.stamp_ns, i.frame_id) for t, i in expected]
        assert {i.format for _, i in got} == {formats[m]}
        for (_, a), (_, b) in zip(got, expected, strict=True):
            assert a.fields.encoding == b.fields.encoding
            pixels, original = image_to_array(a.fields), image_to_array(b.fields)
            if m == 'rgb' and rgb_format is None:  # JPEG: close
                error = np.abs(pixels.astype(int) - original.astype(int))
                assert error.mean() < 4.0 and not np.array_equal(pixels, original)
            elif m == 'depth' and depth_encoding == '32FC1':  # quantized inverse depth
                a_quant = 100.0 * 101.0  # compressed_depth_image_transport's defaults
                assert np.array_equal(np.isnan(pixels), np.isnan(original))
                valid = ~np.isnan(original)
                assert (np.abs(pixels - original)[valid]
                        <= original[valid] ** 2 / a_quant + 1e-4).all()
            else:  # PNG, RVL: exact
                np.testing.assert_array_equal(pixels, original)
    assert [i.fields for _, i in compressed[GROUND_TRUTH_TOPIC]] == [
        i.fields for _, i in raw[GROUND_TRUTH_TOPIC]]


def _camera_infos(path):
    """Topic -> [(bag time, CameraInfo)] of every camera_info topic."""
    infos: dict[str, list] = {}
    with open_bag(path) as bag:
        topics = [name for name, t in bag.topics.items() if t.msgtype == CAMERA_INFO_TYPE]
        for topic, timestamp, data in bag.messages(topics):
            msg = typestore().deserialize_cdr(data, CAMERA_INFO_TYPE)
            infos.setdefault(topic, []).append((timestamp, msg))
    return infos


# The bag had no camera_info: the node's segmentation/camera_info (which needs its input
# camera's) was never published in the demo, nor by anything replaying a synthetic bag.
@pytest.mark.parametrize('transport', synth_bag.TRANSPORTS)
def test_each_frame_has_its_cameras_camera_info_under_the_images_header(
        small_bag, tmp_path, transport):
    from mmp_ros.core.camera_info import camera_info_topic
    from training.data.scene import make_split, sample_scene

    config = dataclasses.replace(SMALL, transport=transport)
    bag = small_bag
    if transport != 'raw':
        bag = tmp_path / 'bag'
        write_synth_bag(bag, config)
    images, infos = _camera_images(bag), _camera_infos(bag)
    height, width = config.size
    scenes = {f.stamp_ns: f.scene for f in frame_times(config)}
    intrinsics = {s: sample_scene(make_split('test', s), width, height, 'test').camera.intrinsics
                  for s in set(scenes.values())}
    for m in MODALITIES:
        # where the node subscribes to it, whatever the transport
        topic = info_topic(m)
        assert topic == camera_info_topic(image_topic(m)) == f'/{m}/camera_info'
        got, frames = infos[topic], images[synth_bag.camera_topic(m, transport)]
        assert [(t, i.header.stamp.sec * 10**9 + i.header.stamp.nanosec, i.header.frame_id)
                for t, i in got] == [(t, f.stamp_ns, f.frame_id) for t, f in frames]
        for (_, info), (_, frame) in zip(got, frames, strict=True):
            # the polarization camera's: the mosaic its images are, not a demosaiced grid
            assert (info.height, info.width) == (frame.fields.height, frame.fields.width) == (
                height, width)
            assert (info.binning_x, info.binning_y, info.roi.height, info.roi.width) == (
                0, 0, 0, 0)
            k = intrinsics[scenes[frame.stamp_ns]]
            assert k[0, 0] > 0 and (k[0, 2], k[1, 2]) == ((width - 1) / 2, (height - 1) / 2)
            np.testing.assert_array_equal(info.k, k.ravel())
            np.testing.assert_array_equal(info.p, np.hstack([k, np.zeros((3, 1))]).ravel())
            np.testing.assert_array_equal(info.r, np.eye(3).ravel())
            assert info.distortion_model == 'plumb_bob' and not info.d.any()
    assert len({tuple(k.ravel()) for k in intrinsics.values()}) == 2  # per scene
