"""policy_node over real rclpy with the tiny model: goals, chunks, feedback, cancel, preemption, remote;
parameters checked against the schema; lifecycle cycles; a failed configure."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from action_msgs.msg import GoalStatus  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from internvla_core.image_conversion import rgb_to_image_fields  # noqa: E402
from internvla_core.normalization import action_stats, load_dataset_statistics, unnormalize_actions  # noqa: E402
from internvla_msgs.action import ExecuteInstruction  # noqa: E402
from internvla_msgs.msg import ActionChunk  # noqa: E402
from internvla_policy.policy_node import PolicyNode  # noqa: E402
from internvla_ros_common.params import ParameterSchemaError  # noqa: E402
from internvla_ros_common.testing import Spinner, run_lifecycle_cycles, wait_for  # noqa: E402

RGB = np.random.default_rng(0).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)


class Camera:
    """Publishes a fresh image (current stamp) at 20 Hz, or a fixed old stamp when ``stale``."""

    def __init__(self, node: Node, stale: bool = False) -> None:
        self.node = node
        self.stale = stale
        self.pub = node.create_publisher(Image, "camera/image_raw", 2)
        self.stamps: list[float] = []
        node.create_timer(0.05, self.publish)

    def publish(self) -> None:
        msg = Image(**rgb_to_image_fields(RGB))
        msg.header.stamp = self.node.get_clock().now().to_msg()
        if self.stale:
            msg.header.stamp.sec -= 30
        self.stamps.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        self.pub.publish(msg)


@pytest.fixture
def ros(context):
    executor = MultiThreadedExecutor(num_threads=6, context=context)
    nodes: list = []

    def make(params: dict | None = None, stale: bool = False):
        overrides = [Parameter(k, value=v) for k, v in (params or {}).items()]
        policy = PolicyNode(context=context, parameter_overrides=overrides)
        peer = Node("peer", context=context)
        nodes.extend([policy, peer])
        # rclpy 10.x ActionClient registers itself with the node before it creates its lock: built while
        # an executor spins the node, the spin thread can die on AttributeError '_lock'. Build it first.
        client = ActionClient(peer, ExecuteInstruction, "execute_instruction")
        executor.add_node(policy)
        executor.add_node(peer)
        camera = Camera(peer, stale=stale)
        chunks: list[ActionChunk] = []  # action chunks; the empty "stop" chunk of a goal's end goes to stops
        stops: list[ActionChunk] = []
        peer.create_subscription(
            ActionChunk,
            "action_chunk",
            lambda m: (chunks if m.command == ActionChunk.CHUNK else stops).append(m),
            50,
        )
        policy.test_stops = stops
        diagnostics: list[DiagnosticArray] = []
        peer.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
        policy.test_diagnostics = diagnostics
        policy.executor = executor
        assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert policy.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert client.wait_for_server(timeout_sec=10)
        return policy, client, chunks, camera

    spinner = Spinner(executor)
    yield make
    spinner.stop()  # raises when the executor thread died
    executor.shutdown()
    for node in nodes:
        node.destroy_node()


def send(client: ActionClient, feedback: list | None = None, **goal):
    future = client.send_goal_async(
        ExecuteInstruction.Goal(**goal),
        feedback_callback=(lambda fb: feedback.append(fb.feedback)) if feedback is not None else None,
    )
    assert wait_for(future.done, 10)
    return future.result()


def result_of(handle, timeout=120.0):
    future = handle.get_result_async()
    assert wait_for(future.done, timeout)
    return future.result()


@pytest.mark.ros
def test_goal_streams_chunks_stamped_with_their_observation_and_finishes(ros):
    _policy, client, chunks, camera = ros({"seed": 1})
    feedback: list = []
    handle = send(client, feedback, instruction="put the carrot on the plate", max_steps=3)
    assert handle.accepted
    result = result_of(handle)
    assert result.status == GoalStatus.STATUS_SUCCEEDED
    assert result.result.success and result.result.reason == "finished" and result.result.steps_executed == 3
    assert wait_for(lambda: len(chunks) == 3, 5)
    first = chunks[0]
    assert (first.rows, first.cols, first.embodiment) == (16, 7, "widowx_bridge")
    assert first.dimension_names[-1] == "gripper" and first.dt == pytest.approx(0.2)
    obs = first.observation_stamp.sec + first.observation_stamp.nanosec * 1e-9
    assert any(abs(obs - s) < 1e-6 for s in camera.stamps)  # the stamp of an image we published
    assert [c.sequence for c in chunks] == [0, 1, 2]
    stamps = [c.observation_stamp.sec + c.observation_stamp.nanosec * 1e-9 for c in chunks]
    assert stamps == sorted(set(stamps))  # every chunk from a newer observation
    data = np.array(chunks[0].data).reshape(16, 7)
    assert set(np.unique(data[:, 6])) <= {0.0, 1.0}  # gripper thresholded by un-normalisation
    assert {s.stage for s in first.stages} >= {"wait_for_obs", "vlm", "dit", "total"}
    assert wait_for(lambda: len(feedback) == 3, 5) and feedback[-1].step == 3


@pytest.mark.ros
def test_cancel_stops_the_goal_and_no_chunk_follows(ros):
    policy, client, chunks, _ = ros()
    handle = send(client, instruction="wipe the table", max_steps=10000)
    assert wait_for(lambda: len(chunks) >= 2, 60)
    cancel = handle.cancel_goal_async()
    assert wait_for(cancel.done, 10)
    result = result_of(handle)
    assert result.status == GoalStatus.STATUS_CANCELED and result.result.reason == "cancelled"
    count = len(chunks)
    time.sleep(0.5)
    assert len(chunks) == count
    assert (
        wait_for(lambda: policy.test_stops, 5)
        and policy.test_stops[-1].command == ActionChunk.STOP
        and policy.test_stops[-1].reason == "cancelled"
        and policy.test_stops[-1].rows == 0
    )


@pytest.mark.ros
def test_a_new_goal_preempts_the_running_one(ros):
    _policy, client, chunks, _ = ros()
    first = send(client, instruction="stack the cups", max_steps=10000)
    assert wait_for(lambda: len(chunks) >= 1, 60)
    second = send(client, instruction="open the drawer", max_steps=2)
    assert second.accepted
    assert result_of(first).result.reason == "preempted"
    assert result_of(second).result.reason == "finished"


@pytest.mark.ros
def test_empty_instruction_and_foreign_embodiment_are_rejected(ros):
    _, client, _, _ = ros()
    assert not send(client, instruction="  ").accepted
    assert not send(client, instruction="pick", embodiment="google_robot").accepted


@pytest.mark.ros
def test_configure_sets_the_process_gil_switch_interval(ros):
    import sys

    before = sys.getswitchinterval()
    try:
        ros({"gil_switch_interval": 0.002})
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)


@pytest.mark.ros
def test_stale_images_are_never_used(ros):
    policy, client, chunks, _ = ros({"max_observation_age": 1.0}, stale=True)
    handle = send(client, instruction="pick up the cup", max_duration=1.5)
    result = result_of(handle)
    assert result.result.reason == "timeout" and not result.result.success
    assert chunks == [] and "stale view 'third_person' by" in policy.health.observation_problem

    def diagnosed() -> bool:
        statuses = [s for array in policy.test_diagnostics for s in array.status if "policy" in s.name]
        return any("stale view 'third_person'" in s.message for s in statuses)

    assert wait_for(diagnosed, 5)  # the operator sees why nothing moves


@pytest.mark.ros
def test_a_missing_wrist_view_is_never_replaced_by_inference_on_one_view(ros):
    policy, client, chunks, _ = ros({"wrist_view": True})  # the test camera publishes no wrist image
    result = result_of(send(client, instruction="pick up the cup", max_duration=1.0))
    assert result.result.reason == "timeout" and chunks == []
    assert "missing view 'wrist'" in policy.health.observation_problem


@pytest.mark.ros
def test_task_success_topic_finishes_the_goal(ros):
    _policy, client, chunks, camera = ros()
    handle = send(client, instruction="put the carrot on the plate", max_steps=10000)
    assert wait_for(lambda: len(chunks) >= 1, 60)
    camera.node.create_publisher(Bool, "task/success", 10).publish(Bool(data=True))
    result = result_of(handle, timeout=30)
    assert result.result.reason == "finished" and result.result.success
    assert 1 <= result.result.steps_executed < 10000


@pytest.mark.ros
def test_deactivate_ends_the_running_goal_and_waits_for_its_inference(ros):
    policy, client, chunks, _ = ros()
    handle = send(client, instruction="wipe the table", max_steps=10000)
    assert wait_for(lambda: len(chunks) >= 1, 60)
    assert policy.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert policy.goals.current.wait_idle(0)  # the goal's loop returned before deactivate did
    count = len(chunks)
    result = result_of(handle, timeout=10)
    assert result.result.reason.startswith("error: policy_node was deactivated")
    time.sleep(0.3)
    assert len(chunks) == count
    assert not send(client, instruction="pick").accepted  # inactive: goals are refused


@pytest.mark.ros
def test_remote_backend_publishes_the_same_chunk_as_local_for_the_same_model_output(ros, tmp_path):
    from websockets.sync.server import serve

    from internvla_core.model import load_policy, tiny_checkpoint
    from internvla_core.remote import packb, unpackb

    model = load_policy(tiny_checkpoint())
    served: list[np.ndarray] = []

    def handle(ws):
        ws.send(packb({}))
        for frame in ws:
            request = unpackb(frame)
            payload = request["payload"]
            pred = model.predict_action(
                payload["batch_images"][0],
                payload["instructions"][0],
                unnorm_key=payload["unnorm_key"],
                seed=0,
            )
            served.append(pred.normalized)
            reply = {
                "status": "ok",
                "ok": True,
                "type": "inference_result",
                "request_id": request["request_id"],
            }
            reply["data"] = {"normalized_actions": pred.normalized[None]}
            ws.send(packb(reply))

    server = serve(handle, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        stats_file = tiny_checkpoint().parents[1] / "dataset_statistics.json"
        port = server.socket.getsockname()[1]
        _, client, chunks, _ = ros(
            {
                "backend": "remote",
                "remote_url": f"ws://127.0.0.1:{port}",
                "dataset_statistics": str(stats_file),
            }
        )
        result = result_of(send(client, instruction="put the carrot on the plate", max_steps=2))
        assert result.result.reason == "finished"
        assert wait_for(lambda: len(chunks) == 2, 5)
        stats = action_stats(load_dataset_statistics(stats_file), "oxe_bridge")
        np.testing.assert_array_equal(
            np.array(chunks[0].normalized_data).reshape(16, 7), served[0].astype(np.float64)
        )
        np.testing.assert_allclose(
            np.array(chunks[0].data).reshape(16, 7), unnormalize_actions(served[0], stats)
        )
        assert chunks[0].embodiment == "widowx_bridge" and {s.stage for s in chunks[0].stages} >= {"remote"}
    finally:
        server.shutdown()
        model.close()


@pytest.mark.ros
def test_goal_to_chunks_to_executor_commands_and_cancel_holds_within_one_period(ros):
    """The whole policy path: action goal -> chunks -> chunk_executor -> JointTrajectory to a robot double."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from internvla_policy.chunk_executor_node import ChunkExecutorNode

    policy, client, _chunks, camera = ros({"embodiment": "franka_real"})
    peer = camera.node
    executor_node = ChunkExecutorNode(
        context=peer.context,
        parameter_overrides=[
            Parameter("embodiment", value="franka_real"),
            Parameter("control_rate_hz", value=20.0),
            Parameter("dry_run", value=False),
            Parameter("watchdog_timeout", value=5.0),  # long: the stop chunk, not the watchdog, must hold
        ],
    )
    policy.executor.add_node(executor_node)
    commands: list = []
    publish = executor_node._publish
    executor_node._publish = lambda command, stamp: (
        commands.append((time.monotonic(), command)),
        publish(command, stamp),
    )
    home = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
    joint_pub = peer.create_publisher(JointState, "joint_states", 10)
    trajectories: list = []
    peer.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", trajectories.append, 10)

    def state() -> None:
        msg = JointState(name=[f"joint{i}" for i in range(1, 8)], position=home)
        msg.header.stamp = peer.get_clock().now().to_msg()
        joint_pub.publish(msg)

    peer.create_timer(0.02, state)
    assert executor_node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert executor_node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    handle = send(client, instruction="push the block to the left", max_steps=10000)
    assert wait_for(lambda: any(not c.hold for _, c in commands), 60)
    assert wait_for(
        lambda: trajectories, 10
    )  # commands reached the (double of the) joint_trajectory_controller
    cancel = handle.cancel_goal_async()
    t_cancel = time.monotonic()
    assert wait_for(cancel.done, 10)
    assert wait_for(
        lambda: any(c.hold and c.reason == "stop: cancelled" for t, c in commands if t >= t_cancel), 5
    )
    t_hold = next(t for t, c in commands if t >= t_cancel and c.hold and c.reason == "stop: cancelled")
    assert all(c.hold for t, c in commands if t > t_hold)  # nothing moves after the hold
    executor_node.destroy_node()


