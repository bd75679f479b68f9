"""``sensor_msgs/CompressedImage`` (image_transport's ``compressed`` and ``compressedDepth``
transports) <-> the fields of the equivalent raw ``sensor_msgs/Image``, without ROS.

Cameras are often published and recorded through image_transport: ``<base>/compressed``
carries JPEG, PNG or TIFF, ``<base>/compressedDepth`` carries depth. A ``CompressedImage`` has no
size or encoding fields; everything is in its ``format`` string and its ``data``:

``compressed``
    ``"<encoding>; <jpeg|png|tiff> compressed <inner>"``, e.g. ``"bgr8; jpeg compressed
    bgr8"``, ``"rgb8; png compressed bgr8"``, ``"mono16; png compressed "``. For JPEG and
    PNG the publisher stores a colour image as BGR (``<inner>``) and the receiver converts
    back to ``<encoding>`` (an alpha channel is not stored: it comes back as full opacity).
    TIFF (newer publishers, ``"32FC1; tiff compressed "``) stores the image as it is: any
    8-, 16- or 32-bit encoding of 1, 3 or 4 channels, alpha and float depth included, with
    an empty ``<inner>``. Old publishers send just ``"jpeg"`` or ``"png"``; the encoding is
    then what the pixels are (``mono8``, ``bgr8``, ``mono16``, ...).
``compressedDepth``
    ``"<encoding>; compressedDepth [png|rvl]"`` (plain ``"; compressedDepth"`` is the older
    PNG form). ``data`` starts with a 12-byte header, little-endian: int32 format (0 =
    inverse depth), float32 ``depthQuantA``, float32 ``depthQuantB``. ``16UC1`` (and other
    16-bit single-channel encodings) store the raw values; ``32FC1`` stores the quantized
    inverse depth ``q = A / d + B`` as 16 bits (0 = no reading) and decodes to
    ``d = A / (q - B)``, so it is exact only to about ``d**2 / A`` metres. The image after
    the header is a 16-bit PNG, or for ``rvl`` two uint32 (width, height) and the RVL
    stream (Wilson, "Fast Lossless Depth Image Compression", ISS 2017).

:func:`decompress_image` raises :class:`SensorInputError` (and only that) for anything
wrong with a message, so the node marks the sensor unhealthy instead of failing.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Collection

import cv2
import numpy as np

from mmp_ros.sensors.frame import SensorInputError
from mmp_ros.sensors.image import (
    MAX_PIXELS,
    ImageFields,
    array_to_image,
    check_pixel_count,
    encoding_spec,
    image_to_array,
)

TRANSPORTS = ('raw', 'compressed', 'compressedDepth')
"""image_transport transports a sensor can be read through (topic suffix = the name)."""
COMPRESSED_FORMATS = ('jpeg', 'png', 'tiff')
DEPTH_FORMATS = ('png', 'rvl')
DEPTH_HEADER = struct.Struct('<iff')  # format (0 = inverse depth), depthQuantA, depthQuantB
INV_DEPTH = 0
# compressed_depth_image_transport's defaults (parameters depth_max, depth_quantization)
DEFAULT_DEPTH_MAX_M = 10.0
DEFAULT_DEPTH_QUANTIZATION = 100.0
# The colour encodings, which the compressed publisher stores as BGR: name -> (channel
# order, has alpha). Every other encoding is stored as it is.
_COLOUR = {
    'rgb8': ('rgb', False), 'bgr8': ('bgr', False), 'rgba8': ('rgb', True),
    'bgra8': ('bgr', True), 'rgb16': ('rgb', False), 'bgr16': ('bgr', False),
    'rgba16': ('rgb', True), 'bgra16': ('bgr', True),
}
_COMPRESSED = re.compile(r'\s*(jpeg|png|tiff)\s+compressed(?:\s+(\w*))?\s*')
_DEPTH = re.compile(r'\s*compressedDepth(?:\s+(\w+))?\s*')
_RVL_SIZE = struct.Struct('<II')
_JPEG_END = b'\xff\xd9'


def decompress_image(
    format: str, data, *, max_pixels: int = MAX_PIXELS, encodings: Collection[str] | None = None
) -> ImageFields:
    """The raw ``sensor_msgs/Image`` fields that a ``CompressedImage`` stands for.

    ``format`` and ``data`` are the message's fields; the transport (``compressed`` or
    ``compressedDepth``) is read from ``format``. The encoding is the one ``format`` names,
    else what the decoded pixels are. Raises SensorInputError with a one-line reason for
    empty or undecodable data, an unknown format, a format or header that does not match
    the pixels, or a header declaring more than ``max_pixels`` pixels (refused before
    anything of that size is decoded or allocated). With ``encodings`` (those the sensor
    takes), a format naming another encoding is refused before decoding too.
    """
    if not isinstance(format, str):
        raise SensorInputError(f'CompressedImage format must be a string, got {format!r}')
    buffer = np.frombuffer(data, dtype=np.uint8) if memoryview(data).nbytes else None
    if buffer is None:
        raise SensorInputError(f'empty CompressedImage data (format {format!r})')
    encoding, sep, rest = format.partition(';')
    encoding = encoding.strip()
    if sep and encodings is not None and encoding not in encodings:
        raise SensorInputError(
            f'format {format!r} names {encoding or "no encoding"}, which this sensor does not '
            f'take; it takes {", ".join(encodings)}'
        )
    depth = _DEPTH.fullmatch(rest) if sep else None
    if depth is not None:
        return _decompress_depth(encoding, depth.group(1) or 'png', buffer, format,
                                 max_pixels)
    if not sep:  # an old publisher: "jpeg", "png" or nothing; the pixels say what they are
        if encoding.lower() not in ('', 'jpeg', 'jpg', 'png'):
            raise _unknown_format(format)
        return _to_fields(_imdecode(buffer, format, max_pixels), None, format)
    match = _COMPRESSED.fullmatch(rest)
    if match is None:
        raise _unknown_format(format)
    encoding_spec(encoding)  # an unknown encoding name is refused before decoding
    pixels = _imdecode(buffer, format, max_pixels, encoding)
    inner = (match.group(2) or '').lower()
    if match.group(1) == 'tiff' and not inner:  # stored as it is, in the encoding's order
        inner = encoding.lower()
    return _to_fields(pixels, (encoding, inner), format)


def compress_image(
    fields: ImageFields,
    format: str,
    *,
    jpeg_quality: int = 95,
    png_level: int = 3,
    depth_max_m: float = DEFAULT_DEPTH_MAX_M,
    depth_quantization: float = DEFAULT_DEPTH_QUANTIZATION,
) -> tuple[str, bytes]:
    """The ``(format, data)`` a publisher of the ``compressed`` or ``compressedDepth``
    transport sends for the image ``fields``.

    ``format``: ``'jpeg'``, ``'png'`` or ``'tiff'`` (the ``compressed`` transport), or
    ``'compressedDepth'``, ``'compressedDepth png'``, ``'compressedDepth rvl'``.
    ``depth_max_m`` and ``depth_quantization`` are compressed_depth_image_transport's
    parameters of the same names (``32FC1``: readings at or beyond ``depth_max_m`` and
    non-finite or non-positive ones are stored as "no reading"; ``16UC1`` values above
    ``depth_max_m`` in millimetres are stored as 0, as that publisher does).
    """
    raw = image_to_array(fields)
    encoding = fields.encoding
    kind = format.split()
    if kind and kind[0] == 'compressedDepth' and len(kind) <= 2:
        method = kind[1] if len(kind) == 2 else 'png'
        if method not in DEPTH_FORMATS:
            raise SensorInputError(f'compressedDepth stores {"/".join(DEPTH_FORMATS)}, got '
                                   f'{method!r}')
        return _compress_depth(raw, encoding, method, png_level, depth_max_m,
                               depth_quantization)
    if format not in COMPRESSED_FORMATS:
        raise SensorInputError(
            f'unknown compression {format!r}; known: jpeg, png, tiff, compressedDepth, '
            'compressedDepth png, compressedDepth rvl'
        )
    if format == 'tiff':  # stored as it is (OpenCV writes no 2-channel TIFF)
        if raw.dtype.itemsize not in (1, 2, 4) or raw.shape[2] not in (1, 3, 4):
            raise SensorInputError(
                f'TIFF stores 8-, 16- or 32-bit images of 1, 3 or 4 channels, not {encoding}'
            )
        ok, encoded = cv2.imencode('.tiff', np.ascontiguousarray(raw))
        if not ok:  # pragma: no cover - OpenCV refuses only what is checked above
            raise SensorInputError(f'OpenCV could not encode {encoding} as tiff')
        return f'{encoding}; tiff compressed ', encoded.tobytes()
    inner = ''
    if encoding in _COLOUR:  # stored as BGR, alpha dropped (as the publisher does)
        order, _ = _COLOUR[encoding]
        pixels = raw[..., :3]
        if order == 'rgb':
            pixels = pixels[..., ::-1]
        inner = 'bgr8' if raw.dtype == np.uint8 else 'bgr16'
    else:
        pixels = raw
    if format == 'jpeg':
        if pixels.dtype != np.uint8 or pixels.shape[2] not in (1, 3):
            raise SensorInputError(f'JPEG stores 8-bit mono or colour images, not {encoding}')
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    else:
        if pixels.dtype not in (np.uint8, np.uint16) or pixels.shape[2] not in (1, 3, 4):
            raise SensorInputError(
                f'PNG stores 8- or 16-bit images of 1, 3 or 4 channels, not {encoding}'
            )
        params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)]
    ok, encoded = cv2.imencode(f'.{"jpg" if format == "jpeg" else "png"}',
                               np.ascontiguousarray(pixels), params)
    if not ok:  # pragma: no cover - OpenCV refuses only what is checked above
        raise SensorInputError(f'OpenCV could not encode {encoding} as {format}')
    return f'{encoding}; {format} compressed {inner}', encoded.tobytes()


def recompression(format: str, data) -> dict:
    """The :func:`compress_image` keyword arguments that encode an image as the publisher of
    this ``CompressedImage`` did: its transport and method, and for ``compressedDepth`` of
    ``32FC1`` its quantization (``depth_max_m``, ``depth_quantization`` from the header).

    For a message :func:`decompress_image` reads: a tool that decodes a message, changes its
    pixels and sends it on (the dropout simulator) re-encodes it with these. ``16UC1`` depth
    is re-encoded with nothing cut off (its publisher already cut what it cut), JPEG at
    :func:`compress_image`'s quality (the message does not say the publisher's).
    Raises SensorInputError for a format :func:`decompress_image` refuses.
    """
    encoding, sep, rest = format.partition(';')
    depth = _DEPTH.fullmatch(rest) if sep else None
    if depth is None:
        match = _COMPRESSED.fullmatch(rest) if sep else None
        if match is not None:
            return {'format': match.group(1)}
        bare = encoding.strip().lower()
        if not sep and bare in ('', 'jpeg', 'jpg', 'png'):  # an old publisher's format
            png = bare == 'png' or (not bare and bytes(data[:8]) == _PNG_SIGNATURE)
            return {'format': 'png' if png else 'jpeg'}
        raise _unknown_format(format)
    settings: dict = {'format': f'compressedDepth {depth.group(1) or "png"}'}
    if encoding_spec(encoding.strip()).dtype == np.float32:
        _, quant_a, quant_b = DEPTH_HEADER.unpack_from(np.frombuffer(data, np.uint8))
        # depthQuantA = q (q + 1), depthQuantB = 1 - A / depth_max (compress_image)
        settings['depth_quantization'] = (math.sqrt(1.0 + 4.0 * quant_a) - 1.0) / 2.0
        settings['depth_max_m'] = quant_a / (1.0 - quant_b)
    else:
        settings['depth_max_m'] = 65.535  # every 16-bit value kept
    return settings


def _unknown_format(format: str) -> SensorInputError:
    return SensorInputError(
        f'unknown CompressedImage format {format!r}; known: "<encoding>; jpeg compressed '
        '<bgr8|...>", "<encoding>; png compressed ...", "<encoding>; tiff compressed ", '
        '"<encoding>; compressedDepth [png|rvl]", or a bare "jpeg"/"png"'
    )


def _ends_like_jpeg(data: bytes, format: str) -> bool:
    """False for a truncated JPEG: it starts with SOI but has no EOI marker after its first
    scan starts. libjpeg would decode the first rows and fill the rest with grey. Some cameras
    pad zero bytes after the EOI (a V4L2 driver up to its buffer's size), others a trailer:
    libjpeg stops at the EOI and reads none of them, so image_transport decodes that frame,
    and so does this. In a scan's entropy-coded data every 0xFF is stuffed, so an EOI found
    after the scan starts ended it; the first scan is found by the walk of the headers, past
    an EXIF thumbnail's own scan and EOI."""
    if not data.startswith(_JPEG_SOI):
        return True  # no JPEG: PNG checks its own chunks
    if data.rstrip(b'\x00').endswith(_JPEG_END):
        return True
    scan = next((at for marker, at in _jpeg_headers(data, format) if marker == _JPEG_SOS),
                None)
    return scan is not None and data.find(_JPEG_END, scan) >= 0


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_CHUNK = struct.Struct('>I4s')  # a chunk's length (of its data) and type
_JPEG_SOI = b'\xff\xd8'
_JPEG_MARKER = re.compile(rb'\xff+([^\xff])')  # fill bytes, then the marker's code
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF})
_JPEG_SOS = 0xDA  # start of scan: entropy-coded data stuffs every 0xFF, so never there
# libjpeg decodes every scan over the whole image: a progressive JPEG of 4096x4096 with its
# last 33-byte scan repeated 1000 times (99 kB) took 14 s. Encoders write 1 to 3 scans
# (baseline) or 6 to 10 (libjpeg's progressive scripts), a few more with an EXIF thumbnail.
# A sequential JPEG whose first scan holds every component is decoded in that one scan
# (libjpeg refuses another after it): its scans are not counted.
MAX_JPEG_SCANS = 100
_JPEG_SEQUENTIAL = frozenset({0xC0, 0xC1})  # baseline, extended sequential (Huffman)
# Markers walked before the first scan: a camera writes about ten (APPn, DQT, DHT, SOF), an
# ICC profile at most 255 APP2. Walked in Python (~2 us each), 10 MB of empty COM segments
# took 5.4 s, where libjpeg took 34 ms.
MAX_JPEG_HEADERS = 1000


