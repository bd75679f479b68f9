"""``mmp_ros adapt BAG --model M --checkpoint C``: label-free robustification on a recording.

A robot's own healthy recording is the best unlabelled data for ``mmp_adapt`` (see
``training.adapt``): it shows this robot's cameras, in this robot's places. The frames are
read exactly as the node reads them live: each image decoded by ``mmp_ros.sensors`` with the
node's parameters, judged by the node's ``HealthMonitor`` (a frame the node would reject is
not trained on), put together around RGB frames by the node's ``FrameAssembler`` with its
``max_age_s``, and resized by ``mmp_ros.core.preprocess``. Only bundles in which all four
sensors are present and healthy are kept; normalization is the model's, applied by training.

The exported model ``M`` names the model to robustify (its metadata: modalities, input size,
classes); adaptation needs its weights as a PyTorch checkpoint (``--checkpoint``, trained with
method ``none``), which must describe the same model. The result is a new checkpoint, an
exported ONNX model and its model card (Markdown beside the ONNX file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.messages import deserialize_camera_image
from mmp_ros.bags.source import CAMERA_TYPES, COMPRESSED_TRANSPORTS, camera_topic, open_bag
from mmp_ros.cli import non_negative_int
from mmp_ros.core.assembler import FrameAssembler
from mmp_ros.core.health import HealthMonitor
from mmp_ros.core.parameters import (
    ParameterError,
    all_parameters,
    decoder_settings,
    defaults,
    health_config,
    load_params_file,
    sensor_parameter,
    unknown_parameters,
    validate,
)
from mmp_ros.core.preprocess import resize_representation
from mmp_ros.errors import output_folder
from mmp_ros.metadata import ModelMetadata
from mmp_ros.sensors import MODALITY_INPUTS, SensorInputError, decode_frame
from mmp_ros.share import share_file

DEFAULT_CONFIG = share_file('config', 'train_adapt.yaml')
DEFAULT_PARAMS = share_file('config', 'mmp_segmentation.yaml')
# What the command sets itself, whatever --set says: refused there rather than ignored.
SET_BY_ADAPT = {
    'out_dir': 'it trains in OUT/train: give --out',
    'modalities': "they are the model's (--model)",
    'data.input_size': "it is the model's (--model)",
    'data.num_workers': "the recording's frames are read into memory",
    'method': 'it is mmp_adapt',
    'base_checkpoint': 'it is --checkpoint',
}
# A recording whose log times begin before this was made on sim time (``ros2 bag record
# --use-sim-time``: a simulator's /clock starts at 0); on wall time they are years past it.
SIM_TIME_BEFORE_NS = 946_684_800 * 10**9  # 2000-01-01


class AdaptedExportError(RuntimeError):
    """The adapted model's export failed (training.export's ExportError, which :func:`run`
    cannot name without importing torch)."""


@dataclass
class BagFrames:
    """The usable bundles of a recording, at the model's input size, in physical units."""

    modalities: tuple[str, ...]
    samples: list[dict[str, np.ndarray]]  # modality -> (C, H, W) float32
    stamps: list[float]  # anchor stamps, seconds
    messages: dict[str, int] = field(default_factory=dict)  # per modality
    rejected: dict[str, int] = field(default_factory=dict)  # frames the health checks refused
    incomplete: int = 0  # anchor frames without every modality healthy and in time


