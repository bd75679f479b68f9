"""Typed errors of the inference layer: each names the file or tensor at fault and what to do."""

from __future__ import annotations

from mmp_ros.errors import InputError


class InferenceError(RuntimeError):
    """Base of every error raised by :mod:`mmp_ros.inference`."""


class ModelFileError(InputError, InferenceError):
    """A model file (ONNX, checkpoint) is missing, unreadable, truncated or not what it claims."""


class UnparsableModelError(ModelFileError):
    """TensorRT's parser refuses a valid ONNX (an operator it does not support): TensorRT
    cannot run it, another backend may (``auto`` falls back)."""


class EngineError(InferenceError):
    """A TensorRT engine cannot be used: stale, built elsewhere, or failing to build or load."""


class BackendUnavailableError(InferenceError):
    """The requested backend or device is not installed or not present on this machine."""


class InferenceInputError(InferenceError, ValueError):
    """A tensor handed to ``infer`` has the wrong name, shape, dtype or values."""
