"""A small diagnostic_updater (ros/diagnostics) over a plain /diagnostics publisher.

diagnostic_updater is not on PyPI; diagnostic_msgs is. Same shape as its Python ``Updater``::

    self.diagnostics = Updater(self, period=1.0, hardware_id="internvla")
    self.diagnostics.add("grounding", self._diagnose)

    def _diagnose(self, stat: DiagnosticStatusWrapper) -> DiagnosticStatusWrapper:
        stat.summary(DiagnosticStatus.OK, "active")
        stat.add("rate_hz", f"{rate:.2f}")
        return stat

The publisher and the timer are plain (not lifecycle) entities made once, so a node reports while
inactive or unconfigured too; every status carries the node's lifecycle state. A task that sets no
summary reports ERROR "No message was set" (as diagnostic_updater); a task that raises reports
ERROR with the exception instead of killing the timer. The period is the parameter
``diagnostic_updater.period`` (declared here, so it is never an unknown parameter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from std_msgs.msg import Header

from internvla_ros_common import qos

OK, WARN, ERROR, STALE = (
    DiagnosticStatus.OK,
    DiagnosticStatus.WARN,
    DiagnosticStatus.ERROR,
    DiagnosticStatus.STALE,
)
PERIOD_PARAMETER = "diagnostic_updater.period"


class DiagnosticStatusWrapper(DiagnosticStatus):
    """DiagnosticStatus with diagnostic_updater's helpers (summary, add, merge_summary)."""

    def summary(self, level: int | bytes, message: str) -> None:
        self.level = _level(level)
        self.message = message

    def clear_summary(self) -> None:
        self.summary(OK, "")

    def merge_summary(self, level: int | bytes, message: str) -> None:
        """Keep the worse level; join the messages of equal worst level with '; '."""
        level = _level(level)
        if level > self.level:
            self.level, self.message = level, message
        elif level == self.level and message:
            self.message = f"{self.message}; {message}" if self.message else message

    def add(self, key: str, value: Any) -> None:
        self.values.append(KeyValue(key=str(key), value=str(value)))


def _level(level: int | bytes) -> bytes:
    return level if isinstance(level, bytes) else bytes([int(level)])


Task = Callable[[DiagnosticStatusWrapper], Any]


class Updater:
    """Publishes the result of every added task on /diagnostics each period and on force_update()."""

    def __init__(self, node: Node, period: float = 1.0, hardware_id: str = "") -> None:
        self.node = node
        self.hardware_id = hardware_id
        self._tasks: list[tuple[str, Task]] = []
        if node.has_parameter(PERIOD_PARAMETER):  # given as -p: declared already from the override
            period = float(node.get_parameter(PERIOD_PARAMETER).value)
        else:
            period = float(node.declare_parameter(PERIOD_PARAMETER, float(period)).value)
        self.period = period
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self._timer = node.create_timer(period, self.update)

    def add(self, name: str, task: Task) -> None:
        """Run ``task(stat)`` at each update; its status is named '<node name>: <name>'."""
        self._tasks.append((name, task))

    def remove(self, name: str) -> bool:
        before = len(self._tasks)
        self._tasks = [(n, t) for n, t in self._tasks if n != name]
        return len(self._tasks) != before

    def statuses(self) -> list[DiagnosticStatusWrapper]:
        """Run every task now and return their statuses (what update() publishes)."""
        state = getattr(self.node, "lifecycle_state", None)
        out = []
        for name, task in self._tasks:
            stat = DiagnosticStatusWrapper(
                name=f"{self.node.get_name()}: {name}",
                hardware_id=self.hardware_id,
                level=ERROR,
                message="No message was set",
            )
            try:
                result = task(stat)
                stat = result if isinstance(result, DiagnosticStatus) else stat
            except Exception as exc:
                stat.summary(ERROR, f"diagnostic task failed: {type(exc).__name__}: {exc}")
            if state is not None:
                stat.add("lifecycle_state", state)
            out.append(stat)
        return out

    def update(self) -> None:
        """Publish every task's status now (the timer calls this each period)."""
        if not self._tasks:
            return
        header = Header(stamp=self.node.get_clock().now().to_msg())
        self._publisher.publish(DiagnosticArray(header=header, status=self.statuses()))

    def force_update(self) -> None:
        """Publish now, e.g. on a state change, instead of waiting for the period."""
        self.update()

    def destroy(self) -> None:
        """Free the timer and the publisher (before destroy_node, or when the node drops diagnostics)."""
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self.node.destroy_publisher(self._publisher)
            self._timer = self._publisher = None
