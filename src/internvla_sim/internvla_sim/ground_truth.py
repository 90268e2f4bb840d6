"""Per-frame grounding ground truth projected from simulator geometry onto the third-person camera.

What each frame gets (``internvla_learning.episode.GroundingLabels``):

- the 2-D boxes of the target object and of the container (for ``move_next_to``: the reference object),
  occlusion-aware: a segmentation render gives the object's visible pixels; ``visible`` = visible pixels
  / area of its full silhouette (the convex hull of its projected primitives: exact for boxes, cylinders
  and spheres), so 0 when hidden or out of view, 1 when fully seen. The box is the visible pixels' extent
  when any is seen; the clipped extent of the full silhouette when the object is hidden but inside the
  image; NaN when it is entirely outside the image;
- the grasp point (the target's centre) and the place point (where the task wants the target's centre:
  the container's floor, the spot next to the reference, the push goal; NaN for ``pick``);
- the trace: the TCP's measured path from this frame to the end of the episode, projected and resampled
  to :data:`TRACE_POINTS` points equally spaced along its length in the image;
- the answers in the JSON format ``internvla_core.grounding`` parses (model input size = image size).

Other cameras (the wrist camera, which moves with the hand) get :class:`ViewRecorder`'s smaller set
(``internvla_learning.episode.ViewLabels``): the target's occlusion-aware box and visibility, as above,
and the TCP's image point, each projected with that frame's camera pose.

Pixel convention: continuous coordinates, origin at the image's top-left corner, pixel (i, j) covering
[i, i+1) x [j, j+1) (the convention of Qwen2.5-VL answers: a box scales with the image). ``SimEnv``'s
intrinsics put pixel centres at integers, so projected points are shifted by +0.5 here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRACE_POINTS = 8
_CIRCLE = 16  # points per circle when sampling a cylinder's rims
_SPHERE = 96  # points on a sphere


def project(points: np.ndarray, k: np.ndarray, camera_pose: np.ndarray) -> np.ndarray:
    """Base-frame points [N, 3] -> pixels [N, 2] (convention above); NaN for points behind the camera."""
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    inverse = np.linalg.inv(camera_pose)
    cam = points @ inverse[:3, :3].T + inverse[:3, 3]
    z = cam[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam[:, :2] / z) * [k[0, 0], k[1, 1]] + [k[0, 2], k[1, 2]] + 0.5
    uv[z[:, 0] <= 1e-6] = np.nan
    return uv


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)


def geom_surface_points(model, data, geom: int) -> np.ndarray:
    """World points whose convex hull is the geom (box corners, cylinder rims, sphere samples)."""
    import mujoco

    size = model.geom_size[geom]
    kind = model.geom_type[geom]
    if kind == mujoco.mjtGeom.mjGEOM_BOX:
        local = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size
    elif kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
        a = np.linspace(0, 2 * np.pi, _CIRCLE, endpoint=False)
        ring = np.stack([np.cos(a) * size[0], np.sin(a) * size[0]], axis=1)
        local = np.concatenate(
            [np.c_[ring, np.full(_CIRCLE, -size[1])], np.c_[ring, np.full(_CIRCLE, size[1])]]
        )
    elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
        local = _fibonacci_sphere(_SPHERE) * size[0]
    else:  # other geoms: their bounding box
        centre, half = model.geom_aabb[geom, :3], model.geom_aabb[geom, 3:]
        local = centre + np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * half
    return local @ data.geom_xmat[geom].reshape(3, 3).T + data.geom_xpos[geom]


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise hull of 2-D points (Andrew's monotone chain); finite points only."""
    pts = points[np.all(np.isfinite(points), axis=1)]
    pts = np.unique(pts, axis=0)
    if len(pts) < 3:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def polygon_area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def visible_box(
    segmentation: np.ndarray, geoms: list[int], silhouette: np.ndarray
) -> tuple[np.ndarray, float]:
    """(box [x1, y1, x2, y2], visible fraction) of an object from a geom-id segmentation image and its
    full silhouette polygon (pixels)."""
    height, width = segmentation.shape
    mask = np.isin(segmentation, geoms)
    seen = int(mask.sum())
    area = polygon_area(silhouette)
    visible = float(min(1.0, seen / area)) if area > 0 else (1.0 if seen else 0.0)
    if seen:
        rows, cols = np.nonzero(mask)
        return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=np.float64), visible
    if len(silhouette) == 0:
        return np.full(4, np.nan), 0.0
    lo, hi = silhouette.min(axis=0), silhouette.max(axis=0)
    lo, hi = np.maximum(lo, 0.0), np.minimum(hi, [width, height])
    if np.any(hi <= lo):  # entirely outside the image
        return np.full(4, np.nan), 0.0
    return np.array([lo[0], lo[1], hi[0], hi[1]]), 0.0


def resample_path(points: np.ndarray, k: int = TRACE_POINTS) -> np.ndarray:
    """``k`` points equally spaced along the polyline ``points`` [N, 2] (its ends included)."""
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) == 0:
        return np.full((k, 2), np.nan)
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    length = np.concatenate([[0.0], np.cumsum(steps)])
    if length[-1] <= 1e-9:
        return np.repeat(points[:1], k, axis=0)
    at = np.linspace(0.0, length[-1], k)
    return np.stack([np.interp(at, length, points[:, 0]), np.interp(at, length, points[:, 1])], axis=1)


