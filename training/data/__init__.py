"""Training data: a physics-based synthetic scene generator and readers for real datasets.

numpy-only modules (importable without torch): ``classes`` (class list, palette, what each
modality perceives), ``scene`` (random scenes, split seeds), ``geometry`` (ray casting),
``render`` (sensor models), ``decode`` (raw encodings -> sensor representation), ``ceiling``
(information ceiling per modality subset), ``layout`` (on-disk format). torch modules:
``dataset`` (:class:`SyntheticDataset`) and ``loaders`` (NYUDv2, MCubeS, FMB, written data).
"""

from training.data.ceiling import information_ceiling
from training.data.classes import CLASS_NAMES, CUES, IGNORE_LABEL, PALETTE
from training.data.scene import SPLITS, make_split

__all__ = [
    'CLASS_NAMES',
    'CUES',
    'IGNORE_LABEL',
    'PALETTE',
    'SPLITS',
    'information_ceiling',
    'make_split',
]