@pytest.mark.ros
def test_an_unknown_parameter_is_rejected_with_the_nearest_name(context):
    with pytest.raises(
        ParameterSchemaError, match=r"Unknown parameter 'cfg_scal' .*Did you mean: 'cfg_scale'"
    ):
        PolicyNode(context=context, parameter_overrides=[Parameter("cfg_scal", value=2.0)])


@pytest.mark.ros
def test_an_invalid_value_is_rejected_naming_the_range(context):
    with pytest.raises(
        ParameterSchemaError, match=r"Parameter 'cfg_scale' with the value 20.0 must be in \[1.0, 10.0\]"
    ):
        PolicyNode(context=context, parameter_overrides=[Parameter("cfg_scale", value=20.0)])


@pytest.mark.ros
def test_a_missing_checkpoint_fails_configure_and_a_fixed_one_configures(context, tmp_path):
    missing = str(tmp_path / "no_such_run" / "checkpoints" / "steps_1.pt")
    policy = PolicyNode(context=context, parameter_overrides=[Parameter("checkpoint", value=missing)])
    try:
        assert policy.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert policy.model is None and policy.lifecycle_state == "unconfigured"
        policy.set_parameters([Parameter("checkpoint", value="")])  # the tiny factory model
        assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS
    finally:
        policy.destroy_node()


