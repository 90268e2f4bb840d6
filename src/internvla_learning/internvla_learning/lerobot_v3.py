"""Streaming LeRobot v3.0 writer: :class:`Episode` objects in, a dataset ``lerobot`` >= 0.4 reads out.

Layout (what ``lerobot.datasets`` v3.0 reads)::

    meta/info.json                                  codebase_version "v3.0", fps, features, templates, totals
    meta/stats.json                                 dataset statistics per feature (see below)
    meta/tasks.parquet                              task_index per task string (pandas index "task")
    meta/episodes/chunk-000/file-000.parquet        one row per episode: length, tasks, data/video file
                                                    indices, dataset_from/to_index, videos/<key>/from/to_timestamp,
                                                    stats/<feature>/<stat>, internvla/* provenance columns
    data/chunk-000/file-000.parquet                 frames of many episodes (one row group per episode)
    videos/observation.images.<cam>/chunk-000/file-000.mp4   many episodes concatenated, H.264 yuv420p

Files rotate when the next episode would take them past ``data_files_size_in_mb`` /
``video_files_size_in_mb`` (LeRobot's rule: current size + estimated episode size >= limit); file indices
roll over to the next chunk after ``chunks_size`` files.

Features (float32 unless noted):

- ``observation.images.<cam>`` video ``[H, W, 3]``.
- ``observation.state`` [7] = ``Episode.state_ee`` (x, y, z, roll, pitch, yaw, gripper).
- ``observation.state.joints`` [n] = ``Episode.state_joint``.
- ``action`` [7] = ``Episode.action_ee_delta`` (the training target upstream uses).
- ``action.joints`` [n + 1] = ``Episode.action_joint`` (absolute joint targets, then the gripper).
- Grounding (when the episodes carry labels): ``annotation.target_box`` [4], ``annotation.target_visible``
  [1], ``annotation.container_box`` [4], ``annotation.container_visible`` [1], ``annotation.grasp_point``
  [2], ``annotation.place_point`` [2], ``annotation.trace`` [2K] (K points flattened x0, y0, x1, y1, ...;
  a 1-D shape is what every LeRobot reader and lerobot-doctor handle alike) and the answer strings
  ``annotation.box_answer`` / ``point_answer`` / ``trace_answer`` (dtype "string", shape [1], which
  LeRobot's features allow; it computes no statistics for them). **Missing values**: the Episode's NaN
  (object out of view, no container, nothing placed) is stored as ``-1.0`` (:data:`MISSING`) with the
  ``*_visible`` column 0; NaN would fail lerobot-doctor's NaN check. The reader turns a box, point or
  trace point that is entirely -1 back into NaN.
- Labels of the other cameras (``Episode.view_labels``, e.g. the wrist camera's, when the first episode has
  them): ``annotation.<cam>.target_box`` [4], ``annotation.<cam>.target_visible`` [1] and
  ``annotation.<cam>.gripper_point`` [2] (the TCP's image point), missing values stored as above.
- ``timestamp`` (= frame_index / fps, the frame's time in its video segment), ``frame_index``,
  ``episode_index``, ``index``, ``task_index`` (int64).

Statistics: per-episode statistics are exact (``np.quantile`` over the episode; video features over a
bounded frame/pixel subsample, in [0, 1], shape (3, 1, 1)). ``meta/stats.json`` aggregates with
:class:`internvla_learning.statistics.RunningStats`: min/max/mean/std/count exact, quantiles
(q01 q10 q50 q90 q99) from a bounded reservoir — exact up to ``reservoir_size`` frames, a uniform sample
beyond (see that module).

Streaming: one episode is held at a time; the encoders stay open per camera; episode metadata rows are
buffered ``episodes_buffer`` at a time; memory does not grow with the number of episodes (the task table
grows with the number of *distinct* instructions only).

Safety: an existing ``root`` is refused unless ``overwrite=True`` (then it is removed first). Everything
is written under ``<root>.partial`` and renamed to ``root`` by :meth:`close`; an exception inside the
``with`` block (or :meth:`abort`) deletes the partial directory, so an interrupted write never leaves a
dataset that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .episode import EE_DELTA_NAMES, EE_STATE_NAMES, Episode
from .statistics import (
    DEFAULT_RESERVOIR_SIZE,
    RunningStats,
    episode_feature_stats,
    image_sample,
    image_stats_shape,
    to_jsonable,
)
from .video import DEFAULT_CRF, DEFAULT_GOP, Mp4Encoder, video_info

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
MISSING = -1.0
"""Stored in place of NaN grounding values (the ``*_visible`` column is 0 there)."""

IMAGE_PREFIX = "observation.images."
STATE = "observation.state"
STATE_JOINTS = "observation.state.joints"
ACTION = "action"
ACTION_JOINTS = "action.joints"
GROUNDING_VECTORS = {  # feature -> (GroundingLabels field, names)
    "annotation.target_box": ("target_box", ["x1", "y1", "x2", "y2"]),
    "annotation.target_visible": ("target_visible", ["visible"]),
    "annotation.container_box": ("container_box", ["x1", "y1", "x2", "y2"]),
    "annotation.container_visible": ("container_visible", ["visible"]),
    "annotation.grasp_point": ("grasp_point", ["x", "y"]),
    "annotation.place_point": ("place_point", ["x", "y"]),
}
GROUNDING_STRINGS = {
    "annotation.box_answer": "box_answer",
    "annotation.point_answer": "point_answer",
    "annotation.trace_answer": "trace_answer",
}
TRACE = "annotation.trace"
VIEW_VECTORS = {
    "target_box": ["x1", "y1", "x2", "y2"],
    "target_visible": ["visible"],
    "gripper_point": ["x", "y"],
}


def view_feature(camera: str, field: str) -> str:
    """The column of ``Episode.view_labels[camera].<field>``."""
    return f"annotation.{camera}.{field}"


INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


# ----------------------------------------------------------------------------------------------------------
# Helpers shared with the v2.1 (upstream M1) layout writer
# ----------------------------------------------------------------------------------------------------------


def prepare_root(root: str | Path, overwrite: bool) -> tuple[Path, Path]:
    """Check/clear the output location; returns (root, partial dir) with an empty partial dir created."""
    root = Path(root)
    if root.exists():
        if not overwrite:
            raise FileExistsError(
                f"dataset output {root} already exists; pass overwrite=True (--overwrite) to replace it"
            )
        shutil.rmtree(root) if root.is_dir() else root.unlink()
    partial = root.with_name(root.name + ".partial")
    if partial.exists():  # left over by an interrupted write: never a complete dataset
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return root, partial


def finish_root(partial: Path, root: Path) -> None:
    if root.exists():
        raise FileExistsError(
            f"{root} appeared while the dataset was being written; the result is in {partial}"
        )
    os.replace(partial, root)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _fixed_list(n: int) -> pa.DataType:
    return pa.list_(pa.float32(), n)


def encode_missing(values: np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype=np.float32).copy()
    out[~np.isfinite(out)] = MISSING
    return out


def decode_missing(values: np.ndarray, group: int) -> np.ndarray:
    """Rows (or ``group``-sized parts of them) that are entirely :data:`MISSING` become NaN again."""
    out = np.asarray(values, dtype=np.float32).copy()
    shaped = out.reshape(out.shape[0], -1, group)
    shaped[np.all(shaped == MISSING, axis=-1)] = np.nan
    return shaped.reshape(out.shape)


class EpisodeFeatures:
    """The frame features common to both layouts, built from the writer's settings, and the per-episode
    conversion of an :class:`Episode` to columns (validated, with the seed in every error)."""

    def __init__(self, fps: float, cameras: dict[str, tuple[int, int]], joint_names: Sequence[str],
                 trace_points: int | None):  # fmt: skip
        if abs(fps - round(fps)) > 1e-9 or round(fps) <= 0:
            raise ValueError(f"fps must be a positive integer (LeRobot stores an int), got {fps}")
        self.fps = int(round(fps))
        self.cameras = {str(k): (int(v[0]), int(v[1])) for k, v in cameras.items()}
        if not self.cameras:
            raise ValueError("at least one camera is needed")
        self.joint_names = tuple(joint_names)
        self.trace_points = trace_points  # None: decided by the first episode
        self.view_cameras: tuple[str, ...] | None = None  # cameras with view labels: the first episode's
        self.embodiment: str | None = None
        self.reference_frame: str | None = None

    @property
    def grounding(self) -> bool:
        return bool(self.trace_points)

    def video_keys(self) -> list[str]:
        return [IMAGE_PREFIX + cam for cam in self.cameras]

    def features(self, video_infos: dict[str, dict] | None = None) -> dict[str, dict]:
        feats: dict[str, dict] = {}
        for cam, (h, w) in self.cameras.items():
            key = IMAGE_PREFIX + cam
            feats[key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"]}
            if video_infos and key in video_infos:
                feats[key]["info"] = video_infos[key]
        feats[STATE] = {"dtype": "float32", "shape": [7], "names": list(EE_STATE_NAMES)}
        feats[STATE_JOINTS] = {
            "dtype": "float32",
            "shape": [len(self.joint_names)],
            "names": list(self.joint_names),
        }
        feats[ACTION] = {"dtype": "float32", "shape": [7], "names": list(EE_DELTA_NAMES)}
        feats[ACTION_JOINTS] = {"dtype": "float32", "shape": [len(self.joint_names) + 1],
                                "names": [*self.joint_names, "gripper"]}  # fmt: skip
        if self.grounding:
            for key, (_, names) in GROUNDING_VECTORS.items():
                feats[key] = {"dtype": "float32", "shape": [len(names)], "names": names}
            k = int(self.trace_points)
            feats[TRACE] = {"dtype": "float32", "shape": [2 * k],
                            "names": [f"{a}{i}" for i in range(k) for a in ("x", "y")]}  # fmt: skip
            for key in GROUNDING_STRINGS:
                feats[key] = {"dtype": "string", "shape": [1], "names": None}
        for cam in self.view_cameras or ():
            for field, names in VIEW_VECTORS.items():
                feats[view_feature(cam, field)] = {"dtype": "float32", "shape": [len(names)], "names": names}
        feats["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for key in INDEX_COLUMNS[1:]:
            feats[key] = {"dtype": "int64", "shape": [1], "names": None}
        return feats

    def arrow_schema(self) -> pa.Schema:
        fields = []
        for key, ft in self.features().items():
            if ft["dtype"] == "video":
                continue
            if ft["dtype"] == "string":
                fields.append(pa.field(key, pa.string()))
            elif ft["shape"] == [1]:
                fields.append(pa.field(key, pa.float32() if ft["dtype"] == "float32" else pa.int64()))
            else:
                fields.append(pa.field(key, _fixed_list(ft["shape"][0])))
        return pa.schema(fields)

    def numeric_keys(self) -> list[str]:
        return [k for k, ft in self.features().items() if ft["dtype"] not in ("video", "string")]

    def check(self, episode: Episode) -> None:
        """Validate an episode against the contract and this dataset; errors name the episode's seed."""
        who = f"episode seed={episode.seed} ({episode.task_template!r})"
        try:
            episode.validate()
        except ValueError as exc:
            raise ValueError(f"{who}: {exc}") from exc
        if abs(float(episode.fps) - self.fps) > 1e-6:
            raise ValueError(f"{who}: fps {episode.fps} differs from the dataset's {self.fps}")
        grid = np.arange(episode.length) / self.fps
        if np.max(np.abs((episode.timestamps - episode.timestamps[0]) - grid)) > 0.5 / self.fps:
            raise ValueError(
                f"{who}: timestamps are not on the {self.fps} Hz frame grid; resample the episode first"
            )
        if tuple(episode.joint_names) != self.joint_names:
            raise ValueError(
                f"{who}: joint names {episode.joint_names} differ from the dataset's {self.joint_names}"
            )
        for cam, (h, w) in self.cameras.items():
            if cam not in episode.images:
                raise ValueError(f"{who}: camera {cam!r} missing (episode has {sorted(episode.images)})")
            if episode.images[cam].shape[1:3] != (h, w):
                raise ValueError(
                    f"{who}: camera {cam!r} is {episode.images[cam].shape[1:3]}, the dataset's is {(h, w)}"
                )
        if self.embodiment is None:
            self.embodiment, self.reference_frame = episode.embodiment, episode.reference_frame
        elif (episode.embodiment, episode.reference_frame) != (self.embodiment, self.reference_frame):
            raise ValueError(
                f"{who}: embodiment/reference frame ({episode.embodiment}, {episode.reference_frame}) differ from "
                f"the dataset's ({self.embodiment}, {self.reference_frame}); write one dataset per embodiment"
            )
        if self.trace_points is None:
            self.trace_points = int(episode.grounding.trace.shape[1]) if episode.grounding is not None else 0
        if self.view_cameras is None:
            self.view_cameras = tuple(sorted(c for c in episode.view_labels if c in self.cameras))
        g = episode.grounding
        if g is not None and not self.grounding:
            raise ValueError(
                f"{who}: has grounding labels but the dataset was started without them (trace_points=0)"
            )
        if g is not None and g.trace.shape[1:] != (self.trace_points, 2):
            raise ValueError(
                f"{who}: trace has shape {g.trace.shape[1:]}, the dataset's is {(self.trace_points, 2)}"
            )

    def columns(
        self, episode: Episode, episode_index: int, start_index: int, task_index: int
    ) -> dict[str, np.ndarray | list]:
        """All non-video columns of one (checked) episode, as numpy arrays (strings as lists)."""
        n = episode.length
        frame_index = np.arange(n, dtype=np.int64)
        cols: dict[str, np.ndarray | list] = {
            STATE: np.asarray(episode.state_ee, dtype=np.float32),
            STATE_JOINTS: np.asarray(episode.state_joint, dtype=np.float32),
            ACTION: np.asarray(episode.action_ee_delta, dtype=np.float32),
            ACTION_JOINTS: np.asarray(episode.action_joint, dtype=np.float32),
        }
        if self.grounding:
            g = episode.grounding
            for key, (field, names) in GROUNDING_VECTORS.items():
                if g is None:
                    value = np.full((n, len(names)), MISSING, np.float32)
                    if field.endswith("visible"):
                        value[:] = 0.0
                else:
                    value = np.asarray(getattr(g, field), dtype=np.float32).reshape(n, len(names))
                    value = (
                        np.where(np.isfinite(value), value, 0.0)
                        if field.endswith("visible")
                        else encode_missing(value)
                    )
                cols[key] = value.astype(np.float32)
            k = int(self.trace_points)
            cols[TRACE] = (encode_missing(g.trace).reshape(n, 2 * k) if g is not None
                           else np.full((n, 2 * k), MISSING, np.float32))  # fmt: skip
            for key, field in GROUNDING_STRINGS.items():
                values = [""] * n if g is None else [str(s) for s in getattr(g, field)]
                if len(values) != n:
                    raise ValueError(
                        f"episode seed={episode.seed}: grounding {field} has {len(values)} entries, {n} frames"
                    )
                cols[key] = values
        for cam in self.view_cameras or ():
            labels = episode.view_labels.get(cam)
            for field, names in VIEW_VECTORS.items():
                if labels is None:
                    value = np.full(
                        (n, len(names)), 0.0 if field == "target_visible" else MISSING, np.float32
                    )
                else:
                    value = np.asarray(getattr(labels, field), dtype=np.float32).reshape(n, len(names))
                    value = np.nan_to_num(value) if field == "target_visible" else encode_missing(value)
                cols[view_feature(cam, field)] = value.astype(np.float32)
        cols["timestamp"] = (frame_index / self.fps).astype(np.float32)
        cols["frame_index"] = frame_index
        cols["episode_index"] = np.full(n, episode_index, np.int64)
        cols["index"] = start_index + frame_index
        cols["task_index"] = np.full(n, task_index, np.int64)
        return cols

    def table(self, cols: dict) -> pa.Table:
        schema = self.arrow_schema()
        arrays = []
        for field in schema:
            value = cols[field.name]
            if pa.types.is_fixed_size_list(field.type):
                flat = pa.array(np.ascontiguousarray(value, dtype=np.float32).reshape(-1), pa.float32())
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
            elif isinstance(value, np.ndarray):
                arrays.append(pa.array(value.reshape(-1), field.type))
            else:
                arrays.append(pa.array(value, field.type))
        return pa.Table.from_arrays(arrays, schema=schema)


