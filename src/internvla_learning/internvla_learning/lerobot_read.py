"""Read a LeRobot v3.0 dataset written by :class:`~internvla_learning.lerobot_v3.LeRobotV3Writer` back
into :class:`Episode` objects (for round-trip tests and training).

Frames come from the data parquet files (rows of the episode, found through the episode metadata's
``data/chunk_index``/``data/file_index`` and ``dataset_from_index``), images from the episode's segment
``[from_timestamp, to_timestamp)`` of its MP4 file, decoded with PyAV. Timestamps are
``frame_index / fps`` (what the writer stores). Grounding values stored as -1 (missing) become NaN again.
Episodes are produced one at a time (:meth:`LeRobotV3Reader.__iter__`); only the per-episode metadata
rows (without the statistics columns) are held for the whole dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .episode import Episode, GroundingLabels, ViewLabels
from .lerobot_v3 import (
    ACTION,
    ACTION_JOINTS,
    GROUNDING_STRINGS,
    GROUNDING_VECTORS,
    IMAGE_PREFIX,
    STATE,
    STATE_JOINTS,
    TRACE,
    VIEW_VECTORS,
    decode_missing,
    view_feature,
)
from .video import decode_segment


def _column(table, name: str, width: int | None = None) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if width is None:
        return col.to_numpy(zero_copy_only=False)
    values = col.flatten() if hasattr(col, "flatten") else col  # list columns vs the [1]-shaped scalars
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, width)


class LeRobotV3Reader:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.info = json.loads((self.root / "meta" / "info.json").read_text())
        if not str(self.info.get("codebase_version", "")).startswith("v3"):
            raise ValueError(
                f"{self.root} is not a LeRobot v3 dataset (codebase_version {self.info.get('codebase_version')})"
            )
        self.fps = int(self.info["fps"])
        self.features = self.info["features"]
        tasks = pq.read_table(self.root / "meta" / "tasks.parquet")
        self.tasks = dict(
            zip(tasks.column("task_index").to_pylist(), tasks.column("task").to_pylist(), strict=True)
        )
        rows: list[dict] = []
        for path in sorted((self.root / "meta" / "episodes").rglob("*.parquet")):
            schema = pq.read_schema(path)
            table = pq.read_table(path, columns=[n for n in schema.names if not n.startswith("stats/")])
            rows.extend(table.to_pylist())
        self.episodes = sorted(rows, key=lambda r: r["episode_index"])
        self._data_cache: tuple[Path, object] | None = None

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self.episodes)):
            yield self.episode(i)

    def _data_table(self, chunk: int, file: int):
        path = self.root / self.info["data_path"].format(chunk_index=chunk, file_index=file)
        if self._data_cache is None or self._data_cache[0] != path:  # keep only the current file open
            self._data_cache = (path, pq.read_table(path))
        return self._data_cache[1]

    def episode(self, i: int, images: bool = True) -> Episode:
        """Episode ``i``; ``images=False`` skips the video decoding (actions, states and labels only: the
        images dict is empty), the cheap first pass of a loader that must not hold every frame at once."""
        meta = self.episodes[i]
        table = self._data_table(meta["data/chunk_index"], meta["data/file_index"])
        index = table.column("index").to_numpy()
        start = int(np.searchsorted(index, meta["dataset_from_index"]))
        rows = table.slice(start, meta["length"])
        if (
            rows.num_rows != meta["length"]
            or rows.column("episode_index")[0].as_py() != meta["episode_index"]
        ):
            raise ValueError(
                f"{self.root}: episode {meta['episode_index']} rows not found where its metadata says"
            )
        width = {
            k: ft["shape"][0]
            for k, ft in self.features.items()
            if ft["dtype"] == "float32" and ft["shape"] != [1]
        }
        decoded = {}
        for key, ft in self.features.items():
            if ft["dtype"] != "video" or not images:
                continue
            path = self.root / self.info["video_path"].format(
                video_key=key,
                chunk_index=meta[f"videos/{key}/chunk_index"],
                file_index=meta[f"videos/{key}/file_index"],
            )
            decoded[key[len(IMAGE_PREFIX) :]] = decode_segment(
                path, meta[f"videos/{key}/from_timestamp"], meta[f"videos/{key}/to_timestamp"], self.fps
            )
        prov = {k.split("/", 1)[1]: v for k, v in meta.items() if k.startswith("internvla/")}
        n = meta["length"]
        grounding = None
        if prov.get("has_grounding") and TRACE in self.features:
            values = {}
            for key, (field, names) in GROUNDING_VECTORS.items():
                v = _column(rows, key, len(names))
                values[field] = v.reshape(n) if len(names) == 1 else decode_missing(v, len(names))
            k = self.features[TRACE]["shape"][0] // 2
            values["trace"] = decode_missing(_column(rows, TRACE, 2 * k), 2).reshape(n, k, 2)
            for key, field in GROUNDING_STRINGS.items():
                values[field] = rows.column(key).to_pylist()
            grounding = GroundingLabels(**values)
        view_labels = {}
        for cam in sorted(k[len(IMAGE_PREFIX) :] for k in self.features if k.startswith(IMAGE_PREFIX)):
            if view_feature(cam, "target_box") not in self.features:
                continue
            values = {}
            for field, names in VIEW_VECTORS.items():
                v = _column(rows, view_feature(cam, field), len(names))
                values[field] = v.reshape(n) if len(names) == 1 else decode_missing(v, len(names))
            view_labels[cam] = ViewLabels(**values)
        frame_index = _column(rows, "frame_index").astype(np.int64)
        return Episode(
            robot=prov.get("robot", self.info.get("robot_type") or ""),
            embodiment=prov.get("embodiment", ""),
            reference_frame=prov.get("reference_frame", "base"),
            instruction=self.tasks[int(_column(rows, "task_index")[0])],
            task_template=prov.get("task_template", ""),
            seed=int(prov.get("seed", meta["episode_index"])),
            fps=float(self.fps),
            timestamps=frame_index / float(self.fps),
            images=decoded,
            joint_names=tuple(self.features[STATE_JOINTS]["names"]),
            state_joint=_column(rows, STATE_JOINTS, width[STATE_JOINTS]),
            state_ee=_column(rows, STATE, width[STATE]),
            action_ee_delta=_column(rows, ACTION, width[ACTION]),
            action_joint=_column(rows, ACTION_JOINTS, width[ACTION_JOINTS]),
            success=bool(prov.get("success", False)),
            grounding=grounding,
            annotation_camera=prov.get("annotation_camera", "third_person"),
            metadata=json.loads(prov["metadata"]) if "metadata" in prov else {},
            view_labels=view_labels,
        )


def read_lerobot_v3(root: str | Path) -> Iterator[Episode]:
    """Iterate the episodes of a v3.0 dataset in episode_index order (one decoded at a time)."""
    yield from LeRobotV3Reader(root)
