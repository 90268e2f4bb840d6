"""End to end: the data engine's episode of one seed, replayed through the ROS graph, recorded, converted.

The engine (no ROS) runs the scripted expert on the family task of SEED and returns its Episode. The
same seed is then run by the lock-step sim node over real rclpy, commanded with the engine's recorded
joint targets and gripper commands (a JointTrajectory per step whose single point lies one physics step
ahead, i.e. a position stream, as the engine drives its servos), recorded by the recorder node and
converted by ``internvla_learning.mcap_convert``. The converted episode has the same actions (exactly:
the commanded joints, and ``delta_between`` of their FK), equivalent frames and states (physics through
the JointTrajectoryController emulation instead of direct servo targets), the same success, and exactly
the states and frames the live topics carried at each tick's stamp."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mujoco")
pytest.importorskip("rosbags")

SEED = 2  # a short family episode for the Franka (the expert solves it)


from internvla_ros_common.testing import wait_for  # noqa: E402  (needs rclpy: after the skips)

TIMEOUT = 60.0


@pytest.mark.ros
def test_an_engine_episode_replayed_through_ros_records_the_same_actions_and_equivalent_frames(
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
    from internvla_sim.data_engine import generate_episode
    from internvla_sim.sim_node import SimNode

    contract_path = config_dir() / "recording" / "sim_franka.yaml"
    contract = Contract.load(contract_path)
    width, height = (contract.images["third_person"][k] for k in ("width", "height"))
    engine = generate_episode("franka", SEED, image_size=(width, height))
    assert engine.success and engine.reference_frame == "tool"
    commands = [(row[:-1].astype(np.float64), float(row[-1])) for row in engine.action_joint]
    steps = len(commands)

    context = Context()
    rclpy.init(context=context)
    sim = SimNode(
        context=context,
        parameter_overrides=[
            Parameter("task", value="family"),
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
        assert sim.trigger_configure() == TransitionCallbackReturn.SUCCESS  # the scene, clock paused
        ok, message, bag = recorder.start_episode(engine.instruction)
        assert ok, message
        time.sleep(0.5)  # the recorder's subscriptions are matched before the sim's first observation
        # the clock source last, as the starters do: its first observation is recorded
        assert sim.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert wait_for(lambda: traj_pub.get_subscription_count() and stamps, TIMEOUT)
        t_0 = stamps[0]  # the sim's clock starts where SimEnv's reset leaves it
        for k, (q, gripper) in enumerate(commands):
            t_k = t_0 + round(k * sim.env.control_dt * 1e9)
            assert wait_for(lambda t_k=t_k: stamps and stamps[-1] == t_k, TIMEOUT), (k, stamps[-3:])
            # the recorder's clock shows t_k: the gripper command (no header) is logged on tick k
            assert wait_for(lambda t_k=t_k: recorder.get_clock().now().nanoseconds >= t_k, TIMEOUT)
            grip_pub.publish(Float64(data=gripper))
            time.sleep(0.05)  # the sim holds it before the trajectory makes it step
            msg = JointTrajectory(joint_names=list(sim.arm_joints))
            msg.header.stamp.sec, msg.header.stamp.nanosec = split_seconds(t_k / 1e9)
            # reached one physics step later: a position stream, as the engine commands its servos
            physics_step = Duration(sec=0, nanosec=round(sim.env.model.opt.timestep * 1e9))
            msg.points = [JointTrajectoryPoint(positions=[float(v) for v in q], time_from_start=physics_step)]
            traj_pub.publish(msg)
        t_last = t_0 + round(steps * sim.env.control_dt * 1e9)
        assert wait_for(lambda: stamps and stamps[-1] == t_last, TIMEOUT)
        time.sleep(0.3)
        sim_success = sim.env.success()
        assert recorder.mark_episode(sim_success, "engine replay")[0]
        ok, message, path, written, _ = recorder.stop_episode(discard=False, reason="test")
        assert ok and path == bag and written > 0
    finally:
        sim_dt, sim_arm = sim.env.control_dt, list(sim.arm_joints)
        halt()
        executor.shutdown()
        for node in (driver, recorder, sim):
            node.destroy_node()
        rclpy.shutdown(context=context)

    sidecar = json.loads((tmp_path / "bags" / "episode_000000" / "episode.json").read_text())
    assert sidecar["task"] == engine.instruction
    assert sim_success and sidecar["success"] is True, "the replayed expert episode solves the task over ROS"
    results = convert([bag], contract_path, tmp_path / "staging")
    assert not results[bag].startswith("error"), results[bag]
    episode = load_episode(results[bag])
    assert episode.length == steps and episode.success and episode.instruction == engine.instruction
    np.testing.assert_allclose(episode.timestamps, engine.timestamps, atol=1e-9)

    # the same actions: commanded joints exactly, end-effector deltas from their FK in the tool frame
    np.testing.assert_allclose(episode.action_joint, engine.action_joint, atol=1e-5)
    np.testing.assert_allclose(episode.action_ee_delta, engine.action_ee_delta, atol=1e-5)
    assert np.abs(episode.action_ee_delta[:, :3]).max() > 1e-3  # the arm was commanded to move

    # frames and states are exactly those the live topics carried at each tick's stamp ...
    ticks = [t_0 + round(k * sim_dt * 1e9) for k in range(steps)]
    live_joints = np.array([[seen_joints[t][j] for j in sim_arm] for t in ticks], dtype=np.float32)
    np.testing.assert_allclose(episode.state_joint, live_joints, atol=1e-6)
    assert np.array_equal(episode.images["third_person"], np.stack([seen_images[t] for t in ticks]))
    # ... and equivalent to the engine's (the same scene; the arm driven through the JTC emulation)
    assert np.abs(episode.state_joint - engine.state_joint).max() < 0.02
    np.testing.assert_allclose(episode.state_ee[:, :3], engine.state_ee[:, :3], atol=5e-3)
    diff = np.abs(
        episode.images["third_person"].astype(np.int16) - engine.images["third_person"].astype(np.int16)
    )
    assert diff.mean() < 1.0, diff.mean()
    print(f"engine vs ROS replay: max joint diff {np.abs(episode.state_joint - engine.state_joint).max():.2e} rad, "
          f"mean pixel diff {diff.mean():.3f}")  # fmt: skip
