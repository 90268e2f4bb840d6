"""The in-memory episode every data source produces and every dataset writer consumes.

One contract between the simulation data engine (``internvla_sim.data_engine``), the ROS recording
converter (MCAP -> episode, ``internvla_learning.mcap_convert``) and the writers (LeRobot v3.0, the v2.1
layout upstream InternVLA-M1 trains from). Arrays are per frame, frame ``t`` being the observation at
``timestamps[t]`` and the action *commanded* after it. Why columns and not a list of frame objects: the
writers stream whole columns into parquet and whole image stacks into one MP4 encoder.

Conventions (they match what upstream's datasets and real-robot client use):

- ``action_ee_delta[t]`` = [dx, dy, dz, droll, dpitch, dyaw, gripper]: the delta between the commanded
  end-effector target of step t and that of step t-1 (the first step: relative to the measured pose at
  the start), in the embodiment's frame convention (``reference_frame`` "base": translation in base axes
  and sxyz Euler angles of ``R_t R_{t-1}^T``; "tool": the pose ``T_{t-1}^{-1} T_t``), metres and
  radians; gripper 1 open, 0 closed (the command, not the measured opening).
- ``action_joint[t]``: the absolute arm joint targets commanded at step t, then the gripper command.
- ``state_ee[t]`` = [x, y, z, roll, pitch, yaw, gripper_opening] measured, base frame, sxyz Euler.
- Grounding labels per frame are in the *source image* pixels of the camera named by
  ``annotation_camera`` (x right, y down); boxes [x1, y1, x2, y2]; NaN where the object is out of view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EE_DELTA_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
EE_STATE_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")


@dataclass
class GroundingLabels:
    """Ground truth for stage-1 (grounding) training, one row per frame.

    ``*_visible`` is the fraction of the object's projected pixels that are not occluded (0 = hidden or
    out of view, 1 = fully visible), computed from a segmentation render; the box is the visible
    silhouette's extent when ``visible > 0``. The ``*_answer`` strings are the model's expected answers
    in the exact JSON format :mod:`internvla_core.grounding` parses (one per frame, pixel coordinates of
    the source image).
    """

    target_box: np.ndarray  # [T, 4] float32
    target_visible: np.ndarray  # [T] float32, 0..1
    container_box: np.ndarray  # [T, 4] float32 (NaN rows when the task has no container)
    container_visible: np.ndarray  # [T] float32
    grasp_point: np.ndarray  # [T, 2] float32 pixel where the gripper should close
    place_point: np.ndarray  # [T, 2] float32 (NaN rows when the task places nothing)
    trace: np.ndarray  # [T, K, 2] float32: the end effector's future path (K points, resampled)
    box_answer: list[str]
    point_answer: list[str]
    trace_answer: list[str]


@dataclass
class ViewLabels:
    """Per-frame labels of a camera other than the annotation camera (e.g. the wrist camera), in that
    camera's source pixels: what stage 0 needs to teach the vision encoder that view too.

    ``target_box`` / ``target_visible`` as in :class:`GroundingLabels`; ``gripper_point`` is the TCP's
    projection (NaN when behind the camera; it may lie outside the image)."""

    target_box: np.ndarray  # [T, 4] float32
    target_visible: np.ndarray  # [T] float32, 0..1
    gripper_point: np.ndarray  # [T, 2] float32

    FIELDS = ("target_box", "target_visible", "gripper_point")


@dataclass
class Episode:
    robot: str  # "franka" | "widowx"
    embodiment: str  # internvla_core embodiment name, e.g. "franka_real", "widowx_bridge"
    reference_frame: str  # "base" | "tool": how action_ee_delta is expressed
    instruction: str
    task_template: str  # the family template id that produced it ("pick_green", "put_on/plate", ...)
    seed: int
    fps: float
    timestamps: np.ndarray  # [T] float64 seconds from the episode start
    images: dict[str, np.ndarray]  # camera key ("third_person", "wrist") -> uint8 [T, H, W, 3]
    joint_names: tuple[str, ...]
    state_joint: np.ndarray  # [T, n_arm] float32 measured arm joint positions
    state_ee: np.ndarray  # [T, 7] float32
    action_ee_delta: np.ndarray  # [T, 7] float32
    action_joint: np.ndarray  # [T, n_arm + 1] float32
    success: bool
    grounding: GroundingLabels | None = None
    annotation_camera: str = "third_person"
    metadata: dict = field(default_factory=dict)  # free-form, JSON-serialisable (layout, objects, ...)
    view_labels: dict[str, ViewLabels] = field(
        default_factory=dict
    )  # camera -> labels (not the annotation's)

    @property
    def length(self) -> int:
        return int(self.timestamps.shape[0])

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field (lengths, shapes, NaN in state/actions)."""
        n = self.length
        if n == 0:
            raise ValueError("episode has no frames")
        columns = {
            "state_joint": self.state_joint,
            "state_ee": self.state_ee,
            "action_ee_delta": self.action_ee_delta,
            "action_joint": self.action_joint,
            **{f"images[{k}]": v for k, v in self.images.items()},
        }
        for name, value in columns.items():
            if value.shape[0] != n:
                raise ValueError(f"{name} has {value.shape[0]} rows, timestamps has {n}")
        for name in ("state_joint", "state_ee", "action_ee_delta", "action_joint"):
            if not np.all(np.isfinite(columns[name])):
                row = int(np.argwhere(~np.isfinite(columns[name]))[0][0])
                raise ValueError(f"{name} has NaN or inf at frame {row}")
        if self.state_ee.shape[1] != 7 or self.action_ee_delta.shape[1] != 7:
            raise ValueError("state_ee and action_ee_delta must have 7 columns (xyz, rpy, gripper)")
        if self.action_joint.shape[1] != len(self.joint_names) + 1:
            raise ValueError("action_joint must hold one column per arm joint plus the gripper")
        if np.any(np.diff(self.timestamps) <= 0):
            raise ValueError("timestamps must increase strictly")
        for camera, labels in self.view_labels.items():
            if camera not in self.images or camera == self.annotation_camera:
                raise ValueError(
                    f"view_labels[{camera}]: not a recorded camera other than the annotation camera"
                )
            for name in ViewLabels.FIELDS:
                if len(getattr(labels, name)) != n:
                    raise ValueError(
                        f"view_labels[{camera}].{name} has {len(getattr(labels, name))} rows, timestamps has {n}"
                    )
        for key, stack in self.images.items():
            if stack.dtype != np.uint8 or stack.ndim != 4 or stack.shape[3] != 3:
                raise ValueError(f"images[{key}] must be uint8 [T, H, W, 3], got {stack.dtype} {stack.shape}")


