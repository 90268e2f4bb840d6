"""Streaming export to the LeRobot v2.1 (GR00T-flavoured) layout upstream InternVLA-M1 trains from.

Layout (upstream's ``InternVLA/dataloader/gr00t_lerobot/datasets.py`` reads these files)::

    data/chunk-000/episode_000000.parquet                       one file per episode (same frame columns
                                                                as the v3.0 writer, no video columns)
    videos/chunk-000/observation.images.<cam>/episode_000000.mp4   one H.264 file per episode and camera
    meta/info.json            codebase_version "v2.1", fps, features (videos with an ``info`` block holding
                              video.fps / video.channels, names height/width/channels, as upstream reads),
                              data_path / video_path templates with episode_chunk / episode_index
    meta/episodes.jsonl       {"episode_index", "tasks": [instruction], "length", + provenance fields}
    meta/episodes_stats.jsonl {"episode_index", "stats": {feature: {min, max, mean, std, count, q01...}}}
    meta/tasks.jsonl          {"task_index", "task"}
    meta/modality.json        state.x ... state.gripper -> observation.state[0:1] ... [6:7],
                              state.joints -> observation.state.joints, action.x ... action.gripper ->
                              action[0:1] ... [6:7], action.joints -> action.joints, video.image_0,
                              video.image_1 ... -> observation.images.<cam> in camera order,
                              annotation.human.action.task_description -> task_index (upstream looks
                              the index up in tasks.jsonl), annotation.<label> -> the grounding columns
    meta/stats.json           LeRobot-style dataset statistics (as the v3.0 writer's)
    meta/stats_gr00t.json     upstream's per-column statistics {mean, std, min, max, q01, q99}: present and
                              valid, so upstream's loader does not recompute them from the parquet files
    dataset_statistics.json   upstream's normalisation file {unnorm_key: {"action": {mean, std, max, min,
                              q01, q99, mask}, "state": {...}, "num_transitions", "num_trajectories"}},
                              mask false for the gripper, gripper last; ``unnorm_key`` defaults to the
                              episodes' embodiment's first key (franka_real -> "franka", widowx_bridge ->
                              "oxe_bridge"), the key our nodes look up.

Statistics, missing grounding values (-1 with visible 0), the overwrite rule and the ``<root>.partial``
staging are those of :mod:`internvla_learning.lerobot_v3`. Streaming: one episode at a time, each file is
finished before the next episode; metadata lines are appended as episodes arrive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .episode import EE_DELTA_NAMES, EE_STATE_NAMES, Episode
from .lerobot_v3 import (
    ACTION,
    ACTION_JOINTS,
    GROUNDING_STRINGS,
    GROUNDING_VECTORS,
    IMAGE_PREFIX,
    STATE,
    STATE_JOINTS,
    TRACE,
    DatasetStats,
    EpisodeFeatures,
    TaskTable,
    finish_root,
    prepare_root,
    provenance,
    write_json,
)
from .statistics import DEFAULT_RESERVOIR_SIZE, m1_statistics, to_jsonable
from .video import DEFAULT_CRF, DEFAULT_GOP, Mp4Encoder, video_info

CODEBASE_VERSION = "v2.1"
DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
TASK_DESCRIPTION = "human.action.task_description"


def default_unnorm_key(embodiment: str) -> str:
    """The statistics key our nodes use for an embodiment (its first ``unnorm_keys`` entry)."""
    from internvla_core.embodiments import get_embodiment

    return get_embodiment(embodiment).unnorm_keys[0]


def modality_json(spec: EpisodeFeatures) -> dict:
    """meta/modality.json: model keys -> parquet columns and index ranges (upstream's schema)."""
    state = {
        name: {"start": i, "end": i + 1, "original_key": STATE, "absolute": True, "dtype": "float32"}
        for i, name in enumerate(EE_STATE_NAMES)
    }
    state["joints"] = {
        "start": 0,
        "end": len(spec.joint_names),
        "original_key": STATE_JOINTS,
        "dtype": "float32",
    }
    action = {
        name: {
            "start": i,
            "end": i + 1,
            "original_key": ACTION,
            "absolute": name == "gripper",
            "dtype": "float32",
        }
        for i, name in enumerate(EE_DELTA_NAMES)
    }
    action["joints"] = {
        "start": 0,
        "end": len(spec.joint_names) + 1,
        "original_key": ACTION_JOINTS,
        "dtype": "float32",
    }
    video = {f"image_{i}": {"original_key": IMAGE_PREFIX + cam} for i, cam in enumerate(spec.cameras)}
    annotation = {TASK_DESCRIPTION: {"original_key": "task_index"}}
    if spec.grounding:
        for key in [*GROUNDING_VECTORS, TRACE, *GROUNDING_STRINGS]:
            annotation[key.split(".", 1)[1]] = {"original_key": key}
    return {"state": state, "action": action, "video": video, "annotation": annotation}


class M1LayoutWriter:
    """Write :class:`Episode` objects one at a time in upstream InternVLA-M1's v2.1 layout at ``root``.

    Arguments as :class:`~internvla_learning.lerobot_v3.LeRobotV3Writer`; ``unnorm_key`` names the entry
    of dataset_statistics.json (default: from the episodes' embodiment).
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
        unnorm_key: str | None = None,
        trace_points: int | None = None,
        chunks_size: int = 1000,
        crf: int = DEFAULT_CRF,
        gop: int = DEFAULT_GOP,
        reservoir_size: int = DEFAULT_RESERVOIR_SIZE,
    ):
        self.spec = EpisodeFeatures(fps, cameras, joint_names, trace_points)
        self.fps = self.spec.fps
        self.robot_type = robot_type
        self.unnorm_key = unnorm_key
        self.chunks_size = int(chunks_size)
        self.crf, self.gop = crf, gop
        self.reservoir_size = reservoir_size
        self.root, self.partial = prepare_root(root, overwrite)
        (self.partial / "meta").mkdir()
        self.total_episodes = 0
        self.total_frames = 0
        self.tasks = TaskTable()
        self._stats: DatasetStats | None = None
        self._video_infos: dict[str, dict] = {}
        self._closed = False

    def __enter__(self) -> M1LayoutWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _append_line(self, name: str, record: dict) -> None:
        with open(self.partial / "meta" / name, "a") as stream:
            stream.write(json.dumps(record) + "\n")

    def add_episode(self, episode: Episode) -> int:
        """Append one episode; returns its episode_index."""
        if self._closed:
            raise RuntimeError("writer is closed")
        self.spec.check(episode)
        if self._stats is None:
            self._stats = DatasetStats(self.spec.features(), self.reservoir_size)
            if self.unnorm_key is None:
                self.unnorm_key = default_unnorm_key(episode.embodiment)
        ep_index = self.total_episodes
        chunk = ep_index // self.chunks_size
        task_index = self.tasks.get(episode.instruction)
        cols = self.spec.columns(episode, ep_index, self.total_frames, task_index)
        images = {IMAGE_PREFIX + cam: episode.images[cam] for cam in self.spec.cameras}
        ep_stats = self._stats.add(cols, images)

        path = self.partial / DATA_PATH.format(episode_chunk=chunk, episode_index=ep_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.spec.table(cols), path, compression="snappy")
        for key, frames in images.items():
            vpath = self.partial / VIDEO_PATH.format(
                episode_chunk=chunk, video_key=key, episode_index=ep_index
            )
            enc = Mp4Encoder(vpath, self.fps, frames.shape[2], frames.shape[1], crf=self.crf, gop=self.gop)
            try:
                enc.write(frames)
            finally:
                enc.close()
            if key not in self._video_infos:
                self._video_infos[key] = video_info(vpath)

        self._append_line("episodes.jsonl", {
            "episode_index": ep_index, "tasks": [episode.instruction], "length": episode.length, **provenance(episode),
        })  # fmt: skip
        self._append_line("episodes_stats.jsonl", {
            "episode_index": ep_index, "stats": {k: to_jsonable(v) for k, v in ep_stats.items()},
        })  # fmt: skip
        self.total_episodes += 1
        self.total_frames += episode.length
        return ep_index

    def info(self) -> dict:
        n_chunks = (self.total_episodes + self.chunks_size - 1) // self.chunks_size
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": self.total_episodes,
            "total_frames": self.total_frames,
            "total_tasks": len(self.tasks.index),
            "total_videos": self.total_episodes * len(self.spec.cameras),
            "total_chunks": n_chunks,
            "chunks_size": self.chunks_size,
            "fps": self.fps,
            "splits": {"train": f"0:{self.total_episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": self.spec.features(self._video_infos),
        }

    def close(self) -> Path:
        """Write the metadata and statistics and move the dataset into place; returns its root."""
        if self._closed:
            return self.root
        if self.total_episodes == 0:
            self.abort()
            raise ValueError("no episodes were added; nothing written")
        try:
            meta = self.partial / "meta"
            with open(meta / "tasks.jsonl", "w") as stream:
                for task, index in self.tasks.index.items():
                    stream.write(json.dumps({"task_index": index, "task": task}) + "\n")
            stats = self._stats.result()
            write_json(meta / "stats.json", stats)
            gr00t = {
                key: {
                    name: value
                    for name, value in block.items()
                    if name in ("mean", "std", "min", "max", "q01", "q99")
                }
                for key, block in stats.items()
                if self.spec.features()[key]["dtype"] != "video"
            }
            write_json(meta / "stats_gr00t.json", gr00t)
            write_json(meta / "modality.json", modality_json(self.spec))
            write_json(meta / "info.json", self.info())
            entry = m1_statistics(
                self._stats.running[ACTION], self._stats.running[STATE], EE_DELTA_NAMES, self.total_episodes
            )
            write_json(self.partial / "dataset_statistics.json", {self.unnorm_key: entry})
            finish_root(self.partial, self.root)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.root

    def abort(self) -> None:
        """Discard everything written so far (the partial directory)."""
        import shutil

        self._closed = True
        shutil.rmtree(self.partial, ignore_errors=True)


def read_m1_episode_columns(root: str | Path, episode_index: int) -> dict[str, np.ndarray]:
    """The numeric frame columns of one episode of an M1-layout dataset (for tests and inspection)."""
    root = Path(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    chunk = episode_index // int(info["chunks_size"])
    table = pq.read_table(root / info["data_path"].format(episode_chunk=chunk, episode_index=episode_index))
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if hasattr(col, "flatten"):
            width = info["features"][name]["shape"][0]
            out[name] = np.asarray(col.flatten().to_numpy(zero_copy_only=False)).reshape(-1, width)
        elif info["features"][name]["dtype"] != "string":
            out[name] = col.to_numpy(zero_copy_only=False)
    return out
