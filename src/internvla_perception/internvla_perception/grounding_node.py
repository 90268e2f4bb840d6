"""grounding_node: InternVLA-M1's spatial grounding as ROS topics, a service, 3D markers and a debug image.

A lifecycle node. configure: acquire the model from the process-wide registry (a policy node in the
same process shares the weights) and create the interfaces; activate: start the worker (and the
periodic timer when rate_hz > 0); deactivate: stop producing; cleanup: release the model.
Callbacks only store the latest messages; the model runs on one worker thread.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import rclpy
import rclpy.time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from internvla_core.camera import (
    CameraModelError,
    Extrinsic3D,
    PinholeCamera,
    decide_3d_frame,
    pose_to_matrix,
)
from internvla_core.drawing import draw_grounding
from internvla_core.grounding import GROUNDING_KINDS
from internvla_core.image_conversion import (
    ImageConversionError,
    image_to_depth_m,
    image_to_rgb,
    rgb_to_image_fields,
)
from internvla_core.latency import RateMeter, RollingStats, StageTimer, latency_items
from internvla_msgs.msg import Grounding
from internvla_msgs.srv import Ground

from .conversions import grounding_message, markers_message

try:  # full ROS installs only (not on PyPI)
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the install
    tf2_ros = None

try:  # full ROS installs only
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    HAVE_VISION_MSGS = True
except ImportError:  # pragma: no cover - depends on the install
    HAVE_VISION_MSGS = False


def _fields(msg: Image) -> tuple:
    return (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)


@dataclass
class _Request:
    """One grounding job: an image message, the instruction and kinds; ``done`` fires with the answer."""

    image: Image
    instruction: str
    kinds: tuple[str, ...]
    done: threading.Event = field(default_factory=threading.Event)
    grounding: Grounding | None = None
    error: str = ""


class GroundingNode(LifecycleNode):
    def __init__(self, node_name: str = "grounding_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._declare_parameters()
        self.policy = None  # acquired from the shared registry; released on cleanup
        self.grounder = None  # what answers ground() (the policy; tests may script it)
        self.stats = RollingStats(window=200)
        self.rate = RateMeter()
        self.last_error = ""  # the latest problem, kept for /diagnostics
        self.last_job_ok = True  # whether the most recent request went through without a problem
        self._latest: dict[str, object] = {}
        self._lock = threading.Lock()
        # one request runs on the worker, at most one waits: a burst cannot pile up stale work
        self._jobs: queue.Queue[_Request | None] = queue.Queue(maxsize=1)
        self._worker: threading.Thread | None = None
        self._active = False
        self._last_periodic_stamp: tuple[int, int] | None = None
        self._warned: dict[str, float] = {}
        self._job_problem = ""
        self._entities: list = []

    # ----------------------------------------------------------------------------------- parameters
    def _declare_parameters(self) -> None:
        def desc(text: str, **ranges) -> ParameterDescriptor:
            return ParameterDescriptor(description=text, **ranges)

        self.declare_parameter(
            "checkpoint",
            "",
            desc(
                "InternVLA-M1 checkpoint (.pt or run dir); empty = the tiny factory model (untrained, for tests/demo)"
            ),
        )
        self.declare_parameter("device", "cpu", desc("torch device: cpu, cuda, cuda:1 ..."))
        self.declare_parameter(
            "dtype", "", desc("float32 | bfloat16; empty = float32 on CPU, the checkpoint's policy on GPU")
        )
        self.declare_parameter(
            "kinds", ["box", "point"], desc(f"what to ask the model for, any of {list(GROUNDING_KINDS)}")
        )
        self.declare_parameter(
            "rate_hz",
            0.0,
            desc(
                "periodic grounding of the latest image at this rate; 0 = only on service calls / instruction messages",
                floating_point_range=[FloatingPointRange(from_value=0.0, to_value=30.0)],
            ),
        )
        self.declare_parameter(
            "default_instruction",
            "",
            desc("instruction used by the periodic mode until one arrives on the instruction topic"),
        )
        self.declare_parameter(
            "max_new_tokens",
            128,
            desc(
                "generation budget per grounding answer",
                integer_range=[IntegerRange(from_value=8, to_value=1024, step=1)],
            ),
        )
        self.declare_parameter(
            "depth_window_px",
            5,
            desc(
                "half size of the window sampled around a pixel for its depth (median of valid values)",
                integer_range=[IntegerRange(from_value=0, to_value=50, step=1)],
            ),
        )
        self.declare_parameter(
            "target_frame",
            "",
            desc(
                "express 3D results in this frame (tf2 when available, else static_extrinsic); empty = camera frame"
            ),
        )
        # no default: unset means "no calibration", so 3D in target_frame needs TF (never identity)
        static = desc(
            "camera-optical-frame pose in target_frame: x y z qx qy qz qw (a calibration), used when TF "
            "has no transform; unset = refuse 3D output without TF"
        )
        static.type = ParameterType.PARAMETER_DOUBLE_ARRAY
        self.declare_parameter("static_extrinsic", Parameter.Type.DOUBLE_ARRAY, static)
        for stream, default_depth, what in (
            ("image", 2, "colour images (large images over UDP need RELIABLE)"),
            ("depth", 2, "depth images"),
            ("info", 10, "camera_info"),
        ):
            self.declare_parameter(
                f"{stream}_reliable",
                True,
                desc(f"RELIABLE (true) or BEST_EFFORT (false) subscription for {what}; match the driver"),
            )
            self.declare_parameter(
                f"{stream}_qos_depth",
                default_depth,
                desc(
                    f"queue depth of the {what} subscription (only the latest message is used)",
                    integer_range=[IntegerRange(from_value=1, to_value=100, step=1)],
                ),
            )
        self.declare_parameter(
            "service_timeout",
            60.0,
            desc(
                "seconds a service call waits for the model",
                floating_point_range=[FloatingPointRange(from_value=0.1, to_value=600.0)],
            ),
        )

    def p(self, name: str):
        return self.get_parameter(name).value

    # ----------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from internvla_core.model import acquire, tiny_checkpoint

        checkpoint = self.p("checkpoint") or None
        try:
            if checkpoint is None:
                checkpoint = str(tiny_checkpoint())
                self.get_logger().warning(
                    f"no checkpoint given: using the untrained tiny factory model {checkpoint}"
                )
            self.policy = acquire(checkpoint, device=self.p("device"), dtype=self.p("dtype") or None)
            self.grounder = self.policy
        except Exception as exc:  # the message says what is wrong with the checkpoint
            self.get_logger().error(f"cannot load the model: {exc}")
            return TransitionCallbackReturn.FAILURE
        kinds = tuple(self.p("kinds"))
        unknown = [k for k in kinds if k not in GROUNDING_KINDS]
        if unknown or not kinds:
            self.get_logger().error(f"parameter kinds={list(kinds)}: use any of {list(GROUNDING_KINDS)}")
            return TransitionCallbackReturn.FAILURE

        def qos(stream: str) -> QoSProfile:
            reliable = self.p(f"{stream}_reliable")
            return QoSProfile(
                depth=self.p(f"{stream}_qos_depth"),
                reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            )

        inputs = ReentrantCallbackGroup()
        self._entities = [
            self.create_subscription(
                Image, "camera/image_raw", self._store("image"), qos("image"), callback_group=inputs
            ),
            self.create_subscription(
                Image, "camera/depth/image_raw", self._store("depth"), qos("depth"), callback_group=inputs
            ),
            self.create_subscription(
                CameraInfo, "camera/camera_info", self._store("info"), qos("info"), callback_group=inputs
            ),
            self.create_subscription(String, "instruction", self._on_instruction, 10, callback_group=inputs),
        ]
        self.grounding_pub = self.create_publisher(Grounding, "grounding", 10)
        self.debug_pub = self.create_publisher(Image, "grounding/debug_image", 2)
        self.markers_pub = self.create_publisher(MarkerArray, "grounding/markers", 2)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.detections_pub = (
            self.create_publisher(Detection2DArray, "grounding/detections", 10) if HAVE_VISION_MSGS else None
        )
        self.service = self.create_service(
            Ground, "ground", self._on_ground, callback_group=ReentrantCallbackGroup()
        )
        self.diag_timer = self.create_timer(
            1.0, self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.instruction = self.p("default_instruction")
        self.tf_buffer = None
        if self.p("target_frame") and tf2_ros is not None:
            self.tf_buffer = tf2_ros.Buffer()
            self.tf_listener = tf2_ros.TransformListener(self.tf_buffer, self)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = True
        self._worker = threading.Thread(target=self._work, name="grounding_worker", daemon=True)
        self._worker.start()
        rate = self.p("rate_hz")
        self.periodic_timer = self.create_timer(1.0 / rate, self._periodic) if rate > 0 else None
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        if self.periodic_timer is not None:
            self.destroy_timer(self.periodic_timer)
            self.periodic_timer = None
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        self._active = False
        if self._worker is not None:
            while True:  # answer waiting requests now instead of letting their callers time out
                try:
                    pending = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if pending is not None:
                    pending.error = "grounding_node was deactivated before the request ran"
                    pending.done.set()
            self._jobs.put(None)  # the worker finishes the job in hand (not published), then exits
            self._worker.join(timeout=30)
            self._worker = None

    def _release(self) -> None:
        from internvla_core.model import release

        for entity in self._entities:
            self.destroy_subscription(entity)
        self._entities = []
        for name in (
            "service",
            "grounding_pub",
            "debug_pub",
            "markers_pub",
            "diag_pub",
            "detections_pub",
            "diag_timer",
        ):
            entity = getattr(self, name, None)
            if entity is not None:
                {"service": self.destroy_service, "diag_timer": self.destroy_timer}.get(
                    name, self.destroy_publisher
                )(entity)
                setattr(self, name, None)
        if self.policy is not None:
            release(self.policy)
            self.policy = None
        self.grounder = None

    def destroy_node(self) -> None:
        self._stop_worker()
        self._release()
        super().destroy_node()

    # ----------------------------------------------------------------------------------- inputs
    def _store(self, key: str):
        def callback(msg) -> None:
            with self._lock:
                self._latest[key] = msg

        return callback

    def _on_instruction(self, msg: String) -> None:
        if not msg.data.strip():
            self._warn_once("empty_instruction", "ignored an empty instruction on 'instruction'")
            return
        self.instruction = msg.data
        with self._lock:
            image = self._latest.get("image")
        if self._active and image is not None:
            self._submit(_Request(image, msg.data, tuple(self.p("kinds"))))

    def _periodic(self) -> None:
        with self._lock:
            image = self._latest.get("image")
        if image is None or not self.instruction.strip():
            return
        stamp = (image.header.stamp.sec, image.header.stamp.nanosec)
        if stamp == self._last_periodic_stamp:  # never publish a stale result as new
            return
        if self._submit(_Request(image, self.instruction, tuple(self.p("kinds")))):
            self._last_periodic_stamp = stamp  # a dropped image is tried again on the next tick

    def _submit(self, request: _Request) -> bool:
        if not self._active:
            request.error = "grounding_node is not active (configure and activate it)"
            return False
        try:
            self._jobs.put_nowait(request)
            return True
        except queue.Full:
            self._warn_once("busy", "grounding worker busy: dropped a request (lower rate_hz)")
            return False

    def _on_ground(self, request: Ground.Request, response: Ground.Response) -> Ground.Response:
        response.success = False
        if not self._active:
            response.message = "grounding_node is not active (configure and activate it)"
            return response
        if not request.instruction.strip():
            response.message = "empty instruction: say what to ground, e.g. 'the red block'"
            return response
        kinds = tuple(request.kinds) or tuple(self.p("kinds"))
        unknown = [k for k in kinds if k not in GROUNDING_KINDS]
        if unknown:
            response.message = f"unknown kinds {unknown}; use any of {list(GROUNDING_KINDS)}"
            return response
        image = request.image if request.image.width > 0 else None
        if image is None:
            with self._lock:
                image = self._latest.get("image")
        if image is None:
            response.message = "no image yet: publish camera/image_raw or pass an image in the request"
            return response
        job = _Request(image, request.instruction, kinds)
        if not self._submit(job):
            response.message = job.error or "grounding worker busy with another request: call again"
            return response
        if not job.done.wait(timeout=self.p("service_timeout")):
            response.message = (
                f"the model did not answer within service_timeout={self.p('service_timeout')} s; "
                "the result will still be published on 'grounding' stamped with its image"
            )
            return response
        if job.grounding is None:
            response.message = job.error
            return response
        response.grounding = job.grounding
        response.success = True
        response.message = "" if job.error == "" else job.error
        return response

    # ----------------------------------------------------------------------------------- worker
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._job_problem = ""
            try:
                self._process(job)
            except Exception as exc:  # keep the node alive; report the reason to the caller
                job.error = f"grounding failed: {exc}"
                self._problem("worker_error", job.error)
            finally:
                self.last_job_ok = not self._job_problem
                job.done.set()

    def _problem(self, key: str, text: str) -> None:
        """Record a problem of the current request for /diagnostics and log it (throttled)."""
        self._job_problem = self.last_error = text
        self._warn_once(key, text)

    def _process(self, job: _Request) -> None:
        timer = StageTimer()
        with timer.stage("convert"):
            try:
                rgb = image_to_rgb(*_fields(job.image))
            except ImageConversionError as exc:
                job.error = f"bad image: {exc}"
                self._problem("bad_image", job.error)
                return
            camera, depth = self._camera_and_depth(job.image)
        with timer.stage("model"):
            result = self.grounder.ground(
                rgb, job.instruction, kinds=job.kinds, max_new_tokens=self.p("max_new_tokens")
            )
        if result.error:  # e.g. an answer that did not parse: still published, with what was found
            job.error = result.error
            self._problem("model_answer", f"model answer: {result.error}")
        with timer.stage("draw"):
            header = Header(stamp=job.image.header.stamp, frame_id=job.image.header.frame_id)
            frame = self._target_transform(job.image.header)
            if not frame.publish_3d:  # 2D only, and diagnostics say why
                self._problem("no_extrinsic", frame.reason)
                camera, depth = None, None
            msg = grounding_message(
                result,
                header,
                camera,
                depth,
                frame.transform,
                self.p("target_frame"),
                self.p("depth_window_px"),
            )
            debug = draw_grounding(rgb, result)
        with timer.stage("publish"):
            if not self._active:  # deactivated meanwhile: never publish late
                job.error = "grounding_node was deactivated while the request ran"
                return
            job.grounding = msg
            self.grounding_pub.publish(msg)
            debug_msg = Image(header=header, **rgb_to_image_fields(debug))
            self.debug_pub.publish(debug_msg)
            # always: without 3D the array holds only DELETEALL, so no stale markers stay in RViz
            self.markers_pub.publish(markers_message(msg))
            if self.detections_pub is not None:
                self.detections_pub.publish(self._detections(msg))
        self.stats.add_stages(timer.stages)
        self.stats.add("total", timer.total)
        self.rate.tick()

    def _camera_and_depth(self, image: Image) -> tuple[PinholeCamera | None, np.ndarray | None]:
        with self._lock:
            info, depth_msg = self._latest.get("info"), self._latest.get("depth")
        if info is None or depth_msg is None:
            return None, None
        try:
            camera = PinholeCamera.from_camera_info_fields(
                info.k, info.d, info.distortion_model, info.width, info.height
            )
            if (camera.width, camera.height) != (image.width, image.height):
                camera = camera.scaled(image.width, image.height)
            depth = image_to_depth_m(*_fields(depth_msg))
        except (CameraModelError, ImageConversionError) as exc:
            self._problem("no_3d", f"no 3D for this image (2D results still published): {exc}")
            return None, None
        return camera, depth

    def _target_transform(self, header: Header) -> Extrinsic3D:
        """optical frame -> target_frame (TF at the image stamp, else a configured static_extrinsic), or
        the reason 3D output is refused (internvla_core.camera.decide_3d_frame: never identity)."""
        target = self.p("target_frame")
        tf_matrix, tf_error = None, "" if self.tf_buffer is not None else "tf2_ros not installed"
        if target and target != header.frame_id and self.tf_buffer is not None:
            try:
                tf = self.tf_buffer.lookup_transform(
                    target, header.frame_id, rclpy.time.Time.from_msg(header.stamp)
                ).transform
                tf_matrix = pose_to_matrix(
                    [tf.translation.x, tf.translation.y, tf.translation.z],
                    [tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w],
                )
            except Exception as exc:  # tf2 raises several lookup exception types
                tf_error = f"tf2: {exc}"
        try:
            static = list(self.p("static_extrinsic"))
        except ParameterUninitializedException:
            static = None
        return decide_3d_frame(target, header.frame_id, tf_matrix, tf_error, static)

    def _detections(self, msg: Grounding):  # pragma: no cover - vision_msgs only in full ROS installs
        out = Detection2DArray(header=msg.header)
        for obj in msg.objects:
            det = Detection2D(header=msg.header)
            det.bbox.center.position.x = (obj.x1 + obj.x2) / 2
            det.bbox.center.position.y = (obj.y1 + obj.y2) / 2
            det.bbox.size_x, det.bbox.size_y = obj.x2 - obj.x1, obj.y2 - obj.y1
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id, hyp.hypothesis.score = obj.label, float(obj.score)
            det.results.append(hyp)
            out.detections.append(det)
        return out

    # ----------------------------------------------------------------------------------- diagnostics
    def _warn_once(self, key: str, text: str, period: float = 10.0) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= period:
            self._warned[key] = now
            self.get_logger().warning(text)

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name=f"{self.get_name()}: grounding", hardware_id="internvla")
        status.level = DiagnosticStatus.OK if self.last_job_ok else DiagnosticStatus.WARN
        status.message = ("active" if self._active else "inactive") + (
            "" if self.last_job_ok else f"; last request: {self.last_error}"
        )
        values = [
            KeyValue(key="rate_hz", value=f"{self.rate.rate():.2f}"),
            KeyValue(key="last_error", value=self.last_error),
        ]
        values += [KeyValue(key=k, value=v) for k, v in latency_items(self.stats)]
        status.values = values
        self.diag_pub.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
        )


def main(args=None) -> None:
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init(args=args)
    node = GroundingNode()
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
