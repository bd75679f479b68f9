"""sensor_msgs/Image (and CompressedImage) <-> the sensor layer's ``ImageFields``
(``mmp_ros.sensors.image``).

The sensor layer decodes images from six plain fields (``height, width, encoding,
is_bigendian, step, data``) so that it never imports a message type; this module is the only
place that moves those fields in and out of ``sensor_msgs/Image``. It copies nothing it does
not have to: the pixel buffer is handed over as a read-only view of the message's own array.
"""

from __future__ import annotations

from typing import Any, Protocol

from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image


class ImageFieldsLike(Protocol):
    """Anything with the six image fields (``mmp_ros.sensors.image.ImageFields`` is one)."""

    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int
    data: Any  # bytes-like


def image_field_values(msg: Image) -> dict[str, Any]:
    """The message's six image fields as keywords; ``data`` a zero-copy read-only view.

    rclpy stores ``uint8[]`` as ``array.array('B')``; a ``memoryview`` of it is bytes-like
    (``np.frombuffer`` reads it in place), and converting to ``bytes`` would copy a whole
    frame on every callback.
    """
    return {
        'height': msg.height,
        'width': msg.width,
        'encoding': msg.encoding,
        'is_bigendian': bool(msg.is_bigendian),
        'step': msg.step,
        'data': memoryview(msg.data).toreadonly(),
    }


def to_image_fields(msg: Image, *, max_pixels: int | None = None):
    """The sensor layer's ``ImageFields`` for ``msg`` (imported here, on first use).

    With ``max_pixels``, a message of more pixels raises ``SensorInputError``.
    """
    from mmp_ros.sensors.image import ImageFields, check_pixel_count

    if max_pixels is not None:
        check_pixel_count(msg.width, msg.height, max_pixels, 'Image of')
    return ImageFields(**image_field_values(msg))


def compressed_image_fields(msg: CompressedImage, *, max_pixels: int | None = None,
                            encodings=None):
    """The ``ImageFields`` of the raw image a ``sensor_msgs/CompressedImage`` carries
    (image_transport's compressed or compressedDepth transport, told by its ``format``).

    Raises ``SensorInputError`` for a message that does not decode, as a malformed
    ``Image`` does in :func:`mmp_ros.sensors.decode_frame`, and for one whose header
    declares more than ``max_pixels`` (default: the decoder's own limit) or whose format
    names an encoding not in ``encodings`` (before decoding it).
    """
    from mmp_ros.sensors.compressed import decompress_image
    from mmp_ros.sensors.image import MAX_PIXELS

    return decompress_image(msg.format, memoryview(msg.data).toreadonly(),
                            max_pixels=MAX_PIXELS if max_pixels is None else max_pixels,
                            encodings=encodings)


def transport_topic(node: Any, base: str, transport: str) -> tuple[str, type]:
    """(topic, message type) of the image topic ``base`` read or written through an
    image_transport ``transport`` (``raw``, ``compressed``, ``compressedDepth``).

    image_transport's naming: ``base`` itself for raw; else ``base`` as the node resolves it
    (after remapping: ``-r depth/image:=/camera/depth/image_raw``) plus ``/<transport>``, a
    ``sensor_msgs/CompressedImage`` topic, so that a remap of the base topic applies to every
    transport.
    """
    if transport == 'raw':
        return base, Image
    return f'{node.resolve_topic_name(base)}/{transport}', CompressedImage


def message_type_name(message_type: type) -> str:
    """A message class's type as the ROS graph names it: ``sensor_msgs/msg/Image``."""
    return f'{message_type.__module__.split(".")[0]}/msg/{message_type.__name__}'


def to_image_msg(fields: ImageFieldsLike, *, stamp: Time, frame_id: str) -> Image:
    """A ``sensor_msgs/Image`` carrying ``fields`` under the given header.

    The row stride and the buffer must agree (``step * height`` bytes, ``step`` at least one
    row of pixels' worth is the encoder's job); a mismatch here is a programming error, so it
    raises instead of publishing a message that every subscriber would reject.
    """
    data = fields.data
    size = memoryview(data).nbytes
    if size != fields.step * fields.height:
        raise ValueError(
            f'image buffer holds {size} bytes, but step {fields.step} x height '
            f'{fields.height} = {fields.step * fields.height} ({fields.encoding})'
        )
    msg = Image(
        height=fields.height,
        width=fields.width,
        encoding=fields.encoding,
        is_bigendian=int(fields.is_bigendian),
        step=fields.step,
    )
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.data = data if isinstance(data, bytes) else bytes(data)
    return msg
