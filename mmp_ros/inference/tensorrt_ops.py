"""Will TensorRT take this ONNX graph? A check that runs anywhere, without TensorRT.

TensorRT cannot be installed on our development and CI machines (DESIGN §7), so the
exported graph is checked against TensorRT's published ONNX operator support matrix:
every operator must be on the list with the data type it is used with, the opset must
be in the parser's range, no dynamic control flow (``If``, ``Loop``, ``Scan``) and no
custom domains (which would need plugins), and the per-operator restrictions that a
segmentation graph can run into (Resize modes, constant ``axes``, pooling dilations)
must hold.

The table below is transcribed from onnx-tensorrt's ``docs/operators.md`` at its
``10.1-GA`` release tag (the matrix for TensorRT 10.1; TensorRT 10.x reads opsets 9
to 20). Types are TensorRT's names: FP32, FP16, BF16, INT32, INT64, BOOL, UINT8,
INT8, FP8, INT4.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mmp_ros.inference.onnx_file import read_onnx_file

TENSORRT_LIST_VERSION = 'TensorRT 10.1 (onnx-tensorrt 10.1-GA docs/operators.md)'
MIN_OPSET, MAX_OPSET = 9, 20

_FLOAT = frozenset({'FP32', 'FP16', 'BF16'})
_INT = frozenset({'INT32', 'INT64'})
_BOOL = frozenset({'BOOL'})


def _names(text: str) -> list[str]:
    return text.split()


def _ops(names: str, types: frozenset[str]) -> dict[str, frozenset[str]]:
    return dict.fromkeys(_names(names), types)


# Operator -> data types TensorRT 10.1 supports it with. Grouped by type set.
SUPPORTED_OPS: dict[str, frozenset[str]] = {
    **_ops(
        """Acos Acosh Asin Asinh Atan Atanh AveragePool BatchNormalization Ceil Celu Clip
        Conv ConvTranspose Cos Cosh CumSum Dropout Einsum Elu Erf Exp Floor Gemm
        GlobalAveragePool GlobalLpPool GlobalMaxPool GroupNormalization GRU HardSigmoid
        HardSwish Hardmax ImageScaler InstanceNormalization IsInf LayerNormalization
        LeakyRelu Log LogSoftmax LRN LSTM LpNormalization LpPool MatMul MaxPool
        MeanVarianceNormalization ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal
        RandomNormalLike RandomUniform RandomUniformLike Reciprocal Resize RNN Round
        ScaledTanh Scan Selu Sigmoid Sin Sinh Softmax Softplus Softsign Sqrt Tan Tanh
        ThresholdedRelu Upsample""",
        _FLOAT,
    ),
    **_ops(
        """Abs Add ArgMax ArgMin DepthToSpace Div Equal Greater GreaterOrEqual IsNaN Less
        LessOrEqual Max Min Mod Mul Neg Pad Range ReduceL1 ReduceL2 ReduceLogSum
        ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare
        Relu Scatter ScatterElements ScatterND Shrink Sign SpaceToDepth Sub Sum TopK""",
        _FLOAT | _INT,
    ),
    **_ops(
        """Concat Constant ConstantOfShape Expand EyeLike Flatten Gather GatherElements
        GatherND Identity If Loop OneHot Reshape ReverseSequence Shape Size Slice Split
        Squeeze Tile Transpose Trilu Unsqueeze Where""",
        _FLOAT | _INT | _BOOL,
    ),
    **_ops('Cast CastLike', _FLOAT | _INT | _BOOL | {'UINT8'}),
    **_ops('And Not Or Xor', _BOOL),
    **_ops('DeformConv GridSample Mish NonMaxSuppression NonZero RoiAlign',
           frozenset({'FP32', 'FP16'})),
    'DequantizeLinear': frozenset({'INT8', 'FP8', 'INT4'}),
    'Gelu': _FLOAT | _INT | {'INT8'},
    'Mean': _FLOAT | _INT | {'FP8'},
}

# Listed by the matrix as not supported.
UNSUPPORTED_OPS = frozenset(
    _names(
        """AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor
    BlackmanWindow Col2Im CenterCropPad Compress ConcatFromSequence ConvInteger DFT Det
    DynamicQuantizeLinear HammingWindow HannWindow ImageDecoder MatMulInteger MaxRoiPool
    MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional
    OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch STFT
    SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength
    SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringConcat StringNormalizer
    StringSplit TfIdfVectorizer Unique"""
    )
)

# Supported, but data-dependent control flow has no place in a one-graph-for-every-mask model.
CONTROL_FLOW_OPS = frozenset({'If', 'Loop', 'Scan'})

# Ops whose ``axes`` (input index) must be a build-time constant.
_CONSTANT_AXES_INPUT = {
    **dict.fromkeys(
        _names(
            """ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
            ReduceProd ReduceSum ReduceSumSquare Squeeze Unsqueeze"""
        ),
        1,
    ),
    'Slice': 3,
    'Pad': 3,
    'CumSum': 1,
}
_RESIZE_MODES = {'nearest', 'linear'}
_RESIZE_COORDINATES = {
    'half_pixel', 'pytorch_half_pixel', 'tf_half_pixel_for_nn', 'asymmetric', 'align_corners'
}
_RESIZE_NEAREST = {'floor', 'ceil', 'round_prefer_floor', 'round_prefer_ceil'}

# ONNX TensorProto element type -> TensorRT's name for it.
_ONNX_TYPE_NAMES = {
    1: 'FP32', 2: 'UINT8', 3: 'INT8', 6: 'INT32', 7: 'INT64', 9: 'BOOL', 10: 'FP16',
    11: 'DOUBLE', 16: 'BF16', 17: 'FP8', 22: 'INT4',
}
_IO_TYPES = _FLOAT | _INT | _BOOL | {'UINT8'}


@dataclass
class CompatibilityReport:
    """The outcome of :func:`check_tensorrt_compatibility`."""

    source: str
    opset: int
    op_counts: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    list_version: str = TENSORRT_LIST_VERSION

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        ops = ', '.join(f'{op}×{n}' for op, n in sorted(self.op_counts.items()))
        head = (
            f'TensorRT compatibility of {self.source} against {self.list_version}: '
            f'{"PASS" if self.ok else "FAIL"} (opset {self.opset}, '
            f'{sum(self.op_counts.values())} nodes, {len(self.op_counts)} op types: {ops})'
        )
        return '\n'.join([head, *(f'  - {p}' for p in self.problems)])


def _attribute(node, name: str, default):
    import onnx

    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _as_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_tensorrt_compatibility(model_or_path) -> CompatibilityReport:
    """Check an ONNX model (path or ``onnx.ModelProto``) against TensorRT's support matrix."""
    import onnx

    if isinstance(model_or_path, (str, Path)):
        source = str(model_or_path)
        read_onnx_file(source)  # a missing or broken file: ModelFileError, naming it
        model = onnx.load(source, load_external_data=False)
    else:
        source, model = 'model', model_or_path
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    opsets = {o.domain or 'ai.onnx': o.version for o in model.opset_import}
    report = CompatibilityReport(source=source, opset=opsets.get('ai.onnx', 0))
    problems = report.problems
    if not MIN_OPSET <= report.opset <= MAX_OPSET:
        problems.append(
            f'opset {report.opset} is outside the {MIN_OPSET}..{MAX_OPSET} range TensorRT 10 '
            'parses; re-export with --opset 18'
        )
    for domain in sorted(set(opsets) - {'ai.onnx'}):
        problems.append(f'custom operator domain {domain!r} would need TensorRT plugins')

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    graph = inferred.graph
    types: dict[str, str] = {}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        types[value.name] = _ONNX_TYPE_NAMES.get(value.type.tensor_type.elem_type, 'UNKNOWN')
    for tensor in graph.initializer:
        types[tensor.name] = _ONNX_TYPE_NAMES.get(tensor.data_type, 'UNKNOWN')
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == 'Constant' for o in n.output}

    for value in [*graph.input, *graph.output]:
        if types[value.name] not in _IO_TYPES:
            problems.append(
                f'graph {"input" if value in graph.input else "output"} {value.name!r} has '
                f'type {types[value.name]}, not a TensorRT I/O type'
            )
    for node in graph.node:
        op = node.op_type
        where = f'{op} node {node.name or node.output[0]!r}'
        report.op_counts[op] += 1
        if node.domain not in ('', 'ai.onnx'):
            problems.append(f'{where} is in custom domain {node.domain!r}')
            continue
        if op in CONTROL_FLOW_OPS:
            problems.append(f'{where} is dynamic control flow; the graph must be branch-free')
            continue
        if op in UNSUPPORTED_OPS or op not in SUPPORTED_OPS:
            state = 'listed as unsupported' if op in UNSUPPORTED_OPS else 'not on the list'
            problems.append(f'{where}: operator {op} is {state}')
            continue
        data = node.input[1] if op == 'Where' else (node.input[0] if node.input else '')
        checked = [data] if data else [node.output[0]]
        if op in ('Cast', 'CastLike'):
            checked.append(node.output[0])
        for name in checked:
            dtype = types.get(name, 'UNKNOWN')
            if dtype not in SUPPORTED_OPS[op]:
                problems.append(
                    f'{where}: tensor {name!r} has type {dtype}; TensorRT supports {op} with '
                    f'{sorted(SUPPORTED_OPS[op])}'
                )
        problems.extend(_restrictions(node, where, constants))
    return report