def _jpeg_headers(data: bytes, format: str):
    """(marker, where its segment's length starts) of each marker of a JPEG up to its first
    start of scan, found as libjpeg finds them: anywhere after the segments before them
    (APPn, COM: up to 64 kB each), past fill bytes (0xFF repeated) and stray bytes between
    segments. SensorInputError after MAX_JPEG_HEADERS of them."""
    at = len(_JPEG_SOI)
    for _ in range(MAX_JPEG_HEADERS):
        found = _JPEG_MARKER.search(data, at)
        if found is None:
            return
        marker, at = found[1][0], found.end()
        yield marker, at
        if marker in (0xDA, 0xD9):  # start of scan, end of image
            return
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            continue  # a stuffed 0xFF, TEM, RSTn, SOI: no length follows
        if at + 2 > len(data):
            return
        at += max(struct.unpack_from('>H', data, at)[0], 2)  # libjpeg skips at least the length
    raise SensorInputError(
        f'JPEG with more than {MAX_JPEG_HEADERS} markers before its first scan: no camera '
        f'writes that (format {format!r})'
    )


def _jpeg_frame(data: bytes, format: str
                ) -> tuple[tuple[int, int] | None, bool, tuple[int, int] | None]:
    """From one walk of a JPEG's headers (:func:`_jpeg_headers`, as libjpeg finds them): the
    (width, height) its start-of-frame declares, read before decoding (None where it has
    none before its first scan: then OpenCV's decode decides), whether it is sequential
    with every component in its first scan (libjpeg then decodes it in that scan, whatever
    follows), and the (sample precision, component count) that frame declares (None where
    it has none; libjpeg refuses a second one)."""
    size, components, samples = None, None, None
    for marker, at in _jpeg_headers(data, format):
        if marker in _JPEG_SOF:
            if at + 7 > len(data):
                return size, False, samples
            if size is None:
                height, width = struct.unpack_from('>HH', data, at + 3)
                size = width, height
                if at + 8 <= len(data):
                    samples = data[at + 2], data[at + 7]
            if marker not in _JPEG_SEQUENTIAL or at + 8 > len(data):
                return size, False, samples
            components = data[at + 7]
        elif marker == _JPEG_SOS:
            one_scan = components is not None and at + 3 <= len(data)
            return size, one_scan and data[at + 2] == components, samples
    return size, False, samples  # the end of the image, or of the data, before a scan