def read_bag_frames(path: str | Path, metadata: ModelMetadata, *,
                    topics: dict[str, str] | None = None,
                    params_files: tuple[str | Path, ...] = (DEFAULT_PARAMS,),
                    max_frames: int = 0) -> BagFrames:
    """Decode a bag the way the node would and keep the complete, healthy bundles.

    ``topics``: modality -> bag topic (default ``/<modality>/image``); a camera recorded
    through image_transport is found on ``TOPIC/compressed`` or ``TOPIC/compressedDepth``
    too, and decompressed as the node does. ``max_frames``: keep at most this many bundles,
    evenly spread over the recording (0: all).
    """
    modalities = tuple(metadata.modalities)
    unknown = sorted(set(topics or {}) - set(modalities))
    if unknown:
        raise BagError(f'--topic {", ".join(unknown)}: not a modality of the model '
                       f'({", ".join(modalities)})')
    topics = {m: (topics or {}).get(m, f'/{m}/image') for m in modalities}
    shared = sorted({t for t in topics.values() if list(topics.values()).count(t) > 1})
    if shared:
        raise BagError(f'topic {", ".join(shared)} named for '
                       f'{" and ".join(m for m, t in topics.items() if t in shared)}: each '
                       'modality needs a topic of its own (--topic MODALITY=TOPIC)')
    values = defaults()
    for params in params_files:
        values.update(load_params_file(params, option='--params'))
    # As the node takes them: values for names it does not declare are ignored with a warning
    # (a misspelt one would go unnoticed), and the merged set must meet the rules between values.
    specs = all_parameters()
    unknown = unknown_parameters(values, specs)
    if unknown:
        print(f'mmp_ros adapt: ignoring values for parameters the node does not have: '
              f'{", ".join(unknown)}', file=sys.stderr)
    try:
        validate({k: v for k, v in values.items() if k in specs})
    except ParameterError as exc:
        raise BagError(f'--params {" ".join(map(str, params_files))}: the node would not '
                       f'start with them ({exc})') from None
    settings = {m: decoder_settings(values, m) for m in modalities}
    monitors = {m: HealthMonitor(m, health_config(values, m)) for m in modalities}
    assembler = FrameAssembler(
        modalities, anchor='rgb' if 'rgb' in modalities else 'freshest',
        max_age_s={m: values[sensor_parameter(m, 'max_age_s')] for m in modalities},
        cache_depth=values['cache_depth'],
    )
    anchor = 'rgb' if 'rgb' in modalities else None
    result = BagFrames(modalities, [], [], dict.fromkeys(modalities, 0),
                       dict.fromkeys(modalities, 0))
    bundles = []
    with open_bag(path) as bag:
        if not any(t.is_camera for t in bag.topics.values()):
            listed = ', '.join(f'{t.name} [{t.type_text}]' for t in bag.topics.values())
            raise BagError(f'{bag.path}: no sensor_msgs/msg/Image or CompressedImage topic to '
                           f'adapt on (topics: {listed})')
        for m, name in topics.items():
            topic = camera_topic(bag.topics, name)
            if topic is None:
                transported = ', '.join(f'{name}/{t}' for t in COMPRESSED_TRANSPORTS)
                raise BagError(f'{bag.path}: no topic {name} for {m} (nor {transported}; the '
                               f'bag has {sorted(bag.topics)}); if {m} was recorded under '
                               f'another topic, name it with --topic {m}=TOPIC; else this '
                               'recording cannot be adapted on: adaptation needs every sensor '
                               f'the model uses ({", ".join(modalities)}) recorded, and healthy')
            if not bag.topics[topic].is_camera:
                raise BagError(f'{bag.path}: topic {topic} holds {bag.topics[topic].type_text}, '
                               f'not {" or ".join(CAMERA_TYPES)}')
            topics[m] = topic
        by_topic = {t: m for m, t in topics.items()}
        # Each frame is judged at its log time, on the recorder's clock: on sim time, as the
        # node's is on use_sim_time (a simulation's first frame, stamped 0, is used).
        sim_time = bag.start_ns < SIM_TIME_BEFORE_NS
        for topic, received_ns, data in bag.messages(list(by_topic)):
            m = by_topic[topic]
            now = received_ns / 1e9
            image = deserialize_camera_image(data, bag.topics[topic].msgtype,
                                             where=f'{bag.path}: {topic}')
            result.messages[m] += 1
            if received_ns == 0:
                # Logged before the recorder's first /clock message (ros2 bag record
                # --use-sim-time before Iron): the node passes over frames while its clock
                # reads 0, there is no time to judge them by.
                continue
            try:
                fields = image.sensor_fields(
                    max_pixels=values[sensor_parameter(m, 'max_pixels')],
                    encodings=MODALITY_INPUTS[m][1])
                frame = decode_frame(m, fields, settings[m])
            except SensorInputError as exc:
                monitors[m].observe_error(now, str(exc))
                assembler.clear(m)
                result.rejected[m] += 1
                continue
            if monitors[m].observe(image.stamp_ns / 1e9, now, frame.stats,
                                   sim_time=sim_time).accepted:
                assembler.add(m, image.stamp_ns / 1e9, frame)
            else:
                assembler.clear(m)
                result.rejected[m] += 1
            if anchor is not None and m != anchor:
                continue
            usable = {k: mon.status(now).usable for k, mon in monitors.items()}
            bundle = assembler.assemble(usable, now)
            if bundle is None:
                continue
            if bundle.missing:
                result.incomplete += 1
                continue
            bundles.append(bundle)
    if max_frames and len(bundles) > max_frames:
        keep = np.linspace(0, len(bundles) - 1, max_frames).round().astype(int)
        bundles = [bundles[i] for i in sorted(set(keep.tolist()))]
    size = tuple(metadata.input_size)
    for bundle in bundles:
        result.samples.append({
            m: np.ascontiguousarray(resize_representation(
                f.frame.data, f.frame.valid, size).transpose(2, 0, 1), dtype=np.float32)
            for m, f in bundle.frames.items()
        })
        result.stamps.append(bundle.stamp)
    return result


