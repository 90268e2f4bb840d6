"""Message building for the grounding node: core results -> internvla_msgs / visualization_msgs.

Kept apart from the node so each conversion is tested on its own; the maths (lifting, transforms)
lives in internvla_core.camera.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from internvla_core.camera import PinholeCamera, lift_pixels, transform_points
from internvla_core.drawing import label_colour
from internvla_core.grounding import GroundingResult
from internvla_msgs.msg import GroundedObject, GroundedPoint, Grounding, Trace


def _point(xyz: np.ndarray) -> Point:
    if not np.all(np.isfinite(xyz)):
        return Point()
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def grounding_message(
    result: GroundingResult,
    header: Header,
    camera: PinholeCamera | None = None,
    depth_m: np.ndarray | None = None,
    transform: np.ndarray | None = None,
    target_frame: str = "",
    depth_window: int = 5,
) -> Grounding:
    """Grounding message with 3D fields when a camera model and a depth image are given.

    3D coordinates are in the camera optical frame (header.frame_id), or in ``target_frame`` when a
    4x4 ``transform`` (optical -> target) is given. Pixels without valid depth keep their slot, flagged.
    """
    msg = Grounding(header=header, instruction=result.instruction, kind=",".join(result.kinds))
    msg.image_width, msg.image_height = int(result.image_size[0]), int(result.image_size[1])
    msg.raw_text = "\n".join(f"[{k}] {v}" for k, v in result.raw_text.items())
    msg.inference_time = float(result.inference_time)
    lift = camera is not None and depth_m is not None

    def lifted(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not lift or len(pixels) == 0:
            return np.full((len(pixels), 3), np.nan), np.zeros(len(pixels), dtype=bool)
        points, valid = lift_pixels(camera, depth_m, pixels, window=depth_window)
        if transform is not None:
            points = transform_points(transform, points)
        return points, valid

    if lift and transform is not None:
        msg.target_frame = target_frame
    centres = np.array([[(b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2] for b in result.boxes]).reshape(-1, 2)
    points3d, valid = lifted(centres)
    for box, xyz, ok in zip(result.boxes, points3d, valid):
        msg.objects.append(
            GroundedObject(
                label=box.label,
                score=float(box.score),
                x1=float(box.x1),
                y1=float(box.y1),
                x2=float(box.x2),
                y2=float(box.y2),
                center_3d=_point(xyz),
                center_3d_valid=bool(ok),
            )
        )
    pixels = np.array([[p.u, p.v] for p in result.points]).reshape(-1, 2)
    points3d, valid = lifted(pixels)
    for p, xyz, ok in zip(result.points, points3d, valid):
        msg.points.append(
            GroundedPoint(
                label=p.label, u=float(p.u), v=float(p.v), point_3d=_point(xyz), point_3d_valid=bool(ok)
            )
        )
    for trace in result.traces:
        pixels = np.asarray(trace.points, dtype=np.float64).reshape(-1, 2)
        points3d, valid = lifted(pixels)
        msg.traces.append(
            Trace(
                label=trace.label,
                u=[float(u) for u in pixels[:, 0]],
                v=[float(v) for v in pixels[:, 1]],
                points_3d=[_point(xyz) for xyz in points3d],
                points_3d_valid=[bool(ok) for ok in valid],
            )
        )
    return msg


def markers_message(grounding: Grounding, namespace: str = "grounding") -> MarkerArray:
    """Spheres for 3D points/box centres, line strips for traces, text labels; DELETEALL first."""
    frame = grounding.target_frame or grounding.header.frame_id
    header = Header(stamp=grounding.header.stamp, frame_id=frame)
    markers = [Marker(header=header, ns=namespace, action=Marker.DELETEALL)]

    def colour(marker: Marker, label: str) -> None:
        r, g, b = label_colour(label)
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = r / 255, g / 255, b / 255, 1.0

    def sphere_and_label(label: str, point: Point) -> None:
        sphere = Marker(header=header, ns=namespace, id=len(markers), type=Marker.SPHERE, action=Marker.ADD)
        sphere.pose.position = point
        sphere.pose.orientation.w = 1.0
        sphere.scale.x = sphere.scale.y = sphere.scale.z = 0.03
        colour(sphere, label)
        markers.append(sphere)
        text = Marker(
            header=header, ns=namespace, id=len(markers), type=Marker.TEXT_VIEW_FACING, action=Marker.ADD
        )
        text.pose.position = Point(x=point.x, y=point.y, z=point.z - 0.04)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.03
        text.text = label or "target"
        colour(text, label)
        markers.append(text)

    for obj in grounding.objects:
        if obj.center_3d_valid:
            sphere_and_label(obj.label, obj.center_3d)
    for p in grounding.points:
        if p.point_3d_valid:
            sphere_and_label(p.label, p.point_3d)
    for trace in grounding.traces:
        strip = Marker(
            header=header, ns=namespace, id=len(markers), type=Marker.LINE_STRIP, action=Marker.ADD
        )
        strip.pose.orientation.w = 1.0
        strip.scale.x = 0.01
        strip.points = [pt for pt, ok in zip(trace.points_3d, trace.points_3d_valid) if ok]
        colour(strip, trace.label)
        if len(strip.points) >= 2:
            markers.append(strip)
    return MarkerArray(markers=markers)


def valid_3d_count(grounding: Grounding) -> int:
    return sum(o.center_3d_valid for o in grounding.objects) + sum(p.point_3d_valid for p in grounding.points)


# ------------------------------------------------------------------------------ inputs of the node
def image_fields(msg) -> tuple:
    """sensor_msgs/Image as the arguments of internvla_core.image_conversion's readers."""
    return (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step, msg.data)


def camera_info_fields(msg) -> dict:
    """sensor_msgs/CameraInfo as internvla_core.grounding_inputs.camera_and_depth reads it."""
    return {
        "k": msg.k,
        "d": msg.d,
        "distortion_model": msg.distortion_model,
        "width": msg.width,
        "height": msg.height,
    }


def subscription_qos(reliable: bool, depth: int):
    """RELIABLE or BEST_EFFORT keep-last QoS: a subscription must match its driver's reliability."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=depth, reliability=reliability)


def detections_message(grounding: Grounding):  # pragma: no cover - vision_msgs only in full ROS installs
    """vision_msgs/Detection2DArray of the boxes (full ROS installs only)."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    out = Detection2DArray(header=grounding.header)
    for obj in grounding.objects:
        det = Detection2D(header=grounding.header)
        det.bbox.center.position.x = (obj.x1 + obj.x2) / 2
        det.bbox.center.position.y = (obj.y1 + obj.y2) / 2
        det.bbox.size_x, det.bbox.size_y = obj.x2 - obj.x1, obj.y2 - obj.y1
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = obj.label, float(obj.score)
        det.results.append(hyp)
        out.detections.append(det)
    return out
