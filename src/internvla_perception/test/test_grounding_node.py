"""grounding_node over real rclpy: service, topics, pairing by stamp, 3D lifting, lifecycle, parameters."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from internvla_core.camera import PinholeCamera  # noqa: E402
from internvla_core.grounding import GroundedBox, GroundedPoint, GroundedTrace, GroundingResult  # noqa: E402
from internvla_core.image_conversion import depth_to_image_fields, image_to_rgb, rgb_to_image_fields  # noqa: E402
from internvla_msgs.msg import Grounding  # noqa: E402
from internvla_msgs.srv import Ground  # noqa: E402
from internvla_perception.grounding_node import GroundingNode  # noqa: E402
from internvla_ros_common.lifecycle import FAILURE, SUCCESS  # noqa: E402
from internvla_ros_common.params import ParameterSchemaError  # noqa: E402
from internvla_ros_common.testing import Spinner, ros_context, run_lifecycle_cycles, wait_for  # noqa: E402

WIDTH, HEIGHT = 320, 200  # non-square on purpose
K = [300.0, 0.0, 160.0, 0.0, 280.0, 100.0, 0.0, 0.0, 1.0]


class ScriptedModel:
    """Stands in for the model in the tests of the node's own mapping (known answer in, known 3D out)."""

    def __init__(self, result: GroundingResult) -> None:
        self.result = result
        self.calls = 0

    def ground(self, image, instruction, kinds=("box",), max_new_tokens=128):
        self.calls += 1
        self.result.instruction, self.result.kinds = instruction, tuple(kinds)
        self.result.image_size = (image.shape[1], image.shape[0])
        return self.result


def point_model(u: float = 160, v: float = 100) -> ScriptedModel:
    return ScriptedModel(GroundingResult(instruction="", kinds=("point",), points=[GroundedPoint("c", u, v)]))


@pytest.fixture
def graph():
    """(make_node(**parameters), peer, received messages); the node is built by the test so it can
    pass parameters, and spun with the peer on a background executor."""
    with ros_context() as context:
        peer = Node("peer", context=context)
        got: dict[str, list] = {"grounding": [], "debug": [], "markers": [], "diagnostics": []}
        peer.create_subscription(Grounding, "grounding", got["grounding"].append, 10)
        peer.create_subscription(Image, "grounding/debug_image", got["debug"].append, 10)
        peer.create_subscription(MarkerArray, "grounding/markers", got["markers"].append, 10)
        peer.create_subscription(DiagnosticArray, "/diagnostics", got["diagnostics"].append, 10)
        executor = MultiThreadedExecutor(num_threads=4, context=context)
        executor.add_node(peer)
        nodes: list = []

        def make_node(**parameters) -> GroundingNode:
            overrides = [Parameter(name, value=value) for name, value in parameters.items()]
            node = GroundingNode(context=context, parameter_overrides=overrides)
            executor.add_node(node)
            nodes.append(node)
            return node

        with Spinner(executor):
            yield make_node, peer, got
        executor.shutdown()
        for node in [*nodes, peer]:
            node.destroy_node()


def start(node: GroundingNode, model=None) -> GroundingNode:
    assert node.trigger_configure() == SUCCESS
    if model is not None:
        node.grounder = model
    assert node.trigger_activate() == SUCCESS and node.is_active
    return node


def scene() -> np.ndarray:
    rgb = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    rgb[60:100, 200:260] = (220, 30, 30)
    return rgb


def image_msg(rgb: np.ndarray, stamp_sec: int = 5) -> Image:
    msg = Image(**rgb_to_image_fields(rgb))
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec = stamp_sec
    return msg


