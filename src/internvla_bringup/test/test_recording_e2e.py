"""End to end: a scripted command sequence through the lock-step sim over real rclpy, recorded by the
recorder node, converted by internvla_learning.mcap_convert, equals the same commands applied to a
SimEnv stepped directly (actions exactly, states and frames within rendering/physics noise) where the
sim applies commands directly, and in every case the states and frames the live topics carried at each
tick's stamp."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mujoco")
pytest.importorskip("rosbags")

STEPS = 8
TASK, SEED = "red_on_plate", 3


def wait_for(condition, timeout=60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def scripted_commands(home: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Deterministic joint targets near home and a gripper that closes half way."""
    out = []
    for k in range(STEPS):
        q = home + 0.04 * np.sin(0.7 * (k + 1) + np.arange(home.size))
        out.append((q, 1.0 if k < STEPS // 2 else 0.0))
    return out


@pytest.mark.ros
def test_recorded_sim_episode_converts_to_the_commands_and_observations_of_a_directly_stepped_sim(
    tmp_path, spin_in_background
):
    from builtin_interfaces.msg import Duration
    from internvla_learning.episode import load_episode
    from internvla_learning.mcap_convert import Contract, convert
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from internvla_bringup.graphs import config_dir
    from internvla_bringup.recorder_node import RecorderNode
    from internvla_core.stamps import split_seconds
    from internvla_sim.scene import ROBOT_SCENES
    from internvla_sim.sim_node import SimNode

    contract_path = config_dir() / "recording" / "sim_franka.yaml"
    contract = Contract.load(contract_path)
    width, height = (contract.images["third_person"][k] for k in ("width", "height"))
    home = np.array(ROBOT_SCENES["franka"].home, dtype=np.float64)
    commands = scripted_commands(home)

    context = Context()
    rclpy.init(context=context)
    sim = SimNode(
        context=context,
        parameter_overrides=[
            Parameter("task", value=TASK),
            Parameter("seed", value=SEED),
            Parameter("width", value=width),
            Parameter("height", value=height),
            Parameter("publish_depth", value=False),
            Parameter("lockstep_timeout", value=60.0),
        ],
    )
    recorder = RecorderNode(
        context=context,
        parameter_overrides=[
            Parameter("use_sim_time", value=True),
            Parameter("contract", value="sim_franka"),
            Parameter("output_dir", value=str(tmp_path / "bags")),
        ],
    )
    driver = Node("driver", context=context)
    stamps: list[int] = []
    seen_joints: dict[int, dict[str, float]] = {}  # what the live topics carried, by stamp
    seen_images: dict[int, np.ndarray] = {}

    def on_joints(m) -> None:
        stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        seen_joints[stamp] = dict(zip(m.name, m.position))
        stamps.append(stamp)

    def on_image(m) -> None:
        stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        seen_images[stamp] = np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, 3).copy()

    driver.create_subscription(JointState, "joint_states", on_joints, 50)
    driver.create_subscription(Image, "camera/image_raw", on_image, 50)
    traj_pub = driver.create_publisher(JointTrajectory, "arm_controller/joint_trajectory", 10)
    grip_pub = driver.create_publisher(Float64, "gripper/command", 10)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    for node in (sim, recorder, driver):
        executor.add_node(node)
    halt = spin_in_background(executor)
    try:
        assert recorder.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert recorder.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert wait_for(lambda: traj_pub.get_subscription_count() and stamps, 60)
        ok, message, bag = recorder.start_episode("put the red block on the plate")
        assert ok, message
        time.sleep(0.5)  # the recorder's subscriptions are matched before the first command
        t_0 = stamps[0]  # the sim's clock starts where SimEnv's reset leaves it
        for k, (q, gripper) in enumerate(commands):
            t_k = t_0 + round(k * sim.env.control_dt * 1e9)
            assert wait_for(lambda t_k=t_k: stamps and stamps[-1] == t_k), (k, stamps[-3:])
            # the recorder's clock shows t_k: the gripper command (no header) is logged on tick k
            assert wait_for(lambda t_k=t_k: recorder.get_clock().now().nanoseconds >= t_k)
            grip_pub.publish(Float64(data=gripper))
            time.sleep(0.05)  # the sim holds it before the trajectory makes it step
            msg = JointTrajectory(joint_names=list(sim.arm_joints))
            msg.header.stamp.sec, msg.header.stamp.nanosec = split_seconds(t_k / 1e9)
            # reached one control period later, as the executor commands a JointTrajectoryController
            period = Duration(sec=0, nanosec=round(sim.env.control_dt * 1e9))
            msg.points = [JointTrajectoryPoint(positions=[float(v) for v in q], time_from_start=period)]
            traj_pub.publish(msg)
        t_last = t_0 + round(STEPS * sim.env.control_dt * 1e9)
        assert wait_for(lambda: stamps and stamps[-1] == t_last)
        time.sleep(0.3)
        assert recorder.mark_episode(True, "scripted")[0]
        ok, message, path, written, _ = recorder._stop_episode(discard=False, reason="test")
        assert ok and path == bag and written > 0
    finally:
        sim_dt, sim_arm = sim.env.control_dt, list(sim.arm_joints)
        # a sim that applies each command as the next step's joint target can be replayed on a SimEnv;
        # one that emulates a JointTrajectoryController (interpolating) is checked on its topics only
        direct_commands = not hasattr(sim, "arm_controller")
        halt()
        executor.shutdown()
        for node in (driver, recorder, sim):
            node.destroy_node()
        rclpy.shutdown(context=context)

    sidecar = json.loads((tmp_path / "bags" / "episode_000000" / "episode.json").read_text())
    assert sidecar["success"] is True and sidecar["task"] == "put the red block on the plate"
    results = convert([bag], contract_path, tmp_path / "staging")
    assert not results[bag].startswith("error"), results[bag]
    episode = load_episode(results[bag])
    assert episode.length == STEPS and episode.success and episode.instruction.startswith("put the red")

    expected_actions = np.array([[*q, g] for q, g in commands], dtype=np.float32)
    np.testing.assert_allclose(episode.action_joint, expected_actions, atol=1e-5)
    np.testing.assert_allclose(episode.timestamps, np.arange(STEPS) * sim_dt, atol=1e-9)
    # frames and states are those the live topics carried at each tick's stamp
    ticks = [t_0 + round(k * sim_dt * 1e9) for k in range(STEPS)]
    live_joints = np.array([[seen_joints[t][j] for j in sim_arm] for t in ticks], dtype=np.float32)
    np.testing.assert_allclose(episode.state_joint, live_joints, atol=1e-6)
    assert np.array_equal(episode.images["third_person"], np.stack([seen_images[t] for t in ticks]))
    assert np.abs(np.diff(episode.state_joint, axis=0)).max() > 1e-3  # the commands moved the arm
    if direct_commands:
        compare_with_direct_env(episode, commands, sim_dt, width, height)
    # action_ee_delta: FK of successive commanded targets (first from the measured pose), tool frame
    from internvla_core.embodiments.base import delta_between
    from internvla_core.kinematics import IKSolver
    from internvla_core.robot_assets import robot_description

    fk = IKSolver.from_description(robot_description("panda")).fk
    previous = fk(live_joints[0])
    for k, (q, gripper) in enumerate(commands):
        expected = [*delta_between(previous, fk(q), "tool"), gripper]
        np.testing.assert_allclose(episode.action_ee_delta[k], expected, atol=1e-5)
        previous = fk(q)
    assert np.abs(episode.action_ee_delta[1:, :3]).max() > 1e-3  # the arm was commanded to move


def compare_with_direct_env(episode, commands, dt, width, height) -> None:
    """The same commands applied to a SimEnv stepped directly (a sim that applies each command as the
    joint target of the next step; with a JointTrajectoryController emulation the live topics above
    are the reference)."""
    from internvla_sim.env import SimEnv

    env = SimEnv(TASK, SEED, dt, width, height, False, robot="franka")
    try:
        frames, joints = [], []
        for q, gripper in commands:
            frames.append(env.render("third_person"))
            joints.append(env.arm_positions())
            env.apply_joint_targets(q, gripper)
            env.step()
    finally:
        env.close()
    np.testing.assert_allclose(episode.state_joint, np.array(joints, dtype=np.float32), atol=1e-5)
    diff = np.abs(episode.images["third_person"].astype(np.int16) - np.array(frames).astype(np.int16))
    assert diff.mean() < 1.0, diff.mean()