@dataclass
class GroundTruthRecorder:
    """Call :meth:`observe` once per frame (before the frame's command); :meth:`labels` at the end."""

    env: object  # SimEnv
    camera: str = "third_person"
    target_box: list = field(default_factory=list)
    target_visible: list = field(default_factory=list)
    container_box: list = field(default_factory=list)
    container_visible: list = field(default_factory=list)
    target_xyz: list = field(default_factory=list)
    tcp_xyz: list = field(default_factory=list)

    def __post_init__(self) -> None:
        env = self.env
        self.k = env.camera_intrinsics(self.camera)
        self.target = env.task.target
        self.container = env.task.container
        self.geoms = {name: env.body_geoms(name) for name in (self.target, self.container) if name}

    def silhouette(self, name: str) -> np.ndarray:
        """The full (unoccluded) silhouette polygon of a body in pixels."""
        env = self.env
        world_to_base = env.world_to_base()
        points = np.concatenate([geom_surface_points(env.model, env.data, g) for g in self.geoms[name]])
        points = points @ world_to_base[:3, :3].T + world_to_base[:3, 3]
        return convex_hull(project(points, self.k, env.camera_pose(self.camera)))

    def observe(self, segmentation: np.ndarray | None = None) -> None:
        env = self.env
        if segmentation is None:
            segmentation = env.render(self.camera, segmentation=True)
        box, visible = visible_box(segmentation, self.geoms[self.target], self.silhouette(self.target))
        self.target_box.append(box)
        self.target_visible.append(visible)
        if self.container:
            box, visible = visible_box(
                segmentation, self.geoms[self.container], self.silhouette(self.container)
            )
        else:
            box, visible = np.full(4, np.nan), 0.0
        self.container_box.append(box)
        self.container_visible.append(visible)
        self.target_xyz.append(env.object_positions()[self.target])
        self.tcp_xyz.append(env.tcp_position())

    def labels(self, k_points: int = TRACE_POINTS):
        """The episode's ``GroundingLabels`` (answers in source pixels, model input size = image size)."""
        from internvla_learning.episode import GroundingLabels

        from internvla_core.grounding import format_grounding_answer

        env = self.env
        task = env.task
        spec = next(c for c in env.cameras if c.name == self.camera)
        size = (spec.width, spec.height)
        pose = env.camera_pose(self.camera)
        n = len(self.target_xyz)
        grasp = project(np.array(self.target_xyz), self.k, pose)
        if task.place_xyz is not None:
            place = np.repeat(project(np.array(task.place_xyz), self.k, pose), n, axis=0)
        else:
            place = np.full((n, 2), np.nan)
        path = project(np.array(self.tcp_xyz), self.k, pose)
        trace = np.stack([resample_path(path[t:], k_points) for t in range(n)])
        target_box = np.array(self.target_box)
        words = task.descriptions[self.target]
        return GroundingLabels(
            target_box=target_box.astype(np.float32),
            target_visible=np.array(self.target_visible, dtype=np.float32),
            container_box=np.array(self.container_box, dtype=np.float32),
            container_visible=np.array(self.container_visible, dtype=np.float32),
            grasp_point=grasp.astype(np.float32),
            place_point=place.astype(np.float32),
            trace=trace.astype(np.float32),
            box_answer=[format_grounding_answer("box", b, words, size, size) for b in target_box],
            point_answer=[format_grounding_answer("point", p, words, size, size) for p in grasp],
            trace_answer=[format_grounding_answer("trace", tr, task.instruction, size, size) for tr in trace],
        )


@dataclass
class ViewRecorder:
    """Per-frame labels of a camera other than the annotation camera, e.g. the wrist camera.

    Why: a policy that sees the wrist view as well can only use it once its vision encoder has learned
    where the target is in that view (stage 0 trains on these labels). A wrist camera moves every frame,
    so each frame is projected with that frame's camera pose, at :meth:`observe` time."""

    env: object  # SimEnv
    camera: str
    target_box: list = field(default_factory=list)
    target_visible: list = field(default_factory=list)
    gripper_point: list = field(default_factory=list)

    def __post_init__(self) -> None:
        env = self.env
        self.k = env.camera_intrinsics(self.camera)
        self.target = env.task.target
        self.geoms = env.body_geoms(self.target)

    def observe(self, segmentation: np.ndarray | None = None) -> None:
        env = self.env
        if segmentation is None:
            segmentation = env.render(self.camera, segmentation=True)
        pose = env.camera_pose(self.camera)
        world_to_base = env.world_to_base()
        points = np.concatenate([geom_surface_points(env.model, env.data, g) for g in self.geoms])
        points = points @ world_to_base[:3, :3].T + world_to_base[:3, 3]
        box, visible = visible_box(segmentation, self.geoms, convex_hull(project(points, self.k, pose)))
        self.target_box.append(box)
        self.target_visible.append(visible)
        self.gripper_point.append(project(np.asarray(env.tcp_position())[None], self.k, pose)[0])

    def labels(self):
        """The episode's ``ViewLabels`` for this camera."""
        from internvla_learning.episode import ViewLabels

        return ViewLabels(
            target_box=np.array(self.target_box, dtype=np.float32),
            target_visible=np.array(self.target_visible, dtype=np.float32),
            gripper_point=np.array(self.gripper_point, dtype=np.float32),
        )
