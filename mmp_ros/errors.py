"""What the command line reports without a traceback: errors in what a user gave it."""

from __future__ import annotations


class InputError(Exception):
    """A file, config or parameter the user gave cannot be used; the message names it and
    says what to do.

    The error types of the package's inputs (configs, checkpoints, model files, datasets,
    bags, dropout schedules) derive from it, beside their own base, and ``mmp_ros`` prints
    their message alone: it is the input that is wrong, not the program.
    """
