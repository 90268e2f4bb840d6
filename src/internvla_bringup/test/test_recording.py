"""The demo's recording is a rosbag2-style MCAP that rosbags (no rclpy) reads and decodes completely."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mujoco")
pytest.importorskip("rosbags")

PROMISED = (
    "/camera/image_raw",
    "/camera/depth/image_raw",
    "/camera/camera_info",
    "/joint_states",
    "/ee_pose",
    "/grounding",
    "/grounding/debug_image",
    "/grounding/markers",
    "/action_chunk",
    "/arm_controller/joint_trajectory",
    "/gripper/command",
    "/task/success",
    "/task/instruction",
    "/robot_description",
    "/clock",
    "/diagnostics",
    "/chunk_executor/status",
)
# the sim publishes /tf and /tf_static where tf2_msgs is installed (full ROS installs)
TF = ("/tf", "/tf_static") if importlib.util.find_spec("tf2_msgs") else ()


def read_everything(path):
    """Every message of every topic decoded with rosbags from the schemas inside the file."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.EMPTY)
    decoded: dict[str, list] = {}
    with Reader(path) as reader:
        connections = {c.topic: c for c in reader.connections}
        for c in reader.connections:
            typestore.register(get_types_from_msg(c.msgdef.data, c.msgtype))
        for connection, log_time, data in reader.messages():
            msg = typestore.deserialize_cdr(data, connection.msgtype)
            decoded.setdefault(connection.topic, []).append((log_time, msg))
        count = reader.message_count
    return connections, decoded, count


@pytest.mark.ros
def test_demo_recording_is_read_and_decoded_by_rosbags_without_rclpy(tmp_path):
    from mcap.reader import make_reader

    from internvla_bringup.demo import main

    # 12 steps: 1.2 s of sim time, so the 1 Hz /diagnostics (timers on the sim clock) publish too
    argv = ["--out", str(tmp_path), "--steps", "12", "--width", "96", "--height", "72", "--timeout", "300"]
    assert main(argv) == 0
    assert (tmp_path / "metadata.yaml").is_file()
    # the bag directory (metadata.yaml) and the bare file both open, with the same content
    for path in (tmp_path, tmp_path / "episode.mcap"):
        connections, decoded, count = read_everything(path)
        assert sum(len(v) for v in decoded.values()) == count > 0
        missing = [t for t in (*PROMISED, *TF) if not decoded.get(t)]
        assert not missing, f"not recorded: {missing}; recorded: {sorted(decoded)}"
        for topic, connection in connections.items():
            assert "/msg/" in connection.msgtype, (topic, connection.msgtype)
        for topic in ("/task/success", "/task/instruction", "/robot_description", *TF[1:]):
            (qos,) = connections[topic].ext.offered_qos_profiles
            assert qos.durability.name == "TRANSIENT_LOCAL", topic
        assert connections["/camera/image_raw"].ext.offered_qos_profiles[0].durability.name == "VOLATILE"

    # log_time: receive time on the graph (sim) clock, never 0; publish_time: the header stamp
    with open(tmp_path / "episode.mcap", "rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary.statistics.message_count == count
        assert {s.name for s in summary.schemas.values()} >= {"sensor_msgs/msg/Image", "std_msgs/msg/Float64"}
        channels = {c.id: c.topic for c in summary.channels.values()}
        stamps = {}
        for _schema, channel, message in reader.iter_messages():
            assert message.log_time > 0, channels[channel.id]
            stamps.setdefault(channel.topic, []).append((message.log_time, message.publish_time))
    images = decoded["/camera/image_raw"]
    published = [p for _, p in stamps["/camera/image_raw"]]
    assert published == [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in images]
    assert len(set(published)) >= 12  # one observation per control step (plus lock-step re-publications)
    # received on the sim clock at (or after) the stamp of the step they belong to
    assert all(log >= pub for log, pub in stamps["/camera/image_raw"])
    clock = [m.clock.sec * 10**9 + m.clock.nanosec for _, m in decoded["/clock"]]
    # the sim clock advanced during the goal and the log times follow it (0 held to the first reading)
    first_nonzero = min(c for c in clock if c > 0)
    assert min(t for t, _ in stamps["/clock"]) == first_nonzero
    assert max(t for t, _ in stamps["/joint_states"]) >= max(published)
    for _, msg in images:
        assert msg.encoding == "rgb8" and (msg.width, msg.height) == (96, 72)
