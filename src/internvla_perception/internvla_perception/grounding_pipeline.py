"""One grounding request from frame to messages: convert, model, 3D decision, message building, drawing.

No node and no rclpy here (messages are plain Python objects), so the whole path of a request is
tested without spinning ROS; the grounding node only submits, publishes and reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from internvla_core.camera import decide_3d_frame
from internvla_core.drawing import draw_grounding
from internvla_core.grounding import GROUNDING_KINDS
from internvla_core.grounding_inputs import Frame, camera_and_depth
from internvla_core.image_conversion import ImageConversionError, image_to_rgb, rgb_to_image_fields
from internvla_core.latency import StageTimer
from internvla_msgs.msg import Grounding

from .conversions import camera_info_fields, grounding_message, image_fields

TfLookup = Callable[[str, Header], tuple[np.ndarray | None, str]]
"""(target frame, image header) -> (4x4 optical -> target from TF, or None; why not)."""


@dataclass(frozen=True)
class GroundingSettings:
    """The request-time parameters of the grounding node."""

    max_new_tokens: int = 128
    depth_window_px: int = 5
    target_frame: str = ""
    static_extrinsic: Sequence[float] = ()


@dataclass
class GroundingOutcome:
    """What a request produced: the messages to publish (None on a bad image), the error for the
    caller, and the problems (key, text) worth a warning and a WARN in /diagnostics."""

    grounding: Grounding | None = None
    debug_image: Image | None = None
    error: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)


def no_tf(target_frame: str, header: Header) -> tuple[np.ndarray | None, str]:
    """A TfLookup for setups without tf2_ros."""
    return None, "tf2_ros not installed"


def tf2_lookup(buffer) -> TfLookup:
    """A TfLookup reading a tf2_ros.Buffer at the image's stamp; any tf2 error becomes the reason."""
    from rclpy.time import Time

    from internvla_ros_common.conversions import transform_to_matrix

    def lookup(target: str, header: Header) -> tuple[np.ndarray | None, str]:
        try:
            transform = buffer.lookup_transform(target, header.frame_id, Time.from_msg(header.stamp))
        except Exception as exc:  # tf2 raises several lookup exception types
            return None, f"tf2: {exc}"
        return transform_to_matrix(transform.transform), ""

    return lookup


def ground_frame(
    grounder,
    frame: Frame,
    instruction: str,
    kinds: Sequence[str],
    settings: GroundingSettings,
    tf_lookup: TfLookup = no_tf,
) -> GroundingOutcome:
    """Ground ``frame.image`` for ``instruction``; lift to 3D with the frame's depth and camera_info."""
    out, timer, image = GroundingOutcome(), StageTimer(), frame.image
    with timer.stage("convert"):
        try:
            rgb = image_to_rgb(*image_fields(image))
        except ImageConversionError as exc:
            out.error = f"bad image: {exc}"
            out.problems.append(("bad_image", out.error))
            return out
        camera = depth = None
        if frame.depth is not None and frame.info is not None:
            camera, depth, problem = camera_and_depth(
                camera_info_fields(frame.info), image_fields(frame.depth), image.width, image.height
            )
            if problem:
                out.problems.append(("no_3d", problem))
    with timer.stage("model"):
        result = grounder.ground(rgb, instruction, kinds=tuple(kinds), max_new_tokens=settings.max_new_tokens)
    if result.error:  # e.g. an answer that did not parse: still published, with what was found
        out.error = result.error
        out.problems.append(("model_answer", f"model answer: {result.error}"))
    with timer.stage("draw"):
        header = Header(stamp=image.header.stamp, frame_id=image.header.frame_id)
        target, tf_matrix, tf_error = settings.target_frame, None, ""
        if target and target != header.frame_id:
            tf_matrix, tf_error = tf_lookup(target, header)
        frame_3d = decide_3d_frame(
            target, header.frame_id, tf_matrix, tf_error, list(settings.static_extrinsic)
        )
        if not frame_3d.publish_3d:  # 2D only, and diagnostics say why
            out.problems.append(("no_extrinsic", frame_3d.reason))
            camera, depth = None, None
        out.grounding = grounding_message(
            result, header, camera, depth, frame_3d.transform, target, settings.depth_window_px
        )
        out.debug_image = Image(header=header, **rgb_to_image_fields(draw_grounding(rgb, result)))
    out.stages = dict(timer.stages)
    return out


def refusal(instruction: str, kinds: Sequence[str]) -> str:
    """Why a service request cannot run ("" when it can): caught before the model sees it."""
    if not instruction.strip():
        return "empty instruction: say what to ground, e.g. 'the red block'"
    unknown = [k for k in kinds if k not in GROUNDING_KINDS]
    return f"unknown kinds {unknown}; use any of {list(GROUNDING_KINDS)}" if unknown else ""


class RequestStatus:
    """The latest request's problems for /diagnostics (WARN until a clean request), and warnings
    throttled per kind of problem so a bad stream logs once per ``period`` seconds, not per frame."""

    def __init__(self, warn: Callable[[str], None], period: float = 10.0) -> None:
        self._warn, self._period = warn, period
        self._warned: dict[str, float] = {}
        self.last_error, self.last_ok = "", True

    def warn_once(self, key: str, text: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= self._period:
            self._warned[key] = now
            self._warn(text)

    def finished(self, problems: Sequence[tuple[str, str]]) -> None:
        """Record one request's problems (none = it went through cleanly)."""
        for key, text in problems:
            self.last_error = text
            self.warn_once(key, text)
        self.last_ok = not problems