# What OpenCV decodes an 8-bit JPEG of 1, 3 or 4 components to (IMREAD_UNCHANGED): grey, or
# BGR (4: CMYK or YCCK, converted); libjpeg's other component counts it does not decode.
_JPEG_CHANNELS = {1: 1, 3: 3, 4: 3}
_JPEG_COLOURS = {1: 'grey', 3: 'colour', 4: 'CMYK/YCCK'}


def _check_jpeg_samples(samples: tuple[int, int], encoding: str, format: str) -> None:
    """Refuse an 8-bit JPEG whose components cannot decode to ``encoding`` (a colour
    encoding takes the 3 channels, alpha added). A mono8 frame holding a colour JPEG of
    4096 x 4096 was decoded (0.15 s) before it was refused."""
    bits, components = samples
    if bits != 8 or components not in _JPEG_CHANNELS:
        return  # another precision (12-bit, lossless) or component count: OpenCV decides
    spec = encoding_spec(encoding)
    takes = (3, 4) if encoding in _COLOUR else (spec.channels,)
    if spec.dtype != np.uint8 or _JPEG_CHANNELS[components] not in takes:
        raise SensorInputError(
            f'format {format!r} names {encoding} ({spec.channels} x {spec.dtype.name}), but '
            f'its JPEG header declares 8-bit {_JPEG_COLOURS[components]} pixels'
        )


