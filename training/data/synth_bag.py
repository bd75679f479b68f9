"""``synth-bag``: a rosbag2 of the four cameras, rendered by the scene generator.

The generator renders independent scenes; a recording is a stream. The bag shows a sequence
of scenes, each held for ``scene_seconds`` (a robot that stops to look, then turns to the
next view), while each camera keeps running at its own rate with its own noise: every frame
of every sensor is a fresh noise draw of the held scene (its ``render`` noise streams are
seeded per frame), so no two consecutive frames of a sensor are identical and the node's
frozen-frame check stays quiet until a fault freezes one. Depth holes flicker and thermal
fixed-pattern noise is re-drawn too; the geometry is cast once per scene.

Timing is camera-like: each sensor starts at a random phase of its period and every stamp
carries a little Gaussian jitter (the bag time is the stamp). All images are registered to
the RGB camera's pixel grid, as the generator renders them. The ground truth is published on
its own topic with the stamps of the RGB frames it belongs to.

Each camera's calibration goes with each of its frames, as a driver's image_transport
``CameraPublisher`` publishes it: a ``sensor_msgs/CameraInfo`` on ``/<m>/camera_info`` (the
sibling of its base image topic, whatever the transport) right after the image, under the
image's header, describing the image's size (the polarization camera's: the full mosaic) with
the scene's pinhole intrinsics as K and P, R identity and ``plumb_bob`` with zero distortion.
All four cameras share the RGB camera's intrinsics, their images being registered to its grid.

Encodings are the drivers': ``rgb8``; depth ``16UC1`` millimetres (0 = no return) or
``32FC1`` metres (NaN); polarization the raw IMX250MZR mosaic in ``mono16`` (12-bit values)
or ``mono8`` (the top 8 bits); thermal ``mono16`` radiometric counts of
:class:`mmp_ros.sensors.thermal.PlanckCalibration`'s default calibration, which the node
decodes with ``sensors.thermal.semantics: planck`` (its default).

With ``transport='compressed'`` the cameras are recorded as image_transport publishes them
(``sensor_msgs/CompressedImage``, by :func:`mmp_ros.sensors.compressed.compress_image`):
RGB on ``/rgb/image/compressed`` as JPEG (or PNG), depth on ``/depth/image/compressedDepth``
(PNG, or RVL), polarization and thermal on ``/<m>/image/compressed`` as PNG, lossless (JPEG holds
neither 16-bit values nor a polarization mosaic's neighbours). The ground truth stays raw.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmp_ros.bags.errors import BagError
from mmp_ros.bags.messages import (
    CAMERA_INFO_TYPE,
    IMAGE_TYPE,
    serialize_camera_info,
    serialize_compressed,
    serialize_image,
)
from mmp_ros.bags.playback import SENSOR_DATA_QOS
from mmp_ros.bags.recording import STORAGES, BagRecorder
from mmp_ros.bags.source import COMPRESSED_TYPE
from mmp_ros.core.camera_info import camera_info_topic
from mmp_ros.demo import compressed_format
from mmp_ros.modalities import MODALITIES
from mmp_ros.sensors.compressed import compress_image
from mmp_ros.sensors.image import array_to_image
from training.data.geometry import cast
from training.data.render import SensorImages, render
from training.data.scene import MAX_SIDE, SPLIT_CAPACITY, SPLITS, make_split, sample_scene

GROUND_TRUTH_TOPIC = '/ground_truth/labels'
DEFAULT_RATES_HZ = {'rgb': 30.0, 'depth': 30.0, 'polarization': 20.0, 'thermal': 9.0}
FRAME_IDS = {m: f'{m}_camera_optical_frame' for m in MODALITIES}
DEPTH_ENCODINGS = ('16UC1', '32FC1')
POLARIZATION_ENCODINGS = ('mono16', 'mono8')
TRANSPORTS = ('raw', 'compressed')  # image_transport's, as the cameras are recorded
RGB_FORMATS = ('jpeg', 'png')  # of the compressed transport
DEPTH_FORMATS = ('png', 'rvl')  # of the compressedDepth transport
START_NS = 1_700_000_000 * 1_000_000_000  # stamps of the first scene (any fixed epoch)
# A bound that keeps a bag's frame list in memory: 10^6 frames is over two hours of the four
# default streams (and scene.MAX_SIDE one rendered frame).
MAX_FRAMES = 1_000_000


def image_topic(modality: str) -> str:
    """The bag topic of a sensor: the node's default input name, absolute."""
    return f'/{modality}/image'


