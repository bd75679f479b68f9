"""Stop signals (Ctrl-C, SIGTERM) as ``KeyboardInterrupt``, remembered, for every process of
the package: the command line's and the ROS processes' (``mmp_ros.ros.context.init_ros``).

Without this, SIGTERM (what ``docker stop``, systemd and ``ros2 launch`` send) killed a process
outright, without its clean-up. A stop is remembered as well as raised because it does not
always propagate: one that lands in code Python runs out of line (importlib's module-lock
weakref callback, a ``__del__``) is printed as 'Exception ignored in ...' and the program goes
on, and an extension interrupted in its initialization can fail with an ImportError that does
not carry the KeyboardInterrupt (numpy's imports datetime through PyCapsule_Import, which
replaces any error with 'PyCapsule_Import could not import module "datetime"').
"""

from __future__ import annotations

import signal
import sys
import threading

# The stop signals that came since the handlers were installed.
_received: list[int] = []
_unraisable_hooks: list = []


def stops_as_interrupt() -> dict[int, object]:
    """SIGTERM (while it has its default action) and SIGINT (while Python's own handler has
    it) raise KeyboardInterrupt from now on and are remembered (:func:`stop_received`); the
    handlers to put back with :func:`restore_handlers`. Where they are taken already (a node
    started by the command line), nothing is installed and nothing forgotten."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum, default in ((signal.SIGTERM, signal.SIG_DFL),
                                (signal.SIGINT, signal.default_int_handler)):
            if signal.getsignal(signum) is default:
                previous[signum] = signal.signal(signum, _interrupt)
    if previous:
        _received.clear()
        _unraisable_hooks.append(sys.unraisablehook)
        sys.unraisablehook = _unraisable
    return previous


def restore_handlers(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    if previous:
        sys.unraisablehook = _unraisable_hooks.pop()


def stop_received() -> bool:
    """Whether Ctrl-C or SIGTERM came since :func:`stops_as_interrupt` installed the handlers."""
    return bool(_received)


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _unraisable(unraisable) -> None:
    """After a stop, what it left behind in code run out of line is not printed: the
    KeyboardInterrupt itself, and the AttributeError of a ``__del__`` whose object's
    ``__init__`` it cut short (rclpy's ``Task``, SIGINT while the executor made one: its
    ``__del__`` reads ``_exception`` before that was set)."""
    left_by_a_stop = issubclass(unraisable.exc_type, KeyboardInterrupt) or (
        issubclass(unraisable.exc_type, AttributeError)
        and getattr(unraisable.object, '__name__', None) == '__del__'
    )
    if not (_received and left_by_a_stop):
        _unraisable_hooks[-1](unraisable)
