"""Health verdicts -> ``diagnostic_msgs``: one status per sensor, one for the model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from mmp_ros.core.health import HealthStatus, Level, SensorState

# Statuses are named '<node>: <component>', as diagnostic_updater names them: the sensors'
# '<node>: <modality>', the model's '<node>: model'. <node> is the node's own name in the root
# namespace ('mmp_segmentation' by default), its fully qualified name in any other
# ('/robot1/mmp_segmentation': mmp_ros.core.health.status_node), so that nodes of one name
# in different namespaces, or given names of their own (-r __node:=mmp_front), can be told
# apart on /diagnostics. The model's hardware_id is the node's fully qualified name.
MODEL_STATUS = 'model'


def status_name(node: str, component: str) -> str:
    return f'{node}: {component}'


def make_status(
    node: str, component: str, level: Level, message: str, hardware_id: str,
    values: Mapping[str, str] | None = None,
) -> DiagnosticStatus:
    """``node``: what the status's name begins with (:func:`~mmp_ros.core.health.status_node`)."""
    return DiagnosticStatus(
        level=bytes([int(level)]),
        name=status_name(node, component),
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=str(v)) for k, v in (values or {}).items()],
    )


def sensor_status(
    node: str, status: HealthStatus, hardware_id: str, qos_problem: str = '',
    type_problem: str = '',
) -> DiagnosticStatus:
    """A sensor's status; ``hardware_id`` is the camera's frame_id (empty before any message).

    ``qos_problem`` says that a publisher on its topic offers incompatible QoS, and
    ``type_problem`` that one publishes another message type there: each a value (``qos``,
    ``type``), and the reason in the message too while nothing arrives (never seen, or stale).
    """
    values = {**status.values, 'masked': str(not status.usable).lower()}
    message = status.message
    for key, problem in (('qos', qos_problem), ('type', type_problem)):
        if problem:
            values[key] = problem
            if status.state in (SensorState.NEVER_SEEN, SensorState.STALE):
                message = f'{message}; {problem}'
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