def camera_topic(modality: str, transport: str = 'raw') -> str:
    """The bag topic of a sensor recorded through ``transport``: its image topic, or the
    topic image_transport publishes it on (``compressedDepth`` for depth)."""
    if transport == 'raw':
        return image_topic(modality)
    return f'{image_topic(modality)}/{"compressedDepth" if modality == "depth" else transport}'


def info_topic(modality: str) -> str:
    """The bag topic of a sensor's ``CameraInfo``: image_transport's sibling of its base image
    topic (``/<m>/camera_info``), whatever the transport; where the node subscribes to it."""
    return camera_info_topic(image_topic(modality))


@dataclass(frozen=True)
class SynthBagConfig:
    duration_s: float = 45.0
    scene_seconds: float = 5.0
    size: tuple[int, int] = (120, 160)  # height, width: cheap enough for the 2-core demo
    rates_hz: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES_HZ))
    depth_encoding: str = '16UC1'
    polarization_encoding: str = 'mono16'
    jitter_ms: float = 1.0  # standard deviation of each stamp around its nominal time
    split: str = 'test'
    first_scene: int = 0
    seed: int = 0  # phases and jitter
    storage: str = 'mcap'
    transport: str = 'raw'  # or 'compressed': CompressedImage, as image_transport publishes
    rgb_format: str | None = None  # the compressed transport's for RGB: jpeg (None) or png
    depth_format: str | None = None  # compressedDepth's: png (None) or rvl

    def __post_init__(self) -> None:
        height, width = self.size
        problems = []
        # Finite too: an infinite duration, scene or rate has no frame count.
        if not 0 < self.duration_s < math.inf:
            problems.append(f'duration {self.duration_s} s must be positive and finite')
        if not 0 < self.scene_seconds < math.inf:
            problems.append(f'scene_seconds {self.scene_seconds} must be positive and finite')
        if not (8 <= height <= MAX_SIDE and 8 <= width <= MAX_SIDE) or height % 2 or width % 2:
            problems.append(f'size {height}x{width}: both sides even (the polarization '
                            f'mosaic has 2x2 blocks), at least 8 and at most {MAX_SIDE}')
        if set(self.rates_hz) != set(MODALITIES) or not all(
                0 < r < math.inf for r in self.rates_hz.values()):
            problems.append(f'rates {self.rates_hz}: one positive, finite rate per sensor '
                            f'{MODALITIES}')
        elif 0 < self.duration_s < math.inf:
            frames = self.duration_s * sum(self.rates_hz.values())
            if frames > MAX_FRAMES:
                problems.append(f'{frames:.3g} frames ({self.duration_s:g} s at '
                                f'{sum(self.rates_hz.values()):g} frames/s in all): at most '
                                f'{MAX_FRAMES:,}; shorten the duration or lower the rates')
        if self.depth_encoding not in DEPTH_ENCODINGS:
            problems.append(f'depth encoding {self.depth_encoding!r}: one of {DEPTH_ENCODINGS}')
        if self.polarization_encoding not in POLARIZATION_ENCODINGS:
            problems.append(f'polarization encoding {self.polarization_encoding!r}: one of '
                            f'{POLARIZATION_ENCODINGS}')
        if not self.jitter_ms >= 0:
            problems.append(f'jitter {self.jitter_ms} ms must not be negative')
        if self.split not in SPLITS:
            problems.append(f'split {self.split!r}: one of {list(SPLITS)}')
        if self.seed < 0:
            problems.append(f'seed {self.seed} must not be negative')
        if 0 < self.duration_s < math.inf and 0 < self.scene_seconds < math.inf:
            last = self.first_scene + self.scene_count - 1
            if self.first_scene < 0 or last >= SPLIT_CAPACITY:
                problems.append(f'first scene {self.first_scene} and {self.scene_count} scenes '
                                f'(the last {last}): a split\'s scenes are numbered from 0 to '
                                f'{SPLIT_CAPACITY - 1}')
        if self.storage not in STORAGES:
            problems.append(f'storage {self.storage!r}: one of {sorted(STORAGES)}')
        if self.transport not in TRANSPORTS:
            problems.append(f'transport {self.transport!r}: one of {TRANSPORTS}')
        if self.rgb_format is not None and self.rgb_format not in RGB_FORMATS:
            problems.append(f'rgb format {self.rgb_format!r}: one of {RGB_FORMATS}')
        elif self.rgb_format is not None and self.transport == 'raw':
            problems.append(f'rgb format {self.rgb_format}: only with transport compressed '
                            '(raw images are not compressed)')
        if self.depth_format is not None and self.depth_format not in DEPTH_FORMATS:
            problems.append(f'depth format {self.depth_format!r}: one of {DEPTH_FORMATS}')
        elif self.depth_format is not None and self.transport == 'raw':
            problems.append(f'depth format {self.depth_format}: only with transport compressed '
                            '(raw images are not compressed)')
        if not problems:
            # A sensor's first frame is due within one period of the start: a bag shorter
            # than that (or than its jitter) would hold none, and without RGB no ground truth.
            silent = [m for m, times in sensor_times(self).items() if not len(times)]
            if silent:
                problems.append(
                    f'duration {self.duration_s:g} s gives ' + ', '.join(
                        f'{m} ({self.rates_hz[m]:g} Hz)' for m in silent)
                    + ' no frame: make it at least two periods of every sensor '
                    f'({2 / min(self.rates_hz.values()):.3g} s) or raise the rates')
        if problems:
            raise ValueError('; '.join(problems))

    @property
    def scene_count(self) -> int:
        return math.ceil(self.duration_s / self.scene_seconds)

    def compression(self, modality: str) -> str:
        """What ``compress_image`` makes of a sensor's images with transport compressed."""
        return compressed_format(modality, self.rgb_format, self.depth_format)


