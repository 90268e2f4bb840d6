"""grounding_node: InternVLA-M1's spatial grounding as ROS topics, a service, 3D markers and a debug image.

A ManagedNode. configure: acquire the model from the process-wide registry (a policy node in the same
process shares the weights), create the lifecycle publishers and the ``ground`` service; activate:
subscribe, start the worker (and the periodic timer when rate_hz > 0); deactivate: stop producing;
cleanup: release the model. Image, depth and camera_info are paired by stamp
(internvla_core.stamp_sync); which frame a request grounds is decided in internvla_core.grounding_inputs;
one request runs and at most one waits (internvla_core.job_slot). Parameters: params/grounding_node.yaml.
"""

from __future__ import annotations

import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.callback_groups import ReentrantCallbackGroup
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from internvla_core.grounding_inputs import CameraFrames, Frame
from internvla_core.job_slot import Job, OneSlotWorker
from internvla_core.latency import RateMeter, RollingStats, latency_items
from internvla_core.stamp_sync import to_nanoseconds
from internvla_msgs.msg import Grounding
from internvla_msgs.srv import Ground
from internvla_ros_common import qos
from internvla_ros_common.conversions import stamp_ns
from internvla_ros_common.diagnostics import Updater
from internvla_ros_common.lifecycle import ManagedNode
from internvla_ros_common.node_main import main_for
from internvla_ros_common.params import Params

from .conversions import detections_message, markers_message, subscription_qos
from .grounding_pipeline import GroundingSettings, RequestStatus, ground_frame, no_tf, refusal, tf2_lookup

try:  # full ROS installs only (not on PyPI)
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the install
    tf2_ros = None
try:  # full ROS installs only
    from vision_msgs.msg import Detection2DArray
except ImportError:  # pragma: no cover - depends on the install
    Detection2DArray = None

SCHEMA = Path(__file__).parent / "params" / "grounding_node.yaml"
NOT_ACTIVE = "grounding_node is not active (configure and activate it)"