def _restrictions(node, where: str, constants: set[str]) -> list[str]:
    """The matrix's per-operator restrictions that an exported segmentation graph can hit."""
    op = node.op_type
    found = []
    axes_index = _CONSTANT_AXES_INPUT.get(op)
    if axes_index is not None and len(node.input) > axes_index:
        axes = node.input[axes_index]
        if axes and axes not in constants:
            found.append(f'{where}: input {axes!r} (axes) must be a constant for TensorRT')
    if op == 'Resize':
        mode = _as_text(_attribute(node, 'mode', 'nearest'))
        coordinates = _as_text(_attribute(node, 'coordinate_transformation_mode', 'half_pixel'))
        nearest = _as_text(_attribute(node, 'nearest_mode', 'round_prefer_floor'))
        if mode not in _RESIZE_MODES:
            found.append(f'{where}: Resize mode {mode!r} unsupported (nearest, linear only)')
        if coordinates not in _RESIZE_COORDINATES:
            found.append(f'{where}: Resize coordinate_transformation_mode {coordinates!r}')
        if mode == 'nearest' and nearest not in _RESIZE_NEAREST:
            found.append(f'{where}: Resize nearest_mode {nearest!r} unsupported')
        if _attribute(node, 'antialias', 0):
            found.append(f'{where}: Resize antialiasing is unsupported')
        policy = _as_text(_attribute(node, 'keep_aspect_ratio_policy', 'stretch'))
        if policy != 'stretch':
            found.append(f'{where}: Resize keep_aspect_ratio_policy {policy!r} unsupported')
    if op in ('AveragePool', 'MaxPool', 'LpPool'):
        if any(d != 1 for d in _attribute(node, 'dilations', [])):
            found.append(f'{where}: pooling dilations must be all ones')
        if len(_attribute(node, 'kernel_shape', [1, 1])) not in (2, 3):
            found.append(f'{where}: only 2D or 3D pooling is supported')
    if op == 'MaxPool' and len(node.output) > 1 and node.output[1]:
        found.append(f'{where}: the Indices output of MaxPool is unsupported')
    if op == 'LayerNormalization' and any(node.output[1:]):
        found.append(f'{where}: only the first output of LayerNormalization is supported')
    if op == 'TopK' and _attribute(node, 'sorted', 1) != 1:
        found.append(f'{where}: TopK must be sorted')
    if op == 'ScatterND' and _as_text(_attribute(node, 'reduction', 'none')) != 'none':
        found.append(f'{where}: ScatterND reduction is unsupported')
    return found


# --- command line: `mmp_ros check-tensorrt --onnx model.onnx` ----------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--onnx', required=True, type=Path, help='exported model to check')


def run(args: argparse.Namespace) -> int:
    report = check_tensorrt_compatibility(args.onnx)
    print(report.summary())
    return 0 if report.ok else 1
