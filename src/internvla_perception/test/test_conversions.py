"""Grounding result -> internvla_msgs/Grounding and MarkerArray, without a running node."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS message wheels)")

from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from internvla_core.camera import PinholeCamera, pose_to_matrix
from internvla_core.grounding import GroundedBox, GroundedPoint, GroundedTrace, GroundingResult
from internvla_perception.conversions import grounding_message, markers_message, valid_3d_count

WIDTH, HEIGHT = 160, 90  # non-square
CAMERA = PinholeCamera(fx=100.0, fy=120.0, cx=80.0, cy=45.0, width=WIDTH, height=HEIGHT)


def result() -> GroundingResult:
    return GroundingResult(
        instruction="put the cup on the plate",
        kinds=("box", "point", "trace"),
        boxes=[GroundedBox("cup", 100, 20, 140, 60, 0.8)],
        points=[GroundedPoint("plate", 40, 45), GroundedPoint("hole", 10, 10)],
        traces=[GroundedTrace("path", [(120.0, 40.0), (40.0, 45.0), (10.0, 10.0)])],
        raw_text={"box": "[cup] ...", "point": "..."},
        image_size=(WIDTH, HEIGHT),
        inference_time=0.25,
    )


def depth_with_hole() -> np.ndarray:
    depth = np.full((HEIGHT, WIDTH), 0.8, dtype=np.float32)
    depth[:20, :20] = np.nan  # around pixel (10, 10): no valid depth at all
    return depth


def header() -> Header:
    h = Header(frame_id="cam_optical")
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h


def test_2d_only_message_keeps_every_result_flagged_without_3d():
    msg = grounding_message(result(), header())
    assert (msg.image_width, msg.image_height) == (WIDTH, HEIGHT)
    assert msg.kind == "box,point,trace" and msg.instruction == "put the cup on the plate"
    assert msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 345
    assert "[box] [cup] ..." in msg.raw_text and msg.inference_time == pytest.approx(0.25)
    assert msg.target_frame == ""  # no 3D, so no frame for it
    obj = msg.objects[0]
    assert (obj.label, obj.x1, obj.y1, obj.x2, obj.y2) == ("cup", 100, 20, 140, 60)
    assert obj.score == pytest.approx(0.8) and not obj.center_3d_valid
    assert [p.label for p in msg.points] == ["plate", "hole"]
    assert not any(p.point_3d_valid for p in msg.points)
    assert list(msg.traces[0].u) == [120.0, 40.0, 10.0] and list(msg.traces[0].v) == [40.0, 45.0, 10.0]
    assert list(msg.traces[0].points_3d_valid) == [False] * 3 and len(msg.traces[0].points_3d) == 3
    assert valid_3d_count(msg) == 0


def test_lifted_message_matches_the_pinhole_projection_and_flags_missing_depth():
    msg = grounding_message(result(), header(), CAMERA, depth_with_hole(), depth_window=2)
    centre = msg.objects[0].center_3d
    expected = [(120 - 80) / 100 * 0.8, (40 - 45) / 120 * 0.8, 0.8]
    np.testing.assert_allclose([centre.x, centre.y, centre.z], expected, atol=1e-6)
    assert msg.objects[0].center_3d_valid
    assert [p.point_3d_valid for p in msg.points] == [True, False]
    hole = msg.points[1].point_3d
    assert (hole.x, hole.y, hole.z) == (0.0, 0.0, 0.0)  # no NaN in the message: the flag says invalid
    assert list(msg.traces[0].points_3d_valid) == [True, True, False]
    assert valid_3d_count(msg) == 2


def test_transform_moves_3d_results_into_the_target_frame():
    # camera 1 m above a table, looking down: optical z -> table -z, optical x -> table x, y -> -y
    down = pose_to_matrix([0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0])
    msg = grounding_message(result(), header(), CAMERA, depth_with_hole(), down, "table", 2)
    assert msg.target_frame == "table"
    p = msg.points[0].point_3d  # pixel (40, 45) at 0.8 m: optical (-0.32, 0, 0.8)
    np.testing.assert_allclose([p.x, p.y, p.z], [-0.32, 0.0, 0.2], atol=1e-6)


def test_markers_start_with_deleteall_and_show_only_valid_3d_results():
    msg = grounding_message(result(), header(), CAMERA, depth_with_hole(), depth_window=2)
    markers = markers_message(msg).markers
    assert markers[0].action == Marker.DELETEALL
    spheres = [m for m in markers if m.type == Marker.SPHERE]
    texts = [m for m in markers if m.type == Marker.TEXT_VIEW_FACING]
    strips = [m for m in markers if m.type == Marker.LINE_STRIP]
    assert len(spheres) == len(texts) == 2  # the cup centre and the plate; the hole has no depth
    assert sorted(t.text for t in texts) == ["cup", "plate"]
    assert len(strips) == 1 and len(strips[0].points) == 2  # the vertex without depth is left out
    assert len({m.id for m in markers[1:]}) == len(markers) - 1  # unique ids
    assert all(m.header.frame_id == "cam_optical" and m.header.stamp.sec == 12 for m in markers)
    assert spheres[0].color.a == 1.0


def test_markers_without_3d_only_clear_the_old_ones():
    markers = markers_message(grounding_message(result(), header())).markers
    assert [m.action for m in markers] == [Marker.DELETEALL]


def test_markers_use_the_target_frame_when_3d_was_transformed():
    msg = grounding_message(result(), header(), CAMERA, depth_with_hole(), np.eye(4), "base_link", 2)
    assert {m.header.frame_id for m in markers_message(msg).markers} == {"base_link"}
