"""Rewrite ``header.stamp`` inside serialized CDR bytes, without deserializing.

A message whose first field is a ``std_msgs/Header`` starts, after the 4-byte encapsulation
header, with the stamp: int32 sec, uint32 nanosec (in the byte order the encapsulation names).
Replaying a bag recorded long ago gives stamps that a live node reads as stale, and a looped
bag gives stamps that jump backwards; rewriting those 8 bytes to the publish time fixes both
at the cost of a copy, where deserializing a 640x480 image and serializing it again would cost
a conversion of every pixel.
"""

from __future__ import annotations

from mmp_ros.bags.errors import BagError

# Encapsulation identifiers (RTPS 10.5): plain CDR and parameter-list CDR, big/little endian.
_BYTE_ORDER = {b'\x00\x00': 'big', b'\x00\x01': 'little', b'\x00\x02': 'big',
               b'\x00\x03': 'little'}


def _header_byte_order(data: bytes) -> str:
    """'big' or 'little': the byte order of ``data``, a CDR message long enough to start
    with a Header's stamp."""
    order = _BYTE_ORDER.get(bytes(data[:2]))
    if order is None or len(data) < 12:
        raise BagError(f'not a CDR message with a header (encapsulation {bytes(data[:2])!r}, '
                       f'{len(data)} bytes)')
    return order


def restamp(data: bytes, stamp_ns: int) -> bytes:
    """``data`` (a message that starts with a Header) with its stamp set to ``stamp_ns``."""
    order = _header_byte_order(data)
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return b''.join((data[:4], sec.to_bytes(4, order, signed=True),
                     nanosec.to_bytes(4, order), data[12:]))


def header_stamp_ns(data: bytes) -> int:
    """The ``header.stamp`` of a serialized message that starts with a Header."""
    order = _header_byte_order(data)
    sec = int.from_bytes(data[4:8], order, signed=True)
    return sec * 1_000_000_000 + int.from_bytes(data[8:12], order)
