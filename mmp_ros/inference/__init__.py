"""Inference backends behind one interface: onnxruntime, torch, tensorrt, and ``auto``.

Importing this package needs neither torch nor TensorRT nor rclpy: each backend's
runtime is imported only when that backend is created.
"""

from mmp_ros.inference.backend import (
    AVAILABLE_INPUT,
    CONFIDENCE_OUTPUT,
    LABELS_OUTPUT,
    LOGITS_OUTPUT,
    InferenceBackend,
    check_inputs,
)
from mmp_ros.inference.errors import (
    BackendUnavailableError,
    EngineError,
    InferenceError,
    InferenceInputError,
    ModelFileError,
)
from mmp_ros.inference.factory import BACKEND_KINDS, create_backend
from mmp_ros.inference.onnx_file import OnnxFileInfo, read_model_metadata, read_onnx_file

__all__ = [
    'AVAILABLE_INPUT',
    'BACKEND_KINDS',
    'CONFIDENCE_OUTPUT',
    'LABELS_OUTPUT',
    'LOGITS_OUTPUT',
    'BackendUnavailableError',
    'EngineError',
    'InferenceBackend',
    'InferenceError',
    'InferenceInputError',
    'ModelFileError',
    'OnnxFileInfo',
    'check_inputs',
    'create_backend',
    'read_model_metadata',
    'read_onnx_file',
]
