"""Health verdicts -> ``diagnostic_msgs``: one status per sensor, one for the model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from mmp_ros.core.health import HealthStatus, Level, SensorState
from mmp_ros.core.parameters import NODE_NAME

# Statuses are named '<node>: <component>', as diagnostic_updater names them: the sensors'
# '<node>: <modality>', the model's '<node>: model'. <node> is the node's own name (no
# namespace), so that nodes given names of their own (-r __node:=mmp_front) can be told apart
# on /diagnostics; under its default name the node keeps the prefix it has always published,
# 'mmp_ros' (config/analyzers.yaml expects it).
DEFAULT_STATUS_NODE = 'mmp_ros'
MODEL_STATUS = 'model'


def status_node(node_name: str) -> str:
    """What the statuses of the node named ``node_name`` begin with."""
    return DEFAULT_STATUS_NODE if node_name == NODE_NAME else node_name


def status_name(node: str, component: str) -> str:
    return f'{node}: {component}'


def make_status(
    node: str, component: str, level: Level, message: str, hardware_id: str,
    values: Mapping[str, str] | None = None,
) -> DiagnosticStatus:
    """``node``: what the names begin with (:func:`status_node`)."""
    return DiagnosticStatus(
        level=bytes([int(level)]),
        name=status_name(node, component),
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in (values or {}).items()],
    )


def sensor_status(
    node: str, status: HealthStatus, hardware_id: str, qos_problem: str = '',
) -> DiagnosticStatus:
    """A sensor's status; ``hardware_id`` is the camera's frame_id (empty before any message).

    ``qos_problem`` says that a publisher on its topic offers incompatible QoS: a value, and
    the reason in the message too while nothing arrives (never seen, or stale).
    """
    values = {**status.values, 'masked': str(not status.usable).lower()}
    message = status.message
    if qos_problem:
        values['qos'] = qos_problem
        if status.state in (SensorState.NEVER_SEEN, SensorState.STALE):
            message = f'{message}; {qos_problem}'
    return make_status(node, status.modality, status.level, message, hardware_id, values)


def not_in_model_status(node: str, modality: str) -> DiagnosticStatus:
    """A sensor the model takes no input from: not subscribed, reported OK like a disabled one,
    so an aggregator expecting every sensor's status (config/analyzers.yaml) finds it."""
    values = {'state': SensorState.DISABLED.value, 'masked': 'true'}
    return make_status(
        node, modality, Level.OK, f'the model takes no {modality} input: not subscribed', '',
        values,
    )


def diagnostic_array(stamp: Time, statuses: Iterable[DiagnosticStatus]) -> DiagnosticArray:
    msg = DiagnosticArray(status=list(statuses))
    msg.header.stamp = stamp
    return msg