def depth_msg(depth_m: float | np.ndarray, stamp_sec: int = 5) -> Image:
    if np.isscalar(depth_m):
        depth_m = np.full((HEIGHT // 2, WIDTH // 2), depth_m, dtype=np.float32)  # at half resolution
        depth_m[:, :20] = np.nan
    msg = Image(**depth_to_image_fields(depth_m))
    msg.header.frame_id, msg.header.stamp.sec = "camera_optical_frame", stamp_sec
    return msg


def info_msg(stamp_sec: int = 5, k=K) -> CameraInfo:
    info = CameraInfo(width=WIDTH, height=HEIGHT, k=k, distortion_model="plumb_bob", d=[0.0] * 5)
    info.header.frame_id, info.header.stamp.sec = "camera_optical_frame", stamp_sec
    return info


class Camera:
    """The peer's camera publishers: image, depth and camera_info with the stamps a test chooses."""

    def __init__(self, peer: Node) -> None:
        self.image = peer.create_publisher(Image, "camera/image_raw", 10)
        self.depth = peer.create_publisher(Image, "camera/depth/image_raw", 10)
        self.info = peer.create_publisher(CameraInfo, "camera/camera_info", 10)
        publishers = (self.image, self.depth, self.info)
        assert wait_for(lambda: all(p.get_subscription_count() for p in publishers))

    def frame(self, node: GroundingNode, stamp_sec: int = 5, depth=1.5, info=None) -> None:
        """Publish one synchronised frame and wait until the node paired it."""
        self.info.publish(info or info_msg(stamp_sec))
        self.depth.publish(depth if isinstance(depth, Image) else depth_msg(depth, stamp_sec))
        self.image.publish(image_msg(scene(), stamp_sec))
        assert wait_for(
            lambda: node.frames.sets and node.frames.sets[-1].stamps["image"] == stamp_sec * 10**9
        )


def call(peer: Node, request: Ground.Request, timeout: float = 120.0) -> Ground.Response:
    client = peer.create_client(Ground, "ground")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(request)
    assert wait_for(future.done, timeout)
    return future.result()


def latest_status(got) -> DiagnosticStatus | None:
    for array in reversed(got["diagnostics"]):
        for status in array.status:
            if status.name.endswith("grounding"):
                return status
    return None


# --------------------------------------------------------------------------------------- behaviour
@pytest.mark.ros
def test_service_grounds_the_latest_frame_with_the_tiny_model_and_publishes_everything(graph):
    make_node, peer, got = graph
    node = start(make_node())
    Camera(peer).frame(node)
    response = call(peer, Ground.Request(instruction="the red block", kinds=["box"]))
    assert response.success, response.message
    g = response.grounding
    assert (g.image_width, g.image_height) == (WIDTH, HEIGHT)
    assert g.header.stamp.sec == 5 and g.header.frame_id == "camera_optical_frame"
    assert g.instruction == "the red block" and g.raw_text  # the random model says something
    assert wait_for(lambda: got["grounding"] and got["debug"] and got["markers"])
    debug = got["debug"][0]
    assert (debug.width, debug.height, debug.encoding) == (WIDTH, HEIGHT, "rgb8")
    assert got["markers"][0].markers[0].action == 3  # DELETEALL first: no stale markers stay


@pytest.mark.ros
def test_the_depth_with_the_images_stamp_is_used_even_when_a_newer_one_arrived(graph):
    make_node, peer, _ = graph
    node = start(make_node(), point_model())
    camera = Camera(peer)
    camera.frame(node, stamp_sec=5, depth=1.5)
    camera.depth.publish(depth_msg(3.0, stamp_sec=6))  # newer depth, its image not (yet) there
    camera.info.publish(info_msg(stamp_sec=6))
    assert wait_for(lambda: node.frames.sync.queued("depth") == [6 * 10**9])
    g = call(peer, Ground.Request(instruction="the centre", kinds=["point"])).grounding
    assert g.header.stamp.sec == 5 and g.points[0].point_3d_valid
    assert g.points[0].point_3d.z == pytest.approx(1.5)  # the latest-depth pairing would say 3.0


@pytest.mark.ros
def test_node_lifts_known_grounding_to_3d_on_a_non_square_image_with_a_scripted_model(graph):
    make_node, peer, got = graph
    known = GroundingResult(
        instruction="",
        kinds=("box",),
        boxes=[GroundedBox("red block", 200, 60, 260, 100)],
        points=[GroundedPoint("edge", 5, 100)],  # lies where depth is missing
        traces=[GroundedTrace("path", [(160.0, 100.0), (230.0, 80.0)])],
    )
    node = start(make_node(), ScriptedModel(known))
    Camera(peer).frame(node, depth=1.5)
    response = call(peer, Ground.Request(instruction="the red block", kinds=["box", "point", "trace"]))
    assert response.success, response.message
    g = response.grounding
    cam = PinholeCamera.from_camera_info_fields(K, [0] * 5, "plumb_bob", WIDTH, HEIGHT)
    obj = g.objects[0]
    assert obj.center_3d_valid
    np.testing.assert_allclose(
        [obj.center_3d.x, obj.center_3d.y, obj.center_3d.z], cam.back_project(230.0, 80.0, 1.5), atol=1e-6
    )
    assert g.points[0].label == "edge" and not g.points[0].point_3d_valid  # kept, flagged
    assert list(g.traces[0].points_3d_valid) == [True, True]
    np.testing.assert_allclose(g.traces[0].points_3d[0].z, 1.5)
    assert wait_for(lambda: got["debug"])
    m = got["debug"][-1]
    debug = image_to_rgb(m.height, m.width, m.encoding, m.is_bigendian, m.step, m.data)
    assert not np.array_equal(debug, scene())  # something was drawn on the source image


@pytest.mark.ros
def test_a_request_image_is_paired_with_the_synchronised_depth_of_its_stamp(graph):
    make_node, peer, _ = graph
    node = start(make_node(), point_model())
    Camera(peer).frame(node, stamp_sec=7, depth=2.0)
    paired = call(peer, Ground.Request(instruction="c", kinds=["point"], image=image_msg(scene(), 7)))
    assert paired.grounding.points[0].point_3d_valid and paired.grounding.points[
        0
    ].point_3d.z == pytest.approx(2.0)
    lonely = call(peer, Ground.Request(instruction="c", kinds=["point"], image=image_msg(scene(), 9)))
    assert lonely.success and not lonely.grounding.points[0].point_3d_valid  # no depth of its stamp


@pytest.mark.ros
def test_bad_requests_get_a_clear_answer_and_the_node_keeps_running(graph):
    make_node, peer, _ = graph
    node = start(make_node(), ScriptedModel(GroundingResult(instruction="", kinds=("box",))))
    assert "no image yet" in call(peer, Ground.Request(instruction="cup")).message
    assert "empty instruction" in call(peer, Ground.Request(instruction="   ")).message
    assert "unknown kinds" in call(peer, Ground.Request(instruction="cup", kinds=["mask"])).message
    bad = image_msg(scene())
    bad.encoding = "yuv422"
    response = call(peer, Ground.Request(instruction="cup", image=bad))
    assert not response.success and "unsupported image encoding" in response.message
    assert node.grounder.calls == 0  # the model never saw garbage
    assert call(peer, Ground.Request(instruction="cup", image=image_msg(scene()))).success


@pytest.mark.ros
def test_an_inactive_node_refuses_service_calls_and_takes_no_input(graph):
    make_node, peer, _ = graph
    node = make_node()
    assert node.trigger_configure() == SUCCESS
    assert "not active" in call(peer, Ground.Request(instruction="cup")).message
    assert peer.count_publishers("grounding") == 1  # publishers from configure on
    assert peer.count_subscribers("camera/image_raw") == 0  # subscriptions only while active
    assert node.trigger_activate() == SUCCESS
    assert wait_for(lambda: peer.count_subscribers("camera/image_raw") == 1)


@pytest.mark.ros
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.integers(0, 8),
    width=st.integers(0, 8),
    encoding=st.sampled_from(["rgb8", "bgr8", "mono16", "32FC1", "16UC1", "nv12", ""]),
    step=st.integers(0, 40),
    data=st.binary(max_size=120),
)
def test_fuzzed_images_never_crash_the_node(graph, height, width, encoding, step, data):
    make_node, peer, _ = graph
    node = start(make_node(), ScriptedModel(GroundingResult(instruction="", kinds=("box",))))
    msg = Image(height=height, width=width, encoding=encoding, step=step, data=data)
    response = call(peer, Ground.Request(instruction="cup", image=msg), timeout=20)
    if width == 0:  # an empty request image means "the latest camera image", and there is none
        assert not response.success and "no image yet" in response.message
    else:
        try:
            image_to_rgb(height, width, encoding, 0, step, data)
            convertible = True
        except ValueError:
            convertible = False
        assert response.success == convertible, response.message
        if not convertible:
            assert response.message.startswith("bad image:")
    assert node.worker.alive
    assert node.trigger_shutdown() == SUCCESS


@pytest.mark.ros
def test_periodic_mode_grounds_each_new_image_once_and_never_republishes_a_stale_result(graph):
    make_node, peer, got = graph
    node = start(make_node(rate_hz=20.0, default_instruction="the cup"), point_model())
    image_pub = peer.create_publisher(Image, "camera/image_raw", 2)
    assert wait_for(lambda: image_pub.get_subscription_count() > 0)
    image_pub.publish(image_msg(scene(), stamp_sec=1))
    assert wait_for(lambda: len(got["grounding"]) == 1)
    time.sleep(0.5)  # ten timer periods with the same image
    assert len(got["grounding"]) == 1 and node.grounder.calls == 1
    image_pub.publish(image_msg(scene(), stamp_sec=2))
    assert wait_for(lambda: len(got["grounding"]) == 2)
    assert [g.header.stamp.sec for g in got["grounding"]] == [1, 2]


@pytest.mark.ros
def test_static_extrinsic_expresses_3d_results_in_the_target_frame(graph):
    make_node, peer, _ = graph
    node = start(make_node(target_frame="table", static_extrinsic=[1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0]))
    node.grounder = point_model()
    Camera(peer).frame(node, depth=2.0)
    g = call(peer, Ground.Request(instruction="the centre", kinds=["point"])).grounding
    assert g.target_frame == "table" and g.points[0].point_3d_valid
    np.testing.assert_allclose(
        [g.points[0].point_3d.x, g.points[0].point_3d.y, g.points[0].point_3d.z], [1.0, 0.0, 2.5], atol=1e-6
    )


@pytest.mark.ros
def test_without_the_camera_to_base_transform_3d_is_refused_and_2d_still_published(graph):
    """Real robots: target_frame is the robot base; no TF and no static_extrinsic must not mean identity."""
    make_node, peer, got = graph
    node = start(make_node(target_frame="fr3_link0"), point_model())
    Camera(peer).frame(node, depth=2.0)
    response = call(peer, Ground.Request(instruction="the centre", kinds=["point"]))
    g = response.grounding
    assert response.success and len(g.points) == 1 and g.points[0].u == pytest.approx(160)  # 2D kept
    assert not g.points[0].point_3d_valid and g.target_frame == ""  # no 3D in a guessed frame
    assert "-> fr3_link0" in node.status.last_error and "3D output refused" in node.status.last_error
    assert wait_for(lambda: "3D output refused" in getattr(latest_status(got), "message", ""), timeout=5)


class BlockingModel(ScriptedModel):
    """A model that answers only when the test lets it: shows what callers see while the worker is busy."""

    def __init__(self, result: GroundingResult) -> None:
        super().__init__(result)
        self.release = threading.Event()
        self.started = threading.Event()

    def ground(self, image, instruction, kinds=("box",), max_new_tokens=128):
        self.started.set()
        assert self.release.wait(timeout=30)
        return super().ground(image, instruction, kinds, max_new_tokens)


@pytest.mark.ros
def test_one_request_runs_one_waits_further_ones_are_refused_and_inputs_keep_flowing(graph):
    make_node, peer, _ = graph
    model = BlockingModel(GroundingResult(instruction="", kinds=("box",)))
    node = start(make_node(), model)
    client = peer.create_client(Ground, "ground")
    assert client.wait_for_service(timeout_sec=10)
    request = Ground.Request(instruction="cup", image=image_msg(scene()))
    running = client.call_async(request)
    assert model.started.wait(timeout=10)
    waiting = client.call_async(request)
    assert wait_for(lambda: node.worker.waiting, timeout=10)
    refused = client.call_async(request)
    assert wait_for(refused.done, timeout=10)  # answered while two service calls are still blocked
    assert not refused.result().success and "busy" in refused.result().message
    image_pub = peer.create_publisher(Image, "camera/image_raw", 2)  # the executor still serves inputs
    assert wait_for(lambda: image_pub.get_subscription_count() > 0)
    image_pub.publish(image_msg(scene(), stamp_sec=42))
    assert wait_for(
        lambda: (
            getattr(node.frames.latest_image, "header", None)
            and node.frames.latest_image.header.stamp.sec == 42
        )
    )
    assert not running.done() and not waiting.done()
    model.release.set()
    assert wait_for(lambda: running.done() and waiting.done())
    assert running.result().success and waiting.result().success and model.calls == 2


@pytest.mark.ros
def test_deactivating_answers_a_waiting_request_instead_of_leaving_it_to_time_out(graph):
    make_node, peer, got = graph
    model = BlockingModel(GroundingResult(instruction="", kinds=("box",)))
    node = start(make_node(), model)
    client = peer.create_client(Ground, "ground")
    assert client.wait_for_service(timeout_sec=10)
    request = Ground.Request(instruction="cup", image=image_msg(scene()))
    running = client.call_async(request)
    assert model.started.wait(timeout=10)
    waiting = client.call_async(request)
    assert wait_for(lambda: node.worker.waiting, timeout=10)

    def finish_once_deactivating() -> None:  # the job in hand finishes during the deactivation
        wait_for(lambda: not node.is_active, timeout=10)
        model.release.set()

    threading.Thread(target=finish_once_deactivating, daemon=True).start()
    assert node.trigger_deactivate() == SUCCESS
    assert wait_for(lambda: running.done() and waiting.done(), timeout=10)
    assert "deactivated before the request ran" in waiting.result().message
    assert not running.result().success and "deactivated while the request ran" in running.result().message
    time.sleep(0.2)
    assert got["grounding"] == []  # nothing published after deactivation


def depth_16uc1(millimetres: np.ndarray, stamp_sec: int) -> Image:
    """A depth image as RGB-D drivers publish it: uint16 millimetres, 0 = no reading."""
    h, w = millimetres.shape
    msg = Image(height=h, width=w, encoding="16UC1", step=2 * w, data=millimetres.astype("<u2").tobytes())
    msg.header.stamp.sec = stamp_sec
    return msg


@pytest.mark.ros
def test_bad_depth_and_camera_info_give_2d_results_a_warning_and_no_stale_markers(graph):
    make_node, peer, got = graph
    node = start(make_node(), point_model())
    camera = Camera(peer)
    camera.frame(node, stamp_sec=1, depth=1.0)
    assert call(peer, Ground.Request(instruction="c", kinds=["point"])).grounding.points[0].point_3d_valid
    camera.frame(node, stamp_sec=2, info=info_msg(2, k=[0.0] * 9))  # an uncalibrated driver: K all zero
    response = call(peer, Ground.Request(instruction="c", kinds=["point"]))
    assert response.success and not response.grounding.points[0].point_3d_valid
    assert wait_for(lambda: len(got["markers"]) == 2)
    assert [m.action for m in got["markers"][-1].markers] == [3]  # only DELETEALL: the old sphere goes
    assert wait_for(lambda: getattr(latest_status(got), "level", None) == DiagnosticStatus.WARN, timeout=5)
    assert "no intrinsics" in latest_status(got).message

    camera.frame(
        node, stamp_sec=3, depth=depth_16uc1(np.zeros((HEIGHT, WIDTH), np.uint16), 3)
    )  # no valid pixel
    response = call(peer, Ground.Request(instruction="c", kinds=["point"]))
    assert response.success and not response.grounding.points[0].point_3d_valid

    camera.frame(node, stamp_sec=4, depth=depth_16uc1(np.full((HEIGHT, WIDTH), 1500, np.uint16), 4))
    response = call(peer, Ground.Request(instruction="c", kinds=["point"]))
    assert response.grounding.points[0].point_3d_valid
    np.testing.assert_allclose(response.grounding.points[0].point_3d.z, 1.5)  # millimetres -> metres
    # a good request clears the warning
    assert wait_for(lambda: latest_status(got).level == DiagnosticStatus.OK, timeout=5)


@pytest.mark.ros
def test_diagnostics_report_rate_latency_of_every_stage_and_the_pairing(graph):
    make_node, peer, got = graph
    node = start(make_node(), ScriptedModel(GroundingResult(instruction="", kinds=("box",))))
    assert call(peer, Ground.Request(instruction="cup", image=image_msg(scene()))).success

    def keys():
        status = latest_status(got)
        return {kv.key: kv.value for kv in status.values} if status is not None else {}

    stages = {f"{s}_p50_ms" for s in ("convert", "model", "draw", "publish", "total")}
    assert wait_for(lambda: stages <= set(keys()), timeout=5)
    assert {"rate_hz", "last_error", "sync_dropped"} <= set(keys())
    assert "request image" in keys()["pairing"]  # why this answer is 2D only
    assert latest_status(got).level == DiagnosticStatus.OK and node.status.last_ok


@pytest.mark.ros
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    depth_height=st.integers(0, 6),
    depth_width=st.integers(0, 6),
    depth_encoding=st.sampled_from(["16UC1", "32FC1", "mono16", "rgb8", "bogus"]),
    depth_step=st.integers(0, 30),
    depth_data=st.binary(max_size=80),
    k=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=9, max_size=9),
    d=st.lists(st.floats(-1, 1), max_size=8),
    model=st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant", ""]),
    info_size=st.tuples(st.integers(0, 400), st.integers(0, 400)),
)
def test_fuzzed_depth_and_camera_info_never_crash_and_never_fake_3d(
    graph, depth_height, depth_width, depth_encoding, depth_step, depth_data, k, d, model, info_size
):
    make_node, peer, _ = graph
    node = start(make_node(), point_model(3, 2))
    # a synchronised set straight into the node's input path (what the subscriptions call)
    image = image_msg(np.zeros((4, 6, 3), np.uint8), stamp_sec=5)
    depth = Image(
        height=depth_height, width=depth_width, encoding=depth_encoding, step=depth_step, data=depth_data
    )
    info = CameraInfo(width=info_size[0], height=info_size[1], k=k, d=d, distortion_model=model)
    depth.header.stamp.sec = info.header.stamp.sec = 5
    for name, msg in (("depth", depth), ("info", info), ("image", image)):
        node.store(name, msg)
    assert node.frames.sets, "the three inputs of one stamp form a set"
    response = call(peer, Ground.Request(instruction="c", image=image))
    assert response.success, response.message  # the 2D answer survives any depth / camera_info
    point = response.grounding.points[0]
    if point.point_3d_valid:
        assert all(np.isfinite([point.point_3d.x, point.point_3d.y, point.point_3d.z]))
        assert 0 < point.point_3d.z <= 10.0
    assert node.worker.alive
    assert node.trigger_shutdown() == SUCCESS


