"""LeRobot v3.0 writer and reader: round trip, file rotation, statistics, safety, bounded memory."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest
from internvla_learning.lerobot_read import LeRobotV3Reader, read_lerobot_v3
from internvla_learning.lerobot_v3 import MISSING, LeRobotV3Writer
from learning_synthetic import JOINTS, make_episode

CAMERAS = {"third_person": (64, 64), "wrist": (64, 64)}
LENGTHS = [20, 23, 26, 29]


def assert_same_episode(got, want, max_image_error=6.0):
    assert got.length == want.length
    for name in ("state_ee", "state_joint", "action_ee_delta", "action_joint"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    np.testing.assert_allclose(got.timestamps, want.timestamps, atol=1e-6)
    for name in ("robot", "embodiment", "reference_frame", "instruction", "task_template", "seed", "success",
                 "annotation_camera", "metadata", "joint_names"):  # fmt: skip
        assert getattr(got, name) == getattr(want, name), name
    assert got.fps == want.fps
    gw, gg = want.grounding, got.grounding
    assert (gg is None) == (gw is None)
    if gw is not None:
        for name in ("target_box", "target_visible", "container_box", "container_visible", "grasp_point",
                     "place_point", "trace"):  # fmt: skip
            np.testing.assert_array_equal(getattr(gg, name), getattr(gw, name), err_msg=name)
        for name in ("box_answer", "point_answer", "trace_answer"):
            assert getattr(gg, name) == getattr(gw, name)
    assert set(got.images) == set(want.images)
    for cam, frames in want.images.items():
        assert got.images[cam].shape == frames.shape
        err = np.abs(got.images[cam].astype(np.int16) - frames).mean(axis=(1, 2, 3))
        assert err.max() < max_image_error, (cam, err.max())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("v3") / "ds"
    episodes = [make_episode(seed, length=n) for seed, n in enumerate(LENGTHS)]
    with LeRobotV3Writer(root, 10, "franka", CAMERAS, JOINTS) as writer:
        for ep in episodes:
            writer.add_episode(ep)
    return root, episodes


def test_layout_and_info(dataset):
    root, _ = dataset
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["fps"] == 10 and info["robot_type"] == "franka"
    assert info["total_episodes"] == 4 and info["total_frames"] == sum(LENGTHS) and info["total_tasks"] == 2
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert info["splits"] == {"train": "0:4"}
    for key in ("chunks_size", "data_files_size_in_mb", "video_files_size_in_mb"):
        assert info[key] > 0
    feats = info["features"]
    assert feats["observation.images.wrist"]["dtype"] == "video"
    assert feats["observation.images.wrist"]["shape"] == [64, 64, 3]
    assert feats["observation.images.wrist"]["info"]["video.codec"] == "h264"
    assert feats["observation.images.wrist"]["info"]["video.pix_fmt"] == "yuv420p"
    assert feats["action"]["names"] == ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    assert feats["action.joints"]["names"] == [*JOINTS, "gripper"]
    assert feats["annotation.trace"]["shape"] == [8]
    assert feats["annotation.box_answer"]["dtype"] == "string"
    # many episodes in one data file and one video file per camera
    assert sorted(p.relative_to(root).as_posix() for p in (root / "data").rglob("*.parquet")) == [
        "data/chunk-000/file-000.parquet"
    ]
    assert len(list((root / "videos").rglob("*.mp4"))) == 2
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert data.column("index").to_pylist() == list(range(sum(LENGTHS)))
    assert data.num_rows == sum(LENGTHS)
    # missing grounding values are -1, never NaN
    box = np.asarray(data.column("annotation.container_box").combine_chunks().flatten())
    assert np.all(box == MISSING)
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    assert tasks.column("task_index").to_pylist() == [0, 1]


def test_episode_metadata_rows(dataset):
    root, _ = dataset
    meta = pq.read_table(next((root / "meta" / "episodes").rglob("*.parquet"))).to_pylist()
    assert [m["episode_index"] for m in meta] == [0, 1, 2, 3]
    start = 0
    for m, n in zip(meta, LENGTHS, strict=True):
        assert m["length"] == n and m["dataset_from_index"] == start and m["dataset_to_index"] == start + n
        key = "videos/observation.images.third_person"
        assert m[f"{key}/from_timestamp"] == pytest.approx(start / 10)
        assert m[f"{key}/to_timestamp"] == pytest.approx((start + n) / 10)
        assert m["stats/action/count"] == [n]
        assert np.asarray(m["stats/observation.images.wrist/mean"]).shape == (3, 1, 1)
        assert m["meta/episodes/chunk_index"] == 0 and m["meta/episodes/file_index"] == 0
        start += n


def test_round_trip(dataset):
    root, episodes = dataset
    reader = LeRobotV3Reader(root)
    assert len(reader) == 4
    for got, want in zip(read_lerobot_v3(root), episodes, strict=True):
        assert_same_episode(got, want)
    # a decoded frame really shows the square where it was drawn (not just a similar mean colour)
    got = reader.episode(2).images["third_person"][5]
    want = episodes[2].images["third_person"][5]
    assert np.abs(got.astype(int) - want).max(axis=2).mean() < 8


def test_dataset_statistics_equal_numpy_over_all_frames(dataset):
    root, episodes = dataset
    stats = json.loads((root / "meta" / "stats.json").read_text())
    for key, attr in [("action", "action_ee_delta"), ("observation.state", "state_ee"),
                      ("action.joints", "action_joint"), ("observation.state.joints", "state_joint")]:  # fmt: skip
        allrows = np.concatenate([getattr(e, attr) for e in episodes]).astype(np.float64)
        np.testing.assert_allclose(stats[key]["mean"], allrows.mean(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats[key]["std"], allrows.std(0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(stats[key]["min"], allrows.min(0))
        np.testing.assert_allclose(stats[key]["max"], allrows.max(0))
        np.testing.assert_allclose(
            stats[key]["q01"], np.quantile(allrows, 0.01, axis=0), rtol=1e-6, atol=1e-9
        )
        np.testing.assert_allclose(
            stats[key]["q99"], np.quantile(allrows, 0.99, axis=0), rtol=1e-6, atol=1e-9
        )
        assert stats[key]["count"] == [sum(LENGTHS)]
    assert np.asarray(stats["observation.images.third_person"]["mean"]).shape == (3, 1, 1)
    assert stats["index"]["max"] == [sum(LENGTHS) - 1]
    assert "annotation.box_answer" not in stats  # LeRobot computes no statistics for strings


def test_rotation_many_episodes_per_file_and_chunks(tmp_path):
    root = tmp_path / "rot"
    episodes = [make_episode(seed, cameras=("third_person",)) for seed in range(8)]
    with LeRobotV3Writer(root, 10, "franka", {"third_person": (64, 64)}, JOINTS, chunks_size=2,
                         data_files_size_in_mb=0.02, video_files_size_in_mb=0.004, episodes_buffer=3) as writer:  # fmt: skip
        for ep in episodes:
            writer.add_episode(ep)
    meta = LeRobotV3Reader(root).episodes
    data_files = {(m["data/chunk_index"], m["data/file_index"]) for m in meta}
    video_files = {(m["videos/observation.images.third_person/chunk_index"],
                    m["videos/observation.images.third_person/file_index"]) for m in meta}  # fmt: skip
    assert len(data_files) >= 3 and len(video_files) >= 2
    assert (1, 0) in data_files  # chunks_size=2: the third file starts chunk 1
    per_file = [sum((m["data/chunk_index"], m["data/file_index"]) == f for m in meta) for f in data_files]
    assert max(per_file) >= 2
    per_video = [sum((m["videos/observation.images.third_person/chunk_index"],
                      m["videos/observation.images.third_person/file_index"]) == f for m in meta) for f in video_files]  # fmt: skip
    assert max(per_video) >= 2
    for f in data_files:
        assert (root / "data" / f"chunk-{f[0]:03d}" / f"file-{f[1]:03d}.parquet").is_file()
    for m in meta:  # timestamps restart at 0 in each new video file
        if m["videos/observation.images.third_person/from_timestamp"] == 0:
            assert m["episode_index"] == 0 or (m["videos/observation.images.third_person/chunk_index"],
                                               m["videos/observation.images.third_person/file_index"]) != (0, 0)  # fmt: skip
    assert len(list((root / "meta" / "episodes").rglob("*.parquet"))) >= 1
    for got, want in zip(read_lerobot_v3(root), episodes, strict=True):
        assert_same_episode(got, want)


def test_existing_output_refused_unless_overwrite(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        LeRobotV3Writer(root, 10, "franka", CAMERAS, JOINTS)
    assert (root / "keep.txt").exists()
    with LeRobotV3Writer(root, 10, "franka", CAMERAS, JOINTS, overwrite=True) as writer:
        writer.add_episode(make_episode(0))
    assert not (root / "keep.txt").exists()
    assert (root / "meta" / "info.json").is_file()


def test_failed_write_leaves_no_dataset(tmp_path):
    root = tmp_path / "ds"
    bad = make_episode(7)
    bad.state_ee[3, 2] = np.nan
    with (
        pytest.raises(ValueError, match=r"seed=7.*state_ee has NaN or inf at frame 3"),
        LeRobotV3Writer(root, 10, "franka", CAMERAS, JOINTS) as writer,
    ):
        writer.add_episode(make_episode(0))
        writer.add_episode(bad)
    assert not root.exists()
    assert not (tmp_path / "ds.partial").exists()
    # an interrupted run (no close) never produced root either: files live in <root>.partial until close
    writer = LeRobotV3Writer(root, 10, "franka", CAMERAS, JOINTS)
    writer.add_episode(make_episode(0))
    assert not root.exists() and (tmp_path / "ds.partial" / "data").is_dir()
    writer.abort()
    assert not (tmp_path / "ds.partial").exists()


def test_inconsistent_episodes_are_rejected_with_the_seed(tmp_path):
    with LeRobotV3Writer(tmp_path / "a", 10, "franka", CAMERAS, JOINTS) as writer:
        writer.add_episode(make_episode(0))
        with pytest.raises(ValueError, match=r"seed=5.*fps"):
            writer.add_episode(make_episode(5, fps=15.0))
        with pytest.raises(ValueError, match=r"seed=6.*camera 'wrist' missing"):
            writer.add_episode(make_episode(6, cameras=("third_person",)))
        other = make_episode(8)
        other.embodiment = "widowx_bridge"
        with pytest.raises(ValueError, match=r"seed=8.*one dataset per embodiment"):
            writer.add_episode(other)


def _peak_bytes(tmp_path, name, n_episodes):
    tracemalloc.start()
    try:
        with LeRobotV3Writer(tmp_path / name, 10, "franka", {"third_person": (32, 32)}, JOINTS,
                             reservoir_size=64, episodes_buffer=4) as writer:  # fmt: skip
            for seed in range(n_episodes):
                writer.add_episode(
                    make_episode(seed, length=8, size=32, cameras=("third_person",), trace_points=2)
                )
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_episode_count(tmp_path):
    _peak_bytes(tmp_path, "warm-up", 2)  # first-use allocations (lazy imports, codec tables) out of the way
    small = _peak_bytes(tmp_path, "ten", 10)
    large = _peak_bytes(tmp_path, "forty", 40)
    # Measured: ~0.86 MB both, within ~20 kB. Keeping only each episode's parquet columns (no images)
    # would add ~200 kB for the 30 extra episodes; keeping the images ~700 kB.
    assert large - small < 100_000, (small, large)


def test_episodes_without_grounding(tmp_path):
    plain = [make_episode(s, length=12, grounding=False, cameras=("wrist",)) for s in range(2)]
    with LeRobotV3Writer(tmp_path / "plain", 10, "franka", {"wrist": (64, 64)}, JOINTS) as writer:
        for ep in plain:
            writer.add_episode(ep)
    info = json.loads((tmp_path / "plain" / "meta" / "info.json").read_text())
    assert not any(k.startswith("annotation.") for k in info["features"])
    for got, want in zip(read_lerobot_v3(tmp_path / "plain"), plain, strict=True):
        assert_same_episode(got, want)
    # a labelled dataset may hold an unlabelled episode: its labels read back as absent, stored as missing
    mixed = [make_episode(0, length=12, cameras=("wrist",)), plain[1]]
    with LeRobotV3Writer(tmp_path / "mixed", 10, "franka", {"wrist": (64, 64)}, JOINTS) as writer:
        for ep in mixed:
            writer.add_episode(ep)
    back = list(read_lerobot_v3(tmp_path / "mixed"))
    assert_same_episode(back[0], mixed[0])
    assert_same_episode(back[1], mixed[1])
    data = pq.read_table(next((tmp_path / "mixed" / "data").rglob("*.parquet")))
    visible = np.asarray(data.column("annotation.target_visible"))
    assert np.all(visible[12:] == 0.0)
