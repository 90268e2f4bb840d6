"""Episode files without ROS: the contract's topics, directory numbering, sidecars, duration limit."""

from __future__ import annotations

import json

import pytest

from internvla_core.episode_files import (
    contract_entries,
    mark_sidecar_file,
    new_sidecar,
    next_episode_directory,
    over_duration,
    resolve_contract,
    write_json,
)

CONTRACT = {
    "observations": {
        "images": {"third_person": {"topic": "/camera/image_raw", "type": "sensor_msgs/msg/Image"}},
        "joint_state": {"topic": "/joint_states", "type": "sensor_msgs/msg/JointState"},
        "ee_pose": {"topic": "/ee_pose", "type": "geometry_msgs/msg/PoseStamped"},
    },
    "actions": {
        "joint_trajectory": {
            "topic": "/arm_controller/joint_trajectory",
            "type": "trajectory_msgs/msg/JointTrajectory",
        },
        "gripper": {"topic": "/gripper/command", "type": "std_msgs/msg/Float64"},
    },
    "extra_topics": [
        {"topic": "/task/success", "type": "std_msgs/msg/Bool", "latched": True},
        {"topic": "/joint_states", "type": "sensor_msgs/msg/JointState"},  # a repeat: kept once
        {"topic": "/tf", "type": "tf2_msgs/msg/TFMessage", "optional": True},
    ],
}


def test_contract_topics_come_features_first_each_once_with_latched_and_optional_flags():
    entries = contract_entries(CONTRACT)
    assert [e["topic"] for e in entries] == [
        "/camera/image_raw",
        "/joint_states",
        "/ee_pose",
        "/arm_controller/joint_trajectory",
        "/gripper/command",
        "/task/success",
        "/tf",
    ]
    flags = {e["topic"]: (e["latched"], e["optional"]) for e in entries}
    assert flags["/task/success"] == (True, False) and flags["/tf"] == (False, True)
    assert flags["/joint_states"] == (False, False)


def test_episode_directories_follow_the_highest_number_and_are_never_reused(tmp_path):
    (tmp_path / "episode_000004").mkdir()
    (tmp_path / "episode_notes").mkdir()
    first = next_episode_directory(tmp_path)
    second = next_episode_directory(tmp_path)
    assert (first.name, second.name) == ("episode_000005", "episode_000006")
    assert first.is_dir() and second.is_dir()


def test_sidecars_are_written_whole_and_marked_later(tmp_path):
    path = tmp_path / "episode.json"
    write_json(path, new_sidecar("pick the cup", "sim_franka.yaml", "sim_franka", 12.0))
    assert not (tmp_path / "episode.json.partial").exists()
    mark_sidecar_file(path, True, "clean grasp")
    sidecar = json.loads(path.read_text())
    assert (
        sidecar["task"] == "pick the cup" and sidecar["success"] is True and sidecar["note"] == "clean grasp"
    )


def test_a_contract_is_a_path_or_a_setup_name_and_a_missing_one_says_so(tmp_path):
    (tmp_path / "sim_franka.yaml").write_text("{}")
    assert resolve_contract("sim_franka", tmp_path) == tmp_path / "sim_franka.yaml"
    assert resolve_contract(str(tmp_path / "sim_franka.yaml"), tmp_path).is_file()
    with pytest.raises(ValueError, match="does not exist"):
        resolve_contract("franka_real", tmp_path)
    with pytest.raises(ValueError, match="is empty"):
        resolve_contract("", tmp_path)


def test_the_duration_limit_stops_only_past_it_and_zero_means_none():
    assert not over_duration(0, 10 * 10**9, 10.0)
    assert over_duration(0, 10 * 10**9 + 1, 10.0)
    assert not over_duration(0, 10**15, 0.0)
