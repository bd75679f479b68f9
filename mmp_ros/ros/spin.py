"""Spin a node until the process is asked to stop, without a traceback on the way out."""

from __future__ import annotations

from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


def spin_until_shutdown(node: Node) -> None:
    """Run ``node``'s callbacks until its context shuts down (Ctrl-C, SIGTERM, shutdown).

    rclpy's signal handler can shut the context down between the executor's ``ok()`` check
    and its next wait, which then fails with an RCLError; that is a normal stop, not a crash.
    """
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while node.context.ok():
            try:
                executor.spin_once(timeout_sec=0.5)
            except RCLError:
                if node.context.ok():
                    raise
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0.0)
