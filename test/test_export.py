"""ONNX export: one self-contained graph for every mask, metadata inside, parity with PyTorch."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import onnxruntime
import pytest
from conftest import needs

needs('torch')
needs('onnx')

import onnx  # noqa: E402
import torch  # noqa: E402
from contract_net import ContractNet  # noqa: E402

import training.export as export_module  # noqa: E402
from mmp_ros.inference import create_backend, read_model_metadata  # noqa: E402
from mmp_ros.inference.backend import AVAILABLE_INPUT  # noqa: E402
from mmp_ros.inference.testing import tiny_metadata  # noqa: E402
from mmp_ros.inference.torch_backend import TorchBackend  # noqa: E402
from mmp_ros.inference.torch_graph import DeployGraph  # noqa: E402
from mmp_ros.metadata import METADATA_KEY, MetadataError, ModelMetadata  # noqa: E402
from mmp_ros.modalities import MODALITIES, nonempty_subsets  # noqa: E402
from training.export import (  # noqa: E402
    ExportError,
    example_inputs,
    export_onnx,
    mask_rows,
    verify_export,
)

INPUT_SIZE = (24, 40)


@pytest.fixture(scope='module')
def contract_model():
    metadata = tiny_metadata(input_size=INPUT_SIZE, num_classes=5)
    torch.manual_seed(3)
    return ContractNet(metadata).eval(), metadata


@pytest.fixture(scope='module')
def exported(contract_model, tmp_path_factory):
    model, metadata = contract_model
    path = tmp_path_factory.mktemp('export') / 'contract.onnx'
    return export_onnx(model, metadata, path, with_logits=True, verify=False)


@pytest.fixture(scope='module')
def exported_without_logits(contract_model, tmp_path_factory):
    model, metadata = contract_model
    path = tmp_path_factory.mktemp('export_nologits') / 'contract.onnx'
    return export_onnx(model, metadata, path, with_logits=False, verify=False)


def _elem_type(value) -> int:
    return value.type.tensor_type.elem_type


def _dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_export_is_one_checked_self_contained_file(exported):
    assert sorted(p.name for p in exported.parent.iterdir()) == [exported.name]
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    assert not any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer
    )
    inputs = {v.name: v for v in proto.graph.input}
    assert list(inputs) == [*MODALITIES, AVAILABLE_INPUT]
    for name in MODALITIES:
        assert _elem_type(inputs[name]) == onnx.TensorProto.FLOAT
        batch, *chw = _dims(inputs[name])
        assert isinstance(batch, str), 'batch must be a symbolic (dynamic) dimension'
        assert chw == [tiny_metadata().input_channels[name], *INPUT_SIZE]
    assert _elem_type(inputs[AVAILABLE_INPUT]) == onnx.TensorProto.FLOAT
    assert _dims(inputs[AVAILABLE_INPUT])[1] == len(MODALITIES)
    outputs = {v.name: v for v in proto.graph.output}
    assert list(outputs) == ['labels', 'confidence', 'logits']
    assert _elem_type(outputs['labels']) == onnx.TensorProto.INT32
    assert _elem_type(outputs['confidence']) == onnx.TensorProto.FLOAT
    assert _dims(outputs['logits'])[1:] == [5, *INPUT_SIZE]
    assert not {'If', 'Loop', 'Scan'} & {n.op_type for n in proto.graph.node}


def test_parity_with_pytorch_for_all_15_masks(contract_model, exported):
    model, metadata = contract_model
    available = mask_rows(metadata.modalities)
    assert len(available) == len(list(nonempty_subsets())) == 15
    inputs = example_inputs(metadata, available, seed=7)
    onnx_out = create_backend('onnxruntime', exported, threads=1).run(inputs, available)
    torch_out = TorchBackend(model, metadata).run(inputs, available)
    torch.testing.assert_close(
        torch.from_numpy(onnx_out['logits']), torch.from_numpy(torch_out['logits']),
        atol=1e-4, rtol=1e-4,
    )
    torch.testing.assert_close(
        torch.from_numpy(onnx_out['confidence']), torch.from_numpy(torch_out['confidence']),
        atol=1e-4, rtol=1e-4,
    )
    per_mask = (onnx_out['labels'] == torch_out['labels']).reshape(15, -1).mean(axis=1)
    assert per_mask.min() >= 0.999, per_mask


def test_parity_without_logits_by_label_agreement(contract_model, exported_without_logits):
    model, metadata = contract_model
    available = mask_rows(metadata.modalities)
    inputs = example_inputs(metadata, available, seed=11)
    backend = create_backend('onnxruntime', exported_without_logits, threads=1)
    assert backend.output_names == ('labels', 'confidence')
    labels, confidence = backend.infer(inputs, available)
    ref_labels, ref_confidence = TorchBackend(model, metadata).infer(inputs, available)
    assert labels.dtype == np.int32 and confidence.dtype == np.float32
    assert (labels == ref_labels).mean() >= 0.999
    np.testing.assert_allclose(confidence, ref_confidence, atol=1e-4)


def test_one_graph_really_uses_the_mask(exported):
    """Same pixels, different masks: the outputs must differ (the mask is wired in)."""
    metadata = read_model_metadata(exported)
    available = mask_rows(metadata.modalities)
    one = example_inputs(metadata, available[:1], seed=5)
    inputs = {m: np.repeat(x, len(available), axis=0) for m, x in one.items()}
    logits = create_backend('onnxruntime', exported, threads=1).run(inputs, available)['logits']
    flat = logits.reshape(len(available), -1)
    distinct = {tuple(np.round(row[:64], 4)) for row in flat}
    assert len(distinct) == len(available)


@pytest.mark.parametrize('batch', [1, 3])
def test_batch_is_dynamic(exported, batch):
    metadata = read_model_metadata(exported)
    available = np.ones((batch, len(metadata.modalities)), bool)
    labels, confidence = create_backend('onnxruntime', exported, threads=1).infer(
        example_inputs(metadata, available), available
    )
    assert labels.shape == confidence.shape == (batch, *INPUT_SIZE)
    assert labels.min() >= 0 and labels.max() < metadata.num_classes
    assert np.all((confidence > 0) & (confidence <= 1))


def test_metadata_round_trip_from_the_file_alone(contract_model, exported):
    _, metadata = contract_model
    read = read_model_metadata(exported)
    assert read.modalities == metadata.modalities
    assert read.class_names == metadata.class_names
    assert read.palette == metadata.palette
    assert read.normalization == metadata.normalization
    assert read.input_channels == metadata.input_channels
    assert read.input_size == INPUT_SIZE
    assert read.method == metadata.method
    assert read.provenance['seed'] == metadata.provenance['seed']
    assert read.provenance['export']['torch'] == torch.__version__
    # Standard metadata_props: any ONNX tool sees the same document.
    props = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert ModelMetadata.from_dict(json.loads(props[METADATA_KEY])) == read
    assert create_backend('onnxruntime', exported).metadata == read


@pytest.mark.parametrize('field, value, message, whole', [
    ('input_size', [32.7, 40], 'input_size must be whole numbers, got 32.7', [32.0, 40]),
    ('input_size', [float('inf'), 40], 'input_size must be whole numbers, got inf', [32, 40]),
    ('input_channels', {'rgb': 3.5}, "input_channels['rgb'] must be whole numbers, got 3.5",
     {'rgb': 3.0}),
    ('palette', [[0, 0, 0.5]], 'palette colour 0 must be whole numbers, got 0.5',
     [[0, 0, 1.0]]),
    ('input_size', [True, 40], 'input_size must be whole numbers, got True', [1, 40]),
])
def test_metadata_numbers_that_are_not_whole_are_refused(field, value, message, whole):
    """input_size [32.7, 40] read as (32, 40) without a word (and a channel count of 3.5 as
    3); JSON's Infinity was an OverflowError traceback."""
    data = tiny_metadata(modalities=('rgb',), num_classes=1).to_dict()
    data[field] = value
    with pytest.raises(MetadataError, match=f'^model.onnx: {re.escape(message)}$'):
        ModelMetadata.from_dict(data, source='model.onnx')
    data[field] = whole  # a whole number written as a float is one
    read = ModelMetadata.from_dict(data).to_dict()[field]
    assert read == whole and json.dumps(read) == json.dumps(whole).replace('.0', '')


