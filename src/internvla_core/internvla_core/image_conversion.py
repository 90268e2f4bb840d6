"""sensor_msgs/Image <-> numpy without cv_bridge (which PyPI does not have for ROS 2).

The functions take and return the message's *fields* (height, width, encoding, is_bigendian, step,
data), so they are tested here without ROS; nodes pass ``msg.height, msg.width, ...``. Colour comes
out as RGB uint8 (what the model expects), depth as float32 metres with invalid pixels as NaN.

Handled: rgb8, bgr8, rgba8, bgra8, mono8, mono16, 16UC1, 32FC1 (and the aliases 8UC1, 8UC3, 8UC4);
row padding (``step`` > width * bytes per pixel); big-endian 16/32-bit data. Anything else, a size
that does not match the data, or an empty image raises ``ImageConversionError`` with what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ImageConversionError(ValueError):
    """The image message cannot be converted; the message says why and what to change."""


@dataclass(frozen=True)
class _Layout:
    channels: int
    dtype: str  # numpy dtype without byte order
    itemsize: int


_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, "u1", 1),
    "bgr8": _Layout(3, "u1", 1),
    "rgba8": _Layout(4, "u1", 1),
    "bgra8": _Layout(4, "u1", 1),
    "mono8": _Layout(1, "u1", 1),
    "8UC1": _Layout(1, "u1", 1),
    "8UC3": _Layout(3, "u1", 1),
    "8UC4": _Layout(4, "u1", 1),
    "mono16": _Layout(1, "u2", 2),
    "16UC1": _Layout(1, "u2", 2),
    "32FC1": _Layout(1, "f4", 4),
}
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "8UC3", "8UC4", "mono16")
DEPTH_ENCODINGS = ("16UC1", "32FC1", "mono16")


def supported_encodings() -> tuple[str, ...]:
    return tuple(_LAYOUTS)


def image_to_array(
    height: int, width: int, encoding: str, is_bigendian: bool | int, step: int, data
) -> np.ndarray:
    """The message's pixels as an array [H, W] or [H, W, C] in native byte order (a copy-free view when possible)."""
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise ImageConversionError(
            f"unsupported image encoding '{encoding}'; supported: {', '.join(_LAYOUTS)} "
            "(configure the camera driver to publish one of them)"
        )
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"empty image ({width}x{height}): the camera published no pixels")
    row_bytes = width * layout.channels * layout.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than width*channels*bytes = {row_bytes} for {encoding} {width}x{height}"
        )
    raw = (
        np.frombuffer(data, dtype=np.uint8)
        if not isinstance(data, np.ndarray)
        else data.view(np.uint8).ravel()
    )
    if raw.size != step * height:
        raise ImageConversionError(
            f"data has {raw.size} bytes but {encoding} {width}x{height} with step {step} needs {step * height}"
        )
    rows = raw.reshape(height, step)[:, :row_bytes]
    wire = np.dtype((">" if is_bigendian else "<") + layout.dtype)
    pixels = np.ascontiguousarray(rows).view(wire).reshape(height, width, layout.channels)
    pixels = pixels.astype(np.dtype("=" + layout.dtype), copy=False)  # to native byte order
    return pixels[:, :, 0] if layout.channels == 1 else pixels


def image_to_rgb(
    height: int, width: int, encoding: str, is_bigendian: bool | int, step: int, data
) -> np.ndarray:
    """Any supported colour (or mono) encoding -> [H, W, 3] uint8 RGB."""
    if encoding in ("16UC1", "32FC1"):
        raise ImageConversionError(
            f"'{encoding}' is a depth encoding; subscribe the colour topic for the model"
        )
    pixels = image_to_array(height, width, encoding, is_bigendian, step, data)
    if encoding == "mono16":
        pixels = (pixels >> 8).astype(np.uint8)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        try:  # OpenCV's channel swap is ~10x faster than numpy's strided copy (~0.1 vs 1 ms at 640x480)
            import cv2

            return cv2.cvtColor(
                np.ascontiguousarray(pixels), cv2.COLOR_BGR2RGB if encoding == "bgr8" else cv2.COLOR_BGRA2RGB
            )
        except ImportError:
            return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def image_to_depth_m(
    height: int, width: int, encoding: str, is_bigendian: bool | int, step: int, data
) -> np.ndarray:
    """Depth image -> [H, W] float32 metres; 0, NaN and inf become NaN (invalid, never "0 m")."""
    if encoding not in DEPTH_ENCODINGS:
        raise ImageConversionError(
            f"depth encoding must be 16UC1 (millimetres) or 32FC1 (metres), got '{encoding}'"
        )
    pixels = image_to_array(height, width, encoding, is_bigendian, step, data)
    if encoding == "32FC1":
        depth = pixels.astype(np.float32, copy=True)
    else:
        depth = pixels.astype(np.float32) * np.float32(0.001)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def rgb_to_image_fields(rgb: np.ndarray) -> dict:
    """[H, W, 3] uint8 -> fields of an rgb8 image message (packed rows)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"expected an HxWx3 uint8 RGB array, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    return {
        "height": height,
        "width": width,
        "encoding": "rgb8",
        "is_bigendian": 0,
        "step": width * 3,
        "data": np.ascontiguousarray(rgb).tobytes(),
    }


def depth_to_image_fields(depth_m: np.ndarray) -> dict:
    """[H, W] float metres -> fields of a 32FC1 image message (little endian, packed)."""
    depth = np.ascontiguousarray(np.asarray(depth_m, dtype="<f4"))
    if depth.ndim != 2:
        raise ImageConversionError(f"expected an HxW depth array, got shape {depth.shape}")
    height, width = depth.shape
    return {
        "height": height,
        "width": width,
        "encoding": "32FC1",
        "is_bigendian": 0,
        "step": width * 4,
        "data": depth.tobytes(),
    }


def rotate_half_turn(image: np.ndarray) -> np.ndarray:
    """The image turned by 180 degrees (both axes flipped), contiguous for torch.

    For cameras mounted upside down (LIBERO renders its agent view this way and its client rotates
    it back): the model must see the scene the right way up."""
    return np.ascontiguousarray(image[::-1, ::-1])
