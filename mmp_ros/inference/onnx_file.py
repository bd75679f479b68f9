"""Read an exported model's self-description without the ``onnx`` package.

The runtime needs three things from an ONNX file before any backend touches it:
the :class:`~mmp_ros.metadata.ModelMetadata` under the ``metadata_props`` key
``mmp_ros``, the opset, and the file's SHA-256 (which stamps TensorRT engines).
``onnx`` is a training dependency and parsing the whole graph would copy every
weight, so this module walks only the top level of the protobuf wire format
(``ModelProto``): a handful of fields, with every length checked against the
bytes that are really there. A truncated or foreign file is caught here, with a
message naming it, instead of deep inside a backend.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mmp_ros.inference.errors import ModelFileError
from mmp_ros.metadata import METADATA_KEY, MetadataError, ModelMetadata

# ModelProto field numbers (onnx/onnx.proto3).
_IR_VERSION = 1
_PRODUCER_NAME = 2
_GRAPH = 7
_OPSET_IMPORT = 8
_METADATA_PROPS = 14
# OperatorSetIdProto and StringStringEntryProto field numbers.
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2
_ENTRY_KEY, _ENTRY_VALUE = 1, 2

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


class _WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise _WireError('varint runs past the end of the data')
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise _WireError('varint longer than 10 bytes')


def _fields(buf: memoryview):
    """Yield ``(field_number, wire_type, value)``; ``value`` is an int or a memoryview."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise _WireError('field number 0')
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire_type == _LENGTH_DELIMITED:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise _WireError(
                    f'field {number} claims {length} bytes but only {len(buf) - pos} remain'
                )
            value, pos = buf[pos : pos + length], pos + length
        elif wire_type in (_FIXED64, _FIXED32):
            width = 8 if wire_type == _FIXED64 else 4
            if pos + width > len(buf):
                raise _WireError(f'field {number} runs past the end of the data')
            value, pos = int.from_bytes(buf[pos : pos + width], 'little'), pos + width
        else:
            raise _WireError(f'unsupported wire type {wire_type} in field {number}')
        yield number, wire_type, value


def _text(value: memoryview) -> str:
    return bytes(value).decode('utf-8')


@dataclass(frozen=True)
class OnnxFileInfo:
    """What the runtime learns from an ONNX file's top level."""

    path: Path
    sha256: str
    ir_version: int
    producer: str
    opsets: dict[str, int]  # domain ('' = ai.onnx) -> version
    metadata_props: dict[str, str]

    @property
    def metadata(self) -> ModelMetadata:
        """The model's :class:`ModelMetadata`; :class:`ModelFileError` if it is absent or bad."""
        text = self.metadata_props.get(METADATA_KEY)
        if text is None:
            raise ModelFileError(
                f'{self.path}: no {METADATA_KEY!r} entry in its metadata_props, so it was not '
                'exported by mmp_ros (or was re-saved without metadata). Export it with '
                '`mmp_ros export`.'
            )
        try:
            return ModelMetadata.from_json(text, source=str(self.path))
        except MetadataError as exc:
            raise ModelFileError(str(exc)) from exc


_ZIP_MAGIC = b'PK\x03\x04'


def read_onnx_file(path: str | Path) -> OnnxFileInfo:
    """Check that ``path`` is a complete ONNX model and read its top-level facts.

    Raises :class:`ModelFileError` naming the file when it is missing, empty, truncated or
    not an ONNX model at all.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f'model file {path} does not exist; check the path')
    if not path.is_file():
        raise ModelFileError(f'model file {path} is not a regular file')
    if path.stat().st_size == 0:
        raise ModelFileError(f'model file {path} is empty (an interrupted copy or export?)')
    ir_version, producer, has_graph = 0, '', False
    opsets: dict[str, int] = {}
    props: dict[str, str] = {}
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f'model file {path} cannot be read: {exc}') from exc
    if data.startswith(_ZIP_MAGIC):  # what torch.save writes
        raise ModelFileError(
            f'model file {path} is a PyTorch checkpoint, not an ONNX model: export it with '
            '`mmp_ros export`, or run it with the torch backend'
        )
    try:
        for number, wire_type, value in _fields(memoryview(data)):
            if number == _IR_VERSION and wire_type == _VARINT:
                ir_version = value
            elif number == _PRODUCER_NAME and wire_type == _LENGTH_DELIMITED:
                producer = _text(value)
            elif number == _GRAPH and wire_type == _LENGTH_DELIMITED:
                has_graph = True
            elif number == _OPSET_IMPORT and wire_type == _LENGTH_DELIMITED:
                entry = {n: v for n, _, v in _fields(value)}
                domain = _text(entry[_OPSET_DOMAIN]) if _OPSET_DOMAIN in entry else ''
                opsets[domain] = int(entry.get(_OPSET_VERSION, 0))
            elif number == _METADATA_PROPS and wire_type == _LENGTH_DELIMITED:
                entry = {n: v for n, _, v in _fields(value)}
                key = _text(entry[_ENTRY_KEY]) if _ENTRY_KEY in entry else ''
                props[key] = _text(entry[_ENTRY_VALUE]) if _ENTRY_VALUE in entry else ''
    except (_WireError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f'model file {path} ({len(data)} bytes) is truncated or not an ONNX model: {exc}. '
            'Re-copy or re-export it.'
        ) from exc
    if not has_graph or ir_version == 0 or not opsets:
        raise ModelFileError(
            f'model file {path} is not a complete ONNX model (graph, IR version or opset '
            'missing); re-copy or re-export it'
        )
    return OnnxFileInfo(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        ir_version=ir_version,
        producer=producer,
        opsets=opsets,
        metadata_props=props,
    )


def read_model_metadata(path: str | Path) -> ModelMetadata:
    """The :class:`ModelMetadata` of an exported ONNX model, read from the file alone."""
    return read_onnx_file(path).metadata
