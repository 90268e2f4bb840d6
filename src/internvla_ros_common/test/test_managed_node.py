"""ManagedNode over real rclpy: transitions, entities scoped to the active state, failures, 100 cycles."""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from internvla_msgs.action import ExecuteInstruction  # noqa: E402
from internvla_ros_common.example_node import EchoNode  # noqa: E402
from internvla_ros_common.testing import Spinner, run_lifecycle_cycles, spin_until, wait_for  # noqa: E402

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


@pytest.fixture
def nodes(context):
    made = []

    def make(cls=EchoNode, **overrides):
        node = cls(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        made.append(node)
        return node

    yield make
    for node in made:
        node.destroy_node()


def entity_counts(node: Node) -> tuple[int, int, int]:
    return len(list(node.publishers)), len(list(node.subscriptions)), len(list(node.timers))


class Probe:
    """A plain node that feeds echo_node's input and records its output."""

    def __init__(self, context) -> None:
        self.node = Node("probe", context=context)
        self.received: list[str] = []
        self.pub = self.node.create_publisher(String, "echo_node/input", 10)
        self.node.create_subscription(String, "echo_node/output", lambda m: self.received.append(m.data), 10)

    def echoes(self) -> list[str]:
        return [r for r in self.received if not r.startswith("heartbeat")]


def test_echo_node_works_only_while_active(context, nodes):
    echo = nodes(prefix=">", heartbeat_hz=50.0)
    probe = Probe(context)
    assert echo.trigger_configure() == SUCCESS and echo.lifecycle_state == "inactive"
    assert echo.params.prefix == ">"
    assert echo.trigger_activate() == SUCCESS and echo.is_active

    def exchange() -> bool:
        probe.pub.publish(String(data="hi"))
        return bool(probe.echoes())

    assert spin_until([echo, probe.node], exchange, timeout=10.0)
    assert probe.echoes()[0] == ">hi"
    assert spin_until([echo, probe.node], lambda: any(r.startswith("heartbeat") for r in probe.received))

    assert echo.trigger_deactivate() == SUCCESS
    heartbeats = echo.heartbeats
    probe.received.clear()
    spin_until([echo, probe.node], lambda: probe.pub.publish(String(data="x")) and False, timeout=0.5)
    # nothing echoed, no heartbeat while inactive (an echo of one of the many "hi" sent above may still
    # arrive late: it was published while active, so only ">x" and the node's own count can tell)
    assert ">x" not in probe.received and echo.heartbeats == heartbeats
    probe.node.destroy_node()


def test_100_cycles_leave_no_publisher_subscription_or_timer_behind(nodes):
    echo = nodes()
    baseline = entity_counts(echo)

    group_sizes = []

    def check(index: int) -> None:
        assert entity_counts(echo) == baseline, f"cycle {index}"
        assert echo.lifecycle_state == "unconfigured" and echo.params is None
        group_sizes.append(len(echo.default_callback_group.entities))

    results = run_lifecycle_cycles(echo, 100, on_cycle=check)
    assert results == [("success",) * 4] * 100
    # rclpy's callback group keeps a weakref per entity ever made; the base drops the dead ones
    assert max(group_sizes) - min(group_sizes) <= 6, group_sizes[-5:]


def test_cycles_while_an_executor_spins_the_node_on_another_thread(context, nodes):
    echo = nodes(heartbeat_hz=100.0)
    probe = Probe(context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(echo)
    executor.add_node(probe.node)
    with Spinner(executor):
        for index in range(30):
            assert echo.trigger_configure() == SUCCESS, index
            assert echo.trigger_activate() == SUCCESS, index
            probe.pub.publish(String(data=str(index)))
            assert echo.trigger_deactivate() == SUCCESS, index
            assert echo.trigger_cleanup() == SUCCESS, index
    executor.shutdown(timeout_sec=2.0)
    probe.node.destroy_node()


def test_a_failing_setup_returns_failure_tears_down_and_can_configure_again(nodes, tmp_path):
    echo = nodes(model_file=str(tmp_path / "missing.txt"))
    baseline = entity_counts(echo)
    assert echo.trigger_configure() == FAILURE
    assert echo.lifecycle_state == "unconfigured" and entity_counts(echo) == baseline
    (tmp_path / "missing.txt").write_text("model says: \n")
    assert echo.trigger_configure() == SUCCESS and echo.prefix == "model says: "


class BrokenActivate(EchoNode):
    def activate(self) -> None:
        super().activate()
        raise RuntimeError("camera not found")


class BrokenDeactivate(EchoNode):
    def deactivate(self) -> None:
        raise RuntimeError("stop command timed out")


def test_a_failing_activate_undoes_itself_and_stays_inactive(nodes):
    node = nodes(BrokenActivate)
    assert node.trigger_configure() == SUCCESS
    configured = entity_counts(node)
    assert node.trigger_activate() == FAILURE
    assert node.lifecycle_state == "inactive" and entity_counts(node) == configured
    assert not node.output.is_activated
    assert node.trigger_cleanup() == SUCCESS


def test_an_exception_in_deactivate_goes_through_on_error_to_a_clean_unconfigured_node(nodes):
    node = nodes(BrokenDeactivate)
    baseline = entity_counts(node)
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    assert node.trigger_deactivate() == TransitionCallbackReturn.ERROR
    assert node.lifecycle_state == "unconfigured" and entity_counts(node) == baseline
    assert node.trigger_configure() == SUCCESS  # usable again


def test_shutdown_from_active_runs_deactivate_and_teardown(nodes):
    echo = nodes()
    baseline = entity_counts(echo)
    assert echo.trigger_configure() == SUCCESS and echo.trigger_activate() == SUCCESS
    assert echo.trigger_shutdown() == SUCCESS
    assert echo.lifecycle_state == "finalized" and entity_counts(echo) == baseline and echo.output is None


def test_check_params_failures_fail_configure(nodes):
    class Picky(EchoNode):
        def check_params(self, params):
            return ["prefix must not be empty"] if not params.prefix else []

    picky = nodes(Picky, prefix="")
    assert picky.trigger_configure() == FAILURE and picky.params is None


class WithAction(EchoNode):
    """An action server made once in __init__: goals accepted only while active."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.managed_action_server(ExecuteInstruction, "execute", self._execute)

    def _execute(self, goal_handle):
        goal_handle.succeed()
        return ExecuteInstruction.Result(success=True, reason="finished")


def test_a_managed_action_server_rejects_goals_unless_active_and_survives_cycles(context, nodes):
    node = nodes(WithAction)
    client_node = Node("client", context=context)
    client = ActionClient(client_node, ExecuteInstruction, "execute")  # built before spinning (rclpy race)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    executor.add_node(client_node)

    def accepted() -> bool:
        future = client.send_goal_async(ExecuteInstruction.Goal(instruction="wave"))
        assert wait_for(future.done, timeout=10.0)
        return future.result().accepted

    with Spinner(executor):
        assert client.wait_for_server(timeout_sec=10.0)
        assert accepted() is False  # unconfigured
        for index in range(30):
            assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS, index
            assert node.trigger_deactivate() == SUCCESS and node.trigger_cleanup() == SUCCESS, index
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        assert accepted() is True
        assert node.trigger_deactivate() == SUCCESS
        assert accepted() is False
    executor.shutdown(timeout_sec=2.0)
    client.destroy()
    client_node.destroy_node()


class OwnDestroy(EchoNode):
    """A subclass whose destroy_node needs state made after the base's __init__."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.helpers = {"a": 1}

    def destroy_node(self) -> None:
        self.helpers.clear()
        super().destroy_node()


def test_a_bad_override_raises_the_schema_error_even_when_a_subclass_overrides_destroy_node(context):
    from internvla_ros_common.params import ParameterSchemaError

    with pytest.raises(ParameterSchemaError, match="Did you mean: 'prefix'"):
        OwnDestroy(context=context, parameter_overrides=[Parameter("prefx", value="a")])


class SlowTimer(EchoNode):
    """A timer callback that is still running when deactivate and cleanup come."""

    def activate(self) -> None:
        self.started = 0
        self.finished = 0
        self.managed_timer(0.01, self._slow)

    def _slow(self) -> None:
        self.started += 1
        time.sleep(0.2)
        self.output.publish(String(data="late"))  # AttributeError if cleanup had freed the publisher
        self.finished += 1


def test_deactivate_waits_for_a_callback_in_flight_before_cleanup_frees_what_it_uses(context, nodes):
    node = nodes(SlowTimer)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    with Spinner(executor):  # stop() raises if a callback's exception reached the executor
        for _ in range(3):
            assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
            assert wait_for(lambda: node.started > 0, timeout=10.0)
            assert node.trigger_deactivate() == SUCCESS
            assert node.started == node.finished  # nothing still running once inactive
            assert node.trigger_cleanup() == SUCCESS
    executor.shutdown(timeout_sec=2.0)
