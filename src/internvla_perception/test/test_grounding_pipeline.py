"""One grounding request from frame to messages, without a node: 3D with the paired depth, 2D without."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from internvla_core.grounding import GroundedPoint, GroundingResult
from internvla_core.grounding_inputs import Frame
from internvla_core.image_conversion import depth_to_image_fields, rgb_to_image_fields
from internvla_perception.grounding_pipeline import GroundingSettings, RequestStatus, ground_frame, refusal

K = [100.0, 0.0, 32.0, 0.0, 100.0, 24.0, 0.0, 0.0, 1.0]


class PointModel:
    def ground(self, image, instruction, kinds=("point",), max_new_tokens=128):
        return GroundingResult(
            instruction=instruction, kinds=tuple(kinds), points=[GroundedPoint("c", 32, 24)]
        )


def frame(with_depth: bool) -> Frame:
    image = Image(**rgb_to_image_fields(np.zeros((48, 64, 3), np.uint8)))
    image.header.frame_id = "cam"
    if not with_depth:
        return Frame(image, why_2d="no depth")
    depth = Image(**depth_to_image_fields(np.full((48, 64), 2.0, np.float32)))
    info = CameraInfo(width=64, height=48, k=K, distortion_model="plumb_bob", d=[0.0] * 5)
    return Frame(image, depth, info)


def test_a_frame_with_depth_gives_3d_in_the_camera_frame_and_times_every_stage():
    out = ground_frame(PointModel(), frame(True), "the cup", ["point"], GroundingSettings())
    assert out.error == "" and out.problems == []
    point = out.grounding.points[0]
    assert point.point_3d_valid and point.point_3d.z == 2.0 and out.grounding.header.frame_id == "cam"
    assert set(out.stages) == {"convert", "model", "draw"} and out.debug_image.encoding == "rgb8"


def test_without_depth_the_answer_is_2d_and_without_a_transform_to_the_target_3d_is_refused():
    flat = ground_frame(PointModel(), frame(False), "the cup", ["point"], GroundingSettings())
    assert not flat.grounding.points[0].point_3d_valid and flat.problems == []
    refused = ground_frame(
        PointModel(), frame(True), "the cup", ["point"], GroundingSettings(target_frame="base")
    )
    assert not refused.grounding.points[0].point_3d_valid
    assert refused.problems[0][0] == "no_extrinsic" and "3D output refused" in refused.problems[0][1]


def test_a_bad_image_never_reaches_the_model():
    class Untouchable:
        def ground(self, *args, **kwargs):
            raise AssertionError("the model saw a bad image")

    bad = Frame(Image(height=2, width=2, encoding="yuv422", step=4, data=b"\0" * 8))
    out = ground_frame(Untouchable(), bad, "cup", ["box"], GroundingSettings())
    assert out.grounding is None and out.error.startswith("bad image:")


def test_requests_are_refused_with_the_reason_and_warnings_are_throttled_per_problem():
    assert "empty instruction" in refusal("  ", [])
    assert refusal("cup", ["mask"]) == "unknown kinds ['mask']; use any of ['box', 'point', 'trace']"
    assert refusal("cup", []) == ""
    logged: list[str] = []
    status = RequestStatus(logged.append, period=60.0)
    status.finished([("no_3d", "no depth"), ("no_3d", "no depth")])
    status.finished([("bad_image", "bad")])
    assert logged == ["no depth", "bad"] and not status.last_ok and status.last_error == "bad"
    status.finished([])
    assert status.last_ok and status.last_error == "bad"  # kept for /diagnostics' last_error


def test_tf2_lookup_reads_the_buffer_at_the_image_stamp_and_turns_errors_into_the_reason():
    from geometry_msgs.msg import Transform, TransformStamped, Vector3
    from std_msgs.msg import Header

    from internvla_perception.grounding_pipeline import tf2_lookup

    asked = []

    class Buffer:  # tf2_ros.Buffer's lookup_transform(target, source, time)
        def lookup_transform(self, target, source, time):
            asked.append((target, source, time.nanoseconds))
            if target == "nowhere":
                raise LookupError('"nowhere" passed to lookupTransform does not exist')
            return TransformStamped(transform=Transform(translation=Vector3(x=0.5, y=0.0, z=0.25)))

    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 3, 500
    matrix, why = tf2_lookup(Buffer())("panda_link0", header)
    assert why == "" and matrix[:3, 3].tolist() == [0.5, 0.0, 0.25]
    assert asked == [("panda_link0", "camera_optical_frame", 3_000_000_500)]
    matrix, why = tf2_lookup(Buffer())("nowhere", header)
    assert matrix is None and why.startswith("tf2: ") and "nowhere" in why
