"""The generated Python interfaces of internvla_msgs work over real rclpy (Fast DDS).

Each message crosses from one node to another, the Ground service answers a call, and the
ExecuteInstruction action streams feedback, finishes, and honours cancel. Everything runs in one
process with its own rclpy context, so the test does not depend on other processes' discovery.
"""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from action_msgs.msg import GoalStatus  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse  # noqa: E402
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402

from internvla_msgs.action import ExecuteInstruction  # noqa: E402
from internvla_msgs.msg import (  # noqa: E402
    ActionChunk,
    GroundedObject,
    GroundedPoint,
    Grounding,
    StageLatency,
    Trace,
)
from internvla_msgs.srv import Ground  # noqa: E402
from internvla_ros_common.testing import wait_for  # noqa: E402

DEADLINE_S = 10.0


@pytest.fixture
def ros(spin_in_background):
    """A private rclpy context with two nodes and a multi-threaded executor spinning in a thread."""
    context = Context()
    rclpy.init(context=context)
    talker = Node("talker", context=context)
    listener = Node("listener", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(talker)
    executor.add_node(listener)
    halt = spin_in_background(executor)
    yield talker, listener
    halt()
    executor.shutdown()
    talker.destroy_node()
    listener.destroy_node()
    rclpy.shutdown(context=context)


def sample_grounding() -> Grounding:
    msg = Grounding()
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec = 42
    msg.instruction = "Put the red block on the plate"
    msg.kind = "box,point,trace"
    msg.image_width, msg.image_height = 640, 480
    msg.objects = [GroundedObject(label="red block", score=0.9, x1=10.0, y1=20.0, x2=110.0, y2=220.0)]
    msg.objects[0].center_3d = Point(x=0.1, y=-0.2, z=0.8)
    msg.objects[0].center_3d_valid = True
    msg.points = [GroundedPoint(label="plate", u=320.5, v=240.25, point_3d_valid=False)]
    msg.traces = [
        Trace(
            label="path",
            u=[1.0, 2.0, 3.0],
            v=[4.0, 5.0, 6.0],
            points_3d=[Point(x=float(i)) for i in range(3)],
            points_3d_valid=[True, False, True],
        )
    ]
    msg.raw_text = '[{"bbox_2d": [10, 20, 110, 220], "label": "red block"}]'
    msg.inference_time = 0.25
    return msg


def sample_chunk() -> ActionChunk:
    msg = ActionChunk()
    msg.header.frame_id = "panda_link0"
    msg.embodiment = "franka_libero"
    msg.dt = 0.1
    msg.action_space = "delta_ee_xyz_rpy_gripper"
    msg.dimension_names = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    msg.reference_frame = "panda_link0"
    msg.rows, msg.cols = 2, 7
    msg.data = [float(i) / 10 for i in range(14)]
    msg.normalized_data = [0.0] * 14
    msg.observation_stamp.sec = 7
    msg.sequence = 3
    msg.inference_latency = 0.12
    msg.stages = [StageLatency(stage="vlm", seconds=0.08), StageLatency(stage="dit", seconds=0.04)]
    return msg


@pytest.mark.ros
@pytest.mark.parametrize(
    ("msg_type", "factory"),
    [(Grounding, sample_grounding), (ActionChunk, sample_chunk)],
    ids=["Grounding", "ActionChunk"],
)
def test_message_crosses_between_two_nodes_unchanged(ros, msg_type, factory):
    talker, listener = ros
    received: list = []
    listener.create_subscription(msg_type, "topic_under_test", received.append, 10)
    publisher = talker.create_publisher(msg_type, "topic_under_test", 10)
    assert wait_for(lambda: publisher.get_subscription_count() > 0), "subscription never matched"
    sent = factory()
    assert wait_for(lambda: (publisher.publish(sent), bool(received))[1], timeout=DEADLINE_S)
    # float32 fields arrive rounded: compare with what the wire format holds for the sent message.
    assert received[0] == deserialize_message(serialize_message(sent), msg_type)
    assert received[0].header.frame_id == sent.header.frame_id


@pytest.mark.ros
def test_ground_service_answers_a_call(ros):
    server_node, client_node = ros

    def handle(request: Ground.Request, response: Ground.Response) -> Ground.Response:
        if not request.instruction.strip():
            response.success = False
            response.message = "empty instruction"
            return response
        response.grounding = sample_grounding()
        response.grounding.instruction = request.instruction
        response.grounding.kind = ",".join(request.kinds)
        response.success = True
        return response

    server_node.create_service(Ground, "ground", handle)
    client = client_node.create_client(Ground, "ground")
    assert client.wait_for_service(timeout_sec=DEADLINE_S)

    ok = client.call_async(Ground.Request(instruction="pick up the cup", kinds=["box", "point"]))
    assert wait_for(ok.done)
    assert ok.result().success
    assert ok.result().grounding.instruction == "pick up the cup"
    assert ok.result().grounding.kind == "box,point"
    assert ok.result().grounding.objects[0].label == "red block"

    empty = client.call_async(Ground.Request(instruction="  "))
    assert wait_for(empty.done)
    assert not empty.result().success
    assert empty.result().message == "empty instruction"


class CountingActionServer:
    """A small ExecuteInstruction server: one feedback per step, finishes after max_steps."""

    def __init__(self, node: Node, step_period: float = 0.02) -> None:
        self.step_period = step_period
        self.server = ActionServer(
            node,
            ExecuteInstruction,
            "execute_instruction",
            execute_callback=self.execute,
            goal_callback=self.on_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )

    @staticmethod
    def on_goal(goal: ExecuteInstruction.Goal) -> GoalResponse:
        return GoalResponse.ACCEPT if goal.instruction.strip() else GoalResponse.REJECT

    def execute(self, goal_handle):
        goal = goal_handle.request
        result = ExecuteInstruction.Result()
        for step in range(1, goal.max_steps + 1):
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result.reason, result.steps_executed = "cancelled", step - 1
                return result
            feedback = ExecuteInstruction.Feedback(step=step, chunks_received=step)
            feedback.last_latency = [StageLatency(stage="total", seconds=self.step_period)]
            goal_handle.publish_feedback(feedback)
            time.sleep(self.step_period)
        goal_handle.succeed()
        result.success, result.reason, result.steps_executed = True, "finished", goal.max_steps
        return result


def send_goal(client: ActionClient, goal: ExecuteInstruction.Goal, feedback: list):
    assert client.wait_for_server(timeout_sec=DEADLINE_S)
    future = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert wait_for(future.done)
    return future.result()


@pytest.mark.ros
def test_execute_instruction_action_streams_feedback_and_finishes(ros):
    server_node, client_node = ros
    CountingActionServer(server_node)
    client = ActionClient(client_node, ExecuteInstruction, "execute_instruction")
    feedback: list = []
    handle = send_goal(client, ExecuteInstruction.Goal(instruction="stack the blocks", max_steps=5), feedback)
    assert handle.accepted
    result_future = handle.get_result_async()
    assert wait_for(result_future.done)
    result = result_future.result()
    assert result.status == GoalStatus.STATUS_SUCCEEDED
    assert result.result.success and result.result.reason == "finished"
    assert result.result.steps_executed == 5
    assert wait_for(lambda: len(feedback) == 5)
    assert [fb.step for fb in feedback] == [1, 2, 3, 4, 5]


@pytest.mark.ros
def test_execute_instruction_action_can_be_cancelled(ros):
    server_node, client_node = ros
    CountingActionServer(server_node, step_period=0.05)
    client = ActionClient(client_node, ExecuteInstruction, "execute_instruction")
    feedback: list = []
    handle = send_goal(
        client, ExecuteInstruction.Goal(instruction="wipe the table", max_steps=1000), feedback
    )
    assert wait_for(lambda: len(feedback) >= 2), "no feedback before cancel"
    cancel = handle.cancel_goal_async()
    assert wait_for(cancel.done)
    result_future = handle.get_result_async()
    assert wait_for(result_future.done)
    result = result_future.result()
    assert result.status == GoalStatus.STATUS_CANCELED
    assert result.result.reason == "cancelled"
    assert 0 < result.result.steps_executed < 1000


@pytest.mark.ros
def test_execute_instruction_rejects_an_empty_instruction(ros):
    server_node, client_node = ros
    CountingActionServer(server_node)
    client = ActionClient(client_node, ExecuteInstruction, "execute_instruction")
    handle = send_goal(client, ExecuteInstruction.Goal(instruction="", max_steps=3), [])
    assert not handle.accepted
