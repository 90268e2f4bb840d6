"""Pinhole camera geometry for lifting 2D grounding to 3D: intrinsics, depth sampling, transforms.

Why in core: the grounding node's 3D output must be right on real cameras, so the maths is tested here
without ROS. Conventions: pixel (u, v) = (column, row) with the ROS/OpenCV convention that integer
coordinates are pixel centres; the optical frame is x right, y down, z forward (REP 103 "_optical").

Distortion: ``plumb_bob`` / ``rational_polynomial`` coefficients are handled by undistorting the pixel
(iterative inversion of the OpenCV model) before back-projection; all-zero coefficients skip it. Other
models (e.g. ``equidistant``) are rejected with a clear error rather than silently ignored. Depth images
from RGB-D drivers are usually registered to the rectified colour image: then publish zero distortion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class CameraModelError(ValueError):
    """The CameraInfo cannot be used for back-projection; the message says why."""


SUPPORTED_DISTORTION = ("plumb_bob", "rational_polynomial", "")


@dataclass(frozen=True)
class PinholeCamera:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: tuple[float, ...] = field(default=())

    @classmethod
    def from_camera_info_fields(
        cls,
        k: list[float] | np.ndarray,
        d: list[float] | np.ndarray,
        distortion_model: str,
        width: int,
        height: int,
    ) -> PinholeCamera:
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9 or not np.all(np.isfinite(k)):
            raise CameraModelError("camera_info K must hold 9 finite numbers")
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        if fx <= 0 or fy <= 0:
            raise CameraModelError(
                "camera_info has no intrinsics (K is zero): calibrate the camera or publish its factory intrinsics"
            )
        if width <= 0 or height <= 0:
            raise CameraModelError(f"camera_info size {width}x{height} is empty")
        coeffs = tuple(float(x) for x in np.asarray(d, dtype=np.float64).reshape(-1))
        if any(coeffs):
            if distortion_model not in SUPPORTED_DISTORTION:
                raise CameraModelError(
                    f"distortion model '{distortion_model}' is not supported for 3D lifting; publish rectified "
                    f"images with zero distortion, or use one of {SUPPORTED_DISTORTION[:2]}"
                )
        else:
            coeffs = ()
        return cls(float(fx), float(fy), float(cx), float(cy), int(width), int(height), coeffs)

    def scaled(self, width: int, height: int) -> PinholeCamera:
        """The same camera for an image resized to width x height (e.g. depth at another resolution)."""
        sx, sy = width / self.width, height / self.height
        return PinholeCamera(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            width,
            height,
            self.distortion,
        )

    def undistort_normalized(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised image coordinates (x, y) of distorted pixels (OpenCV model, fixed-point iteration)."""
        xd = (np.asarray(u, dtype=np.float64) - self.cx) / self.fx
        yd = (np.asarray(v, dtype=np.float64) - self.cy) / self.fy
        if not self.distortion:
            return xd, yd
        c = list(self.distortion) + [0.0] * (8 - len(self.distortion))
        k1, k2, p1, p2, k3, k4, k5, k6 = c[:8]
        x, y = xd.copy(), yd.copy()
        for _ in range(20):
            r2 = x * x + y * y
            radial = (1 + ((k3 * r2 + k2) * r2 + k1) * r2) / (1 + ((k6 * r2 + k5) * r2 + k4) * r2)
            dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            x = (xd - dx) / radial
            y = (yd - dy) / radial
        return x, y

    def distort_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward OpenCV distortion of normalised coordinates to pixels (used to test the inverse)."""
        c = list(self.distortion) + [0.0] * (8 - len(self.distortion))
        k1, k2, p1, p2, k3, k4, k5, k6 = c[:8]
        r2 = x * x + y * y
        radial = (1 + ((k3 * r2 + k2) * r2 + k1) * r2) / (1 + ((k6 * r2 + k5) * r2 + k4) * r2)
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return xd * self.fx + self.cx, yd * self.fy + self.cy

    def back_project(self, u, v, depth) -> np.ndarray:
        """Pixels + depth (metres along z) -> points [..., 3] in the optical frame."""
        x, y = self.undistort_normalized(u, v)
        z = np.asarray(depth, dtype=np.float64)
        return np.stack([x * z, y * z, z], axis=-1)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Optical-frame points [..., 3] -> pixels [..., 2] (distortion applied when present)."""
        points = np.asarray(points, dtype=np.float64)
        x, y = points[..., 0] / points[..., 2], points[..., 1] / points[..., 2]
        if self.distortion:
            u, v = self.distort_pixel(x, y)
        else:
            u, v = x * self.fx + self.cx, y * self.fy + self.cy
        return np.stack([u, v], axis=-1)