def save_episode(episode: Episode, path) -> None:
    """Write one episode to ``path`` (.npz) atomically: a crash never leaves a half-written file.

    This is the staging format of the data engine (one file per finished episode, so an interrupted
    generation resumes by listing the files) and of the MCAP converter's tests; datasets are written
    from it by the LeRobot writers.
    """
    import json
    import os
    from pathlib import Path

    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "timestamps": episode.timestamps,
        "state_joint": episode.state_joint,
        "state_ee": episode.state_ee,
        "action_ee_delta": episode.action_ee_delta,
        "action_joint": episode.action_joint,
    }
    for key, stack in episode.images.items():
        arrays[f"image__{key}"] = stack
    header = {
        "robot": episode.robot,
        "embodiment": episode.embodiment,
        "reference_frame": episode.reference_frame,
        "instruction": episode.instruction,
        "task_template": episode.task_template,
        "seed": episode.seed,
        "fps": episode.fps,
        "joint_names": list(episode.joint_names),
        "success": episode.success,
        "annotation_camera": episode.annotation_camera,
        "metadata": episode.metadata,
        "has_grounding": episode.grounding is not None,
    }
    if episode.grounding is not None:
        g = episode.grounding
        for name in ("target_box", "target_visible", "container_box", "container_visible", "grasp_point",
                     "place_point", "trace"):  # fmt: skip
            arrays[f"grounding__{name}"] = getattr(g, name)
        header["grounding_answers"] = {
            "box_answer": g.box_answer,
            "point_answer": g.point_answer,
            "trace_answer": g.trace_answer,
        }
    for camera, labels in episode.view_labels.items():
        for name in ViewLabels.FIELDS:
            arrays[f"view__{camera}__{name}"] = getattr(labels, name)
    arrays["header_json"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as stream:
        np.savez(stream, **arrays)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)


def load_episode(path) -> Episode:
    """Read an episode written by :func:`save_episode`."""
    import json

    with np.load(path, allow_pickle=False) as data:
        header = json.loads(bytes(data["header_json"]).decode())
        images = {k.split("__", 1)[1]: data[k] for k in data.files if k.startswith("image__")}
        grounding = None
        if header["has_grounding"]:
            answers = header["grounding_answers"]
            grounding = GroundingLabels(
                **{k.split("__", 1)[1]: data[k] for k in data.files if k.startswith("grounding__")}, **answers
            )
        views: dict[str, dict[str, np.ndarray]] = {}
        for key in data.files:
            if key.startswith("view__"):
                _, camera, name = key.split("__", 2)
                views.setdefault(camera, {})[name] = data[key]
        return Episode(
            robot=header["robot"],
            embodiment=header["embodiment"],
            reference_frame=header["reference_frame"],
            instruction=header["instruction"],
            task_template=header["task_template"],
            seed=int(header["seed"]),
            fps=float(header["fps"]),
            timestamps=data["timestamps"],
            images=images,
            joint_names=tuple(header["joint_names"]),
            state_joint=data["state_joint"],
            state_ee=data["state_ee"],
            action_ee_delta=data["action_ee_delta"],
            action_joint=data["action_joint"],
            success=bool(header["success"]),
            grounding=grounding,
            annotation_camera=header["annotation_camera"],
            metadata=header["metadata"],
            view_labels={camera: ViewLabels(**fields) for camera, fields in views.items()},
        )
