"""Read an exported model's self-description without the ``onnx`` package.

The runtime needs three things from an ONNX file before any backend touches it:
the :class:`~mmp_ros.metadata.ModelMetadata` under the ``metadata_props`` key
``mmp_ros``, the opset, and the file's SHA-256 (which stamps TensorRT engines).
``onnx`` is a training dependency and parsing the whole graph would copy every
weight, so this module walks only the top level of the protobuf wire format
(``ModelProto``): a handful of fields, with every length checked against the
bytes that are really there. A truncated or foreign file is caught here, with a
message naming it, instead of deep inside a backend. In the graph it reads only the
nodes and shape information (never the weights), for the one fact about the model
that no input or output shape shows: how many classes ``labels`` range over, which
the metadata's class names must match.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from mmp_ros.errors import found_in, home_not_expanded
from mmp_ros.inference.backend import LABELS_OUTPUT, LOGITS_OUTPUT
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
# GraphProto, NodeProto, AttributeProto, ValueInfoProto, TypeProto, TypeProto.Tensor,
# TensorShapeProto and its Dimension field numbers.
_GRAPH_NODE, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 1, 11, 12, 13
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTRIBUTE_NAME, _ATTRIBUTE_INT = 1, 3
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM, _DIM_VALUE = 1, 2, 1, 1
# GraphProto.initializer; TensorProto.external_data and data_location (EXTERNAL = 1).
_GRAPH_INITIALIZER, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 5, 13, 14, 1

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


def _field(message: memoryview | None, number: int):
    """The value of field ``number`` in ``message`` (the last, as protobuf reads it), or None."""
    found = None
    for n, _, value in _fields(message) if message is not None else ():
        if n == number:
            found = value
    return found


def _dims(value_info: memoryview) -> tuple[str, tuple[int | None, ...]]:
    """A ValueInfoProto's name and its tensor's dims (None where not a fixed size)."""
    name = _field(value_info, _VALUE_NAME)
    tensor = _field(_field(value_info, _VALUE_TYPE), _TYPE_TENSOR)
    dims = []
    for number, _, dim in _fields(_field(tensor, _TENSOR_SHAPE) or memoryview(b'')):
        if number == _SHAPE_DIM:
            size = _field(dim, _DIM_VALUE)
            dims.append(size if isinstance(size, int) else None)
    return (_text(name) if name is not None else ''), tuple(dims)


def _input_dims(graph: memoryview) -> dict[str, tuple[int | None, ...]]:
    """Each graph input's dims (None where not a fixed size), in the graph's order."""
    return dict(_dims(value) for number, wire_type, value in _fields(graph)
                if number == _GRAPH_INPUT and wire_type == _LENGTH_DELIMITED)


def _external_files(graph: memoryview) -> dict[str, int]:
    """The files (``location``, relative to the model) that hold the weights of initializers
    stored as external data, in sorted order, each with the bytes its weights need (the end
    of the last ``offset`` + ``length`` the model gives in it)."""
    locations: dict[str, int] = {}
    for number, wire_type, tensor in _fields(graph):
        if number != _GRAPH_INITIALIZER or wire_type != _LENGTH_DELIMITED:
            continue
        entries, external = {}, False
        for n, _, value in _fields(tensor):
            if n == _TENSOR_DATA_LOCATION:
                external = value == _EXTERNAL
            elif n == _TENSOR_EXTERNAL_DATA:
                entry = {k: v for k, _, v in _fields(value)}
                if _ENTRY_KEY in entry and _ENTRY_VALUE in entry:
                    entries[_text(entry[_ENTRY_KEY])] = _text(entry[_ENTRY_VALUE])
        if external and 'location' in entries:
            offset, length = entries.get('offset', '0'), entries.get('length', '0')
            end = int(offset) + int(length) if offset.isdigit() and length.isdigit() else 0
            location = entries['location']
            locations[location] = max(locations.get(location, 0), end)
    return dict(sorted(locations.items()))


def _sha256(path: Path, data: bytes, external: dict[str, int]) -> str:
    """SHA-256 of the model file, and of its external weight files where it has any (new
    weights of the same shapes change only those); an external file shorter than the
    weights the model reads from it is refused (an interrupted copy)."""
    digest = hashlib.sha256(data)
    for location, needed in external.items():
        file = path.parent / location
        digest.update(b'\0' + location.encode() + b'\0')
        size = 0
        try:
            with open(file, 'rb') as stream:
                while chunk := stream.read(1 << 24):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise ModelFileError(
                f'model file {path}: its external data file {file} (holding its weights) '
                f'cannot be read ({exc.strerror or exc}); copy it beside the model'
            ) from exc
        if size < needed:  # ONNX Runtime's own words for it were a C++ backtrace's
            raise ModelFileError(
                f'model file {path}: its external data file {file} has {size} bytes, its '
                f'weights need {needed} (an interrupted copy?); copy it beside the model again'
            )
    return digest.hexdigest()


def _graph_classes(graph: memoryview) -> int | None:
    """How many classes the graph's ``labels`` are the argmax over: the ArgMax behind
    ``labels`` (through casts and squeezes), its input's size along its axis as the file's
    shape information records it, else the ``logits`` output's second dim; None where the
    file does not say."""
    producers: dict[str, tuple[str, list[str], int]] = {}  # output -> op, inputs, axis
    shapes: dict[str, tuple[int | None, ...]] = {}
    for number, wire_type, value in _fields(graph):
        if wire_type != _LENGTH_DELIMITED:
            continue
        if number == _GRAPH_NODE:
            op, inputs, outputs, axis = '', [], [], 0  # ArgMax's axis defaults to 0
            for n, _, v in _fields(value):
                if n == _NODE_INPUT:
                    inputs.append(_text(v))
                elif n == _NODE_OUTPUT:
                    outputs.append(_text(v))
                elif n == _NODE_OP_TYPE:
                    op = _text(v)
                elif n == _NODE_ATTRIBUTE and _text(_field(v, _ATTRIBUTE_NAME) or b'') == 'axis':
                    axis = _field(v, _ATTRIBUTE_INT) or 0
                    axis = axis - (1 << 64) if axis >= 1 << 63 else axis  # int64 as a varint
            for output in outputs:
                producers[output] = (op, inputs, axis)
        elif number in (_GRAPH_OUTPUT, _GRAPH_VALUE_INFO):
            name, dims = _dims(value)
            shapes[name] = dims
    name = LABELS_OUTPUT
    for _ in range(8):  # labels = Cast(Squeeze(ArgMax(logits))) in an mmp_ros export
        op, inputs, axis = producers.get(name, ('', [], 0))
        if op == 'ArgMax' and inputs:
            dims = shapes.get(inputs[0], ())
            if -len(dims) <= axis < len(dims) and dims[axis] is not None:
                return dims[axis]
            break
        if op not in ('Cast', 'Squeeze', 'Unsqueeze', 'Identity') or not inputs:
            break
        name = inputs[0]
    logits = shapes.get(LOGITS_OUTPUT, ())
    return logits[1] if len(logits) > 1 else None


@dataclass(frozen=True)
class OnnxFileInfo:
    """What the runtime learns from an ONNX file's top level."""

    path: Path
    sha256: str  # of the file, and of its external data files where it has any
    ir_version: int
    producer: str
    opsets: dict[str, int]  # domain ('' = ai.onnx) -> version
    metadata_props: dict[str, str]
    graph_classes: int | None = None  # classes the graph's labels range over, where it says
    input_dims: dict[str, tuple[int | None, ...]] = field(default_factory=dict)  # None: dynamic

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
            metadata = ModelMetadata.from_json(text, source=str(self.path))
        except MetadataError as exc:
            raise ModelFileError(str(exc)) from exc
        if self.graph_classes is not None and self.graph_classes != metadata.num_classes:
            raise ModelFileError(
                f'{self.path}: its graph labels {self.graph_classes} classes but its metadata '
                f'names {metadata.num_classes} ({", ".join(metadata.class_names)}); the file '
                'was altered after export. Re-export it with `mmp_ros export`.'
            )
        return metadata


