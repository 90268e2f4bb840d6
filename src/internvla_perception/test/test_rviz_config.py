"""The shipped RViz config parses and shows what the graph contract publishes (no RViz needed)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
RVIZ = ROOT / "src" / "internvla_bringup" / "rviz" / "internvla.rviz"
CONTRACT = ROOT / "docs" / "graph-contract.md"


def displays() -> dict[str, dict]:
    config = yaml.safe_load(RVIZ.read_text())
    return {d["Name"]: d for d in config["Visualization Manager"]["Displays"]}


def contract_topics() -> dict[str, str]:
    """topic name -> message type, from the graph contract's topic table."""
    rows = re.findall(r"^\| `([^`]+)` \| ([\w/]+)", CONTRACT.read_text(), flags=re.MULTILINE)
    return dict(rows)


def test_rviz_config_shows_camera_grounding_robot_and_tf():
    shown = displays()
    classes = {d["Class"] for d in shown.values()}
    assert {
        "rviz_default_plugins/TF",
        "rviz_default_plugins/RobotModel",
        "rviz_default_plugins/Image",
        "rviz_default_plugins/MarkerArray",
    } <= classes
    robot = next(d for d in shown.values() if d["Class"] == "rviz_default_plugins/RobotModel")
    assert robot["Description Source"] == "Topic"
    assert robot["Description Topic"]["Value"] == "robot_description"
    assert robot["Description Topic"]["Durability Policy"] == "Transient Local"  # latched like the publisher
    assert yaml.safe_load(RVIZ.read_text())["Visualization Manager"]["Global Options"]["Fixed Frame"]


def test_every_topic_display_subscribes_to_a_contract_topic_of_the_matching_type():
    topics = contract_topics()
    expected_type = {
        "rviz_default_plugins/Image": "sensor_msgs/Image",
        "rviz_default_plugins/MarkerArray": "visualization_msgs/MarkerArray",
        "rviz_default_plugins/Pose": "geometry_msgs/PoseStamped",
    }
    checked = 0
    for display in displays().values():
        if display["Class"] in expected_type:
            topic = display["Topic"]["Value"]
            assert topic in topics, f"{display['Name']}: {topic} is not in docs/graph-contract.md"
            assert topics[topic] == expected_type[display["Class"]]
            checked += 1
    assert checked >= 4  # camera, debug image, markers, executor pose
