"""The segmentation model: ``nn.Module``s only, importable without rclpy.

``build_model(ModelConfig(...))`` gives a module whose
``forward(inputs: dict[str, (B, C, H, W)], available: (B, M) bool) -> logits (B, K, H, W)``
serves every modality mask with one graph; ``forward_train`` adds the alignment terms.
"""

from mmp_ros.model.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_metadata,
    checkpoint_step,
    load_checkpoint,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    step_problem,
    weights_difference,
)
from mmp_ros.model.config import (
    METHODS,
    MODEL_SIZES,
    PROJECTION_KINDS,
    PROJECTION_STAGES,
    ModelConfig,
    ModelConfigError,
    SizeSpec,
)
from mmp_ros.model.segmenter import (
    DistillTargets,
    MultimodalSegmenter,
    TrainOutputs,
    build_model,
)

__all__ = [
    'CHECKPOINT_FORMAT',
    'METHODS',
    'MODEL_SIZES',
    'PROJECTION_KINDS',
    'PROJECTION_STAGES',
    'CheckpointError',
    'DistillTargets',
    'ModelConfig',
    'ModelConfigError',
    'MultimodalSegmenter',
    'SizeSpec',
    'TrainOutputs',
    'build_model',
    'checkpoint_metadata',
    'checkpoint_step',
    'load_checkpoint',
    'load_weights',
    'read_checkpoint',
    'save_checkpoint',
    'step_problem',
    'weights_difference',
]
