"""Updater: /diagnostics from a plain publisher, so an inactive or unconfigured node still reports."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from internvla_ros_common.diagnostics import ERROR, OK, WARN, DiagnosticStatusWrapper, Updater  # noqa: E402
from internvla_ros_common.example_node import EchoNode  # noqa: E402
from internvla_ros_common.testing import spin_until  # noqa: E402


def test_wrapper_summary_add_and_merge_keep_the_worst_level():
    stat = DiagnosticStatusWrapper()
    stat.summary(OK, "fine")
    stat.merge_summary(WARN, "slow")
    stat.merge_summary(OK, "ignored")
    stat.merge_summary(WARN, "late")
    stat.add("rate_hz", 9.5)
    assert (stat.level, stat.message) == (WARN, "slow; late")
    assert [(v.key, v.value) for v in stat.values] == [("rate_hz", "9.5")]


def test_an_unconfigured_managed_node_reports_with_its_lifecycle_state(context):
    node = EchoNode(context=context)
    listener = Node("listener", context=context)
    received: list[DiagnosticArray] = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", received.append, 10)
    updater = Updater(node, period=0.05, hardware_id="internvla")

    def ok(stat):
        stat.summary(OK, "idle")
        stat.add("queue", 0)
        return stat

    updater.add("echo", ok)
    updater.add("silent", lambda stat: None)
    updater.add("broken", lambda stat: 1 / 0)
    assert spin_until([node, listener], lambda: bool(received), timeout=10.0)
    echo, silent, broken = received[0].status
    assert (echo.name, echo.level, echo.message, echo.hardware_id) == (
        "echo_node: echo",
        OK,
        "idle",
        "internvla",
    )
    assert [(v.key, v.value) for v in echo.values] == [("queue", "0"), ("lifecycle_state", "unconfigured")]
    assert (silent.level, silent.message) == (ERROR, "No message was set")
    assert broken.level == ERROR and "ZeroDivisionError" in broken.message

    assert node.trigger_configure().name == "SUCCESS"
    received.clear()
    updater.force_update()
    assert spin_until([node, listener], lambda: bool(received), timeout=10.0)
    assert ("lifecycle_state", "inactive") in [(v.key, v.value) for v in received[0].status[0].values]
    updater.destroy()
    node.destroy_node()
    listener.destroy_node()


def test_the_period_is_a_parameter_and_a_given_one_wins(context):
    node = Node(
        "n",
        context=context,
        parameter_overrides=[Parameter("diagnostic_updater.period", value=2.5)],
        automatically_declare_parameters_from_overrides=True,
    )
    assert Updater(node, period=1.0).period == 2.5
    other = Node("m", context=context)
    assert Updater(other, period=0.5).period == 0.5
    assert other.get_parameter("diagnostic_updater.period").value == 0.5
    assert isinstance(DiagnosticStatusWrapper(), DiagnosticStatus)
    node.destroy_node()
    other.destroy_node()