def _jpeg_scans(buffer: np.ndarray) -> int:
    """How many start-of-scan markers a JPEG holds (a few more where an APP segment holds
    a thumbnail). 50 us for 230 kB: bytes.count of the two bytes took 230 us."""
    fill = np.flatnonzero(buffer[:-1] == 0xFF)
    return int(np.count_nonzero(buffer[fill + 1] == _JPEG_SOS))


def _check_png_chunks(data: bytes, format: str) -> None:
    """Refuse a PNG with a chunk longer than the data left for it: OpenCV allocates (and
    zeroes) the length a chunk declares before reading it, so one flipped bit in an IDAT
    length cost a gigabyte."""
    at = len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = _PNG_CHUNK.unpack_from(data, at)
        left = len(data) - at - _PNG_CHUNK.size - 4  # its data, then a 4-byte CRC
        if length > left:
            raise SensorInputError(
                f'CompressedImage data ({len(data)} B) is no decodable PNG image (format '
                f'{format!r}): its {kind!r} chunk at byte {at} declares {length} B, and '
                f'{max(left, 0)} B follow: a corrupt length or truncated data'
            )
        if kind == b'IEND':
            return
        at += _PNG_CHUNK.size + length + 4


# What OpenCV decodes a PNG colour type to (IMREAD_UNCHANGED): its channels (a tRNS chunk adds
# alpha to RGB and palette), 16-bit for a bit depth of 16, else 8-bit (1, 2, 4 expanded).
_PNG_CHANNELS = {0: (1,), 2: (3, 4), 3: (3, 4), 4: (4,), 6: (4,)}
_PNG_COLOURS = {0: 'grey', 2: 'RGB', 3: 'palette', 4: 'grey + alpha', 6: 'RGB + alpha'}


