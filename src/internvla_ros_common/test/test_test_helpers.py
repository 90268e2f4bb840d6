"""The shared test helpers do what the node tests rely on."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from internvla_ros_common.example_node import EchoNode
from internvla_ros_common.testing import Spinner, ros_context, run_lifecycle_cycles, spin_until, wait_for


def test_wait_for_returns_true_once_the_condition_holds_and_false_after_the_timeout():
    flag = threading.Event()
    threading.Timer(0.05, flag.set).start()
    assert wait_for(flag.is_set, timeout=5.0)
    start = time.monotonic()
    assert wait_for(lambda: False, timeout=0.1) is False
    assert time.monotonic() - start >= 0.1


def test_spin_until_delivers_messages_and_gives_up_at_the_timeout():
    with ros_context() as context:
        node = Node("n", context=context)
        got: list[str] = []
        node.create_subscription(String, "t", lambda m: got.append(m.data), 10)
        pub = node.create_publisher(String, "t", 10)
        assert spin_until(node, lambda: pub.publish(String(data="a")) or bool(got), timeout=10.0)
        assert spin_until([node], lambda: False, timeout=0.1) is False
        node.destroy_node()


def test_spinner_reports_a_dead_executor_thread():
    with ros_context() as context:
        executor = SingleThreadedExecutor(context=context)
        executor.spin_once = lambda timeout_sec=None: 1 / 0
        spinner = Spinner(executor)
        with pytest.raises(RuntimeError, match="executor thread died"):
            spinner.stop()


def test_run_lifecycle_cycles_stops_at_the_first_failed_cycle(tmp_path):
    with ros_context() as context:
        node = EchoNode(context=context)
        assert run_lifecycle_cycles(node, 3) == [("success",) * 4] * 3
        node.trigger_configure()  # configure in an already inactive node is refused
        results = run_lifecycle_cycles(node, 3)
        assert len(results) == 1 and results[0][0] == "error"
        node.destroy_node()
