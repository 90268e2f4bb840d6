"""send_goal: a goal whose acceptance answer is lost (rclpy 9.1.2's send_goal_async race) still yields
a handle and its result once the goal's feedback shows it runs."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
internvla_msgs = pytest.importorskip("internvla_msgs.action")

from rclpy.action import ActionClient, ActionServer  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.task import Future  # noqa: E402

from internvla_ros_common.action_goals import send_goal  # noqa: E402
from internvla_ros_common.testing import Spinner, wait_for  # noqa: E402

ExecuteInstruction = internvla_msgs.ExecuteInstruction


def _server(node: Node, feedback: bool) -> ActionServer:
    def execute(handle):
        if feedback:
            handle.publish_feedback(ExecuteInstruction.Feedback(step=1))
        handle.succeed()
        return ExecuteInstruction.Result(success=True, reason="finished", steps_executed=1)

    return ActionServer(node, ExecuteInstruction, "execute_instruction", execute)


def _setup(context, feedback: bool):
    server_node = Node("goal_server", context=context)
    client_node = Node("goal_client", context=context)
    _server(server_node, feedback)
    client = ActionClient(client_node, ExecuteInstruction, "execute_instruction")
    executors = []
    for node in (server_node, client_node):  # separate executors, as the compositions run them
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executors.append(executor)
    return client, executors


def _lose_the_answer(client: ActionClient) -> None:
    """The race's outcome: the request goes out and the server accepts it, but the future handed back
    never completes."""
    original = client.send_goal_async

    def racing(*args, **kwargs):
        original(*args, **kwargs)
        return Future()

    client.send_goal_async = racing


@pytest.mark.ros
@pytest.mark.parametrize("lost", [False, True])
def test_the_goal_handle_and_result_arrive_even_when_the_acceptance_answer_is_lost(rclpy_context, lost):
    client, executors = _setup(rclpy_context, feedback=True)
    if lost:
        _lose_the_answer(client)
    seen = []
    with Spinner(executors[0]), Spinner(executors[1]):
        assert client.wait_for_server(timeout_sec=10.0)
        future = send_goal(client, ExecuteInstruction, ExecuteInstruction.Goal(instruction="x"), seen.append)
        assert wait_for(future.done, timeout=10.0)
        handle = future.result()
        assert handle.accepted
        result = handle.get_result_async()
        assert wait_for(result.done, timeout=10.0)
    assert result.result().result.reason == "finished" and len(seen) == 1
    assert bytes(seen[0].goal_id.uuid) == bytes(handle.goal_id.uuid)


@pytest.mark.ros
def test_without_feedback_a_lost_answer_stays_unanswered_for_the_callers_timeout(rclpy_context):
    client, executors = _setup(rclpy_context, feedback=False)
    _lose_the_answer(client)
    with Spinner(executors[0]), Spinner(executors[1]):
        assert client.wait_for_server(timeout_sec=10.0)
        future = send_goal(client, ExecuteInstruction, ExecuteInstruction.Goal(instruction="x"))
        assert not wait_for(future.done, timeout=1.0)
