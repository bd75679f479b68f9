"""CompressedImage (image_transport's compressed / compressedDepth) <-> raw Image fields:
round trips, agreement with rosbags-image's decoder, and every malformed message refused."""

from __future__ import annotations

import re
import struct
import time

import cv2
import numpy as np
import pytest
from conftest import needs
from rosbags.typesys import Stores, get_typestore

from mmp_ros.core.parameters import DEFAULT_MAX_PIXELS
from mmp_ros.sensors import ENCODINGS, SensorInputError, decode_frame
from mmp_ros.sensors.compressed import (
    DEPTH_FORMATS,
    DEPTH_HEADER,
    MAX_JPEG_SCANS,
    MAX_PIXELS,
    _rvl_decode,
    _rvl_encode,
    compress_image,
    decompress_image,
    recompression,
)
from mmp_ros.sensors.image import array_to_image, check_pixel_count, image_to_array

TYPESTORE = get_typestore(Stores.LATEST)
RosCompressed = TYPESTORE.types['sensor_msgs/msg/CompressedImage']
Header = TYPESTORE.types['std_msgs/msg/Header']
Time = TYPESTORE.types['builtin_interfaces/msg/Time']


def pixels(encoding: str, shape=(19, 23), seed=0) -> np.ndarray:
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, (*shape, channels), dtype=dtype, endpoint=True)


def smooth_rgb(shape=(48, 64)) -> np.ndarray:
    """A smooth colour picture: what JPEG is for (noise would not be close after it)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    planes = [rows * 4, cols * 3, (rows + cols) * 2]
    return np.clip(np.stack(planes, axis=2), 0, 255).astype(np.uint8)


def ros_message(format_: str, data: bytes):
    header = Header(stamp=Time(sec=0, nanosec=0), frame_id='camera')
    return RosCompressed(header=header, format=format_, data=np.frombuffer(data, np.uint8))


# --- compressed: PNG lossless, JPEG close ------------------------------------------------


@pytest.mark.parametrize(
    ('encoding', 'inner'),
    [
        ('bgr8', 'bgr8'), ('rgb8', 'bgr8'), ('mono8', ''), ('mono16', ''), ('16UC1', ''),
        ('bgr16', 'bgr16'), ('rgb16', 'bgr16'), ('8UC1', ''), ('8UC3', ''),
    ],
)  # fmt: skip
def test_png_round_trip_is_exact(encoding, inner):
    raw = pixels(encoding)
    format_, data = compress_image(array_to_image(raw, encoding), 'png')
    assert format_ == f'{encoding}; png compressed {inner}'  # image_transport's format
    fields = decompress_image(format_, data)
    assert (fields.encoding, fields.height, fields.width) == (encoding, 19, 23)
    assert fields.step == 23 * raw.shape[2] * raw.itemsize and not fields.is_bigendian
    np.testing.assert_array_equal(image_to_array(fields), raw)


@pytest.mark.parametrize('encoding', ['rgba8', 'bgra8', 'rgba16'])
def test_png_colour_with_alpha_comes_back_opaque(encoding):
    """The compressed publisher stores colour as BGR: alpha is lost, the subscriber adds it."""
    raw = pixels(encoding)
    fields = decompress_image(*compress_image(array_to_image(raw, encoding), 'png'))
    back = image_to_array(fields)
    assert fields.encoding == encoding
    np.testing.assert_array_equal(back[..., :3], raw[..., :3])
    assert (back[..., 3] == np.iinfo(raw.dtype).max).all()


@pytest.mark.parametrize('encoding', ['bgr8', 'rgb8'])
def test_jpeg_round_trip_is_close_in_the_named_channel_order(encoding):
    rgb = smooth_rgb()
    raw = rgb[..., ::-1] if encoding == 'bgr8' else rgb
    format_, data = compress_image(array_to_image(raw, encoding), 'jpeg')
    assert format_ == f'{encoding}; jpeg compressed bgr8'
    back = image_to_array(decompress_image(format_, data))
    assert back.shape == raw.shape
    assert np.abs(back.astype(int) - raw).mean() < 2.0  # quality 95 on a smooth picture


def test_jpeg_mono_round_trip_is_close():
    raw = smooth_rgb()[..., :1].copy()
    format_, data = compress_image(array_to_image(raw, 'mono8'), 'jpeg')
    assert format_ == 'mono8; jpeg compressed '
    fields = decompress_image(format_, data)
    assert fields.encoding == 'mono8'
    assert np.abs(image_to_array(fields).astype(int) - raw).mean() < 2.0


@pytest.mark.parametrize('padding', [1, 63, 4096])
def test_jpeg_padded_with_zero_bytes_decodes_and_a_truncated_one_does_not(padding):
    """A camera that sends its whole buffer pads the JPEG with zeros after its end-of-image
    marker; libjpeg (and image_transport) decode it. More than 62 bytes were refused as a
    truncated JPEG."""
    format_, data = compress_image(array_to_image(smooth_rgb(), 'bgr8'), 'jpeg')
    expected = image_to_array(decompress_image(format_, data))
    padded = image_to_array(decompress_image(format_, data + bytes(padding)))
    np.testing.assert_array_equal(padded, expected)
    with pytest.raises(SensorInputError, match='truncated JPEG'):
        decompress_image(format_, data[:-300] + bytes(padding))


@pytest.mark.parametrize('trailer', [b'abc', b'\x00\x00trailer', b'\xff\xd8\xff\xe1' * 50])
def test_jpeg_with_bytes_after_its_end_decodes_as_image_transport_does(trailer):
    """libjpeg stops at the end-of-image marker, so cv::imdecode (image_transport's
    compressed subscriber) decodes a JPEG with a trailer after it; it was refused as a
    'truncated JPEG ... does not end with the end-of-image marker', which it has."""
    format_, data = compress_image(array_to_image(smooth_rgb(), 'bgr8'), 'jpeg')
    expected = image_to_array(decompress_image(format_, data))
    np.testing.assert_array_equal(image_to_array(decompress_image(format_, data + trailer)),
                                  expected)
    with pytest.raises(SensorInputError, match='truncated JPEG: .* has no end-of-image marker '
                       'after its scan'):
        decompress_image(format_, data[:-300] + trailer)


def test_jpeg_cut_short_after_a_thumbnail_s_end_is_truncated():
    """An EXIF thumbnail (an APP1 segment) has its own scan and end-of-image marker: they
    are not the frame's."""
    format_, data = compress_image(array_to_image(smooth_rgb(), 'bgr8'), 'jpeg')
    _, thumbnail = compress_image(array_to_image(smooth_rgb()[:8, :8].copy(), 'bgr8'), 'jpeg')
    app1 = b'Exif\x00\x00' + bytes(thumbnail)
    exif = data[:2] + b'\xff\xe1' + (len(app1) + 2).to_bytes(2, 'big') + app1 + data[2:]
    decompress_image(format_, exif)
    with pytest.raises(SensorInputError, match='truncated JPEG'):
        decompress_image(format_, exif[:-300] + b'abc')


def test_jpeg_of_a_real_photo_decodes_to_rgb(real_data):
    """TUM RGB-D's colour frame through JPEG: close to the original, RGB in the right order."""
    bgr = cv2.imread(str(real_data / 'tum_rgbd' / 'TUM_color.png'), cv2.IMREAD_COLOR)
    format_, data = compress_image(array_to_image(bgr[..., ::-1].copy(), 'rgb8'), 'jpeg')
    frame = decode_frame('rgb', decompress_image(format_, data))
    reference = bgr[..., ::-1].astype(np.float32) / 255.0
    assert np.abs(frame.data - reference).mean() < 0.02