@pytest.mark.parametrize('version', [1.5, True, '1', None])
def test_a_metadata_version_that_is_not_a_whole_number_is_refused(version):
    """int() read a version of 1.5, true or "1" as version 1."""
    data = tiny_metadata(modalities=('rgb',), num_classes=1).to_dict()
    data['version'] = version
    with pytest.raises(MetadataError, match=re.escape(
            f'model.onnx: metadata version must be a whole number, got {version!r}')):
        ModelMetadata.from_dict(data, source='model.onnx')
    data['version'] = 1.0
    assert ModelMetadata.from_dict(data).version == 1


def test_input_size_override_is_recorded(contract_model, tmp_path):
    model, metadata = contract_model
    path = export_onnx(model, metadata, tmp_path / 'wide.onnx', input_size=(16, 64), verify=False)
    assert read_model_metadata(path).input_size == (16, 64)
    available = np.ones((1, len(MODALITIES)), np.float32)
    labels, _ = create_backend('onnxruntime', path).infer(
        example_inputs(read_model_metadata(path), available), available
    )
    assert labels.shape == (1, 16, 64)


def test_input_size_override_labels_the_figures_measured_at_the_training_size(contract_model,
                                                                               tmp_path):
    model, metadata = contract_model
    measured = dataclasses.replace(metadata, metrics={'val_subsets': {'rgb': 50.0}, 'step': 3})
    path = export_onnx(model, measured, tmp_path / 'wide.onnx', input_size=(16, 64),
                       verify=False)
    # was: the 16x64 file claimed the 24x40 figures as its own, unlabelled
    metrics = read_model_metadata(path).metrics
    assert metrics == {'val_subsets': {'rgb': 50.0}, 'step': 3,
                       'measured_at_input_size': list(INPUT_SIZE)}
    same = export_onnx(model, measured, tmp_path / 'same.onnx', input_size=INPUT_SIZE,
                       verify=False)
    assert read_model_metadata(same).metrics == measured.metrics
    bare = export_onnx(model, metadata, tmp_path / 'bare.onnx', input_size=(16, 64),
                       verify=False)
    assert read_model_metadata(bare).metrics == {}