class FramesDataset:
    """A torch map-style dataset over :class:`BagFrames` (no labels: adaptation needs none)."""

    def __init__(self, frames: BagFrames) -> None:
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames.samples)

    def __getitem__(self, index: int):
        import torch

        sample = {m: torch.from_numpy(a) for m, a in self.frames.samples[index].items()}
        sample['available'] = torch.ones(len(self.frames.modalities), dtype=torch.bool)
        return sample


def source_differences(onnx_meta: ModelMetadata, checkpoint_meta: ModelMetadata
                       ) -> list[str]:
    """How a checkpoint is not the source of an exported model, by their metadata: its
    inputs, classes, method, normalization and training run (the provenance export copied
    from it); the input size aside, which an export may change."""
    differences = [
        f'{name}: {a!r} vs {b!r}' for name, a, b in (
            ('modalities', tuple(onnx_meta.modalities), tuple(checkpoint_meta.modalities)),
            ('class names', tuple(onnx_meta.class_names), tuple(checkpoint_meta.class_names)),
            ('method', onnx_meta.method, checkpoint_meta.method),
        ) if a != b
    ]
    if onnx_meta.normalization != checkpoint_meta.normalization:
        differences.append('normalization differs')
    exported = onnx_meta.provenance
    run = sorted(k for k, v in checkpoint_meta.provenance.items()
                 if k not in ('checkpoint', 'export', 'method') and exported.get(k, v) != v)
    if run:
        differences.append(f'another training run ({", ".join(run)} differ)')
    return differences


def check_same_model(onnx_meta: ModelMetadata, checkpoint_meta: ModelMetadata,
                     model: str, checkpoint: str) -> None:
    """The checkpoint must be the exported model's source: same inputs, classes, size,
    method, normalization and training run (the provenance export copied from it)."""
    differences = source_differences(onnx_meta, checkpoint_meta)
    exported = onnx_meta.provenance
    (h, w), (ch, cw) = onnx_meta.input_size, checkpoint_meta.input_size
    if differences:
        if (h, w) != (ch, cw):
            differences.append(f'input size: {(h, w)!r} vs {(ch, cw)!r}')
        source = exported.get('checkpoint')
        raise BagError(f'{checkpoint} is not the checkpoint of {model}: '
                       + '; '.join(differences) + ('; give the checkpoint it was exported from'
                                                   + (f' ({source})' if source else '')))
    if (h, w) != (ch, cw):  # the same model, exported for another size (export --input-size)
        raise BagError(f'{model} was exported at input size {h}x{w}, its checkpoint {checkpoint} '
                       f'is at {ch}x{cw}: give a --model exported at {ch}x{cw}, then export '
                       f'OUT/train/checkpoint.pt with mmp_ros export --input-size {h} {w}')


