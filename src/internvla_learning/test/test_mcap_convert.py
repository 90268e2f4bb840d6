"""MCAP -> Episode: alignment by stamp and refusals of bad input, on small bags written here (no rclpy)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags")
pytest.importorskip("pinocchio")

from internvla_learning.episode import load_episode
from internvla_learning.mcap_convert import Contract, ConvertError, convert, convert_bag, main
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_KILTED)
ARM = [f"joint{i}" for i in range(1, 8)]
HOME = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8])
DT = 100_000_000  # 10 Hz
T0 = 5 * DT
W, H = 4, 3
CONTRACT = f"""\
robot: franka
fk_model: panda
embodiment: franka_real
reference_frame: tool
fps: 10.0
stamp_tolerance_s: 0.02
observations:
  images:
    third_person: {{topic: camera/image_raw, type: sensor_msgs/msg/Image, width: {W}, height: {H}}}
  joint_state:
    topic: joint_states
    type: sensor_msgs/msg/JointState
    arm_joints: [{", ".join(ARM)}]
    gripper_joints: [finger_joint1, finger_joint2]
    gripper_closed: [0.0, 0.0]
    gripper_open: [0.04, 0.04]
  ee_pose: null
actions:
  joint_trajectory: {{topic: arm_controller/joint_trajectory, type: trajectory_msgs/msg/JointTrajectory}}
  gripper: {{topic: gripper/command, type: std_msgs/msg/Float64, initial: 1.0}}
