"""Four synthetic camera streams with faults on command: the node's test and benchmark source.

Publishes ``rgb/image`` (rgb8), ``depth/image`` (32FC1 metres), ``polarization/image``
(mono8 IMX250MZR mosaic of the same size, which decodes to half of it) and
``thermal/image`` (mono16 radiometric Planck counts, the node's default thermal semantics)
at a fixed rate with sensor-data QoS, like camera drivers. A few distinct frames per stream
are encoded once (through the sensor layer's own encoders) and cycled, so publishing costs
little even at 640x480 and 30 Hz.

Each stream's behaviour is switched at run time by a line on stdin, ``<modality> <mode>``,
acknowledged by ``ack <modality> <mode>`` on stdout once it applies:

``ok``            the normal cycle of distinct frames
``stop``          publish nothing (a dead driver)
``freeze``        the same frame again and again, freshly stamped (a hung camera)
``nan``           depth: every pixel NaN (a blinded depth camera)
``zero``          every pixel zero (a covered lens, a driver sending blanks)
``wrong_encoding`` a message with an encoding the modality does not accept
``truncated``     a message whose data is shorter than ``step * height``

``all <mode>`` switches every stream. Stamps are the publisher's clock at publication; the
rate is kept on the steady clock, so a step of the system clock moves the stamps, not the
rate. With ``--ros-args -p use_sim_time:=true`` both are on ``/clock``: nothing is published
before its first message, nor while it stands still.

``--transport compressed`` publishes the streams as image_transport does instead, a
``sensor_msgs/CompressedImage`` on ``<m>/image/compressed`` (RGB ``--rgb-format``, jpeg by
default; polarization and thermal PNG) and depth on ``depth/image/compressedDepth``
(``--depth-format``, png by default), each frame compressed once as the others are encoded;
the modes that send a malformed message (``nan``, ``zero``, ``wrong_encoding``,
``truncated``) are then refused.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from mmp_ros.demo import (
    DEPTH_FORMATS,
    RGB_FORMATS,
    TRANSPORTS,
    compressed_format,
    sensor_transports,
)
from mmp_ros.modalities import MODALITIES
from mmp_ros.ros.image_msg import to_image_msg, transport_topic
from mmp_ros.ros.spin import spin_until_shutdown
from mmp_ros.sensors import ThermalSettings, array_to_image, compress_image, encode_frame

PLANCK = ThermalSettings('planck')  # what the node decodes by default

MODES = ('ok', 'stop', 'freeze', 'nan', 'zero', 'wrong_encoding', 'truncated')
ENCODINGS = {'rgb': 'rgb8', 'depth': '32FC1', 'polarization': 'mono8', 'thermal': 'mono16'}
WRONG_ENCODING = {'rgb': '32FC1', 'depth': 'rgb8', 'polarization': 'rgb8', 'thermal': 'rgb8'}
WRONG_PIXELS = {
    '32FC1': lambda h, w: np.ones((h, w), np.float32),
    'rgb8': lambda h, w: np.full((h, w, 3), 128, np.uint8),
}
VARIANTS = 6  # distinct frames cycled per stream
COMPRESSED_MODES = ('ok', 'stop', 'freeze')  # the others send malformed raw images


def scene_frames(height: int, width: int, count: int = VARIANTS, seed: int = 0):
    """``count`` frames per modality of one simple scene: (modality -> list of Image fields)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    frames: dict[str, list] = {m: [] for m in MODALITIES}
    for k in range(count):
        shift = k * width / (4 * count)
        floor = rows > height * 0.6
        box = (np.abs(cols - width / 2 - shift) < width / 6) & (
            np.abs(rows - height / 2) < height / 5
        )
        noise = rng.normal(0.0, 0.02, (height, width)).astype(np.float32)
        rgb = np.stack([0.3 + 0.4 * box, 0.4 + 0.3 * floor, 0.5 + 0.0 * rows], axis=2)
        rgb = np.clip(rgb + noise[..., None], 0.0, 1.0)
        depth = np.where(box, 1.5, np.where(floor, 2.0 + rows / height, 4.0)) + noise
        depth[:2] = np.nan  # a few invalid rows, as real depth has
        thermal = np.where(box, 36.0, 21.0) + 0.5 * noise
        # One intensity per 2x2 mosaic block: the mosaic has the camera's size, as a
        # polarization camera of that resolution publishes it.
        half = (slice(0, height, 2), slice(0, width, 2))
        intensities = np.stack([
            (80 + 60 * box + 10 * np.cos(np.deg2rad(2 * a)) * floor + 5 * noise)[half]
            for a in (0, 45, 90, 135)
        ])
        frames['rgb'].append(encode_frame('rgb', rgb, 'rgb8'))
        frames['depth'].append(encode_frame('depth', depth.astype(np.float32), '32FC1'))
        frames['thermal'].append(
            encode_frame('thermal', thermal.astype(np.float32), 'mono16', PLANCK))
        frames['polarization'].append(encode_frame('polarization', intensities, 'mono8'))
    return frames