def sample_depth(
    depth_m: np.ndarray, u: float, v: float, window: int = 5, max_depth: float = 10.0
) -> tuple[float, bool]:
    """Robust depth at pixel (u, v): the median of valid values in a (2*window+1)^2 patch.

    Invalid values (NaN, inf, <= 0, > max_depth) are ignored; returns (nan, False) when none is valid or
    the pixel lies outside the image. The median keeps object edges from averaging fore- and background.
    """
    height, width = depth_m.shape
    col, row = int(round(u)), int(round(v))
    if not (0 <= col < width and 0 <= row < height):
        return float("nan"), False
    patch = depth_m[max(0, row - window) : row + window + 1, max(0, col - window) : col + window + 1]
    valid = patch[np.isfinite(patch) & (patch > 0) & (patch <= max_depth)]
    if valid.size == 0:
        return float("nan"), False
    return float(np.median(valid)), True


def lift_pixels(
    camera: PinholeCamera, depth_m: np.ndarray, pixels: np.ndarray, window: int = 5, max_depth: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels [N, 2] (source-image coordinates) -> (points [N, 3] in the optical frame, valid [N]).

    The depth image may have another resolution than the colour image the pixels refer to: pixels are
    rescaled into it. A pixel without valid depth keeps its slot with NaN coordinates and valid=False
    (never dropped silently).
    """
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    dh, dw = depth_m.shape
    sx, sy = dw / camera.width, dh / camera.height
    points = np.full((len(pixels), 3), np.nan)
    valid = np.zeros(len(pixels), dtype=bool)
    for i, (u, v) in enumerate(pixels):
        z, ok = sample_depth(depth_m, (u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5, window, max_depth)
        if ok:
            points[i] = camera.back_project(u, v, z)
            valid[i] = True
    return points, valid


def pose_to_matrix(
    translation: list[float] | np.ndarray, quaternion_xyzw: list[float] | np.ndarray
) -> np.ndarray:
    """4x4 homogeneous transform from a translation and a unit quaternion (x, y, z, w)."""
    from .rotations import quaternion_to_matrix

    q = np.asarray(quaternion_xyzw, dtype=np.float64)
    if q.shape != (4,) or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-9:
        raise ValueError(f"quaternion must be 4 finite numbers with non-zero norm, got {q.tolist()}")
    transform = np.eye(4)
    transform[:3, :3] = quaternion_to_matrix(q)
    transform[:3, 3] = np.asarray(translation, dtype=np.float64)
    return transform


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points [N, 3] (NaN rows stay NaN)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points @ transform[:3, :3].T + transform[:3, 3]


@dataclass(frozen=True)
class Extrinsic3D:
    """Whether 3D grounding may be published, and in which frame (see :func:`decide_3d_frame`)."""

    publish_3d: bool
    frame: str  # frame of the 3D points ("" when publish_3d is false)
    transform: np.ndarray | None  # optical -> frame; None = the points stay in the optical frame
    source: str  # "camera" | "tf" | "static_extrinsic" | "" (refused)
    reason: str  # why 3D is refused ("" when published)


def decide_3d_frame(
    target_frame: str,
    camera_frame: str,
    tf_transform: np.ndarray | None = None,
    tf_error: str = "",
    static_extrinsic: list[float] | tuple[float, ...] | None = None,
) -> Extrinsic3D:
    """Decide where 3D grounding goes; never assume the camera sits at the robot base.

    No ``target_frame``: 3D in the camera's own optical frame (``camera_frame``). Otherwise the
    camera-to-target transform must come from TF (a hand-eye calibration published as a static TF) or an
    explicitly configured ``static_extrinsic`` (x y z qx qy qz qw); without either, 3D is refused with
    the reason (2D results are still published). A transform that is not a finite rigid motion is
    refused too.
    """
    if not target_frame or target_frame == camera_frame:
        return Extrinsic3D(True, camera_frame, None, "camera", "")
    transform, source = None, ""
    if tf_transform is not None:
        transform, source = np.asarray(tf_transform, dtype=np.float64), "tf"
    elif static_extrinsic is not None and len(static_extrinsic) > 0:
        values = [float(v) for v in static_extrinsic]
        if len(values) != 7:
            return Extrinsic3D(
                False, "", None, "", f"static_extrinsic needs 7 values (x y z qx qy qz qw), got {len(values)}"
            )
        try:
            transform, source = pose_to_matrix(values[:3], values[3:]), "static_extrinsic"
        except ValueError as exc:
            return Extrinsic3D(False, "", None, "", f"static_extrinsic: {exc}")
    if transform is None:
        why = f" ({tf_error})" if tf_error else ""
        return Extrinsic3D(
            False,
            "",
            None,
            "",
            f"no transform {camera_frame or '<camera>'} -> {target_frame}{why}: 3D output refused (2D still "
            "published). Publish the hand-eye calibration as a static TF (launch argument calibration:=<file>) "
            "or set static_extrinsic",
        )
    rotation = transform[:3, :3]
    rigid = (
        transform.shape == (4, 4)
        and np.isfinite(transform).all()
        and np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
        and abs(np.linalg.det(rotation) - 1.0) < 1e-6
    )
    if not rigid:
        return Extrinsic3D(
            False, "", None, "", f"the {source} transform is not a rigid motion: 3D output refused"
        )
    return Extrinsic3D(True, target_frame, transform, source, "")
