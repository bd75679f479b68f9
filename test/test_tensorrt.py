"""TensorRT: operator-support check and engine-cache rules run everywhere; builds need TensorRT."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import needs

needs('torch')
needs('onnx')

import onnx  # noqa: E402
import torch  # noqa: E402
from contract_net import ContractNet  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from mmp_ros.inference import EngineError, create_backend  # noqa: E402
from mmp_ros.inference.engine_cache import (  # noqa: E402
    EngineStamp,
    plan_engine,
    read_stamp,
    stamp_path,
    write_engine,
)
from mmp_ros.inference.tensorrt_backend import tensorrt_available  # noqa: E402
from mmp_ros.inference.tensorrt_ops import (  # noqa: E402
    CONTROL_FLOW_OPS,
    MAX_OPSET,
    SUPPORTED_OPS,
    TENSORRT_LIST_VERSION,
    UNSUPPORTED_OPS,
    check_tensorrt_compatibility,
)
from mmp_ros.inference.testing import tiny_metadata  # noqa: E402
from training.export import example_inputs, export_onnx, mask_rows  # noqa: E402

# Imports tensorrt and cuda-python and looks for a GPU; the reason is the skip message.
TENSORRT_USABLE, TENSORRT_WHY = tensorrt_available()


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    metadata = tiny_metadata(input_size=(16, 32), num_classes=3)
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp('trt') / 'contract.onnx'
    return export_onnx(ContractNet(metadata).eval(), metadata, path, with_logits=True,
                       verify=False)


# --- operator support check ------------------------------------------------------------


def _model(nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(nodes, 'g', inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def _vi(name, dtype=TensorProto.FLOAT, shape=(1, 4)):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def test_support_list_is_consistent():
    assert not set(SUPPORTED_OPS) & UNSUPPORTED_OPS
    assert set(SUPPORTED_OPS) >= CONTROL_FLOW_OPS  # supported by TensorRT, refused by us
    assert '10.1' in TENSORRT_LIST_VERSION
    assert SUPPORTED_OPS['Conv'] == {'FP32', 'FP16', 'BF16'}
    assert 'BOOL' in SUPPORTED_OPS['Where'] and 'INT64' in SUPPORTED_OPS['ArgMax']


def test_exported_graph_passes(exported):
    report = check_tensorrt_compatibility(exported)
    assert report.ok, report.summary()
    assert report.opset <= MAX_OPSET
    assert report.op_counts['Conv'] > 0 and report.op_counts['Where'] > 0
    assert 'PASS' in report.summary() and TENSORRT_LIST_VERSION in report.summary()


def test_unsupported_operator_fails():
    model = _model([helper.make_node('Det', ['x'], ['y'])], [_vi('x', shape=(2, 2))],
                   [_vi('y', shape=())])
    report = check_tensorrt_compatibility(model)
    assert not report.ok
    assert 'operator Det is listed as unsupported' in report.problems[0]


def test_unsupported_data_type_fails():
    model = _model([helper.make_node('MatMul', ['a', 'b'], ['y'])],
                   [_vi('a', TensorProto.INT32), _vi('b', TensorProto.INT32, (4, 1))],
                   [_vi('y', TensorProto.INT32, (1, 1))])
    report = check_tensorrt_compatibility(model)
    assert any("tensor 'a' has type INT32" in p for p in report.problems), report.problems


def test_control_flow_fails():
    then = helper.make_graph([helper.make_node('Identity', ['x'], ['t'])], 'then', [],
                             [_vi('t')])
    other = helper.make_graph([helper.make_node('Neg', ['x'], ['e'])], 'else', [], [_vi('e')])
    node = helper.make_node('If', ['c'], ['y'], then_branch=then, else_branch=other)
    model = _model([node], [_vi('c', TensorProto.BOOL, ()), _vi('x')], [_vi('y')])
    report = check_tensorrt_compatibility(model)
    assert any('dynamic control flow' in p for p in report.problems), report.problems


def test_opset_and_custom_domain_fail():
    model = _model([helper.make_node('Relu', ['x'], ['y'])], [_vi('x')], [_vi('y')], opset=22)
    assert any('opset 22 is outside' in p for p in check_tensorrt_compatibility(model).problems)
    custom = _model([helper.make_node('Fancy', ['x'], ['y'], domain='com.example')],
                    [_vi('x')], [_vi('y')])
    custom.opset_import.append(helper.make_opsetid('com.example', 1))
    problems = check_tensorrt_compatibility(custom).problems
    assert any("custom operator domain 'com.example'" in p for p in problems)


def test_resize_restrictions_fail():
    scales = helper.make_tensor('scales', TensorProto.FLOAT, [4], [1, 1, 2, 2])
    node = helper.make_node('Resize', ['x', '', 'scales'], ['y'], mode='cubic')
    model = _model([node], [_vi('x', shape=(1, 1, 4, 4))], [_vi('y', shape=(1, 1, 8, 8))],
                   initializers=[scales])
    assert any("Resize mode 'cubic'" in p for p in check_tensorrt_compatibility(model).problems)


def test_dynamic_axes_fail():
    node = helper.make_node('ReduceSum', ['x', 'axes'], ['y'])
    model = _model([node], [_vi('x'), _vi('axes', TensorProto.INT64, (1,))], [_vi('y')])
    problems = check_tensorrt_compatibility(model).problems
    assert any("input 'axes' (axes) must be a constant" in p for p in problems)


# --- engine cache rules ------------------------------------------------------------------

WANTED = EngineStamp(
    onnx_sha256='a' * 64,
    tensorrt_version='10.5.0',
    gpu_name='NVIDIA H100 80GB HBM3',
    compute_capability='9.0',
    fp16_requested=True,
    max_batch=1,
)


def _engine(tmp_path: Path, stamp: EngineStamp | None) -> Path:
    path = tmp_path / 'model.engine'
    if stamp is None:
        path.write_bytes(b'engine')
    else:
        write_engine(path, b'engine', replace(stamp, precision='fp16'))
    return path


def _plan(path, **flags):
    return plan_engine(path, WANTED, **{'force_engine_update': False,
                                        'allow_engine_build': True, **flags})


def test_missing_engine_is_built(tmp_path):
    plan = _plan(tmp_path / 'model.engine')
    assert plan.build and 'no engine' in plan.reason


def test_fresh_engine_is_loaded(tmp_path):
    path = _engine(tmp_path, WANTED)
    assert read_stamp(path).precision == 'fp16'
    assert not _plan(path).build


def test_force_engine_update_rebuilds_a_fresh_engine(tmp_path):
    plan = _plan(_engine(tmp_path, WANTED), force_engine_update=True)
    assert plan.build and 'force_engine_update' in plan.reason


@pytest.mark.parametrize(
    ('change', 'words'),
    [
        ({'onnx_sha256': 'b' * 64}, 'built from an ONNX with SHA-256 bbbbbbbbbbbb'),
        ({'tensorrt_version': '10.3.0'}, 'built with TensorRT 10.3.0, this is TensorRT 10.5.0'),
        ({'gpu_name': 'Orin', 'compute_capability': '8.7'}, 'built on Orin (sm 8.7)'),
        ({'fp16_requested': False}, 'enable_fp16=False'),
        ({'max_batch': 4}, 'max batch 4'),
    ],
)
def test_stale_engine_is_rebuilt_or_refused(tmp_path, change, words):
    path = _engine(tmp_path, replace(WANTED, **change))
    plan = _plan(path)
    assert plan.build and words in plan.reason and str(path) in plan.reason
    with pytest.raises(EngineError) as info:
        _plan(path, allow_engine_build=False)
    message = str(info.value)
    assert str(path) in message and words in message
    assert 'building engines is disabled' in message and 'mmp_ros build-engine' in message


def test_engine_without_stamp_is_stale(tmp_path):
    path = _engine(tmp_path, None)
    plan = _plan(path)
    assert plan.build and str(stamp_path(path)) in plan.reason
    stamp_path(path).write_text('{not json')
    assert _plan(path).build
    for text in ('[]', 'null', '"stamp"'):  # JSON, but no object: was an AttributeError
        stamp_path(path).write_text(text)
        assert read_stamp(path) is None
        assert _plan(path).build


def test_missing_engine_refused_when_building_is_disabled(tmp_path):
    with pytest.raises(EngineError, match='no engine at .*model.engine'):
        _plan(tmp_path / 'model.engine', allow_engine_build=False)


# --- real TensorRT (skipped where it does not import) ------------------------------------


@pytest.mark.skipif(not TENSORRT_USABLE, reason=TENSORRT_WHY)
def test_tensorrt_backend_matches_onnxruntime(exported, tmp_path):
    engine = tmp_path / 'contract.engine'
    trt_backend = create_backend('tensorrt', exported, engine_file_path=engine,
                                 enable_fp16=False, max_batch=15)
    assert trt_backend.engine_was_built and read_stamp(engine).precision == 'fp32'
    metadata = trt_backend.metadata
    available = mask_rows(metadata.modalities)
    inputs = example_inputs(metadata, available, seed=9)
    ours = trt_backend.run(inputs, available)
    ref = create_backend('onnxruntime', exported).run(inputs, available)
    np.testing.assert_allclose(ours['logits'], ref['logits'], atol=1e-3, rtol=1e-3)
    assert (ours['labels'] == ref['labels']).mean() >= 0.999
    again = create_backend('tensorrt', exported, engine_file_path=engine, enable_fp16=False,
                           max_batch=15, allow_engine_build=False)
    assert not again.engine_was_built
    # A changed ONNX makes the engine stale: refused when building is off.
    changed = tmp_path / 'changed.onnx'
    proto = onnx.load(str(exported))
    proto.doc_string += ' (changed)'
    onnx.save(proto, str(changed))
    with pytest.raises(EngineError, match='stale'):
        create_backend('tensorrt', changed, engine_file_path=engine, enable_fp16=False,
                       max_batch=15, allow_engine_build=False)