# --------------------------------------------------------------------------------------- lifecycle
@pytest.mark.ros
def test_a_hundred_lifecycle_cycles_in_one_process_leave_nothing_behind(graph):
    from internvla_core.model import acquire, release, tiny_checkpoint

    make_node, peer, _ = graph
    node = make_node()
    # a second holder (as a policy node in the same process would be) keeps the weights loaded, so
    # the cycles measure the node's own entities, not 100 model loads (bench_lifecycle_soak does those)
    holder = acquire(str(tiny_checkpoint()))
    try:
        results = run_lifecycle_cycles(node, 100)
    finally:
        release(holder)
    assert results == [("success",) * 4] * 100
    assert node.policy is None and node.frames is None and node.service is None
    # lifecycle publishers freed on cleanup, subscriptions on deactivate
    assert wait_for(lambda: peer.count_publishers("grounding") == 0)
    assert wait_for(lambda: peer.count_subscribers("camera/image_raw") == 0)
    assert not node.worker.alive


@pytest.mark.ros
def test_configure_loads_the_model_and_cleanup_releases_it(graph):
    from internvla_core.model.registry import default_registry

    make_node, _, _ = graph
    node = make_node()
    assert node.trigger_configure() == SUCCESS
    policy = node.policy
    assert default_registry().refcount(policy) == 1
    assert node.trigger_cleanup() == SUCCESS
    assert node.policy is None and node.grounder is None
    assert default_registry().refcount(policy) == 0  # freed: no other holder


