"""Per-message faults: every kind on several encodings gives what a broken sensor sends."""

from __future__ import annotations

import numpy as np
import pytest

from mmp_ros.dropout import Fault, FaultKind, apply
from mmp_ros.sensors import decode_frame, encode_frame
from mmp_ros.sensors.frame import SensorInputError
from mmp_ros.sensors.image import ImageFields, array_to_image, check_layout, image_to_array

ENCODINGS = ('rgb8', 'mono16', '16UC1', '32FC1', 'bgra8')
H, W = 6, 8


def make_image(encoding: str, *, step: int | None = None, big: bool = False) -> ImageFields:
    """A gradient that is never constant, never at the extremes, in ``encoding``."""
    spec_dtype = {'rgb8': np.uint8, 'bgra8': np.uint8, 'mono16': np.uint16,
                  '16UC1': np.uint16, '32FC1': np.float32}[encoding]
    channels = {'rgb8': 3, 'bgra8': 4}.get(encoding, 1)
    ramp = np.linspace(0.2, 0.8, H * W * channels).reshape(H, W, channels)
    if spec_dtype is np.float32:
        pixels = (ramp * 5.0).astype(np.float32)  # metres
    else:
        pixels = (ramp * np.iinfo(spec_dtype).max).astype(spec_dtype)
    return array_to_image(pixels, encoding, step=step, is_bigendian=big)


def fault(kind: FaultKind, **params) -> Fault:
    return Fault('rgb', kind, 0.0, 1.0, params)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize('encoding', ENCODINGS)
def test_kill_and_certain_drop_swallow_the_message(encoding):
    image = make_image(encoding)
    assert apply(fault(FaultKind.KILL), image, rng()) is None
    assert apply(fault(FaultKind.DROP, fraction=1.0), image, rng()) is None


def test_drop_keeps_about_one_minus_fraction_and_is_seeded():
    image = make_image('rgb8')
    drop = fault(FaultKind.DROP, fraction=0.3)
    generator = rng(5)
    kept = [apply(drop, image, generator) is not None for _ in range(2000)]
    assert 0.65 < np.mean(kept) < 0.75
    again = rng(5)
    assert kept == [apply(drop, image, again) is not None for _ in range(2000)]


@pytest.mark.parametrize('encoding', ENCODINGS)
def test_blank_zero_and_max(encoding):
    image = make_image(encoding)
    zero = image_to_array(apply(fault(FaultKind.BLANK, fill='zero'), image, rng()))
    assert zero.shape == image_to_array(image).shape and not zero.any()
    full = image_to_array(apply(fault(FaultKind.BLANK, fill='max'), image, rng()))
    expected = np.inf if full.dtype.kind == 'f' else np.iinfo(full.dtype).max
    assert (full == expected).all()


@pytest.mark.parametrize('encoding', ENCODINGS)
def test_nan_flood_is_nan_for_floats_and_zero_for_integers(encoding):
    image = make_image(encoding)
    out = apply(fault(FaultKind.NAN, fraction=1.0), image, rng())
    check_layout(out)
    pixels = image_to_array(out)
    if pixels.dtype.kind == 'f':
        assert np.isnan(pixels).all()
    else:
        assert not pixels.any()


@pytest.mark.parametrize('encoding', ['32FC1', '16UC1', 'rgb8'])
def test_partial_nan_flood_hits_whole_pixels_and_is_seeded(encoding):
    big = array_to_image(
        np.full((100, 100, 3 if encoding == 'rgb8' else 1), 7,
                dtype=image_to_array(make_image(encoding)).dtype), encoding,
    )
    partial = fault(FaultKind.NAN, fraction=0.25)
    pixels = image_to_array(apply(partial, big, rng(3)))
    hit = np.isnan(pixels) if pixels.dtype.kind == 'f' else pixels == 0
    per_pixel = hit.all(axis=2)
    assert (hit.any(axis=2) == per_pixel).all()  # never half a pixel
    assert 0.2 < per_pixel.mean() < 0.3
    assert (image_to_array(apply(partial, big, rng(3))) == pixels)[~hit].all()