@pytest.mark.parametrize('format_', ['jpeg', 'png'])
def test_agrees_with_rosbags_image(format_):
    """rosbags-image decodes the same message to the same bgr8 pixels."""
    compressed_image_to_cvimage = needs('rosbags.image').compressed_image_to_cvimage
    raw = smooth_rgb()[..., ::-1].copy()
    format_string, data = compress_image(array_to_image(raw, 'bgr8'), format_)
    reference = compressed_image_to_cvimage(ros_message(format_string, data))
    np.testing.assert_array_equal(image_to_array(decompress_image(format_string, data)),
                                  reference)
    mono = smooth_rgb()[..., 1].copy()
    format_string, data = compress_image(array_to_image(mono, 'mono8'), format_)
    reference = compressed_image_to_cvimage(ros_message(format_string, data))
    np.testing.assert_array_equal(image_to_array(decompress_image(format_string, data))[..., 0],
                                  reference)


@pytest.mark.parametrize(('format_', 'channels', 'dtype', 'encoding'), [
    ('jpeg', 3, np.uint8, 'bgr8'), ('png', 1, np.uint8, 'mono8'), ('png', 1, np.uint16, 'mono16'),
    ('', 3, np.uint16, 'bgr16'), ('png', 4, np.uint8, 'bgra8'),
])  # fmt: skip
def test_old_format_without_encoding_takes_the_pixels_encoding(format_, channels, dtype,
                                                                 encoding):
    """Old publishers sent just "jpeg" or "png": the encoding is what the pixels are."""
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 200, (8, 9, channels)).astype(dtype)
    ok, data = cv2.imencode('.jpg' if format_ == 'jpeg' else '.png', raw)
    fields = decompress_image(format_, data.tobytes())
    assert fields.encoding == encoding
    if format_ != 'jpeg':
        np.testing.assert_array_equal(image_to_array(fields), raw)


def test_rgb_stored_as_rgb_is_not_swapped():
    """A publisher that says "compressed rgb8" stored RGB: decoding keeps it RGB."""
    raw = pixels('rgb8')
    ok, data = cv2.imencode('.png', raw)  # OpenCV writes the array's channels as they are
    fields = decompress_image('rgb8; png compressed rgb8', data.tobytes())
    np.testing.assert_array_equal(image_to_array(fields), raw)
    fields = decompress_image('bgr8; png compressed rgb8', data.tobytes())
    np.testing.assert_array_equal(image_to_array(fields), raw[..., ::-1])


def test_decompress_takes_rclpy_and_memoryview_buffers():
    import array

    format_, data = compress_image(array_to_image(pixels('mono8'), 'mono8'), 'png')
    for buffer in (array.array('B', data), memoryview(data).toreadonly(), bytearray(data)):
        assert decompress_image(format_, buffer).encoding == 'mono8'


@pytest.mark.parametrize('encoding', [
    'mono8', 'mono16', '16UC1', '32FC1', 'bgr8', 'rgb8', 'rgba8', 'bgra16', 'rgb16', '8UC3',
    '8SC4', '16SC1', '32SC1', '32FC3',
])  # fmt: skip
def test_tiff_round_trip_is_exact(encoding):
    """Newer compressed publishers' TIFF stores the image as it is: alpha, 16-bit, signed
    and float depth (NaN and infinities included) come back bit for bit."""
    dtype, channels = ENCODINGS[encoding]
    if dtype.kind == 'f':
        raw = np.random.default_rng(2).uniform(-5, 50, (19, 23, channels)).astype(dtype)
        raw[0, :3, 0] = [np.nan, np.inf, -np.inf]
    else:
        raw = pixels(encoding)
    format_, data = compress_image(array_to_image(raw, encoding), 'tiff')
    assert format_ == f'{encoding}; tiff compressed '  # the publisher's format
    assert data[:4] == b'II*\x00'
    fields = decompress_image(format_, data)
    assert (fields.encoding, fields.height, fields.width) == (encoding, 19, 23)
    np.testing.assert_array_equal(image_to_array(fields), raw)


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'bgra8'])
def test_tiff_colour_keeps_the_order_the_publisher_stored(encoding):
    """The publisher hands the message's pixels to OpenCV as they are, channel order and
    all, and writes an empty inner encoding: decoding gives them back unswapped."""
    raw = pixels(encoding)
    data = cv2.imencode('.tiff', raw)[1].tobytes()
    back = image_to_array(decompress_image(f'{encoding}; tiff compressed ', data))
    np.testing.assert_array_equal(back, raw)


def test_tiff_32fc1_depth_decodes_with_its_holes():
    metres = depth_mm().astype(np.float32) / 1000
    metres[metres == 0] = np.nan
    frame = decode_frame('depth', decompress_image(*compress_image(
        array_to_image(metres, '32FC1'), 'tiff')))
    np.testing.assert_array_equal(frame.valid, np.isfinite(metres))
    np.testing.assert_array_equal(frame.data.reshape(metres.shape)[frame.valid],
                                  metres[np.isfinite(metres)])


# --- compressedDepth ---------------------------------------------------------------------


def depth_mm(shape=(48, 64), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 9000, shape).astype(np.uint16)
    values[values < 1500] = 0  # holes: no reading
    values[0, :7] = 0  # a run at the start
    values[-1, -5:] = 0  # and at the end
    return values


@pytest.mark.parametrize('method', ['png', 'rvl'])
def test_compressed_depth_16uc1_round_trip_is_exact(method):
    raw = depth_mm()
    format_, data = compress_image(array_to_image(raw, '16UC1'), f'compressedDepth {method}')
    assert format_ == f'16UC1; compressedDepth {method}'
    fields = decompress_image(format_, data)
    assert (fields.encoding, fields.height, fields.width) == ('16UC1', 48, 64)
    np.testing.assert_array_equal(image_to_array(fields)[..., 0], raw)


@pytest.mark.parametrize('raw', [
    [[0]], [[1]], [[65535]], [[0, 0, 0, 0]], [[7, 7, 7, 7, 7, 7, 7, 7, 7]],
    [[65535, 1, 65535, 0, 1, 0, 0, 65535]], [[1, 2], [3, 0]], [[0] * 40 + [9] * 40],
])  # fmt: skip
def test_rvl_edge_images_round_trip(raw):
    """Starting or ending with either run kind, one pixel, full-scale jumps both ways."""
    raw = np.array(raw, dtype=np.uint16)
    format_, data = compress_image(array_to_image(raw, '16UC1'), 'compressedDepth rvl',
                                   depth_max_m=65.535)
    np.testing.assert_array_equal(image_to_array(decompress_image(format_, data))[..., 0], raw)