@pytest.mark.ros
def test_a_failed_configure_returns_failure_frees_everything_and_a_fixed_one_succeeds(graph, tmp_path):
    make_node, _, _ = graph
    node = make_node(checkpoint=str(tmp_path / "missing.pt"))
    assert node.trigger_configure() == FAILURE
    assert node.lifecycle_state == "unconfigured" and node.policy is None and node.service is None
    assert wait_for(lambda: node.count_publishers("grounding") == 0)
    node.set_parameters([Parameter("checkpoint", value="")])
    assert node.trigger_configure() == SUCCESS


# --------------------------------------------------------------------------------------- parameters
@pytest.mark.ros
def test_an_unknown_parameter_is_rejected_with_the_nearest_name(graph):
    make_node, _, _ = graph
    with pytest.raises(ParameterSchemaError, match=r"Unknown parameter 'rate_hx'.*Did you mean: 'rate_hz'"):
        make_node(rate_hx=1.0)


@pytest.mark.ros
@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("rate_hz", 50.0, r"Parameter 'rate_hz' with the value 50.0 must be in \[0.0, 30.0\]"),
        ("max_new_tokens", 4, r"Parameter 'max_new_tokens' with the value 4 must be in \[8, 1024\]"),
        ("kinds", ["mask"], r"Parameter 'kinds' .* not in the set \['box', 'point', 'trace'\]"),
        ("sync.slop", 2.0, r"Parameter 'sync.slop' with the value 2.0 must be in \[0.0, 1.0\]"),
    ],
)
def test_an_invalid_value_is_rejected_naming_the_allowed_range(graph, name, value, rule):
    make_node, _, _ = graph
    with pytest.raises(ParameterSchemaError, match=rule):
        make_node(**{name: value})


