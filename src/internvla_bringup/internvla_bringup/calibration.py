"""Hand-eye calibration files -> the static TF between the robot and the camera.

Real launch files take ``calibration:=<file>``: an easy_handeye2 result (``parameters`` with
``calibration_type``, ``robot_base_frame``, ``robot_effector_frame``, ``tracking_base_frame``;
``transform`` with ``translation`` x y z [m] and ``rotation`` x y z w). Eye-on-base: the transform is
the camera (tracking_base_frame) in the robot base frame; eye-in-hand: in the effector frame. The
bringup publishes it with tf2_ros' ``static_transform_publisher``; without it the grounding node
refuses 3D output (``internvla_core.camera.decide_3d_frame``). Examples: ``config/calibration/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StaticTransform:
    parent: str
    child: str
    translation: tuple[float, float, float]
    rotation: tuple[float, float, float, float]  # x y z w, unit norm

    def arguments(self) -> list[str]:
        """static_transform_publisher's arguments (the named form of Humble and later)."""
        x, y, z = (repr(v) for v in self.translation)
        qx, qy, qz, qw = (repr(v) for v in self.rotation)
        return [
            "--x", x, "--y", y, "--z", z,
            "--qx", qx, "--qy", qy, "--qz", qz, "--qw", qw,
            "--frame-id", self.parent, "--child-frame-id", self.child,
        ]  # fmt: skip


def load_calibration(path: str | Path) -> StaticTransform:
    """The static transform in an easy_handeye2 calibration file (ValueError says what is wrong)."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"calibration file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
        params, transform = data["parameters"], data["transform"]
        kind = params.get("calibration_type", "eye_on_base")
        if kind not in ("eye_on_base", "eye_in_hand"):
            raise ValueError(f"calibration_type must be eye_on_base or eye_in_hand, got '{kind}'")
        parent = params["robot_base_frame" if kind == "eye_on_base" else "robot_effector_frame"]
        child = params["tracking_base_frame"]
        t, r = transform["translation"], transform["rotation"]
        translation = tuple(float(t[k]) for k in "xyz")
        rotation = tuple(float(r[k]) for k in "xyzw")
    except (KeyError, TypeError, yaml.YAMLError) as exc:
        raise ValueError(
            f"calibration file {path}: expected easy_handeye2's parameters.{{calibration_type, "
            f"robot_base_frame, robot_effector_frame, tracking_base_frame}} and transform.{{translation, "
            f"rotation}} ({type(exc).__name__}: {exc})"
        ) from None
    if not parent or not child or parent == child:
        raise ValueError(f"calibration file {path}: parent '{parent}' and child '{child}' must be two frames")
    if not all(math.isfinite(v) for v in translation + rotation):
        raise ValueError(f"calibration file {path}: non-finite numbers")
    norm = math.sqrt(sum(v * v for v in rotation))
    if abs(norm - 1.0) > 1e-3:
        raise ValueError(f"calibration file {path}: rotation is not a unit quaternion (norm {norm:.4f})")
    return StaticTransform(str(parent), str(child), translation, tuple(v / norm for v in rotation))
