"""Files written whole or not at all: a temporary file beside the target, then a rename.

A process killed while writing (SIGKILL, a crash, Ctrl-C) leaves the target as it was; a
half-written checkpoint, engine or results file would break every later run that reads it.
Only SIGKILL or a power cut leaves the ``.partial`` file behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def replace_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(partial)`` to ``<path>.partial`` in the same folder, then rename it to ``path``
    (made with its parents); returns ``path``.

    A write that fails or is interrupted (an exception, Ctrl-C) removes its partial file and
    leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + '.partial')
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
