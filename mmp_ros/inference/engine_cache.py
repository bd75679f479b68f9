"""When a cached TensorRT engine may be used, and when it must be rebuilt or refused.

A TensorRT engine is only valid for the ONNX it was built from, the TensorRT version
that built it and the GPU model it was tuned on. Each engine file gets a JSON stamp
beside it (``<engine>.json``) recording those facts and the model's metadata; before
loading, the stamp is compared with the here-and-now. This module is pure (no
TensorRT, no CUDA), so the rules are tested everywhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmp_ros.atomic import replace_atomically
from mmp_ros.inference.errors import EngineError

STAMP_VERSION = 1


@dataclass(frozen=True)
class EngineStamp:
    """The facts an engine depends on. ``precision`` is what the build really used."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    fp16_requested: bool
    max_batch: int
    precision: str = ''
    metadata: dict[str, Any] = field(default_factory=dict)
    stamp_version: int = STAMP_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineStamp:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f'a stamp is a JSON object, not {type(data).__name__}')
        if data.get('stamp_version') != STAMP_VERSION:
            raise ValueError(f'stamp version {data.get("stamp_version")!r}')
        return cls(**data)

    def mismatches(self, wanted: EngineStamp) -> list[str]:
        """Human-readable reasons why an engine with this stamp does not fit ``wanted``."""
        reasons = []
        if self.onnx_sha256 != wanted.onnx_sha256:
            reasons.append(
                f'built from an ONNX with SHA-256 {self.onnx_sha256[:12]}…, the model file now '
                f'has {wanted.onnx_sha256[:12]}…'
            )
        if self.tensorrt_version != wanted.tensorrt_version:
            reasons.append(
                f'built with TensorRT {self.tensorrt_version}, this is TensorRT '
                f'{wanted.tensorrt_version}'
            )
        here = (wanted.gpu_name, wanted.compute_capability)
        if (self.gpu_name, self.compute_capability) != here:
            reasons.append(
                f'built on {self.gpu_name} (sm {self.compute_capability}), this GPU is '
                f'{wanted.gpu_name} (sm {wanted.compute_capability})'
            )
        if self.fp16_requested != wanted.fp16_requested:
            reasons.append(
                f'built with enable_fp16={self.fp16_requested}, asked for '
                f'enable_fp16={wanted.fp16_requested}'
            )
        if self.max_batch != wanted.max_batch:
            reasons.append(f'built for max batch {self.max_batch}, asked for {wanted.max_batch}')
        return reasons


def stamp_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + '.json')


def read_stamp(engine_path: Path) -> EngineStamp | None:
    """The stamp beside ``engine_path``, or None when it is missing or unreadable."""
    try:
        return EngineStamp.from_json(stamp_path(engine_path).read_text())
    except (OSError, ValueError, TypeError):
        return None


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves half an engine."""
    replace_atomically(path, lambda partial: partial.write_bytes(data))


def write_engine(engine_path: Path, engine: bytes, stamp: EngineStamp) -> None:
    try:
        write_atomically(engine_path, engine)
        write_atomically(stamp_path(engine_path), stamp.to_json().encode())
    except OSError as exc:
        raise EngineError(f'cannot write the TensorRT engine {engine_path}: {exc}') from exc


def check_engine_writable(engine_path: Path) -> None:
    """Refuse, before a build that takes minutes, an engine path that cannot be written.

    The default engine path is beside the ONNX, which in an installed package
    (``share/mmp_ros/models``) is usually read-only; that must be said up front, not
    after the build as an ``OSError``.
    """
    if engine_path.is_dir():
        raise EngineError(
            f'engine_file_path {engine_path} is a directory; give a file path such as '
            f'{engine_path / "model.engine"}'
        )
    probe = engine_path.with_name(engine_path.name + '.partial')
    try:
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, 'ab'):
            pass
        probe.unlink()
    except OSError as exc:
        raise EngineError(
            f'cannot write a TensorRT engine at {engine_path} ({exc.strerror or exc}); set '
            'engine_file_path to a file in a writable folder (the default is beside the '
            'ONNX model, read-only in an installed package)'
        ) from exc


@dataclass(frozen=True)
class EnginePlan:
    build: bool  # False: load the engine file as it is
    reason: str


def plan_engine(
    engine_path: Path,
    wanted: EngineStamp,
    *,
    force_engine_update: bool,
    allow_engine_build: bool,
) -> EnginePlan:
    """Decide between loading ``engine_path`` and (re)building it; refuse when neither may happen.

    ``force_engine_update`` rebuilds even a fresh engine (the Isaac ROS parameter of that
    name). ``allow_engine_build`` False forbids building on this machine (a robot whose
    engine is prepared offline): a missing or stale engine is then an :class:`EngineError`.
    """
    if force_engine_update:
        reason = 'force_engine_update is set'
    elif not engine_path.exists():
        reason = f'no engine at {engine_path} yet'
    else:
        stamp = read_stamp(engine_path)
        if stamp is None:
            reasons = [f'its stamp {stamp_path(engine_path)} is missing or unreadable']
        else:
            reasons = stamp.mismatches(wanted)
        if not reasons:
            return EnginePlan(build=False, reason=f'engine {engine_path} matches its stamp')
        reason = f'engine {engine_path} is stale: ' + '; '.join(reasons)
    if not allow_engine_build:
        raise EngineError(
            f'{reason}, and building engines is disabled here. Build one with '
            '`mmp_ros build-engine --onnx <model.onnx> --engine <file>` on this machine '
            '(same GPU and TensorRT version), set force_engine_update:=true with building '
            'allowed, or use the onnxruntime backend.'
        )
    return EnginePlan(build=True, reason=reason)
