"""Topic names checked as rcl checks them, before a process starts ROS or writes anything."""

from __future__ import annotations

from rclpy.exceptions import (
    InvalidNamespaceException,
    InvalidNodeNameException,
    InvalidTopicNameException,
)
from rclpy.expand_topic_name import expand_topic_name
from rclpy.validate_full_topic_name import validate_full_topic_name
from rclpy.validate_namespace import validate_namespace
from rclpy.validate_node_name import validate_node_name


def topic_name_problem(name: str, node_name: str) -> str | None:
    """None if ``name`` is a valid topic name for node ``node_name`` (relative names as in
    the root namespace), else rcl's reason in one line."""
    try:
        validate_full_topic_name(expand_topic_name(name, node_name, '/'))
    except (ValueError, InvalidTopicNameException) as exc:
        return _reason(exc)
    return None


def namespace_problem(namespace: str) -> str | None:
    """None if ``namespace`` is a valid node namespace (``/robot1``), else rcl's reason in
    one line."""
    try:
        validate_namespace(namespace)
    except (ValueError, InvalidNamespaceException) as exc:
        return _reason(exc)
    return None


def node_name_problem(name: str) -> str | None:
    """None if ``name`` is a valid node name (``mmp_front``), else rcl's reason in one line."""
    try:
        validate_node_name(name)
    except (ValueError, InvalidNodeNameException) as exc:
        return _reason(exc)
    return None


def _reason(error: Exception) -> str:
    """rcl's message on one line, without the C source location it appends."""
    return str(error).splitlines()[0].split(', at /')[0].rstrip(':')
