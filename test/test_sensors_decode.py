"""decode_frame: one entry point, one error type, and the stats the health checks use."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest

from mmp_ros.sensors import (
    DepthSettings,
    ImageFields,
    PolarizationSettings,
    SensorInputError,
    ThermalSettings,
    decode_frame,
    default_settings,
    encode_frame,
)
from mmp_ros.sensors.image import array_to_image

RNG = np.random.default_rng(0)
FRAMES = {  # modality -> (encoding, pixels)
    'rgb': ('bgr8', RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)),
    'depth': ('16UC1', RNG.integers(0, 6000, (48, 64), dtype=np.uint16)),
    'polarization': ('mono8', RNG.integers(0, 256, (48, 64), dtype=np.uint8)),
    'thermal': ('mono16', RNG.integers(6500, 7500, (48, 64), dtype=np.uint16)),
}
CHANNELS = {'rgb': 3, 'depth': 1, 'polarization': 3, 'thermal': 1}


@pytest.mark.parametrize('modality', FRAMES)
def test_every_modality_gives_its_representation(modality):
    encoding, pixels = FRAMES[modality]
    frame = decode_frame(modality, array_to_image(pixels, encoding))
    assert frame.modality == modality
    assert frame.data.dtype == np.float32 and frame.data.flags.c_contiguous
    assert frame.data.ndim == 3 and frame.data.shape[2] == CHANNELS[modality]
    assert frame.stats.thumbnail.shape == (16, 16)
    assert frame.stats.thumbnail.dtype == np.float32
    assert (frame.valid is not None) == (modality == 'depth')
    assert frame.size == frame.data.shape[:2]


@pytest.mark.parametrize('modality', FRAMES)
def test_fingerprint_is_blake2b_of_the_pixels_without_padding(modality):
    encoding, pixels = FRAMES[modality]
    packed = decode_frame(modality, array_to_image(pixels, encoding))
    padded = decode_frame(modality, array_to_image(pixels, encoding, step=4096))
    expected = hashlib.blake2b(pixels.tobytes(), digest_size=16).digest()
    assert packed.stats.fingerprint == padded.stats.fingerprint == expected
    changed = pixels.copy()
    changed.flat[-1] ^= 1
    assert decode_frame(modality, array_to_image(changed, encoding)).stats.fingerprint != expected


def test_fingerprint_covers_the_bytes_as_sent():
    pixels = FRAMES['depth'][1]
    big = decode_frame('depth', array_to_image(pixels, '16UC1', is_bigendian=True))
    little = decode_frame('depth', array_to_image(pixels, '16UC1'))
    assert big.stats.fingerprint == hashlib.blake2b(
        pixels.astype('>u2').tobytes(), digest_size=16).digest()
    np.testing.assert_array_equal(big.data, little.data)


def test_thumbnail_is_an_area_average_of_channel_0():
    metres = RNG.uniform(0.5, 5.0, (96, 128)).astype(np.float32)
    frame = decode_frame('depth', array_to_image(metres, '32FC1'))
    expected = metres.reshape(16, 6, 16, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(frame.stats.thumbnail, expected, rtol=1e-5)


@pytest.mark.parametrize('encoding, top', [('rgb8', 255), ('mono8', 255), ('bgra8', 255)])
def test_blank_and_saturated_rgb(encoding, top):
    channels = {'rgb8': 3, 'mono8': 1, 'bgra8': 4}[encoding]
    black = decode_frame('rgb', array_to_image(np.zeros((8, 8, channels), np.uint8), encoding))
    white = decode_frame('rgb', array_to_image(np.full((8, 8, channels), top, np.uint8),
                                               encoding))
    assert black.stats.all_zero and not black.stats.saturated
    assert white.stats.saturated and not white.stats.all_zero
    assert white.data.min() == 1.0


def test_saturated_needs_every_pixel_at_the_maximum():
    counts = np.full((8, 8), 65535, np.uint16)
    assert decode_frame('thermal', array_to_image(counts, 'mono16')).stats.saturated
    counts[3, 3] = 65534
    assert not decode_frame('thermal', array_to_image(counts, 'mono16')).stats.saturated


@pytest.mark.parametrize('top', [1023, 4095, 16383, 0xFFC0, 0xFFF0, 0xFFFC])
def test_a_narrower_sensor_at_full_scale_in_mono16_is_saturated(top):
    # 0xFFC0, 0xFFF0, 0xFFFC: 10-, 12- and 14-bit values in the top bits of the word
    # A 12-bit polarization camera publishes mono16; saturated, every pixel reads 4095.
    mosaic = np.full((8, 8), top, np.uint16)
    assert decode_frame('polarization', array_to_image(mosaic, 'mono16')).stats.saturated
    mosaic[0, 0] = top - 1
    assert not decode_frame('polarization', array_to_image(mosaic, 'mono16')).stats.saturated
    uniform = np.full((8, 8), 4000, np.uint16)  # uniform, but no sensor's full scale
    assert not decode_frame('thermal', array_to_image(uniform, 'mono16')).stats.saturated


def test_rgb_encode_round_trip_in_every_channel_order():
    rgb = RNG.random((6, 5, 3)).astype(np.float32)
    for encoding in ('rgb8', 'bgr8', 'rgba8', 'bgra8'):
        frame = decode_frame('rgb', encode_frame('rgb', rgb, encoding))
        np.testing.assert_allclose(frame.data, rgb, atol=0.5 / 255 + 1e-6)
    for encoding in ('rgb16', 'bgr16', 'rgba16', 'bgra16'):  # HDR, machine-vision drivers
        frame = decode_frame('rgb', encode_frame('rgb', rgb, encoding))
        np.testing.assert_allclose(frame.data, rgb, atol=0.5 / 65535 + 1e-6)
    grey = decode_frame('rgb', encode_frame('rgb', rgb, 'mono8')).data
    assert np.all(grey[..., 0] == grey[..., 1]) and np.all(grey[..., 1] == grey[..., 2])


def test_rgb_from_a_mono16_camera_is_its_grey_in_all_three_channels():
    # a monochrome machine-vision camera publishes mono16 on the colour topic
    rgb = RNG.random((6, 5, 3)).astype(np.float32)
    fields = encode_frame('rgb', rgb, 'mono16')
    assert (fields.encoding, len(fields.data)) == ('mono16', 6 * 5 * 2)
    grey = decode_frame('rgb', fields).data
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    for channel in range(3):
        np.testing.assert_allclose(grey[..., channel], luma, atol=0.5 / 65535 + 1e-6)
    # a 12-bit camera at saturation (4095 in every pixel) is reported saturated
    full = decode_frame('rgb', array_to_image(np.full((4, 4), 4095, np.uint16), 'mono16'))
    assert full.stats.saturated


BAYER_PATTERNS = ('rggb', 'bggr', 'gbrg', 'grbg')  # ROS names: the top-left 2x2 block


def bayer_mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """What a colour-filter-array sensor records of ``rgb``: one channel per pixel."""
    mosaic = np.empty(rgb.shape[:2], rgb.dtype)
    for (row, col), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern, strict=True):
        mosaic[row::2, col::2] = rgb[row::2, col::2, 'rgb'.index(colour)]
    return mosaic


@pytest.mark.parametrize('bits', [8, 16])
@pytest.mark.parametrize('pattern', BAYER_PATTERNS)
def test_bayer_demosaics_flat_patches_to_their_colours(pattern, bits):
    """The default output of many machine-vision drivers was an unknown image encoding.
    Odd size and padded rows, four flat patches of distinct colours: away from the patch
    edges (where bilinear demosaicing mixes them) every colour comes back exactly."""
    dtype, top = (np.uint8, 255) if bits == 8 else (np.uint16, 65535)
    colours = np.array([[0.8, 0.4, 0.1], [0.1, 0.7, 0.3], [0.2, 0.3, 0.9], [1.0, 1.0, 0.0]])
    rgb = np.empty((13, 17, 3), dtype)
    for index, (rows, cols) in enumerate(itertools.product(
            (slice(0, 6), slice(6, None)), (slice(0, 8), slice(8, None)))):
        rgb[rows, cols] = np.rint(colours[index] * top)
    encoding = f'bayer_{pattern}{bits}'
    mosaic = bayer_mosaic(rgb, pattern)
    frame = decode_frame('rgb', array_to_image(mosaic, encoding, step=17 * bits // 8 + 3))
    assert frame.data.shape == (13, 17, 3) and frame.data.dtype == np.float32
    for rows, cols in itertools.product(
            (slice(0, 4), slice(8, None)), (slice(0, 6), slice(10, None))):
        np.testing.assert_allclose(frame.data[rows, cols], rgb[rows, cols] / top, atol=1e-6)
    encoded = encode_frame('rgb', rgb.astype(np.float64) / top, encoding)
    assert encoded.encoding == encoding
    np.testing.assert_array_equal(np.frombuffer(encoded.data, dtype).reshape(13, 17), mosaic)


@pytest.mark.parametrize('height, width', [(1, 1), (1, 8), (8, 1), (2, 2), (2, 9), (9, 2)])
def test_a_bayer_image_too_small_to_demosaic_is_refused_in_words(height, width):
    fields = array_to_image(np.full((height, width), 100, np.uint8), 'bayer_rggb8')
    with pytest.raises(SensorInputError, match=(
            f'bayer_rggb8 is {width}x{height} pixels: demosaicing needs at least 3x3')):
        decode_frame('rgb', fields)


def test_polarization_encode_from_intensities():
    intensities = RNG.uniform(0, 4000, (4, 12, 10))
    fields = encode_frame('polarization', intensities, 'mono16')
    assert (fields.height, fields.width, fields.encoding) == (24, 20, 'mono16')
    assert decode_frame('polarization', fields).data.shape == (12, 10, 3)


def test_default_settings():
    assert default_settings('rgb') is None
    assert default_settings('depth') == DepthSettings()
    assert default_settings('thermal') == ThermalSettings()
    assert default_settings('polarization') == PolarizationSettings()


# --- one error type for every bad input ----------------------------------------------------

BAD_INPUTS = {
    'unknown encoding': (
        'rgb', ImageFields(2, 2, 'rgb9', False, 6, bytes(12)), None, "unknown image encoding"),
    'truncated data': (
        'depth', ImageFields(4, 4, '16UC1', False, 8, bytes(31)), None, 'truncated data'),
    'step smaller than a row': (
        'thermal', ImageFields(4, 4, 'mono16', False, 6, bytes(24)), None,
        'smaller than one row'),
    'odd mosaic': (
        'polarization', ImageFields(3, 4, 'mono8', False, 4, bytes(12)), None,
        'even width and height, got 4x3'),
    'rgb8 on depth': (
        'depth', ImageFields(2, 2, 'rgb8', False, 6, bytes(12)), None,
        "encoding 'rgb8' is not accepted for depth; it takes 16UC1, 32FC1"),
    '16UC1 on rgb': (
        'rgb', ImageFields(2, 2, '16UC1', False, 4, bytes(8)), None,
        "'16UC1' is not accepted for rgb"),
    'unknown modality': (
        'lidar', ImageFields(2, 2, 'mono8', False, 2, bytes(4)), None, "unknown modality 'lidar'"),
    'settings of another modality': (
        'depth', ImageFields(2, 2, '16UC1', False, 4, bytes(8)), ThermalSettings(),
        'depth takes DepthSettings, got ThermalSettings'),
    'settings for rgb': (
        'rgb', ImageFields(2, 2, 'rgb8', False, 6, bytes(12)), DepthSettings(),
        'rgb takes no settings'),
}


@pytest.mark.parametrize('case', BAD_INPUTS)
def test_bad_input_raises_sensor_input_error(case):
    modality, fields, settings, message = BAD_INPUTS[case]
    with pytest.raises(SensorInputError, match=message):
        decode_frame(modality, fields, settings)


def test_sensor_input_error_is_a_value_error():
    assert issubclass(SensorInputError, ValueError)


def test_no_message_raises_anything_but_sensor_input_error():
    """The node catches SensorInputError alone around decoding: every other exception would
    end its executor. Every encoding on every modality, with empty, odd, padded, short and
    long buffers of zeros, ones, random bytes and non-finite floats, under each settings
    kind: a frame or a SensorInputError, nothing else."""
    from mmp_ros.sensors.image import ENCODINGS

    rng = np.random.default_rng(0)
    settings = {'rgb': [None], 'depth': [None, DepthSettings(0.2, 10.0)],
                'polarization': [None, PolarizationSettings(resolution='full')],
                'thermal': [None, *(ThermalSettings(semantics=s) for s in (
                    'planck', 'centikelvin', 'celsius', 'kelvin'))]}
    special = np.array([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e30, -1e30, 5.0])
    cases = 0
    for modality, encoding in itertools.product(settings, [*ENCODINGS, '', 'yuv422']):
        dtype, channels = ENCODINGS.get(encoding, (np.dtype('u1'), 1))
        for (height, width), big_endian in itertools.product(
                [(0, 4), (1, 1), (3, 5), (4, 6)], (False, True)):
            row = width * channels * dtype.itemsize
            for step, extra in [(row, 0), (row + 3, 0), (row, -1), (row, 7), (max(0, row - 1), 0)]:
                length = max(0, step * height + extra)
                non_finite = np.resize(special.astype(
                    dtype if dtype.kind == 'f' else 'f4').view('u1'), length).tobytes()
                for data in (bytes(length), b'\xff' * length, rng.bytes(length), non_finite):
                    fields = ImageFields(height, width, encoding, big_endian, step, data)
                    for chosen in settings[modality]:
                        cases += 1
                        try:
                            with np.errstate(all='ignore'):
                                decode_frame(modality, fields, chosen)
                        except SensorInputError:
                            pass
    assert cases > 20_000


@pytest.mark.parametrize('encoding', ['rgba8', 'bgra8', 'rgba16', 'bgra16'])
@pytest.mark.parametrize('alpha', ['none', 'full'])
def test_blank_and_saturated_ignore_alpha(encoding, alpha):
    """A capped bgra8 camera (ZED, simulators) sends black with alpha 255: it was not blank."""
    dtype = np.uint16 if encoding.endswith('16') else np.uint8
    top = np.iinfo(dtype).max
    pixels = np.zeros((8, 8, 4), dtype)
    pixels[..., 3] = top if alpha == 'full' else 0
    black = decode_frame('rgb', array_to_image(pixels, encoding))
    assert black.stats.all_zero and not black.stats.saturated
    pixels[..., :3] = top
    white = decode_frame('rgb', array_to_image(pixels, encoding))
    assert white.stats.saturated and not white.stats.all_zero
    pixels[0, 0, 1] = top - 1
    assert not decode_frame('rgb', array_to_image(pixels, encoding)).stats.saturated
