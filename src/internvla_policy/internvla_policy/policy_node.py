"""policy_node: the ExecuteInstruction action server that turns an instruction into action chunks.

Lifecycle: configure creates the model backend (``local``: the model in this process, shared through
the registry with a grounding node; ``remote``: upstream's websocket server) and the interfaces;
activate accepts goals; deactivate aborts the running goal; cleanup frees the model.

One goal at a time, and the newest wins: a new goal PREEMPTS the running one (its result says
"preempted"), because an operator who sends a new instruction expects the robot to follow it. While
a goal runs, its execute callback (an executor thread, never a subscription callback) loops: wait for
an image newer than the last one used, assemble the embodiment's views (``internvla_core.observation``:
refused with the reason when a view is missing or older than max_observation_age), infer, publish an
ActionChunk stamped with the observation, send feedback. Subscription callbacks only store messages. Cancel stops the loop at once (no further chunk: the
executor holds when its watchdog sees no fresh chunk). The goal ends "finished" after max_steps
queries or when ``task/success`` turns true, "timeout" after max_duration.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Header

from internvla_core.embodiments import get_embodiment
from internvla_core.image_conversion import COLOUR_ENCODINGS, ImageConversionError, image_to_rgb
from internvla_core.latency import RateMeter, RollingStats, latency_items
from internvla_core.observation import EE_POSE, JOINT_STATE, NotReady, ObservationStore
from internvla_msgs.action import ExecuteInstruction
from internvla_msgs.msg import ActionChunk, Grounding, StageLatency

from .params import declare

WRIST_VIEW = "wrist"
DEFAULT_IMAGE_TOPICS = {"third_person": "camera/image_raw", WRIST_VIEW: "wrist_camera/image_raw"}
WORKER_JOIN_TIMEOUT = 60.0  # seconds to wait for an inference in flight when deactivating


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def image_of(msg: Image) -> np.ndarray:
    return image_to_rgb(msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)


class PolicyNode(LifecycleNode):
    def __init__(self, node_name: str = "policy_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        declare(
            self,
            "checkpoint",
            "",
            "InternVLA-M1 checkpoint (.pt or run dir); empty = the untrained tiny factory model",
        )
        declare(self, "device", "cpu", "torch device for the local backend")
        declare(self, "dtype", "", "float32 | bfloat16; empty = upstream's policy for the device")
        declare(
            self, "backend", "local", "local (model in this process) or remote (upstream's websocket server)"
        )
        declare(
            self,
            "remote_url",
            "ws://127.0.0.1:10093",
            "websocket URL of upstream's policy server (backend remote)",
        )
        declare(self, "remote_api_key", "", "optional API key sent as 'Authorization: Api-Key <key>'")
        declare(
            self,
            "dataset_statistics",
            "",
            "dataset_statistics.json of the served checkpoint (backend remote)",
        )
        declare(
            self,
            "embodiment",
            "widowx_bridge",
            "default embodiment: widowx_bridge, google_robot, franka_libero, franka_real",
        )
        declare(
            self,
            "unnorm_key",
            "",
            "dataset statistics key; empty = the embodiment's key present in the checkpoint",
        )
        declare(self, "cfg_scale", 1.5, "classifier-free guidance scale (1 = off)", 1.0, 10.0)
        declare(self, "num_ddim_steps", 10, "DDIM steps per inference", 1, 100)
        declare(
            self, "spatial_prompt", True, "add upstream's spatial cue to the instruction (false = ablation)"
        )
        declare(self, "seed", -1, "diffusion noise seed; -1 = random every inference", -1, 2**31 - 1)
        declare(
            self,
            "rtc",
            False,
            "real-time chunking (local backend): each chunk is sampled with the rows of the previous one that "
            "execute while it is computed frozen and the rest of their overlap guided; use with chunk_executor "
            "mode rtc",
        )
        declare(
            self,
            "rtc_delay_steps",
            -1,
            "rtc: frozen rows; -1 = ceil(p90 of the measured observation-to-publish latency / control period)",
            -1,
            1000,
        )
        declare(self, "rtc_overlap_steps", 0, "rtc: guided rows at most (0 = the whole overlap)", 0, 1000)
        declare(
            self,
            "rtc_control_period",
            0.0,
            "rtc: seconds per chunk row, the executor's control period (0 = the embodiment's)",
            0.0,
            10.0,
        )
        declare(self, "max_duration", 120.0, "default goal time limit [s] (goal value 0)", 0.1, 3600.0)
        declare(self, "max_steps", 300, "default number of model queries per goal (goal value 0)", 1, 100000)
        declare(self, "max_observation_age", 1.0, "observations older than this [s] are not used", 0.01, 60.0)
        declare(
            self, "wrist_view", False, "also send the wrist camera as a second view (after the embodiment's)"
        )
        for view, topic in DEFAULT_IMAGE_TOPICS.items():
            declare(self, f"image_topics.{view}", topic, f"sensor_msgs/Image topic of the '{view}' view")
        declare(
            self,
            "torch_threads",
            -1,
            "CPU threads for torch in this process (-1 = cores - 1 on CPU, leaving a core to the control loop; "
            "0 = torch's default). Measured: 2 torch threads on 2 cores starve a 100 Hz loop (p99 226 ms), 1 gives 9 ms",
            -1,
            256,
        )
        declare(
            self,
            "gil_switch_interval",
            0.0005,
            "process-wide sys.setswitchinterval [s] applied on configure (0 = keep Python's 5 ms). The goal "
            "thread releases the GIL at every torch op; with 5 ms it then waits up to 5 ms for the executor "
            "threads each time: measured 1.13-1.33x the bare call at 5 ms, 0.98-1.03x at 0.5 ms",
            0.0,
            0.1,
        )
        self.backend = None
        self.policy = None
        self.rtc = None
        self.chunk_pub = None
        self.stats = RollingStats(window=200)
        self.rate = RateMeter()
        self.last_error = ""
        self.observation_problem = ""  # why the last observation was refused ('' once one is used)
        self.store = ObservationStore()
        self._grounding = None
        self._worker_idle = threading.Event()
        self._worker_idle.set()
        self._goal_lock = threading.Lock()
        self._current_goal = None
        self._preempted: set[bytes] = set()
        self._active = False
        self._success = False
        self._entities: list = []

    def p(self, name: str):
        return self.get_parameter(name).value

    # ----------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.embodiment = get_embodiment(self.p("embodiment"))
            self.backend = self._make_backend()
            self.unnorm_key = self.p("unnorm_key") or self.embodiment.resolve_unnorm_key(
                self.backend.unnorm_keys
            )
            self.rtc = self._make_rtc()
        except Exception as exc:  # the message names what to fix (checkpoint, URL, statistics, key)
            self.get_logger().error(f"cannot configure the policy: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.views = list(self.embodiment.views) + (
            [WRIST_VIEW] if self.p("wrist_view") and WRIST_VIEW not in self.embodiment.views else []
        )
        inputs = ReentrantCallbackGroup()
        self.store.clear()
        try:
            self._entities = [
                self.create_subscription(
                    Image, self._image_topic(view), self._store(view), 2, callback_group=inputs
                )
                for view in self.views
            ]
        except ValueError as exc:
            self.get_logger().error(f"cannot configure the policy: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._entities += [
            self.create_subscription(
                JointState, "joint_states", self._store(JOINT_STATE), 10, callback_group=inputs
            ),
            self.create_subscription(PoseStamped, "ee_pose", self._store(EE_POSE), 10, callback_group=inputs),
            self.create_subscription(Bool, "task/success", self._on_success, 10, callback_group=inputs),
            self.create_subscription(Grounding, "grounding", self._on_grounding, 10, callback_group=inputs),
        ]
        self.get_logger().info(
            f"views {self.views} from {[self._image_topic(v) for v in self.views]}; unnorm_key '{self.unnorm_key}'"
        )
        self.chunk_pub = self.create_publisher(ActionChunk, "action_chunk", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diag_timer = self.create_timer(
            1.0, self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.action_server = ActionServer(
            self,
            ExecuteInstruction,
            "execute_instruction",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            handle_accepted_callback=self._on_accepted,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=ReentrantCallbackGroup(),
        )
        return TransitionCallbackReturn.SUCCESS

    def _image_topic(self, view: str) -> str:
        name = f"image_topics.{view}"
        if not self.has_parameter(name):
            raise ValueError(
                f"embodiment '{self.embodiment.name}' uses view '{view}', which has no image topic parameter "
                f"(known: {sorted(DEFAULT_IMAGE_TOPICS)})"
            )
        return self.p(name)

    def _make_backend(self):
        from internvla_core.backends import LocalBackend, RemoteBackend

        if self.p("backend") == "remote":
            from internvla_core.remote import RemotePolicyClient

            if not self.p("dataset_statistics"):
                raise ValueError(
                    "backend remote needs dataset_statistics (the served checkpoint's dataset_statistics.json)"
                )
            client = RemotePolicyClient(self.p("remote_url"), self.p("remote_api_key") or None)
            client.connect()
            return RemoteBackend(client, self.p("dataset_statistics"))
        if self.p("backend") != "local":
            raise ValueError(f"backend must be local or remote, got '{self.p('backend')}'")
        self._set_torch_threads()
        self._set_gil_switch_interval()
        from internvla_core.model import acquire, tiny_checkpoint

        checkpoint = self.p("checkpoint")
        if not checkpoint:
            checkpoint = str(tiny_checkpoint())
            self.get_logger().warning(
                f"no checkpoint given: using the untrained tiny factory model {checkpoint}"
            )
        self.policy = acquire(checkpoint, device=self.p("device"), dtype=self.p("dtype") or None)
        return LocalBackend(self.policy, spatial_prompt=self.p("spatial_prompt"))

    def _make_rtc(self):
        """Real-time chunking's bookkeeping (``internvla_core.rtc``), or None when off."""
        if not self.p("rtc"):
            return None
        if self.p("backend") != "local":
            raise ValueError("rtc needs the local backend (upstream's server has no inpainting)")
        from internvla_core.rtc import RealTimeChunking

        delay = self.p("rtc_delay_steps")
        return RealTimeChunking(
            self.p("rtc_control_period") or self.embodiment.control_period,
            delay_steps=None if delay < 0 else delay,
            overlap_steps=self.p("rtc_overlap_steps"),
        )

    def _set_torch_threads(self) -> None:
        """torch's intra-op threads are process-wide: on CPU keep one core free for the control loop."""
        import os

        import torch

        threads = self.p("torch_threads")
        if threads == -1:
            if not str(self.p("device")).startswith("cpu"):
                return
            threads = max(1, (os.cpu_count() or 2) - 1)
        if threads > 0:
            torch.set_num_threads(threads)
            self.get_logger().info(f"torch uses {threads} CPU thread(s) in this process")

    def _set_gil_switch_interval(self) -> None:
        """The model runs on a Python thread beside the executor's: hand the GIL back to it sooner."""
        import sys

        interval = self.p("gil_switch_interval")
        if interval > 0 and abs(sys.getswitchinterval() - interval) > 1e-9:
            sys.setswitchinterval(interval)
            self.get_logger().info(
                f"Python GIL switch interval set to {interval * 1e3:.2f} ms (process-wide)"
            )

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        """End the running goal and wait until its loop has returned.

        The model must not be freed (cleanup) or the process left (destroy) while a torch inference
        runs in the goal's thread: a torch thread alive at interpreter exit aborts the process.
        """
        self._active = False
        self.store.wake()
        if not self._worker_idle.wait(WORKER_JOIN_TIMEOUT):
            self.get_logger().error(
                f"the goal's inference did not return within {WORKER_JOIN_TIMEOUT:.0f} s; freeing anyway"
            )

    def _release(self) -> None:
        for entity in self._entities:
            self.destroy_subscription(entity)
        self._entities = []
        if getattr(self, "action_server", None) is not None:
            self.action_server.destroy()
            self.action_server = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        if self.policy is not None:
            from internvla_core.model import release

            release(self.policy)
            self.policy = None

    def destroy_node(self) -> None:
        self._stop_worker()
        self._release()
        super().destroy_node()

    # ----------------------------------------------------------------------------------- inputs
    def _store(self, key: str):
        """Callbacks only record the message with its header stamp; the goal's thread does the work."""

        def callback(msg) -> None:
            self.store.put(key, msg, stamp_seconds(msg.header.stamp))

        return callback

    def _on_grounding(self, msg: Grounding) -> None:
        self._grounding = msg

    def _on_success(self, msg: Bool) -> None:
        self._success = bool(msg.data)

    # ----------------------------------------------------------------------------------- goals
    def _on_goal(self, goal: ExecuteInstruction.Goal) -> GoalResponse:
        if not self._active:
            self.get_logger().warning("goal rejected: policy_node is not active")
            return GoalResponse.REJECT
        if not goal.instruction.strip():
            self.get_logger().warning("goal rejected: empty instruction")
            return GoalResponse.REJECT
        if goal.embodiment and goal.embodiment != self.embodiment.name:
            self.get_logger().warning(
                f"goal rejected: embodiment '{goal.embodiment}' differs from the configured '{self.embodiment.name}' "
                "(reconfigure the node to switch embodiments)"
            )
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, goal_handle) -> None:
        with self._goal_lock:
            if self._current_goal is not None and self._current_goal.is_active:
                self._preempted.add(bytes(self._current_goal.goal_id.uuid))
            self._current_goal = goal_handle
        goal_handle.execute()

    def _execute(self, goal_handle):
        goal = goal_handle.request
        goal_id = bytes(goal_handle.goal_id.uuid)
        max_steps = goal.max_steps or self.p("max_steps")
        max_duration = goal.max_duration or self.p("max_duration")
        self._success = False
        self.get_logger().info(
            f"executing '{goal.instruction}' ({self.embodiment.name}, max {max_steps} steps)"
        )
        self._worker_idle.clear()
        try:
            return self._run_goal(goal_handle, goal_id, max_steps, max_duration)
        finally:
            self._worker_idle.set()

    def _finish(self, goal_handle, reason: str, steps: int, start: float, success: bool = False):
        """Stop chunk first (the executor holds), then the goal's terminal state and result."""
        self._publish_stop(reason)
        result = ExecuteInstruction.Result(success=success, reason=reason)
        result.steps_executed, result.chunks_received = steps, steps
        result.duration = time.monotonic() - start
        if reason == "cancelled":
            goal_handle.canceled()
        elif success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        self.get_logger().info(
            f"goal '{goal_handle.request.instruction}' ended: {reason} after {steps} steps"
        )
        return result

    def _run_goal(self, goal_handle, goal_id: bytes, max_steps: int, max_duration: float):
        """The goal's loop: one model query per new observation until an end condition holds."""
        goal = goal_handle.request
        start, steps, last_stamp, sequence = time.monotonic(), 0, None, 0
        seed = self.p("seed")

        def finish(reason: str, success: bool = False):
            return self._finish(goal_handle, reason, steps, start, success)

        primary = self.views[0]
        if self.rtc is not None:
            self.rtc.reset()  # a goal starts from rest: nothing executing to continue
        while True:
            if goal_handle.is_cancel_requested:
                return finish("cancelled")
            if goal_id in self._preempted:
                self._preempted.discard(goal_id)
                return finish("preempted")
            if not self._active:
                return finish("error: policy_node was deactivated")
            if self._success:
                return finish("finished", success=True)
            if steps >= max_steps:
                return finish("finished", success=True)
            if time.monotonic() - start > max_duration:
                return finish("timeout")
            wait_start = time.perf_counter()
            if not self.store.wait_for_newer(
                primary, last_stamp, timeout=0.5, keep_waiting=lambda: self._active
            ):
                continue
            wait = time.perf_counter() - wait_start
            now = stamp_seconds(self.get_clock().now().to_msg())
            observation = self.store.assemble(self.views, now, self.p("max_observation_age"))
            if isinstance(observation, NotReady):
                self._refuse_observation(observation.reason)
                last_stamp = self.store.latest(primary).stamp  # wait for the next image, not this one again
                continue
            self.observation_problem = ""
            obs_stamp = observation.stamp
            image = observation.images[primary]
            try:
                t_convert = time.perf_counter()
                views = [image_of(msg) for msg in observation.views]
                if self.embodiment.flip_images:
                    views = [np.ascontiguousarray(v[::-1, ::-1]) for v in views]
                convert = time.perf_counter() - t_convert
                # rtc: the previous chunk's rows that execute while this one is computed (logic in core)
                prefix = self.rtc.prefix(obs_stamp) if self.rtc is not None else None
                guidance = (
                    {} if prefix is None else {"prefix": prefix.actions, "prefix_weights": prefix.weights}
                )
                t0 = time.perf_counter()
                pred = self.backend.predict(
                    views,
                    goal.instruction,
                    unnorm_key=self.unnorm_key,
                    cfg_scale=self.p("cfg_scale"),
                    num_ddim_steps=self.p("num_ddim_steps"),
                    seed=None if seed < 0 else seed + sequence,
                    **guidance,
                )
                latency = time.perf_counter() - t0
            except ImageConversionError as exc:
                self._refuse_observation(
                    f"bad camera image: {exc} (supported: {', '.join(COLOUR_ENCODINGS)})"
                )
                last_stamp = obs_stamp
                continue
            except Exception as exc:  # model or remote failure ends the goal with the reason
                self.last_error = str(exc)
                return finish(f"error: {exc}")
            if goal_handle.is_cancel_requested or goal_id in self._preempted or not self._active:
                continue  # do not publish a chunk for a goal that just ended
            t_pub = time.perf_counter()
            self.chunk_pub.publish(self._chunk_message(pred, image.header.stamp, sequence, latency, wait))
            publish = time.perf_counter() - t_pub
            if self.rtc is not None:  # observation -> published, on the executor's clock
                published = stamp_seconds(self.get_clock().now().to_msg())
                self.rtc.record(pred.normalized, obs_stamp, published - obs_stamp)
            stages = {"wait_for_obs": wait, "image_conversion": convert, **pred.stages, "publish": publish}
            self.stats.add_stages(stages)
            self.rate.tick()
            last_stamp, sequence, steps = obs_stamp, sequence + 1, steps + 1
            feedback = ExecuteInstruction.Feedback(step=steps, chunks_received=steps)
            feedback.last_latency = [StageLatency(stage=k, seconds=float(v)) for k, v in stages.items()]
            feedback.last_grounding = self._grounding_summary()
            goal_handle.publish_feedback(feedback)

    def _refuse_observation(self, reason: str) -> None:
        """Remember why (for /diagnostics) and log it, throttled: a stale camera repeats every frame."""
        self.observation_problem = reason
        self.get_logger().warning(
            f"observation not used: {reason}; check the camera driver and clocks (use_sim_time in simulation)",
            throttle_duration_sec=5.0,
        )

    def _publish_stop(self, reason: str) -> None:
        """A chunk without rows, command STOP (goal ended) or ABORT (an error ended it): the executor holds."""
        emb = self.embodiment
        msg = ActionChunk(
            embodiment=emb.name,
            dt=emb.control_period,
            action_space=emb.action_space,
            rows=0,
            cols=emb.action_dim,
            command=ActionChunk.ABORT if reason.startswith("error") else ActionChunk.STOP,
            reason=reason,
        )
        msg.header = Header(stamp=self.get_clock().now().to_msg(), frame_id=emb.reference_frame)
        msg.reference_frame = emb.reference_frame
        if self.chunk_pub is not None:
            self.chunk_pub.publish(msg)

    def _chunk_message(self, pred, obs_stamp, sequence: int, latency: float, wait: float) -> ActionChunk:
        emb = self.embodiment
        msg = ActionChunk(
            embodiment=emb.name,
            dt=emb.control_period,
            action_space=emb.action_space,
            command=ActionChunk.CHUNK,
        )
        msg.header = Header(stamp=self.get_clock().now().to_msg(), frame_id=emb.reference_frame)
        msg.dimension_names = list(emb.dimension_names)
        msg.reference_frame = emb.reference_frame
        msg.rows, msg.cols = (int(x) for x in pred.actions.shape)
        msg.data = np.asarray(pred.actions, dtype=np.float64).ravel().tolist()
        msg.normalized_data = np.asarray(pred.normalized, dtype=np.float64).ravel().tolist()
        msg.observation_stamp = obs_stamp
        msg.sequence = sequence
        msg.inference_latency = float(latency)
        msg.stages = [StageLatency(stage="wait_for_obs", seconds=float(wait))] + [
            StageLatency(stage=k, seconds=float(v)) for k, v in pred.stages.items()
        ]
        return msg

    def _grounding_summary(self) -> str:
        g = self._grounding
        if g is None:
            return ""
        parts = [f"{o.label} box ({(o.x1 + o.x2) / 2:.0f}, {(o.y1 + o.y2) / 2:.0f})" for o in g.objects]
        parts += [f"{p.label} @ ({p.u:.0f}, {p.v:.0f})" for p in g.points]
        return "; ".join(parts)[:200]

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name=f"{self.get_name()}: policy", hardware_id="internvla")
        problem = self.observation_problem or self.last_error
        status.level = DiagnosticStatus.WARN if problem else DiagnosticStatus.OK
        status.message = problem or ("active" if self._active else "inactive")
        values = [
            KeyValue(key="observation", value=self.observation_problem or "ok"),
            KeyValue(key="last_error", value=self.last_error),
            KeyValue(key="views", value=", ".join(self.views)),
            KeyValue(key="inference_rate_hz", value=f"{self.rate.rate():.2f}"),
            KeyValue(key="embodiment", value=self.embodiment.name),
            KeyValue(key="backend", value=self.p("backend")),
        ]
        if self.rtc is not None:
            values.append(KeyValue(key="rtc_delay_steps", value=str(self.rtc.delay())))
        values += [KeyValue(key=k, value=v) for k, v in latency_items(self.stats)]
        status.values = values
        self.diag_pub.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
        )


def main(args=None) -> None:
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init(args=args)
    node = PolicyNode()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    node.trigger_configure()
    node.trigger_activate()
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
