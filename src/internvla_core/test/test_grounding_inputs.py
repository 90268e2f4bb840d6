"""Which frame a grounding request uses and its camera model and depth, without ROS."""

from __future__ import annotations

import numpy as np

from internvla_core.grounding_inputs import (
    CameraFrames,
    camera_and_depth,
    frame_for_request_image,
    latest_frame,
)
from internvla_core.image_conversion import depth_to_image_fields
from internvla_core.stamp_sync import MatchedSet

MS = 1_000_000
K = [300.0, 0.0, 160.0, 0.0, 280.0, 100.0, 0.0, 0.0, 1.0]


def matched(t_ms: int) -> MatchedSet:
    names = ("image", "depth", "info")
    return MatchedSet({n: t_ms * MS for n in names}, {n: f"{n}@{t_ms}" for n in names})


def test_the_newest_set_is_grounded_while_its_image_is_recent_enough():
    frame = latest_frame("image@130", 130 * MS, matched(100), max_set_age=50 * MS)
    assert (frame.image, frame.depth, frame.info, frame.why_2d) == ("image@100", "depth@100", "info@100", "")


def test_a_stale_set_gives_way_to_the_newest_image_in_2d_with_the_reason():
    frame = latest_frame("image@900", 900 * MS, matched(100), max_set_age=500 * MS)
    assert frame.image == "image@900" and frame.depth is None and "stopped matching" in frame.why_2d


def test_without_any_set_the_newest_image_is_grounded_in_2d_and_without_images_nothing():
    frame = latest_frame("image@5", 5 * MS, None, max_set_age=500 * MS)
    assert frame.image == "image@5" and frame.info is None and "no depth/camera_info paired" in frame.why_2d
    assert latest_frame(None, None, None, max_set_age=0) is None


def test_a_request_image_takes_depth_and_info_of_the_set_nearest_its_stamp_within_the_slop():
    sets = [matched(100), matched(200)]
    frame = frame_for_request_image("mine", 195 * MS, sets, slop=20 * MS)
    assert (frame.image, frame.depth, frame.info) == ("mine", "depth@200", "info@200")
    lonely = frame_for_request_image("mine", 150 * MS, sets, slop=20 * MS)
    assert lonely.depth is None and "request image" in lonely.why_2d


def _info(**changes):
    fields = {"k": K, "d": [0.0] * 5, "distortion_model": "plumb_bob", "width": 320, "height": 200}
    return {**fields, **changes}


def _depth_fields(depth: np.ndarray) -> tuple:
    f = depth_to_image_fields(depth)
    return (f["height"], f["width"], f["encoding"], f["is_bigendian"], f["step"], f["data"])


def test_camera_info_at_another_resolution_is_scaled_to_the_image_and_depth_is_in_metres():
    depth = np.full((100, 160), 1.5, dtype=np.float32)
    camera, metres, problem = camera_and_depth(_info(width=640, height=400), _depth_fields(depth), 320, 200)
    assert problem == "" and (camera.width, camera.height) == (320, 200)
    assert camera.fx == 150.0 and metres.shape == (100, 160) and float(metres[0, 0]) == 1.5


def test_missing_intrinsics_or_an_unreadable_depth_give_no_3d_and_say_why():
    depth = _depth_fields(np.ones((4, 4), dtype=np.float32))
    camera, metres, problem = camera_and_depth(_info(k=[0.0] * 9), depth, 320, 200)
    assert camera is None and metres is None and "no intrinsics" in problem
    _, _, problem = camera_and_depth(_info(), (4, 4, "bogus", 0, 16, b"\0" * 64), 320, 200)
    assert problem.startswith("no 3D for this image") and "bogus" in problem


def test_camera_frames_pair_by_stamp_and_fall_back_to_the_newest_image_in_2d():
    frames = CameraFrames(slop=20 * MS, queue_size=5, max_set_age=500 * MS)
    assert frames.latest() is None
    frames.add("image", 100 * MS, "image@100")
    assert frames.latest().why_2d.startswith("no depth/camera_info paired")
    frames.add("depth", 100 * MS, "depth@100")
    frames.add("depth", 200 * MS, "depth@200")  # newer depth, its image not there yet
    frames.add("info", 100 * MS, "info@100")
    frame = frames.latest()
    assert (frame.image, frame.depth, frame.info) == ("image@100", "depth@100", "info@100")
    assert frames.for_request("mine", 105 * MS).depth == "depth@100"
    frames.add("image", 900 * MS, "image@900")  # depth and camera_info stopped
    assert frames.latest().image == "image@900" and frames.latest().depth is None
