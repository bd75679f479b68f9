"""sensor_msgs/Image fields <-> numpy: exact round trips, agreement with rosbags-image, errors."""

from __future__ import annotations

import array

import numpy as np
import pytest
from conftest import needs
from rosbags.typesys import Stores, get_typestore

from mmp_ros.sensors import ENCODINGS, ImageFields, SensorInputError, decode_frame
from mmp_ros.sensors.image import array_to_image, image_to_array, pixel_bytes_without_padding

TYPESTORE = get_typestore(Stores.LATEST)
RosImage = TYPESTORE.types['sensor_msgs/msg/Image']
Header = TYPESTORE.types['std_msgs/msg/Header']
Time = TYPESTORE.types['builtin_interfaces/msg/Time']

REQUIRED = (
    'rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16',
    '8UC1', '8UC3', '16UC1', '16SC1', '32FC1',
)  # fmt: skip


def random_pixels(encoding: str, shape=(5, 7), seed=0) -> np.ndarray:
    """Pixels covering the type's whole range (extremes included) for ``encoding``."""
    dtype, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    size = (*shape, channels)
    if dtype.kind == 'f':
        values = rng.normal(0, 1e3, size).astype(dtype)
        values.flat[:3] = [np.finfo(dtype).max, np.finfo(dtype).tiny, -0.0]
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True)
        values.flat[:2] = [info.min, info.max]
    return values


def to_rosbags(fields: ImageFields):
    return RosImage(
        header=Header(stamp=Time(sec=1, nanosec=2), frame_id='camera'),
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=int(fields.is_bigendian),
        step=fields.step,
        data=np.frombuffer(fields.data, dtype=np.uint8).copy(),
    )


def test_required_encodings_are_known():
    assert set(REQUIRED) <= set(ENCODINGS)
    assert ENCODINGS['16SC1'] == (np.dtype(np.int16), 1)
    assert ENCODINGS['32FC2'] == (np.dtype(np.float32), 2)


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
@pytest.mark.parametrize('is_bigendian', [False, True], ids=['le', 'be'])
@pytest.mark.parametrize('padding', [0, 3], ids=['packed', 'padded'])
def test_round_trip_is_exact(encoding, is_bigendian, padding):
    pixels = random_pixels(encoding)
    dtype, channels = ENCODINGS[encoding]
    row = pixels.shape[1] * channels * dtype.itemsize
    fields = array_to_image(pixels, encoding, step=row + padding, is_bigendian=is_bigendian)
    assert fields.step == row + padding
    assert len(fields.data) == fields.step * fields.height
    back = image_to_array(fields)
    assert back.dtype == dtype and back.dtype.isnative
    assert back.flags.c_contiguous
    assert back.shape == pixels.shape
    np.testing.assert_array_equal(back.view(np.uint8), pixels.view(np.uint8))  # bit-exact


def test_big_endian_bytes_are_big_endian():
    fields = array_to_image(np.array([[0x0102, 0xA0B0]], dtype=np.uint16), '16UC1',
                            is_bigendian=True)
    assert fields.data == bytes([0x01, 0x02, 0xA0, 0xB0])
    assert image_to_array(fields)[0, :, 0].tolist() == [0x0102, 0xA0B0]
    little = ImageFields(1, 2, '16UC1', False, 4, fields.data)
    assert image_to_array(little)[0, :, 0].tolist() == [0x0201, 0xB0A0]


def test_big_endian_float_decodes_like_numpy():
    values = np.array([[1.5, -2.25, np.inf]], dtype='>f4')
    fields = ImageFields(1, 3, '32FC1', True, 12, values.tobytes())
    np.testing.assert_array_equal(image_to_array(fields)[..., 0], values.astype(np.float32))


def test_packed_native_message_is_not_copied():
    pixels = random_pixels('16UC1')
    fields = array_to_image(pixels, '16UC1')
    view = image_to_array(fields)
    assert np.shares_memory(view, np.frombuffer(fields.data, dtype=np.uint8))
    assert not view.flags.writeable  # the message's bytes stay untouched


