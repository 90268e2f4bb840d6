"""grounding_node over real rclpy: service, topics, 3D lifting, debug image, markers and bad input."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")

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
def graph():
    context = Context()
    rclpy.init(context=context)
    node = GroundingNode(context=context)
    peer = Node("peer", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    executor.add_node(peer)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    got: dict[str, list] = {"grounding": [], "debug": [], "markers": []}
    peer.create_subscription(Grounding, "grounding", got["grounding"].append, 10)
    peer.create_subscription(Image, "grounding/debug_image", got["debug"].append, 10)
    peer.create_subscription(MarkerArray, "grounding/markers", got["markers"].append, 10)
    yield node, peer, got
    executor.shutdown()
    node.destroy_node()
    peer.destroy_node()
    rclpy.shutdown(context=context)
    spinner.join(timeout=5)


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
