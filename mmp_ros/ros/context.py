"""Start-up and shutdown shared by every ROS process of the package.

The DDS profile must be in the environment before ``rclpy.init`` (Fast DDS reads it when the
first participant is created), and every process must end the same way on Ctrl-C, SIGTERM or
an external ``rclpy.shutdown``: destroy its node, then ``try_shutdown`` (which tolerates a
context that the signal handler already shut down).
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise

import cv2
import rclpy
from rclpy._rclpy_pybind11 import RCLError, UnknownROSArgsError
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterException,
)
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from mmp_ros.core.parameters import type_in_words
from mmp_ros.dds import (
    DEFAULT_RMW,
    DdsSetup,
    apply_dds_profile,
    domain_id_problem,
    remove_stale_shm_segments,
)
from mmp_ros.errors import InputError
from mmp_ros.ros.names import namespace_problem, node_name_problem, topic_name_problem
from mmp_ros.stops import restore_handlers, stops_as_interrupt


class RosInitError(InputError, RuntimeError):
    """``rclpy.init`` refused the process's ROS arguments or environment: a params file that
    is missing or not YAML, a ``-p`` or ``-r`` without its rule, a ``ROS_DOMAIN_ID`` that is
    not a number."""


class RosParameterError(RosInitError):
    """rclpy refused a value given at start (``-p``, ``--params-file``) as a node declared its
    parameter: of another type (``-p use_sim_time:=1``), or outside the range its descriptor
    gives."""


# rclpy's parameter types, by the Python type of their values (and _ARRAY: a list of them).
_RCLPY_TYPES = {'BOOL': bool, 'INTEGER': int, 'DOUBLE': float, 'STRING': str, 'BYTE': bytes}


def _type_words(name: str) -> tuple[str, str]:
    """(what a parameter of rclpy's type ``name`` takes, a value of it) in words, as the
    node's own refusals say them; the type's name where it is none of rclpy's."""
    kind = _RCLPY_TYPES.get(name.removesuffix('_ARRAY'))
    if kind is None:
        return name.lower(), 'a value'
    return type_in_words(kind, array=name.endswith('_ARRAY'))


def parameter_refusal(error: ParameterException) -> str:
    """rclpy's refusal of a parameter value in words, naming the parameter once: 'use_sim_time
    must be true or false, got an integer 1' for "Trying to set parameter 'use_sim_time' to
    '1' of type 'INTEGER', expecting type 'BOOL': use_sim_time"."""
    text = str(error)
    typed = re.fullmatch(r"Trying to set parameter '(.+?)' to '(.*)' of type '(\w+)', "
                         r"expecting type '(\w+)': .*", text, flags=re.DOTALL)
    if typed:
        name, value, given, expected = typed.groups()
        value = re.sub(r"^array\('\w', (.*)\)$", r'\1', value)  # an array's items alone
        if given == 'STRING':
            value = repr(value)
        return f'{name} must be {_type_words(expected)[0]}, got {_type_words(given)[1]} {value}'
    ranged = re.fullmatch(r'Invalid parameter value \((.*)\) for parameter\. Reason: (.*): '
                          r'([^:]+)', text, flags=re.DOTALL)
    if ranged:
        value, reason, name = ranged.groups()
        return f'{name}={value} refused: {reason}'
    return text


def _rcl_reason(error: RCLError) -> str:
    """rcl's message without its prefix and the C source locations it appends; for a topic
    remapping rule rcl refused, the reason rclpy gives for the name at fault."""
    text = str(error).removeprefix('failed to initialize rcl: ')
    return _remap_rule_reason(re.sub(r', at [^,]+:\d+', '', text))


def _remap_rule_reason(reason: str) -> str:
    """rcl refuses an invalid topic name in a remapping rule in its lexer's words, or none:
    "Couldn't parse remap rule: '-r rgb/image:=/camera/image/'. Error: error not set". The
    rule with rclpy's reason for its name at fault instead ('topic name must not end with a
    forward slash'); ``reason`` as it is for anything else."""
    match = re.fullmatch(r"Couldn't parse remap rule: '(\S+) (.*)'\. Error: .*", reason,
                         flags=re.DOTALL)
    if not match:
        return reason
    flag, rule = match.groups()
    source, assign, target = rule.partition(':=')
    if not assign:
        return f'{flag} {rule}: a remapping rule is FROM:=TO'
    source = re.sub(r'^[A-Za-z_]\w*:(?!//)', '', source)  # a rule for one node: 'node:from'
    for name in (source, target):
        problem = topic_name_problem(re.sub(r'^ros(?:topic|service)://', '', name), 'node')
        if problem:
            return f'{flag} {rule}: {problem}'
    return reason


@contextmanager
def init_ros(
    args: Sequence[str] | None = None, *, dds_profile: bool = True, ros_signals: bool = True
) -> Iterator[DdsSetup]:
    """Apply the DDS profile, ``rclpy.init``; on leaving, shut down quietly.

    A ``KeyboardInterrupt`` or ``ExternalShutdownException`` raised in the body is the normal
    way a ROS process is asked to stop, so it ends the block without a traceback; so does any
    error raised once the context has been shut down (a signal during start-up makes the
    next node or publisher creation fail). Destroy the node inside the block (``finally``)
    so that it goes before the context.
    ``ros_signals=False``: rclpy does not shut the context down on SIGINT/SIGTERM, for a
    process that handles them itself and still needs ROS to finish its work (the recorder
    takes what has already arrived before it closes the bag).
    """
    setup = apply_dds_profile(profile=dds_profile)
    # A frame OpenCV cannot decode is the node's to report, once, in /diagnostics; OpenCV's
    # own lines for it (libtiff's, libpng's: two or three a frame) would fill the log at the
    # camera's rate.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    problem = domain_id_problem() or name_rule_problem(sys.argv if args is None else args)
    if problem:
        raise RosInitError(f'cannot initialize ROS 2: {problem}')
    if setup.rmw_implementation == DEFAULT_RMW:
        remove_stale_shm_segments()  # killed processes' segments, which Fast DDS never frees
    # SIGTERM stops the body as Ctrl-C does. rclpy's SIGINT handler chains to Python's, which
    # raises KeyboardInterrupt; its SIGTERM handler only shuts the context down, so a start-up
    # step that never looks at the context (loading a model, building a TensorRT engine) ran
    # on to its end. rclpy chains to a Python handler installed before its own: ours raise
    # KeyboardInterrupt and are remembered, so that what a stop leaves in a __del__ is quiet.
    previous_handlers = stops_as_interrupt() if ros_signals else {}
    # args None: rclpy reads sys.argv (a node started by `ros2 run`/launch). A command with
    # options of its own passes only its `--ros-args ...` part, else an option value such as
    # `--remap /a:=/b` would be read as a (deprecated-syntax) ROS remapping rule.
    try:
        rclpy.init(
            args=None if args is None else [sys.argv[0], *args],
            signal_handler_options=None if ros_signals else SignalHandlerOptions.NO,
        )
    except RCLError as exc:
        restore_handlers(previous_handlers)
        raise RosInitError(f'cannot initialize ROS 2: {_rcl_reason(exc)}') from None
    except UnknownROSArgsError as exc:  # its message: the list of arguments, nothing more
        restore_handlers(previous_handlers)
        raise RosInitError(
            f'cannot initialize ROS 2: unknown ROS arguments {exc} after --ros-args (a '
            'parameter takes -p NAME:=VALUE, a remapping -r FROM:=TO)'
        ) from None
    try:
        yield setup
    except (KeyboardInterrupt, ExternalShutdownException) as stop:
        # What the stop cut short goes now, while a stop's leftovers are kept quiet
        # (mmp_ros.stops), not once the caller lets go of its traceback: a half-made rclpy
        # Task (Ctrl-C while the executor made one) printed its __del__'s AttributeError.
        traceback.clear_frames(stop.__traceback__)
    except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
        # A node's declaration refused a value given at start: rclpy's own parameters
        # (use_sim_time) in every process, a node's without checks of its own. It ended in
        # rclpy's traceback.
        if rclpy.ok():
            raise RosParameterError(f'invalid parameters: {parameter_refusal(exc)}') from None
    except Exception:
        # Ctrl-C or SIGTERM shut the context down while the body was still starting up
        # (creating a node, a publisher): what failed for that reason is the stop asked for.
        if rclpy.ok():
            raise
    finally:
        rclpy.try_shutdown()  # puts back the handlers rclpy replaced: ours, then the previous
        restore_handlers(previous_handlers)


def name_rule_problem(args: Sequence[str]) -> str | None:
    """Why a namespace or node name remapping among the ROS arguments (``-r __ns:=/robot1``,
    ``-r __node:=mmp_front``, also one for a single node, ``-r node:__ns:=...``) names no
    valid namespace or node name, None if none does.

    rcl lexes some invalid namespaces (``/robot1/``, with its trailing slash) and leaves them
    to the node's creation, which fails with an RCLError traceback and rclpy's RuntimeWarning;
    others, and every invalid node name (``mmp-front``), it refuses with only its lexer's
    words ('Expected lexeme type 19, got 18', 'Expected lexeme type (1) not found').
    """
    for flag, rule in _remap_rules(args):
        target = re.fullmatch(r'(?:[^:=]+:)?__(ns|node|name):=(.*)', rule)
        if target:
            check = namespace_problem if target.group(1) == 'ns' else node_name_problem
            problem = check(target.group(2))
            if problem:
                return f'{flag} {rule}: {problem}'
    return None


def node_name_rule(args: Sequence[str], name: str) -> str:
    """The name that the ROS arguments give a node created as ``name``: that of the first
    ``-r __node:=NEW`` among them (also one for that node alone, ``-r name:__node:=NEW``, or
    with rcl's older ``__name``), as rcl applies them; ``name`` where none does. Read from
    the arguments, it is there also for a start that fails before the node exists."""
    for _, rule in _remap_rules(args):
        target = re.fullmatch(r'(?:([^:=]+):)?__(?:node|name):=(.+)', rule)
        if target and target.group(1) in (None, name):
            return target.group(2)
    return name


def non_ros_arguments(args: Sequence[str]) -> list[str]:
    """The arguments after the program name that are outside every ``--ros-args ... [--]``:
    rclpy passes them over, so a node that takes none of its own would run without them."""
    extra, ros = [], False
    for arg in args[1:]:
        if arg in ('--ros-args', '--') and (ros or arg == '--ros-args'):
            ros = arg == '--ros-args'
        elif not ros:
            extra.append(arg)
    return extra


def _remap_rules(args: Sequence[str]) -> Iterator[tuple[str, str]]:
    """``(flag, rule)`` of each remapping (``-r``/``--remap RULE``) among the ROS arguments:
    those between ``--ros-args`` and its closing ``--`` (or the end)."""
    ros = False
    for flag, rule in pairwise([*args, '']):
        if flag in ('--ros-args', '--'):
            ros = flag == '--ros-args'
        elif ros and flag in ('-r', '--remap'):
            yield flag, rule


def spin_node(
    make_node: Callable[[], Node],
    args: Sequence[str] | None = None,
    *,
    dds_profile: bool = True,
) -> int:
    """Run one node until it is asked to stop: the ``main`` of a package process.

    ``make_node`` is called after ``rclpy.init``; the DDS set-up is logged by the node so that
    a user sees which transport and profile a process runs with.
    """
    with init_ros(args, dds_profile=dds_profile) as setup:
        node = make_node()
        try:
            node.get_logger().info(setup.describe())
            rclpy.spin(node)
        finally:
            node.destroy_node()
    return 0


def spin_until(node: Node, condition: Callable[[], bool], timeout_s: float) -> bool:
    """Spin ``node`` until ``condition()`` holds or ``timeout_s`` passes; whether it held.

    The way every process and test of the package waits for discovery, matching or data: on a
    condition with a deadline, never on a fixed sleep.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        rclpy.spin_once(node, timeout_sec=min(left, 0.05))
    return True