def test_compressed_depth_of_a_real_kinect_frame_is_exact(real_data):
    raw = cv2.imread(str(real_data / 'tum_rgbd' / 'depth_mm.png'), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16
    for method in ('png', 'rvl'):
        format_, data = compress_image(array_to_image(raw, '16UC1'),
                                       f'compressedDepth {method}', depth_max_m=65.0)
        np.testing.assert_array_equal(image_to_array(decompress_image(format_, data))[..., 0],
                                      raw)


@pytest.mark.parametrize('no_reading_rows', [480, 400])  # a covered lens; sky above a floor
def test_rvl_of_a_frame_mostly_without_readings_decodes(no_reading_rows):
    """Zero runs of any length are one RVL value each: 640x480 without readings is a 4-byte
    stream. A bound of 10 pixels a byte refused such frames as a 'corrupt size'."""
    raw = np.full((480, 640), 1500, np.uint16)
    raw[:no_reading_rows] = 0
    format_, data = compress_image(array_to_image(raw, '16UC1'), 'compressedDepth rvl')
    np.testing.assert_array_equal(image_to_array(decompress_image(format_, data))[..., 0], raw)


def test_rvl_of_a_real_frame_beyond_the_publishers_depth_max_decodes(real_data):
    """TUM's own depth PNG (5000 counts a metre) through the publisher's default depth_max
    of 10 m: most readings are stored as 0, and the 19.6 kB message was refused."""
    raw = cv2.imread(str(real_data / 'tum_rgbd' / 'TUM_depth.png'), cv2.IMREAD_UNCHANGED)
    format_, data = compress_image(array_to_image(raw, '16UC1'), 'compressedDepth rvl')
    expected = np.where(raw > 10000, 0, raw)
    np.testing.assert_array_equal(image_to_array(decompress_image(format_, data))[..., 0],
                                  expected)


def test_compressed_depth_16uc1_drops_readings_beyond_depth_max_as_the_publisher_does():
    raw = np.array([[500, 9999, 10000, 10001, 40000]], dtype=np.uint16)
    format_, data = compress_image(array_to_image(raw, '16UC1'), 'compressedDepth')
    assert format_ == '16UC1; compressedDepth png'
    back = image_to_array(decompress_image(format_, data))[..., 0]
    np.testing.assert_array_equal(back, [[500, 9999, 10000, 0, 0]])


@pytest.mark.parametrize('method', ['png', 'rvl'])
def test_compressed_depth_32fc1_is_within_its_quantization(method):
    rng = np.random.default_rng(1)
    metres = rng.uniform(0.2, 12.0, (40, 50)).astype(np.float32)
    metres[0, :4] = [np.nan, np.inf, -np.inf, 0.0]
    format_, data = compress_image(array_to_image(metres, '32FC1'), f'compressedDepth {method}')
    assert format_ == f'32FC1; compressedDepth {method}'
    kind, quant_a, quant_b = DEPTH_HEADER.unpack_from(data)
    assert kind == 0 and quant_a == 100 * 101 and quant_b == pytest.approx(1 - 10100 / 10)
    back = image_to_array(decompress_image(format_, data))[..., 0]
    stored = np.isfinite(metres) & (metres > 0) & (metres < 10.0)  # depth_max 10 m
    assert np.isnan(back[~stored]).all()
    # one step of the 16-bit inverse depth is d**2 / A metres at depth d
    step = metres[stored].astype(np.float64) ** 2 / quant_a
    assert (np.abs(back[stored] - metres[stored]) <= step * 1.001 + 1e-6).all()
    frame = decode_frame('depth', decompress_image(format_, data))
    np.testing.assert_array_equal(frame.valid, stored)


def test_compressed_depth_decodes_the_reference_publishers_bytes():
    """A message built by hand the way compressed_depth_image_transport builds it."""
    quant_a, quant_b = 10100.0, 1.0 - 10100.0 / 10.0
    inverse = np.array([[0, 2020, 11109]], dtype=np.uint16)  # no reading, 3.3 m, 0.83 m
    ok, png = cv2.imencode('.png', inverse)
    data = struct.pack('<iff', 0, quant_a, quant_b) + png.tobytes()
    back = image_to_array(decompress_image('32FC1; compressedDepth', data))[..., 0]
    expected = np.float32(quant_a) / (inverse[0, 1:].astype(np.float32) - np.float32(quant_b))
    assert np.isnan(back[0, 0])
    np.testing.assert_array_equal(back[0, 1:], expected)


# --- RVL: the vectorized codec against the scalar one it replaced ----------------------
# The package's RVL codec as it was before it was vectorized (a walk over the runs in
# Python), kept here unchanged as an independent reference: the new one must give the same
# pixels and the same bytes, and refuse the same streams.

RVL_SIZE = struct.Struct('<II')


def reference_rvl_decode(body: np.ndarray, format: str) -> np.ndarray:
    """(H, W) uint16 from ``uint32 width, uint32 height`` + an RVL stream."""
    if body.size < RVL_SIZE.size + 4:
        raise SensorInputError(f'RVL data of {body.size} B is too short (format {format!r})')
    width, height = RVL_SIZE.unpack_from(body)
    pixels = width * height
    if pixels == 0:
        raise SensorInputError(f'RVL image of {width}x{height} pixels is empty')
    stream = body[RVL_SIZE.size:]
    # the package's size limit, which is no part of the codec
    check_pixel_count(width, height, MAX_PIXELS, f'RVL header (format {format!r}) claims')
    words = np.frombuffer(stream[: stream.size // 4 * 4].tobytes(), dtype='<u4')
    # nibbles in stream order: each 32-bit word holds 8, the first in its top bits
    shifts = np.arange(28, -4, -4, dtype=np.uint32)
    nibbles = ((words[:, np.newaxis] >> shifts) & 0xF).astype(np.uint8).ravel()
    ends = np.flatnonzero((nibbles & 0x8) == 0)  # a value's last nibble has no continuation
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.size and lengths.max() > 11:  # 33 bits: no count or delta of 16-bit data
        raise SensorInputError(f'corrupt RVL stream: a value over 32 bits (format {format!r})')
    if ends.size == 0:
        raise SensorInputError(f'corrupt RVL stream: no complete value (format {format!r})')
    position = np.arange(ends[-1] + 1) - np.repeat(starts, lengths)
    payload = (nibbles[: ends[-1] + 1] & 0x7).astype(np.int64) << (3 * position)
    values = np.add.reduceat(payload, starts)
    out = np.zeros(pixels, dtype=np.uint16)
    deltas: list[np.ndarray] = []
    places: list[np.ndarray] = []
    at = index = 0
    while at < pixels:
        if index + 2 > values.size:
            raise SensorInputError(
                f'truncated RVL stream: {at} of {width}x{height} pixels decoded '
                f'(format {format!r})'
            )
        zeros, nonzeros = int(values[index]), int(values[index + 1])
        at += zeros
        if at + nonzeros > pixels or index + 2 + nonzeros > values.size:
            raise SensorInputError(
                f'corrupt RVL stream: runs overrun the {width}x{height} image or the data '
                f'(format {format!r})'
            )
        deltas.append(values[index + 2 : index + 2 + nonzeros])
        places.append(np.arange(at, at + nonzeros))
        at += nonzeros
        index += 2 + nonzeros
    if values[index:].any() or values.size - index > 8:  # only the last word's padding
        raise SensorInputError(
            f'corrupt RVL stream: it holds more than the {width}x{height} pixels its size '
            f'says (format {format!r})'
        )
    if deltas:
        zigzag = np.concatenate(deltas)
        delta = (zigzag >> 1) ^ -(zigzag & 1)
        out[np.concatenate(places)] = (np.cumsum(delta) & 0xFFFF).astype(np.uint16)
    return out.reshape(height, width)


def reference_rvl_encode(stored: np.ndarray) -> bytes:
    """``uint32 width, uint32 height`` + the RVL stream of (H, W) uint16 ``stored``."""
    flat = stored.ravel()
    nonzero = flat != 0
    # runs of zeros and of nonzeros, alternating, starting with zeros (possibly none)
    change = np.flatnonzero(nonzero[1:] != nonzero[:-1]) + 1
    runs = np.diff(np.concatenate(([0], change, [flat.size])))
    if nonzero[0]:
        runs = np.concatenate(([0], runs))
    if runs.size % 2:
        runs = np.concatenate((runs, [0]))  # the stream ends with zeros: no nonzeros follow
    zeros, nonzeros = runs[0::2], runs[1::2]
    # each pair is written as: zeros, nonzeros, then one zigzag delta per nonzero value
    # (against the previous nonzero value, across zero runs; the first against 0)
    delta = np.diff(flat[nonzero].astype(np.int64), prepend=0)
    slots = 2 + nonzeros
    offsets = np.cumsum(slots) - slots
    values = np.zeros(int(slots.sum()), dtype=np.int64)
    header = np.zeros(values.size, dtype=bool)
    header[offsets] = header[offsets + 1] = True
    values[offsets], values[offsets + 1] = zeros, nonzeros
    values[~header] = (delta << 1) ^ (delta >> 63)
    # VLE: 3 payload bits a nibble, lowest first, bit 3 set on all but a value's last one
    counts = 1 + sum((values >> (3 * k) > 0).astype(np.int64) for k in range(1, 12))
    owner = np.repeat(np.arange(values.size), counts)
    position = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    nibbles = ((values[owner] >> (3 * position)) & 0x7) | np.where(
        position < counts[owner] - 1, 0x8, 0)
    padded = np.zeros(-(-nibbles.size // 8) * 8, dtype=np.uint32)  # last word: 0 nibbles
    padded[: nibbles.size] = nibbles
    words = np.zeros(padded.size // 8, dtype='<u4')
    for k in range(8):  # the first nibble of a word in its top bits
        words |= padded[k::8] << np.uint32(28 - 4 * k)
    height, width = stored.shape
    return RVL_SIZE.pack(width, height) + words.tobytes()


def rvl_cases(real_data) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    holes = rng.integers(1, 65536, (480, 640)).astype(np.uint16)
    holes[rng.random(holes.shape) < 0.2] = 0
    odd = rng.integers(0, 4, (37, 53)).astype(np.uint16) * rng.integers(0, 65536, (37, 53))
    cases = {
        'random with 20 % holes': holes,
        'all zeros': np.zeros((480, 640), np.uint16),
        'no zeros': rng.integers(1, 65536, (48, 64)).astype(np.uint16),
        'max uint16': np.full((30, 40), 65535, np.uint16),
        'max uint16 and zeros': np.tile(np.array([65535, 0, 0, 65535, 1], np.uint16), (5, 3)),
        '1x1 zero': np.zeros((1, 1), np.uint16),
        '1x1 max': np.full((1, 1), 65535, np.uint16),
        'odd size, long runs of both kinds': odd.astype(np.uint16),
        '1 row': rng.integers(0, 3000, (1, 999)).astype(np.uint16),
        '1 column': rng.integers(0, 3000, (999, 1)).astype(np.uint16),
    }
    for sample in ('tum_rgbd', 'nyu_raw', 'sunrgbd'):
        cases[f'real {sample}'] = cv2.imread(str(real_data / sample / 'depth_mm.png'),
                                             cv2.IMREAD_UNCHANGED)
    return cases


def test_rvl_codec_matches_the_reference_bit_for_bit(real_data):
    """Same bytes out of the encoder, same pixels out of the decoder, as the scalar codec:
    real Kinect frames, holes, no holes, full-scale values, one pixel, odd sizes."""
    for name, raw in rvl_cases(real_data).items():
        assert raw.dtype == np.uint16, name
        body = _rvl_encode(raw)
        assert body == reference_rvl_encode(raw), name
        stream = np.frombuffer(body, np.uint8)
        back = _rvl_decode(stream, 'test')
        np.testing.assert_array_equal(back, reference_rvl_decode(stream, 'test'), err_msg=name)
        np.testing.assert_array_equal(back, raw, err_msg=name)
        assert back.dtype == np.uint16 and back.shape == raw.shape


@pytest.mark.parametrize('patch', [(0, 0), (1, 1), (40, 60)])
def test_rvl_depth_frame_with_few_readings_decodes(patch):
    """A depth camera that sees little (sky, a covered lens, all out of range) sends long
    zero runs, which RVL stores in a few bytes: 640x480 in 4 B when all are zero. Such
    frames were refused as "impossible from N B of data: corrupt size"."""
    raw = np.zeros((480, 640), np.uint16)
    raw[200 : 200 + patch[0], 300 : 300 + patch[1]] = 1500
    format_, data = compress_image(array_to_image(raw, '16UC1'), 'compressedDepth rvl')
    assert len(data) - 20 < raw.size / 10  # what the old check took for a corrupt size
    np.testing.assert_array_equal(image_to_array(decompress_image(format_, data))[..., 0], raw)
    frame = decode_frame('depth', decompress_image(format_, data))
    assert frame.valid.sum() == patch[0] * patch[1]


def test_rvl_size_over_the_pixel_limit_is_refused_before_allocating():
    """Not refused by the data's size any more: the same 67 Mpx limit as PNG and JPEG, and
    a size the stream does not fill is found before anything of that size is allocated."""
    zeros = struct.pack('<I', 0)  # one word: zero zeros, zero nonzeros, ...
    for width, height in [(8193, 8192), (2**32 - 1, 2**32 - 1)]:
        with pytest.raises(SensorInputError, match='over max_pixels 67,108,864: a corrupt'):
            decompress_image('16UC1; compressedDepth rvl',
                             bytes(12) + struct.pack('<II', width, height) + zeros)
    with pytest.raises(SensorInputError, match='truncated RVL stream: 0 of 8192x8192'):
        decompress_image('16UC1; compressedDepth rvl',
                         bytes(12) + struct.pack('<II', 8192, 8192) + zeros)


def test_a_frame_over_max_pixels_is_refused_before_decoding_and_4k_decodes_by_default():
    """max_pixels (the node's sensors.<m>.max_pixels) bounds what a header may declare, for
    every compressed format; the default takes a 4K UHD camera (decoded, then resized to the
    model's input by the node)."""
    uhd = np.zeros((2160, 3840, 3), np.uint8)
    fields = decompress_image(*compress_image(array_to_image(uhd, 'bgr8'), 'jpeg'),
                              max_pixels=DEFAULT_MAX_PIXELS)
    assert (fields.height, fields.width) == (2160, 3840)
    depth = array_to_image(depth_mm(), '16UC1')  # 64x48
    messages = [compress_image(array_to_image(smooth_rgb(), 'rgb8'), format_)
                for format_ in ('jpeg', 'png', 'tiff')]
    messages += [compress_image(depth, f'compressedDepth {method}') for method in DEPTH_FORMATS]
    for format_, data in messages:
        assert decompress_image(format_, data, max_pixels=64 * 48).width == 64
        with pytest.raises(SensorInputError,
                           match=r'64x48 pixels, over max_pixels 3,071: a corrupt header'):
            decompress_image(format_, data, max_pixels=64 * 48 - 1)


def test_a_format_naming_an_encoding_the_sensor_does_not_take_is_refused_before_decoding():
    """encodings= (the node's: those the sensor's modality takes): a 1.3 MB TIFF of 32FC4
    sent to the rgb sensor was decoded first (67 Mpx: 20-29 s, 2.1 GB) and only then
    refused for its encoding."""
    not_decoded = b'II*\x00' + bytes(200)  # would be refused as undecodable if decoded
    for format_ in ('32FC4; tiff compressed ', '32FC1; compressedDepth rvl'):
        with pytest.raises(SensorInputError, match=r"names 32FC\d, which this sensor does "
                           'not take; it takes rgb8, bgr8'):
            decompress_image(format_, not_decoded, encodings=('rgb8', 'bgr8'))
    format_, data = compress_image(array_to_image(smooth_rgb(), 'rgb8'), 'jpeg')
    assert decompress_image(format_, data, encodings=('rgb8', 'bgr8')).encoding == 'rgb8'
    # an old publisher's bare format names no encoding: the decoded pixels say it
    assert decompress_image('jpeg', data, encodings=('rgb8',)).encoding == 'bgr8'


def outcome(decode, stream: np.ndarray):
    try:
        return decode(stream, 'test')
    except SensorInputError as error:
        return str(error)


def test_rvl_decoder_refuses_what_the_reference_refuses_with_the_same_message():
    """Corrupted streams (flipped bits, cut or lengthened data, another size in the
    header, random bytes): the new decoder decodes the same pixels or raises the same
    one-line SensorInputError as the scalar one, never anything else."""
    rng = np.random.default_rng(11)
    good = np.frombuffer(_rvl_encode(depth_mm((12, 16))), np.uint8)
    streams = []
    for _ in range(150):
        flipped = good.copy()
        at = rng.integers(8, good.size, rng.integers(1, 4))
        flipped[at] ^= rng.integers(1, 256, at.size).astype(np.uint8)
        streams.append(flipped)
    for cut in range(9, good.size, 3):
        streams.append(good[:cut])
    for extra in (b'\x00' * 4, b'\x00' * 8, b'\x00' * 40, b'\x12\x34\x56\x78'):
        streams.append(np.frombuffer(good.tobytes() + extra, np.uint8))
    for width, height in [(16, 11), (16, 13), (15, 12), (1, 1), (192, 1), (193, 1)]:
        streams.append(np.frombuffer(struct.pack('<II', width, height) + good[8:].tobytes(),
                                     np.uint8))
    for size in (12, 13, 40, 400):
        noise = rng.integers(0, 256, size).astype(np.uint8)
        noise[:8] = np.frombuffer(struct.pack('<II', 4, 3), np.uint8)
        streams.append(noise)
    streams.append(np.frombuffer(struct.pack('<II', 4, 3) + b'\xff' * 40, np.uint8))
    over_32_bits = struct.pack('<IIII', 4, 3, 0xFFFF_FFFF, 0xFFFF_0000)  # 13 codes
    streams.append(np.frombuffer(over_32_bits, np.uint8))
    decoded = refused = 0
    for stream in streams:
        ours, theirs = outcome(_rvl_decode, stream), outcome(reference_rvl_decode, stream)
        if isinstance(ours, str) and 'more than any RVL' in ours:  # by its length, at once
            assert isinstance(theirs, str), ours
            refused += 1
        elif isinstance(theirs, str):
            assert ours == theirs and '\n' not in ours
            refused += 1
        else:
            np.testing.assert_array_equal(ours, theirs)
            decoded += 1
    assert refused > 100 and decoded > 10  # both kinds were tried


# --- malformed messages: one SensorInputError each, with its reason ---------------------


def good_jpeg() -> bytes:
    return compress_image(array_to_image(smooth_rgb(), 'rgb8'), 'jpeg')[1]


def good_depth(method='png', encoding='16UC1') -> bytes:
    raw = depth_mm() if encoding == '16UC1' else depth_mm().astype(np.float32) / 1000
    return compress_image(array_to_image(raw, encoding), f'compressedDepth {method}')[1]


def good_tiff() -> bytes:
    return compress_image(array_to_image(depth_mm(), '16UC1'), 'tiff')[1]


def tiff_declaring(width: int, height: int, layout: str) -> bytes:
    """A TIFF header and directory that declare width x height, by hand: little-endian
    from OpenCV with its size patched, big-endian (a SHORT's value sits in its field's
    first bytes), or a BigTIFF with LONG8 sizes."""
    if layout == 'little':
        data = bytearray(good_tiff())
        (start,) = struct.unpack_from('<I', data, 4)
        for at in range(start + 2, start + 2 + 12 * data[start], 12):
            if struct.unpack_from('<H', data, at)[0] in (256, 257):
                struct.pack_into('<HII', data, at + 2, 4, 1,
                                 width if data[at] == 0 else height)
        return bytes(data)
    if layout == 'big':
        return (b'MM\x00*' + struct.pack('>IH', 8, 2) + struct.pack('>HHII', 256, 4, 1, width)
                + struct.pack('>HHIHH', 257, 3, 1, height, 0) + bytes(4 + 64))
    return (b'II+\x00' + struct.pack('<HHQQ', 8, 0, 16, 2)
            + struct.pack('<HHQQ', 256, 16, 1, width)
            + struct.pack('<HHQQ', 257, 16, 1, height) + bytes(8 + 64))


def huge_header(data: bytes, tag: bytes, layout: str) -> bytes:
    """``data`` with the size after its first ``tag`` (a PNG's IHDR, a JPEG's SOF0) raised
    to 20000 x 20000: under OpenCV's own limit of 2**30 pixels, so it would allocate them
    (1.2 GB for colour) before finding the data short."""
    at = data.index(tag) + (4 if tag == b'IHDR' else 5)
    return data[:at] + struct.pack(layout, 20000, 20000) + data[at + struct.calcsize(layout):]


def _tiff(shape, dtype, *, layout: str = 'little') -> bytes:
    """A deflated TIFF of zeros from OpenCV; ``'big'``: its first directory's entries for
    size, samples and bits alone, rewritten big-endian (no image data: never decoded)."""
    data = cv2.imencode('.tiff', np.zeros(shape, dtype), [cv2.IMWRITE_TIFF_COMPRESSION, 8])[1]
    if layout == 'little':
        return data.tobytes()
    height, width, samples = shape
    bits = np.dtype(dtype).itemsize * 8
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits << 16),
               (277, 3, 1, samples << 16)]
    return (b'MM\x00*' + struct.pack('>IH', 8, len(entries))
            + b''.join(struct.pack('>HHII', *e) for e in entries) + bytes(4 + 64))


MALFORMED = {
    'empty data': ('rgb8; jpeg compressed bgr8', b'', 'empty'),
    'garbage bytes': ('rgb8; jpeg compressed bgr8', b'\xff\xd8 not a jpeg \xff\xd9',
                      'no decodable'),
    'garbage png': ('mono8; png compressed ', b'\x89PNG\r\n\x1a\n garbage', 'no decodable'),
    'truncated jpeg': ('rgb8; jpeg compressed bgr8', good_jpeg()[:-300], 'truncated JPEG'),
    'truncated jpeg, old format': ('jpeg', good_jpeg()[:-300], 'truncated JPEG'),
    'unknown compression': ('rgb8; webp compressed bgr8', good_jpeg(), 'unknown'),
    'unknown bare format': ('tiff', good_jpeg(), 'unknown'),
    'unknown encoding': ('rgb9; jpeg compressed bgr8', good_jpeg(), 'unknown image encoding'),
    'encoding that lies about channels': ('mono8; jpeg compressed ', good_jpeg(),
                                          'names mono8'),
    'encoding that lies about depth': ('mono16; jpeg compressed ', good_jpeg(),
                                       'names mono16'),
    'depth header only': ('16UC1; compressedDepth png', good_depth()[:12], 'no image after'),
    'depth header that lies (NaN quantization)': (
        '32FC1; compressedDepth png',
        struct.pack('<iff', 0, float('nan'), 0.0) + good_depth()[12:],
        'no inverse-depth quantization'),
    'depth header that lies (format)': (
        '32FC1; compressedDepth png', struct.pack('<iff', 7, 10100.0, -1009.0)
        + good_depth()[12:], 'no inverse-depth quantization'),
    'depth png that is 8-bit': (
        '16UC1; compressedDepth png',
        bytes(12) + cv2.imencode('.png', np.zeros((4, 4), np.uint8))[1].tobytes(),
        'single 16-bit channel'),
    # was decoded: a deflated 4 x float32 TIFF of 4096 x 4096 took 5 s before it was refused
    'depth png that is a tiff': (
        '16UC1; compressedDepth png', bytes(12) + _tiff((8, 8, 4), np.float32),
        r"compressedDepth png data is no PNG after its 12-byte header: it starts with b'II\*"),
    'depth png that is a jpeg': ('16UC1; compressedDepth', bytes(12) + good_jpeg(), 'no PNG'),
    'depth of a colour encoding': ('rgb8; compressedDepth png', good_depth(),
                                   'single-channel 16-bit or 32FC1'),
    'unknown depth method': ('16UC1; compressedDepth zstd', good_depth(), "'zstd'"),
    'rvl size that lies': (
        '16UC1; compressedDepth rvl',
        good_depth('rvl')[:12] + struct.pack('<II', 64000, 48000) + good_depth('rvl')[20:],
        'over max_pixels'),
    'rvl zero size': (
        '16UC1; compressedDepth rvl',
        good_depth('rvl')[:12] + struct.pack('<II', 0, 48) + good_depth('rvl')[20:], 'empty'),
    'rvl truncated': ('16UC1; compressedDepth rvl', good_depth('rvl')[:-400], 'RVL stream'),
    'rvl too short': ('16UC1; compressedDepth rvl', good_depth('rvl')[:22], 'too short'),
    'not a string format': (None, good_jpeg(), 'must be a string'),
    'png header declaring a huge image': (
        'mono8; png compressed ', huge_header(cv2.imencode('.png', np.zeros((4, 4), np.uint8))
                                              [1].tobytes(), b'IHDR', '>II'), 'declares'),
    'tiff cut short': ('16UC1; tiff compressed ', good_tiff()[:-300], 'no decodable'),
    'tiff with garbage after its signature': ('16UC1; tiff compressed ',
                                              b'II*\x00' + bytes(range(200)), 'no decodable'),
    'tiff whose directory is past its end': (
        '16UC1; tiff compressed ', good_tiff()[:4] + struct.pack('<I', 10**9)
        + good_tiff()[8:], 'no decodable'),
    'tiff that lies about its encoding': ('mono8; tiff compressed ', good_tiff(),
                                          'names mono8'),
    'tiff directory declaring a huge image': (
        '16UC1; tiff compressed ', tiff_declaring(20000, 20000, 'little'), 'declares'),
    'big-endian tiff declaring a huge image': (
        '16UC1; tiff compressed ', tiff_declaring(20000, 20000, 'big'), 'declares'),
    'bigtiff declaring a huge image': (
        '16UC1; tiff compressed ', tiff_declaring(2**40, 3, 'bigtiff'), 'declares'),
    'jpeg frame header declaring a huge image': (
        'rgb8; jpeg compressed bgr8', huge_header(good_jpeg(), b'\xff\xc0', '>HH'),
        'declares'),
}


@pytest.mark.parametrize(('format_', 'data', 'declared'), [
    ('mono8; tiff compressed ', _tiff((64, 64, 4), np.float32), '4 x 32-bit'),
    ('rgb8; tiff compressed ', _tiff((8, 8, 3), np.uint16), '3 x 16-bit'),  # bits at an offset
    ('mono16; tiff compressed ', _tiff((8, 8, 3), np.uint16), '3 x 16-bit'),
    ('bgr8; tiff compressed ', _tiff((8, 8, 1), np.float64), '1 x 64-bit'),
    ('mono8; tiff compressed ', _tiff((8, 8, 4), np.float32, layout='big'), '4 x 32-bit'),
])
def test_a_tiff_whose_samples_the_format_does_not_name_is_refused_before_decoding(
        format_, data, declared):
    # A mono8 frame whose TIFF holds 4 x 32-bit float was decoded at full size before it was
    # refused: 8.8 s and 512 MB for a 377 kB deflated one of 4096 x 4096.
    encoding = format_.split(';')[0]
    with pytest.raises(SensorInputError, match=rf'^format {re.escape(repr(format_))} names '
                       rf'{encoding} \(.*\), but its TIFF header declares {declared} samples a '
                       r'pixel$'):
        decompress_image(format_, data)
    # what a colour encoding's decoding adds or drops: alpha
    for format_, data in (('rgba8; tiff compressed ', _tiff((8, 8, 3), np.uint8)),
                          ('rgb16; tiff compressed ', _tiff((8, 8, 4), np.uint16))):
        assert decompress_image(format_, data).width == 8


def _png_header(shape, dtype) -> bytes:
    """The signature and IHDR of an OpenCV PNG of zeros, then IEND: no image data, so refused
    as undecodable if it is decoded."""
    data = cv2.imencode('.png', np.zeros(shape, dtype))[1].tobytes()
    return data[:33] + data[-12:]


@pytest.mark.parametrize(('format_', 'shape', 'dtype', 'declared'), [
    ('mono8; png compressed ', (8, 8, 4), np.uint16, '16-bit RGB \\+ alpha'),
    ('mono16; png compressed ', (8, 8, 3), np.uint8, '8-bit RGB'),
    ('rgb8; png compressed bgr8', (8, 8, 3), np.uint16, '16-bit RGB'),
    ('rgb16; png compressed bgr16', (8, 8, 1), np.uint16, '16-bit grey'),
    ('32FC1; png compressed ', (8, 8, 1), np.uint16, '16-bit grey'),
])
def test_a_png_whose_bit_depth_or_colour_type_the_format_does_not_name_is_refused_unread(
        format_, shape, dtype, declared):
    # A mono8 frame holding a 130 kB PNG of 16-bit RGBA at 4096 x 4096 was decoded before it
    # was refused: 1.8 s and 256 MB; a compressedDepth one 1.6 s.
    encoding = format_.split(';')[0]
    with pytest.raises(SensorInputError, match=rf'^format {re.escape(repr(format_))} names '
                       rf'{encoding} \(.*\), but its PNG header declares {declared} pixels$'):
        decompress_image(format_, _png_header(shape, dtype))
    with pytest.raises(SensorInputError, match=r'^compressedDepth PNG header declares 8-bit '
                       'RGB pixels, not the single 16-bit channel it must'):
        decompress_image('16UC1; compressedDepth png', bytes(12) + _png_header((8, 8, 3),
                                                                                np.uint8))
    # what a colour encoding's decoding adds or drops: alpha
    for format_, shape, dtype in (('rgba8; png compressed bgr8', (8, 8, 3), np.uint8),
                                  ('bgr16; png compressed bgr16', (8, 8, 4), np.uint16),
                                  ('mono16; png compressed ', (8, 8, 1), np.uint16)):
        data = cv2.imencode('.png', np.zeros(shape, dtype))[1].tobytes()
        assert decompress_image(format_, data).width == 8


def test_a_jpeg_is_never_read_as_a_png_header():
    """Bytes 12 to 16 of a JPEG can read 'IHDR' (here in an APP1 segment): the PNG header
    check applies to a PNG alone."""
    payload = bytearray(24)
    payload[6:10], payload[18], payload[19] = b'IHDR', 16, 6  # at 12..16, 24 and 25
    app1 = b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + bytes(payload)
    jpeg = cv2.imencode('.jpg', np.full((8, 8), 90, np.uint8))[1].tobytes()
    data = jpeg[:2] + app1 + jpeg[2:]
    assert data[12:16] == b'IHDR'
    assert decompress_image('mono8; jpeg compressed mono8', data).width == 8


def _cmyk_jpeg() -> bytes:
    """An 8x8 JPEG of 4 components (CMYK; OpenCV writes none): one flat block each, every
    Huffman code one bit (DC difference 0, end of block)."""
    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack('>H', len(body) + 2) + body

    one_code = bytes([1] + [0] * 15) + b'\0'
    return (b'\xff\xd8' + segment(0xDB, b'\0' + b'\1' * 64)
            + segment(0xC4, b'\x00' + one_code) + segment(0xC4, b'\x10' + one_code)
            + segment(0xC0, struct.pack('>BHHB', 8, 8, 8, 4) + b'\1\x11\0\2\x11\0\3\x11\0\4\x11\0')
            + segment(0xDA, b'\4\1\0\2\0\3\0\4\0\0\x3f\0') + b'\0\xff\xd9')


@pytest.mark.parametrize(('format_', 'components', 'declared'), [
    ('mono8; jpeg compressed mono8', 3, 'colour'),
    ('mono8; jpeg compressed mono8', 4, 'CMYK/YCCK'),
    ('bgr8; jpeg compressed bgr8', 1, 'grey'),
    ('mono16; jpeg compressed mono16', 1, 'grey'),
    ('8UC4; jpeg compressed ', 3, 'colour'),
    ('rgb16; jpeg compressed bgr8', 3, 'colour'),
])
def test_a_jpeg_whose_components_the_format_does_not_name_is_refused_before_decoding(
        format_, components, declared):
    # A mono8 frame holding a colour JPEG of 4096 x 4096 was decoded (0.15 s) before it was
    # refused ('decodes to 3 x uint8 pixels').
    jpegs = {1: cv2.imencode('.jpg', np.zeros((8, 8), np.uint8))[1].tobytes(),
             3: cv2.imencode('.jpg', np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
             4: _cmyk_jpeg()}
    encoding = format_.split(';')[0]
    with pytest.raises(SensorInputError, match=rf'^format {re.escape(repr(format_))} names '
                       rf'{encoding} \(.*\), but its JPEG header declares 8-bit {declared} '
                       'pixels$'):
        decompress_image(format_, jpegs[components])
    # what OpenCV decodes them to: grey, or BGR (CMYK converted), alpha added
    for format_, components, channels in (('mono8; jpeg compressed mono8', 1, 1),
                                          ('8UC1; jpeg compressed ', 1, 1),
                                          ('bgr8; jpeg compressed bgr8', 4, 3),
                                          ('rgba8; jpeg compressed bgr8', 3, 4),
                                          ('8UC3; jpeg compressed ', 4, 3)):
        fields = decompress_image(format_, jpegs[components])
        assert (fields.width, fields.step) == (8, 8 * channels)


@pytest.mark.parametrize('case', list(MALFORMED))
def test_malformed_message_is_one_sensor_input_error(case):
    format_, data, reason = MALFORMED[case]
    with pytest.raises(SensorInputError, match=reason) as raised:
        decompress_image(format_, data)
    assert '\n' not in str(raised.value)


@pytest.mark.parametrize(('before_frame_header', 'layout'), [
    (b'\xff\xe1\xff\xff' + bytes(65533), '64 kB APP1 segment (EXIF)'),
    (b'\xff\xe2\xff\xff' + bytes(65533) + b'\xff\xe2\x00\x10' + bytes(14), 'two APP2 segments'),
    (b'\xff\xff\xff', 'fill bytes'),
    (b'\x00\x00', 'stray bytes between segments'),
])  # fmt: skip
def test_a_huge_frame_header_is_found_where_libjpeg_finds_it(before_frame_header, layout):
    """The size guard read the first 64 kB, and stopped at the first byte that was no
    marker: behind a 64 kB APP segment, or one fill byte, a JPEG declaring 16000x16000
    decoded (2.2 GB, 18-24 s) and was accepted as a camera frame."""
    data = huge_header(good_jpeg(), b'\xff\xc0', '>HH')
    at = data.index(b'\xff\xc0')
    data = data[:at] + before_frame_header + data[at:]
    with pytest.raises(SensorInputError, match='declares 20000x20000'):
        decompress_image('rgb8; jpeg compressed bgr8', data)


# A 14x2 rgba8 PNG (182 B) from the fuzzer: two bits flipped in its IDAT length, which says
# 1082130557 B. OpenCV allocated and zeroed that (1 GB, 3 s) before finding the data short.
FLIPPED_IDAT_LENGTH = bytes.fromhex(
    '89504e470d0a1a0a0000000d494844520000000e000000020806000000688aedaa4080007d4944415408'
    '1d0172008dff0141df106986268827046774f76ef0abe89ca9a1d2f3184918b90c57287b7d4f98ef0323'
    '8cfcdbad4db4655d0c6574e9af62e56b899becc519013faa6282851b7f782a5ce1185f320813cc18cfd9'
    '059584274a72cc336356cb55ac7773f94ca7dcebcb5d37f208c9512ef4572ef969010890f75c358c1518'
    '264d0000000049454e44ae426002'
)


def test_a_jpeg_of_more_scans_than_an_encoder_writes_is_refused_before_it_is_decoded():
    """libjpeg decodes every scan over the whole image: a progressive 4096x4096 JPEG whose
    last scan (33 B) was repeated 1000 times, 99 kB, took 14 s to decode and was accepted."""
    pixels = smooth_rgb()
    progressive = cv2.imencode('.jpg', pixels, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    scans = progressive.count(b'\xff\xda')
    assert 6 <= scans <= 10  # libjpeg's own script
    last = progressive.rindex(b'\xff\xda')
    body, end = progressive[:-2], progressive[-2:]
    assert end == b'\xff\xd9'
    for repeats, refused in ((MAX_JPEG_SCANS - scans, False), (MAX_JPEG_SCANS - scans + 1, True)):
        data = body + body[last:] * repeats + end
        if refused:
            with pytest.raises(SensorInputError, match=f'JPEG of {MAX_JPEG_SCANS + 1} scans'):
                decompress_image('bgr8; jpeg compressed bgr8', data)
        else:
            assert image_to_array(decompress_image('bgr8; jpeg compressed bgr8',
                                                   data)).shape == pixels.shape
    # a baseline JPEG is decoded in its first scan (libjpeg takes no other): not counted
    baseline = cv2.imencode('.jpg', pixels)[1].tobytes()
    first = baseline.index(b'\xff\xda')
    data = baseline[:-2] + baseline[first:-2] * MAX_JPEG_SCANS + baseline[-2:]
    assert decompress_image('bgr8; jpeg compressed bgr8', data).width == pixels.shape[1]


def test_a_jpeg_of_more_header_markers_than_a_camera_writes_is_refused_unwalked():
    """The size guard walks the markers before the first scan in Python: 10 MB of empty COM
    segments took 5.4 s there (libjpeg: 34 ms), and the frame was accepted."""
    good = good_jpeg()
    icc = b'\xff\xe2\x00\x10ICC_PROFILE\x00\x01\xff'  # 255 APP2 chunks: the most of a profile
    data = good[:2] + icc * 255 + good[2:]
    assert decompress_image('rgb8; jpeg compressed bgr8', data).width == 64
    for filler in (b'\xff\xfe\x00\x02', b'\xff\x00'):  # empty COM segments, stuffed 0xFF
        data = good[:2] + filler * 250_000 + good[2:]
        with pytest.raises(SensorInputError, match='more than 1000 markers before its first'):
            decompress_image('rgb8; jpeg compressed bgr8', data)


def test_a_png_chunk_longer_than_the_data_is_refused_before_opencv_allocates_it():
    with pytest.raises(SensorInputError, match=r"b'IDAT' chunk at byte 33 declares 1082130557 B"):
        decompress_image('bgra16; png compressed bgra16', FLIPPED_IDAT_LENGTH)
    data = bytearray(cv2.imencode('.png', np.zeros((29, 26), np.uint16))[1].tobytes())
    data[33:37] = struct.pack('>I', 2**32 - 2)
    with pytest.raises(SensorInputError, match='corrupt length or truncated data'):
        decompress_image('16UC1; compressedDepth', bytes(12) + bytes(data))


@pytest.mark.parametrize('extension', ['.webp', '.bmp', '.jp2', '.pgm'])
def test_an_image_of_another_format_is_refused_before_opencv_decodes_it(extension):
    """The transports carry JPEG, PNG and TIFF; OpenCV reads more. A lossless WebP of 5.5 kB
    decoded to 12000x12000 (144 Mpx, 8.7 s, past the 67 Mpx guard, which reads JPEG, PNG
    and TIFF headers only): any other format is refused by its signature."""
    data = cv2.imencode(extension, np.zeros((64, 64), np.uint8))[1].tobytes()
    for format_, prefix in (('mono8; png compressed ', b''), ('jpeg', b''), ('', b'')):
        with pytest.raises(SensorInputError, match='no decodable JPEG, PNG or TIFF.*signature'):
            decompress_image(format_, prefix + data)
    with pytest.raises(SensorInputError, match='compressedDepth png data is no PNG'):
        decompress_image('16UC1; compressedDepth png', bytes(12) + data)


def test_rvl_runs_that_overrun_the_image_are_refused():
    """A stream whose counts say more pixels than the size: refused, not written past."""
    data = bytearray(good_depth('rvl'))
    for height in (1, 4, 47):  # 48 in truth: the stream holds more than the size says
        data[16:20] = struct.pack('<I', height)
        with pytest.raises(SensorInputError, match='overrun|more than'):
            decompress_image('16UC1; compressedDepth rvl', bytes(data))
    one_long_run = struct.pack('<II', 4, 1) + struct.pack('<I', 0x7_0000000)  # 7 zeros, of 4
    with pytest.raises(SensorInputError, match='overrun'):
        decompress_image('16UC1; compressedDepth rvl', bytes(12) + one_long_run)


def test_an_rvl_stream_longer_than_its_size_allows_is_refused_before_it_is_decoded():
    """At most 4 B a pixel (a pair of counts and a 6-nibble delta each) and a word of
    padding. A 5 MB stream of zeros under a 640x480 header was decoded first: 6-15 s and
    about 100 B of memory a byte, before it was found truncated."""
    header = struct.pack('<II', 640, 480)
    longest = _rvl_encode(np.tile(np.array([1, 65535], np.uint16), (480, 320)))
    assert len(longest) - 8 <= 4 * 640 * 480  # the most a frame of this size takes
    np.testing.assert_array_equal(
        _rvl_decode(np.frombuffer(longest, np.uint8), 'test'),
        np.tile(np.array([1, 65535], np.uint16), (480, 320)))
    started = time.perf_counter()
    with pytest.raises(SensorInputError, match='more than any RVL of 640x480 pixels takes'):
        decompress_image('16UC1; compressedDepth rvl', bytes(12) + header + bytes(5_000_000))
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(('encoding', 'format_', 'reason'), [
    ('mono16', 'jpeg', 'JPEG stores 8-bit'),
    ('32FC1', 'png', 'PNG stores 8- or 16-bit'),
    ('rgb8', 'compressedDepth', 'single-channel 16-bit or 32FC1'),
    ('16UC1', 'compressedDepth lz4', 'png/rvl'),
    ('mono8', 'webp', 'unknown compression'),
    ('64FC1', 'tiff', 'TIFF stores 8-, 16- or 32-bit images of 1, 3 or 4'),
    ('32FC2', 'tiff', 'TIFF stores 8-, 16- or 32-bit images of 1, 3 or 4'),
])  # fmt: skip
def test_compress_refuses_what_the_transport_cannot_carry(encoding, format_, reason):
    raw = np.zeros((4, 4, 1), np.float32 if encoding == '32FC1' else np.uint8)
    if encoding in ('mono16', '16UC1'):
        raw = raw.astype(np.uint16)
    if encoding == 'rgb8':
        raw = np.zeros((4, 4, 3), np.uint8)
    if encoding in ('64FC1', '32FC2'):
        raw = np.zeros((4, 4, int(encoding[-1])), np.float64 if encoding[0] == '6' else np.float32)
    with pytest.raises(SensorInputError, match=reason):
        compress_image(array_to_image(raw, encoding), format_)


@pytest.mark.parametrize('encoding, format_, settings', [
    ('rgb8', 'jpeg', {'format': 'jpeg'}),
    ('mono16', 'png', {'format': 'png'}),
    ('16UC1', 'compressedDepth rvl', {'format': 'compressedDepth rvl', 'depth_max_m': 65.535}),
])
def test_recompression_encodes_as_the_message_came(encoding, format_, settings):
    channels = 3 if encoding == 'rgb8' else 1
    dtype = np.uint8 if encoding == 'rgb8' else np.uint16
    pixels = np.full((4, 6, channels), 200, dtype)
    format_out, data = compress_image(array_to_image(pixels, encoding), format_)
    assert recompression(format_out, data) == settings
    again = compress_image(decompress_image(format_out, data), **recompression(format_out, data))
    assert again[0] == format_out


def test_recompression_keeps_a_32fc1_depth_publishers_quantization_and_16uc1_far_values():
    metres = np.linspace(0.5, 3.9, 24, dtype=np.float32).reshape(4, 6, 1)
    format_, data = compress_image(array_to_image(metres, '32FC1'), 'compressedDepth',
                                   depth_max_m=4.0, depth_quantization=50.0)
    settings = recompression(format_, data)
    assert settings['depth_max_m'] == pytest.approx(4.0)
    assert settings['depth_quantization'] == pytest.approx(50.0)
    decoded = decompress_image(format_, data)
    _, again = compress_image(decoded, **settings)
    assert again[:DEPTH_HEADER.size] == data[:DEPTH_HEADER.size]  # same quantization
    step = metres[..., 0] ** 2 / (50.0 * 51.0)  # one quantization step, d**2 / A
    assert (np.abs(image_to_array(decompress_image(format_, again)) - metres) < 2 * step[
        ..., None]).all()
    # 16UC1: the publisher already cut what it cut; a 20 m reading its settings kept stays.
    far = np.full((2, 2, 1), 20000, np.uint16)
    format_, data = compress_image(array_to_image(far, '16UC1'), 'compressedDepth',
                                   depth_max_m=30.0)
    _, again = compress_image(decompress_image(format_, data), **recompression(format_, data))
    assert (image_to_array(decompress_image(format_, again)) == 20000).all()


@pytest.mark.parametrize('format_, data, expected', [
    ('jpeg', b'', 'jpeg'), ('png', b'', 'png'), ('', b'\x89PNG\r\n\x1a\n', 'png'),
    ('', b'\xff\xd8', 'jpeg'),
])
def test_recompression_of_an_old_publishers_bare_format(format_, data, expected):
    assert recompression(format_, data) == {'format': expected}
    with pytest.raises(SensorInputError, match='unknown CompressedImage format'):
        recompression('rgb8; webp compressed', data)