@pytest.mark.ros
def test_a_runtime_set_outside_the_range_is_refused_and_the_old_value_stays(graph):
    make_node, _, _ = graph
    node = make_node()
    result = node.set_parameters([Parameter("rate_hz", value=99.0)])[0]
    assert not result.successful and "rate_hz" in result.reason and "30.0" in result.reason  # rclpy's range
    assert node.get_parameter("rate_hz").value == 0.0
    assert not node.set_parameters([Parameter("sync.slop", value=0.1)])[0].successful  # read-only


@pytest.mark.ros
def test_a_wrong_length_static_extrinsic_fails_configure_with_the_reason(graph):
    make_node, _, _ = graph
    node = make_node(static_extrinsic=[1.0, 2.0, 3.0])
    assert node.trigger_configure() == FAILURE
    assert node.lifecycle_state == "unconfigured"


def test_main_rejects_an_unknown_parameter_with_a_suggestion_and_exit_code_2(capsys):
    from internvla_perception.grounding_node import main

    with pytest.raises(SystemExit) as exit_info:
        main(["grounding_node", "--ros-args", "-p", "depth_windw_px:=3"])
    assert exit_info.value.code == 2
    assert "Did you mean: 'depth_window_px'" in capsys.readouterr().err


def test_main_help_lists_every_parameter_of_the_schema(capsys):
    from internvla_perception.grounding_node import SCHEMA, main
    from internvla_ros_common.schema import load_schema

    with pytest.raises(SystemExit) as exit_info:
        main(["grounding_node", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(f"  {name} (" in text for name in load_schema(SCHEMA).parameters)