@pytest.mark.parametrize('encoding', ['rgb8', 'mono16', '32FC1'])
def test_noise_keeps_dtype_shape_and_has_the_asked_sigma(encoding):
    flat = {'rgb8': (np.uint8, 128, 3), 'mono16': (np.uint16, 30000, 1),
            '32FC1': (np.float32, 2.0, 1)}
    dtype, level, channels = flat[encoding]
    image = array_to_image(np.full((64, 64, channels), level, dtype=dtype), encoding)
    sigma = 0.1 if dtype is np.float32 else 10.0
    out = apply(fault(FaultKind.NOISE, sigma=sigma), image, rng(1))
    pixels = image_to_array(out)
    assert pixels.dtype == dtype and pixels.shape == (64, 64, channels)
    error = pixels.astype(np.float64) - level
    assert abs(error.mean()) < sigma * 0.05
    assert sigma * 0.95 < error.std() < sigma * 1.05
    assert (image_to_array(apply(fault(FaultKind.NOISE, sigma=sigma), image, rng(1))) ==
            pixels).all()


def test_noise_clips_integers_and_leaves_nan_alone():
    low = array_to_image(np.array([[[0, 255, 128]]], dtype=np.uint8), 'rgb8')
    many = [image_to_array(apply(fault(FaultKind.NOISE, sigma=50.0), low, rng(s)))
            for s in range(50)]
    stack = np.stack(many).astype(int)
    assert stack[..., 0].min() == 0 and stack[..., 1].max() == 255
    assert (stack[..., 0] > 0).any() and (stack[..., 1] < 255).any()
    depth = array_to_image(np.array([[np.nan, np.inf, 1.0]], dtype=np.float32), '32FC1')
    out = image_to_array(apply(fault(FaultKind.NOISE, sigma=0.5), depth, rng()))
    assert np.isnan(out[0, 0, 0]) and np.isposinf(out[0, 1, 0]) and np.isfinite(out[0, 2, 0])


@pytest.mark.parametrize('encoding', ENCODINGS)
@pytest.mark.parametrize(('height', 'width'), [(3, 5), (12, 16)])
def test_resize_gives_a_valid_image_of_the_new_size(encoding, height, width):
    image = make_image(encoding)
    out = apply(fault(FaultKind.RESIZE, height=height, width=width), image, rng())
    check_layout(out)
    assert (out.height, out.width, out.encoding) == (height, width, encoding)
    source, pixels = image_to_array(image), image_to_array(out)
    assert (pixels[0, 0] == source[0, 0]).all()
    assert pixels.dtype == source.dtype and pixels.shape[2] == source.shape[2]


@pytest.mark.parametrize(
    ('source', 'target'),
    [('rgb8', 'mono8'), ('rgb8', '32FC1'), ('16UC1', 'rgb8'), ('32FC1', '16UC1'),
     ('mono16', 'bgra8'), ('bgra8', 'mono16')],
)
def test_encoding_change_gives_a_valid_image_in_the_new_encoding(source, target):
    image = make_image(source)
    out = apply(fault(FaultKind.ENCODING, encoding=target), image, rng())
    spec = check_layout(out)
    assert (out.height, out.width, out.encoding) == (H, W, target)
    pixels = image_to_array(out)
    assert pixels.shape == (H, W, spec.channels)
    # Still a picture of the same scene: brightness grows along the gradient.
    brightness = pixels.astype(np.float64)[..., : min(3, spec.channels)].mean(axis=2)
    assert brightness[-1, -1] > brightness[0, 0]


@pytest.mark.parametrize('encoding', ENCODINGS)
def test_truncate_keeps_the_header_and_cuts_the_data(encoding):
    image = make_image(encoding)
    out = apply(fault(FaultKind.TRUNCATE, keep_fraction=0.25), image, rng())
    assert (out.height, out.width, out.encoding, out.step) == (
        image.height, image.width, image.encoding, image.step)
    assert out.nbytes == image.nbytes // 4
    assert bytes(out.data) == bytes(image.data)[: out.nbytes]
    with pytest.raises(SensorInputError, match='truncated data'):
        check_layout(out)


