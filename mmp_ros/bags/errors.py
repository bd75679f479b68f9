"""The one error type of the bag tools."""

from __future__ import annotations

from mmp_ros.errors import InputError


class BagError(InputError):
    """A bag that cannot be used as asked; the message names the file and, where one is at
    fault, the topic.

    The CLI commands catch exactly this type and print it without a traceback: it is the
    user's input that is wrong, not the program.
    """