class SyntheticStreams(Node):
    """Publishes the four streams; :meth:`set_mode` changes one stream's behaviour."""

    def __init__(self, height: int, width: int, rate_hz: float, transport: str = 'raw',
                 rgb_format: str = 'jpeg', depth_format: str = 'png') -> None:
        super().__init__('mmp_synthetic_streams')
        self._frames = scene_frames(height, width)
        self._modes = dict.fromkeys(MODALITIES, 'ok')
        self._index = dict.fromkeys(MODALITIES, 0)
        self._lock = threading.Lock()
        self.transport = transport
        self._image_publishers = {}
        transports = sensor_transports(transport)  # image_transport's: depth compressedDepth
        for m in MODALITIES:
            topic, msgtype = transport_topic(self, f'{m}/image', transports[m])
            self._image_publishers[m] = self.create_publisher(msgtype, topic,
                                                              qos_profile_sensor_data)
        if transport == 'raw':
            self._messages = {
                m: [to_image_msg(f, stamp=self.get_clock().now().to_msg(),
                                 frame_id=f'{m}_optical') for f in fields]
                for m, fields in self._frames.items()
            }
        else:
            self._messages = {
                m: [_compressed_msg(f, compressed_format(m, rgb_format, depth_format),
                                    f'{m}_optical') for f in fields]
                for m, fields in self._frames.items()
            }
        self._special = {  # the malformed raw images; COMPRESSED_MODES send none
            m: self._special_messages(m, height, width) for m in MODALITIES
        } if transport == 'raw' else {}
        self.published = dict.fromkeys(MODALITIES, 0)
        # Paced as a camera's own oscillator paces it: on the steady clock. On the node's
        # clock, the system clock on wall time, a step of it back (NTP) stopped every stream
        # for as long. On use_sim_time the simulated clock paces them, as a simulator's cameras.
        pace = None if self.get_clock().ros_time_is_active else Clock(
            clock_type=ClockType.STEADY_TIME)
        self._timer = self.create_timer(1.0 / rate_hz, self._tick, clock=pace)

    def _special_messages(self, modality: str, height: int, width: int) -> dict[str, Image]:
        good = self._messages[modality][0]
        zero = Image(height=good.height, width=good.width, encoding=good.encoding,
                     is_bigendian=good.is_bigendian, step=good.step)
        zero.data = bytes(good.step * good.height)
        truncated = Image(height=good.height, width=good.width, encoding=good.encoding,
                          is_bigendian=good.is_bigendian, step=good.step)
        truncated.data = bytes(good.data[: len(good.data) // 2])
        # A well-formed image, in an encoding this modality does not take.
        wrong_fields = array_to_image(
            WRONG_PIXELS[WRONG_ENCODING[modality]](good.height, good.width),
            WRONG_ENCODING[modality],
        )
        wrong = to_image_msg(wrong_fields, stamp=good.header.stamp, frame_id='')
        special = {'zero': zero, 'truncated': truncated, 'wrong_encoding': wrong}
        if modality == 'depth':
            nan = Image(height=good.height, width=good.width, encoding='32FC1',
                        is_bigendian=False, step=good.step)
            nan.data = np.full((height, width), np.nan, np.float32).tobytes()
            special['nan'] = nan
        for msg in special.values():
            msg.header.frame_id = f'{modality}_optical'
        return special

    def set_mode(self, modality: str, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f'unknown mode {mode!r}; known: {MODES}')
        if mode == 'nan' and modality != 'depth':
            raise ValueError('mode nan is for depth only')
        if self.transport != 'raw' and mode not in COMPRESSED_MODES:
            raise ValueError(f'mode {mode} is for the raw transport only; with '
                             f'{self.transport}: {", ".join(COMPRESSED_MODES)}')
        with self._lock:
            for m in MODALITIES if modality == 'all' else [modality]:
                self._modes[m] = mode

    def _tick(self) -> None:
        stamp = self.get_clock().now().to_msg()
        with self._lock:
            modes = dict(self._modes)
        for modality, mode in modes.items():
            if mode == 'stop':
                continue
            if mode == 'ok':
                self._index[modality] = (self._index[modality] + 1) % VARIANTS
                msg = self._messages[modality][self._index[modality]]
            elif mode == 'freeze':
                msg = self._messages[modality][self._index[modality]]
            else:
                msg = self._special[modality][mode]
            msg.header.stamp = stamp
            self._image_publishers[modality].publish(msg)
            self.published[modality] += 1


def _compressed_msg(fields, format: str, frame_id: str) -> CompressedImage:
    """The ``CompressedImage`` an image_transport publisher sends for ``fields``."""
    msg = CompressedImage()
    msg.format, data = compress_image(fields, format)
    msg.data = data
    msg.header.frame_id = frame_id
    return msg


def _read_commands(node: SyntheticStreams) -> None:
    for line in sys.stdin:
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            node.set_mode(*parts)
        except ValueError as exc:
            print(f'error {exc}', flush=True)
        else:
            print(f'ack {parts[0]} {parts[1]}', flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--rate', type=float, default=30.0, help='frames per second per stream')
    parser.add_argument('--transport', choices=TRANSPORTS, default='raw',
                        help='compressed: as image_transport publishes them (module docstring)')
    parser.add_argument('--rgb-format', choices=RGB_FORMATS, default='jpeg',
                        help='with --transport compressed')
    parser.add_argument('--depth-format', choices=DEPTH_FORMATS, default='png',
                        help='with --transport compressed: compressedDepth png or rvl')
    args, ros_args = parser.parse_known_args(argv)
    from mmp_ros.ros.context import init_ros

    with init_ros(['synthetic_streams', *ros_args]):
        node = SyntheticStreams(args.height, args.width, args.rate, args.transport,
                                args.rgb_format, args.depth_format)
        threading.Thread(target=_read_commands, args=(node,), daemon=True).start()
        print('ready', flush=True)
        try:
            spin_until_shutdown(node)
        finally:
            node.destroy_node()
    return 0


if __name__ == '__main__':
    sys.exit(main())
