"""QoS profiles by name: the per-input ``sensors.<modality>.qos`` parameter's values."""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from mmp_ros.core.parameters import QOS_PROFILES


def subscription_qos(profile: str, depth: int) -> QoSProfile:
    """The subscription QoS for ``profile`` (one of ``QOS_PROFILES``) with a keep-last depth.

    ``sensor_data`` and ``best_effort`` are the same on the wire (best effort, volatile);
    the first keeps the name camera drivers document. A reliable subscription hears nothing
    from a best-effort publisher, which is why it is not the default.
    """
    if profile not in QOS_PROFILES:
        raise ValueError(f'unknown QoS profile {profile!r}; choose one of {list(QOS_PROFILES)}')
    reliability = qos_profile_sensor_data.reliability
    if profile == 'reliable':
        reliability = ReliabilityPolicy.RELIABLE
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos(depth: int = 2) -> QoSProfile:
    """Outputs: reliable, keep last ``depth`` (a slow subscriber gets the newest, not a queue)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos() -> QoSProfile:
    """Transient local, depth 1: a late-joining subscriber still gets the last message."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
