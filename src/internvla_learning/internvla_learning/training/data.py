"""Training data for InternVLA-M1: frames, normalised action chunks and grounding question-answer pairs.

Read once into memory (toy and small datasets; the frames are stored already resized):

- views for the VLM: every camera frame resized with PIL's default resample to the model's
  ``datasets.vla_data.image_size`` (what ``InternVLAM1.resize_views`` does at inference), then to Qwen's
  multiple-of-28 size (``qwen_fetch_image``); views for DINO: the VLM-size view resized with PIL bilinear to
  DINO's 224 short side (``DinoEncoder.preprocess``). A step then only runs the batched tensor
  preprocessing (``pixels_from_tensor`` / ``preprocess_tensor``), equal to the per-image path.
- actions: q01/q99 normalisation in upstream's form (``clamp(2(x-q01)/(q99-q01)-1, -1, 1)`` where the mask
  is true; the gripper, mask false, binarised ``x > 0.5``), statistics from the dataset
  (:func:`internvla_learning.statistics.m1_statistics`); one chunk of the model's horizon T starting at
  every frame, padded with the episode's last action past its end (upstream's ``first_last`` padding).
- grounding QA (stage 1 and the co-training loss): for each frame and kind (box, point, trace) with a
  non-empty answer, the question :func:`internvla_core.grounding.grounding_prompt` (target: the answer's
  label, the instruction for traces) and the answer re-formatted for the VLM input size
  (:func:`internvla_core.grounding.format_grounding_answer`).

Only the LeRobot v3.0 layout is read (:class:`internvla_learning.lerobot_read.LeRobotV3Reader`); the v2.1
layout upstream trains from is refused with a message (write v3.0 with ``internvla-write-dataset``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..episode import EE_DELTA_NAMES
from ..lerobot_v3 import ACTION, ACTION_JOINTS, GROUNDING_STRINGS, IMAGE_PREFIX, STATE, STATE_JOINTS
from ..statistics import RunningStats, m1_statistics

GROUNDING_KINDS = ("box", "point", "trace")
ANSWER_COLUMN = {
    "box": "annotation.box_answer",
    "point": "annotation.point_answer",
    "trace": "annotation.trace_answer",
}


# A pause frame (see pause_frames): the commanded target moves less than this (6-D delta norm, m and rad) ...
PAUSE_ACTION_NORM = 1e-4
# ... and, until the next frame, the measured TCP moves less than this [m] and the fingers less than this
# (opening 0..1): the arm is at rest and so is the picture
PAUSE_TCP_MOTION = 1e-3
PAUSE_FINGER_MOTION = 0.005
# A settle frame (pause_frames' "settle"): the command moves the target less than this (6-D delta norm) with
# the gripper command unchanged, whether or not the arm is still moving. The expert's moves end with such
# frames: zero commands while the arm sinks into place, then corrections against the sag of about 5, 3 and
# 1 mm. Its travel steps command 1.5-2.5 cm. The first correction stays: without it the push sags, and the
# expert's pushes replayed open loop through the graph fail 5 of 20 (20 of 20 at 3 mm; TRAINING.md,
# thirteenth round)
SETTLE_ACTION_NORM = 0.003
PAUSE_KINDS = ("all", "grasp", "settle", "carry")  # what --drop-pauses leaves out (pause_frames' ``which``)


class DatasetError(ValueError):
    """The dataset cannot be used to train this model (the message says why and what to do)."""


@dataclass
class QAPair:
    frame: int  # index into TrainingData frames
    kind: str
    question: str
    answer: str


@dataclass
class TrainingData:
    root: Path
    cameras: tuple[str, ...]
    annotation_camera: str
    embodiment: str
    unnorm_key: str
    statistics: dict  # {unnorm_key: upstream's statistics entry}
    instructions: list[str]
    vlm_views: np.ndarray  # uint8 [N, V, h, w, 3] at Qwen's input size
    dino_views: np.ndarray  # uint8 [N, V, H, W, 3] at DINO's input size
    chunks: np.ndarray  # float32 [N, T, A] normalised
    episode_index: np.ndarray  # [N]
    qa: list[QAPair] = field(default_factory=list)
    # float32 [N, 4] the task target's box (x1, y1, x2, y2) in [0, 1] of the annotation camera, NaN where it
    # is out of view or the dataset has no grounding labels: the target of --spatial-aux-weight
    target_boxes: np.ndarray | None = None
    # float32 [N, 2] the gripper's (TCP's) image point in [0, 1] of the annotation camera (the first point of
    # the grounding trace), NaN where unknown: a stage-0 (vision pre-training) target
    gripper_points: np.ndarray | None = None
    # float32 [N, 2] the gripper's measured height (state_ee z, base frame [m]) and opening (state_ee gripper):
    # what the third-person image shows of the phase (above the block or at it, open or holding)
    gripper_states: np.ndarray | None = None
    # camera -> float32 [N, 4] / [N, 2]: the same two labels for every training camera (the annotation
    # camera's from its grounding, the others' from Episode.view_labels; all NaN where the dataset has none)
    view_target_boxes: dict[str, np.ndarray] = field(default_factory=dict)
    view_gripper_points: dict[str, np.ndarray] = field(default_factory=dict)
    # float32 [N, 4] the container's box (the plate of a put_on task) in [0, 1] of the annotation camera,
    # NaN where it is hidden or the task has none: where to go once the target is held (stage 0's
    # to_container map, --spatial-aux-container)
    container_boxes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.instructions)

    @property
    def vlm_input_size(self) -> tuple[int, int]:
        return int(self.vlm_views.shape[3]), int(self.vlm_views.shape[2])  # (w, h)

    def release_images(self, keep_dino: bool = False) -> None:
        """Drop the frames (the bulk of the memory) once frozen features replace them; later use of the
        views raises instead of silently training on nothing. ``keep_dino``: DINO still learns from its
        frames (``--train-dino``)."""
        # an empty copy, not the slice [:0]: a slice is a view that keeps the whole array alive (it did:
        # a stage-2 run on 700 two-view episodes held 14 GB of frames it never read again)
        self.vlm_views = np.empty((0, *self.vlm_views.shape[1:]), self.vlm_views.dtype)
        if not keep_dino:
            self.dino_views = np.empty((0, *self.dino_views.shape[1:]), self.dino_views.dtype)

    def fingerprint(self) -> str:
        """A hash of the frames and instructions (the feature cache's key). The frames are fed in blocks of
        rows: the digest is that of the whole byte string, without a second copy of every frame in memory."""
        import hashlib

        h = hashlib.sha256()
        for arr in (self.vlm_views, self.dino_views):
            for start in range(0, len(arr), 256):
                h.update(np.ascontiguousarray(arr[start : start + 256]).data)
        h.update(json.dumps(self.instructions).encode())
        return h.hexdigest()[:16]


def vlm_view(frame: np.ndarray, image_size: tuple[int, int] | None) -> Image.Image:
    from internvla_core.model.vlm import qwen_fetch_image

    image = Image.fromarray(frame)
    if image_size:
        image = image.resize(tuple(image_size))
    return qwen_fetch_image(image)


def dino_view(view: Image.Image) -> Image.Image:
    from internvla_core.model.dino import DinoEncoder

    size = DinoEncoder.resized_size(*view.size)
    return view if size == view.size else view.resize(size, Image.BILINEAR)


def chunk_indices(length: int, horizon: int) -> np.ndarray:
    """[length, horizon] frame indices t..t+T-1, clipped to the last frame (upstream's end padding)."""
    idx = np.arange(length)[:, None] + np.arange(horizon)[None, :]
    return np.minimum(idx, length - 1)


def _inside(idle: np.ndarray) -> np.ndarray:
    """``idle`` without its trailing run: once the task is done, staying put is the demonstration."""
    idle = idle.copy()
    end = len(idle)
    while end > 0 and idle[end - 1]:
        end -= 1
    idle[end:] = False
    return idle


def _carrying(motion: np.ndarray, opened: np.ndarray, same_grip: np.ndarray) -> np.ndarray:
    """[T] bool: the gripper is commanded closed and the arm has been commanded to move (at least
    ``SETTLE_ACTION_NORM``) after the frame that closed it: the target is on its way, past the hold at the
    grasp. (The expert's close frame can carry a last correction of the descent, which is not a carry.)"""
    carrying = np.zeros(len(motion), dtype=bool)
    moved = False
    for t, is_open in enumerate(opened):
        moved = not is_open and (moved or (same_grip[t] and motion[t] >= SETTLE_ACTION_NORM))
        carrying[t] = moved
    return carrying


def pause_frames(actions: np.ndarray, state_ee: np.ndarray, which: str = "all") -> np.ndarray:
    """[T] bool: the frames of ``actions`` [T, 7] (EE delta + gripper) that are pauses inside the episode.

    A pause frame commands no motion (6-D delta below ``PAUSE_ACTION_NORM``) and the same gripper command as
    the frame before, while the arm and the fingers are at rest (``state_ee`` [T, 7]: measured x, y, z, ...,
    opening; below ``PAUSE_TCP_MOTION`` / ``PAUSE_FINGER_MOTION`` until the next frame). The scripted expert
    holds still for a fixed number of steps after closing the gripper and after each move settles; those
    frames are the same picture with different labels ("hold 3 more steps", "hold 2 more", ..., "lift"), so
    a policy that sees no time cannot know when the hold ends and, re-queried every step, holds for ever
    (TRAINING.md, eighth round: half the seventh round's failures closed on the block and never lifted).
    Upstream trains LIBERO from "no_noops" datasets for the same reason. The trailing run of still frames
    (the task is done: stay) is not a pause and is kept.

    ``which``: ``"all"`` every pause; ``"grasp"`` only the hold with the gripper closed, after its first
    still frame: the hold after a grasp shrinks to one step (the other pauses stay). Both removed the trap
    and both lowered success on pick_green (TRAINING.md, eighth round): without the settled frames at grasp
    height the policy seldom closed, and with the hold shortened its closes flickered open again.
    ``"settle"``: every frame that commands less than ``SETTLE_ACTION_NORM`` of motion with an unchanged
    gripper command, the arm at rest or not: the end of each of the expert's moves (the zero commands
    while the arm sinks into place and the smallest corrections after them), where a push policy stopped for
    good, at the waypoint above the push and at its start (TRAINING.md, thirteenth round). It drops the
    hold before a close as well, so it suits tasks without a grasp.
    ``"carry"``: ``"grasp"``'s frames and, while the gripper holds the target, the ``"settle"`` frames after
    the first move since the close: the ends of the lift, of the travel to the container and of the descent
    onto it, the waypoints where a push policy stopped. The hold at the grasp keeps ``"grasp"``'s rule and
    the approach keeps its settled frames, which a pick needs. For put-on tasks (red_on_plate).
    """
    if which not in PAUSE_KINDS:
        raise ValueError(f"which must be one of {PAUSE_KINDS}, not {which!r}")
    actions = np.asarray(actions, dtype=np.float64)
    state = np.asarray(state_ee, dtype=np.float64)
    n = len(actions)
    if n == 0:
        return np.zeros(0, dtype=bool)
    motion = np.linalg.norm(actions[:, :6], axis=1)
    opened = actions[:, 6] > 0.5
    same_grip = np.concatenate([[False], opened[1:] == opened[:-1]])
    settle = _inside((motion < SETTLE_ACTION_NORM) & same_grip)
    if which == "settle":
        return settle
    still = motion < PAUSE_ACTION_NORM
    arm_rest = np.linalg.norm(np.diff(state[:, :3], axis=0), axis=1) < PAUSE_TCP_MOTION
    fingers_rest = np.abs(np.diff(state[:, 6])) < PAUSE_FINGER_MOTION
    at_rest = np.concatenate([arm_rest & fingers_rest, [True]])
    idle = _inside(still & same_grip & at_rest)
    if which in ("grasp", "carry"):
        run_start = idle & ~np.concatenate([[False], idle[:-1]])
        idle &= ~opened & ~run_start
    if which == "carry":
        idle |= settle & _carrying(motion, opened, same_grip)
    return idle


def normalize_chunk_actions(actions: np.ndarray, stats: dict) -> np.ndarray:
    """Upstream's q99 training normalisation; mask-false dims (the gripper) binarised ``x > 0.5``."""
    from internvla_core.normalization import ActionStats, normalize_actions

    action_stats = ActionStats.from_dict("train", stats["action"])
    out = normalize_actions(actions, action_stats)
    out = np.where(action_stats.mask, out, (np.asarray(actions) > 0.5).astype(np.float64))
    return out.astype(np.float32)


def _info(root: Path) -> dict:
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise DatasetError(f"{root} is not a LeRobot dataset (no meta/info.json)")
    info = json.loads(info_path.read_text())
    version = str(info.get("codebase_version", ""))
    if version.startswith("v2"):
        raise DatasetError(
            f"{root} is a LeRobot {version} (M1 layout) dataset; the trainer reads LeRobot v3.0 only: write "
            "v3.0 from the same episodes with `internvla-write-dataset --format v3`"
        )
    if not version.startswith("v3"):
        raise DatasetError(f"{root}: unsupported codebase_version {version!r} (expected v3.0)")
    return info


def check_columns(info: dict, root: Path, cameras: tuple[str, ...], grounding: bool) -> None:
    features = info.get("features", {})
    required = [ACTION, ACTION_JOINTS, STATE, STATE_JOINTS] + [IMAGE_PREFIX + c for c in cameras]
    if grounding:
        required += list(GROUNDING_STRINGS)
    missing = [c for c in required if c not in features]
    if missing:
        cams = sorted(k[len(IMAGE_PREFIX) :] for k in features if k.startswith(IMAGE_PREFIX))
        raise DatasetError(
            f"{root} lacks the columns {missing} needed for training (cameras in the dataset: {cams}; "
            f"columns: {sorted(features)}). Pick existing cameras with --cameras"
            + (", or train without grounding (stage 2 with --vlm-loss-weight 0)" if grounding else "")
        )


def load_training_data(
    root: str | Path,
    *,
    horizon: int,
    action_dim: int,
    image_size: tuple[int, int] | None,
    cameras: tuple[str, ...] | None = None,
    grounding: bool = True,
    embodiment: str | None = None,
    unnorm_key: str | None = None,
    statistics: dict | None = None,
    frame_stride: int = 1,
    spatial_question: str | None = None,
    drop_pauses: str | None = None,
) -> TrainingData:
    """Read, check and prepare a dataset for a model of chunk ``horizon`` and ``action_dim``.

    ``embodiment``: the expected embodiment (e.g. the one a resumed run was trained on); ``statistics``:
    use these (upstream form, one key) instead of computing them (resume keeps the run's statistics).
    ``frame_stride``: every k-th frame of an episode starts a training sample (its chunk still holds the
    next T actions at the full rate); neighbouring frames at 10 Hz are nearly the same picture, so k = 2
    halves memory and feature-caching time for little loss of information. Statistics use every frame.
    ``spatial_question``: the model's CoT (spatial) prompt with ``{instruction}``; when given, every frame
    with a target box also gets the QA pair "spatial prompt → the target's box" (kind ``spatial``), so the
    VLM learns that the prompt stage 2 conditions on asks where the task's object is.
    ``drop_pauses``: leave out the pause frames of :func:`pause_frames` of this kind (one of ``PAUSE_KINDS``;
    None keeps every frame), as observations and as actions (
    a chunk then runs on to the next motion); the statistics are taken without them too.
    """
    if frame_stride < 1:
        raise DatasetError(f"frame_stride must be at least 1, not {frame_stride}")
    from internvla_core.grounding import format_grounding_answer, grounding_prompt, parse_grounding_text

    from ..lerobot_read import LeRobotV3Reader
    from ..m1_layout import default_unnorm_key

    root = Path(root)
    if not root.exists():
        raise DatasetError(f"dataset {root} does not exist")
    info = _info(root)
    features = info.get("features", {})
    all_cams = tuple(k[len(IMAGE_PREFIX) :] for k in features if k.startswith(IMAGE_PREFIX))
    cameras = tuple(cameras) if cameras else all_cams[:1]
    check_columns(info, root, cameras, grounding)
    dim = int(features[ACTION]["shape"][0])
    if dim != action_dim:
        raise DatasetError(
            f"{root}: action dimension {dim} ({features[ACTION].get('names')}) does not match the model's "
            f"action_dim {action_dim} (framework.action_model.action_dim of the config); build the model "
            "for this dataset or pick a dataset of the same action space"
        )
    reader = LeRobotV3Reader(root)
    if len(reader) == 0 or int(info.get("total_frames", 1)) == 0:
        raise DatasetError(f"{root} holds no episodes: nothing to train on")
    # first pass without the videos: a few hundred two-view episodes decoded at once take more memory
    # than the machine has (700 at 224 px: 14 GB); the frames are decoded one episode at a time below
    episodes = [reader.episode(i, images=False) for i in range(len(reader))]
    embodiments = sorted({e.embodiment for e in episodes})
    if len(embodiments) != 1:
        raise DatasetError(f"{root} mixes embodiments {embodiments}; train one embodiment per run")
    if embodiment is not None and embodiments[0] != embodiment:
        raise DatasetError(
            f"{root} holds {embodiments[0]!r} episodes but the run was configured for embodiment "
            f"{embodiment!r}; use a dataset of that embodiment or start a new run"
        )
    key = unnorm_key or default_unnorm_key(embodiments[0])
    # the frames each episode trains on, in order
    kept = [
        np.flatnonzero(~pause_frames(e.action_ee_delta, e.state_ee, drop_pauses))
        if drop_pauses
        else np.arange(e.length)
        for e in episodes
    ]
    if statistics is None:
        acc_a, acc_s = RunningStats(dim), RunningStats(episodes[0].state_ee.shape[1])
        for ep, keep in zip(episodes, kept):
            acc_a.update(np.asarray(ep.action_ee_delta)[keep])
            acc_s.update(np.asarray(ep.state_ee)[keep])
        names = features[ACTION].get("names") or list(EE_DELTA_NAMES)
        statistics = {key: m1_statistics(acc_a, acc_s, names, len(episodes))}
    elif list(statistics) != [key]:
        raise DatasetError(f"statistics keys {list(statistics)} do not match the dataset's key {key!r}")
    block = statistics[key]
    if len(block["action"]["q01"]) != dim:
        raise DatasetError(f"statistics have {len(block['action']['q01'])} action dims, the dataset {dim}")

    annotation_camera = (
        episodes[0].annotation_camera if episodes[0].annotation_camera in cameras else cameras[0]
    )
    instructions, chunks, ep_index, qa, states = [], [], [], [], []
    # the views go straight into arrays of their final size: a list of per-frame arrays stacked at the end
    # held every frame twice at the peak, and the freed list stayed in the process's heap
    samples = sum(len(range(0, len(keep), frame_stride)) for keep in kept)
    vlm: np.ndarray | None = None
    dino: np.ndarray | None = None
    view_boxes: dict[str, list[np.ndarray]] = {}
    view_grippers: dict[str, list[np.ndarray]] = {}
    containers: list[np.ndarray] = []
    for e_i in range(len(episodes)):
        ep = reader.episode(e_i)  # decoded now, released after its sampled frames are taken
        keep = kept[e_i]
        n = len(keep)
        norm = normalize_chunk_actions(np.asarray(ep.action_ee_delta)[keep], block)
        frames = keep[::frame_stride]  # the episode frames that start a sample
        chunks.append(norm[chunk_indices(n, horizon)][::frame_stride])
        ep_index.append(np.full(len(frames), e_i))
        for c in cameras:
            view_boxes.setdefault(c, []).append(_normalised_target_boxes(ep, c)[frames])
            view_grippers.setdefault(c, []).append(_normalised_gripper_points(ep, c)[frames])
        containers.append(_normalised_container_boxes(ep, annotation_camera)[frames])
        states.append(np.asarray(ep.state_ee, dtype=np.float32)[frames][:, [2, 6]])
        for t in frames:
            views = [vlm_view(ep.images[c][t], image_size) for c in cameras]
            vlm_frame = np.stack([np.asarray(v) for v in views])
            dino_frame = np.stack([np.asarray(dino_view(v)) for v in views])
            if vlm is None or dino is None:
                vlm = np.empty((samples, *vlm_frame.shape), np.uint8)
                dino = np.empty((samples, *dino_frame.shape), np.uint8)
            vlm[len(instructions)] = vlm_frame
            dino[len(instructions)] = dino_frame
            instructions.append(ep.instruction)
            if not grounding or ep.grounding is None:
                continue
            source = ep.images[annotation_camera].shape[2], ep.images[annotation_camera].shape[1]
            model_size = views[cameras.index(annotation_camera)].size
            frame = len(instructions) - 1
            for kind in GROUNDING_KINDS:
                text = getattr(ep.grounding, f"{kind}_answer")[t]
                parsed = parse_grounding_text(text or "", kind)
                items = {"box": parsed.boxes, "point": parsed.points, "trace": parsed.traces}[kind]
                if not items:
                    continue  # out of view: no geometry to learn
                label, value = items[0]
                target = ep.instruction if kind == "trace" or not label else label
                answer = format_grounding_answer(kind, value, label, source, model_size)
                qa.append(QAPair(frame, kind, grounding_prompt(kind, target), answer))
                if kind == "box" and spatial_question is not None:
                    question = spatial_question.replace("{instruction}", ep.instruction)
                    qa.append(QAPair(frame, "spatial", question, answer))
    if grounding and not qa:
        raise DatasetError(
            f"{root} has no grounding answers with geometry (annotation.*_answer all empty): stage 1 has "
            "nothing to learn; train stage 2 only with --vlm-loss-weight 0"
        )
    return TrainingData(
        root=root,
        cameras=cameras,
        annotation_camera=annotation_camera,
        embodiment=embodiments[0],
        unnorm_key=key,
        statistics=statistics,
        instructions=instructions,
        vlm_views=vlm,
        dino_views=dino,
        chunks=np.concatenate(chunks).astype(np.float32),
        episode_index=np.concatenate(ep_index),
        qa=qa,
        target_boxes=np.concatenate(view_boxes[annotation_camera]).astype(np.float32),
        gripper_points=np.concatenate(view_grippers[annotation_camera]).astype(np.float32),
        view_target_boxes={c: np.concatenate(v).astype(np.float32) for c, v in view_boxes.items()},
        view_gripper_points={c: np.concatenate(v).astype(np.float32) for c, v in view_grippers.items()},
        gripper_states=np.concatenate(states).astype(np.float32),
        container_boxes=np.concatenate(containers).astype(np.float32),
    )


def _normalised_target_boxes(ep, camera: str) -> np.ndarray:
    """[T, 4] the target's box per frame in [0, 1] of ``camera``'s image; NaN rows where it is not visible."""
    out = np.full((ep.length, 4), np.nan, dtype=np.float32)
    g = ep.grounding if ep.annotation_camera == camera else ep.view_labels.get(camera)
    if g is None:
        return out
    return _visible_boxes(out, g.target_box, g.target_visible, ep.images[camera].shape[1:3])


def _normalised_container_boxes(ep, camera: str) -> np.ndarray:
    """[T, 4] the container's box per frame in [0, 1] of ``camera``'s image; NaN rows where it is hidden,
    the task has none, or ``camera`` is not the annotation camera (only its grounding labels hold it)."""
    out = np.full((ep.length, 4), np.nan, dtype=np.float32)
    g = ep.grounding
    if g is None or ep.annotation_camera != camera:
        return out
    return _visible_boxes(out, g.container_box, g.container_visible, ep.images[camera].shape[1:3])


def _visible_boxes(out: np.ndarray, boxes, visible, image_hw: tuple[int, int]) -> np.ndarray:
    """``out`` [T, 4] (NaN) with the rows of pixel ``boxes`` whose object is at least half visible, in [0, 1]
    of an image of ``image_hw`` (height, width)."""
    h, w = image_hw
    seen = np.nan_to_num(np.asarray(visible, dtype=np.float32)) >= 0.5
    box = np.asarray(boxes, dtype=np.float32) / np.array([w, h, w, h], dtype=np.float32)
    ok = seen & np.isfinite(box).all(axis=1)
    out[ok] = box[ok]
    return out


def _normalised_gripper_points(ep, camera: str) -> np.ndarray:
    """[T, 2] the TCP's image point per frame in [0, 1] of ``camera``'s image (the grounding trace starts
    at the TCP's projection at that frame; another camera's view labels hold it); NaN rows where unknown."""
    out = np.full((ep.length, 2), np.nan, dtype=np.float32)
    h, w = ep.images[camera].shape[1:3]
    if ep.annotation_camera != camera:
        view = ep.view_labels.get(camera)
        if view is None:
            return out
        first = np.asarray(view.gripper_point, dtype=np.float32) / np.array([w, h], dtype=np.float32)
        ok = np.isfinite(first).all(axis=1)
        out[ok] = first[ok]
        return out
    g = ep.grounding
    if g is None or g.trace is None or len(g.trace) != ep.length:
        return out
    first = np.asarray(g.trace, dtype=np.float32)[:, 0, :] / np.array([w, h], dtype=np.float32)
    ok = np.isfinite(first).all(axis=1)
    out[ok] = first[ok]
    return out
