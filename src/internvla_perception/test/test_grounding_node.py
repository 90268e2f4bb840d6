"""grounding_node over real rclpy: service, topics, 3D lifting, debug image, markers and bad input."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from internvla_core.camera import PinholeCamera  # noqa: E402
from internvla_core.grounding import GroundedBox, GroundedPoint, GroundedTrace, GroundingResult  # noqa: E402
from internvla_core.image_conversion import depth_to_image_fields, image_to_rgb, rgb_to_image_fields  # noqa: E402
from internvla_msgs.msg import Grounding  # noqa: E402
from internvla_msgs.srv import Ground  # noqa: E402
from internvla_perception.grounding_node import GroundingNode  # noqa: E402

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


def wait_for(condition, timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def graph(spin_in_background):
    context = Context()
    rclpy.init(context=context)
    node = GroundingNode(context=context)
    peer = Node("peer", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    executor.add_node(peer)
    halt = spin_in_background(executor)
    got: dict[str, list] = {"grounding": [], "debug": [], "markers": []}
    peer.create_subscription(Grounding, "grounding", got["grounding"].append, 10)
    peer.create_subscription(Image, "grounding/debug_image", got["debug"].append, 10)
    peer.create_subscription(MarkerArray, "grounding/markers", got["markers"].append, 10)
    yield node, peer, got
    halt()
    executor.shutdown()
    node.destroy_node()
    peer.destroy_node()
    rclpy.shutdown(context=context)


def start(node: GroundingNode) -> None:
    from lifecycle_msgs.msg import State

    node.trigger_configure()
    node.trigger_activate()
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE


def scene() -> np.ndarray:
    rgb = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    rgb[60:100, 200:260] = (220, 30, 30)
    return rgb


def image_msg(rgb: np.ndarray, stamp_sec: int = 5) -> Image:
    msg = Image(**rgb_to_image_fields(rgb))
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec = stamp_sec
    return msg


def publish_camera(peer: Node, depth_m: float = 1.5) -> None:
    image_pub = peer.create_publisher(Image, "camera/image_raw", 2)
    depth_pub = peer.create_publisher(Image, "camera/depth/image_raw", 2)
    info_pub = peer.create_publisher(CameraInfo, "camera/camera_info", 2)
    assert wait_for(lambda: image_pub.get_subscription_count() and depth_pub.get_subscription_count())
    depth = np.full((HEIGHT // 2, WIDTH // 2), depth_m, dtype=np.float32)  # depth at half resolution
    depth[:, :20] = np.nan
    info = CameraInfo(width=WIDTH, height=HEIGHT, k=K, distortion_model="plumb_bob", d=[0.0] * 5)
    info.header.frame_id = "camera_optical_frame"
    info_pub.publish(info)
    depth_pub.publish(Image(header=image_msg(scene()).header, **depth_to_image_fields(depth)))
    image_pub.publish(image_msg(scene()))


def call(peer: Node, request: Ground.Request, timeout: float = 120.0) -> Ground.Response:
    client = peer.create_client(Ground, "ground")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(request)
    assert wait_for(future.done, timeout)
    return future.result()


@pytest.mark.ros
def test_service_grounds_the_latest_image_with_the_tiny_model_and_publishes_everything(graph):
    node, peer, got = graph
    start(node)
    publish_camera(peer)
    assert wait_for(lambda: "image" in node._latest and "depth" in node._latest and "info" in node._latest)
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
def test_node_lifts_known_grounding_to_3d_on_a_non_square_image_with_a_scripted_model(graph):
    node, peer, got = graph
    start(node)
    known = GroundingResult(
        instruction="",
        kinds=("box",),
        boxes=[GroundedBox("red block", 200, 60, 260, 100)],
        points=[GroundedPoint("edge", 5, 100)],  # lies where depth is missing
        traces=[GroundedTrace("path", [(160.0, 100.0), (230.0, 80.0)])],
    )
    node.grounder = ScriptedModel(known)
    publish_camera(peer, depth_m=1.5)
    assert wait_for(lambda: "depth" in node._latest and "info" in node._latest)
    response = call(peer, Ground.Request(instruction="the red block", kinds=["box", "point", "trace"]))
    assert response.success, response.message
    g = response.grounding
    cam = PinholeCamera.from_camera_info_fields(K, [0] * 5, "plumb_bob", WIDTH, HEIGHT)
    expected = cam.back_project(230.0, 80.0, 1.5)
    obj = g.objects[0]
    assert obj.center_3d_valid
    np.testing.assert_allclose([obj.center_3d.x, obj.center_3d.y, obj.center_3d.z], expected, atol=1e-6)
    assert g.points[0].label == "edge" and not g.points[0].point_3d_valid  # kept, flagged
    assert list(g.traces[0].points_3d_valid) == [True, True]
    np.testing.assert_allclose(g.traces[0].points_3d[0].z, 1.5)
    assert wait_for(lambda: got["debug"])
    debug = image_to_rgb(
        *(lambda m: (m.height, m.width, m.encoding, m.is_bigendian, m.step, m.data))(got["debug"][-1])
    )
    assert not np.array_equal(debug, scene())  # something was drawn on the source image


@pytest.mark.ros
def test_bad_requests_get_a_clear_answer_and_the_node_keeps_running(graph):
    node, peer, _ = graph
    start(node)
    node.grounder = ScriptedModel(GroundingResult(instruction="", kinds=("box",)))
    assert "no image yet" in call(peer, Ground.Request(instruction="cup")).message
    assert "empty instruction" in call(peer, Ground.Request(instruction="   ")).message
    assert "unknown kinds" in call(peer, Ground.Request(instruction="cup", kinds=["mask"])).message
    bad = image_msg(scene())
    bad.encoding = "yuv422"
    response = call(peer, Ground.Request(instruction="cup", image=bad))
    assert not response.success and "unsupported image encoding" in response.message
    assert node.grounder.calls == 0  # the model never saw garbage
    good = call(peer, Ground.Request(instruction="cup", image=image_msg(scene())))
    assert good.success


@pytest.mark.ros
def test_inactive_node_refuses_service_calls(graph):
    node, peer, _ = graph
    node.trigger_configure()
    assert "not active" in call(peer, Ground.Request(instruction="cup")).message


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
    node, peer, _ = graph
    if node._state_machine.current_state[1] != "active":
        start(node)
        node.grounder = ScriptedModel(GroundingResult(instruction="", kinds=("box",)))
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
    assert node._worker is not None and node._worker.is_alive()


@pytest.mark.ros
def test_periodic_mode_grounds_each_new_image_once_and_never_republishes_a_stale_result(graph):
    node, peer, got = graph
    from rclpy.parameter import Parameter

    node.set_parameters([Parameter("rate_hz", value=20.0), Parameter("default_instruction", value="the cup")])
    start(node)
    node.grounder = ScriptedModel(GroundingResult(instruction="", kinds=("box",)))
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
    node, peer, _ = graph
    from rclpy.parameter import Parameter

    node.set_parameters(
        [
            Parameter("target_frame", value="table"),
            Parameter("static_extrinsic", value=[1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0]),
        ]
    )
    start(node)
    node.grounder = ScriptedModel(
        GroundingResult(instruction="", kinds=("point",), points=[GroundedPoint("c", 160, 100)])
    )
    publish_camera(peer, depth_m=2.0)
    assert wait_for(lambda: "depth" in node._latest and "info" in node._latest)
    g = call(peer, Ground.Request(instruction="the centre", kinds=["point"])).grounding
    assert g.target_frame == "table" and g.points[0].point_3d_valid
    np.testing.assert_allclose(
        [g.points[0].point_3d.x, g.points[0].point_3d.y, g.points[0].point_3d.z], [1.0, 0.0, 2.5], atol=1e-6
    )


@pytest.mark.ros
def test_without_the_camera_to_base_transform_3d_is_refused_and_2d_still_published(graph):
    """Real robots: target_frame is the robot base; no TF and no static_extrinsic must not mean identity."""
    node, peer, _ = graph
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter

    diagnostics: list = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    node.set_parameters([Parameter("target_frame", value="fr3_link0")])
    start(node)
    node.grounder = ScriptedModel(
        GroundingResult(instruction="", kinds=("point",), points=[GroundedPoint("c", 160, 100)])
    )
    publish_camera(peer, depth_m=2.0)
    assert wait_for(lambda: "depth" in node._latest and "info" in node._latest)
    response = call(peer, Ground.Request(instruction="the centre", kinds=["point"]))
    g = response.grounding
    assert response.success and len(g.points) == 1 and g.points[0].u == pytest.approx(160)  # 2D kept
    assert not g.points[0].point_3d_valid and g.target_frame == ""  # no 3D in a guessed frame
    assert "-> fr3_link0" in node.last_error and "3D output refused" in node.last_error

    def says_why() -> bool:
        return any(
            "3D output refused" in status.message
            for array in diagnostics
            for status in array.status
            if status.name.endswith("grounding")
        )

    assert wait_for(says_why, timeout=5.0)


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
    node, peer, _ = graph
    start(node)
    model = BlockingModel(GroundingResult(instruction="", kinds=("box",)))
    node.grounder = model
    client = peer.create_client(Ground, "ground")
    assert client.wait_for_service(timeout_sec=10)
    request = Ground.Request(instruction="cup", image=image_msg(scene()))
    running = client.call_async(request)
    assert model.started.wait(timeout=10)
    waiting = client.call_async(request)
    assert wait_for(lambda: node._jobs.full(), timeout=10)
    refused = client.call_async(request)
    assert wait_for(refused.done, timeout=10)  # answered while two service calls are still blocked
    assert not refused.result().success and "busy" in refused.result().message
    image_pub = peer.create_publisher(Image, "camera/image_raw", 2)  # the executor still serves inputs
    assert wait_for(lambda: image_pub.get_subscription_count() > 0)
    image_pub.publish(image_msg(scene(), stamp_sec=42))
    assert wait_for(lambda: "image" in node._latest and node._latest["image"].header.stamp.sec == 42)
    assert not running.done() and not waiting.done()
    model.release.set()
    assert wait_for(lambda: running.done() and waiting.done())
    assert running.result().success and waiting.result().success and model.calls == 2


@pytest.mark.ros
def test_deactivating_answers_a_waiting_request_instead_of_leaving_it_to_time_out(graph):
    node, peer, got = graph
    start(node)
    model = BlockingModel(GroundingResult(instruction="", kinds=("box",)))
    node.grounder = model
    client = peer.create_client(Ground, "ground")
    assert client.wait_for_service(timeout_sec=10)
    request = Ground.Request(instruction="cup", image=image_msg(scene()))
    running = client.call_async(request)
    assert model.started.wait(timeout=10)
    waiting = client.call_async(request)
    assert wait_for(lambda: node._jobs.full(), timeout=10)

    def finish_once_deactivating() -> None:  # the job in hand finishes during the deactivation
        wait_for(lambda: not node._active, timeout=10)
        model.release.set()

    threading.Thread(target=finish_once_deactivating, daemon=True).start()
    node.trigger_deactivate()
    assert wait_for(lambda: running.done() and waiting.done(), timeout=10)
    assert "deactivated before the request ran" in waiting.result().message
    assert not running.result().success and "deactivated while the request ran" in running.result().message
    time.sleep(0.2)
    assert got["grounding"] == []  # nothing published after deactivation


def depth_16uc1(millimetres: np.ndarray) -> Image:
    """A depth image as RGB-D drivers publish it: uint16 millimetres, 0 = no reading."""
    h, w = millimetres.shape
    return Image(height=h, width=w, encoding="16UC1", step=2 * w, data=millimetres.astype("<u2").tobytes())


def diagnostics_of(peer: Node):
    from diagnostic_msgs.msg import DiagnosticArray

    seen: list = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", seen.append, 10)

    def latest():
        for array in reversed(seen):
            for status in array.status:
                if "grounding" in status.name:
                    return status
        return None

    return seen, latest


@pytest.mark.ros
def test_bad_depth_and_camera_info_give_2d_results_a_warning_and_no_stale_markers(graph):
    node, peer, got = graph
    start(node)
    _, latest = diagnostics_of(peer)
    node.grounder = ScriptedModel(
        GroundingResult(instruction="", kinds=("point",), points=[GroundedPoint("c", 160, 100)])
    )
    publish_camera(peer, depth_m=1.0)
    assert wait_for(lambda: "depth" in node._latest and "info" in node._latest)
    good = call(peer, Ground.Request(instruction="c", kinds=["point"])).grounding
    assert good.points[0].point_3d_valid
    info_pub = peer.create_publisher(CameraInfo, "camera/camera_info", 2)
    assert wait_for(lambda: info_pub.get_subscription_count() > 0)
    info_pub.publish(CameraInfo(width=WIDTH, height=HEIGHT))  # an uncalibrated driver: K all zero
    assert wait_for(lambda: not any(node._latest["info"].k))
    response = call(peer, Ground.Request(instruction="c", kinds=["point"]))
    assert response.success and not response.grounding.points[0].point_3d_valid
    assert wait_for(lambda: len(got["markers"]) == 2)
    assert [m.action for m in got["markers"][-1].markers] == [3]  # only DELETEALL: the old sphere goes
    assert wait_for(lambda: latest() is not None and latest().level == DiagnosticStatus.WARN, timeout=5)
    assert "no intrinsics" in latest().message

    info = CameraInfo(width=WIDTH, height=HEIGHT, k=K)
    info_pub.publish(info)
    depth_pub = peer.create_publisher(Image, "camera/depth/image_raw", 2)
    assert wait_for(lambda: depth_pub.get_subscription_count() > 0)
    zeros = np.zeros((HEIGHT, WIDTH), dtype=np.uint16)  # 16UC1 with no valid pixel
    depth_pub.publish(depth_16uc1(zeros))
    assert wait_for(lambda: node._latest["depth"].encoding == "16UC1" and any(node._latest["info"].k))
    response = call(peer, Ground.Request(instruction="c", kinds=["point"]))
    assert response.success and not response.grounding.points[0].point_3d_valid

    depth_pub.publish(depth_16uc1(np.full((HEIGHT, WIDTH), 1500, np.uint16)))
    assert wait_for(lambda: node._latest["depth"].data[0] != 0)
    response = call(peer, Ground.Request(instruction="c", kinds=["point"]))
    assert response.grounding.points[0].point_3d_valid
    np.testing.assert_allclose(response.grounding.points[0].point_3d.z, 1.5)  # millimetres -> metres
    assert wait_for(
        lambda: latest().level == DiagnosticStatus.OK, timeout=5
    )  # a good request clears the warning


@pytest.mark.ros
def test_diagnostics_report_rate_and_latency_of_every_stage(graph):
    node, peer, _ = graph
    start(node)
    _, latest = diagnostics_of(peer)
    node.grounder = ScriptedModel(GroundingResult(instruction="", kinds=("box",)))
    assert call(peer, Ground.Request(instruction="cup", image=image_msg(scene()))).success

    def keys():
        status = latest()
        return {kv.key for kv in status.values} if status is not None else set()

    stages = {f"{s}_p50_ms" for s in ("convert", "model", "draw", "publish", "total")}
    assert wait_for(lambda: stages <= keys(), timeout=5)
    assert {"rate_hz", "last_error"} <= keys() and latest().level == DiagnosticStatus.OK


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
    node, peer, _ = graph
    if node._state_machine.current_state[1] != "active":
        start(node)
        node.grounder = ScriptedModel(
            GroundingResult(instruction="", kinds=("point",), points=[GroundedPoint("c", 3, 2)])
        )
    # inputs go straight into the node's latest-message store: the same path as the subscriptions
    node._store("depth")(
        Image(
            height=depth_height,
            width=depth_width,
            encoding=depth_encoding,
            step=depth_step,
            data=depth_data,
        )
    )
    node._store("info")(CameraInfo(width=info_size[0], height=info_size[1], k=k, d=d, distortion_model=model))
    response = call(peer, Ground.Request(instruction="c", image=image_msg(np.zeros((4, 6, 3), np.uint8))))
    assert response.success, response.message  # the 2D answer survives any depth / camera_info
    point = response.grounding.points[0]
    if point.point_3d_valid:
        assert all(np.isfinite([point.point_3d.x, point.point_3d.y, point.point_3d.z]))
        assert 0 < point.point_3d.z <= 10.0
    assert node._worker is not None and node._worker.is_alive()


@pytest.mark.ros
def test_the_shipped_parameter_file_loads_and_covers_every_declared_parameter(tmp_path):
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "config" / "grounding_node.yaml"
    shipped = yaml.safe_load(path.read_text())["grounding_node"]["ros__parameters"]
    shipped["kinds"], shipped["rate_hz"] = ["trace"], 2.5  # overrides prove the file is what is read
    edited = tmp_path / "grounding_node.yaml"
    edited.write_text(yaml.safe_dump({"grounding_node": {"ros__parameters": shipped}}))
    context = Context()
    rclpy.init(context=context)
    try:
        node = GroundingNode(context=context, cli_args=["--ros-args", "--params-file", str(edited)])
        declared = {
            name
            for name in node._parameters
            if name not in ("use_sim_time", "start_type_description_service")
        }
        # static_extrinsic has no value unless you calibrated (the file documents it in a comment)
        unset = {"static_extrinsic"}
        assert declared - unset == set(shipped)  # nothing undocumented, nothing stale in the file
        assert "static_extrinsic" in path.read_text()
        assert node.p("kinds") == ["trace"] and node.p("rate_hz") == 2.5
        assert all(node.describe_parameter(name).description for name in declared)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