_ZIP_MAGIC = b'PK\x03\x04'


def read_onnx_file(path: str | Path) -> OnnxFileInfo:
    """Check that ``path`` is a complete ONNX model and read its top-level facts.

    Raises :class:`ModelFileError` naming the file when it is missing, empty, truncated or
    not an ONNX model at all.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f'model file {path} does not exist; check the path'
                             f'{home_not_expanded(path)}')
    if path.is_dir():
        raise ModelFileError(f'model file {path} is a folder; give the exported .onnx file '
                             f'itself{found_in(path, ".onnx")}')
    if not path.is_file():
        raise ModelFileError(f'model file {path} is not a regular file')
    if path.stat().st_size == 0:
        raise ModelFileError(f'model file {path} is empty (an interrupted copy or export?)')
    ir_version, producer, graph = 0, '', None
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
                graph = value
            elif number == _OPSET_IMPORT and wire_type == _LENGTH_DELIMITED:
                entry = {n: v for n, _, v in _fields(value)}
                domain = _text(entry[_OPSET_DOMAIN]) if _OPSET_DOMAIN in entry else ''
                opsets[domain] = int(entry.get(_OPSET_VERSION, 0))
            elif number == _METADATA_PROPS and wire_type == _LENGTH_DELIMITED:
                entry = {n: v for n, _, v in _fields(value)}
                key = _text(entry[_ENTRY_KEY]) if _ENTRY_KEY in entry else ''
                props[key] = _text(entry[_ENTRY_VALUE]) if _ENTRY_VALUE in entry else ''
        graph_classes = _graph_classes(graph) if graph is not None else None
        input_dims = _input_dims(graph) if graph is not None else {}
        external = _external_files(graph) if graph is not None else {}
    except (_WireError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f'model file {path} ({len(data)} bytes) is truncated or not an ONNX model: {exc}. '
            'Re-copy or re-export it.'
        ) from exc
    if graph is None or ir_version == 0 or not opsets:
        raise ModelFileError(
            f'model file {path} is not a complete ONNX model (graph, IR version or opset '
            'missing); re-copy or re-export it'
        )
    return OnnxFileInfo(
        path=path,
        sha256=_sha256(path, data, external),
        ir_version=ir_version,
        producer=producer,
        opsets=opsets,
        metadata_props=props,
        graph_classes=graph_classes,
        input_dims=input_dims,
    )


def read_model_metadata(path: str | Path) -> ModelMetadata:
    """The :class:`ModelMetadata` of an exported ONNX model, read from the file alone."""
    return read_onnx_file(path).metadata