class GroundingNode(ManagedNode):
    """Boxes, points and traces for an instruction, lifted to 3D with the depth of the same stamp."""

    def __init__(self, node_name: str = "grounding_node", **kwargs) -> None:
        super().__init__(node_name, SCHEMA, **kwargs)
        self.policy = None  # acquired from the shared registry; released on cleanup
        self.grounder = None  # what answers ground() (the policy; tests may script it)
        self.stats, self.rate = RollingStats(window=200), RateMeter()
        self.status = RequestStatus(self.get_logger().warning)
        self.worker = OneSlotWorker(self._process, "grounding", self._on_worker_error)
        self.frames: CameraFrames | None = None  # image/depth/camera_info paired by stamp
        self.last_frame: Frame | None = None
        self._last_periodic_stamp: int | None = None
        self.service = self.tf_buffer = None
        self.diagnostics = Updater(self, hardware_id="internvla")
        self.diagnostics.add("grounding", self._diagnose)

    # ------------------------------------------------------------------------------- lifecycle
    def check_params(self, params: Params) -> list[str]:
        if len(params.static_extrinsic) not in (0, 7):
            return [
                f"Parameter 'static_extrinsic' has {len(params.static_extrinsic)} values: give 7 (x y z qx qy qz qw) or none"
            ]
        return []

    def setup(self, params: Params) -> None:
        from internvla_core.model import acquire
        from internvla_core.policy_setup import checkpoint_or_tiny

        warn_once = lambda message: self.get_logger().warning(message, once=True)  # noqa: E731
        checkpoint = checkpoint_or_tiny(params.checkpoint, warn_once)
        self.policy = self.grounder = acquire(checkpoint, device=params.device, dtype=params.dtype or None)
        self.grounding_pub = self.create_lifecycle_publisher(Grounding, "grounding", qos.STATUS)
        self.debug_pub = self.create_lifecycle_publisher(Image, "grounding/debug_image", qos.IMAGE)
        self.markers_pub = self.create_lifecycle_publisher(MarkerArray, "grounding/markers", 2)
        self.detections_pub = (
            self.create_lifecycle_publisher(Detection2DArray, "grounding/detections", qos.STATUS)
            if Detection2DArray is not None
            else None
        )
        self.service = self.create_service(
            Ground, "ground", self._on_ground, callback_group=ReentrantCallbackGroup()
        )
        sync = params.sync
        self.frames = CameraFrames(
            to_nanoseconds(sync.slop), sync.queue_size, to_nanoseconds(sync.max_set_age)
        )
        if params.target_frame and tf2_ros is not None:
            self.tf_buffer = tf2_ros.Buffer()
            self.tf_listener = tf2_ros.TransformListener(self.tf_buffer, self)

    def activate(self) -> None:
        group = ReentrantCallbackGroup()
        for name, msg_type, topic in (
            ("image", Image, "camera/image_raw"),
            ("depth", Image, "camera/depth/image_raw"),
            ("info", CameraInfo, "camera/camera_info"),
        ):
            store = lambda msg, name=name: self.store(name, msg)  # noqa: E731
            profile = subscription_qos(self.params[f"{name}_reliable"], self.params[f"{name}_qos_depth"])
            self.managed_subscription(msg_type, topic, store, profile, callback_group=group)
        self.managed_subscription(
            String, "instruction", self._on_instruction, qos.COMMAND, callback_group=group
        )
        self.instruction = self.live.default_instruction
        self.worker.start()
        if self.live.rate_hz > 0:
            self.managed_timer(1.0 / self.live.rate_hz, self._periodic)

    def deactivate(self) -> None:
        self.worker.stop("grounding_node was deactivated before the request ran")

    def teardown(self) -> None:
        from internvla_core.model import release

        self.worker.stop("grounding_node was shut down before the request ran")
        if self.service is not None:
            self.destroy_service(self.service)
        if getattr(self, "tf_listener", None) is not None:
            self.tf_listener.unregister()
        self.service = self.tf_buffer = self.tf_listener = None
        if self.policy is not None:
            release(self.policy)
        self.policy = self.grounder = self.frames = None

    @property
    def live(self) -> Params:
        """The current values: request-time parameters apply to the next request without a configure."""
        return self.param_listener.get_params()

    # ------------------------------------------------------------------------------- inputs
    def store(self, name: str, msg) -> None:
        """A camera message in (``image``, ``depth`` or ``info``): what the subscriptions call."""
        if self.frames is not None:
            self.frames.add(name, stamp_ns(msg.header.stamp), msg)

    def frame(self, request_image: Image | None = None) -> Frame | None:
        """What to ground (internvla_core.grounding_inputs): the request's image or the newest frame."""
        if self.frames is None:
            return None
        if request_image is not None:
            return self.frames.for_request(request_image, stamp_ns(request_image.header.stamp))
        return self.frames.latest()

    def _on_instruction(self, msg: String) -> None:
        if not msg.data.strip():
            self.status.warn_once("empty_instruction", "ignored an empty instruction on 'instruction'")
            return
        self.instruction = msg.data
        frame = self.frame()
        if frame is not None:
            self._submit(Job((frame, msg.data, tuple(self.live.kinds))))

    def _periodic(self) -> None:
        frame = self.frame()
        if frame is None or not self.instruction.strip():
            return
        stamp = stamp_ns(frame.image.header.stamp)
        if stamp == self._last_periodic_stamp:  # never publish a stale result as new
            return
        if self._submit(Job((frame, self.instruction, tuple(self.live.kinds)))):
            self._last_periodic_stamp = stamp  # a dropped image is tried again on the next tick

    def _submit(self, job: Job) -> bool:
        busy = "grounding worker busy with another request: call again"
        accepted = self.worker.submit(job, NOT_ACTIVE, busy)
        if not accepted and job.error == busy:
            self.status.warn_once("busy", "grounding worker busy: dropped a request (lower rate_hz)")
        return accepted

    def _on_ground(self, request: Ground.Request, response: Ground.Response) -> Ground.Response:
        response.success = False
        response.message = refusal(request.instruction, request.kinds) if self.is_active else NOT_ACTIVE
        if response.message:
            return response
        frame = self.frame(request.image if request.image.width > 0 else None)
        if frame is None:
            response.message = "no image yet: publish camera/image_raw or pass an image in the request"
            return response
        job = Job((frame, request.instruction, tuple(request.kinds) or tuple(self.live.kinds)))
        if not self._submit(job):
            response.message = job.error
            return response
        timeout = self.live.service_timeout
        if not job.done.wait(timeout=timeout):
            response.message = (
                f"the model did not answer within service_timeout={timeout} s; "
                "the result will still be published on 'grounding' stamped with its image"
            )
            return response
        response.success, response.message = job.result is not None, job.error
        if job.result is not None:
            response.grounding = job.result
        return response

    # ------------------------------------------------------------------------------- worker
    def _process(self, job: Job) -> None:
        frame, instruction, kinds = job.payload
        self.last_frame, params = frame, self.live
        settings = GroundingSettings(
            params.max_new_tokens, params.depth_window_px, params.target_frame, params.static_extrinsic
        )
        lookup = tf2_lookup(self.tf_buffer) if self.tf_buffer is not None else no_tf
        outcome = ground_frame(self.grounder, frame, instruction, kinds, settings, lookup)
        self.status.finished(outcome.problems)
        job.error = outcome.error
        if outcome.grounding is None:
            return
        if not self.is_active:  # deactivated meanwhile: never publish late
            job.error = "grounding_node was deactivated while the request ran"
            return
        start = time.perf_counter()
        job.result = outcome.grounding
        self.grounding_pub.publish(outcome.grounding)
        self.debug_pub.publish(outcome.debug_image)
        # always: without 3D the array holds only DELETEALL, so no stale markers stay in RViz
        self.markers_pub.publish(markers_message(outcome.grounding))
        if self.detections_pub is not None:
            self.detections_pub.publish(detections_message(outcome.grounding))
        stages = {**outcome.stages, "publish": time.perf_counter() - start}
        self.stats.add_stages(stages)
        self.stats.add("total", sum(stages.values()))
        self.rate.tick()

    # ------------------------------------------------------------------------------- status
    def _on_worker_error(self, job: Job, exc: Exception) -> None:
        self.status.finished([("worker_error", job.error)])

    def _diagnose(self, stat):
        ok, frame = self.status.last_ok, self.last_frame
        summary = self.lifecycle_state + ("" if ok else f"; last request: {self.status.last_error}")
        stat.summary(DiagnosticStatus.OK if ok else DiagnosticStatus.WARN, summary)
        stat.add("rate_hz", f"{self.rate.rate():.2f}")
        stat.add("last_error", self.status.last_error)
        stat.add("pairing", frame.why_2d or "by stamp" if frame is not None else "no request yet")
        dropped = sorted(self.frames.sync.dropped.items()) if self.frames is not None else []
        stat.add("sync_dropped", ", ".join(f"{k} {v}" for k, v in dropped) or "none")
        for key, value in latency_items(self.stats):
            stat.add(key, value)
        return stat


main = main_for(GroundingNode)

if __name__ == "__main__":
    main()
