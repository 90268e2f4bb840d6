"""policy_node: the ExecuteInstruction action server that turns an instruction into action chunks.

Schema ``params/policy_node.yaml`` -> QoS -> convert -> core -> publish. What configure builds
(views, image topics, the local model or the remote client, real-time chunking) is decided in
``internvla_core.policy_setup``; each goal is the state machine ``internvla_core.goal_loop``. This
node converts messages and forwards events.

Lifecycle: configure loads the model and makes the lifecycle publisher; activate subscribes and
accepts goals; deactivate ends the running goal (its stop chunk goes out while the publisher is still
active) and waits for its inference; cleanup frees the model. The action server lives as long as the
node and refuses goals unless active: re-creating it per configure killed the executor. The newest
goal wins. The goal's loop runs in the execute callback (its own callback group), never in a
subscription callback: those only store the message and its stamp.
"""

from __future__ import annotations

from pathlib import Path

from geometry_msgs.msg import PoseStamped
from rclpy.action import CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Header

from internvla_core.embodiments import get_embodiment
from internvla_core.goal_loop import (
    GoalEnd,
    GoalEvent,
    GoalLoop,
    GoalPorts,
    GoalSettings,
    LatestGoalWins,
    PolicyHealth,
    PublishedChunk,
    goal_rejection,
    grounding_summary,
)
from internvla_core.observation import EE_POSE, JOINT_STATE, ObservationStore
from internvla_core.policy_setup import (
    check_views_fit_model,
    image_topics,
    load_policy_model,
    make_rtc,
    policy_views,
    trained_views,
)
from internvla_msgs.action import ExecuteInstruction
from internvla_msgs.msg import ActionChunk, Grounding, StageLatency
from internvla_ros_common import qos
from internvla_ros_common.conversions import image_to_rgb_array, stamp_seconds
from internvla_ros_common.diagnostics import OK, WARN, Updater
from internvla_ros_common.lifecycle import ManagedNode
from internvla_ros_common.node_main import main_for

SCHEMA_PATH = Path(__file__).resolve().parent / "params" / "policy_node.yaml"
STOP_WAIT = 60.0  # seconds to wait for an inference in flight when deactivating


def latencies(stages: dict[str, float]) -> list[StageLatency]:
    return [StageLatency(stage=k, seconds=float(v)) for k, v in stages.items()]


