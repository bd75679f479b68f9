"""``mmp_ros adapt BAG``: frames read as the node reads them; adaptation and export."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from conftest import needs

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.synthetic import write_stub_bag
from mmp_ros.inference.testing import tiny_metadata
from mmp_ros.modalities import MODALITIES
from training import adapt_bag
from training.adapt_bag import read_bag_frames
from training.data.synth_bag import SynthBagConfig, write_synth_bag

CONFIG = Path(__file__).resolve().parents[1] / 'config'
METADATA = tiny_metadata(input_size=(16, 24), num_classes=14, method='none')


@pytest.fixture(scope='module')
def healthy_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('adapt') / 'bag'
    write_synth_bag(path, SynthBagConfig(duration_s=1.5, size=(24, 32)))
    return path


def test_params_given_twice_are_all_read():
    # '--params a.yaml --params b.yaml' decoded the recording with b.yaml alone.
    parser = argparse.ArgumentParser()
    adapt_bag.add_arguments(parser)
    argv = ['bag', '--model', 'm.onnx', '--checkpoint', 'c.pt']
    assert parser.parse_args([*argv, '--params', 'a.yaml', '--params', 'b.yaml']).params == [
        'a.yaml', 'b.yaml']
    assert parser.parse_args(argv).params is None  # run() reads DEFAULT_PARAMS


def test_a_modality_given_two_topics_is_refused(capsys):
    # '--topic rgb=/a --topic rgb=/b' read /b alone, without a word.
    parser = argparse.ArgumentParser()
    adapt_bag.add_arguments(parser)
    args = parser.parse_args(['bag', '--model', 'm.onnx', '--checkpoint', 'c.pt', '--topic',
                              'rgb=/a', '--topic', 'rgb=/b'])
    assert adapt_bag.run(args) == 2
    err = capsys.readouterr().err
    assert err == 'mmp_ros adapt: --topic rgb=/b: rgb is given twice (/a, /b)\n'


def test_complete_healthy_bundles_at_the_model_input_size(healthy_bag):
    frames = read_bag_frames(healthy_bag, METADATA)
    assert frames.messages['rgb'] == 45 and sum(frames.rejected.values()) == 0
    # Thermal at 9 Hz is often older than the default max_age_s (0.1 s) at an rgb anchor.
    assert 0 < frames.incomplete < 45 and len(frames.samples) + frames.incomplete <= 45
    sample = frames.samples[0]
    assert {m: a.shape for m, a in sample.items()} == {
        'rgb': (3, 16, 24), 'depth': (1, 16, 24), 'polarization': (3, 16, 24),
        'thermal': (1, 16, 24)}
    assert 5.0 < float(np.median(sample['thermal'])) < 35.0  # degrees Celsius, not counts
    limited = read_bag_frames(healthy_bag, METADATA, max_frames=5)
    assert len(limited.samples) == 5 and limited.stamps == sorted(limited.stamps)


def test_frames_the_node_would_reject_are_not_trained_on(healthy_bag, tmp_path):
    from mmp_ros.bags.messages import deserialize_image, serialize_image
    from mmp_ros.bags.recording import BagRecorder
    from mmp_ros.bags.source import open_bag
    from mmp_ros.sensors.image import ImageFields

    blanked = tmp_path / 'blank_thermal'
    with open_bag(healthy_bag) as bag, BagRecorder(blanked) as out:
        for topic in bag.topics.values():
            out.add_topic(topic.name, topic.msgtype, topic.offered_qos)
        for topic, stamp, data in bag.messages(list(bag.topics)):
            if topic == '/thermal/image':
                image = deserialize_image(data)
                f = image.fields
                zero = ImageFields(f.height, f.width, f.encoding, f.is_bigendian, f.step,
                                   bytes(len(f.data)))
                data = serialize_image(zero, image.stamp_ns, image.frame_id)
            out.write(topic, stamp, data)
    frames = read_bag_frames(blanked, METADATA)
    assert frames.rejected['thermal'] == frames.messages['thermal'] and not frames.samples


def test_bad_bags_are_refused_by_name(tmp_path, capsys):
    strings = write_stub_bag(tmp_path / 'strings', {'/chatter': 'std_msgs/msg/String'})
    with pytest.raises(BagError, match='no sensor_msgs/msg/Image or CompressedImage topic'):
        read_bag_frames(strings, METADATA)
    with pytest.raises(BagError, match='no such bag'):
        read_bag_frames(tmp_path / 'missing', METADATA)
    corrupt = tmp_path / 'corrupt.mcap'
    corrupt.write_bytes(b'\x89MCAP0\r\n' + b'\x01' * 40)
    with pytest.raises(BagError, match='corrupt.mcap'):
        read_bag_frames(corrupt, METADATA)


def test_a_missing_sensor_topic_is_named(healthy_bag):
    with pytest.raises(BagError, match='no topic /cam/thermal for thermal'):
        read_bag_frames(healthy_bag, METADATA, topics={'thermal': '/cam/thermal'})


def test_a_recording_without_a_sensor_of_the_model_says_adaptation_needs_them_all(tmp_path):
    # it said only '--topic thermal=TOPIC', as if the sensor had merely another topic
    bag = write_stub_bag(tmp_path / 'three', {f'/{m}/image': 'sensor_msgs/msg/Image'
                                              for m in MODALITIES if m != 'thermal'})
    with pytest.raises(BagError, match=r"no topic /thermal/image for thermal \(nor "
                       r'/thermal/image/compressedDepth, /thermal/image/compressed; the bag has '
                       r"\['/depth/image', '/polarization/image', '/rgb/image'\]\); if thermal "
                       r'was recorded under another topic, name it with --topic '
                       r'thermal=TOPIC; else this recording cannot be adapted on: adaptation '
                       r'needs every sensor the model uses \(rgb, depth, polarization, '
                       r'thermal\) recorded, and healthy$'):
        read_bag_frames(bag, METADATA)


def test_a_camera_topic_recorded_with_several_types_is_named_with_them_all(tmp_path):
    # Was: "topic /rgb/image holds sensor_msgs/msg/Image, not sensor_msgs/msg/Image or
    # sensor_msgs/msg/CompressedImage" (its first connection's type only), and with no other
    # camera "no ... Image ... topic (topics: /rgb/image [sensor_msgs/msg/Image])".
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    several = "several message types ['sensor_msgs/msg/Image', 'std_msgs/msg/String']"
    for others in ([], [f'/{m}/image' for m in MODALITIES if m != 'rgb']):
        bag = tmp_path / f'bag{len(others)}'
        with Writer(bag, version=9) as writer:
            for name in others:
                writer.add_connection(name, 'sensor_msgs/msg/Image', typestore=typestore)
            writer.add_connection('/rgb/image', 'sensor_msgs/msg/Image', typestore=typestore)
            writer.add_connection('/rgb/image', 'std_msgs/msg/String', typestore=typestore)
        message = (f'topic /rgb/image holds {several}, not' if others else
                   f'(topics: /rgb/image [{several}])')
        with pytest.raises(BagError) as raised:
            read_bag_frames(bag, METADATA)
        assert message in str(raised.value)


@pytest.mark.parametrize(('topics', 'message'), [
    ({'rgb': '/depth/image'}, 'topic /depth/image named for rgb and depth: each modality'),
    ({'lidar': '/lidar/image'}, r'--topic lidar: not a modality of the model \(rgb, depth'),
])
def test_topics_that_cannot_be_the_models_sensors_are_named(healthy_bag, topics, message):
    with pytest.raises(BagError, match=message):
        read_bag_frames(healthy_bag, METADATA, topics=topics)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_adapt_exports_a_model_and_its_card(healthy_bag, tmp_path):
    pytest.importorskip('torch', reason="needs torch (pip install '.[train]')")
    from mmp_ros.inference.onnx_file import read_model_metadata
    from mmp_ros.inference.testing import tiny_random_model
    from mmp_ros.model.checkpoint import read_checkpoint, save_checkpoint
    from training.export import export_checkpoint

    model = tiny_random_model(METADATA)
    checkpoint = save_checkpoint(tmp_path / 'none.pt', model=model, metadata=METADATA)
    onnx, _ = export_checkpoint(checkpoint, tmp_path / 'none.onnx', verify=False)
    parser = argparse.ArgumentParser()
    adapt_bag.add_arguments(parser)
    args = parser.parse_args([
        str(healthy_bag), '--model', str(onnx), '--checkpoint', str(checkpoint), '--out',
        str(tmp_path / 'out'), '--set', 'steps=2', '--set', 'batch_size=2', '--set',
        'progress=false', '--params', str(CONFIG / 'mmp_segmentation.yaml'),
        str(CONFIG / 'mmp_demo.yaml')])
    assert adapt_bag.run(args) == 0
    adapted = tmp_path / 'out' / 'none_adapted.onnx'
    meta = read_model_metadata(adapted)
    assert meta.method == 'mmp_adapt' and tuple(meta.modalities) == MODALITIES
    card = adapted.with_suffix('.md').read_text()
    assert str(healthy_bag) in card and 'steps | 2' in card
    # config/train_adapt.yaml distills: the recording's frames get a teacher cache
    trained = read_checkpoint(tmp_path / 'out' / 'train' / 'checkpoint.pt')
    assert trained['train_config']['teacher_cache'] is True


def test_max_frames_below_what_adaptation_needs_is_named(tmp_path, capsys):
    needs('torch')
    from mmp_ros.cli import main

    # Not "only 2 bundles healthy": the recording is not what is wrong.
    assert main(['adapt', str(tmp_path / 'bag'), '--model', 'm.onnx', '--checkpoint', 'c.pt',
                 '--max-frames', '2']) == 2
    err = capsys.readouterr().err
    assert err.startswith('mmp_ros adapt: --max-frames 2 keeps fewer bundles than adaptation '
                          'needs (8)'), err


def training_call(monkeypatch, bag, out, overrides: list[str]) -> dict:
    """The keyword arguments ``adapt_on_bag`` calls training (``training.adapt.adapt``) with,
    for a model and checkpoint of METADATA, stopped there."""
    import mmp_ros.inference.onnx_file
    import mmp_ros.model
    import training.adapt
    import training.train

    class StopError(Exception):
        pass

    def stop(checkpoint, **kwargs):
        seen.update(kwargs)
        raise StopError

    seen: dict = {}
    monkeypatch.setattr(mmp_ros.inference.onnx_file, 'read_model_metadata', lambda p: METADATA)
    monkeypatch.setattr(mmp_ros.model, 'load_checkpoint', lambda p: (None, METADATA, {}))
    monkeypatch.setattr(training.train, '_adapt_model', lambda config: (None, METADATA))
    monkeypatch.setattr(training.adapt, 'adapt', stop)
    with pytest.raises(StopError):
        adapt_bag.adapt_on_bag(str(bag), model='m.onnx', checkpoint='c.pt', out=out,
                               overrides=overrides)
    return seen


def test_projection_fit_is_taken_with_the_default_teacher_cache(healthy_bag, tmp_path,
                                                                monkeypatch):
    needs('torch')
    # docs/bags.md: `--set projection_fit.steps=1000` runs with the cache the command turns
    # on for a distilling config; it was refused for the cache's absence before that default.
    seen = training_call(monkeypatch, healthy_bag, tmp_path, ['projection_fit.steps=5'])
    assert seen['overrides'][0] == 'teacher_cache=true'
    assert 'projection_fit.steps=5' in seen['overrides']


@pytest.mark.parametrize(('overrides', 'message'), [
    (['stepz=5'], 'stepz'),
    # checked with the cache off only: refused once the recording had been read
    (['teacher_cache=false', 'projection_fit.steps=100'], 'set teacher_cache=true'),
    (['distillation_weight=0', 'teacher_cache=true'], 'teacher_cache keeps the targets'),
    # a window larger than the model's input (16 x 24): refused by training, once the
    # recording had been read
    (['distill_crop=[32, 32]'], r'distill_crop \[32, 32\]: needs an input size of multiples of '
                                r'32 at least as large; the model takes \[16, 24\]'),
    (['device=mps'], r"device 'mps': expected auto, cpu, cuda or cuda:N"),
])
def test_a_bad_setting_is_named_before_the_recording_is_read(tmp_path, monkeypatch,
                                                             overrides, message):
    needs('torch')
    import mmp_ros.inference.onnx_file
    import mmp_ros.model
    from training.config import ConfigError

    def no_reading(*args, **kwargs):
        raise AssertionError('the recording was read before the config was checked')

    monkeypatch.setattr(mmp_ros.inference.onnx_file, 'read_model_metadata', lambda p: METADATA)
    monkeypatch.setattr(mmp_ros.model, 'load_checkpoint', lambda p: (None, METADATA, {}))
    monkeypatch.setattr(adapt_bag, 'read_bag_frames', no_reading)
    with pytest.raises(ConfigError, match=message):
        adapt_bag.adapt_on_bag(str(tmp_path / 'bag'), model='m.onnx', checkpoint='c.pt',
                               out=tmp_path, overrides=overrides)


def test_an_out_that_cannot_be_a_folder_is_named_before_the_recording_is_read(tmp_path,
                                                                             monkeypatch):
    """It was found by training, once the whole recording had been read, and named as
    out_dir <out>/train."""
    needs('torch')
    import mmp_ros.inference.onnx_file
    import mmp_ros.model
    from mmp_ros.errors import OutputFolderError

    def no_reading(*args, **kwargs):
        raise AssertionError('the recording was read before --out was checked')

    (tmp_path / 'notes').write_text('notes')
    monkeypatch.setattr(mmp_ros.inference.onnx_file, 'read_model_metadata', lambda p: METADATA)
    monkeypatch.setattr(mmp_ros.model, 'load_checkpoint', lambda p: (None, METADATA, {}))
    monkeypatch.setattr(adapt_bag, 'read_bag_frames', no_reading)
    with pytest.raises(OutputFolderError, match=f'--out {tmp_path / "notes"}: cannot be a '
                       'folder'):
        adapt_bag.adapt_on_bag(str(tmp_path / 'bag'), model='m.onnx', checkpoint='c.pt',
                               out=tmp_path / 'notes')
    assert (tmp_path / 'notes').read_text() == 'notes'


@pytest.mark.parametrize(('override', 'why'), [
    ('out_dir=elsewhere', 'it trains in OUT/train: give --out'),
    ('data.input_size=[32, 48]', "it is the model's"),
    ('method=mmp', 'it is mmp_adapt'),  # these two were replaced without a word as well
    ('base_checkpoint=other.pt', 'it is --checkpoint'),
])
def test_a_setting_the_command_makes_itself_is_refused(tmp_path, capsys, override, why):
    """--set out_dir=... was replaced by the command's own without a word (a run trained
    into --out/train)."""
    needs('torch')
    from mmp_ros.cli import main

    assert main(['adapt', str(tmp_path / 'bag'), '--model', 'm.onnx', '--checkpoint', 'c.pt',
                 '--set', 'steps=2', '--set', override]) == 2
    err = capsys.readouterr().err
    key = override.partition('=')[0]
    assert err.startswith(f'mmp_ros adapt: --set {override}: mmp_ros adapt sets {key} itself '
                          f'({why}'), err
    assert not (tmp_path / 'bag').exists()


@pytest.mark.parametrize(('overrides', 'resume'), [([], False), (['resume=true'], True)])
def test_a_run_stopped_by_ctrl_c_resumes_with_set_resume_true(healthy_bag, tmp_path,
                                                              monkeypatch, overrides, resume):
    needs('torch')
    # Ctrl-C printed 'the same command with resume=true resumes from there', and
    # --set resume=true was refused ('every run starts afresh'): the steps done were lost
    from training.adapt import adapt_config

    seen = training_call(monkeypatch, healthy_bag, tmp_path, overrides)
    assert adapt_config('c.pt', config_path=seen['config_path'],
                        overrides=seen['overrides']).resume is resume


def test_resuming_the_adaptation_of_another_base_is_refused_before_the_recording_is_read(
        tmp_path, monkeypatch):
    # found by training, once the whole recording had been read, and told to 'use another
    # out_dir', which adapt refuses in --set
    pytest.importorskip('torch', reason="needs torch (pip install '.[train]')")
    import mmp_ros.inference.onnx_file
    from mmp_ros.inference.testing import tiny_random_model
    from mmp_ros.model import CheckpointError
    from mmp_ros.model.checkpoint import save_checkpoint
    from training.adapt import adapt_config
    from training.train import _adapt_model

    class StopError(Exception):
        pass

    def stop(*args, **kwargs):
        raise StopError

    bases = [save_checkpoint(tmp_path / f'none{seed}.pt', metadata=METADATA,
                             model=tiny_random_model(METADATA, seed=seed)) for seed in (0, 1)]
    out = tmp_path / 'out'
    config = adapt_config(str(bases[0]), config_path=str(adapt_bag.DEFAULT_CONFIG),
                          overrides=[f'out_dir={out / "train"}'])
    model, metadata = _adapt_model(config)
    save_checkpoint(out / 'train' / 'checkpoint.pt', model=model, metadata=metadata)
    monkeypatch.setattr(mmp_ros.inference.onnx_file, 'read_model_metadata', lambda p: METADATA)
    monkeypatch.setattr(adapt_bag, 'read_bag_frames', stop)
    with pytest.raises(CheckpointError, match=rf'^{out / "train" / "checkpoint.pt"}: adapts '
                       rf'another base model than {bases[1]} \(its frozen weights differ, .*\); '
                       r'give another --out, or leave out --set resume=true to start afresh '
                       r'there \(replacing that run\)$'):
        adapt_bag.adapt_on_bag('bag', model='m.onnx', checkpoint=str(bases[1]), out=out,
                               overrides=['resume=true'])
    for base, overrides in ((bases[1], []), (bases[0], ['resume=true'])):
        with pytest.raises(StopError):  # afresh, or the same base: on to the recording
            adapt_bag.adapt_on_bag('bag', model='m.onnx', checkpoint=str(base), out=out,
                                   overrides=overrides)


@pytest.mark.parametrize(('method', 'overrides', 'message'), [
    ('none', ['distillation_weight=0'], 'model.mask_adapters act after the projection and '
                                        'learn from distillation alone'),
    ('none', ['model.mask_conditioning=true'], 'model.mask_conditioning: .* was trained '
                                               'without it'),
    ('mmp', [], "base model method is 'mmp'; mmp_adapt adapts a model trained with")])
def test_what_the_base_refuses_is_named_before_the_recording_is_read(tmp_path, monkeypatch,
                                                                    method, overrides, message):
    """Training refused these (a base trained with projection, adapters without distillation,
    mask conditioning the base lacks) once the whole recording had been read."""
    pytest.importorskip('torch', reason="needs torch (pip install '.[train]')")
    from dataclasses import replace

    import mmp_ros.inference.onnx_file
    from mmp_ros.inference.testing import tiny_random_model
    from mmp_ros.model.checkpoint import save_checkpoint
    from training.config import ConfigError

    def no_reading(*args, **kwargs):
        raise AssertionError('the recording was read before the base was checked')

    metadata = replace(METADATA, method=method)
    base = save_checkpoint(tmp_path / f'{method}.pt', metadata=metadata,
                           model=tiny_random_model(metadata))
    monkeypatch.setattr(mmp_ros.inference.onnx_file, 'read_model_metadata', lambda p: metadata)
    monkeypatch.setattr(adapt_bag, 'read_bag_frames', no_reading)
    with pytest.raises(ConfigError, match=message):
        adapt_bag.adapt_on_bag('bag', model='m.onnx', checkpoint=str(base),
                               out=tmp_path / 'out', overrides=overrides)


def test_an_out_whose_train_folder_holds_the_base_checkpoint_is_refused(tmp_path,
                                                                        monkeypatch):
    """A base trained into out/train (train's default out_dir) and adapted with --out out was
    replaced by the adaptation's checkpoint, its log.csv too, without a word."""
    pytest.importorskip('torch', reason="needs torch (pip install '.[train]')")
    import mmp_ros.inference.onnx_file
    from mmp_ros.inference.testing import tiny_random_model
    from mmp_ros.model.checkpoint import save_checkpoint

    base = save_checkpoint(tmp_path / 'out' / 'train' / 'checkpoint.pt', metadata=METADATA,
                           model=tiny_random_model(METADATA))
    # the base's own export, as read from it (exporting it takes seconds)
    monkeypatch.setattr(mmp_ros.inference.onnx_file, 'read_model_metadata', lambda p: METADATA)
    onnx = tmp_path / 'none.onnx'
    saved = base.read_bytes()
    with pytest.raises(BagError, match=rf'^--out {tmp_path / "out"}: adaptation trains into '
                       rf'{tmp_path / "out" / "train"}, where --checkpoint {base} is: it would '
                       r'be replaced; give another --out$'):
        adapt_bag.adapt_on_bag(str(tmp_path / 'bag'), model=str(onnx), checkpoint=str(base),
                               out=tmp_path / 'out', overrides=['steps=2'])
    assert base.read_bytes() == saved


@pytest.mark.parametrize(('overrides', 'again'), [
    ([], 'the same command with --set resume=true'), (['resume=true'], 'the same command')])
def test_ctrl_c_while_exporting_says_what_is_kept(healthy_bag, tmp_path, monkeypatch, capsys,
                                                  overrides, again):
    needs('torch')
    # it exited 130 without a word, and the same command then trained again from step 0
    import mmp_ros.inference.onnx_file
    import mmp_ros.model
    import training.adapt
    import training.export
    import training.train
    from training.train import TrainResult

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    kept = tmp_path / 'train' / 'checkpoint.pt'
    monkeypatch.setattr(mmp_ros.inference.onnx_file, 'read_model_metadata', lambda p: METADATA)
    monkeypatch.setattr(mmp_ros.model, 'load_checkpoint', lambda p: (None, METADATA, {}))
    monkeypatch.setattr(training.train, '_adapt_model', lambda config: (None, METADATA))
    monkeypatch.setattr(training.adapt, 'adapt', lambda *a, **k: TrainResult(
        kept, start_step=3, losses=[1.0, 0.5]))
    monkeypatch.setattr(training.export, 'export_checkpoint', interrupted)
    with pytest.raises(KeyboardInterrupt):
        adapt_bag.adapt_on_bag(str(healthy_bag), model='m.onnx', checkpoint='c.pt',
                               out=tmp_path, overrides=overrides, max_frames=8)
    assert capsys.readouterr().err == (
        f'interrupted while exporting: {kept} holds the finished adaptation (step 5); {again} '
        'exports it and writes its card without training again\n')


def test_an_export_that_fails_after_adapting_is_one_line(healthy_bag, tmp_path, monkeypatch,
                                                        capsys):
    needs('torch')
    # ExportError is no InputError: mmp_ros adapt ended in a RuntimeError traceback
    import mmp_ros.inference.onnx_file
    import mmp_ros.model
    import training.adapt
    import training.export
    import training.train
    from mmp_ros.cli import main
    from training.train import TrainResult

    def fails(checkpoint, path, **kwargs):
        raise training.export.ExportError(f'{path}: ONNX Runtime labels agree with PyTorch '
                                          'on 90.0000%')

    monkeypatch.setattr(mmp_ros.inference.onnx_file, 'read_model_metadata', lambda p: METADATA)
    monkeypatch.setattr(mmp_ros.model, 'load_checkpoint', lambda p: (None, METADATA, {}))
    monkeypatch.setattr(training.train, '_adapt_model', lambda config: (None, METADATA))
    monkeypatch.setattr(training.adapt, 'adapt', lambda *a, **k: TrainResult(
        tmp_path / 'train' / 'checkpoint.pt', start_step=0, losses=[1.0]))
    monkeypatch.setattr(training.export, 'export_checkpoint', fails)
    assert main(['adapt', str(healthy_bag), '--model', 'm.onnx', '--checkpoint', 'c.pt',
                 '--out', str(tmp_path), '--max-frames', '8']) == 1
    assert capsys.readouterr().err == (f'mmp_ros adapt: {tmp_path / "m_adapted.onnx"}: ONNX '
                                       'Runtime labels agree with PyTorch on 90.0000%\n')


def test_the_card_of_a_resumed_run_counts_every_step(healthy_bag, tmp_path):
    # it counted the steps run since the resume (all 0 where the run had been complete)
    frames = read_bag_frames(healthy_bag, METADATA, max_frames=8)
    kwargs = dict(bag='bag', model='m.onnx', checkpoint='c.pt', frames=frames,
                  metadata=METADATA, seconds=1.0, command='mmp_ros adapt')
    card = adapt_bag.model_card(tmp_path / 'a.onnx', steps=5, losses=[2.0, 1.0, 1.0],
                                start_step=2, **kwargs).read_text()
    assert '| steps | 5; resumed at step 2; training loss 2.0000 (first tenth)' in card
    card = adapt_bag.model_card(tmp_path / 'b.onnx', steps=5, losses=[], start_step=5,
                                **kwargs).read_text()
    assert '| steps | 5; resumed at step 5 |' in card


def test_an_exported_model_of_another_training_run_is_refused():
    # the shipped tiny_mmp.onnx with another run's none checkpoint was adapted: the checkpoint's
    # model came out as tiny_mmp_adapted.onnx, its card calling it tiny_mmp robustified
    from dataclasses import replace

    run = {'command': 'mmp_ros train --set seed=0', 'seed': 0, 'method': 'none'}
    exported = replace(METADATA, provenance={**run, 'checkpoint': 'out/a.pt',
                                             'export': {'onnx_opset': 18}})
    adapt_bag.check_same_model(exported, replace(METADATA, provenance=run), 'm.onnx', 'c.pt')
    other = replace(METADATA, provenance={**run, 'command': 'mmp_ros train --set seed=1',
                                          'seed': 1})
    with pytest.raises(BagError, match=r'c\.pt is not the checkpoint of m\.onnx: another '
                       r'training run \(command, seed differ\); give the checkpoint it was '
                       r'exported from \(out/a\.pt\)'):
        adapt_bag.check_same_model(exported, other, 'm.onnx', 'c.pt')
    with pytest.raises(BagError, match=r"c\.pt is not the checkpoint of m\.onnx: method: "
                       r"'mmp' vs 'none'; give the checkpoint"):
        adapt_bag.check_same_model(replace(exported, method='mmp'), replace(METADATA),
                                   'm.onnx', 'c.pt')


def test_params_are_taken_as_the_node_takes_them(healthy_bag, tmp_path, capsys):
    # thermal.max_age_s (sensors. left out) was ignored without a word, where the node warns
    typo = tmp_path / 'typo.yaml'
    typo.write_text('/**:\n  ros__parameters:\n    thermal:\n      max_age_s: 0.3\n')
    read_bag_frames(healthy_bag, METADATA, params_files=(CONFIG / 'mmp_segmentation.yaml', typo),
                    max_frames=8)
    assert capsys.readouterr().err == (
        'mmp_ros adapt: ignoring values for parameters the node does not have: '
        'thermal.max_age_s (did you mean sensors.thermal.max_age_s?)\n')
    rules = tmp_path / 'rules.yaml'
    rules.write_text('/**:\n  ros__parameters:\n    sensors:\n      thermal:\n'
                     '        rate_warn_ratio: 0.3\n        rate_error_ratio: 0.5\n')
    with pytest.raises(BagError, match=rf'--params {rules}: the node would not start with them '
                       r'\(sensors\.thermal: rate_warn_ratio=0\.3 must be'):
        read_bag_frames(healthy_bag, METADATA, params_files=(rules,))


def test_a_params_file_that_cannot_be_read_is_named(tmp_path, capsys):
    # mmp_ros adapt --params missing.yaml: "[Errno 2] No such file or directory: ..." alone
    from mmp_ros.core.parameters import ParameterError

    missing = tmp_path / 'missing.yaml'
    with pytest.raises(ParameterError, match=rf'^--params {missing}: cannot read it \(No such '
                       r'file or directory\)$'):
        read_bag_frames(tmp_path / 'bag', METADATA, params_files=(missing,))


def test_a_model_exported_at_another_input_size_says_how_to_adapt_it():
    # 'c.pt is not the checkpoint of m.onnx: input size ...', though it was, exported with
    # mmp_ros export --input-size: the message neither said so nor what to do
    from dataclasses import replace

    with pytest.raises(BagError, match=r'm\.onnx was exported at input size 32x48, its '
                       r'checkpoint c\.pt is at 16x24: give a --model exported at 16x24, then '
                       r'export OUT/train/checkpoint\.pt with mmp_ros export --input-size 32 48'):
        adapt_bag.check_same_model(replace(METADATA, input_size=(32, 48)), METADATA, 'm.onnx',
                                   'c.pt')


# How image_transport publishers carry each sensor of the synthetic bag: colour as JPEG,
# depth through compressedDepth, the 16-bit mosaic and radiometric counts as PNG (lossless).
TRANSPORTED = {'rgb': ('compressed', 'jpeg'), 'depth': ('compressedDepth', 'compressedDepth'),
               'polarization': ('compressed', 'png'), 'thermal': ('compressed', 'png')}


def compressed_copy(source: Path, out: Path, *, storage: str = 'mcap', damage=None,
                    transports=None) -> Path:
    """``source`` with each camera's raw images on /<m>/image replaced by CompressedImage on
    /<m>/image/<transport>, as a recording made through image_transport has them.
    ``damage(topic, index, data)``: the payload to store instead (None: as compressed)."""
    from mmp_ros.bags.messages import deserialize_image, serialize_compressed
    from mmp_ros.bags.recording import BagRecorder
    from mmp_ros.bags.source import COMPRESSED_TYPE, open_bag
    from mmp_ros.sensors.compressed import compress_image

    transports = transports or TRANSPORTED
    names = {f'/{m}/image': (f'/{m}/image/{t}', fmt) for m, (t, fmt) in transports.items()}
    counts: dict[str, int] = {}
    with open_bag(source) as bag, BagRecorder(out, storage=storage) as recorder:
        for topic in bag.topics.values():
            if topic.name in names:
                recorder.add_topic(names[topic.name][0], COMPRESSED_TYPE, topic.offered_qos)
            else:
                recorder.add_topic(topic.name, topic.msgtype, topic.offered_qos)
        for topic, stamp, data in bag.messages(list(bag.topics)):
            if topic in names:
                image = deserialize_image(data)
                fmt, payload = compress_image(image.fields, names[topic][1])
                index = counts[topic] = counts.get(topic, -1) + 1
                if damage is not None:
                    payload = damage(topic, index, payload)
                topic = names[topic][0]
                data = serialize_compressed(fmt, payload, image.stamp_ns, image.frame_id)
            recorder.write(topic, stamp, data)
    return out


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_a_recording_through_image_transport_is_read_as_its_raw_images(healthy_bag, tmp_path,
                                                                        storage):
    # 'no sensor_msgs/msg/Image topic to adapt on' for a bag of CompressedImage topics
    compressed = compressed_copy(healthy_bag, tmp_path / 'compressed', storage=storage)
    raw = read_bag_frames(healthy_bag, METADATA)
    frames = read_bag_frames(compressed, METADATA)  # /<m>/image found on its transport topic
    assert frames.messages == raw.messages and frames.rejected == raw.rejected
    assert frames.stamps == raw.stamps and frames.incomplete == raw.incomplete
    for got, expected in zip(frames.samples, raw.samples, strict=True):
        for m in ('depth', 'polarization', 'thermal'):  # PNG: exact
            np.testing.assert_array_equal(got[m], expected[m])
        # JPEG (quality 95) of a noisy render: close, not equal
        assert np.abs(got['rgb'] - expected['rgb']).mean() < 0.03
        assert not np.array_equal(got['rgb'], expected['rgb'])
    # Named as the transport topic itself, too.
    named = read_bag_frames(compressed, METADATA, topics={'rgb': '/rgb/image/compressed'})
    assert named.stamps == raw.stamps


def test_a_compressed_frame_that_does_not_decode_is_refused_like_a_bad_raw_one(healthy_bag,
                                                                                tmp_path):
    def truncate(topic, index, payload):
        return payload[: len(payload) // 2] if topic == '/thermal/image' and index % 2 else payload

    damaged = compressed_copy(healthy_bag, tmp_path / 'damaged', damage=truncate)
    frames = read_bag_frames(damaged, METADATA)
    assert frames.rejected['thermal'] == frames.messages['thermal'] // 2 > 0
    assert sum(frames.rejected.values()) == frames.rejected['thermal']


def test_bytes_that_are_no_compressed_image_are_named(tmp_path):
    from mmp_ros.bags.recording import BagRecorder
    from mmp_ros.bags.source import COMPRESSED_TYPE

    bag = tmp_path / 'bag'
    with BagRecorder(bag) as recorder:
        for m in MODALITIES:
            recorder.add_topic(f'/{m}/image/compressed', COMPRESSED_TYPE, None)
        recorder.write('/rgb/image/compressed', 1, b'\x00\x01\x00\x00\x07')
    with pytest.raises(BagError, match=rf'^{bag}: /rgb/image/compressed: not a readable '
                       r'sensor_msgs/msg/CompressedImage \('):
        read_bag_frames(bag, METADATA)


def test_of_the_transport_topics_that_ros2_bag_record_a_makes_the_one_with_messages_is_read():
    # ros2 bag record -a records every transport of a camera; those whose publisher could
    # not compress the image (JPEG of 16-bit depth, compressedDepth of colour) stay empty
    from mmp_ros.bags.source import COMPRESSED_TYPE, IMAGE_TYPE, BagTopic, camera_topic

    def topic(name, msgtype, count):
        return name, BagTopic(name, msgtype, count, 'cdr', None)

    topics = dict([topic('/depth/image/compressed', COMPRESSED_TYPE, 0),
                   topic('/depth/image/compressedDepth', COMPRESSED_TYPE, 30),
                   topic('/rgb/image/compressed', COMPRESSED_TYPE, 30),
                   topic('/rgb/image/compressedDepth', COMPRESSED_TYPE, 0),
                   topic('/thermal/image', IMAGE_TYPE, 9),
                   topic('/thermal/image/compressed', COMPRESSED_TYPE, 9),
                   topic('/polarization/image/compressed', 'std_msgs/msg/String', 3)])
    assert camera_topic(topics, '/depth/image') == '/depth/image/compressedDepth'
    assert camera_topic(topics, '/rgb/image') == '/rgb/image/compressed'
    assert camera_topic(topics, '/thermal/image') == '/thermal/image'  # raw first
    assert camera_topic(topics, '/rgb/image/compressed') == '/rgb/image/compressed'
    assert camera_topic(topics, '/polarization/image') is None  # not a CompressedImage
    assert camera_topic(topics, '/lidar/image') is None
    del topics['/depth/image/compressedDepth']
    assert camera_topic(topics, '/depth/image') == '/depth/image/compressed'  # none else


@pytest.mark.parametrize('compressed', [False, True])
def test_a_frame_over_the_nodes_max_pixels_is_refused_as_the_node_refuses_it(healthy_bag,
                                                                             tmp_path, compressed):
    # sensors.<m>.max_pixels of --params was ignored: every frame was taken up to the
    # decoders' 67 Mpx, where the node refuses one over the parameter (4096 x 4096 by default)
    bag = compressed_copy(healthy_bag, tmp_path / 'c') if compressed else healthy_bag
    small = tmp_path / 'small.yaml'
    small.write_text('/**:\n  ros__parameters:\n    sensors:\n      thermal:\n'
                     '        max_pixels: 767\n')  # the bag's frames are 24 x 32 = 768
    frames = read_bag_frames(bag, METADATA, params_files=(CONFIG / 'mmp_segmentation.yaml', small))
    assert frames.rejected == {'rgb': 0, 'depth': 0, 'polarization': 0,
                               'thermal': frames.messages['thermal']} and not frames.samples
    small.write_text(small.read_text().replace('767', '768'))
    frames = read_bag_frames(bag, METADATA, params_files=(CONFIG / 'mmp_segmentation.yaml', small))
    assert sum(frames.rejected.values()) == 0 and frames.samples


def retimed_copy(source: Path, out: Path, *, first_stamp_ns: int, latency_ns: int,
                 clock_from_ns: int = 0, unclocked: str = 'log at 0') -> Path:
    """``source`` with every stamp moved so that its first message is stamped
    ``first_stamp_ns``, each logged ``latency_ns`` after its stamp (a simulator's recording
    made with ``ros2 bag record --use-sim-time``: its clock, and stamps, start at 0).
    Messages stamped before ``clock_from_ns`` came before the recorder's first /clock message:
    logged at time 0 (as rosbag2 before Iron wrote them), or with ``unclocked='drop'`` left
    out."""
    from mmp_ros.bags.messages import IMAGE_TYPE, deserialize_image, serialize_image
    from mmp_ros.bags.recording import BagRecorder
    from mmp_ros.bags.source import open_bag

    with open_bag(source) as bag, BagRecorder(out) as recorder:
        images = [t for t in bag.topics.values() if t.msgtype == IMAGE_TYPE]  # no camera_info
        for topic in images:
            recorder.add_topic(topic.name, topic.msgtype, topic.offered_qos)
        shift = bag.start_ns - first_stamp_ns
        for topic, _, data in bag.messages([t.name for t in images]):
            image = deserialize_image(data)
            stamp = image.stamp_ns - shift
            logged = stamp + latency_ns if stamp >= clock_from_ns else 0
            if logged or unclocked != 'drop':
                recorder.write(topic, logged, serialize_image(image.fields, stamp,
                                                              image.frame_id))
    return out


def test_a_simulators_recording_on_sim_time_keeps_its_first_frame_stamped_zero(healthy_bag,
                                                                               tmp_path):
    # Its log times are the simulator's /clock from 0: the frame stamped 0 was refused 'stamp
    # is zero' (as on wall time), and its sensor masked for recovery_frames more frames, where
    # the node on use_sim_time takes it
    simulated = retimed_copy(healthy_bag, tmp_path / 'sim', first_stamp_ns=0,
                             latency_ns=5_000_000)
    later = retimed_copy(healthy_bag, tmp_path / 'later', first_stamp_ns=10**9,
                         latency_ns=5_000_000)
    frames, expected = read_bag_frames(simulated, METADATA), read_bag_frames(later, METADATA)
    assert sum(frames.rejected.values()) == 0 and frames.messages == expected.messages
    assert frames.incomplete == expected.incomplete
    assert [s + 1.0 for s in frames.stamps] == pytest.approx(expected.stamps)
    # On wall time a stamp of 0 is a driver that does not set it, and refused
    wall = retimed_copy(healthy_bag, tmp_path / 'wall', first_stamp_ns=0,
                        latency_ns=1_700_000_000 * 10**9)
    assert sum(read_bag_frames(wall, METADATA).rejected.values()) == 1


def test_frames_logged_before_the_recorders_first_clock_message_are_not_judged(healthy_bag,
                                                                               tmp_path):
    # ros2 bag record --use-sim-time before Iron logged what came before its first /clock
    # message at time 0: judged at 0 they were refused 'in the future' (27 frames), and every
    # sensor masked for recovery_frames more. The node on use_sim_time passes over frames
    # while its clock reads 0.
    simulated = dict(first_stamp_ns=3 * 10**9, latency_ns=5_000_000, clock_from_ns=3_300_000_000)
    unclocked = retimed_copy(healthy_bag, tmp_path / 'unclocked', **simulated)
    without = retimed_copy(healthy_bag, tmp_path / 'without', **simulated, unclocked='drop')
    frames, expected = read_bag_frames(unclocked, METADATA), read_bag_frames(without, METADATA)
    assert sum(frames.rejected.values()) == 0
    assert frames.stamps == expected.stamps and frames.incomplete == expected.incomplete
    assert sum(frames.messages.values()) > sum(expected.messages.values())