def test_row_padding_and_big_endian_are_kept_when_the_size_stays():
    image = make_image('mono16', step=W * 2 + 6, big=True)
    out = apply(fault(FaultKind.BLANK, fill='max'), image, rng())
    assert out.step == image.step and out.is_bigendian
    assert (image_to_array(out) == 65535).all()
    noisy = apply(fault(FaultKind.NOISE, sigma=1.0), image, rng())
    difference = image_to_array(noisy).astype(int) - image_to_array(image).astype(int)
    assert np.abs(difference).max() < 10  # bytes were not swapped on the way
    resized = apply(fault(FaultKind.RESIZE, height=3, width=3), image, rng())
    assert resized.step == 3 * 2


def test_pixel_faults_on_an_unreadable_message_raise_sensor_input_error():
    broken = apply(fault(FaultKind.TRUNCATE, keep_fraction=0.5), make_image('rgb8'), rng())
    for kind, params in [(FaultKind.BLANK, {'fill': 'zero'}), (FaultKind.NOISE, {'sigma': 1.0})]:
        with pytest.raises(SensorInputError):
            apply(fault(kind, **params), broken, rng())
    assert apply(fault(FaultKind.TRUNCATE, keep_fraction=0.5), broken, rng()).nbytes == (
        broken.nbytes // 2)


@pytest.mark.parametrize('kind', [FaultKind.FREEZE, FaultKind.DELAY])
def test_stateful_kinds_are_not_per_message(kind):
    with pytest.raises(ValueError, match='not a per-message fault'):
        apply(fault(kind, delay_s=1.0, max_queue=3), make_image('rgb8'), rng())


def test_32_bit_integers_stay_exact_under_noise_and_encoding_change():
    image = array_to_image(np.full((2, 2, 1), 2**30 + 1, dtype=np.int32), '32SC1')
    noisy = image_to_array(apply(fault(FaultKind.NOISE, sigma=1e-3), image, rng()))
    assert (noisy == 2**30 + 1).all()
    full = apply(fault(FaultKind.ENCODING, encoding='32SC1'),
                 array_to_image(np.full((2, 2, 1), 255, dtype=np.uint8), 'mono8'), rng())
    assert (image_to_array(full) == 2**31 - 1).all()


@pytest.mark.parametrize(('source', 'target'), [('rgb8', 'bgr8'), ('bgr8', 'rgb8'),
                                                ('rgb8', 'bgra8'), ('bgra8', 'rgba8'),
                                                ('bgra8', 'rgb16'), ('rgba8', 'bgr8')])
def test_encoding_change_keeps_the_colours_in_the_targets_channel_order(source, target):
    # A pure red picture, stored in the source's channel order.
    red = np.zeros((2, 3, 4 if source.endswith('a8') else 3), dtype=np.uint8)
    red[..., 0 if source.startswith('rgb') else 2] = 200
    red[..., 3:] = 255
    out = apply(fault(FaultKind.ENCODING, encoding=target), array_to_image(red, source), rng())
    pixels = image_to_array(out).astype(np.float64) / np.iinfo(image_to_array(out).dtype).max
    stored_red = 0 if target.startswith('rgb') else 2
    assert np.allclose(pixels[..., stored_red], 200 / 255, atol=1e-3)
    assert not pixels[..., 2 - stored_red].any() and not pixels[..., 1].any()


def test_noise_keeps_the_holes_of_16uc1_depth_as_it_keeps_nan_in_32fc1():
    # Before, about half of the no-reading pixels (0) of 16UC1 depth became readings of a few
    # millimetres to centimetres, valid to a consumer, while 32FC1's NaN holes stayed holes.
    depth = np.tile(np.array([0, 1500], dtype=np.uint16), (50, 50))
    out = image_to_array(apply(fault(FaultKind.NOISE, sigma=20.0),
                               array_to_image(depth, '16UC1'), rng()))[..., 0]
    assert (out[depth == 0] == 0).all()
    assert 15 < (out[depth != 0].astype(float) - 1500).std() < 25
    # Elsewhere 0 is a value like any other: black mono16 gets its noise.
    black = image_to_array(apply(fault(FaultKind.NOISE, sigma=20.0),
                                 array_to_image(np.zeros((50, 50), np.uint16), 'mono16'), rng()))
    assert (black > 0).mean() > 0.4



def test_noise_keeps_the_zero_holes_of_32fc1_depth_but_not_a_thermal_zero():
    # Drivers write 32FC1 depth holes as 0.0 as well as NaN, and the node reads both as no
    # reading; noise gave every 0.0 hole a reading (a frame half holes went from 0.5 to 0.30
    # invalid). 0.0 in 32FC1 thermal is 0 degC, a value that gets its noise.
    depth = np.tile(np.array([0.0, 1.5], dtype=np.float32), (50, 50))
    noisy = Fault('depth', FaultKind.NOISE, 0.0, 1.0, {'sigma': 0.05})
    out = image_to_array(apply(noisy, array_to_image(depth, '32FC1'), rng()))[..., 0]
    assert (out[depth == 0] == 0).all()
    assert 0.04 < (out[depth != 0] - 1.5).std() < 0.06
    thermal = Fault('thermal', FaultKind.NOISE, 0.0, 1.0, {'sigma': 0.05})
    out = image_to_array(apply(thermal, array_to_image(np.zeros((50, 50), np.float32), '32FC1'),
                               rng()))
    assert (out != 0).mean() > 0.99

def red_scene(encoding: str, height: int = 8, width: int = 12) -> ImageFields:
    red = np.zeros((height, width, 3))
    red[..., 0] = 0.8
    return encode_frame('rgb', red, encoding)


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
@pytest.mark.parametrize(('height', 'width'), [(6, 10), (12, 15), (5, 3)])
def test_resize_keeps_a_bayer_mosaics_colour_filter_pattern(pattern, height, width):
    # Rows and columns were picked one by one, so a red scene came out magenta or blue: the
    # red pixels of the mosaic landed under green and blue filters.
    out = apply(fault(FaultKind.RESIZE, height=height, width=width),
                red_scene(f'bayer_{pattern}8'), rng())
    assert (out.height, out.width, out.encoding) == (height, width, f'bayer_{pattern}8')
    np.testing.assert_allclose(decode_frame('rgb', out).data, np.broadcast_to(
        [0.8, 0.0, 0.0], (height, width, 3)), atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize(('source', 'target'), [('rgb8', 'bayer_rggb8'),
                                                ('bgra8', 'bayer_gbrg16'),
                                                ('bayer_grbg8', 'rgb8'),
                                                ('bayer_bggr16', 'bayer_rggb8')])
def test_encoding_change_into_or_out_of_bayer_keeps_the_colours(source, target):
    # Into a Bayer encoding the colours were averaged to a grey mosaic; out of one, its raw
    # values were read as grey, a red scene becoming a grey checkerboard.
    out = apply(fault(FaultKind.ENCODING, encoding=target), red_scene(source), rng())
    assert out.encoding == target
    np.testing.assert_allclose(decode_frame('rgb', out).data, np.broadcast_to(
        [0.8, 0.0, 0.0], (8, 12, 3)), atol=1 / 255)


@pytest.mark.parametrize('encoding', ['mono8', 'mono16'])
@pytest.mark.parametrize(('height', 'width'), [(4, 4), (16, 24), (6, 10)])
def test_resize_keeps_a_polarizer_mosaics_angles(encoding, height, width):
    # Pixels were picked one by one, so halving a mosaic kept only its 90 degree pixels, and
    # the polarization the node computed from it was none (DoLP 0) instead of the scene's.
    top = np.iinfo(np.uint8 if encoding == 'mono8' else np.uint16).max
    mosaic = np.empty((8, 12), np.float64)
    for (row, col), value in {(0, 0): 0.4, (0, 1): 0.6, (1, 0): 0.6, (1, 1): 0.8}.items():
        mosaic[row::2, col::2] = value  # 90, 45 / 135, 0 deg (IMX250MZR): DoLP 1/3
    image = array_to_image((mosaic * top).astype(np.uint8 if top == 255 else np.uint16),
                           encoding)
    dolp = decode_frame('polarization', image).data[..., 2]
    np.testing.assert_allclose(dolp, 1 / 3, atol=0.01)
    out = apply(Fault('polarization', FaultKind.RESIZE, 0.0, 1.0,
                      {'height': height, 'width': width}), image, rng())
    assert (out.height, out.width, out.encoding) == (height, width, encoding)
    np.testing.assert_allclose(decode_frame('polarization', out).data[..., 2], 1 / 3, atol=0.01)