def provenance(episode: Episode) -> dict:
    """The Episode fields that are not frame columns (kept per episode so a reader rebuilds the Episode)."""
    return {
        "robot": episode.robot,
        "embodiment": episode.embodiment,
        "reference_frame": episode.reference_frame,
        "task_template": episode.task_template,
        "seed": int(episode.seed),
        "success": bool(episode.success),
        "annotation_camera": episode.annotation_camera,
        "has_grounding": episode.grounding is not None,
        "metadata": episode.metadata,
    }


class DatasetStats:
    """Per-episode (exact) and whole-dataset (streaming) statistics of every numeric and video feature."""

    def __init__(self, features: dict[str, dict], reservoir_size: int):
        self.features = features
        self.running: dict[str, RunningStats] = {}
        self.image_frames: dict[str, int] = {}
        for seed, (key, ft) in enumerate(features.items()):
            if ft["dtype"] == "string":
                continue
            dim = 3 if ft["dtype"] == "video" else int(np.prod(ft["shape"]))
            self.running[key] = RunningStats(dim, reservoir_size=reservoir_size, seed=seed)
            if ft["dtype"] == "video":
                self.image_frames[key] = 0

    def add(self, cols: dict, images: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        """Accumulate one episode; returns its exact statistics per feature (LeRobot's shapes)."""
        ep_stats: dict[str, dict[str, np.ndarray]] = {}
        for key, ft in self.features.items():
            if ft["dtype"] == "string":
                continue
            if ft["dtype"] == "video":
                sample = image_sample(images[key])
                n_frames = min(images[key].shape[0], 16)
                self.running[key].update(sample)
                self.image_frames[key] += n_frames
                stats = episode_feature_stats(sample)
                stats["count"] = np.array([n_frames], dtype=np.int64)
                ep_stats[key] = image_stats_shape(stats)
            else:
                value = np.asarray(cols[key])
                self.running[key].update(value.reshape(value.shape[0], -1))
                ep_stats[key] = episode_feature_stats(value)
        return ep_stats

    def result(self) -> dict[str, dict]:
        out = {}
        for key, running in self.running.items():
            if running.count == 0:
                continue
            stats = running.result()
            if key in self.image_frames:
                stats["count"] = np.array([self.image_frames[key]], dtype=np.int64)
                stats = image_stats_shape(stats)
            out[key] = to_jsonable(stats)
        return out


class TaskTable:
    """task string -> task_index in order of first appearance."""

    def __init__(self):
        self.index: dict[str, int] = {}

    def get(self, task: str) -> int:
        if task not in self.index:
            self.index[task] = len(self.index)
        return self.index[task]


def write_tasks_parquet(path: Path, tasks: dict[str, int]) -> None:
    """meta/tasks.parquet as pandas writes ``DataFrame({"task_index": ...}, index=Index(tasks, name="task"))``."""
    names = list(tasks)
    table = pa.table(
        {"task_index": pa.array([tasks[t] for t in names], pa.int64()), "task": pa.array(names, pa.string())}
    )
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def next_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """LeRobot's rule: file indices count up to chunks_size - 1, then the next chunk starts at file 0."""
    return (chunk_index + 1, 0) if file_index == chunks_size - 1 else (chunk_index, file_index + 1)


class _RotatingParquet:
    """A parquet file that rotates (chunk/file indices) when the next table would pass a size limit."""

    def __init__(self, root: Path, template: str, limit_mb: float, chunks_size: int, schema: pa.Schema):
        self.root, self.template, self.limit_mb, self.chunks_size = root, template, limit_mb, chunks_size
        self.schema = schema
        self.chunk_index, self.file_index = 0, 0
        self._sink: pa.OSFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0

    def size_mb(self) -> float:
        return self._sink.tell() / (1024 * 1024) if self._sink is not None else 0.0

    def write(self, table: pa.Table) -> tuple[int, int]:
        """Write ``table`` as one row group; returns the (chunk_index, file_index) it went into."""
        if self._writer is not None and self._rows > 0:
            per_row = self.size_mb() / self._rows
            if self.size_mb() + per_row * table.num_rows >= self.limit_mb:
                self.close()
                self.chunk_index, self.file_index = next_file(
                    self.chunk_index, self.file_index, self.chunks_size
                )
        if self._writer is None:
            path = self.root / self.template.format(chunk_index=self.chunk_index, file_index=self.file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = pq.ParquetWriter(self._sink, self.schema, compression="snappy")
            self._rows = 0
        self._writer.write_table(table)
        self._rows += table.num_rows
        return self.chunk_index, self.file_index

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
        self._writer, self._sink = None, None


def _nested_list_type(value: np.ndarray) -> pa.DataType:
    base = pa.int64() if np.asarray(value).dtype.kind == "i" else pa.float64()
    t = base
    for _ in range(np.asarray(value).ndim):
        t = pa.list_(t)
    return t


# ----------------------------------------------------------------------------------------------------------
# The writer
# ----------------------------------------------------------------------------------------------------------


class LeRobotV3Writer:
    """Write :class:`Episode` objects one at a time into a LeRobot v3.0 dataset at ``root``.

    ``cameras`` maps the episode camera keys to write to their (height, width); other cameras of the
    episodes are not written. ``trace_points`` is the number K of trace points (None: taken from the first
    episode, 0 when it has no grounding labels: then no annotation features are written).
    """

    def __init__(
        self,
        root: str | Path,
        fps: float,
        robot_type: str,
        cameras: dict[str, tuple[int, int]],
        joint_names: Sequence[str],
        overwrite: bool = False,
        *,
        trace_points: int | None = None,
        chunks_size: int = 1000,
        data_files_size_in_mb: float = 100,
        video_files_size_in_mb: float = 200,
        crf: int = DEFAULT_CRF,
        gop: int = DEFAULT_GOP,
        reservoir_size: int = DEFAULT_RESERVOIR_SIZE,
        episodes_buffer: int = 16,
    ):
        self.spec = EpisodeFeatures(fps, cameras, joint_names, trace_points)
        self.fps = self.spec.fps
        self.robot_type = robot_type
        self.chunks_size = int(chunks_size)
        self.data_files_size_in_mb = data_files_size_in_mb
        self.video_files_size_in_mb = video_files_size_in_mb
        self.crf, self.gop = crf, gop
        self.reservoir_size = reservoir_size
        self.episodes_buffer = max(1, int(episodes_buffer))
        self.root, self.partial = prepare_root(root, overwrite)
        self.total_episodes = 0
        self.total_frames = 0
        self.tasks = TaskTable()
        self._data: _RotatingParquet | None = None
        self._episodes: _RotatingParquet | None = None
        self._episode_rows: list[dict] = []
        self._episode_schema: pa.Schema | None = None
        self._encoders: dict[str, Mp4Encoder] = {}
        self._video_files: dict[str, tuple[int, int]] = {}
        self._video_infos: dict[str, dict] = {}
        self._stats: DatasetStats | None = None
        self._closed = False

    # context manager: close on success, abort on error
    def __enter__(self) -> LeRobotV3Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add_episode(self, episode: Episode) -> int:
        """Append one episode; returns its episode_index."""
        if self._closed:
            raise RuntimeError("writer is closed")
        self.spec.check(episode)
        if self._data is None:  # the first episode fixed the feature set
            self._data = _RotatingParquet(self.partial, DATA_PATH, self.data_files_size_in_mb, self.chunks_size,
                                          self.spec.arrow_schema())  # fmt: skip
            self._stats = DatasetStats(self.spec.features(), self.reservoir_size)
        ep_index = self.total_episodes
        task_index = self.tasks.get(episode.instruction)
        cols = self.spec.columns(episode, ep_index, self.total_frames, task_index)
        images = {IMAGE_PREFIX + cam: episode.images[cam] for cam in self.spec.cameras}
        ep_stats = self._stats.add(cols, images)

        data_chunk, data_file = self._data.write(self.spec.table(cols))
        row: dict = {
            "episode_index": ep_index,
            "tasks": [episode.instruction],
            "length": episode.length,
            "data/chunk_index": data_chunk,
            "data/file_index": data_file,
            "dataset_from_index": self.total_frames,
            "dataset_to_index": self.total_frames + episode.length,
        }
        for key, frames in images.items():
            row.update(self._write_video(key, frames))
        for key, stats in ep_stats.items():
            for name, value in stats.items():
                row[f"stats/{key}/{name}"] = np.asarray(value)
        for name, value in provenance(episode).items():
            row[f"internvla/{name}"] = json.dumps(value) if name == "metadata" else value
        self._append_episode_row(row)
        self.total_episodes += 1
        self.total_frames += episode.length
        return ep_index

    def _write_video(self, key: str, frames: np.ndarray) -> dict:
        h, w = frames.shape[1:3]
        enc = self._encoders.get(key)
        if enc is not None and enc.frames_written > 0:
            per_frame = enc.size_in_mb / enc.frames_written
            if enc.size_in_mb + per_frame * frames.shape[0] >= self.video_files_size_in_mb:
                enc.close()
                self._video_files[key] = next_file(*self._video_files[key], self.chunks_size)
                enc = None
        if enc is None:
            chunk, file = self._video_files.setdefault(key, (0, 0))
            path = self.partial / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            enc = self._encoders[key] = Mp4Encoder(path, self.fps, w, h, crf=self.crf, gop=self.gop)
        start, end = enc.write(frames)
        chunk, file = self._video_files[key]
        return {
            f"videos/{key}/chunk_index": chunk,
            f"videos/{key}/file_index": file,
            f"videos/{key}/from_timestamp": float(start),
            f"videos/{key}/to_timestamp": float(end),
        }

    def _append_episode_row(self, row: dict) -> None:
        if self._episode_schema is None:
            fields = []
            for key, value in row.items():
                if key == "tasks":
                    t = pa.list_(pa.string())
                elif isinstance(value, np.ndarray):
                    t = _nested_list_type(value)
                elif isinstance(value, bool):
                    t = pa.bool_()
                elif isinstance(value, (int, np.integer)):
                    t = pa.int64()
                elif isinstance(value, float):
                    t = pa.float64()
                else:
                    t = pa.string()
                fields.append(pa.field(key, t))
            fields += [
                pa.field("meta/episodes/chunk_index", pa.int64()),
                pa.field("meta/episodes/file_index", pa.int64()),
            ]
            self._episode_schema = pa.schema(fields)
            self._episodes = _RotatingParquet(self.partial, EPISODES_PATH, self.data_files_size_in_mb,
                                              self.chunks_size, self._episode_schema)  # fmt: skip
        self._episode_rows.append(row)
        if len(self._episode_rows) >= self.episodes_buffer:
            self._flush_episode_rows()

    def _flush_episode_rows(self) -> None:
        if not self._episode_rows:
            return
        rows, self._episode_rows = self._episode_rows, []
        # The indices of the file these rows go to: rotation happens before the write, so predict it.
        probe = self._episodes
        chunk, file = probe.chunk_index, probe.file_index
        if probe._writer is not None and probe._rows > 0:
            per_row = probe.size_mb() / probe._rows
            if probe.size_mb() + per_row * len(rows) >= probe.limit_mb:
                chunk, file = next_file(chunk, file, probe.chunks_size)
        columns = {}
        for field in self._episode_schema:
            if field.name == "meta/episodes/chunk_index":
                columns[field.name] = pa.array([chunk] * len(rows), pa.int64())
            elif field.name == "meta/episodes/file_index":
                columns[field.name] = pa.array([file] * len(rows), pa.int64())
            else:
                values = [r[field.name] for r in rows]
                values = [v.tolist() if isinstance(v, np.ndarray) else v for v in values]
                columns[field.name] = pa.array(values, field.type)
        written = self._episodes.write(pa.Table.from_pydict(columns, schema=self._episode_schema))
        assert written == (chunk, file)

    def close(self) -> Path:
        """Finish every file, write the metadata and move the dataset into place; returns its root."""
        if self._closed:
            return self.root
        if self.total_episodes == 0:
            self.abort()
            raise ValueError("no episodes were added; nothing written")
        try:
            for key, enc in self._encoders.items():
                enc.close()
                self._video_infos.setdefault(key, video_info(enc.path))
            self._data.close()
            self._flush_episode_rows()
            self._episodes.close()
            write_tasks_parquet(self.partial / "meta" / "tasks.parquet", self.tasks.index)
            write_json(self.partial / "meta" / "stats.json", self._stats.result())
            write_json(self.partial / "meta" / "info.json", self.info())
            finish_root(self.partial, self.root)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.root

    def info(self) -> dict:
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": self.total_episodes,
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks.index),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_files_size_in_mb,
            "video_files_size_in_mb": self.video_files_size_in_mb,
            "fps": self.fps,
            "splits": {"train": f"0:{self.total_episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": self.spec.features(self._video_infos),
        }

    def abort(self) -> None:
        """Discard everything written so far (the partial directory); the writer cannot be used again."""
        self._closed = True
        for enc in self._encoders.values():
            enc.abort()
        for part in (self._data, self._episodes):
            with contextlib.suppress(Exception):  # discarding anyway
                if part is not None:
                    part.close()
        shutil.rmtree(self.partial, ignore_errors=True)