def model_card(path: Path, *, bag: str, model: str, checkpoint: str, frames: BagFrames,
               metadata: ModelMetadata, steps: int, losses: list[float], seconds: float,
               command: str, fit_steps: int = 0, start_step: int = 0) -> Path:
    """Markdown beside the exported model: what it is, what it was adapted on, and how."""
    span = (max(frames.stamps) - min(frames.stamps)) if frames.stamps else 0.0
    first = np.mean(losses[: max(1, len(losses) // 10)]) if losses else float('nan')
    last = np.mean(losses[-max(1, len(losses) // 10):]) if losses else float('nan')
    lines = [
        f'# {path.stem}', '',
        f'`{path.name}`: the model `{Path(model).name}` robustified to missing sensors without '
        f'labels (method `{metadata.method}`): its weights are unchanged and a projection '
        'module, trained on the recording below (alignment with the real tokens, plus '
        "distillation from the base model's own all-sensor prediction when "
        '`distillation_weight` > 0), stands in for any modality that is masked. With every '
        'sensor healthy the output is the base model\'s.',
        '', '| | |', '| --- | --- |',
        f'| base model | `{model}` |', f'| base checkpoint | `{checkpoint}` |',
        f'| recording | `{bag}` |',
        f'| frames | {len(frames.samples)} complete healthy bundles over {span:.1f} s '
        f'({frames.incomplete} incomplete anchors skipped; frames refused by the health '
        f'checks: {", ".join(f"{m} {n}" for m, n in frames.rejected.items())}) |',
        f'| modalities | {", ".join(metadata.modalities)} |',
        f'| input size | {metadata.input_size[0]}x{metadata.input_size[1]} |',
        f'| classes | {metadata.num_classes}: {", ".join(metadata.class_names)} |',
        f'| steps | {steps}' + (f'; resumed at step {start_step}' if start_step else '')
        + (f'; training loss {first:.4f} (first tenth) -> {last:.4f} (last tenth)'
           if losses else '') + (f'; after {fit_steps} steps fitting the projection to the '
                                 'cached tokens' if fit_steps else '') + ' |',
        f'| time | {seconds:.0f} s |', f'| command | `{command}` |', '',
        'Labels were never read. Check the adapted model on a labelled run before deploying it '
        '(`mmp_ros evaluate`).', '',
    ]
    card = path.with_suffix('.md')
    card.write_text('\n'.join(lines))
    return card


def adapt_on_bag(bag: str, *, model: str, checkpoint: str, out: str | Path,
                 config: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                 params_files: tuple[str | Path, ...] = (DEFAULT_PARAMS,),
                 topics: dict[str, str] | None = None, max_frames: int = 256,
                 min_frames: int = 8, command: str = '') -> tuple[Path, Path]:
    """Adapt ``checkpoint`` (the source of the exported ``model``) on ``bag``; returns the
    exported ONNX model and its card."""
    from mmp_ros.inference.onnx_file import read_model_metadata
    from mmp_ros.model import CheckpointError, load_checkpoint, read_checkpoint
    from training.adapt import adapt, adapt_config
    from training.config import CHECKPOINT_NAME, ConfigError, load_config
    from training.export import ExportError, export_checkpoint
    from training.train import adaptation_resume_problem, crop_problem, resolve_device

    if 0 < max_frames < min_frames:  # else refused below as if the recording were bad
        raise BagError(f'--max-frames {max_frames} keeps fewer bundles than adaptation needs '
                       f'({min_frames}); give at least {min_frames}, or 0 for all')
    for item in overrides:
        key = item.partition('=')[0].strip()
        if key in SET_BY_ADAPT:
            raise ConfigError(f'--set {item}: mmp_ros adapt sets {key} itself '
                              f'({SET_BY_ADAPT[key]})')
    started = time.perf_counter()
    metadata = read_model_metadata(model)
    _, checkpoint_meta, _ = load_checkpoint(checkpoint)
    check_same_model(metadata, checkpoint_meta, model, checkpoint)
    out = output_folder(out, '--out')  # before the recording (minutes) is read
    if (out / 'train' / CHECKPOINT_NAME).resolve() == Path(checkpoint).resolve():
        raise BagError(f'--out {out}: adaptation trains into {out / "train"}, where --checkpoint '
                       f'{checkpoint} is: it would be replaced; give another --out')
    forced = [f'out_dir={out / "train"}', 'data.num_workers=0',
              f'data.input_size=[{metadata.input_size[0]}, {metadata.input_size[1]}]',
              f'modalities=[{", ".join(metadata.modalities)}]']
    config = config or str(DEFAULT_CONFIG)
    # A recording's frames come back many times (2000 steps of 16 on 256 frames: 125 times
    # each), so the frozen model's side of distillation is computed once per frame.
    # Read with the cache off: whether to default it on is what is being decided, and
    # projection_fit (which needs the cache) must not be refused for the default's absence.
    chosen = load_config(config, [*overrides, 'method=mmp_adapt',
                                  f'base_checkpoint={json.dumps(str(checkpoint))}',
                                  'teacher_cache=false', 'projection_fit.steps=0'])
    # Every run starts afresh unless --set resume=true continues OUT/train's (after Ctrl-C).
    defaults = [*(['teacher_cache=true'] if chosen.distillation_weight else []), 'resume=false']
    # Checked as adaptation will take it (projection_fit without the cache, say) before the
    # recording, which may take minutes, is read.
    taken = adapt_config(checkpoint, config_path=config,
                         overrides=[*defaults, *overrides, *forced])
    problem = crop_problem(tuple(taken.distill_crop), metadata.input_size)
    if problem:
        raise ConfigError(problem)
    resolve_device(taken.device)  # device=cuda without CUDA, as training refuses it
    # --set resume=true on OUT/train of another base: said before the recording is read, and
    # with what adapt takes (--out, not out_dir)
    saved, problem = adaptation_resume_problem(taken)
    if problem:
        raise CheckpointError(f'{saved}: {problem}; give another --out, or leave out --set '
                              'resume=true to start afresh there (replacing that run)')
    frames = read_bag_frames(bag, metadata, topics=topics, params_files=params_files,
                             max_frames=max_frames)
    if len(frames.samples) < min_frames:
        raise BagError(
            f'{bag}: only {len(frames.samples)} bundles with all of {list(metadata.modalities)} '
            f'healthy and in time (need {min_frames}); adaptation needs a recording in which '
            f'every sensor works (messages: {frames.messages}, refused: {frames.rejected})')
    result = adapt(checkpoint, config_path=config, overrides=[*defaults, *overrides, *forced],
                   train_dataset=FramesDataset(frames), command=command)
    onnx_path = out / f'{Path(model).stem}_adapted.onnx'
    steps = result.start_step + len(result.losses)
    try:
        export_checkpoint(result.checkpoint, onnx_path)
        card = model_card(onnx_path, bag=str(bag), model=str(model), checkpoint=str(checkpoint),
                          frames=frames, metadata=read_model_metadata(onnx_path), steps=steps,
                          losses=list(result.losses), start_step=result.start_step,
                          seconds=time.perf_counter() - started, command=command,
                          fit_steps=read_checkpoint(result.checkpoint)['train_config']
                          ['projection_fit']['steps'])
    except KeyboardInterrupt:  # Ctrl-C after training: say what is kept, as training does
        again = 'the same command' if taken.resume else 'the same command with --set resume=true'
        print(f'interrupted while exporting: {result.checkpoint} holds the finished adaptation '
              f'(step {steps}); {again} exports it and writes its card without training again',
              file=sys.stderr)
        raise
    except ExportError as exc:  # no InputError: it was a traceback
        raise AdaptedExportError(str(exc)) from exc
    return onnx_path, card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('bag', help='a recording in which all four sensors were healthy')
    parser.add_argument('--model', required=True, help='the exported ONNX model to robustify')
    parser.add_argument('--checkpoint', required=True,
                        help="its PyTorch checkpoint (.pt, method none): adaptation trains "
                        "a projection module on the frozen model")
    parser.add_argument('--out', default='out/adapt', help='folder for the checkpoint, the '
                        'ONNX model and its card (default out/adapt)')
    parser.add_argument('--config', help=f'training config (default {DEFAULT_CONFIG.name})')
    parser.add_argument('--set', dest='overrides', action='append', default=[],
                        metavar='KEY=VALUE', help='override a config value, e.g. steps=200')
    # Repeatable ('extend'), as the node's --params-file: a second --params adds its files.
    parser.add_argument('--params', nargs='+', action='extend', default=None, metavar='FILE',
                        help="the node's parameter files (decoding, health, max_age_s)")
    parser.add_argument('--topic', action='append', default=[], metavar='MODALITY=TOPIC',
                        help='bag topic of a modality (default /<modality>/image; '
                        'TOPIC/compressed or TOPIC/compressedDepth when the bag has that '
                        'instead)')
    parser.add_argument('--max-frames', type=non_negative_int, default=256,
                        help='bundles kept, evenly spread over the recording (0: all)')


def run(args: argparse.Namespace) -> int:
    from training.config import ConfigError

    try:
        topics = {}
        for item in args.topic:
            name, sep, topic = item.partition('=')
            if not sep or not topic:
                raise BagError(f'--topic {item!r}: expected MODALITY=TOPIC')
            if topics.get(name, topic) != topic:  # the last would win, without a word
                raise BagError(f'--topic {item}: {name} is given twice ({topics[name]}, '
                               f'{topic})')
            topics[name] = topic
        onnx_path, card = adapt_on_bag(
            args.bag, model=args.model, checkpoint=args.checkpoint, out=args.out,
            config=args.config, overrides=args.overrides,
            params_files=tuple(args.params or [DEFAULT_PARAMS]), topics=topics,
            max_frames=args.max_frames,
            command='mmp_ros adapt ' + ' '.join(sys.argv[2:]))
    except (BagError, ConfigError, OSError, ValueError) as exc:
        print(f'mmp_ros adapt: {exc}', file=sys.stderr)
        return 2
    except AdaptedExportError as exc:  # as mmp_ros export says it: status 1
        print(f'mmp_ros adapt: {exc}', file=sys.stderr)
        return 1
    print(f'adapted model: {onnx_path}\nmodel card: {card}')
    return 0