def _png_samples(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) a PNG's IHDR declares, None without one or for a colour
    type PNG has not (then libpng refuses it)."""
    if data[12:16] != b'IHDR' or len(data) < 26 or data[25] not in _PNG_CHANNELS:
        return None
    return data[24], data[25]


def _check_png_samples(samples: tuple[int, int], encoding: str, format: str) -> None:
    """Refuse a PNG whose bit depth or colour type cannot decode to ``encoding`` (a colour
    encoding takes 3 or 4 channels, alpha added or dropped). A mono8 frame holding a 16-bit
    RGBA PNG of 4096 x 4096 was decoded (1.8 s, 256 MB) before it was refused."""
    bits, colour = samples
    spec = encoding_spec(encoding)
    takes = (3, 4) if encoding in _COLOUR else (spec.channels,)
    dtype = np.dtype(np.uint16 if bits == 16 else np.uint8)
    if dtype != spec.dtype or not set(_PNG_CHANNELS[colour]) & set(takes):
        raise SensorInputError(
            f'format {format!r} names {encoding} ({spec.channels} x {spec.dtype.name}), but '
            f'its PNG header declares {bits}-bit {_PNG_COLOURS[colour]} pixels'
        )


# little- and big-endian TIFF, then BigTIFF
_TIFF_SIGNATURES = (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')
_TIFF_SIZE_TAGS = (256, 257)  # ImageWidth, ImageLength
_TIFF_SAMPLES, _TIFF_BITS = 277, 258  # SamplesPerPixel, BitsPerSample (one per sample)
_TIFF_INTEGERS = {3: 'u2', 4: 'u4', 16: 'u8'}  # SHORT, LONG, LONG8 (BigTIFF)


def _tiff_declared_size(buffer: np.ndarray) -> tuple[int, int, int | None, int | None] | None:
    """(width, height, samples per pixel, bits of the first sample) the first directory of a
    TIFF declares (the image OpenCV decodes), read before decoding; None where the data
    holds no such directory (then OpenCV fails), and None for samples or bits that it does
    not state. The directory is anywhere in the file, usually after the image data."""
    order = '<' if buffer[0] == ord('I') else '>'
    big = buffer[2:4].tobytes() in (b'+\x00', b'\x00+')
    word, entry_size = ('u8', 20) if big else ('u4', 12)
    count_type = 'u8' if big else 'u2'
    field_at = 12 if big else 8  # where an entry's value (or its offset) starts
    if buffer.size < 16:
        return None
    start = int(np.frombuffer(buffer, order + word, 1, 8 if big else 4)[0])
    first = start + np.dtype(count_type).itemsize
    if first > buffer.size:
        return None
    declared = int(np.frombuffer(buffer, order + count_type, 1, start)[0])
    count = min(declared, (buffer.size - first) // entry_size)
    entries = np.frombuffer(buffer, np.uint8, count * entry_size, first).reshape(count,
                                                                                  entry_size)
    tags = entries[:, :2].copy().view(order + 'u2')[:, 0]
    types = entries[:, 2:4].copy().view(order + 'u2')[:, 0]

    def first_value(tag: int, one_per_sample: bool = False) -> int | None:
        """The tag's first value: in the entry's field, or for a value per sample that does
        not fit it (BitsPerSample of 3 samples) where the field points."""
        found = np.flatnonzero(tags == tag)
        if found.size == 0 or int(types[found[0]]) not in _TIFF_INTEGERS:
            return None
        kind = np.dtype(order + _TIFF_INTEGERS[int(types[found[0]])])
        entry = entries[found[0]]
        count = int(entry[4:field_at].copy().view(order + word)[0])
        if one_per_sample and count * kind.itemsize > entry_size - field_at:
            at = int(entry[field_at:].copy().view(order + word)[0])
            if at + kind.itemsize > buffer.size:
                return None
            return int(np.frombuffer(buffer, kind, 1, at)[0])
        return int(entry[field_at : field_at + kind.itemsize].copy().view(kind)[0])

    width, height = (first_value(tag) for tag in _TIFF_SIZE_TAGS)
    if width is None or height is None:
        return None
    return width, height, first_value(_TIFF_SAMPLES), first_value(_TIFF_BITS, True)


def _check_tiff_samples(samples: int | None, bits: int | None, encoding: str,
                        format: str) -> None:
    """Refuse a TIFF whose samples cannot decode to ``encoding``: wider ones (OpenCV decodes
    8-, 16-, 32- and 64-bit samples at their width) or more of them than it takes (a colour
    encoding 3 or 4, its alpha added or dropped). A mono8 frame holding 4 x 32-bit float
    at 4096 x 4096 was decoded (2.5-8.8 s, 510 MB) before it was refused."""
    spec = encoding_spec(encoding)
    most = 4 if encoding in _COLOUR else spec.channels
    wrong_bits = bits in (8, 16, 32, 64) and bits != 8 * spec.dtype.itemsize
    if wrong_bits or (samples is not None and samples > most):
        raise SensorInputError(
            f'format {format!r} names {encoding} ({spec.channels} x {spec.dtype.name}), but '
            f'its TIFF header declares {samples or 1} x {bits or 1}-bit samples a pixel'
        )


def _imdecode(buffer: np.ndarray, format: str, max_pixels: int = MAX_PIXELS,
              encoding: str | None = None) -> np.ndarray:
    """The pixels of a JPEG, PNG or TIFF; ``encoding``: what the format names, which a
    TIFF's declared samples, a PNG's bit depth and colour type and a JPEG's components are
    checked against before decoding."""
    # OpenCV decodes whatever it recognises (WebP, BMP, JPEG 2000, ...), and a few bytes of
    # those may declare and fill a picture of 2**30 pixels: the transports carry JPEG, PNG and
    # TIFF alone, whose declared sizes are checked below.
    head = buffer[:8].tobytes()
    tiff = head.startswith(_TIFF_SIGNATURES)
    if not (head.startswith((_PNG_SIGNATURE, _JPEG_SOI)) or tiff):
        raise SensorInputError(
            f'CompressedImage data ({buffer.size} B) is no decodable JPEG, PNG or TIFF image '
            f'(format {format!r}): it starts with {head!r}, the signature of none of them'
        )
    data = buffer.tobytes()
    if head.startswith(_PNG_SIGNATURE):
        _check_png_chunks(data, format)
    # A header that declares a huge image (a corrupt or hostile message) would have OpenCV
    # allocate it, up to 2**30 pixels, before it finds the data short: refused first.
    one_scan, jpeg_samples = False, None
    if tiff:
        size = _tiff_declared_size(buffer)
    elif head.startswith(_JPEG_SOI):
        size, one_scan, jpeg_samples = _jpeg_frame(data, format)
    else:  # PNG: its IHDR
        ihdr = data[12:16] == b'IHDR' and len(data) >= 24
        size = struct.unpack('>II', data[16:24]) if ihdr else None
    if size is not None:
        check_pixel_count(size[0], size[1], max_pixels,
                          f'CompressedImage (format {format!r}) declares')
    if tiff and size is not None and encoding is not None:
        _check_tiff_samples(size[2], size[3], encoding, format)
    if (encoding is not None and head.startswith(_PNG_SIGNATURE)
            and (samples := _png_samples(data)) is not None):
        _check_png_samples(samples, encoding, format)
    if encoding is not None and jpeg_samples is not None:
        _check_jpeg_samples(jpeg_samples, encoding, format)
    if not _ends_like_jpeg(data, format):
        raise SensorInputError(
            f'truncated JPEG: the data ({buffer.size} B) has no end-of-image marker after its '
            f'scan (format {format!r})'
        )
    if (head.startswith(_JPEG_SOI) and not one_scan
            and (scans := _jpeg_scans(buffer)) > MAX_JPEG_SCANS):
        raise SensorInputError(
            f'JPEG of {scans} scans, over the {MAX_JPEG_SCANS} this decoder takes: libjpeg '
            f'decodes each over the whole image (format {format!r})'
        )
    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        pixels = None
    if pixels is None or pixels.size == 0:
        raise SensorInputError(
            f'CompressedImage data ({buffer.size} B) is no decodable JPEG, PNG or TIFF image '
            f'(format {format!r}): corrupt or truncated'
        )
    return pixels if pixels.ndim == 3 else pixels[:, :, np.newaxis]


def _pixel_encoding(pixels: np.ndarray) -> str | None:
    """The encoding image_transport gives decoded pixels that the format does not name."""
    names = {1: 'mono', 3: 'bgr', 4: 'bgra'}
    bits = {np.dtype(np.uint8): '8', np.dtype(np.uint16): '16'}.get(pixels.dtype)
    name = names.get(pixels.shape[2])
    return None if bits is None or name is None else f'{name}{bits}'


def _to_fields(
    pixels: np.ndarray, named: tuple[str, str] | None, format: str
) -> ImageFields:
    if named is None:
        encoding = _pixel_encoding(pixels)
        if encoding is None:
            raise SensorInputError(
                f'decoded {pixels.shape[2]}-channel {pixels.dtype.name} pixels, and format '
                f'{format!r} names no encoding for them'
            )
        return array_to_image(pixels, encoding)
    encoding, inner = named
    spec = encoding_spec(encoding)
    if encoding in _COLOUR and pixels.shape[2] in (3, 4):
        order, alpha = _COLOUR[encoding]
        stored = 'rgb' if inner.startswith('rgb') else 'bgr'  # "compressed bgr8" or "rgb8"
        colour = pixels[..., :3]
        if stored != order:
            colour = colour[..., ::-1]
        if alpha:
            opaque = np.iinfo(pixels.dtype).max
            alpha_plane = pixels[..., 3:] if pixels.shape[2] == 4 else np.full(
                colour.shape[:2] + (1,), opaque, dtype=pixels.dtype)
            colour = np.concatenate([colour, alpha_plane], axis=2)
        pixels = colour
    if pixels.shape[2] != spec.channels or pixels.dtype != spec.dtype:
        raise SensorInputError(
            f'format {format!r} names {encoding} ({spec.channels} x {spec.dtype.name}), but '
            f'the data decodes to {pixels.shape[2]} x {pixels.dtype.name} pixels'
        )
    return array_to_image(np.ascontiguousarray(pixels), encoding)


# --- compressedDepth -------------------------------------------------------------------


def _decompress_depth(
    encoding: str, method: str, buffer: np.ndarray, format: str, max_pixels: int
) -> ImageFields:
    if method not in DEPTH_FORMATS:
        raise SensorInputError(
            f'compressedDepth {method!r} is not supported (format {format!r}); known: '
            f'{", ".join(DEPTH_FORMATS)}'
        )
    spec = encoding_spec(encoding)
    if spec.channels != 1 or spec.dtype not in (np.dtype(np.uint16), np.dtype(np.float32)):
        raise SensorInputError(
            f'compressedDepth carries single-channel 16-bit or 32FC1 depth, but format '
            f'{format!r} names {encoding}'
        )
    if buffer.size <= DEPTH_HEADER.size:
        raise SensorInputError(
            f'compressedDepth data of {buffer.size} B holds no image after its '
            f'{DEPTH_HEADER.size}-byte header (format {format!r})'
        )
    kind, quant_a, quant_b = DEPTH_HEADER.unpack_from(buffer)
    body = buffer[DEPTH_HEADER.size:]
    if method == 'png':
        if not body[:8].tobytes().startswith(_PNG_SIGNATURE):  # OpenCV decodes JPEG, TIFF too
            raise SensorInputError(
                f'compressedDepth png data is no PNG after its {DEPTH_HEADER.size}-byte header: '
                f'it starts with {body[:8].tobytes()!r} (format {format!r})'
            )
        declared = _png_samples(body[:26].tobytes())
        if declared is not None and declared != (16, 0):  # refused before decoding
            raise SensorInputError(
                f'compressedDepth PNG header declares {declared[0]}-bit '
                f'{_PNG_COLOURS[declared[1]]} pixels, not the single 16-bit channel it must '
                f'(format {format!r})'
            )
        stored = _imdecode(body, format, max_pixels)
        if stored.dtype != np.uint16 or stored.shape[2] != 1:
            raise SensorInputError(
                f'compressedDepth PNG holds {stored.shape[2]} x {stored.dtype.name} pixels, '
                f'not the single 16-bit channel it must (format {format!r})'
            )
        stored = stored[..., 0]
    else:
        stored = _rvl_decode(body, format, max_pixels)
    if spec.dtype == np.uint16:  # raw values; the header's parameters are unused
        return array_to_image(stored, encoding)
    if kind != INV_DEPTH or not (math.isfinite(quant_a) and quant_a > 0.0
                                 and math.isfinite(quant_b) and quant_b < 1.0):
        raise SensorInputError(
            f'compressedDepth {encoding} header is no inverse-depth quantization: format '
            f'{kind}, depthQuantA {quant_a}, depthQuantB {quant_b} (need format 0, A > 0, '
            'B < 1)'
        )
    # float32 arithmetic as the reference decoder; B < 1 keeps every stored q >= 1 positive
    a, b = np.float32(quant_a), np.float32(quant_b)
    with np.errstate(divide='ignore'):
        metres = a / (stored.astype(np.float32) - b)
    metres[stored == 0] = np.nan
    return array_to_image(metres.astype(np.float32), encoding)


def _compress_depth(
    raw: np.ndarray,
    encoding: str,
    method: str,
    png_level: int,
    depth_max_m: float,
    depth_quantization: float,
) -> tuple[str, bytes]:
    if raw.shape[2] != 1 or raw.dtype not in (np.uint16, np.float32):
        raise SensorInputError(
            f'compressedDepth stores single-channel 16-bit or 32FC1 depth, not {encoding}'
        )
    if not (depth_max_m > 0.0 and depth_quantization > 0.0):
        raise SensorInputError(
            f'compressedDepth needs depth_max_m > 0 and depth_quantization > 0, got '
            f'{depth_max_m} and {depth_quantization}'
        )
    plane = raw[..., 0]
    quant_a = quant_b = 0.0
    if plane.dtype == np.uint16:
        stored = plane.copy()
        stored[stored > np.uint16(min(int(depth_max_m * 1000.0), 65535))] = 0
    else:
        a = np.float32(depth_quantization) * (np.float32(depth_quantization) + np.float32(1))
        b = np.float32(1) - a / np.float32(depth_max_m)
        quant_a, quant_b = float(a), float(b)
        good = np.isfinite(plane) & (plane > 0.0) & (plane < np.float32(depth_max_m))
        with np.errstate(divide='ignore', invalid='ignore'):
            q = np.where(good, a / np.where(good, plane, 1) + b, 0)
        stored = np.clip(np.trunc(q), 0, 65535).astype(np.uint16)  # C's float -> ushort
    if method == 'png':
        ok, encoded = cv2.imencode('.png', stored, [cv2.IMWRITE_PNG_COMPRESSION, png_level])
        if not ok:  # pragma: no cover
            raise SensorInputError(f'OpenCV could not encode {encoding} as PNG')
        body = encoded.tobytes()
    else:
        body = _rvl_encode(stored)
    header = DEPTH_HEADER.pack(INV_DEPTH, quant_a, quant_b)
    return f'{encoding}; compressedDepth {method}', header + body


# --- RVL -------------------------------------------------------------------------------


def _rvl_nibbles(stream: np.ndarray) -> np.ndarray:
    """The 4-bit codes of an RVL stream in order: each little-endian 32-bit word holds 8,
    the first in its top bits (a partial last word is ignored)."""
    octets = stream[: stream.size // 4 * 4].reshape(-1, 4)[:, ::-1].ravel()
    nibbles = np.empty(2 * octets.size, dtype=np.uint8)
    nibbles[0::2] = octets >> 4
    nibbles[1::2] = octets & 0xF
    return nibbles


def _rvl_values(stream: np.ndarray, format: str) -> np.ndarray:
    """Every variable-length value of the stream (3 payload bits a code, lowest first; a
    value's last code, at ``ends``, has no continuation bit), as int64.

    ``window[j]`` holds the payloads of codes ``j-3 .. j``, code ``j`` in its top bits;
    joining the windows ending at a value's last code gives its codes with the last one on
    top, and shifting out the codes below its first leaves the value. Built in place, and
    the code positions freed on return: a temporary of the values' size is memory the
    allocator may hand back and the next frame fault in again (docs/sensors.md).
    """
    nibbles = _rvl_nibbles(stream)
    ends = np.flatnonzero(nibbles < 0x8)  # a value's last code has no continuation bit
    if ends.size == 0:
        raise SensorInputError(f'corrupt RVL stream: no complete value (format {format!r})')
    lengths = np.empty_like(ends)
    lengths[0] = ends[0] + 1
    np.subtract(ends[1:], ends[:-1], out=lengths[1:])
    if lengths.max() > 11:  # 33 bits: no count or delta of 16-bit data
        raise SensorInputError(f'corrupt RVL stream: a value over 32 bits (format {format!r})')
    groups = -(-int(lengths.max()) // 4)
    lengths = lengths.astype(np.uint8)  # 11 at most: the int64 ones freed before the values
    payload = nibbles & 0x7
    pair = payload << 3
    pair[1:] |= payload[:-1]
    # zero windows before the first code: the codes before a value's first shift out
    padded = np.zeros(4 * (groups - 1) + nibbles.size, dtype=np.uint16)
    window = padded[4 * (groups - 1):]
    window[:] = pair
    window <<= 6
    window[2:] |= pair[:-2]
    values = window[ends].astype(np.int64)
    for group in range(1, groups):
        values <<= 12
        values |= padded[4 * (groups - 1 - group):][ends]  # the windows 4 codes earlier
    values >>= 3 * (4 * groups - lengths)  # 3 bits for each code short of the groups' 4
    return values


def _rvl_decode(body: np.ndarray, format: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W) uint16 from ``uint32 width, uint32 height`` + an RVL stream.

    The stream is pairs of run lengths (zeros, nonzeros), each followed by one zig-zag delta
    per nonzero pixel against the previous nonzero pixel (across zero runs), all as
    variable-length values. Every value is decoded at once; only the walk from one pair to
    the next is a loop, one step per run pair.
    """
    if body.size < _RVL_SIZE.size + 4:
        raise SensorInputError(f'RVL data of {body.size} B is too short (format {format!r})')
    width, height = _RVL_SIZE.unpack_from(body)
    pixels = width * height
    if pixels == 0:
        raise SensorInputError(f'RVL image of {width}x{height} pixels is empty')
    stream = body[_RVL_SIZE.size:]
    # A run of zeros of any length is one value, so the data bounds no size: one the stream
    # does not fill is found by the walk below, before anything of that size is allocated.
    check_pixel_count(width, height, max_pixels, f'RVL header (format {format!r}) claims')
    # At most 4 B a pixel: a pair of one-nibble counts per pixel, and a nonzero pixel's
    # delta in 6 nibbles (16 bits zig-zagged), then the last word's padding. A longer stream
    # is corrupt; decoding it first cost seconds and about 100 B of memory a byte.
    if stream.size > 4 * pixels + 8:
        raise SensorInputError(
            f'corrupt RVL stream: {stream.size} B, more than any RVL of {width}x{height} '
            f'pixels takes (format {format!r})'
        )
    values = _rvl_values(stream, format)
    # the pairs: each starts 2 + its nonzeros after the one before; checked below
    count = values.size
    lookup = memoryview(values)
    pairs: list[int] = []
    append = pairs.append
    at = index = 0
    while at < pixels and index < count - 1:
        append(index)
        nonzeros = lookup[index + 1]
        if not (nonzeros or lookup[index]):  # an encoder's pairs each cover a pixel or more
            break  # corrupt (zero-filled data): found below, without walking it to its end
        at += lookup[index] + nonzeros
        index += 2 + nonzeros
    starts = np.array(pairs, dtype=np.int64)
    zeros, nonzeros = values[starts], values[starts + 1]
    reached = np.cumsum(zeros + nonzeros)  # pixels decoded after each pair
    after = starts + 2 + nonzeros
    stop = np.flatnonzero((reached >= pixels) | (after > count))
    if stop.size == 0:
        done = int(reached[-1]) if reached.size else 0
        raise SensorInputError(
            f'truncated RVL stream: {done} of {width}x{height} pixels decoded '
            f'(format {format!r})'
        )
    last = int(stop[0])
    if reached[last] > pixels or after[last] > count:
        raise SensorInputError(
            f'corrupt RVL stream: runs overrun the {width}x{height} image or the data '
            f'(format {format!r})'
        )
    index = int(after[last])
    if values[index:].any() or count - index > 8:  # only the last word's padding
        raise SensorInputError(
            f'corrupt RVL stream: it holds more than the {width}x{height} pixels its size '
            f'says (format {format!r})'
        )
    runs = np.empty(2 * (last + 1), dtype=np.int64)
    runs[0::2], runs[1::2] = zeros[: last + 1], nonzeros[: last + 1]
    filled = np.repeat(np.tile(np.array([False, True]), last + 1), runs)
    is_count = np.zeros(index, dtype=bool)
    is_count[starts[: last + 1]] = is_count[starts[: last + 1] + 1] = True
    zigzag = values[:index][~is_count]
    # the pixels are the deltas' running sum modulo 2**16: only their low 16 bits count, so
    # the zig-zag is undone and summed in uint16, which wraps
    sign = zigzag.astype(np.uint16)
    sign &= 1
    np.negative(sign, out=sign)
    zigzag >>= 1
    delta = zigzag.astype(np.uint16)
    delta ^= sign
    out = np.zeros(pixels, dtype=np.uint16)
    out[filled] = np.cumsum(delta, dtype=np.uint16)
    return out.reshape(height, width)


def _rvl_encode(stored: np.ndarray) -> bytes:
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
    # VLE: 3 payload bits a code, lowest first, bit 3 set on all but a value's last one;
    # written one code position at a time for the values that long (values < 2**32: the
    # counts of an image under 4 G pixels and the deltas of 16-bit data)
    bits = np.frexp(values.astype(np.float64))[1]  # bit length (0 for 0)
    counts = np.maximum((bits + 2) // 3, 1).astype(np.uint8)
    first = np.cumsum(counts, dtype=np.int64) - counts
    nibbles = np.zeros(-(-int(first[-1] + counts[-1]) // 8) * 8, dtype=np.uint8)  # last word: 0s
    small = values.astype(np.uint32)
    which = np.arange(values.size)
    for code in range(int(counts.max())):
        more = counts[which] > code + 1
        payload = ((small[which] >> np.uint32(3 * code)) & 0x7).astype(np.uint8)
        nibbles[first[which] + code] = payload | (more.view(np.uint8) << np.uint8(3))
        which = which[more]
    octets = (nibbles[0::2] << 4) | nibbles[1::2]  # the first code of a word in its top bits
    height, width = stored.shape
    return _RVL_SIZE.pack(width, height) + octets.reshape(-1, 4)[:, ::-1].tobytes()