@pytest.mark.parametrize('buffer_type', [bytearray, memoryview, lambda b: array.array('B', b)])
def test_any_byte_buffer_is_accepted(buffer_type):
    """rclpy hands ``data`` out as array.array('B'); other buffers work the same."""
    pixels = random_pixels('32FC1')
    fields = array_to_image(pixels, '32FC1', step=7 * 4 + 4)
    other = ImageFields(fields.height, fields.width, fields.encoding, False, fields.step,
                        buffer_type(fields.data))
    np.testing.assert_array_equal(image_to_array(other), pixels)


def test_bytes_without_padding_are_the_pixels():
    pixels = random_pixels('rgb8')
    fields = array_to_image(pixels, 'rgb8', step=7 * 3 + 5)
    joined = b''.join(bytes(part) for part in pixel_bytes_without_padding(fields))
    assert joined == pixels.tobytes()


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
@pytest.mark.parametrize('is_bigendian', [False, True], ids=['le', 'be'])
def test_agrees_with_rosbags_image(encoding, is_bigendian):
    """rosbags-image reads packed messages only (it ignores step), so compare those."""
    image_to_cvimage = needs('rosbags.image').image_to_cvimage
    pixels = random_pixels(encoding, seed=1)
    fields = array_to_image(pixels, encoding, is_bigendian=is_bigendian)
    theirs = image_to_cvimage(to_rosbags(fields))
    ours = image_to_array(fields)
    np.testing.assert_array_equal(ours.reshape(theirs.shape).view(np.uint8),
                                  np.asarray(theirs).view(np.uint8))


@pytest.mark.parametrize('encoding', [
    'rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'rgb16', 'bgr16', 'rgba16', 'bgra16', 'mono16',
    *(f'bayer_{pattern}{bits}' for bits in (8, 16) for pattern in ('rggb', 'bggr', 'gbrg',
                                                                   'grbg')),
])  # fmt: skip
def test_rgb_order_agrees_with_rosbags_image(encoding):
    image_to_cvimage = needs('rosbags.image').image_to_cvimage
    pixels = random_pixels(encoding, shape=(7, 6), seed=2)
    fields = array_to_image(pixels, encoding)
    top, target = (65535.0, 'rgb16') if encoding.endswith('16') else (255.0, 'rgb8')
    theirs = np.asarray(image_to_cvimage(to_rosbags(fields), target))
    ours = decode_frame('rgb', fields).data
    np.testing.assert_allclose(ours, theirs.reshape(ours.shape) / top, atol=1e-7)


# --- bad input ------------------------------------------------------------------------------


def test_unknown_encoding_is_named():
    fields = ImageFields(2, 2, 'yuv9000', False, 4, bytes(8))
    with pytest.raises(SensorInputError, match=r"unknown image encoding 'yuv9000'"):
        image_to_array(fields)
    with pytest.raises(SensorInputError, match='unknown image encoding'):
        array_to_image(np.zeros((2, 2), np.uint8), '8UC9')


def test_truncated_data_is_refused():
    fields = ImageFields(4, 3, 'mono16', False, 6, bytes(6 * 4 - 1))
    with pytest.raises(SensorInputError, match=r'truncated data: 23 B, .* 6 \* 4 = 24 B'):
        image_to_array(fields)


def test_longer_data_than_step_times_height_is_refused():
    fields = ImageFields(4, 3, 'mono16', False, 6, bytes(6 * 5))
    with pytest.raises(SensorInputError, match='more than step'):
        image_to_array(fields)


def test_step_shorter_than_a_row_is_refused():
    fields = ImageFields(2, 4, 'rgb8', False, 11, bytes(22))
    with pytest.raises(SensorInputError, match=r'step 11 B is smaller than one row .* 12 B'):
        image_to_array(fields)
    with pytest.raises(SensorInputError, match='smaller than one row'):
        array_to_image(np.zeros((2, 4, 3), np.uint8), 'rgb8', step=8)


def test_empty_image_is_refused():
    with pytest.raises(SensorInputError, match='empty image: 0x5'):
        image_to_array(ImageFields(5, 0, 'mono8', False, 0, b''))


def test_wrong_array_type_or_shape_is_refused():
    with pytest.raises(SensorInputError, match='16UC1 stores uint16, got float64'):
        array_to_image(np.zeros((2, 2)), '16UC1')
    with pytest.raises(SensorInputError, match=r'rgb8 needs \(H, W, 3\)'):
        array_to_image(np.zeros((2, 2, 4), np.uint8), 'rgb8')
