"""What the command line reports without a traceback: errors in what a user gave it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class InputError(Exception):
    """A file, config or parameter the user gave cannot be used; the message names it and
    says what to do.

    The error types of the package's inputs (configs, checkpoints, model files, datasets,
    bags, dropout schedules) derive from it, beside their own base, and ``mmp_ros`` prints
    their message alone: it is the input that is wrong, not the program.
    """


class OutputFolderError(InputError, OSError):
    """An output folder a command cannot create or write into (a file in its place, a
    folder without permission)."""


def output_folder(path: str | Path, option: str) -> Path:
    """Create ``path`` (and its parents) for a command's output, before any work is done:
    a path that cannot be a folder, or a folder that takes no file (read-only, without
    permission), is an :class:`OutputFolderError` naming ``option``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f'{option} {path}: cannot be a folder '
                                f'({exc.strerror or exc})') from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix='.write-test-'):
            pass
    except OSError as exc:
        raise OutputFolderError(f'{option} {path}: cannot write into it '
                                f'({exc.strerror or exc})') from None
    return path


def ends_with_a_slash(path: str | Path) -> bool:
    """Whether an output path given as text ends with a slash, as a folder's does: a ``Path``
    drops the slash, and a file written there took the folder's name."""
    return isinstance(path, str) and path.endswith(('/', os.sep))


def output_file(path: str | Path, option: str, example: str = 'results.json') -> Path:
    """Check, before any work is done, that ``path`` can take the file a command writes when
    its work is over: not a folder, and its folder made and writable (:func:`output_folder`).
    Given as text (an option's ``type`` left ``str``), a path that ends with a slash is refused
    as a folder's too, made or not: a ``Path`` drops the slash, and the file took the folder's
    name. ``example``: the file name the messages suggest in the folder."""
    if ends_with_a_slash(path):
        raise OutputFolderError(f'{option} {path} ends with a slash, as a folder does; give the '
                                f'file to write, e.g. {Path(path) / example}')
    path = Path(path)
    if path.is_dir():
        raise OutputFolderError(f'{option} {path} is a folder; give the file to write, e.g. '
                                f'{path / example}')
    output_folder(path.parent, option)
    return path


def found_in(folder: Path, suffix: str) -> str:
    """For a message about a folder given where a file was wanted: '' or ' (it holds
    <file>, ...)' naming up to three files in ``folder`` whose names end in ``suffix``."""
    try:
        names = sorted(str(f) for f in folder.glob(f'*{suffix}') if f.is_file())
    except OSError:
        return ''
    return f' (it holds {", ".join(names[:3])})' if names else ''


def home_not_expanded(path: str | Path) -> str:
    """For a message about a path that does not exist: '' or ' (... give <home>/...)' where
    it starts with ``~``, which a shell expands only at the start of a word (not in
    ``model_file_path:=~/m.onnx`` or ``--checkpoint=~/m.pt``) and nothing here expands."""
    text = str(path)
    expanded = os.path.expanduser(text) if text.startswith('~') else text
    return '' if expanded == text else (f' (a leading ~ is not expanded here: give the full '
                                        f'path, {expanded})')
