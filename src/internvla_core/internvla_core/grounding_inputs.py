"""Which camera frame a grounding request uses, and its camera model and depth, without ROS.

The grounding node receives colour images, depth images and camera_info on three topics. It pairs
them by stamp (:mod:`internvla_core.stamp_sync`) and decides here what to ground:

- a request that brings its own image: the synchronised set whose image stamp is nearest, within the
  slop, gives depth and intrinsics; none = 2D only;
- otherwise the newest synchronised set while its image is at most ``max_set_age`` older than the
  newest image (a set completes a frame after its image: grounding it gives 3D); beyond that (the
  depth or camera_info stream stopped, or never started) the newest image, in 2D only.

Messages stay opaque here (``image_stamp`` and the fields functions come from the caller), so the
rules are tested without ROS.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from internvla_core.camera import CameraModelError, PinholeCamera
from internvla_core.image_conversion import ImageConversionError, image_to_depth_m
from internvla_core.stamp_sync import ApproximateTimeSync, MatchedSet, nearest_set


@dataclass(frozen=True)
class Frame:
    """What to ground: the image, and the depth and camera_info paired with it (None = 2D only)."""

    image: Any
    depth: Any = None
    info: Any = None
    why_2d: str = ""  # why depth/camera_info are missing, for diagnostics ("" when paired)


def frame_for_request_image(image: Any, stamp: int, sets: Sequence[MatchedSet], slop: int) -> Frame:
    """A request's own image with the synchronised depth/camera_info of its stamp, if one is near."""
    matched = nearest_set(sets, "image", stamp, slop)
    if matched is None:
        return Frame(image, why_2d="no depth/camera_info within the slop of the request image's stamp")
    return Frame(image, matched.messages["depth"], matched.messages["info"])


def latest_frame(
    latest_image: Any, latest_image_stamp: int | None, latest_set: MatchedSet | None, max_set_age: int
) -> Frame | None:
    """The newest synchronised set while it is recent enough, else the newest image in 2D (None:
    nothing received yet)."""
    if latest_set is not None and (
        latest_image_stamp is None or latest_image_stamp - latest_set.stamps["image"] <= max_set_age
    ):
        messages = latest_set.messages
        return Frame(messages["image"], messages["depth"], messages["info"])
    if latest_image is None:
        return None
    why = (
        "no depth/camera_info paired with the images yet (check both topics and their stamps)"
        if latest_set is None
        else "depth/camera_info stopped matching the images (newest set older than sync.max_set_age)"
    )
    return Frame(latest_image, why_2d=why)


def camera_and_depth(
    info_fields: dict[str, Any], depth_fields: tuple, width: int, height: int
) -> tuple[PinholeCamera | None, np.ndarray | None, str]:
    """The camera model for a width x height image and the depth in metres, or (None, None, reason).

    ``info_fields``: k, d, distortion_model, width, height of a camera_info; ``depth_fields``: the
    arguments of :func:`image_to_depth_m` (height, width, encoding, is_bigendian, step, data)."""
    try:
        camera = PinholeCamera.from_camera_info_fields(
            info_fields["k"],
            info_fields["d"],
            info_fields["distortion_model"],
            info_fields["width"],
            info_fields["height"],
        )
        if (camera.width, camera.height) != (width, height):
            camera = camera.scaled(width, height)
        depth = image_to_depth_m(*depth_fields)
    except (CameraModelError, ImageConversionError) as exc:
        return None, None, f"no 3D for this image (2D results still published): {exc}"
    return camera, depth, ""


class CameraFrames:
    """The grounding node's camera inputs: the newest image, the stamp synchroniser of image, depth
    and camera_info, and the recent synchronised sets; thread-safe (subscriptions and the service
    run on several executor threads)."""

    INPUTS = ("image", "depth", "info")

    def __init__(self, slop: int, queue_size: int, max_set_age: int) -> None:
        self.sync = ApproximateTimeSync(self.INPUTS, queue_size, slop)
        self.slop, self.max_set_age = slop, max_set_age
        self.sets: deque[MatchedSet] = deque(maxlen=queue_size)
        self.latest_image: Any = None
        self.latest_image_stamp: int | None = None
        self._lock = threading.Lock()

    def add(self, name: str, stamp: int, message: Any) -> None:
        """A message of one input (``image``, ``depth`` or ``info``) stamped ``stamp`` ns."""
        with self._lock:
            if name == "image":
                self.latest_image, self.latest_image_stamp = message, stamp
            self.sets.extend(self.sync.add(name, stamp, message))

    def latest(self) -> Frame | None:
        """:func:`latest_frame` of what arrived so far."""
        with self._lock:
            newest = self.sets[-1] if self.sets else None
            return latest_frame(self.latest_image, self.latest_image_stamp, newest, self.max_set_age)

    def for_request(self, image: Any, stamp: int) -> Frame:
        """:func:`frame_for_request_image` against the recent sets."""
        with self._lock:
            return frame_for_request_image(image, stamp, list(self.sets), self.slop)