@dataclass(frozen=True)
class Frame:
    """One message due in the bag: a sensor's frame ``index`` (within its scene)."""

    stamp_ns: int
    modality: str
    scene: int
    index: int


def sensor_times(config: SynthBagConfig) -> dict[str, np.ndarray]:
    """Each sensor's frame times in seconds from the start of the bag, increasing.

    Sensor ``m`` takes frame ``k`` at ``phase_m + k / rate_m`` plus jitter, ``phase_m``
    uniform in one period; a jittered stamp never passes its successor's nominal time minus
    a tenth of a period, so stamps strictly increase per sensor.
    """
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5B]))
    times_of = {}
    for modality in MODALITIES:
        period = 1.0 / config.rates_hz[modality]
        phase = rng.uniform(0.0, period)
        count = int(math.floor((config.duration_s - phase) / period)) + 1
        nominal = phase + period * np.arange(count)
        jitter = rng.normal(0.0, config.jitter_ms / 1e3, count)
        jitter = np.clip(jitter, -0.4 * period, 0.4 * period)
        times = nominal + jitter
        times_of[modality] = times[(times >= 0) & (times < config.duration_s)]
    return times_of


def frame_times(config: SynthBagConfig) -> list[Frame]:
    """Every sensor's frames over the bag (:func:`sensor_times`), in stamp order."""
    frames: list[Frame] = []
    for modality, times in sensor_times(config).items():
        scene = np.minimum((times // config.scene_seconds).astype(int), config.scene_count - 1)
        for t, s in zip(times, scene, strict=True):
            frames.append(Frame(START_NS + round(t * 1e9), modality, int(s), 0))
    frames.sort(key=lambda f: (f.stamp_ns, MODALITIES.index(f.modality)))
    # Index of each frame within its sensor's run of one scene: the noise draw it uses.
    counters: dict[tuple[str, int], int] = {}
    indexed = []
    for f in frames:
        key = (f.modality, f.scene)
        indexed.append(dataclasses.replace(f, index=counters.get(key, 0)))
        counters[key] = counters.get(key, 0) + 1
    return indexed


class SceneFrames:
    """The noise draws of one held scene, rendered on demand and shared by the sensors.

    Draw ``k`` renders the scene with noise seed ``(scene seed << 20) | k`` (outside every
    split's seed range); sensor ``m``'s ``k``-th frame of the scene uses draw ``k``. Each
    sensor's noise comes from its own stream of that seed, so two sensors sharing a draw are
    as independent as two draws; one sensor never sees the same draw twice in a scene.
    """

    def __init__(self, seed: int, size: tuple[int, int], split: str) -> None:
        height, width = size
        self.scene = sample_scene(seed, width, height, split)
        self.geometry = cast(self.scene)
        self._draws: dict[int, SensorImages] = {}

    def draw(self, index: int) -> SensorImages:
        if index not in self._draws:
            noisy = dataclasses.replace(self.scene, seed=(self.scene.seed << 20) | index)
            self._draws[index] = render(noisy, self.geometry)
        return self._draws[index]


def sensor_pixels(images: SensorImages, modality: str, config: SynthBagConfig):
    """The ROS message fields one sensor's driver would publish for this render."""
    if modality == 'rgb':
        return array_to_image(images.rgb, 'rgb8')
    if modality == 'depth':
        if config.depth_encoding == '16UC1':
            return array_to_image(images.depth_mm, '16UC1')
        return array_to_image(images.depth_m, '32FC1')
    if modality == 'polarization':
        raw = images.polarization_mosaic
        if config.polarization_encoding == 'mono8':
            return array_to_image((raw >> 4).astype(np.uint8), 'mono8')
        return array_to_image(raw, 'mono16')
    return array_to_image(images.thermal, 'mono16')


def messages(config: SynthBagConfig) -> Iterator[tuple[str, int, bytes]]:
    """(topic, timestamp ns, CDR bytes) of the whole bag in time order."""
    current: SceneFrames | None = None
    current_index = -1
    for frame in frame_times(config):
        if frame.scene != current_index:
            seed = make_split(config.split, config.first_scene + frame.scene)
            current, current_index = SceneFrames(seed, config.size, config.split), frame.scene
        images = current.draw(frame.index)
        fields = sensor_pixels(images, frame.modality, config)
        frame_id = FRAME_IDS[frame.modality]
        if config.transport == 'raw':
            data = serialize_image(fields, frame.stamp_ns, frame_id)
        else:
            format, payload = compress_image(fields, config.compression(frame.modality))
            data = serialize_compressed(format, payload, frame.stamp_ns, frame_id)
        yield camera_topic(frame.modality, config.transport), frame.stamp_ns, data
        yield info_topic(frame.modality), frame.stamp_ns, serialize_camera_info(
            fields.height, fields.width, images.intrinsics, frame.stamp_ns, frame_id)
        if frame.modality == 'rgb':
            truth = array_to_image(images.label, 'mono8')
            yield (GROUND_TRUTH_TOPIC, frame.stamp_ns,
                   serialize_image(truth, frame.stamp_ns, FRAME_IDS['rgb']))


def write_synth_bag(path: str | Path, config: SynthBagConfig) -> dict[str, int]:
    """Write the bag; returns the number of messages per topic.

    A bag not written to its end (Ctrl-C, an error) is removed: closed, it would read as a
    complete recording of a shorter duration. ``path`` did not exist before (BagRecorder
    refuses one that does), so nothing else is removed."""
    camera = IMAGE_TYPE if config.transport == 'raw' else COMPRESSED_TYPE
    topics = {}
    for m in MODALITIES:
        topics[camera_topic(m, config.transport)] = camera
        topics[info_topic(m)] = CAMERA_INFO_TYPE
    topics[GROUND_TRUTH_TOPIC] = IMAGE_TYPE
    recorder = BagRecorder(path, storage=config.storage)
    try:
        with recorder:
            for topic, msgtype in topics.items():
                recorder.add_topic(topic, msgtype, SENSOR_DATA_QOS)
            for topic, stamp, data in messages(config):
                recorder.write(topic, stamp, data)
            return dict(recorder.counts)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SynthBagConfig()
    parser.add_argument('out', type=Path, help='bag directory to create (must not exist)')
    parser.add_argument('--duration', type=float, default=defaults.duration_s,
                        metavar='SECONDS', help='length of the bag')
    parser.add_argument('--scene-seconds', type=float, default=defaults.scene_seconds,
                        help='how long each scene is held before the next one')
    parser.add_argument('--size', type=int, nargs=2, default=defaults.size, metavar=('H', 'W'),
                        help='image size of every sensor (registered to the RGB grid)')
    for modality in MODALITIES:
        parser.add_argument(f'--{modality}-rate', type=float,
                            default=DEFAULT_RATES_HZ[modality], metavar='HZ',
                            help=f'{modality} frame rate')
    parser.add_argument('--depth-encoding', choices=DEPTH_ENCODINGS,
                        default=defaults.depth_encoding,
                        help='depth image encoding: 16UC1 millimetres with 0 as "no reading" '
                        '(default) or 32FC1 metres with NaN')
    parser.add_argument('--polarization-encoding', choices=POLARIZATION_ENCODINGS,
                        default=defaults.polarization_encoding,
                        help='polarization mosaic encoding: mono16 with its 12-bit values '
                        '(default) or mono8 with their top 8 bits')
    parser.add_argument('--jitter-ms', type=float, default=defaults.jitter_ms,
                        help='standard deviation of the stamp jitter')
    parser.add_argument('--split', choices=SPLITS, default=defaults.split,
                        help='generator split the scenes come from')
    parser.add_argument('--first-scene', type=int, default=0, help='index of the first scene')
    parser.add_argument('--seed', type=int, default=0, help='seed of phases and jitter')
    parser.add_argument('--storage', choices=sorted(STORAGES), default='mcap',
                        help='rosbag2 storage: mcap (default) or sqlite3 (a .db3 file)')
    parser.add_argument('--transport', choices=TRANSPORTS, default=defaults.transport,
                        help='compressed: the cameras as image_transport publishes them, '
                        'sensor_msgs/CompressedImage on /<m>/image/compressed (RGB JPEG, '
                        'polarization and thermal PNG) and /depth/image/compressedDepth')
    parser.add_argument('--rgb-format', choices=RGB_FORMATS,
                        help='with --transport compressed: RGB as jpeg (default) or png')
    parser.add_argument('--depth-format', choices=DEPTH_FORMATS,
                        help='with --transport compressed: compressedDepth as png (default) or '
                        'rvl')


def config_from_args(args: argparse.Namespace) -> SynthBagConfig:
    return SynthBagConfig(
        duration_s=args.duration, scene_seconds=args.scene_seconds, size=tuple(args.size),
        rates_hz={m: getattr(args, f'{m}_rate') for m in MODALITIES},
        depth_encoding=args.depth_encoding, polarization_encoding=args.polarization_encoding,
        jitter_ms=args.jitter_ms, split=args.split, first_scene=args.first_scene,
        seed=args.seed, storage=args.storage, transport=args.transport,
        rgb_format=args.rgb_format, depth_format=args.depth_format,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        counts = write_synth_bag(args.out, config)
    except (ValueError, BagError) as exc:
        print(f'mmp_ros synth-bag: {exc}', file=sys.stderr)
        return 2
    summary = ', '.join(f'{t}: {n}' for t, n in counts.items())
    print(f'{args.out}: {config.duration_s:g} s, {config.scene_count} scenes; {summary}')
    return 0
