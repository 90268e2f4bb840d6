"""Named QoS profiles, so each topic's reliability and depth are chosen once and read by name.

Compatibility rule to remember: a RELIABLE subscriber never receives from a BEST_EFFORT publisher;
a BEST_EFFORT subscriber receives from both. TRANSIENT_LOCAL (latched) publishers serve late joiners
only when the subscriber asks for TRANSIENT_LOCAL too.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

SENSOR = qos_profile_sensor_data
"""Camera/joint streams from drivers: best effort, last 5; matches reliable and best-effort publishers."""

IMAGE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
"""Images between our own nodes: reliable, only the newest two (a slow consumer skips, never queues)."""

COMMAND = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
"""Commands to the robot or between nodes (action chunks, twists, gripper): reliable, last 10."""

STATUS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
"""Status and results published as they happen: reliable, volatile."""

STATUS_LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""The last value of a slowly changing state (mode, calibration, model info) for late joiners."""

DIAGNOSTICS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
"""/diagnostics, as diagnostic_updater publishes it."""

__all__ = ["COMMAND", "DIAGNOSTICS", "IMAGE", "SENSOR", "STATUS", "STATUS_LATCHED"]