@pytest.mark.ros
@pytest.mark.slow
def test_a_hundred_lifecycle_cycles_keep_the_executor_alive_and_refuse_goals_unless_active(context):
    """The old node re-created its action server on every configure: the executor died within 9-84
    cycles (RCLError: action server pointer is invalid). Each configure here loads the tiny model."""
    policy = PolicyNode(context=context)
    peer = Node("peer", context=context)
    client = ActionClient(peer, ExecuteInstruction, "execute_instruction")  # before spinning (see ros)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(policy)
    executor.add_node(peer)
    refused: list[bool] = []

    def refuses_a_goal() -> bool:
        return send(client, instruction="pick").accepted is False

    try:
        with Spinner(executor):  # raises when the executor thread died
            assert client.wait_for_server(timeout_sec=10)
            assert policy.trigger_configure() == TransitionCallbackReturn.SUCCESS
            refused.append(refuses_a_goal())  # inactive
            assert policy.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
            results = run_lifecycle_cycles(
                policy, 100, on_cycle=lambda i: i % 10 or refused.append(refuses_a_goal())
            )
        assert results == [("success",) * 4] * 100
        assert refused == [True] * 11 and policy.model is None  # cleanup freed the model
    finally:
        executor.shutdown()
        policy.destroy_node()
        peer.destroy_node()


@pytest.mark.ros
def test_standalone_policy_node_with_a_missing_checkpoint_exits_1(tmp_path):
    """autostart:=true runs configure in main(): a failed configure ends the process with 1."""
    import os
    import subprocess
    import sys

    missing = tmp_path / "no_such_run" / "steps_1.pt"
    command = [
        sys.executable,
        "-m",
        "internvla_policy.policy_node",
        "autostart:=true",
        f"checkpoint:={missing}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    failed = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "configure failed" in failed.stderr