class PolicyNode(ManagedNode):
    """ExecuteInstruction action server: instruction + camera images -> ActionChunk stream."""

    SCHEMA_PATH = SCHEMA_PATH

    def __init__(self, node_name: str = "policy_node", **kwargs) -> None:
        super().__init__(node_name, SCHEMA_PATH, **kwargs)
        self.store = ObservationStore()
        self.health = PolicyHealth()
        self.goals = LatestGoalWins()
        self.model = self.rtc = self.embodiment = self._chunk_pub = self._grounding = None
        self.views: list[str] = []
        self._loops: dict[bytes, GoalLoop] = {}
        self._action_server = self.managed_action_server(
            ExecuteInstruction,
            "execute_instruction",
            self._execute,
            goal_callback=self._on_goal,
            handle_accepted_callback=self._on_accepted,
            cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup(),
        )
        self.diagnostics = Updater(self, hardware_id="internvla")
        self.diagnostics.add("policy", self._diagnose)

    # ----------------------------------------------------------------------------------- lifecycle
    def setup(self, params) -> None:
        self.embodiment = get_embodiment(params.embodiment)
        self.views = policy_views(self.embodiment.views, params.wrist_view)
        self.topics = image_topics(self.views, params.image_topics.as_dict(), self.embodiment.name)
        log = self.get_logger()
        self.model = load_policy_model(params, log.warning, log.info)
        if self.model.policy is not None:  # a remote server's views are its own business
            check_views_fit_model(self.views, trained_views(self.model.policy.model.config.raw))
        keys = self.model.backend.unnorm_keys
        self.unnorm_key = params.unnorm_key or self.embodiment.resolve_unnorm_key(keys)
        self.rtc = make_rtc(params, self.embodiment.control_period)
        self._chunk_pub = self.create_lifecycle_publisher(ActionChunk, "action_chunk", qos.COMMAND)
        log.info(f"views {self.views} from {list(self.topics.values())}; unnorm_key '{self.unnorm_key}'")

    def activate(self) -> None:
        self.store.clear()
        inputs = ReentrantCallbackGroup()
        for view, topic in self.topics.items():
            self.managed_subscription(Image, topic, self._store(view), qos.SENSOR, callback_group=inputs)
        for kind, key, topic in (
            (JointState, JOINT_STATE, "joint_states"),
            (PoseStamped, EE_POSE, "ee_pose"),
        ):
            self.managed_subscription(kind, topic, self._store(key), qos.SENSOR, callback_group=inputs)
        self.managed_subscription(Bool, "task/success", self._on_success, qos.STATUS, callback_group=inputs)
        self.managed_subscription(
            Grounding, "grounding", self._on_grounding, qos.STATUS, callback_group=inputs
        )

    def deactivate(self) -> None:
        """End the running goal (its stop chunk goes out now) and wait for its inference to return:
        the model must not be freed while torch runs in the goal's thread."""
        if not self.goals.stop(STOP_WAIT):
            self.get_logger().error(f"the goal's inference did not return within {STOP_WAIT:.0f} s")

    def teardown(self) -> None:
        self.goals.stop(STOP_WAIT)
        if self.model is not None:
            self.model.close()
        self.model = self.rtc = self._chunk_pub = None

    def destroy_node(self) -> None:
        super().destroy_node()  # shutdown transition first: the running goal ends
        if hasattr(self, "_action_server"):  # absent when a bad -p stopped __init__
            self._action_server.destroy()  # rclpy's destroy_node leaves action servers alive

    # ----------------------------------------------------------------------------------- inputs
    def _store(self, key: str):
        return lambda msg: self.store.put(key, msg, stamp_seconds(msg.header.stamp))

    def _on_grounding(self, msg: Grounding) -> None:
        self._grounding = msg

    def _on_success(self, msg: Bool) -> None:
        if msg.data:
            self.goals.signal(GoalEvent.TASK_SUCCESS)

    # ----------------------------------------------------------------------------------- goals
    def _on_goal(self, goal: ExecuteInstruction.Goal) -> GoalResponse:
        reason = goal_rejection(goal.instruction, goal.embodiment, self.embodiment.name)
        if reason:
            self.get_logger().warning(f"goal rejected: {reason}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, handle) -> None:
        params, flip = self.param_listener.get_params(), self.embodiment.flip_images
        settings = GoalSettings.for_goal(
            handle.request, params, self.views, self.unnorm_key, flip, poll_interval=0.1
        )
        loop = GoalLoop(settings, self.store, self.model.backend, self._ports(handle), self.health, self.rtc)
        self._loops[bytes(handle.goal_id.uuid)] = loop
        self.goals.admit(loop)
        handle.execute()

    def _on_cancel(self, _handle) -> CancelResponse:
        self.store.wake()  # the loop polls handle.is_cancel_requested: let it look now
        return CancelResponse.ACCEPT

    def _ports(self, handle) -> GoalPorts:
        def feedback(steps: int, stages: dict[str, float]) -> None:
            message = ExecuteInstruction.Feedback(step=steps, chunks_received=steps)
            message.last_latency = latencies(stages)
            message.last_grounding = grounding_summary(self._grounding)
            handle.publish_feedback(message)

        return GoalPorts(
            now=lambda: self.get_clock().now().nanoseconds * 1e-9,
            to_arrays=lambda images: [image_to_rgb_array(m) for m in images],
            publish_chunk=self._publish_chunk,
            publish_stop=self._publish_stop,
            feedback=feedback,
            refused=self._refused,
            cancel_requested=lambda: handle.is_cancel_requested,
        )

    def _execute(self, handle) -> ExecuteInstruction.Result:
        loop = self._loops.pop(bytes(handle.goal_id.uuid))
        s = loop.settings
        self.get_logger().info(
            f"executing '{s.instruction}' ({self.embodiment.name}, max {s.max_steps} steps)"
        )
        end = loop.run()
        if end.cancelled:
            handle.canceled()
        elif end.success:
            handle.succeed()
        else:
            handle.abort()
        self.get_logger().info(f"goal '{s.instruction}' ended: {end.reason} after {end.steps} steps")
        result = ExecuteInstruction.Result(success=end.success, reason=end.reason, duration=end.duration)
        result.steps_executed = result.chunks_received = end.steps
        return result

    def _refused(self, reason: str) -> None:
        self.get_logger().warning(
            f"observation not used: {reason}; check the camera driver and clocks (use_sim_time in simulation)",
            throttle_duration_sec=5.0,
        )

    # ----------------------------------------------------------------------------------- outputs
    def _header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.embodiment.reference_frame)

    def _chunk(self, command: int, reason: str = "") -> ActionChunk:
        emb = self.embodiment
        msg = ActionChunk(embodiment=emb.name, dt=emb.control_period, action_space=emb.action_space)
        msg.header, msg.command, msg.reason = self._header(), command, reason
        msg.reference_frame = emb.reference_frame
        return msg

    def _publish_chunk(self, chunk: PublishedChunk) -> None:
        pred, msg = chunk.prediction, self._chunk(ActionChunk.CHUNK)
        msg.dimension_names = list(self.embodiment.dimension_names)
        msg.rows, msg.cols = (int(x) for x in pred.actions.shape)
        msg.data = pred.actions.astype(float).ravel().tolist()
        msg.normalized_data = pred.normalized.astype(float).ravel().tolist()
        msg.observation_stamp = chunk.observation.images[self.views[0]].header.stamp
        msg.sequence, msg.inference_latency = chunk.sequence, float(chunk.inference_latency)
        msg.stages = latencies({"wait_for_obs": chunk.wait, **pred.stages})
        self._chunk_pub.publish(msg)

    def _publish_stop(self, end: GoalEnd) -> None:
        """A chunk without rows, STOP (goal ended) or ABORT (an error ended it): the executor holds."""
        msg = self._chunk(ActionChunk.ABORT if end.aborts else ActionChunk.STOP, end.reason)
        msg.cols = self.embodiment.action_dim
        if self._chunk_pub is not None:
            self._chunk_pub.publish(msg)

    def _diagnose(self, stat):
        h = self.health
        stat.summary(WARN if h.problem else OK, h.problem or self.lifecycle_state)
        items = [*h.items(), ("views", ", ".join(self.views))]
        items += [
            ("embodiment", getattr(self.embodiment, "name", "")),
            ("backend", self.param_listener.get_params().backend),
        ]
        if self.rtc is not None:
            items.append(("rtc_delay_steps", str(self.rtc.delay())))
        for key, value in items:
            stat.add(key, value)
        return stat


main = main_for(PolicyNode)

if __name__ == "__main__":
    main()
