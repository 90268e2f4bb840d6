"""The simulated loop over real rclpy: sim (lock-step) -> policy_node -> chunk_executor -> sim arm."""

from __future__ import annotations

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
pytest.importorskip("mujoco")

from rclpy.action import ActionClient  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from internvla_msgs.action import ExecuteInstruction  # noqa: E402
from internvla_msgs.msg import ActionChunk  # noqa: E402
from internvla_policy.chunk_executor_node import ChunkExecutorNode  # noqa: E402
from internvla_policy.policy_node import PolicyNode  # noqa: E402
from internvla_ros_common.testing import wait_for  # noqa: E402
from internvla_sim.sim_node import SimNode  # noqa: E402


@pytest.mark.ros
def test_lockstep_sim_advances_one_step_per_command_and_the_policy_moves_the_simulated_arm(
    spin_in_background,
):
    context = Context()
    rclpy.init(context=context)
    sim_time = [Parameter("use_sim_time", value=True)]
    sim = SimNode(
        context=context, parameter_overrides=[Parameter("width", value=160), Parameter("height", value=120)]
    )
    policy = PolicyNode(
        context=context, parameter_overrides=[*sim_time, Parameter("embodiment", value="franka_libero")]
    )
    executor_node = ChunkExecutorNode(
        context=context,
        parameter_overrides=[
            *sim_time,
            Parameter("embodiment", value="franka_libero"),
            Parameter("control_rate_hz", value=10.0),
            Parameter("tick_source", value="state"),
            Parameter("dry_run", value=False),
        ],
    )
    peer = Node("observer", context=context)
    chunks: list = []
    commands: list = []
    peer.create_subscription(ActionChunk, "action_chunk", chunks.append, 50)
    peer.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", commands.append, 50)
    # built before spinning: rclpy's ActionClient registers itself before it creates its lock
    client = ActionClient(peer, ExecuteInstruction, "execute_instruction")
    control = SingleThreadedExecutor(context=context)
    control.add_node(executor_node)
    others = MultiThreadedExecutor(num_threads=4, context=context)
    for node in (sim, policy, peer):
        others.add_node(node)
    halt = spin_in_background(control, others)
    try:
        for node in (policy, executor_node):
            node.trigger_configure()
            node.trigger_activate()
        sim.trigger_configure()  # the sim starts last, once the models are loaded (as the demo does)
        q_start = sim.env.arm_positions()
        sim.trigger_activate()
        assert sim.steps <= 1  # lock-step: nothing advances without a controller
        assert client.wait_for_server(timeout_sec=10)
        timeouts_before = sim.lockstep_timeouts  # at most the start-up, before any controller existed
        goal = client.send_goal_async(
            ExecuteInstruction.Goal(instruction=sim.env.task.instruction, max_steps=14)
        )
        assert wait_for(goal.done, 20) and goal.result().accepted
        result = goal.result().get_result_async()
        assert wait_for(result.done, 240), f"sim steps {sim.steps}, chunks {len(chunks)}"
        assert result.result().result.reason == "finished"
        real_chunks = [c for c in chunks if c.rows]
        assert len(real_chunks) == 14
        # every chunk was computed from a distinct simulated observation, in sim time
        stamps = [c.observation_stamp.sec + c.observation_stamp.nanosec * 1e-9 for c in real_chunks]
        assert stamps == sorted(set(stamps)) and stamps[-1] < 100.0
        assert sim.lockstep_timeouts == timeouts_before  # the controllers answered every step
        assert sim.steps >= 13  # one step per answered observation
        assert len(commands) >= 13
        # LIBERO's first 10 steps are the warm-up (no motion); afterwards the random model moves the arm
        assert np.abs(sim.env.arm_positions() - q_start).max() > 1e-3
        gaps = np.diff(stamps)
        np.testing.assert_allclose(
            gaps, np.round(gaps / 0.1) * 0.1, atol=1e-6
        )  # sim time moves in control steps
    finally:
        halt()
        others.shutdown()
        control.shutdown()
        for node in (executor_node, policy, peer, sim):
            node.destroy_node()
        rclpy.shutdown(context=context)
