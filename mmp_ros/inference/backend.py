"""The one interface every inference backend offers, and the input checks they share.

A backend is built by :func:`mmp_ros.inference.create_backend`; callers see only
``name``, ``device``, ``metadata`` and :meth:`InferenceBackend.infer`. Input checking
happens here, once, before any runtime sees a tensor, so a wrong shape or dtype gives
the same clear :class:`InferenceInputError` on every backend instead of three different
runtime errors.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

import numpy as np

from mmp_ros.inference.errors import InferenceError, InferenceInputError, ModelFileError
from mmp_ros.metadata import ModelMetadata

# Names of the exported graph's tensors besides the modalities (DESIGN §4).
AVAILABLE_INPUT = 'available'
LABELS_OUTPUT = 'labels'
CONFIDENCE_OUTPUT = 'confidence'
LOGITS_OUTPUT = 'logits'


def check_input_order(model_file: object, graph_inputs: Sequence[str],
                      metadata: ModelMetadata) -> None:
    """The graph reads column i of ``available`` as its i-th modality input: metadata that
    lists the modalities in another order would silently mask the wrong streams."""
    order = [name for name in graph_inputs if name != AVAILABLE_INPUT]
    if order != list(metadata.modalities):
        raise ModelFileError(
            f'{model_file}: graph inputs are in the order {order} but its metadata lists the '
            f"modalities as {list(metadata.modalities)}; the columns of '{AVAILABLE_INPUT}' "
            'would mask the wrong inputs. The file was altered after export'
        )


def check_inputs(
    metadata: ModelMetadata,
    inputs: Mapping[str, np.ndarray],
    available: np.ndarray,
    *,
    max_batch: int | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Validate one call's tensors against the model; return contiguous float32 copies.

    A modality masked in every batch item may be left out of ``inputs``: zeros are fed for
    it (the graph ignores masked inputs, so their values do not matter).
    """
    available = np.asarray(available)
    modalities = metadata.modalities
    if available.dtype != np.bool_ and not np.issubdtype(available.dtype, np.floating):
        raise InferenceInputError(
            f"input 'available' has dtype {available.dtype}; pass bool or float (1 = real, "
            '0 = masked)'
        )
    if available.ndim != 2 or available.shape[1] != len(modalities):
        raise InferenceInputError(
            f"input 'available' has shape {available.shape}; expected (batch, "
            f'{len(modalities)}) with columns {list(modalities)}'
        )
    batch = available.shape[0]
    if batch < 1:
        raise InferenceInputError("input 'available' has an empty batch")
    if max_batch is not None and batch > max_batch:
        raise InferenceInputError(
            f'batch {batch} exceeds the largest batch this backend was built for ({max_batch})'
        )
    available_f = np.ascontiguousarray(available, dtype=np.float32)
    real = available_f > 0.5  # as the graph reads it: 0.4 or NaN is masked
    empty = np.flatnonzero(~real.any(axis=1))
    if empty.size:  # the model would answer with confident labels made of nothing
        raise InferenceInputError(
            f'batch item {int(empty[0])} has no modality available (the model takes a value '
            f'above 0.5 as available); a segmentation needs at least one of {list(modalities)}'
        )
    unknown = sorted(set(inputs) - set(modalities))
    if unknown:
        raise InferenceInputError(
            f'inputs {unknown} are not modalities of this model; it takes {list(modalities)}'
        )
    height, width = metadata.input_size
    checked: dict[str, np.ndarray] = {}
    for index, name in enumerate(modalities):
        channels = metadata.input_channels[name]
        expected = (batch, channels, height, width)
        if name not in inputs:
            if real[:, index].any():
                raise InferenceInputError(
                    f'input {name!r} is missing but marked available; pass a float32 tensor '
                    f'of shape {expected} or mark it unavailable'
                )
            checked[name] = np.zeros(expected, np.float32)
            continue
        tensor = inputs[name]
        if not isinstance(tensor, np.ndarray):
            raise InferenceInputError(
                f'input {name!r} is a {type(tensor).__name__}; pass a numpy float32 array'
            )
        if tensor.dtype != np.float32:
            raise InferenceInputError(
                f'input {name!r} has dtype {tensor.dtype}; the model takes float32 '
                '(convert with .astype(np.float32) after normalization)'
            )
        if tensor.shape != expected:
            raise InferenceInputError(
                f'input {name!r} has shape {tensor.shape}; the model takes {expected} '
                '(batch, channels, height, width); resize to the model input size '
                f'{height}x{width} first'
            )
        checked[name] = np.ascontiguousarray(tensor)
    return checked, available_f


class InferenceBackend(abc.ABC):
    """A loaded model that turns normalized inputs and a mask into labels and confidence."""

    #: Short backend name: 'onnxruntime', 'torch' or 'tensorrt'.
    name: str = ''
    _closed = False  # a class default: close() may run on a backend whose __init__ failed

    def __init__(self, metadata: ModelMetadata, device: str) -> None:
        self._metadata = metadata
        self._device = device

    @property
    def metadata(self) -> ModelMetadata:
        """The model's self-description, read from the model file itself."""
        return self._metadata

    @property
    def device(self) -> str:
        """Where it runs, e.g. ``cpu``, ``cuda:0``."""
        return self._device

    @property
    def max_batch(self) -> int | None:
        """Largest batch the backend accepts, or None when unbounded."""
        return None

    @property
    def output_names(self) -> tuple[str, ...]:
        """Outputs :meth:`run` returns: labels and confidence, and logits if the model has them."""
        return (LABELS_OUTPUT, CONFIDENCE_OUTPUT)

    def describe(self) -> str:
        return f'{self.name} on {self.device}'

    def run(
        self, inputs: Mapping[str, np.ndarray], available: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Every output of the model, by name (``labels``, ``confidence``, maybe ``logits``)."""
        if self._closed:
            raise InferenceError(
                f'the {self.name} backend was closed; create a new one to run the model again'
            )
        checked, available_f = check_inputs(
            self._metadata, inputs, available, max_batch=self.max_batch
        )
        return self._run(checked, available_f)

    def infer(
        self, inputs: Mapping[str, np.ndarray], available: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(labels (B, H, W) int32, confidence (B, H, W) float32)`` for one batch.

        ``inputs`` maps each modality to a float32 ``(B, C, H, W)`` array, normalized with
        ``metadata.normalization`` at ``metadata.input_size``; ``available`` is ``(B, M)``,
        bool or float, in ``metadata.modalities`` order.
        """
        outputs = self.run(inputs, available)
        return outputs[LABELS_OUTPUT], outputs[CONFIDENCE_OUTPUT]

    @abc.abstractmethod
    def _run(self, inputs: dict[str, np.ndarray], available: np.ndarray) -> dict[str, np.ndarray]:
        """Run checked, contiguous float32 tensors; return outputs as numpy arrays."""

    def close(self) -> None:
        """Release runtime resources (sessions, device buffers); :meth:`run` is refused from
        then on. A second call does nothing."""
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:  # noqa: B027 - backends without resources need nothing here
        """Release what the backend holds; called once, by :meth:`close`."""

    def __enter__(self) -> InferenceBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
