"""Action goals whose acceptance is not lost to rclpy's goal-response race.

rclpy 9.1.2 (the PyPI build our setups install) registers the future of ``ActionClient.send_goal_async``
twice under one sequence number: once under the client's lock, then again after it. When an executor
thread takes the server's answer between the two, the answer completes the first future and the one
returned never completes, although the server accepted the goal and runs it (ros2/rclpy#1123; the
compositions of our evaluations run client and server in separate executor threads: measured once in
about 2,000 episodes, a 900 s hang and a spurious failure).

``send_goal`` sends the goal with an id of its own and passes its feedback through. Feedback for that id
proves the goal was accepted and runs, so while the answer is still missing the returned future then
completes with a goal handle rebuilt from the id: ``get_result_async`` and ``cancel_goal_async`` address
the server by goal id and work on it. A server that never sends feedback gives no such proof; the
caller's own timeout still applies there.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from rclpy.action.client import ActionClient, ClientGoalHandle
from rclpy.task import Future
from unique_identifier_msgs.msg import UUID


def send_goal(
    client: ActionClient,
    action_type: Any,
    goal: Any,
    feedback_callback: Callable[[Any], None] | None = None,
) -> Future:
    """``client.send_goal_async(goal)`` whose future completes (with the accepted goal's handle) once
    the server's answer or the goal's first feedback arrives, whichever comes first. ``action_type``:
    the client's action (e.g. ``ExecuteInstruction``), whose accepted answer the rebuilt handle holds."""
    goal_id = UUID(uuid=list(uuid.uuid4().bytes))
    outer = Future()
    lock = threading.Lock()

    def complete(handle: ClientGoalHandle) -> None:
        with lock:
            if not outer.done():
                outer.set_result(handle)

    def on_answer(inner: Future) -> None:
        if inner.cancelled():
            with lock:
                if not outer.done():
                    outer.cancel()
        elif inner.exception() is not None:
            with lock:
                if not outer.done():
                    outer.set_exception(inner.exception())
        else:
            complete(inner.result())

    def on_feedback(message: Any) -> None:
        if not outer.done():  # the answer was lost: the goal runs, so it was accepted
            response = action_type.Impl.SendGoalService.Response(accepted=True)
            complete(ClientGoalHandle(client, goal_id, response))
        if feedback_callback is not None:
            feedback_callback(message)

    client.send_goal_async(goal, feedback_callback=on_feedback, goal_uuid=goal_id).add_done_callback(
        on_answer
    )
    return outer
