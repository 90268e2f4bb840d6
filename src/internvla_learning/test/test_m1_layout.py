"""Export to upstream InternVLA-M1's v2.1 layout: files, modality.json against what upstream's loader
looks up, and dataset_statistics.json through our own loader (internvla_core.normalization)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from internvla_learning.m1_layout import M1LayoutWriter, read_m1_episode_columns
from learning_synthetic import JOINTS, make_episode

from internvla_core.normalization import action_stats, load_dataset_statistics, normalize_actions

CAMERAS = {"third_person": (64, 64), "wrist": (64, 64)}
LENGTHS = [20, 24, 28]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("m1") / "ds"
    episodes = [make_episode(seed, length=n) for seed, n in enumerate(LENGTHS)]
    with M1LayoutWriter(root, 10, "franka", CAMERAS, JOINTS) as writer:
        for ep in episodes:
            writer.add_episode(ep)
    return root, episodes


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_files_info_episodes_tasks(dataset):
    root, episodes = dataset
    for i in range(3):
        assert (root / "data" / "chunk-000" / f"episode_{i:06d}.parquet").is_file()
        for cam in CAMERAS:
            assert (
                root / "videos" / "chunk-000" / f"observation.images.{cam}" / f"episode_{i:06d}.mp4"
            ).is_file()
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v2.1"
    assert info["data_path"] == "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    assert (
        info["video_path"] == "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    )
    assert info["total_episodes"] == 3 and info["total_frames"] == sum(LENGTHS) and info["total_videos"] == 6
    eps = _jsonl(root / "meta" / "episodes.jsonl")
    assert [(e["episode_index"], e["length"], e["tasks"]) for e in eps] == [
        (i, n, [ep.instruction]) for i, (n, ep) in enumerate(zip(LENGTHS, episodes, strict=True))
    ]
    assert [e["seed"] for e in eps] == [0, 1, 2]
    tasks = _jsonl(root / "meta" / "tasks.jsonl")
    assert tasks == [
        {"task_index": 0, "task": episodes[0].instruction},
        {"task_index": 1, "task": episodes[1].instruction},
    ]
    assert len(_jsonl(root / "meta" / "episodes_stats.jsonl")) == 3
    cols = read_m1_episode_columns(root, 1)
    np.testing.assert_array_equal(cols["action"], episodes[1].action_ee_delta)
    np.testing.assert_array_equal(cols["observation.state"], episodes[1].state_ee)
    np.testing.assert_array_equal(cols["index"], np.arange(20, 44))
    assert np.all(np.isfinite(cols["annotation.target_box"]))


def test_modality_json_resolves_the_way_upstream_loader_reads_it(dataset):
    root, _ = dataset
    modality = json.loads((root / "meta" / "modality.json").read_text())
    info = json.loads((root / "meta" / "info.json").read_text())
    gr00t = json.loads((root / "meta" / "stats_gr00t.json").read_text())
    feats = info["features"]
    # upstream's Bridge / LIBERO configs: action.x ... action.gripper, one dimension each, in this order
    names = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
    assert [(k, v["start"], v["end"]) for k, v in modality["action"].items() if k in names] == [
        (n, i, i + 1) for i, n in enumerate(names)
    ]
    for group in ("state", "action"):
        for sub, meta in modality[group].items():
            # upstream slices stats_gr00t[original_key][stat][start:end] and the parquet column likewise
            column = meta["original_key"]
            assert column in feats and feats[column]["dtype"] == "float32", (group, sub)
            assert 0 <= meta["start"] < meta["end"] <= feats[column]["shape"][0], (group, sub)
            assert set(gr00t[column]) >= {"mean", "std", "min", "max", "q01", "q99"}
            assert len(gr00t[column]["q01"]) == feats[column]["shape"][0]
    assert modality["video"]["image_0"] == {"original_key": "observation.images.third_person"}
    for meta in modality["video"].values():
        ft = feats[meta["original_key"]]
        assert ft["dtype"] == "video"
        assert (
            ft["shape"][ft["names"].index("height")] == 64 and ft["shape"][ft["names"].index("width")] == 64
        )
        assert "channel" not in ft["names"]  # so upstream reads channels and fps from the info block
        assert ft["info"]["video.fps"] == 10 and ft["info"]["video.channels"] == 3
    assert modality["annotation"]["human.action.task_description"] == {"original_key": "task_index"}
    assert modality["annotation"]["target_box"] == {"original_key": "annotation.target_box"}


def test_dataset_statistics_load_in_our_nodes_and_match_numpy(dataset):
    root, episodes = dataset
    stats = load_dataset_statistics(root)
    assert list(stats) == ["franka"]  # franka_real's unnorm key
    entry = stats["franka"]
    actions = np.concatenate([e.action_ee_delta for e in episodes])
    states = np.concatenate([e.state_ee for e in episodes])
    np.testing.assert_allclose(
        entry["action"]["q01"], np.quantile(actions, 0.01, axis=0), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        entry["action"]["q99"], np.quantile(actions, 0.99, axis=0), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(entry["action"]["mean"], actions.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(entry["action"]["std"], actions.std(0), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(entry["state"]["max"], states.max(0))
    assert entry["action"]["mask"] == [True] * 6 + [False]
    assert entry["num_transitions"] == sum(LENGTHS) and entry["num_trajectories"] == 3
    a = action_stats(stats, "franka")
    normalized = normalize_actions(actions, a)
    assert normalized.min() >= -1 and normalized.max() <= 1
    np.testing.assert_array_equal(normalized[:, 6], actions[:, 6])  # gripper passes through (mask false)


def test_unnorm_key_follows_the_embodiment_and_can_be_set(tmp_path):
    ep = make_episode(0)
    ep.embodiment, ep.robot = "widowx_bridge", "widowx"
    with M1LayoutWriter(tmp_path / "w", 10, "widowx", CAMERAS, JOINTS) as writer:
        writer.add_episode(ep)
    assert list(load_dataset_statistics(tmp_path / "w")) == ["oxe_bridge"]
    with M1LayoutWriter(tmp_path / "c", 10, "franka", CAMERAS, JOINTS, unnorm_key="my_lab") as writer:
        writer.add_episode(make_episode(1))
    assert list(load_dataset_statistics(tmp_path / "c")) == ["my_lab"]


def test_existing_output_refused_and_failed_write_cleaned(tmp_path):
    (tmp_path / "ds").mkdir()
    with pytest.raises(FileExistsError):
        M1LayoutWriter(tmp_path / "ds", 10, "franka", CAMERAS, JOINTS)
    bad = make_episode(9)
    bad.action_joint[0, 0] = np.inf
    with (
        pytest.raises(ValueError, match=r"seed=9.*action_joint has NaN or inf at frame 0"),
        M1LayoutWriter(tmp_path / "ds", 10, "franka", CAMERAS, JOINTS, overwrite=True) as writer,
    ):
        writer.add_episode(make_episode(0))
        writer.add_episode(bad)
    assert not (tmp_path / "ds").exists() and not (tmp_path / "ds.partial").exists()
