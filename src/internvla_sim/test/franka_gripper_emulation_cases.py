"""Cases run by test_franka_gripper_emulation.py in a subprocess that sourced the test-only franka_msgs
build (this file's name keeps pytest from collecting it in the main run, where franka_msgs is absent)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="run through `make test` (needs the ROS wheels)")
INNER = os.environ.get("INTERNVLA_FAKE_FRANKA_MSGS") == "1"
TASK, SEED = "red_on_plate", 0


def grasp_configurations() -> tuple[list[float], list[float]]:
    """Arm joints above and at the red block's grasp pose, fingers open (the scripted expert's IK)."""
    from internvla_sim.env import SimEnv
    from internvla_sim.expert import APPROACH, ScriptedExpert

    env = SimEnv(TASK, SEED, 0.1, 16, 16, False, robot="franka")
    try:
        expert = ScriptedExpert(env)
        block = env.object_positions()["red_block"]
        expert._move(block + [0, 0, APPROACH])
        above = expert.joint_commands[-1][:7].tolist()
        expert._move(expert._grasp_tcp("red_block"))
        at = expert.joint_commands[-1][:7].tolist()
    finally:
        env.close()
    return above, at


@pytest.mark.ros
@pytest.mark.skipif(not INNER, reason="run in a subprocess by test_franka_gripper_actions_in_the_simulator")
def test_inner_grasp_window_on_a_4cm_block(spin_in_background):
    from builtin_interfaces.msg import Duration
    from franka_msgs.action import Grasp, Move
    from rclpy.action import ActionClient
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from internvla_core.gripper import FrankaGripperPlanner
    from internvla_sim.sim_node import SimNode

    above, at = grasp_configurations()
    context = Context()
    rclpy.init(context=context)
    params = {"robot": "franka", "task": TASK, "seed": SEED, "clock_mode": "realtime", "width": 16}
    params.update({"height": 16, "publish_depth": False, "publish_tf": False})
    sim = SimNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    peer = Node("gripper_client", context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(sim)
    executor.add_node(peer)
    halt = spin_in_background(executor)
    sim.trigger_configure()
    sim.trigger_activate()
    clients = {
        "grasp": ActionClient(peer, Grasp, "franka_gripper/grasp"),
        "move": ActionClient(peer, Move, "franka_gripper/move"),
    }
    joints: list = []
    peer.create_subscription(JointState, "joint_states", joints.append, 10)
    trajectory_pub = peer.create_publisher(JointTrajectory, "arm_controller/joint_trajectory", 10)

    def run(kind: str, goal) -> tuple[bool, object]:
        done = threading.Event()
        box: dict = {}

        def on_goal(future):
            handle = future.result()
            assert handle.accepted
            result = handle.get_result_async()
            result.add_done_callback(lambda f: (box.update(result=f.result()), done.set()))

        clients[kind].send_goal_async(goal).add_done_callback(on_goal)
        assert done.wait(60.0), f"no result for {kind}"
        answer = box["result"]
        return answer.status == 4, answer.result  # action_msgs/GoalStatus.STATUS_SUCCEEDED

    def grasp(goal_width: float, inner: float, outer: float):
        goal = Grasp.Goal(width=goal_width, speed=0.1, force=20.0)
        goal.epsilon.inner, goal.epsilon.outer = inner, outer
        return run("grasp", goal)

    def width() -> float:
        return float(sum(joints[-1].position[7:9]))

    try:
        assert all(c.wait_for_server(timeout_sec=20.0) for c in clients.values())
        assert sim.count_subscribers("gripper/command") == 1  # the Float64 path of the sim graphs stays
        default = Grasp.Goal().epsilon
        assert (default.inner, default.outer) == (0.005, 0.005)  # franka_msgs/GraspEpsilon defaults

        # free air: a grasp ends where it was sent, inside the default window (not closed shut: the
        # simulated finger pads squeezed together stick, see the report of this test's commit)
        ok, result = grasp(0.04, default.inner, default.outer)
        assert ok and result.success, result.error
        assert abs(width() - 0.04) < 0.005
        ok, result = run("move", Move.Goal(width=0.08, speed=0.1))
        assert ok and result.success and width() > 0.075, result.error

        # the open fingers around the block
        msg = JointTrajectory(joint_names=[f"joint{i}" for i in range(1, 8)])
        for q, t in ((above, 2), (at, 4)):
            msg.points.append(JointTrajectoryPoint(positions=q, time_from_start=Duration(sec=t)))
        trajectory_pub.publish(msg)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and (
            not joints or np.max(np.abs(np.array(joints[-1].position[:7]) - at)) > 0.02
        ):
            time.sleep(0.1)
        time.sleep(1.0)

        # default epsilons: the 4 cm block stops the fingers at ~0.04 m, outside [-0.005, 0.005]: aborts
        ok, result = grasp(0.0, default.inner, default.outer)
        assert not ok and not result.success and "outside" in result.error
        assert 0.03 < width() < 0.06
        ok, result = run("move", Move.Goal(width=0.08, speed=0.1))
        assert ok and result.success, result.error
        # what gripper_bridge sends to close: FrankaGripperPlanner's wide epsilons succeed
        planner = FrankaGripperPlanner()
        planner.plan(1.0)
        close = planner.plan(0.0)
        assert close.kind == "grasp"
        ok, result = grasp(close.width, close.epsilon_inner, close.epsilon_outer)
        assert ok and result.success, result.error
        assert 0.03 < width() < 0.06  # holding the block (finger pads: the joints read a little over 4 cm)
        # a width beyond the hand's 0.08 m is refused
        ok, result = run("move", Move.Goal(width=0.2, speed=0.1))
        assert not ok and "outside" in result.error
    finally:
        halt()
        executor.shutdown()
        sim.destroy_node()
        peer.destroy_node()
        rclpy.shutdown(context=context)