def test_node_with_another_modality_order_is_refused(exported):
    wrong = ['depth', 'rgb', 'polarization', 'thermal']
    with pytest.raises(MetadataError) as info:
        create_backend('onnxruntime', exported, expected_modalities=wrong)
    message = str(info.value)
    assert str(wrong) in message and str(list(MODALITIES)) in message
    assert str(exported) in message
    backend = create_backend('onnxruntime', exported, expected_modalities=list(MODALITIES))
    assert backend.metadata.modalities == MODALITIES


def test_verify_export_passes_on_a_faithful_export(contract_model, tmp_path, caplog):
    model, metadata = contract_model
    caplog.set_level('INFO', logger='training.export')
    path = export_onnx(model, metadata, tmp_path / 'verified.onnx', with_logits=True, verify=True)
    assert path.is_file()
    # was 'verified <tmp>/.verified.onnx.<random>/verified.onnx', a folder since removed
    assert f'verified {path} against PyTorch: ' in caplog.text


def test_an_opset_the_exporter_does_not_write_is_refused_not_recorded(contract_model, tmp_path):
    model, metadata = contract_model
    path = tmp_path / 'old.onnx'
    with pytest.raises(ExportError, match=r'opset 13: torch .* exports at opset 18 and above'):
        export_onnx(model, metadata, path, opset=13, verify=False)
    assert not path.exists()
    # one it does not know yet: was "opset 99: torch ... exports at opset 18 and above"
    with pytest.raises(ExportError, match=r'opset 99: torch .* cannot convert the model to it '
                                          r'\(it wrote opset 18\); ask for an opset it knows'):
        export_onnx(model, metadata, path, opset=99, verify=False)
    assert not path.exists()


def test_the_highest_opset_allowed_is_the_highest_the_exporter_writes(contract_model,
                                                                     tmp_path):
    """--opset allowed up to onnx's newest opset (28 with onnx 1.23), but torch's exporter
    converts through onnxscript, which stops at 25: 26 to 28 ran the export, then failed."""
    model, metadata = contract_model
    highest = export_module.highest_opset()
    path = export_onnx(model, metadata, tmp_path / 'highest.onnx', opset=highest, verify=False)
    proto = onnx.load(str(path), load_external_data=False)
    assert [o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')] == [highest]
    with pytest.raises(ExportError, match=f'opset {highest + 1}: torch .* cannot convert'):
        export_onnx(model, metadata, tmp_path / 'above.onnx', opset=highest + 1, verify=False)


def test_a_failed_export_leaves_the_earlier_file_as_it_was(contract_model, tmp_path,
                                                          monkeypatch):
    model, metadata = contract_model
    path = export_onnx(model, metadata, tmp_path / 'model.onnx', verify=False)
    good = path.read_bytes()

    def disagreeing(graph, metadata, checked, seed=0):
        raise ExportError(f'{checked}: labels disagree with PyTorch')

    monkeypatch.setattr(export_module, 'verify_export', disagreeing)
    with pytest.raises(ExportError, match=f'^{path}: labels disagree'):
        export_onnx(model, metadata, path, with_logits=True, verify=True)  # another graph
    assert path.read_bytes() == good
    assert sorted(tmp_path.iterdir()) == [path]  # nothing staged is left behind


def test_verify_runs_the_masks_one_at_a_time_and_names_a_run_that_fails(contract_model, tmp_path,
                                                                        monkeypatch):
    model, metadata = contract_model
    path = export_onnx(model, metadata, tmp_path / 'm.onnx', with_logits=True, verify=False)
    graph = DeployGraph(model, metadata.modalities, with_logits=True).eval()
    batches = []

    class Recording(onnxruntime.InferenceSession):
        def run(self, names, feeds, *args, **kwargs):
            batches.append(len(feeds['available']))
            return super().run(names, feeds, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, 'InferenceSession', Recording)
    report = verify_export(graph, metadata, path)
    assert batches == [1] * 15  # all 15 in one batch took 28 GB at 2000x2000
    assert report['masks'] == 15 and report['max_abs_logit_diff'] < 1e-4

    class OutOfMemory(onnxruntime.InferenceSession):
        def run(self, names, feeds, *args, **kwargs):
            raise onnxruntime.capi.onnxruntime_pybind11_state.Fail('Failed to allocate memory')

    monkeypatch.setattr(onnxruntime, 'InferenceSession', OutOfMemory)
    with pytest.raises(ExportError, match='could not run the check .*allocate.* --no-verify'):
        verify_export(graph, metadata, path)