"""


def header(t_ns: int):
    T = TS.types
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=""
    )


def joint_state(t_ns: int, q: np.ndarray):
    return TS.types["sensor_msgs/msg/JointState"](
        header=header(t_ns),
        name=[*ARM, "finger_joint1", "finger_joint2"],
        position=np.array([*q, 0.04, 0.04], dtype=np.float64),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )


def image(t_ns: int, value: int):
    data = np.full((H, W, 3), value, dtype=np.uint8)
    data[..., 1] = 7  # rgb channels differ, so a bgr8 swap would show
    return TS.types["sensor_msgs/msg/Image"](
        header=header(t_ns), height=H, width=W, encoding="rgb8", is_bigendian=0, step=W * 3, data=data.ravel()
    )


def trajectory(t_ns: int, q: np.ndarray, anchor: np.ndarray | None = None):
    """As the executor sends them: the current setpoint at 0, the tick's target one period later, the
    rest of the chunk after it."""
    T = TS.types

    def point(positions, at_ns):
        return T["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.asarray(positions, dtype=np.float64),
            velocities=np.zeros(0),
            accelerations=np.zeros(0),
            effort=np.zeros(0),
            time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=at_ns),
        )

    points = [point(q, DT), point(q + 0.5, 2 * DT)]
    if anchor is not None:
        points.insert(0, point(anchor, 0))
    return T["trajectory_msgs/msg/JointTrajectory"](header=header(t_ns), joint_names=list(ARM), points=points)


def measured(k: int) -> np.ndarray:
    return HOME + 0.01 * k


def commanded(k: int) -> np.ndarray:
    return HOME + 0.01 * k + 0.02


def episode_messages(n: int = 5) -> list[tuple[str, str, object, int]]:
    """(topic, type, message, log time) of an n-tick episode, in arrival order."""
    out = []
    for k in range(n):
        t = T0 + k * DT
        out += [
            ("/joint_states", "sensor_msgs/msg/JointState", joint_state(t, measured(k)), t + 1000),
            ("/camera/image_raw", "sensor_msgs/msg/Image", image(t, 10 * k), t + 2000),
            ("/gripper/command", "std_msgs/msg/Float64", TS.types["std_msgs/msg/Float64"](data=float(k < 3)), t + 3000),
            ("/arm_controller/joint_trajectory", "trajectory_msgs/msg/JointTrajectory", trajectory(t, commanded(k), commanded(k - 1) if k else None),
             t + 4000),
        ]  # fmt: skip
    return out


def write_bag(path, messages) -> None:
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for topic, msgtype, msg, log_time in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(connections[topic], log_time, TS.serialize_cdr(msg, msgtype))


@pytest.fixture
def contract(tmp_path):
    path = tmp_path / "contract.yaml"
    path.write_text(CONTRACT)
    return Contract.load(path)


def test_a_clean_bag_converts_to_the_commanded_actions_and_measured_states(tmp_path, contract):
    from internvla_core.embodiments.base import delta_between
    from internvla_core.kinematics import IKSolver
    from internvla_core.robot_assets import robot_description

    write_bag(tmp_path / "bag", episode_messages())
    episode = convert_bag(tmp_path / "bag", contract)
    assert episode.length == 5 and episode.fps == 10.0
    np.testing.assert_allclose(episode.timestamps, np.arange(5) * 0.1, atol=1e-12)
    np.testing.assert_allclose(episode.state_joint, [measured(k) for k in range(5)], atol=1e-6)
    np.testing.assert_allclose(episode.action_joint[:, :7], [commanded(k) for k in range(5)], atol=1e-6)
    assert episode.action_joint[:, 7].tolist() == [1, 1, 1, 0, 0]
    assert episode.images["third_person"][:, 0, 0].tolist() == [[10 * k, 7, 10 * k] for k in range(5)]
    assert np.allclose(episode.state_ee[:, 6], 1.0)  # fingers at 0.04: fully open
    fk = IKSolver.from_description(robot_description("panda")).fk
    np.testing.assert_allclose(
        episode.action_ee_delta[0, :6], delta_between(fk(measured(0)), fk(commanded(0)), "tool"), atol=1e-5
    )
    np.testing.assert_allclose(
        episode.action_ee_delta[3, :6], delta_between(fk(commanded(2)), fk(commanded(3)), "tool"), atol=1e-5
    )


def test_streams_align_by_stamp_not_by_arrival(tmp_path, contract):
    messages = episode_messages()
    # joint_states arrive shuffled and late (log times after everything else) ...
    late = [m for m in messages if m[0] == "/joint_states"]
    others = [m for m in messages if m[0] != "/joint_states"]
    shuffled = [late[i] for i in (3, 0, 4, 2, 1)]
    arrivals = [(t, ty, msg, T0 + 20 * DT + i) for i, (t, ty, msg, _) in enumerate(shuffled)]
    # ... and a stray image stamped between two ticks (outside the tolerance) arrives last
    stray = ("/camera/image_raw", "sensor_msgs/msg/Image", image(T0 + DT + DT // 2, 255), T0 + 30 * DT)
    write_bag(tmp_path / "bag", [*others, *arrivals, stray])
    episode = convert_bag(tmp_path / "bag", contract)
    np.testing.assert_allclose(episode.state_joint, [measured(k) for k in range(5)], atol=1e-6)
    assert episode.images["third_person"][:, 0, 0, 0].tolist() == [0, 10, 20, 30, 40]


def test_a_missing_topic_is_named_with_its_contract_line(tmp_path, contract):
    write_bag(tmp_path / "bag", [m for m in episode_messages() if m[0] != "/camera/image_raw"])
    with pytest.raises(ConvertError, match=r"topic camera/image_raw \(contract.yaml:9\) is absent"):
        convert_bag(tmp_path / "bag", contract)


def test_a_gap_beyond_the_tolerance_names_the_time(tmp_path, contract):
    messages = [m for m in episode_messages() if not (m[0] == "/joint_states" and m[3] // DT == 7)]
    write_bag(tmp_path / "bag", messages)
    with pytest.raises(ConvertError, match=r"gap in joint_states .*tick 2 at t=0\.700 s"):
        convert_bag(tmp_path / "bag", contract)


def test_nan_in_a_state_names_the_frame(tmp_path, contract):
    messages = episode_messages()
    bad = measured(3).copy()
    bad[2] = np.nan
    messages = [
        (t, ty, joint_state(T0 + 3 * DT, bad), lt)
        if t == "/joint_states" and lt // DT == 8
        else (t, ty, m, lt)
        for t, ty, m, lt in messages
    ]
    write_bag(tmp_path / "bag", messages)
    with pytest.raises(ConvertError, match=r"NaN in joint_states at frame 3"):
        convert_bag(tmp_path / "bag", contract)


def test_a_truncated_file_reports_how_far_it_reads_and_converts_nothing(tmp_path, contract):
    write_bag(tmp_path / "bag", episode_messages(20))
    (mcap,) = (tmp_path / "bag").glob("*.mcap")
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 2 // 3])
    results = convert([tmp_path / "bag"], contract.path, tmp_path / "out")
    message = results[str(tmp_path / "bag")]
    assert message.startswith("error: ") and "truncated" in message and "readable up to byte" in message
    assert f"of {len(data) * 2 // 3}" in message
    assert not list((tmp_path / "out").iterdir())


def test_an_existing_output_is_never_overwritten_without_the_flag(tmp_path, contract):
    write_bag(tmp_path / "bag", episode_messages())
    out = tmp_path / "out"
    first = convert([tmp_path / "bag"], contract.path, out)[str(tmp_path / "bag")]
    assert first == str(out / "bag.npz")
    (out / "bag.npz").write_bytes(b"keep me")
    assert main(["--contract", str(contract.path), "--out", str(out), str(tmp_path / "bag")]) == 1
    assert (out / "bag.npz").read_bytes() == b"keep me"
    assert (
        main(["--contract", str(contract.path), "--out", str(out), "--overwrite", str(tmp_path / "bag")]) == 0
    )
    assert load_episode(out / "bag.npz").length == 5
